#![no_main]
//! The AWS event-stream decoder never panics, and what it accepts re-encodes to the same bytes.
use libfuzzer_sys::fuzz_target;
use sluice::protocol::eventstream::{decode, message};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((m, used))) = decode(data) {
        let headers: Vec<(&str, &str)> = m.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let again = message(&headers, &m.payload);
        if m.headers.iter().all(|(n, v)| n.len() < 256 && v.len() < 65536) && again.len() == used {
            assert_eq!(decode(&again).unwrap().unwrap().0, m);
        }
    }
});
