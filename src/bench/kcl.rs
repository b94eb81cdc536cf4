//! `sluice bench kcl`: records/s through the KCL worker and its multi-language child processes
//! (a trivial amazon_kclpy processor that checkpoints after each batch), and checkpoint latency.
//!
//! The baseline, run first in the same command on the same records, is a plain GetRecords read
//! of every shard (the same retrieval code, no leases, no child processes): the figure reported
//! is the ratio of the two rates. Checkpoint latency is set against the disk's 4 KiB write +
//! fdatasync p99 when `--disk-baseline DIR` is given.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::conn::{ensure_stream, parse_endpoint, Conn};
use crate::kcl::client::{AwsClient, Credentials, Endpoint};
use crate::kcl::leases::LeaseTable;
use crate::kcl::multilang::MultiLangFactory;
use crate::kcl::properties::{InitialPosition, KclConfig, RetrievalMode};
use crate::kcl::retrieval::{cmp_seq, Poller, Start, StreamRef};
use crate::kcl::Worker;

#[derive(Debug, Clone, clap::Args)]
pub struct KclBenchArgs {
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Records put before reading starts.
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// The record processor (executableName).
    #[arg(long, default_value = ".venv/bin/python benches/kcl_processor.py")]
    pub executable: String,
    /// maxRecords per GetRecords call.
    #[arg(long, default_value_t = 10_000)]
    pub max_records: u32,
    /// idleTimeBetweenReadsInMillis (KCL's default is 1000; 0 reads as fast as processed).
    #[arg(long, default_value_t = 0)]
    pub idle_ms: u64,
    /// Measure the disk's 4 KiB write + fdatasync p99 in this directory first.
    #[arg(long)]
    pub disk_baseline: Option<std::path::PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Puts the records; answers each shard's last sequence number.
async fn fill(
    ep: &super::conn::Endpoint,
    stream: &str,
    records: usize,
    size: usize,
) -> anyhow::Result<HashMap<String, String>> {
    let mut c = Conn::open(ep).await?;
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![b'x'; size]);
    let mut last: HashMap<String, String> = HashMap::new();
    let mut i = 0;
    while i < records {
        let n = (records - i).min(500);
        let batch: Vec<Value> = (i..i + n).map(|k| json!({"PartitionKey": format!("k{k}"), "Data": data})).collect();
        let body = json!({"StreamName": stream, "Records": batch});
        let (status, b) = c.call("PutRecords", Bytes::from(body.to_string())).await?;
        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
        if status != 200 || v["FailedRecordCount"] != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue; // throttled or refused: the whole batch again (only successes are counted)
        }
        for r in v["Records"].as_array().into_iter().flatten() {
            if let (Some(shard), Some(seq)) = (r["ShardId"].as_str(), r["SequenceNumber"].as_str()) {
                let e = last.entry(shard.to_owned()).or_insert_with(|| seq.to_owned());
                if cmp_seq(seq, e).is_gt() {
                    *e = seq.to_owned();
                }
            }
        }
        i += n;
    }
    Ok(last)
}

