//! `sluice bench queues`: records/s received and acknowledged through a Kinesis queue by 1, 4 and
//! 16 consumers, and the time from a put to its delivery to a parked long poll, against the plain
//! ingest rate (PutRecords into the stream) and the PutRecord time measured in the same run.
//!
//! The records are put once into a fresh ON_DEMAND stream. Each consumer count then drains its own
//! queue, reading the stream from TRIM_HORIZON, over as many connections, each receiving up to 10
//! records a call and acknowledging them. The latency queue starts at LATEST: a receive waits on
//! one connection while another puts a single record.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use serde_json::{json, Value};

use super::conn::{parse_endpoint, Conn};
use super::percentile;

#[derive(Debug, Clone, clap::Args)]
pub struct QueuesArgs {
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    /// Records put, then received and acknowledged once per consumer count.
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    /// Bytes per record.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Consumer counts to measure, each with its own queue.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub consumers: Vec<usize>,
    /// Put-to-receive latency samples.
    #[arg(long, default_value_t = 50)]
    pub latency_samples: usize,
    #[arg(long)]
    pub json: bool,
}

/// The queues' visibility timeout.
const VISIBILITY_S: u64 = 60;
/// Empty receives (of 1 s each) in a row after which a consumer gives up: longer than the
/// visibility timeout, so that records whose acknowledgement failed have come back by then.
const STALLED_RECEIVES: usize = 90;

