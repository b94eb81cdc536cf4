//! `sluice bench delivery`: Firehose delivery throughput (MB/s from PutRecordBatch to objects,
//! per compression format) and the time from a put to its object with a 1 s buffering interval,
//! against the disk's durable sequential write rate measured in the same run.
//!
//! Progress is read from the daemon's own `/metrics` (`sluice_delivery_records_total`), so the
//! bench needs nothing but the endpoint.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::conn::{parse_endpoint, Conn, Endpoint};

#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryArgs {
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    /// Megabytes of records per compression format.
    #[arg(long, default_value_t = 64)]
    pub megabytes: usize,
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Compression formats to measure.
    #[arg(long, value_delimiter = ',', default_value = "UNCOMPRESSED,GZIP,ZIP,Snappy,HADOOP_SNAPPY")]
    pub formats: Vec<String>,
    /// Put-to-object latency samples (1 s interval).
    #[arg(long, default_value_t = 5)]
    pub latency_samples: usize,
    /// Measure the disk's durable sequential write rate in this directory first.
    #[arg(long)]
    pub disk_baseline: Option<std::path::PathBuf>,
    #[arg(long)]
    pub json: bool,
}

async fn firehose(c: &mut Conn, op: &str, body: Value) -> anyhow::Result<Value> {
    let (status, b) = c
        .call_target(&format!("Firehose_20150804.{op}"), "application/x-amz-json-1.1", Bytes::from(body.to_string()))
        .await?;
    let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
    if status != 200 {
        anyhow::bail!("{op}: {status} {v}");
    }
    Ok(v)
}

/// `sluice_delivery_records_total` of a delivery stream, from the daemon's `/metrics`.
async fn delivered(ep: &Endpoint, name: &str) -> anyhow::Result<u64> {
    let series = format!("sluice_delivery_records_total{{delivery_stream=\"{name}\"}}");
    Ok(super::conn::metric(ep, &series).await.unwrap_or(0.0) as u64)
}

async fn create(c: &mut Conn, name: &str, format: &str, size_mb: u64, interval_s: u64) -> anyhow::Result<()> {
    firehose(
        c,
        "CreateDeliveryStream",
        json!({
            "DeliveryStreamName": name,
            "ExtendedS3DestinationConfiguration": {
                "RoleARN": "arn:aws:iam::123456789012:role/bench",
                "BucketARN": "arn:aws:s3:::sluice-bench",
                "Prefix": format!("{name}/"),
                "CompressionFormat": format,
                "BufferingHints": {"SizeInMBs": size_mb, "IntervalInSeconds": interval_s},
            },
        }),
    )
    .await?;
    for _ in 0..600 {
        let v = firehose(c, "DescribeDeliveryStream", json!({"DeliveryStreamName": name})).await?;
        if v["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "ACTIVE" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{name} did not become ACTIVE")
}

async fn wait_delivered(ep: &Endpoint, name: &str, count: u64, limit: Duration) -> anyhow::Result<Instant> {
    let until = Instant::now() + limit;
    loop {
        if delivered(ep, name).await? >= count {
            return Ok(Instant::now());
        }
        if Instant::now() > until {
            anyhow::bail!("{name}: not every record was delivered within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(args: DeliveryArgs) -> anyhow::Result<()> {
    let ep = parse_endpoint(&args.endpoint)?;
    let disk = match &args.disk_baseline {
        Some(dir) => {
            let dir = dir.clone();
            let (mb_s, _, _) = tokio::task::spawn_blocking(move || {
                super::produce::disk_baseline(&dir, 1 << 20, Duration::from_secs(3))
            })
            .await??;
            Some(mb_s)
        }
        None => None,
    };
    let mut c = Conn::open(&ep).await?;
    let mut id = [0u8; 4];
    let _ = getrandom::getrandom(&mut id);
    let tag: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![b'x'; args.record_size]);
    let per_batch = (4 << 20) / (args.record_size.max(1) * 4 / 3 + 64);
    let per_batch = per_batch.clamp(1, 500);
    let total = (args.megabytes << 20) / args.record_size.max(1);
    let mut rows = Vec::new();
    for format in &args.formats {
        let name = format!("bench-{tag}-{}", format.to_lowercase().replace('_', "-"));
        create(&mut c, &name, format, 64, 60).await?;
        let t = Instant::now();
        let mut sent = 0;
        while sent < total {
            let n = per_batch.min(total - sent);
            let records: Vec<Value> = (0..n).map(|_| json!({"Data": data})).collect();
            let v = firehose(&mut c, "PutRecordBatch", json!({"DeliveryStreamName": name, "Records": records})).await?;
            if v["FailedPutCount"] != 0 {
                anyhow::bail!("{name}: {} records refused", v["FailedPutCount"]);
            }
            sent += n;
        }
        let put_s = t.elapsed().as_secs_f64();
        // SizeInMBs 64: full buffers flush by size; the last one after the 60 s interval at most.
        let done = wait_delivered(&ep, &name, total as u64, Duration::from_secs(300)).await?;
        // The wait may outlast the daemon's keep-alive: a new connection for what follows.
        c = Conn::open(&ep).await?;
        let secs = (done - t).as_secs_f64();
        let mb = (total * args.record_size) as f64 / 1e6;
        rows.push(json!({"format": format, "records": total, "megabytes": mb, "put_seconds": put_s,
                         "delivered_seconds": secs, "mb_per_s": mb / secs}));
        let _ = firehose(&mut c, "DeleteDeliveryStream", json!({"DeliveryStreamName": name})).await;
    }
    // Put to object with IntervalInSeconds 1: one record at a time.
    let name = format!("bench-{tag}-latency");
    create(&mut c, &name, "UNCOMPRESSED", 1, 1).await?;
    let mut latencies = Vec::new();
    for i in 0..args.latency_samples {
        let t = Instant::now();
        firehose(&mut c, "PutRecord", json!({"DeliveryStreamName": name, "Record": {"Data": data}})).await?;
        let done = wait_delivered(&ep, &name, i as u64 + 1, Duration::from_secs(30)).await?;
        latencies.push((done - t).as_secs_f64() * 1e3);
    }
    let _ = firehose(&mut c, "DeleteDeliveryStream", json!({"DeliveryStreamName": name})).await;
    latencies.sort_by(f64::total_cmp);
    let summary = json!({
        "record_size": args.record_size,
        "formats": rows,
        "put_to_object_ms_1s_interval": latencies,
        "disk_sequential_mb_per_s": disk,
    });
    if args.json {
        println!("{summary:#}");
        return Ok(());
    }
    println!(
        "delivery: {} MB of {} B records per format, DirectPut to the bucket directory",
        args.megabytes, args.record_size
    );
    for r in &rows {
        let mbs = r["mb_per_s"].as_f64().unwrap_or(0.0);
        let ratio = disk.map(|d| format!(", {:.2} of the disk's durable sequential rate", mbs / d)).unwrap_or_default();
        let secs = r["delivered_seconds"].as_f64().unwrap_or(0.0);
        println!("  {:<14} {mbs:>7.1} MB/s put to object ({secs:.2} s){ratio}", r["format"].as_str().unwrap_or(""));
    }
    if let Some(d) = disk {
        println!("  disk: {d:.1} MB/s (1 MiB writes + fdatasync)");
    }
    let med = latencies.get(latencies.len() / 2).copied().unwrap_or(0.0);
    println!("  put to object, 1 s interval: median {med:.0} ms over {} records ({latencies:.0?})", latencies.len());
    Ok(())
}
