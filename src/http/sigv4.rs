//! AWS Signature Version 4, verified (`[auth] mode = "sigv4"`).
//!
//! The canonical request is built as the AWS SDKs build it (botocore's `SigV4Auth` is the
//! reference; the unit tests check AWS's published example and requests signed by botocore):
//! the method; the path, normalized and URI-encoded once more (safe `/` and `~`); the query
//! parameters decoded, encoded again with only unreserved characters left as they are, sorted
//! (the signature parameter of the query-string form left out); the signed headers, lowercase,
//! sorted, values trimmed with inner runs of spaces collapsed and repeated headers joined by
//! commas; the signed header list; and the payload hash, the `X-Amz-Content-SHA256` header when
//! it is there (checked against the body unless it is `UNSIGNED-PAYLOAD`), else the body's
//! SHA-256. The signature is compared in constant time (`hmac`'s `verify_slice`). A request dated
//! more than five minutes away from the daemon's clock, or past its query-string
//! `X-Amz-Expires`, is refused.
//!
//! Answers, as AWS's front ends give them: UnrecognizedClientException for an access key no
//! `[[auth.keys]]` entry has, InvalidSignatureException for a signature that does not match, a
//! request out of its time window or a scope of another region or service,
//! IncompleteSignatureException for a malformed Authorization header or credential. Requests
//! without any signature are answered by [`super::auth`] (MissingAuthenticationToken).

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::protocol::error::ApiError;

/// A request as the verifier needs it: everything the signature covers.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as it came in the request line (still percent-encoded).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The URI's authority: the `host` an HTTP/2 request signs (it has no Host header).
    pub authority: Option<&'a str>,
    pub body: &'a [u8],
}

/// An access key the daemon knows.
pub trait Secret {
    fn access_key_id(&self) -> &str;
    fn secret_access_key(&self) -> &str;
}

/// A key given by its two strings (tests, benchmarks, fuzzing and clients).
#[derive(Debug, Clone, Copy)]
pub struct StaticKey(pub &'static str, pub &'static str);

