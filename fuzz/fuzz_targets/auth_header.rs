#![no_main]
//! The signature check never panics on any Authorization header and query string.
//! Input: `<Authorization value>\n<query string>`; a first byte of `D` means a date header is there.
use libfuzzer_sys::fuzz_target;
use sluice::http::auth::check_parts;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (dated, rest) = match text.strip_prefix('D') {
        Some(r) => (true, r),
        None => (false, &text[..]),
    };
    let (header, query) = rest.split_once('\n').unwrap_or((rest, ""));
    let header = (!header.is_empty()).then_some(header);
    let query = (!query.is_empty()).then_some(query);
    let _ = check_parts(header, dated, query);
});
