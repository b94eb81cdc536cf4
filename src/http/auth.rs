//! Request signatures as AWS's front ends check them before any operation runs.
//!
//! `[auth] mode = "signed"` (the default) requires a well-formed SigV4 signature, in the
//! `Authorization` header or in the query string (`X-Amz-Algorithm`, `X-Amz-Credential`,
//! `X-Amz-Signature`, `X-Amz-SignedHeaders`, `X-Amz-Date`), and answers as AWS does when it is
//! missing or incomplete. The signature itself is not verified and any credentials are accepted.
//! `"none"` accepts anything. `"sigv4"` runs this check first, then verifies the signature itself
//! once the body is read ([`super::sigv4`]).

use http::HeaderMap;

use crate::config::AuthMode;
use crate::protocol::error::ApiError;

/// AWS's verdict on a request's signature, before its operation runs.
pub fn check(mode: AuthMode, headers: &HeaderMap, query: Option<&str>) -> Result<(), ApiError> {
    if mode == AuthMode::None {
        return Ok(());
    }
    let header = headers.get(http::header::AUTHORIZATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let dated = headers.contains_key("x-amz-date") || headers.contains_key(http::header::DATE);
    check_parts(header.as_deref(), dated, query)
}

/// The same, on the parts that matter: the `Authorization` header, whether an `X-Amz-Date` or
/// `Date` header is there, and the query string. Pure, for fuzzing.
pub fn check_parts(header: Option<&str>, dated: bool, query: Option<&str>) -> Result<(), ApiError> {
    let params: Vec<(&str, &str)> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let has_param = |name: &str| params.iter().any(|(k, _)| *k == name);
    let has_value = |name: &str| params.iter().any(|(k, v)| *k == name && !v.is_empty());
    match (header, has_param("X-Amz-Algorithm")) {
        (Some(_), true) => Err(ApiError::InvalidSignature(
            "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.".into(),
        )),
        (None, false) => Err(ApiError::MissingAuthenticationToken("Missing Authentication Token".into())),
        (None, true) => {
            let missing: String =
                ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date"]
                    .iter()
                    .filter(|p| !has_value(p))
                    .map(|p| format!("AWS query-string parameters must include '{p}'. "))
                    .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(ApiError::IncompleteSignature(format!("{missing}Re-examine the query-string parameters.")))
            }
        }
        (Some(value), false) => {
            // `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`
            let fields: Vec<&str> = value
                .split_once(' ')
                .map(|(_, rest)| rest)
                .unwrap_or("")
                .split([',', ' '])
                .filter(|f| !f.is_empty())
                .collect();
            let has = |name: &str| fields.iter().any(|f| f.split_once('=').is_some_and(|(k, _)| k == name));
            let mut problems = String::new();
            for p in ["Credential", "Signature", "SignedHeaders"] {
                if !has(p) {
                    problems.push_str(&format!("Authorization header requires '{p}' parameter. "));
                }
            }
            if !dated {
                problems
                    .push_str("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ");
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(ApiError::IncompleteSignature(format!("{problems}Authorization={value}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn signed_mode_wants_a_complete_signature() {
        let m = AuthMode::Signed;
        let e = check(m, &headers(&[]), None).unwrap_err();
        assert_eq!(
            (e.type_name(), e.message()),
            ("MissingAuthenticationTokenException", "Missing Authentication Token")
        );
        let e = check(m, &headers(&[("authorization", "X")]), None).unwrap_err();
        assert_eq!(
            e.message(),
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. \
             Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a \
             'X-Amz-Date' or a 'Date' header. Authorization=X"
        );
        let e = check(m, &headers(&[("authorization", "AWS4- Signature=b, Credential=a"), ("date", "x")]), None)
            .unwrap_err();
        assert_eq!(
            e.message(),
            "Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4- Signature=b, Credential=a"
        );
        let ok = headers(&[
            ("authorization", "AWS4-HMAC-SHA256 Credential=x/20261201/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=ab"),
            ("x-amz-date", "20261201T000000Z"),
        ]);
        assert!(check(m, &ok, None).is_ok());
        assert_eq!(check(m, &ok, Some("X-Amz-Algorithm=a")).unwrap_err().type_name(), "InvalidSignatureException");
        let e = check(m, &headers(&[]), Some("X-Amz-Algorithm=a&X-Amz-Date=b")).unwrap_err();
        assert_eq!(
            e.message(),
            "AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include \
             'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the query-string parameters."
        );
        assert!(check(AuthMode::None, &headers(&[]), None).is_ok());
    }
}
