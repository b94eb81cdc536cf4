#![no_main]
//! Recovery over arbitrary segment bytes: the shard always opens (or refuses with an error, never
//! a panic), and everything it then serves passes its checksum.
use libfuzzer_sys::fuzz_target;
use sluice::config::Compression;
use sluice::log::segment::{SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_LEN};
use sluice::log::{LogConfig, ShardLog};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    // A valid header, then the fuzzer's bytes where the batches go (or its bytes from offset 0
    // when the first byte is odd, to exercise damaged headers too).
    let mut file = if data.first().is_some_and(|b| b & 1 == 1) {
        Vec::new()
    } else {
        SegmentHeader { version: FORMAT_VERSION, stream_id: 1, shard_index: 0, base_ordinal: 0, created_ms: 0, key: None }.encode()
    };
    file.extend_from_slice(data);
    if file.len() < SEGMENT_HEADER_LEN as usize + 64 {
        file.resize(SEGMENT_HEADER_LEN as usize + 64, 0);
    }
    std::fs::write(dir.path().join("00000000000000000000.seg"), &file).expect("write");
    let cfg = LogConfig { segment_size: 16 << 20, compression: Compression::None, hot_tail_bytes: 0, track_unsynced: false };
    if let Ok((mut log, _)) = ShardLog::open(dir.path().to_path_buf(), 1, 0, cfg, Vec::new()) {
        let mut from = log.trim_horizon();
        for _ in 0..64 {
            match log.read(from, 1000, 1 << 20) {
                Ok(r) if !r.records.is_empty() => from = r.next,
                _ => break,
            }
        }
    }
});