pub async fn run(args: KclBenchArgs) -> anyhow::Result<()> {
    let ep = parse_endpoint(&args.endpoint)?;
    let disk_p99 = super::produce::small_write_p99(args.disk_baseline.clone()).await?;
    let mut id = [0u8; 4];
    let _ = getrandom::getrandom(&mut id);
    let stream = format!("sluice-bench-kcl-{}", id.iter().map(|b| format!("{b:02x}")).collect::<String>());
    ensure_stream(&ep, &stream, args.shards).await?;
    let last = fill(&ep, &stream, args.records, args.record_size).await?;

    let endpoint = Endpoint::parse(&args.endpoint)?;
    let creds = Credentials::from_environment();
    // Baseline: every shard read with GetRecords alone, shards in parallel.
    let kinesis = Arc::new(AwsClient::kinesis(endpoint.clone(), "us-east-1", creds.clone()));
    let t = Instant::now();
    let mut reads = Vec::new();
    for (shard, end) in &last {
        let mut p = Poller::new(
            kinesis.clone(),
            StreamRef::Name(stream.clone()),
            shard,
            Start::TrimHorizon,
            None,
            args.max_records,
            Duration::ZERO,
        );
        let end = end.clone();
        reads.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let b = match p.next().await {
                    Ok(b) => b,
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => return Err(anyhow::anyhow!("GetRecords: {e}")),
                };
                n += b.records.len() as u64;
                if b.records.last().is_some_and(|r| r.sequence_number == end) {
                    return Ok(n);
                }
            }
        }));
    }
    let mut baseline_records = 0;
    for r in reads {
        baseline_records += r.await??;
    }
    let baseline_s = t.elapsed().as_secs_f64();

    // The KCL worker with its child processes, until every shard is checkpointed at its end.
    let app = format!("{stream}-app");
    let mut cfg = KclConfig::new(&app, &stream);
    cfg.kinesis_endpoint = Some(args.endpoint.clone());
    cfg.initial_position = InitialPosition::TrimHorizon;
    cfg.retrieval_mode = RetrievalMode::Polling;
    cfg.max_records = args.max_records;
    cfg.idle_time_between_reads_millis = args.idle_ms;
    let worker = Worker::new(cfg, MultiLangFactory::new(&args.executable)?)?;
    let latency = worker.checkpoint_latency();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let t = Instant::now();
    let running = tokio::spawn(worker.run(async move {
        let _ = stop_rx.await;
    }));
    let table = LeaseTable::new(AwsClient::dynamodb(endpoint, "us-east-1", creds), &app);
    let deadline = t + Duration::from_secs(600);
    loop {
        if running.is_finished() {
            anyhow::bail!("the KCL worker stopped early: {:?}", running.await?);
        }
        let leases = table.list().await.unwrap_or_default();
        let done = last.iter().all(|(shard, end)| leases.iter().any(|l| &l.key == shard && &l.checkpoint == end));
        if done {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("not every shard was checkpointed at its last record within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kcl_s = t.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    running.await??;
    let (checkpoints, p50, p99, max) = latency.summary();
    let records = args.records as f64;
    let summary = json!({
        "stream": stream,
        "shards": args.shards,
        "records": args.records,
        "record_size": args.record_size,
        "baseline_getrecords_records_per_s": baseline_records as f64 / baseline_s,
        "kcl_records_per_s": records / kcl_s,
        "kcl_over_baseline": (records / kcl_s) / (baseline_records as f64 / baseline_s),
        "checkpoints": checkpoints,
        "checkpoint_p50_us": p50,
        "checkpoint_p99_us": p99,
        "checkpoint_max_us": max,
        "disk_4k_fdatasync_p99_us": disk_p99,
        "checkpoint_p99_over_fdatasync_p99": disk_p99.map(|d| p99 as f64 / d.max(1) as f64),
    });
    if args.json {
        println!("{summary:#}");
        return Ok(());
    }
    println!("kcl: {} records of {} B on {} shards", args.records, args.record_size, args.shards);
    println!("  baseline GetRecords read: {:.0} records/s ({baseline_s:.2} s)", baseline_records as f64 / baseline_s);
    println!(
        "  through sluice kcl + {} child processes: {:.0} records/s ({kcl_s:.2} s), {:.2} of the baseline",
        args.shards,
        records / kcl_s,
        (records / kcl_s) / (baseline_records as f64 / baseline_s)
    );
    println!(
        "  {checkpoints} checkpoints: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3,
        max as f64 / 1e3
    );
    if let Some(d) = disk_p99 {
        println!(
            "  disk 4 KiB write + fdatasync p99 {:.2} ms; checkpoint p99 / that = {:.2}",
            d as f64 / 1e3,
            p99 as f64 / d.max(1) as f64
        );
    }
    Ok(())
}
