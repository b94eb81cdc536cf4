#![no_main]
//! AWS's model-driven request validation never panics: any operation name and body, decoded as
//! the front end decodes it, is either accepted (normalized) or answered with an error.
//! Input: `<Operation>\n<JSON body>`.
use libfuzzer_sys::fuzz_target;
use sluice::kinesis::{MEMBER_KINDS, MODEL};
use sluice::protocol::codec::{decode_request, Protocol};

fuzz_target!(|data: &[u8]| {
    let (op, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (String::from_utf8_lossy(&data[..i]).into_owned(), &data[i + 1..]),
        None => (String::new(), data),
    };
    if let Ok(mut v) = decode_request(Protocol::Json, body, &MEMBER_KINDS) {
        let _ = MODEL.check(&op, &mut v);
    }
});
