#![no_main]
//! The push protocol frame decoder never panics, and every frame it accepts re-encodes to exactly
//! the bytes it came from.
use libfuzzer_sys::fuzz_target;
use sluice::push::frame::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((frame, used))) = decode(data) {
        let mut again = Vec::new();
        encode(&frame, &mut again);
        assert_eq!(&again[..], &data[..used]);
    }
});