impl StaticKey {
    /// AWS's documented example key.
    pub const EXAMPLE: StaticKey = StaticKey("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
}

impl Secret for StaticKey {
    fn access_key_id(&self) -> &str {
        self.0
    }
    fn secret_access_key(&self) -> &str {
        self.1
    }
}

/// How far a request's date may be from the daemon's clock.
pub const SKEW_MAX_MS: i64 = 5 * 60 * 1000;
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The parts of a signature, from the Authorization header or the query string.
#[derive(Debug, PartialEq, Eq)]
struct Parts {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    /// The query-string form's X-Amz-Expires, in seconds.
    expires_s: Option<i64>,
    query_form: bool,
}

/// Verifies the request's signature against `keys`; returns the index of the key that signed it.
pub fn verify<K: Secret>(
    req: &Request,
    keys: &[K],
    region: &str,
    service: &str,
    now_ms: i64,
) -> Result<usize, ApiError> {
    let parts = parse(req)?;
    let Some(index) = keys.iter().position(|k| k.access_key_id() == parts.access_key_id) else {
        return Err(ApiError::UnrecognizedClient("The security token included in the request is invalid.".into()));
    };
    let Some(signed_ms) = parse_amz_date(&parts.amz_date) else {
        return Err(ApiError::IncompleteSignature(format!(
            "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
            parts.amz_date
        )));
    };
    if !parts.amz_date.starts_with(&parts.date) {
        return Err(ApiError::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', \
             from '{}'.",
            parts.date,
            parts.amz_date.get(..8).unwrap_or_default(),
            parts.amz_date
        )));
    }
    if parts.region != region {
        return Err(ApiError::InvalidSignature(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            parts.region
        )));
    }
    if parts.service != service {
        return Err(ApiError::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    if !parts.signed_headers.iter().any(|h| h == "host" || h == ":authority") {
        return Err(ApiError::InvalidSignature(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    check_time(&parts, signed_ms, now_ms)?;
    let canonical = canonical_request(req, &parts)?;
    let scope = format!("{}/{}/{}/aws4_request", parts.date, parts.region, parts.service);
    let string_to_sign = format!("{ALGORITHM}\n{}\n{scope}\n{}", parts.amz_date, hex(&Sha256::digest(&canonical)));
    let key = signing_key(keys[index].secret_access_key(), &parts.date, &parts.region, &parts.service);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    let provided = unhex(&parts.signature).unwrap_or_default();
    if mac.verify_slice(&provided).is_err() {
        return Err(ApiError::InvalidSignature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
             Access Key and signing method. Consult the service documentation for details."
                .into(),
        ));
    }
    Ok(index)
}

/// What the push protocol's AUTH frame signs (`docs/push-protocol.md`, version 2).
const PUSH_ALGORITHM: &str = "SLUICE-PUSH-HMAC-SHA256";

/// The push protocol's proof of a secret: HMAC-SHA256, under the SigV4 signing key of the date
/// (UTC day of `date_ms`), `region` and service `kinesis`, of
/// `SLUICE-PUSH-HMAC-SHA256 \n date_ms \n hex(nonce) \n access_key_id \n client`.
#[derive(Debug, Clone, Copy)]
pub struct PushAuth<'a> {
    /// The server's CHALLENGE.
    pub nonce: &'a [u8],
    pub access_key_id: &'a str,
    pub date_ms: i64,
    /// The client name of the HELLO.
    pub client: &'a str,
}

impl PushAuth<'_> {
    fn mac(&self, secret: &str, region: &str) -> Hmac<Sha256> {
        let day = format_amz_date(self.date_ms);
        let key = signing_key(secret, &day[..8], region, "kinesis");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
        let text =
            format!("{PUSH_ALGORITHM}\n{}\n{}\n{}\n{}", self.date_ms, hex(self.nonce), self.access_key_id, self.client);
        mac.update(text.as_bytes());
        mac
    }

    /// The signature a client sends.
    pub fn sign(&self, secret: &str, region: &str) -> Vec<u8> {
        self.mac(secret, region).finalize().into_bytes().to_vec()
    }

    /// Checks `signature` against `keys` (constant-time, the same 5-minute window as requests);
    /// returns the index of the key.
    pub fn verify<K: Secret>(
        &self,
        keys: &[K],
        region: &str,
        now_ms: i64,
        signature: &[u8],
    ) -> Result<usize, ApiError> {
        let Some(index) = keys.iter().position(|k| k.access_key_id() == self.access_key_id) else {
            return Err(ApiError::UnrecognizedClient("The security token included in the request is invalid.".into()));
        };
        if self.date_ms.saturating_sub(now_ms).unsigned_abs() > SKEW_MAX_MS as u64 {
            return Err(ApiError::InvalidSignature(format!(
                "Signature expired or not yet current: {} is more than 5 min. from {}",
                format_amz_date(self.date_ms),
                format_amz_date(now_ms)
            )));
        }
        if self.mac(keys[index].secret_access_key(), region).verify_slice(signature).is_err() {
            return Err(ApiError::InvalidSignature(
                "The signature we calculated does not match the signature you provided.".into(),
            ));
        }
        Ok(index)
    }
}

fn check_time(parts: &Parts, signed_ms: i64, now_ms: i64) -> Result<(), ApiError> {
    let stamp = |ms: i64| format_amz_date(ms);
    if let Some(expires) = parts.expires_s {
        if now_ms > signed_ms + expires * 1000 {
            return Err(ApiError::InvalidSignature(format!(
                "Signature expired: {} is now earlier than {} ({} - {expires} sec.)",
                parts.amz_date,
                stamp(now_ms - expires * 1000),
                stamp(now_ms)
            )));
        }
    }
    if signed_ms < now_ms - SKEW_MAX_MS && parts.expires_s.is_none() {
        return Err(ApiError::InvalidSignature(format!(
            "Signature expired: {} is now earlier than {} ({} - 5 min.)",
            parts.amz_date,
            stamp(now_ms - SKEW_MAX_MS),
            stamp(now_ms)
        )));
    }
    if signed_ms > now_ms + SKEW_MAX_MS {
        return Err(ApiError::InvalidSignature(format!(
            "Signature not yet current: {} is still later than {} ({} + 5 min.)",
            parts.amz_date,
            stamp(now_ms + SKEW_MAX_MS),
            stamp(now_ms)
        )));
    }
    Ok(())
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let step = |key: &[u8], msg: &str| -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(msg.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    let k = step(format!("AWS4{secret}").as_bytes(), date);
    let k = step(&k, region);
    let k = step(&k, service);
    step(&k, "aws4_request")
}

fn parse(req: &Request) -> Result<Parts, ApiError> {
    let header =
        req.headers.get(http::header::AUTHORIZATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match header {
        Some(h) => parse_header(&h, req.headers),
        None => parse_query(req.query.unwrap_or("")),
    }
}

fn incomplete(what: &str, value: &str) -> ApiError {
    ApiError::IncompleteSignature(format!("{what} Authorization={value}"))
}

/// `AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request, SignedHeaders=a;b,
/// Signature=<hex>`.
fn parse_header(value: &str, headers: &HeaderMap) -> Result<Parts, ApiError> {
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(&format!("Unsupported AWS 'algorithm': '{algorithm}'."), value));
    }
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for field in rest.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        match field.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(incomplete(&format!("'{field}' not a valid key=value pair (missing equal-sign)."), value)),
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(incomplete("Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.", value));
    };
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("Authorization header requires existence of a 'X-Amz-Date' header.", value))?;
    let (access_key_id, date, region, service) = parse_credential(credential)?;
    Ok(Parts {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').map(str::to_owned).collect(),
        signature: signature.to_owned(),
        amz_date: amz_date.to_owned(),
        expires_s: None,
        query_form: false,
    })
}

