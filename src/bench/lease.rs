//! `sluice bench lease`: checkpoint latency of a DynamoDB-compatible lease table, as a KCL
//! worker writes checkpoints: a conditional UpdateItem (legacy `Expected` on the lease counter
//! and owner, `AttributeUpdates` PUT of the checkpoint and the next counter) per call.
//!
//! Each client owns its own leases, so no update should lose a race: a condition failure is
//! counted and reported as an error. The baseline, measured first in the same run with
//! `--disk-baseline DIR`, is the disk's 4 KiB write + fdatasync p99, the floor of a durable
//! checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::conn::{parse_endpoint, Conn, Endpoint};
use super::report::Latencies;

#[derive(Debug, Clone, clap::Args)]
pub struct LeaseArgs {
    /// DynamoDB endpoint (Sluice serves DynamoDB on its API port).
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    /// Lease table (created if missing).
    #[arg(long, default_value = "sluice-bench-leases")]
    pub table: String,
    /// Concurrent workers, each with its own connection and its own leases.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Leases per worker.
    #[arg(long, default_value_t = 8)]
    pub leases: usize,
    /// How long to checkpoint, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Measure the disk's 4 KiB write + fdatasync p99 in this directory first.
    #[arg(long)]
    pub disk_baseline: Option<std::path::PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

async fn ddb(c: &mut Conn, op: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    let target = format!("DynamoDB_20120810.{op}");
    let (status, b) = c.call_target(&target, "application/x-amz-json-1.0", Bytes::from(body.to_string())).await?;
    Ok((status, serde_json::from_slice(&b).unwrap_or(Value::Null)))
}

async fn ensure_table(ep: &Endpoint, table: &str) -> anyhow::Result<()> {
    let mut c = Conn::open(ep).await?;
    let (status, v) = ddb(
        &mut c,
        "CreateTable",
        json!({
            "TableName": table,
            "KeySchema": [{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "leaseKey", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        }),
    )
    .await?;
    if status != 200 && !v["__type"].as_str().is_some_and(|t| t.ends_with("ResourceInUseException")) {
        anyhow::bail!("CreateTable failed: {status} {v}");
    }
    Ok(())
}

#[derive(Default)]
struct WorkerResult {
    checkpoints: u64,
    errors: u64,
    latencies: Latencies,
}

async fn worker(
    ep: Arc<Endpoint>,
    args: Arc<LeaseArgs>,
    id: usize,
    t0: Instant,
    until: Instant,
) -> anyhow::Result<WorkerResult> {
    let mut c = Conn::open(&ep).await?;
    let owner = format!("bench-worker-{id}-{}", std::process::id());
    let mut counters = vec![0u64; args.leases];
    // Take the leases: create or overwrite them for this worker.
    for (i, counter) in counters.iter_mut().enumerate() {
        let item = json!({
            "leaseKey": {"S": format!("shardId-{id:04}{i:08}")},
            "leaseOwner": {"S": owner},
            "leaseCounter": {"N": "0"},
            "checkpoint": {"S": "TRIM_HORIZON"},
        });
        let (status, v) = ddb(&mut c, "PutItem", json!({"TableName": args.table, "Item": item})).await?;
        if status != 200 {
            anyhow::bail!("PutItem failed: {status} {v}");
        }
        *counter = 0;
    }
    let mut r = WorkerResult::default();
    let mut n = 0usize;
    while Instant::now() < until {
        let i = n % args.leases;
        n += 1;
        let body = json!({
            "TableName": args.table,
            "Key": {"leaseKey": {"S": format!("shardId-{id:04}{i:08}")}},
            "Expected": {
                "leaseCounter": {"Value": {"N": counters[i].to_string()}},
                "leaseOwner": {"Value": {"S": owner}},
            },
            "AttributeUpdates": {
                "checkpoint": {"Action": "PUT", "Value": {"S": format!("{:056}", n)}},
                "leaseCounter": {"Action": "PUT", "Value": {"N": (counters[i] + 1).to_string()}},
            },
        });
        let started = Instant::now();
        let (status, _) = ddb(&mut c, "UpdateItem", body).await?;
        let took = started.elapsed();
        if status == 200 {
            counters[i] += 1;
            r.checkpoints += 1;
            r.latencies.record(took.as_micros() as u64, t0.elapsed().as_secs() as usize);
        } else {
            r.errors += 1;
        }
    }
    Ok(r)
}

pub async fn run(args: LeaseArgs) -> anyhow::Result<()> {
    let ep = Arc::new(parse_endpoint(&args.endpoint)?);
    let baseline = super::produce::small_write_p99(args.disk_baseline.clone()).await?;
    ensure_table(&ep, &args.table).await?;
    let args = Arc::new(args);
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(args.seconds);
    let tasks: Vec<_> =
        (0..args.workers).map(|id| tokio::spawn(worker(ep.clone(), args.clone(), id, t0, until))).collect();
    let mut total = WorkerResult::default();
    for t in tasks {
        let r = t.await??;
        total.checkpoints += r.checkpoints;
        total.errors += r.errors;
        total.latencies.merge(&r.latencies);
    }
    let secs = t0.elapsed().as_secs_f64();
    let rate = total.checkpoints as f64 / secs;
    let [p50, p90, p99, p999, max] = total.latencies.summary_ms();
    let summary = json!({
        "endpoint": args.endpoint,
        "workers": args.workers,
        "leases_per_worker": args.leases,
        "seconds": secs,
        "checkpoints": total.checkpoints,
        "errors": total.errors,
        "checkpoints_per_s": rate,
        "latency": total.latencies.json(),
        "disk_4k_fdatasync_p99_us": baseline,
        "p99_over_fdatasync_p99": baseline.map(|b| p99 * 1e3 / b.max(1) as f64),
    });
    if args.json {
        println!("{summary:#}");
        return Ok(());
    }
    println!("lease: {} workers x {} leases, {secs:.1} s", args.workers, args.leases);
    println!("  {} checkpoints ({} errors), {rate:.0} checkpoints/s", total.checkpoints, total.errors);
    println!(
        "  checkpoint latency p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms"
    );
    if let Some(b) = baseline {
        println!(
            "  disk 4 KiB write + fdatasync p99 {:.2} ms; checkpoint p99 / that = {:.2}",
            b as f64 / 1e3,
            p99 * 1e3 / b.max(1) as f64
        );
    }
    Ok(())
}
