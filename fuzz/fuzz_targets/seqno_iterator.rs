#![no_main]
//! Sequence numbers and shard iterators from clients are parsed without panicking, and whatever
//! parses re-encodes to the same text.
use libfuzzer_sys::fuzz_target;
use sluice::stream::seqno::{SeqNo, ShardIterator};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(s) = SeqNo::parse(text) {
            assert_eq!(s.encode(), text);
        }
        if let Ok(it) = ShardIterator::decode(text, 0) {
            assert_eq!(ShardIterator::decode(&it.encode(), 0).unwrap(), it);
        }
    }
});