fn parse_query(query: &str) -> Result<Parts, ApiError> {
    let params = query_params(query);
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let missing = |name: &str| {
        ApiError::IncompleteSignature(format!(
            "AWS query-string parameters must include '{name}'. Re-examine the query-string parameters."
        ))
    };
    let algorithm = get("X-Amz-Algorithm").ok_or_else(|| missing("X-Amz-Algorithm"))?;
    if algorithm != ALGORITHM {
        return Err(ApiError::IncompleteSignature(format!("Unsupported AWS 'algorithm': '{algorithm}'.")));
    }
    let credential = get("X-Amz-Credential").ok_or_else(|| missing("X-Amz-Credential"))?;
    let (access_key_id, date, region, service) = parse_credential(credential)?;
    let expires_s = match get("X-Amz-Expires") {
        Some(e) => Some(e.parse::<i64>().ok().filter(|e| (0..=604_800).contains(e)).ok_or_else(|| {
            ApiError::IncompleteSignature(format!("X-Amz-Expires must be between 0 and 604800 seconds; got '{e}'."))
        })?),
        None => None,
    };
    Ok(Parts {
        access_key_id,
        date,
        region,
        service,
        signed_headers: get("X-Amz-SignedHeaders")
            .ok_or_else(|| missing("X-Amz-SignedHeaders"))?
            .split(';')
            .map(str::to_owned)
            .collect(),
        signature: get("X-Amz-Signature").ok_or_else(|| missing("X-Amz-Signature"))?.to_owned(),
        amz_date: get("X-Amz-Date").ok_or_else(|| missing("X-Amz-Date"))?.to_owned(),
        expires_s,
        query_form: true,
    })
}

/// `<access key>/<YYYYMMDD>/<region>/<service>/aws4_request`.
fn parse_credential(credential: &str) -> Result<(String, String, String, String), ApiError> {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [key, date, region, service, "aws4_request"] if !key.is_empty() => {
            Ok((key.to_string(), date.to_string(), region.to_string(), service.to_string()))
        }
        [_, _, _, _, terminator] => Err(ApiError::IncompleteSignature(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
        ))),
        _ => Err(ApiError::IncompleteSignature(format!(
            "Credential should be scoped to a valid region, service and terminator: '{credential}' is malformed \
             (<key>/<date>/<region>/<service>/aws4_request)."
        ))),
    }
}

/// Query parameters, percent-decoded (`+` is a space), in order.
fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_digit(b[i + 1]), hex_digit(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes every byte but the unreserved ones (`A-Z a-z 0-9 - _ . ~`) and those in `safe`.
fn uri_encode(s: &str, safe: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) || safe.contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// RFC 3986 dot-segment removal, as botocore's `normalize_url_path` does; empty is `/`.
fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut joined = format!("/{}", out.join("/"));
    if path.ends_with('/') && joined != "/" {
        joined.push('/');
    }
    joined
}

