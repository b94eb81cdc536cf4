//! A minimal Kinesis JSON client for the load tool: one keep-alive HTTP/1.1 connection.
//!
//! By default requests carry a well-formed signature that is never computed (the servers
//! benchmarked do not verify it), so the client spends nothing on it. An `https://` endpoint, or
//! `SLUICE_BENCH_SIGN=1`, makes the Kinesis calls real clients' calls: SigV4-signed with
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (region `AWS_REGION`, default us-east-1), over
//! TLS trusting `AWS_CA_BUNDLE` for https, as an AWS SDK sends them.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Requests are signed for real, over TLS for an https endpoint.
    signed: Option<SignedEndpoint>,
}

#[derive(Clone)]
struct SignedEndpoint {
    endpoint: crate::kcl::client::Endpoint,
    credentials: crate::kcl::client::Credentials,
    region: String,
}

pub(crate) fn parse_endpoint(url: &str) -> anyhow::Result<Endpoint> {
    let tls = url.starts_with("https://");
    let rest = url.strip_prefix("http://").or(url.strip_prefix("https://")).context("endpoint: http:// or https://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().context("endpoint port")?),
        None => (authority.to_owned(), if tls { 443 } else { 80 }),
    };
    let signed = if tls || std::env::var("SLUICE_BENCH_SIGN").is_ok_and(|v| v == "1") {
        let var = |name: &str| std::env::var(name).with_context(|| format!("a signed benchmark needs {name}"));
        Some(SignedEndpoint {
            endpoint: crate::kcl::client::Endpoint::parse(url)?,
            credentials: crate::kcl::client::Credentials {
                access_key_id: var("AWS_ACCESS_KEY_ID")?,
                secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
                session_token: None,
            },
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        })
    } else {
        None
    };
    Ok(Endpoint { host, port, signed })
}

/// A SigV4-shaped signature: present and well formed, never verified by the servers benchmarked.
pub(crate) const BENCH_AUTHORIZATION: &str =
    "AWS4-HMAC-SHA256 Credential=bench/20240101/us-east-1/kinesis/aws4_request, \
     SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
     Signature=0000000000000000000000000000000000000000000000000000000000000000";
pub(crate) const BENCH_DATE: &str = "20240101T000000Z";

pub(crate) struct Conn {
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    /// A real client's connection (signed, maybe TLS), for Kinesis calls.
    signed: Option<crate::kcl::client::AwsClient>,
    host: String,
}

impl Conn {
    pub(crate) async fn open(ep: &Endpoint) -> anyhow::Result<Conn> {
        let host = format!("{}:{}", ep.host, ep.port);
        if let Some(s) = &ep.signed {
            let client = crate::kcl::client::AwsClient::kinesis(s.endpoint.clone(), &s.region, s.credentials.clone())
                .with_roots(crate::kcl::client::trusted_roots()?)?;
            return Ok(Conn { sender: None, signed: Some(client), host });
        }
        let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port)).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender: Some(sender), signed: None, host })
    }

    pub(crate) async fn call(&mut self, op: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        if let Some(client) = &self.signed {
            return client.call_raw(op, body).await.map_err(|e| anyhow::anyhow!("{op}: {e}"));
        }
        self.call_target(&format!("Kinesis_20131202.{op}"), "application/x-amz-json-1.1", body).await
    }

    /// A Kinesis call in CBOR (`application/x-amz-cbor-1.1`); unsigned endpoints only.
    pub(crate) async fn call_cbor(&mut self, op: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        if self.signed.is_some() {
            anyhow::bail!("--cbor is for unsigned endpoints");
        }
        self.call_target(&format!("Kinesis_20131202.{op}"), "application/x-amz-cbor-1.1", body).await
    }

    /// A call to any service: its full `X-Amz-Target` and content type.
    pub(crate) async fn call_target(
        &mut self,
        target: &str,
        content_type: &'static str,
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        let req = Request::post("/")
            .header("host", &self.host)
            .header("content-type", content_type)
            .header("x-amz-target", target)
            // Peers (and Sluice in its default auth mode) check that a signature is present.
            .header("x-amz-date", BENCH_DATE)
            .header("authorization", BENCH_AUTHORIZATION)
            .body(Full::new(body))?;
        let sender = self.sender.as_mut().context("a signed benchmark speaks Kinesis only")?;
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    pub(crate) async fn json(&mut self, op: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let (status, b) = self.call(op, Bytes::from(body.to_string())).await?;
        Ok((status, serde_json::from_slice(&b).unwrap_or(Value::Null)))
    }
}

/// The text of the daemon's own `/metrics`, if the endpoint is a Sluice.
pub(crate) async fn metrics_text(ep: &Endpoint) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port)).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp)).await.ok()?;
    tokio::spawn(conn);
    let req = Request::get("/metrics").header("host", format!("{}:{}", ep.host, ep.port)).body(Empty::new()).ok()?;
    let resp = sender.send_request(req).await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}

/// One sample of the daemon's `/metrics` (the line `<series> <value>`), if there is one.
pub(crate) async fn metric(ep: &Endpoint, series: &str) -> Option<f64> {
    let text = metrics_text(ep).await?;
    let want = format!("{series} ");
    text.lines().find_map(|l| l.strip_prefix(&want)).and_then(|v| v.trim().parse().ok())
}

/// The daemon's CPU seconds from its own `/metrics`, if the endpoint is a Sluice.
pub(crate) async fn daemon_cpu_seconds(ep: &Endpoint) -> Option<f64> {
    metric(ep, "sluice_process_cpu_seconds_total").await
}

/// Creates the stream if needed and waits until it is ACTIVE.
/// Seals the stream's records at rest from now on (waits out UPDATING).
pub(crate) async fn start_encryption(ep: &Endpoint, stream: &str) -> anyhow::Result<()> {
    let mut c = Conn::open(ep).await.context("connecting to the endpoint")?;
    let body = serde_json::json!({"StreamName": stream, "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"});
    let (status, v) = c.json("StartStreamEncryption", body).await?;
    if status != 200 {
        anyhow::bail!("StartStreamEncryption failed: {status} {v}");
    }
    ensure_stream(ep, stream, 0).await
}

pub(crate) async fn ensure_stream(ep: &Endpoint, stream: &str, shards: u32) -> anyhow::Result<()> {
    let mut c = Conn::open(ep).await.context("connecting to the endpoint")?;
    let (status, v) = c.json("DescribeStreamSummary", serde_json::json!({"StreamName": stream})).await?;
    if status != 200 {
        let (status, v) =
            c.json("CreateStream", serde_json::json!({"StreamName": stream, "ShardCount": shards})).await?;
        if status != 200 && v["__type"] != "ResourceInUseException" {
            anyhow::bail!("CreateStream failed: {status} {v}");
        }
    } else if v["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
        return Ok(());
    }
    for _ in 0..600 {
        let (_, v) = c.json("DescribeStreamSummary", serde_json::json!({"StreamName": stream})).await?;
        if v["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("stream {stream} did not become ACTIVE")
}
