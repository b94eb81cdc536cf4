//! The HTTP endpoint destination: Firehose's request format, sent until the endpoint accepts it
//! or the retry duration runs out.
//!
//! A request is `POST <Url>` with `{requestId, timestamp, records: [{data}]}` (at most
//! [`RECORDS_PER_REQUEST_MAX`] records), the headers `X-Amz-Firehose-Protocol-Version: 1.0`,
//! `X-Amz-Firehose-Request-Id` (the same on every attempt, and after a restart),
//! `X-Amz-Firehose-Source-Arn`, `X-Amz-Firehose-Access-Key` (if configured),
//! `X-Amz-Firehose-Common-Attributes`, JSON content and `Content-Encoding: gzip` when the
//! destination asks for GZIP. Accepted means 200 with the request id echoed. 413 is final; any
//! other answer, or none, is retried after 1 s, doubling up to 2 minutes, until
//! `RetryOptions.DurationInSeconds` has passed; then the records go to the S3 backup as
//! `http-endpoint-failed`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

/// Records in one request, at most (AWS's limit).
pub const RECORDS_PER_REQUEST_MAX: usize = 10_000;

/// Where and how to send.
pub struct Target {
    pub url: String,
    pub access_key: Option<String>,
    pub gzip: bool,
    pub common_attributes: Vec<(String, String)>,
    pub retry_for: Duration,
    pub source_arn: String,
}

impl Target {
    pub fn from_description(d: &Value, access_key: Option<String>, source_arn: String) -> Target {
        let common = d
            .pointer("/RequestConfiguration/CommonAttributes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a["AttributeName"].as_str()?.to_owned(), a["AttributeValue"].as_str()?.to_owned())))
            .collect();
        Target {
            url: d.pointer("/EndpointConfiguration/Url").and_then(Value::as_str).unwrap_or_default().to_owned(),
            access_key,
            gzip: d.pointer("/RequestConfiguration/ContentEncoding").and_then(Value::as_str) == Some("GZIP"),
            common_attributes: common,
            retry_for: Duration::from_secs(
                d.pointer("/RetryOptions/DurationInSeconds").and_then(Value::as_u64).unwrap_or(300),
            ),
            source_arn,
        }
    }
}

/// Why a request was given up.
#[derive(Debug)]
pub struct Failed {
    pub attempts: u32,
    pub code: &'static str,
    pub message: String,
}

/// The request body.
pub fn body(request_id: &str, timestamp_ms: i64, records: &[Vec<u8>]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let recs: Vec<Value> = records.iter().map(|r| json!({"data": b64.encode(r)})).collect();
    serde_json::to_vec(&json!({"requestId": request_id, "timestamp": timestamp_ms, "records": recs}))
        .unwrap_or_default()
}

/// Sends one request until it is accepted, refused for good, or out of retry time.
pub async fn send(t: &Target, request_id: &str, timestamp_ms: i64, records: &[Vec<u8>]) -> Result<u32, Failed> {
    let mut payload = body(request_id, timestamp_ms, records);
    if t.gzip {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = e.write_all(&payload);
        payload = e.finish().unwrap_or_default();
    }
    let payload = Bytes::from(payload);
    let started = Instant::now();
    let mut backoff = Duration::from_secs(1);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = attempt(t, request_id, payload.clone()).await;
        match outcome {
            Ok(()) => return Ok(attempts),
            Err((true, message)) => return Err(Failed { attempts, code: "HttpEndpoint.PayloadTooLarge", message }),
            Err((false, message)) => {
                tracing::warn!(url = %t.url, request_id, attempts, error = %message, "HTTP endpoint delivery failed");
                if started.elapsed() + backoff > t.retry_for {
                    return Err(Failed { attempts, code: "HttpEndpoint.InvalidResponseFromDestination", message });
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(120));
            }
        }
    }
}

/// The TLS connector of `https://` endpoints: the trusted roots are read once.
fn https() -> Result<&'static tokio_rustls::TlsConnector, String> {
    static CONNECTOR: std::sync::OnceLock<Result<tokio_rustls::TlsConnector, String>> = std::sync::OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let roots = crate::kcl::client::trusted_roots().map_err(|e| e.to_string())?;
            Ok(crate::kcl::client::tls_client_config(roots, b"http/1.1").map_err(|e| e.to_string())?.into())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// One attempt: Ok, or (final?, why).
async fn attempt(t: &Target, request_id: &str, payload: Bytes) -> Result<(), (bool, String)> {
    let ep = crate::kcl::client::Endpoint::parse(&t.url).map_err(|e| (true, e.to_string()))?;
    let path = crate::kcl::client::url_path(&t.url);
    let authority = ep.authority();
    let mut req = http::Request::post(path)
        .header("host", &authority)
        .header("content-type", "application/json")
        .header("x-amz-firehose-protocol-version", "1.0")
        .header("x-amz-firehose-request-id", request_id)
        .header("x-amz-firehose-source-arn", &t.source_arn)
        .header("user-agent", concat!("sluice/", env!("CARGO_PKG_VERSION")));
    if let Some(k) = &t.access_key {
        req = req.header("x-amz-firehose-access-key", k);
    }
    if !t.common_attributes.is_empty() {
        let attrs: serde_json::Map<String, Value> =
            t.common_attributes.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        req = req.header("x-amz-firehose-common-attributes", json!({"commonAttributes": attrs}).to_string());
    }
    if t.gzip {
        req = req.header("content-encoding", "gzip");
    }
    let req = req.body(Full::new(payload)).map_err(|e| (true, e.to_string()))?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| format!("connecting to {authority}: {e}"))?;
        let mut sender = if ep.tls {
            let name =
                tokio_rustls::rustls::pki_types::ServerName::try_from(ep.host.clone()).map_err(|e| e.to_string())?;
            let stream = https()?.connect(name, tcp).await.map_err(|e| e.to_string())?;
            crate::kcl::client::http1(stream).await
        } else {
            crate::kcl::client::http1(tcp).await
        }
        .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((status, body))
    };
    // AWS waits up to 3 minutes for an answer.
    let (status, body) = tokio::time::timeout(Duration::from_secs(180), exchange)
        .await
        .map_err(|_| (false, "no answer within 3 minutes".to_owned()))?
        .map_err(|e| (false, e))?;
    if status == 413 {
        return Err((true, "the endpoint answered 413 (payload too large)".into()));
    }
    if status != 200 {
        return Err((
            false,
            format!("the endpoint answered {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])),
        ));
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if v.get("requestId").and_then(Value::as_str) != Some(request_id) {
        return Err((false, "the endpoint's answer does not echo the request id".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_firehose_format() {
        let b: Value = serde_json::from_slice(&body("rid", 7, &[b"a".to_vec(), b"bc".to_vec()])).unwrap();
        assert_eq!(b, json!({"requestId": "rid", "timestamp": 7, "records": [{"data": "YQ=="}, {"data": "YmM="}]}));
        let d = json!({"EndpointConfiguration": {"Url": "http://127.0.0.1:1/x"}, "RetryOptions": {"DurationInSeconds": 0},
                       "RequestConfiguration": {"ContentEncoding": "GZIP",
                           "CommonAttributes": [{"AttributeName": "k", "AttributeValue": "v"}]}});
        let t = Target::from_description(&d, Some("key".into()), "arn".into());
        assert!(t.gzip && t.retry_for.is_zero() && t.common_attributes == [("k".into(), "v".into())]);
    }
}