fn canonical_request(req: &Request, parts: &Parts) -> Result<Vec<u8>, ApiError> {
    let path = uri_encode(&normalize_path(req.path), b"/");
    let mut params: Vec<(String, String)> = query_params(req.query.unwrap_or(""))
        .into_iter()
        .filter(|(k, _)| !(parts.query_form && k == "X-Amz-Signature"))
        .map(|(k, v)| (uri_encode(&k, b""), uri_encode(&v, b"")))
        .collect();
    params.sort();
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut headers = String::new();
    for name in &parts.signed_headers {
        let values: Vec<String> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        let values = match (values.is_empty(), name.as_str(), req.authority) {
            // HTTP/2 has no Host header: the JS SDK signs `:authority`, others `host`.
            (true, "host" | ":authority", Some(authority)) => vec![authority.to_owned()],
            (true, _, _) => {
                return Err(ApiError::InvalidSignature(format!(
                    "The request does not carry the signed header '{name}'."
                )))
            }
            _ => values,
        };
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let body_hash = hex(&Sha256::digest(req.body));
    let payload = match req.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()) {
        Some("UNSIGNED-PAYLOAD") => "UNSIGNED-PAYLOAD".to_owned(),
        Some(claimed) if !claimed.eq_ignore_ascii_case(&body_hash) => {
            return Err(ApiError::InvalidSignature(
                "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
            ))
        }
        _ => body_hash,
    };
    let text = format!(
        "{}\n{path}\n{}\n{headers}\n{}\n{payload}",
        req.method,
        query.join("&"),
        parts.signed_headers.join(";")
    );
    Ok(text.into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// `YYYYMMDDTHHMMSSZ` to epoch ms.
fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || !s.is_ascii() || s.as_bytes()[8] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let iso = format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15]);
    crate::time::parse_rfc3339_ms(&iso)
}

