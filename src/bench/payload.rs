//! The load tool's record payload: checkable by the consumer without shared state.
//!
//! ```text
//! producer u32 | sequence u64 | sent ns u64 (since the run began) | crc32c u32 | filler
//! ```
//! The crc covers the first 20 bytes and the filler, so a consumer detects any damaged byte; the
//! (producer, sequence) pair makes every record unique, so loss, duplication and reordering show.

pub const HEADER_LEN: usize = 24;

/// Bytes after the header: deterministic per producer, a multiple of 3 long so that its base64
/// can be computed once and appended to each header's.
pub fn filler(producer: u32, record_size: usize) -> Vec<u8> {
    let len = record_size.saturating_sub(HEADER_LEN) / 3 * 3;
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(producer.wrapping_mul(7)) as u8).collect()
}

pub fn header(producer: u32, seq: u64, sent_ns: u64, filler: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&producer.to_be_bytes());
    h[4..12].copy_from_slice(&seq.to_be_bytes());
    h[12..20].copy_from_slice(&sent_ns.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..20]), filler);
    h[20..24].copy_from_slice(&crc.to_be_bytes());
    h
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub producer: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

/// Parses and verifies a record's data.
pub fn check(data: &[u8]) -> Option<Checked> {
    if data.len() < HEADER_LEN {
        return None;
    }
    let be32 = |r: std::ops::Range<usize>| u32::from_be_bytes(data[r].try_into().expect("4 bytes"));
    let be64 = |r: std::ops::Range<usize>| u64::from_be_bytes(data[r].try_into().expect("8 bytes"));
    let crc = crc32c::crc32c_append(crc32c::crc32c(&data[..20]), &data[HEADER_LEN..]);
    (crc == be32(20..24)).then(|| Checked { producer: be32(0..4), seq: be64(4..12), sent_ns: be64(12..20) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_verify_and_damage_shows() {
        let f = filler(3, 100);
        let mut data = header(3, 9, 77, &f).to_vec();
        data.extend_from_slice(&f);
        assert_eq!(check(&data), Some(Checked { producer: 3, seq: 9, sent_ns: 77 }));
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 1;
            assert_eq!(check(&bad), None, "byte {i}");
        }
        assert_eq!(check(&data[..10]), None);
    }
}
