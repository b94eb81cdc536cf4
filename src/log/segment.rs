//! The segment and batch format. Pure codec: no I/O, so it is fuzzed and tested on bytes alone.
//! The format itself is documented in the module doc of [`crate::log`].

use bytes::Bytes;

use super::{LogError, Record};
use crate::config::Compression;

/// 2: segment headers may carry a wrapped data key, and batches may be sealed (encryption at
/// rest). 3: the data directory may hold write-ahead logs ([`crate::log::wal`]) that must be
/// replayed before the segments are read, so a build without them must not open it; segments
/// and batches are laid out as in 2. Version 1 and 2 files are read as they are.
pub const FORMAT_VERSION: u32 = 3;
pub const SEGMENT_MAGIC: [u8; 8] = *b"SLUICESG";
/// The segment header occupies the first block; batches start after it.
pub const SEGMENT_HEADER_LEN: u64 = 4096;
const SEGMENT_HEADER_USED: usize = 44;

pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"SLB1");
pub const BATCH_HEADER_LEN: usize = 40;
pub const RECORD_HEADER_LEN: usize = 6;
/// A batch holds at most this many payload bytes before compression (a single record may exceed
/// it alone: records are never split).
pub const BATCH_PAYLOAD_SOFT_MAX: usize = 1 << 20;
/// Hard bound on one batch on disk; anything larger is corruption. A batch of one record of the
/// largest size a stream can allow (10 MiB, with its partition key and framing) fits.
pub const BATCH_LEN_MAX: u32 = 16 << 20;
/// Records in one batch at most.
pub const BATCH_RECORDS_MAX: u32 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u32,
    pub stream_id: u64,
    pub shard_index: u32,
    pub base_ordinal: u64,
    pub created_ms: i64,
    /// Encrypted segments (version 2): the KMS KeyId and the data key wrapped under it.
    pub key: Option<(String, Vec<u8>)>,
}

/// The longest KeyId a segment header holds (AWS's KeyId limit).
pub const KEY_ID_MAX: usize = 2048;