fn format_amz_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[StaticKey] = &[StaticKey("OTHER", "x"), StaticKey::EXAMPLE];
    /// 2015-08-30T12:36:00Z, the date of the requests below.
    const SIGNED_AT: i64 = 1_440_938_160_000;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn kinesis_headers(signature: &str) -> HeaderMap {
        headers(&[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "Kinesis_20131202.DescribeStreamSummary"),
            ("host", "127.0.0.1:4567"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, \
                     SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={signature}"
                ),
            ),
        ])
    }

    const KINESIS_SIGNATURE: &str = "1a35a6f1c68b97c4572f9deeb6782e898d0365655554da163abc4f8c00e64f29";

    fn request<'a>(h: &'a HeaderMap, body: &'a [u8]) -> Request<'a> {
        Request { method: "POST", path: "/", query: None, headers: h, authority: None, body }
    }

    #[test]
    fn aws_published_example_verifies() {
        // AWS's SigV4 example (IAM ListUsers), as botocore signs it.
        let h = headers(&[
            ("content-type", "application/x-www-form-urlencoded; charset=utf-8"),
            ("host", "iam.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, \
                 Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            ),
        ]);
        let req = Request {
            method: "GET",
            path: "/",
            query: Some("Action=ListUsers&Version=2010-05-08"),
            headers: &h,
            authority: None,
            body: b"",
        };
        assert_eq!(verify(&req, KEYS, "us-east-1", "iam", SIGNED_AT + 1000), Ok(1));
    }

    #[test]
    fn a_botocore_kinesis_request_verifies_and_every_tamper_fails() {
        let body = br#"{"StreamName":"s1"}"#;
        let h = kinesis_headers(KINESIS_SIGNATURE);
        assert_eq!(verify(&request(&h, body), KEYS, "us-east-1", "kinesis", SIGNED_AT), Ok(1));
        let kind = |r: Result<usize, ApiError>| r.unwrap_err().type_name();
        // Another body, a signed header changed, a wrong signature, another key.
        assert_eq!(
            kind(verify(&request(&h, br#"{"StreamName":"s2"}"#), KEYS, "us-east-1", "kinesis", SIGNED_AT)),
            "InvalidSignatureException"
        );
        let mut changed = h.clone();
        changed.insert("x-amz-target", "Kinesis_20131202.DeleteStream".parse().unwrap());
        assert_eq!(
            kind(verify(&request(&changed, body), KEYS, "us-east-1", "kinesis", SIGNED_AT)),
            "InvalidSignatureException"
        );
        let wrong = kinesis_headers(&KINESIS_SIGNATURE.replace('1', "2"));
        assert_eq!(
            kind(verify(&request(&wrong, body), KEYS, "us-east-1", "kinesis", SIGNED_AT)),
            "InvalidSignatureException"
        );
        let other = [StaticKey("AKIDEXAMPLE", "not-the-secret")];
        assert_eq!(
            kind(verify(&request(&h, body), &other, "us-east-1", "kinesis", SIGNED_AT)),
            "InvalidSignatureException"
        );
        let unknown = [StaticKey("SOMEONE", "x")];
        assert_eq!(
            kind(verify(&request(&h, body), &unknown, "us-east-1", "kinesis", SIGNED_AT)),
            "UnrecognizedClientException"
        );
        // Another region or service than the daemon's and the route's.
        assert_eq!(
            kind(verify(&request(&h, body), KEYS, "eu-west-1", "kinesis", SIGNED_AT)),
            "InvalidSignatureException"
        );
        assert_eq!(
            kind(verify(&request(&h, body), KEYS, "us-east-1", "firehose", SIGNED_AT)),
            "InvalidSignatureException"
        );
        // A payload hash header that is not the body's.
        let mut hashed = h.clone();
        hashed.insert("x-amz-content-sha256", "00".repeat(32).parse().unwrap());
        let e = verify(&request(&hashed, body), KEYS, "us-east-1", "kinesis", SIGNED_AT).unwrap_err();
        assert!(e.message().contains("x-amz-content-sha256"), "{e:?}");
    }

    #[test]
    fn the_time_window_is_five_minutes() {
        let body = br#"{"StreamName":"s1"}"#;
        let h = kinesis_headers(KINESIS_SIGNATURE);
        let at = |now| verify(&request(&h, body), KEYS, "us-east-1", "kinesis", now);
        assert!(at(SIGNED_AT + SKEW_MAX_MS).is_ok());
        assert!(at(SIGNED_AT - SKEW_MAX_MS).is_ok());
        let e = at(SIGNED_AT + 6 * 60_000).unwrap_err();
        assert_eq!(
            (e.type_name(), e.message()),
            (
                "InvalidSignatureException",
                "Signature expired: 20150830T123600Z is now earlier than 20150830T123700Z (20150830T124200Z - 5 min.)"
            )
        );
        let e = at(SIGNED_AT - 6 * 60_000).unwrap_err();
        assert!(e.message().starts_with("Signature not yet current"), "{e:?}");
    }

    #[test]
    fn the_query_string_form_verifies() {
        let query = "a=b%20c&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2F\
                     kinesis%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=300&X-Amz-SignedHeaders=\
                     content-type%3Bhost%3Bx-amz-target&X-Amz-Signature=\
                     8eafdcb6261659c000d8b2dc2a0aff5194560576da72572dce48ad25cd960870";
        let h = headers(&[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "Kinesis_20131202.ListStreams"),
        ]);
        let req = Request {
            method: "POST",
            path: "/",
            query: Some(query),
            headers: &h,
            authority: Some("127.0.0.1:4567"),
            // botocore's presigner moves a body's members into the query string and signs an
            // empty payload.
            body: b"",
        };
        assert_eq!(verify(&req, KEYS, "us-east-1", "kinesis", SIGNED_AT + 299_000), Ok(1));
        let e = verify(&req, KEYS, "us-east-1", "kinesis", SIGNED_AT + 301_000).unwrap_err();
        assert!(e.message().starts_with("Signature expired"), "{e:?}");
    }

    #[test]
    fn host_must_be_signed() {
        let h = headers(&[
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, \
                 SignedHeaders=x-amz-date, Signature=00",
            ),
        ]);
        let e = verify(&request(&h, b"{}"), KEYS, "us-east-1", "kinesis", SIGNED_AT).unwrap_err();
        assert_eq!(e.type_name(), "InvalidSignatureException");
        assert!(e.message().contains("'Host'"), "{e:?}");
    }

    #[test]
    fn malformed_headers_are_incomplete() {
        let kind = |auth: &str| {
            let h = headers(&[("authorization", auth), ("x-amz-date", "20150830T123600Z")]);
            verify(&request(&h, b"{}"), KEYS, "us-east-1", "kinesis", SIGNED_AT).unwrap_err().type_name()
        };
        assert_eq!(kind("AWS4-HMAC-SHA1 Credential=a"), "IncompleteSignatureException");
        assert_eq!(
            kind("AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=00"),
            "IncompleteSignatureException"
        );
        assert_eq!(kind("AWS4-HMAC-SHA256 Credential"), "IncompleteSignatureException");
        assert_eq!(
            kind("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, SignedHeaders=host"),
            "IncompleteSignatureException"
        );
    }

    #[test]
    fn http2_requests_may_sign_the_authority() {
        // The JS SDK over HTTP/2 signs `:authority` (there is no Host header).
        let h = headers(&[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "Kinesis_20131202.DescribeStreamSummary"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kinesis/aws4_request, \
                 SignedHeaders=:authority;content-type;x-amz-date;x-amz-target, \
                 Signature=cc132a3176043b89ee7caf730b342175d819af186c93b64eb4b67bfe54ee7dec",
            ),
        ]);
        let mut req = request(&h, b"{}");
        req.authority = Some("127.0.0.1:4567");
        assert_eq!(verify(&req, KEYS, "us-east-1", "kinesis", SIGNED_AT).unwrap(), 1);
        req.authority = Some("127.0.0.1:4568");
        assert_eq!(
            verify(&req, KEYS, "us-east-1", "kinesis", SIGNED_AT).unwrap_err().type_name(),
            "InvalidSignatureException"
        );
        req.authority = None;
        assert_eq!(
            verify(&req, KEYS, "us-east-1", "kinesis", SIGNED_AT).unwrap_err().type_name(),
            "InvalidSignatureException"
        );
    }

    #[test]
    fn push_auth_signs_and_verifies() {
        let nonce = [9u8; 32];
        let auth = PushAuth { nonce: &nonce, access_key_id: "AKIDEXAMPLE", date_ms: SIGNED_AT, client: "cli" };
        let sig = auth.sign(StaticKey::EXAMPLE.1, "us-east-1");
        assert_eq!(sig.len(), 32);
        assert_eq!(auth.verify(KEYS, "us-east-1", SIGNED_AT + 1000, &sig).unwrap(), 1);
        let kind = |a: &PushAuth, now: i64, sig: &[u8]| a.verify(KEYS, "us-east-1", now, sig).unwrap_err().type_name();
        assert_eq!(kind(&auth, SIGNED_AT + SKEW_MAX_MS + 1, &sig), "InvalidSignatureException");
        assert_eq!(kind(&auth, SIGNED_AT, &sig[..31]), "InvalidSignatureException");
        assert_eq!(kind(&PushAuth { client: "other", ..auth }, SIGNED_AT, &sig), "InvalidSignatureException");
        let other_nonce = [8u8; 32];
        assert_eq!(kind(&PushAuth { nonce: &other_nonce, ..auth }, SIGNED_AT, &sig), "InvalidSignatureException");
        assert_eq!(kind(&PushAuth { access_key_id: "NOPE", ..auth }, SIGNED_AT, &sig), "UnrecognizedClientException");
        assert!(auth.verify(KEYS, "eu-west-1", SIGNED_AT, &sig).is_err(), "the region is in the key");
        let far = PushAuth { date_ms: i64::MIN, ..auth };
        assert_eq!(kind(&far, i64::MAX, &sig), "InvalidSignatureException");
    }

    #[test]
    fn paths_and_dates_are_canonical() {
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/a/./b/../c/"), "/a/c/");
        assert_eq!(uri_encode("/a b/%41", b"/"), "/a%20b/%2541");
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
        assert_eq!(format_amz_date(SIGNED_AT), "20150830T123600Z");
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(SIGNED_AT));
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
        assert_eq!(parse_amz_date("20150\u{e9}0T123600Z"), None, "16 bytes, not ASCII");
    }
}
