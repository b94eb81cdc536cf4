//! `sluice bench produce`: PutRecords load against any Kinesis-compatible endpoint.
//!
//! `produce` drives PutRecords from concurrent producers (one keep-alive HTTP/1.1 connection each)
//! and counts only acknowledged records. With `--disk-baseline DIR` it first measures, in the same
//! run, what the disk itself sustains for durable sequential appends of the same batch size
//! (write + fdatasync), so the figure can be reported as a ratio on a noisy machine.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// Kinesis endpoint.
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    /// Stream to write (created with --shards if missing).
    #[arg(long, default_value = "sluice-bench")]
    pub stream: String,
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Concurrent producers, each with its own connection.
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Records per PutRecords call.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Distinct partition keys.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// How long to produce, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Also measure the disk's durable sequential append rate in this directory first.
    #[arg(long)]
    pub disk_baseline: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

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

/// One HTTP/1.1 connection speaking the Kinesis JSON protocol.
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
        let req = Request::post("/")
            .header("host", &self.host)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("Kinesis_20131202.{op}"))
            .header("authorization", "AWS4-HMAC-SHA256 Credential=bench/20240101/us-east-1/kinesis/aws4_request")
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

async fn ensure_stream(ep: &Endpoint, args: &ProduceArgs) -> anyhow::Result<()> {
    let mut c = Conn::open(ep).await.context("connecting to the endpoint")?;
    let (status, v) = c.json("DescribeStreamSummary", json!({"StreamName": args.stream})).await?;
    if status != 200 {
        let (status, v) = c.json("CreateStream", json!({"StreamName": args.stream, "ShardCount": args.shards})).await?;
        if status != 200 && v["__type"] != "ResourceInUseException" {
            bail!("CreateStream failed: {status} {v}");
        }
    } else if v["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
        return Ok(());
    }
    for _ in 0..600 {
        let (_, v) = c.json("DescribeStreamSummary", json!({"StreamName": args.stream})).await?;
        if v["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("stream {} did not become ACTIVE", args.stream)
}

fn put_records_body(args: &ProduceArgs, producer: usize) -> Bytes {
    let data: Vec<u8> = (0..args.record_size).map(|i| (i * 31 + producer * 7) as u8).collect();
    let data = base64::engine::general_purpose::STANDARD.encode(data);
    let records: Vec<Value> = (0..args.batch)
        .map(|i| json!({"Data": data, "PartitionKey": format!("key-{}", (producer * args.batch + i) % args.keys.max(1))}))
        .collect();
    Bytes::from(json!({"StreamName": args.stream, "Records": records}).to_string())
}

#[derive(Default)]
struct ProducerResult {
    acked: u64,
    failed: u64,
    errors: u64,
    latencies_us: Vec<u64>,
}

async fn producer(ep: &Endpoint, args: &ProduceArgs, id: usize, until: Instant) -> anyhow::Result<ProducerResult> {
    let body = put_records_body(args, id);
    let mut conn = Conn::open(ep).await?;
    let mut r = ProducerResult::default();
    while Instant::now() < until {
        let started = Instant::now();
        let (status, resp) = conn.call("PutRecords", body.clone()).await?;
        r.latencies_us.push(started.elapsed().as_micros() as u64);
        if status != 200 {
            r.errors += 1;
            continue;
        }
        let failed = memchr_failed_count(&resp);
        r.failed += failed;
        r.acked += args.batch as u64 - failed;
    }
    Ok(r)
}

/// Reads `"FailedRecordCount":N` without parsing the whole response.
fn memchr_failed_count(resp: &[u8]) -> u64 {
    let key = b"\"FailedRecordCount\":";
    resp.windows(key.len())
        .position(|w| w == key)
        .map(|p| {
            resp[p + key.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
        })
        .unwrap_or(0)
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Durable sequential appends of `chunk_bytes` (write + fdatasync) for `duration`: MB/s.
fn disk_baseline(dir: &std::path::Path, chunk_bytes: usize, duration: Duration) -> anyhow::Result<(f64, u64)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("sluice-bench-disk-baseline.tmp");
    let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
    let chunk = vec![0x5a_u8; chunk_bytes];
    let started = Instant::now();
    let mut offset = 0u64;
    let mut syncs_us = Vec::new();
    while started.elapsed() < duration {
        let t = Instant::now();
        file.write_all_at(&chunk, offset)?;
        file.sync_data()?;
        syncs_us.push(t.elapsed().as_micros() as u64);
        offset += chunk_bytes as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    syncs_us.sort_unstable();
    Ok((offset as f64 / secs / 1e6, percentile(&syncs_us, 0.99)))
}

pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let ep = parse_endpoint(&args.endpoint)?;
    let payload_per_call = args.batch * args.record_size;
    let baseline = match &args.disk_baseline {
        Some(dir) => {
            let dir = dir.clone();
            let secs = args.seconds.clamp(1, 10);
            Some(
                tokio::task::spawn_blocking(move || disk_baseline(&dir, payload_per_call, Duration::from_secs(secs)))
                    .await??,
            )
        }
        None => None,
    };
    ensure_stream(&ep, &args).await?;
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for id in 0..args.producers {
        let args = args.clone();
        let ep = Endpoint { host: ep.host.clone(), port: ep.port };
        tasks.push(tokio::spawn(async move { producer(&ep, &args, id, until).await }));
    }
    let mut total = ProducerResult::default();
    for t in tasks {
        let r = t.await??;
        total.acked += r.acked;
        total.failed += r.failed;
        total.errors += r.errors;
        total.latencies_us.extend(r.latencies_us);
    }
    let secs = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let rps = total.acked as f64 / secs;
    let mbps = rps * args.record_size as f64 / 1e6;
    let l = &total.latencies_us;
    let summary = json!({
        "endpoint": args.endpoint,
        "producers": args.producers,
        "batch": args.batch,
        "record_size": args.record_size,
        "seconds": secs,
        "records_acked": total.acked,
        "records_failed": total.failed,
        "call_errors": total.errors,
        "records_per_s": rps,
        "mb_per_s": mbps,
        "call_latency_us": {"p50": percentile(l, 0.5), "p90": percentile(l, 0.9), "p99": percentile(l, 0.99), "max": l.last().copied().unwrap_or(0)},
        "disk_baseline": baseline.map(|(mb, p99)| json!({"mb_per_s": mb, "fdatasync_p99_us": p99, "ratio": mbps / mb})),
    });
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{summary:#}")?;
    } else {
        writeln!(
            out,
            "produce: {} producers, PutRecords of {} x {} B, {:.1} s",
            args.producers, args.batch, args.record_size, secs
        )?;
        writeln!(
            out,
            "  acknowledged {} records ({} failed, {} call errors)",
            total.acked, total.failed, total.errors
        )?;
        writeln!(out, "  throughput   {rps:.0} records/s, {mbps:.1} MB/s of record data")?;
        writeln!(
            out,
            "  call latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(l, 0.5) as f64 / 1e3,
            percentile(l, 0.9) as f64 / 1e3,
            percentile(l, 0.99) as f64 / 1e3,
            l.last().copied().unwrap_or(0) as f64 / 1e3
        )?;
        if let Some((mb, p99)) = baseline {
            writeln!(out, "  disk baseline {mb:.1} MB/s durable sequential appends of {payload_per_call} B (fdatasync p99 {:.2} ms)", p99 as f64 / 1e3)?;
            writeln!(out, "  ratio        {:.2} of the disk's durable append bandwidth", mbps / mb)?;
        }
    }
    Ok(())
}