impl SegmentHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SEGMENT_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..20].copy_from_slice(&self.stream_id.to_le_bytes());
        b[20..24].copy_from_slice(&self.shard_index.to_le_bytes());
        b[24..32].copy_from_slice(&self.base_ordinal.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_ms.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        // Version 2: key id length u16 | key id | wrapped data key | crc32c of these u32.
        if let Some((id, wrapped)) = &self.key {
            let n = id.len().min(KEY_ID_MAX);
            let mut at = SEGMENT_HEADER_USED;
            b[at..at + 2].copy_from_slice(&(n as u16).to_le_bytes());
            at += 2;
            b[at..at + n].copy_from_slice(&id.as_bytes()[..n]);
            at += n;
            b[at..at + wrapped.len()].copy_from_slice(wrapped);
            at += wrapped.len();
            let crc = crc32c::crc32c(&b[SEGMENT_HEADER_USED..at]);
            b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, LogError> {
        if b.len() < SEGMENT_HEADER_USED {
            return Err(LogError::Corrupt { offset: 0, reason: "segment header is truncated".into() });
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(LogError::Corrupt { offset: 0, reason: "segment header has no magic".into() });
        }
        let expected = le_u32(b, 40);
        let actual = crc32c::crc32c(&b[0..40]);
        if expected != actual {
            return Err(LogError::ChecksumMismatch { expected, actual, offset: 0 });
        }
        let version = le_u32(b, 8);
        if version > FORMAT_VERSION {
            return Err(LogError::NewerFormat { found: version, supported: FORMAT_VERSION });
        }
        let key = if version >= 2 { decode_key(b)? } else { None };
        Ok(SegmentHeader {
            version,
            stream_id: le_u64(b, 12),
            shard_index: le_u32(b, 20),
            base_ordinal: le_u64(b, 24),
            created_ms: le_u64(b, 32) as i64,
            key,
        })
    }
}

/// The key part of a version 2 segment header.
fn decode_key(b: &[u8]) -> Result<Option<(String, Vec<u8>)>, LogError> {
    let bad = |reason: &str| LogError::Corrupt { offset: 0, reason: reason.into() };
    let at = SEGMENT_HEADER_USED;
    if b.len() < at + 2 {
        return Err(bad("segment header is truncated"));
    }
    let n = u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    if n == 0 {
        return Ok(None);
    }
    let wrapped_len = crate::keys::WRAPPED_KEY_LEN;
    let end = at + 2 + n + wrapped_len;
    if n > KEY_ID_MAX || end + 4 > b.len().min(SEGMENT_HEADER_LEN as usize) {
        return Err(bad("segment key id is too long"));
    }
    let expected = le_u32(b, end);
    let actual = crc32c::crc32c(&b[at..end]);
    if expected != actual {
        return Err(LogError::ChecksumMismatch { expected, actual, offset: at as u64 });
    }
    let id = std::str::from_utf8(&b[at + 2..at + 2 + n]).map_err(|_| bad("segment key id is not utf-8"))?;
    Ok(Some((id.to_owned(), b[at + 2 + n..end].to_vec())))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Whole batch, header included.
    pub len: u32,
    pub crc: u32,
    pub codec: u8,
    pub count: u32,
    pub raw_len: u32,
    pub first_ordinal: u64,
    pub ts_ms: i64,
}

impl BatchHeader {
    pub fn end_ordinal(&self) -> u64 {
        self.first_ordinal + u64::from(self.count)
    }
}

const CODEC_NONE: u8 = 0;
const CODEC_LZ4: u8 = 1;
const CODEC_ZSTD: u8 = 2;
/// Set in the codec byte of a batch whose payload is sealed with the segment's data key.
const CODEC_SEALED: u8 = 0x80;

/// What a sealed batch's payload is bound to: its first ordinal, record count and arrival time,
/// so a sealed payload cannot be moved to another place in the log unnoticed.
fn batch_aad(first_ordinal: u64, count: u32, ts_ms: i64) -> [u8; 20] {
    let mut aad = [0u8; 20];
    aad[0..8].copy_from_slice(&first_ordinal.to_le_bytes());
    aad[8..12].copy_from_slice(&count.to_le_bytes());
    aad[12..20].copy_from_slice(&ts_ms.to_le_bytes());
    aad
}
const ZSTD_LEVEL: i32 = 1;

/// Appends one encoded batch of `records` (partition key, data) to `out`, sealed with `seal` when
/// the segment is encrypted.
pub fn encode_batch(
    first_ordinal: u64,
    ts_ms: i64,
    records: &[(&str, &[u8])],
    compression: Compression,
    seal: Option<&crate::keys::DataKey>,
    out: &mut Vec<u8>,
) {
    assert!(!records.is_empty() && records.len() <= BATCH_RECORDS_MAX as usize);
    let raw_len: usize = records.iter().map(|(k, d)| RECORD_HEADER_LEN + k.len() + d.len()).sum();
    let start = out.len();
    if compression == Compression::None && seal.is_none() {
        // The common case: the records are written once, straight after the header.
        out.reserve(BATCH_HEADER_LEN + raw_len);
        push_batch_header(out, CODEC_NONE, BATCH_HEADER_LEN + raw_len, records.len(), raw_len, first_ordinal, ts_ms);
        push_raw_records(records, out);
        finish_batch_crc(out, start);
        return;
    }
    let mut raw = Vec::with_capacity(raw_len);
    push_raw_records(records, &mut raw);
    let compressed = match compression {
        Compression::None => None,
        Compression::Lz4 => Some((CODEC_LZ4, lz4_flex::block::compress(&raw))),
        Compression::Zstd => zstd::bulk::compress(&raw, ZSTD_LEVEL).ok().map(|c| (CODEC_ZSTD, c)),
    };
    // Compression that does not pay is not kept.
    let (mut codec, mut payload): (u8, &[u8]) = match &compressed {
        Some((codec, c)) if c.len() < raw.len() => (*codec, c),
        _ => (CODEC_NONE, &raw),
    };
    let sealed;
    if let Some(key) = seal {
        sealed = key.seal(&batch_aad(first_ordinal, records.len() as u32, ts_ms), payload);
        payload = &sealed;
        codec |= CODEC_SEALED;
    }
    let len = BATCH_HEADER_LEN + payload.len();
    out.reserve(len);
    push_batch_header(out, codec, len, records.len(), raw_len, first_ordinal, ts_ms);
    out.extend_from_slice(payload);
    finish_batch_crc(out, start);
}

/// A batch's records, uncompressed: per record its key length, data length, key and data.
fn push_raw_records(records: &[(&str, &[u8])], out: &mut Vec<u8>) {
    for (key, data) in records {
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(data);
    }
}

/// A batch header with its CRC left zero (see [`finish_batch_crc`]).
fn push_batch_header(
    out: &mut Vec<u8>,
    codec: u8,
    len: usize,
    count: usize,
    raw_len: usize,
    first_ordinal: u64,
    ts_ms: i64,
) {
    out.extend_from_slice(&BATCH_MAGIC.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc, filled by finish_batch_crc
    out.extend_from_slice(&[FORMAT_VERSION as u8, codec, 0, 0]);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    out.extend_from_slice(&first_ordinal.to_le_bytes());
    out.extend_from_slice(&ts_ms.to_le_bytes());
}

/// Fills in the CRC of the batch that starts at `start` of `out` and runs to its end.
fn finish_batch_crc(out: &mut [u8], start: usize) {
    let crc = crc32c::crc32c(&out[start + 12..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the header of the batch at `offset` of `buf` (a whole segment mapping). `Ok(None)` means a
/// clean end: the bytes there are zero, as preallocated space is.
pub fn decode_batch_header(buf: &[u8], offset: u64) -> Result<Option<BatchHeader>, LogError> {
    let at = offset as usize;
    let Some(h) = buf.get(at..at + BATCH_HEADER_LEN) else {
        // Fewer bytes left than a header: a clean end if they are all zero.
        let rest = buf.get(at..).unwrap_or(&[]);
        return if rest.iter().all(|&b| b == 0) {
            Ok(None)
        } else {
            Err(LogError::Corrupt { offset, reason: "truncated batch header".into() })
        };
    };
    let magic = le_u32(h, 0);
    if magic == 0 && h.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    if magic != BATCH_MAGIC {
        return Err(LogError::Corrupt { offset, reason: format!("bad batch magic {magic:#010x}") });
    }
    let header = BatchHeader {
        len: le_u32(h, 4),
        crc: le_u32(h, 8),
        codec: h[13],
        count: le_u32(h, 16),
        raw_len: le_u32(h, 20),
        first_ordinal: le_u64(h, 24),
        ts_ms: le_u64(h, 32) as i64,
    };
    if h[12] as u32 > FORMAT_VERSION {
        return Err(LogError::NewerFormat { found: h[12] as u32, supported: FORMAT_VERSION });
    }
    if (header.len as usize) < BATCH_HEADER_LEN || header.len > BATCH_LEN_MAX {
        return Err(LogError::Corrupt { offset, reason: format!("bad batch length {}", header.len) });
    }
    if header.count == 0 || header.count > BATCH_RECORDS_MAX || header.raw_len > BATCH_LEN_MAX {
        return Err(LogError::Corrupt { offset, reason: format!("bad record count {}", header.count) });
    }
    if at + header.len as usize > buf.len() {
        return Err(LogError::Corrupt { offset, reason: "batch runs past the end of the segment".into() });
    }
    Ok(Some(header))
}

/// Checks the crc of the batch whose header was read at `offset`.
pub fn verify_batch(buf: &[u8], offset: u64, header: &BatchHeader) -> Result<(), LogError> {
    let at = offset as usize;
    let body = &buf[at + 12..at + header.len as usize];
    let actual = crc32c::crc32c(body);
    if actual != header.crc {
        return Err(LogError::ChecksumMismatch { expected: header.crc, actual, offset });
    }
    Ok(())
}

/// Decodes the records of a verified batch, skipping those before `from_ordinal`. A sealed batch
/// is opened with `key` (its segment's data key); one that does not open is damage.
pub fn decode_records(
    buf: &[u8],
    offset: u64,
    header: &BatchHeader,
    from_ordinal: u64,
    key: Option<&crate::keys::DataKey>,
    out: &mut Vec<Record>,
) -> Result<(), LogError> {
    let at = offset as usize;
    let mut payload = &buf[at + BATCH_HEADER_LEN..at + header.len as usize];
    let corrupt = |reason: &str| LogError::Corrupt { offset, reason: reason.into() };
    let opened;
    if header.codec & CODEC_SEALED != 0 {
        let key = key.ok_or_else(|| corrupt("the batch is sealed and its segment's data key is not available"))?;
        opened = key
            .open(&batch_aad(header.first_ordinal, header.count, header.ts_ms), payload)
            .ok_or_else(|| corrupt("the sealed batch does not open (damaged ciphertext)"))?;
        payload = &opened;
    }
    let raw_owned;
    let raw: &[u8] = match header.codec & !CODEC_SEALED {
        CODEC_NONE => payload,
        CODEC_LZ4 => {
            raw_owned = lz4_flex::block::decompress(payload, header.raw_len as usize)
                .map_err(|_| corrupt("lz4 payload does not decompress"))?;
            &raw_owned
        }
        CODEC_ZSTD => {
            raw_owned = zstd::bulk::decompress(payload, header.raw_len as usize)
                .map_err(|_| corrupt("zstd payload does not decompress"))?;
            &raw_owned
        }
        _ => return Err(corrupt("unknown codec")),
    };
    if raw.len() != header.raw_len as usize {
        return Err(corrupt("payload length does not match the header"));
    }
    let mut pos = 0usize;
    for i in 0..header.count {
        let h = raw.get(pos..pos + RECORD_HEADER_LEN).ok_or_else(|| corrupt("truncated record"))?;
        let key_len = u16::from_le_bytes([h[0], h[1]]) as usize;
        let data_len = le_u32(h, 2) as usize;
        pos += RECORD_HEADER_LEN;
        let key = raw.get(pos..pos + key_len).ok_or_else(|| corrupt("truncated record key"))?;
        let data = raw.get(pos + key_len..pos + key_len + data_len).ok_or_else(|| corrupt("truncated record data"))?;
        pos += key_len + data_len;
        let ordinal = header.first_ordinal + u64::from(i);
        if ordinal < from_ordinal {
            continue;
        }
        let partition_key = std::str::from_utf8(key).map_err(|_| corrupt("partition key is not utf-8"))?;
        out.push(Record {
            ordinal,
            ts_ms: header.ts_ms,
            partition_key: partition_key.to_owned(),
            data: Bytes::copy_from_slice(data),
        });
    }
    if pos != raw.len() {
        return Err(corrupt("trailing bytes after the last record"));
    }
    Ok(())
}

/// The next batch at or after offset `from` that verifies and starts at ordinal `expected` or
/// later: where reading can resume after damage. Scans byte by byte; used only on damage.
pub fn find_next_batch(bytes: &[u8], from: u64, expected: u64) -> Option<(u64, BatchHeader)> {
    let magic = BATCH_MAGIC.to_le_bytes();
    let mut at = from as usize;
    while at < bytes.len() {
        let pos = bytes[at..].windows(magic.len()).position(|w| w == magic)?;
        let offset = (at + pos) as u64;
        if let Ok(Some(h)) = decode_batch_header(bytes, offset) {
            if h.first_ordinal >= expected && verify_batch(bytes, offset, &h).is_ok() {
                return Some((offset, h));
            }
        }
        at += pos + 1;
    }
    None
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("caller checked length"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("caller checked length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(codec: Compression) -> Vec<u8> {
        let recs: Vec<(&str, &[u8])> = vec![("k1", b"hello"), ("k2", b""), ("k3", &[7u8; 3000])];
        let mut out = vec![0u8; 16];
        encode_batch(42, 1_700_000_000_000, &recs, codec, None, &mut out);
        out
    }

    #[test]
    fn sealed_batches_hold_no_plaintext_and_open_only_unaltered() {
        let key = crate::keys::DataKey::from_bytes(&[3; 32]);
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let recs: Vec<(&str, &[u8])> = vec![("key-1", b"MARKER-plaintext"), ("key-2", &[7u8; 3000])];
            let mut buf = vec![0u8; 16];
            encode_batch(42, 1_700_000_000_000, &recs, codec, Some(&key), &mut buf);
            assert!(!buf.windows(6).any(|w| w == b"MARKER" || w == b"key-1\0"), "{codec:?}: plaintext on disk");
            let h = decode_batch_header(&buf, 16).unwrap().unwrap();
            verify_batch(&buf, 16, &h).unwrap();
            let mut out = vec![];
            decode_records(&buf, 16, &h, 0, Some(&key), &mut out).unwrap();
            assert_eq!(&out[0].data[..], b"MARKER-plaintext");
            assert!(decode_records(&buf, 16, &h, 0, None, &mut vec![]).is_err(), "no key, no records");
            let other = crate::keys::DataKey::from_bytes(&[4; 32]);
            assert!(decode_records(&buf, 16, &h, 0, Some(&other), &mut vec![]).is_err());
            // A changed ciphertext byte fails the tag even where the checksum is made to match.
            let mut bad = buf.clone();
            let at = 16 + BATCH_HEADER_LEN + 20;
            bad[at] ^= 0x40;
            let crc = crc32c::crc32c(&bad[16 + 12..]);
            bad[16 + 8..16 + 12].copy_from_slice(&crc.to_le_bytes());
            let hb = decode_batch_header(&bad, 16).unwrap().unwrap();
            verify_batch(&bad, 16, &hb).unwrap();
            assert!(matches!(decode_records(&bad, 16, &hb, 0, Some(&key), &mut vec![]), Err(LogError::Corrupt { .. })));
        }
    }

    #[test]
    fn batch_round_trips_with_every_codec() {
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let buf = batch(codec);
            let h = decode_batch_header(&buf, 16).unwrap().unwrap();
            assert_eq!((h.first_ordinal, h.count, h.end_ordinal()), (42, 3, 45));
            verify_batch(&buf, 16, &h).unwrap();
            let mut out = vec![];
            decode_records(&buf, 16, &h, 43, None, &mut out).unwrap();
            assert_eq!(out.len(), 2);
            assert_eq!(out[0].partition_key, "k2");
            assert_eq!(out[1].data.len(), 3000);
            assert_eq!(out[1].ordinal, 44);
        }
    }

    #[test]
    fn compression_shrinks_repetitive_batches() {
        assert!(batch(Compression::Lz4).len() < batch(Compression::None).len());
        assert!(batch(Compression::Zstd).len() < batch(Compression::None).len());
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let good = batch(Compression::None);
        for byte in 16..good.len() {
            let mut buf = good.clone();
            buf[byte] ^= 0x10;
            let caught = match decode_batch_header(&buf, 16) {
                Err(_) | Ok(None) => true,
                Ok(Some(h)) => verify_batch(&buf, 16, &h).is_err(),
            };
            assert!(caught, "flip at {byte} went unnoticed");
        }
    }

    #[test]
    fn zeros_are_a_clean_end_and_truncation_is_not() {
        let zeros = vec![0u8; 100];
        assert_eq!(decode_batch_header(&zeros, 0).unwrap(), None);
        assert_eq!(decode_batch_header(&zeros, 90).unwrap(), None);
        let buf = batch(Compression::None);
        let cut = &buf[..buf.len() - 1];
        assert!(decode_batch_header(cut, 16).is_err());
    }

    #[test]
    fn segment_header_round_trips_and_refuses_newer_versions() {
        let h = SegmentHeader { version: 1, stream_id: 9, shard_index: 2, base_ordinal: 77, created_ms: 5, key: None };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
        let sealed = SegmentHeader {
            version: 2,
            key: Some(("alias/aws/kinesis".into(), vec![9; crate::keys::WRAPPED_KEY_LEN])),
            ..h.clone()
        };
        assert_eq!(SegmentHeader::decode(&sealed.encode()).unwrap(), sealed);
        let mut bad_key = sealed.encode();
        bad_key[SEGMENT_HEADER_USED + 5] ^= 1;
        assert!(SegmentHeader::decode(&bad_key).is_err(), "the key part has its own checksum");
        let newer = SegmentHeader { version: FORMAT_VERSION + 1, ..h.clone() }.encode();
        assert!(matches!(SegmentHeader::decode(&newer), Err(LogError::NewerFormat { .. })));
        let mut bad = b.clone();
        bad[25] ^= 1;
        assert!(matches!(SegmentHeader::decode(&bad), Err(LogError::ChecksumMismatch { .. })));
    }
}
