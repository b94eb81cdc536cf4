//! A minimal Kinesis JSON client for the load tool: one keep-alive HTTP/1.1 connection.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
}

pub(crate) fn parse_endpoint(url: &str) -> anyhow::Result<Endpoint> {
    let rest = url.strip_prefix("http://").context("only http:// endpoints are supported")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().context("endpoint port")?),
        None => (authority.to_owned(), 80),
    };
    Ok(Endpoint { host, port })
}

/// A SigV4-shaped signature: present and well formed, never verified by the servers benchmarked.
pub(crate) const BENCH_AUTHORIZATION: &str =
    "AWS4-HMAC-SHA256 Credential=bench/20240101/us-east-1/kinesis/aws4_request, \
     SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
     Signature=0000000000000000000000000000000000000000000000000000000000000000";
pub(crate) const BENCH_DATE: &str = "20240101T000000Z";

pub(crate) struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    pub(crate) async fn open(ep: &Endpoint) -> anyhow::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port)).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender, host: format!("{}:{}", ep.host, ep.port) })
    }

    pub(crate) async fn call(&mut self, op: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        self.call_target(&format!("Kinesis_20131202.{op}"), "application/x-amz-json-1.1", body).await
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
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
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
