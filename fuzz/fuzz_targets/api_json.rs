#![no_main]
//! The AWS JSON 1.1 request decoder never panics, whatever the body.
use libfuzzer_sys::fuzz_target;
use sluice::protocol::codec::{decode_request, encode_response, Protocol};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode_request(Protocol::Json, data, &sluice::kinesis::MEMBER_KINDS) {
        let _ = encode_response(Protocol::Cbor, &v, &sluice::kinesis::MEMBER_KINDS);
    }
});
