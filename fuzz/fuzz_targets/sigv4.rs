#![no_main]
//! SigV4 verification never panics on any request: Authorization header, X-Amz-Date, query
//! string, path, headers and body as a client sends them.
//! Input lines: `<Authorization>\n<X-Amz-Date>\n<query>\n<path>\n<extra header name>:<value>\n<body>`.
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sluice::http::sigv4::{verify, Request, StaticKey};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(6, '\n');
    let mut next = || lines.next().unwrap_or("");
    let (auth, date, query, path, extra, body) = (next(), next(), next(), next(), next(), next());
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(auth) {
        if !auth.is_empty() {
            headers.insert(http::header::AUTHORIZATION, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(date) {
        headers.insert("x-amz-date", v);
    }
    if let Some((name, value)) = extra.split_once(':') {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(n, v);
        }
    }
    let req = Request {
        method: "POST",
        path,
        query: (!query.is_empty()).then_some(query),
        headers: &headers,
        authority: Some("127.0.0.1:4567"),
        body: body.as_bytes(),
    };
    let _ = verify(&req, &[StaticKey::EXAMPLE], "us-east-1", "kinesis", 1_440_938_160_000);
});
