#![no_main]
//! The batch decoder, fed arbitrary segment bytes, either rejects them or yields records; a batch
//! it accepts must pass its crc; sealed batches are opened with a fixed data key (or refused).
use libfuzzer_sys::fuzz_target;
use sluice::log::segment::{decode_batch_header, decode_records, verify_batch, SegmentHeader};

fuzz_target!(|data: &[u8]| {
    let _ = SegmentHeader::decode(data);
    let mut offset = 0u64;
    for _ in 0..64 {
        match decode_batch_header(data, offset) {
            Ok(Some(h)) => {
                if verify_batch(data, offset, &h).is_ok() {
                    let mut out = Vec::new();
                    let key = sluice::keys::DataKey::from_bytes(&[0x5a; 32]);
                    let _ = decode_records(data, offset, &h, 0, Some(&key), &mut out);
                }
                offset += u64::from(h.len);
            }
            _ => break,
        }
    }
});