async fn kinesis(c: &mut Conn, op: &str, body: Value) -> anyhow::Result<Value> {
    let (status, b) = c
        .call_target(&format!("Kinesis_20131202.{op}"), "application/x-amz-json-1.1", Bytes::from(body.to_string()))
        .await?;
    if status != 200 {
        anyhow::bail!("{op}: {status} {}", String::from_utf8_lossy(&b));
    }
    Ok(serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn base64(data: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data)
}

/// `size` bytes beginning with `prefix`.
fn payload(prefix: &str, size: usize) -> Vec<u8> {
    let mut data = vec![b'.'; size];
    let n = prefix.len().min(size);
    data[..n].copy_from_slice(&prefix.as_bytes()[..n]);
    data
}

/// Creates an ON_DEMAND stream, waits until it is ACTIVE and answers its ARN.
async fn create_stream(c: &mut Conn, stream: &str) -> anyhow::Result<String> {
    kinesis(c, "CreateStream", json!({"StreamName": stream, "StreamModeDetails": {"StreamMode": "ON_DEMAND"}})).await?;
    for _ in 0..600 {
        let v = kinesis(c, "DescribeStreamSummary", json!({"StreamName": stream})).await?;
        let summary = &v["StreamDescriptionSummary"];
        if summary["StreamStatus"] == "ACTIVE" {
            return summary["StreamARN"].as_str().map(str::to_owned).context("DescribeStreamSummary: no StreamARN");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("stream {stream} did not become ACTIVE")
}

/// Creates a queue reading `stream_arn` from `position`, waits until it is ACTIVE and answers its
/// ARN.
async fn create_queue(c: &mut Conn, name: &str, stream_arn: &str, position: &str) -> anyhow::Result<String> {
    let body = json!({
        "QueueName": name,
        "StreamConfigurationList": [{"StreamARN": stream_arn, "StartingPosition": {"Type": position}}],
        "QueueAttributes": {"VisibilityTimeoutSeconds": VISIBILITY_S},
    });
    let v = kinesis(c, "CreateQueue", body).await?;
    let arn = v["QueueDescription"]["QueueARN"].as_str().map(str::to_owned).context("CreateQueue: no QueueARN")?;
    for _ in 0..600 {
        let v = kinesis(c, "DescribeQueue", json!({"QueueARN": arn})).await?;
        if v["QueueDescription"]["QueueStatus"] == "ACTIVE" {
            return Ok(arn);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("queue {name} did not become ACTIVE")
}

/// PutRecords of `records` records of `size` bytes, 500 a call; answers the seconds taken.
async fn put_all(c: &mut Conn, stream: &str, records: usize, size: usize) -> anyhow::Result<f64> {
    let data = base64(&payload("bench", size));
    let t = Instant::now();
    let mut sent = 0;
    while sent < records {
        let n = 500.min(records - sent);
        let batch: Vec<Value> =
            (sent..sent + n).map(|i| json!({"Data": data, "PartitionKey": format!("p{i}")})).collect();
        let v = kinesis(c, "PutRecords", json!({"StreamName": stream, "Records": batch})).await?;
        if v["FailedRecordCount"] != 0 {
            anyhow::bail!("PutRecords: {v}");
        }
        sent += n;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// What the consumers of one queue did.
#[derive(Default)]
struct Drained {
    acknowledged: usize,
    failed: usize,
    receives: usize,
    /// When the acknowledgements of all consumers together reached the target.
    done: Option<Instant>,
}

impl Drained {
    fn merge(&mut self, other: Drained) {
        self.acknowledged += other.acknowledged;
        self.failed += other.failed;
        self.receives += other.receives;
        self.done = self.done.max(other.done);
    }
}

/// Receives and acknowledges until `total` (shared by all consumers of the queue) reaches `target`.
async fn consume(mut c: Conn, queue: String, target: usize, total: Arc<AtomicUsize>) -> anyhow::Result<Drained> {
    let mut out = Drained::default();
    let mut empty = 0;
    let receive = json!({"QueueARN": queue, "Limit": 10, "WaitTimeSeconds": 1});
    while total.load(Ordering::Relaxed) < target {
        let v = kinesis(&mut c, "ReceiveQueueRecords", receive.clone()).await?;
        out.receives += 1;
        let entries: Vec<Value> = v["QueueRecords"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["ReceiptHandle"].as_str())
            .map(|h| json!({"ReceiptHandle": h}))
            .collect();
        if entries.is_empty() {
            empty += 1;
            if empty >= STALLED_RECEIVES {
                anyhow::bail!(
                    "ReceiveQueueRecords: no records for {empty} receives in a row, {} of {target} acknowledged",
                    total.load(Ordering::Relaxed)
                );
            }
            continue;
        }
        empty = 0;
        let v = kinesis(&mut c, "AcknowledgeQueueRecords", json!({"QueueARN": queue, "Entries": entries})).await?;
        let ok = v["Successful"].as_array().map_or(0, Vec::len);
        out.failed += v["Failed"].as_array().map_or(0, Vec::len);
        out.acknowledged += ok;
        let before = total.fetch_add(ok, Ordering::Relaxed);
        if before < target && before + ok >= target {
            out.done = Some(Instant::now());
        }
    }
    Ok(out)
}

/// One long-polled receive of a single record, repeated while it answers none: the record and
/// when it arrived.
async fn receive_one(c: &mut Conn, queue: &str) -> anyhow::Result<(Value, Instant)> {
    let receive = json!({"QueueARN": queue, "Limit": 1, "WaitTimeSeconds": 10});
    for _ in 0..3 {
        let v = kinesis(c, "ReceiveQueueRecords", receive.clone()).await?;
        let at = Instant::now();
        if let Some(r) = v["QueueRecords"].as_array().and_then(|a| a.first()) {
            return Ok((r.clone(), at));
        }
    }
    anyhow::bail!("ReceiveQueueRecords: no record within 30 s of a put")
}

struct Run {
    consumers: usize,
    acknowledged: usize,
    failed: usize,
    receives: usize,
    seconds: f64,
    records_per_s: f64,
}

pub async fn run(args: QueuesArgs) -> anyhow::Result<()> {
    let ep = parse_endpoint(&args.endpoint)?;
    let mut id = [0u8; 4];
    let _ = getrandom::getrandom(&mut id);
    let tag: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let stream = format!("bench-queues-{tag}");
    let mut c = Conn::open(&ep).await.context("connecting to the endpoint")?;
    let stream_arn = create_stream(&mut c, &stream).await?;
    // The baseline: the records put into the stream the queues read.
    let put_s = put_all(&mut c, &stream, args.records, args.size).await?;
    let ingest = args.records as f64 / put_s;
    let mut runs = Vec::new();
    for (i, &consumers) in args.consumers.iter().enumerate() {
        let consumers = consumers.max(1);
        let name = format!("bench-queue-{i}-c{consumers}-{tag}");
        let queue = create_queue(&mut c, &name, &stream_arn, "TRIM_HORIZON").await?;
        let mut conns = Vec::with_capacity(consumers);
        for _ in 0..consumers {
            conns.push(Conn::open(&ep).await?);
        }
        let total = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|conn| tokio::spawn(consume(conn, queue.clone(), args.records, total.clone())))
            .collect();
        let mut drained = Drained::default();
        for task in tasks {
            drained.merge(task.await??);
        }
        let seconds = drained.done.unwrap_or_else(Instant::now).saturating_duration_since(t).as_secs_f64();
        runs.push(Run {
            consumers,
            acknowledged: drained.acknowledged,
            failed: drained.failed,
            receives: drained.receives,
            seconds,
            records_per_s: args.records as f64 / seconds,
        });
        // The control connection sat idle while the consumers drained the queue.
        c = Conn::open(&ep).await?;
        kinesis(&mut c, "DeleteQueue", json!({"QueueARN": queue})).await?;
    }
    // Put to receive: a receive parked on one connection, the put on another.
    let queue = create_queue(&mut c, &format!("bench-queue-latency-{tag}"), &stream_arn, "LATEST").await?;
    let mut receiver = Conn::open(&ep).await?;
    let mut put_us = Vec::with_capacity(args.latency_samples);
    let mut receive_us = Vec::with_capacity(args.latency_samples);
    for i in 0..args.latency_samples {
        let data = base64(&payload(&format!("latency {i} "), args.size));
        let (mut rc, arn) = (receiver, queue.clone());
        let parked = tokio::spawn(async move {
            let r = receive_one(&mut rc, &arn).await;
            (rc, r)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let put = json!({"StreamName": stream, "Data": data, "PartitionKey": format!("latency-{i}")});
        let t = Instant::now();
        kinesis(&mut c, "PutRecord", put).await?;
        put_us.push(t.elapsed().as_micros() as u64);
        let (rc, r) = parked.await?;
        receiver = rc;
        let (record, at) = r?;
        receive_us.push(at.saturating_duration_since(t).as_micros() as u64);
        if record["Data"] != data.as_str() {
            anyhow::bail!("ReceiveQueueRecords: answered a record other than the one put: {record}");
        }
        let ack = json!({"QueueARN": queue, "Entries": [{"ReceiptHandle": record["ReceiptHandle"]}]});
        let v = kinesis(&mut receiver, "AcknowledgeQueueRecords", ack).await?;
        if v["Successful"].as_array().map_or(0, Vec::len) != 1 {
            anyhow::bail!("AcknowledgeQueueRecords: {v}");
        }
    }
    kinesis(&mut c, "DeleteQueue", json!({"QueueARN": queue})).await?;
    put_us.sort_unstable();
    receive_us.sort_unstable();
    let ms = |us: u64| us as f64 / 1e3;
    let (p50, p90, p99) =
        (ms(percentile(&receive_us, 0.5)), ms(percentile(&receive_us, 0.9)), ms(percentile(&receive_us, 0.99)));
    let max = ms(receive_us.last().copied().unwrap_or(0));
    let put_p50 = ms(percentile(&put_us, 0.5));
    let total = args.records;
    if args.json {
        let rows: Vec<Value> = runs
            .iter()
            .map(|r| {
                json!({"consumers": r.consumers, "acknowledged": r.acknowledged, "failed_acknowledgements": r.failed,
                       "receives": r.receives, "seconds": r.seconds, "records_per_s": r.records_per_s,
                       "ratio_to_ingest": r.records_per_s / ingest})
            })
            .collect();
        let summary = json!({
            "records": total, "record_bytes": args.size, "ingest_records_per_s": ingest, "receive_acknowledge": rows,
            "put_to_receive_ms": {"samples": receive_us.len(), "p50": p50, "p90": p90, "p99": p99, "max": max,
                                  "put_record_p50": put_p50, "p50_minus_put_record_p50": p50 - put_p50},
        });
        println!("{summary:#}");
        return Ok(());
    }
    println!("queues: {total} records of {} bytes, one ON_DEMAND stream, {VISIBILITY_S} s visibility", args.size);
    println!("  ingest (PutRecords, one connection): {ingest:>9.0} records/s");
    for r in &runs {
        println!(
            "  receive + acknowledge, {:>3} consumers: {:>9.0} records/s, {:.2}x the ingest rate ({} receives)",
            r.consumers,
            r.records_per_s,
            r.records_per_s / ingest,
            r.receives
        );
        if r.failed > 0 {
            println!("    {} acknowledgements failed", r.failed);
        }
    }
    println!(
        "  put to receive (long poll): p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms, {} records",
        receive_us.len()
    );
    println!("  PutRecord alone: p50 {put_p50:.1} ms, so the queue adds about {:.1} ms at p50", p50 - put_p50);
    Ok(())
}
