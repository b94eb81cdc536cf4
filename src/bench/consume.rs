//! `sluice bench consume` reads a stream with GetRecords polling and verifies every record;
//! `sluice bench e2e` produces and consumes a fresh stream at once and also reports put → get
//! latency and any acknowledged record that never arrived.
//!
//! Verification: each record's payload checksum ([`super::payload`]); each (producer, sequence)
//! seen once; within a shard each producer's records in increasing sequence. Anything else is
//! reported loudly and the command fails.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::conn::{daemon_cpu_seconds, ensure_stream, parse_endpoint, Conn, Endpoint};
use super::payload;
use super::produce::{producer, ProduceArgs, Progress};
use super::report::Latencies;

#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeArgs {
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    #[arg(long, default_value = "sluice-bench")]
    pub stream: String,
    /// Stop once no shard has returned a record for this long.
    #[arg(long, default_value_t = 2)]
    pub idle_seconds: u64,
    /// Stop after this long in any case.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Records per GetRecords call.
    #[arg(long, default_value_t = 10_000)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Default)]
struct Verified {
    records: u64,
    bytes: u64,
    corrupt: u64,
    duplicates: u64,
    reordered: u64,
    calls: u64,
    throttled: u64,
    seen: HashSet<(u32, u64)>,
    latencies: Latencies,
}

impl Verified {
    fn merge(&mut self, o: Verified) {
        self.records += o.records;
        self.bytes += o.bytes;
        self.corrupt += o.corrupt;
        self.reordered += o.reordered;
        self.calls += o.calls;
        self.throttled += o.throttled;
        for id in o.seen {
            if !self.seen.insert(id) {
                self.duplicates += 1;
            }
        }
        self.duplicates += o.duplicates;
        self.latencies.merge(&o.latencies);
    }
}

async fn shard_ids(ep: &Endpoint, stream: &str) -> anyhow::Result<Vec<String>> {
    let mut c = Conn::open(ep).await?;
    let (s, v) = c.json("ListShards", json!({"StreamName": stream})).await?;
    if s != 200 {
        anyhow::bail!("ListShards: {v}");
    }
    Ok(v["Shards"].as_array().into_iter().flatten().filter_map(|s| s["ShardId"].as_str().map(str::to_owned)).collect())
}

/// How a reader runs: records per call, when to stop, and the run's clock (for latency).
#[derive(Clone, Copy)]
struct ReadPlan {
    limit: u32,
    idle: Duration,
    until: Instant,
    t0: Option<Instant>,
}

/// Reads one shard from TRIM_HORIZON until it is idle for `idle` once producing is `done` (or
/// ends, or `until`).
async fn read_shard(
    ep: Arc<Endpoint>,
    stream: String,
    shard: String,
    plan: ReadPlan,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Verified> {
    let ReadPlan { limit, idle, until, t0 } = plan;
    let mut c = Conn::open(&ep).await?;
    let (s, v) = c
        .json("GetShardIterator", json!({"StreamName": stream, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}))
        .await?;
    if s != 200 {
        anyhow::bail!("GetShardIterator: {v}");
    }
    let mut it = v["ShardIterator"].as_str().map(str::to_owned);
    let mut out = Verified::default();
    let mut last_seq: HashMap<u32, u64> = HashMap::new();
    let mut last_data = Instant::now();
    while let Some(i) = it.take() {
        if Instant::now() > until {
            break;
        }
        let (s, v) = c.json("GetRecords", json!({"ShardIterator": i, "Limit": limit})).await?;
        out.calls += 1;
        if s != 200 {
            if v["__type"] == "ProvisionedThroughputExceededException" {
                out.throttled += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                it = Some(i);
                continue;
            }
            anyhow::bail!("GetRecords: {v}");
        }
        let now = t0.map(|t| t.elapsed().as_nanos() as u64);
        let recs = v["Records"].as_array().cloned().unwrap_or_default();
        for r in &recs {
            let data =
                base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().unwrap_or("")).unwrap_or_default();
            out.bytes += data.len() as u64;
            match payload::check(&data) {
                None => out.corrupt += 1,
                Some(p) => {
                    out.records += 1;
                    if !out.seen.insert((p.producer, p.seq)) {
                        out.duplicates += 1;
                    }
                    if let Some(prev) = last_seq.insert(p.producer, p.seq) {
                        if p.seq <= prev {
                            out.reordered += 1;
                        }
                    }
                    if let Some(now) = now {
                        out.latencies
                            .record(now.saturating_sub(p.sent_ns) / 1000, (p.sent_ns / 1_000_000_000) as usize);
                    }
                }
            }
        }
        it = v["NextShardIterator"].as_str().map(str::to_owned);
        if !recs.is_empty() {
            last_data = Instant::now();
        } else if last_data.elapsed() > idle && done.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        } else {
            // An idle shard is polled 5 times a second, as the KCL does by default.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(out)
}

async fn read_all(
    ep: &Arc<Endpoint>,
    stream: &str,
    plan: ReadPlan,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Verified> {
    let mut tasks = Vec::new();
    for shard in shard_ids(ep, stream).await? {
        tasks.push(tokio::spawn(read_shard(ep.clone(), stream.to_owned(), shard, plan, done.clone())));
    }
    let mut total = Verified::default();
    for t in tasks {
        total.merge(t.await??);
    }
    Ok(total)
}

fn verdict(v: &Verified, lost: Option<u64>) -> (bool, String) {
    let ok = v.corrupt == 0 && v.duplicates == 0 && v.reordered == 0 && lost.unwrap_or(0) == 0;
    let text = format!(
        "verified {} records: {} corrupt, {} duplicated, {} out of order{}",
        v.records,
        v.corrupt,
        v.duplicates,
        v.reordered,
        lost.map(|l| format!(", {l} acknowledged but never read")).unwrap_or_default()
    );
    (ok, text)
}

pub async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let ep = Arc::new(parse_endpoint(&args.endpoint)?);
    let t = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let plan = ReadPlan {
        limit: args.limit,
        idle: Duration::from_secs(args.idle_seconds),
        until: t + Duration::from_secs(args.seconds),
        t0: None,
    };
    let v = read_all(&ep, &args.stream, plan, done).await?;
    let secs = t.elapsed().as_secs_f64();
    let (ok, text) = verdict(&v, None);
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(
            out,
            "{:#}",
            json!({"records": v.records, "bytes": v.bytes, "seconds": secs, "corrupt": v.corrupt, "duplicates": v.duplicates, "reordered": v.reordered, "throttled_calls": v.throttled, "ok": ok})
        )?;
    } else {
        writeln!(
            out,
            "consume: {} records, {:.1} MB in {secs:.1} s over {} GetRecords calls ({} throttled)",
            v.records,
            v.bytes as f64 / 1e6,
            v.calls,
            v.throttled
        )?;
        writeln!(out, "  {text}")?;
    }
    if !ok {
        anyhow::bail!("VERIFICATION FAILED: {text}");
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct E2eArgs {
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    #[arg(long, default_value_t = 2)]
    pub producers: usize,
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub record_size: usize,
    /// Records per second, open loop.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    #[arg(long)]
    pub json: bool,
}

pub async fn e2e(args: E2eArgs) -> anyhow::Result<()> {
    let ep = Arc::new(parse_endpoint(&args.endpoint)?);
    let stream = format!("sluice-e2e-{}", std::process::id());
    ensure_stream(&ep, &stream, args.shards).await?;
    let cpu_before = daemon_cpu_seconds(&ep).await;
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(args.seconds);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (ep, stream, done) = (ep.clone(), stream.clone(), done.clone());
        tokio::spawn(async move {
            let plan = ReadPlan {
                limit: 10_000,
                idle: Duration::from_secs(2),
                until: until + Duration::from_secs(30),
                t0: Some(t0),
            };
            read_all(&ep, &stream, plan, done).await
        })
    };
    let pargs = Arc::new(ProduceArgs {
        endpoint: args.endpoint.clone(),
        stream: stream.clone(),
        shards: args.shards,
        producers: args.producers,
        batch: args.batch,
        record_size: args.record_size,
        keys: 1000,
        seconds: args.seconds,
        rate: args.rate,
        disk_baseline: None,
        cbor: false,
        json: false,
        plot: None,
        encrypt: false,
        compare_encryption: false,
    });
    let progress = Arc::new(Progress::default());
    let mut tasks = Vec::new();
    for id in 0..args.producers {
        tasks.push(tokio::spawn(producer(ep.clone(), pargs.clone(), id, t0, until, progress.clone())));
    }
    let mut acked = 0u64;
    let mut expected: Vec<(u32, u64, u64)> = Vec::new();
    let mut put_latency = Latencies::default();
    for t in tasks {
        let r = t.await??;
        acked += r.acked;
        expected.extend(r.acked_ranges);
        put_latency.merge(&r.latencies);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let v = reader.await??;
    let lost: u64 = expected
        .iter()
        .map(|&(p, first, n)| (first..first + n).filter(|s| !v.seen.contains(&(p, *s))).count() as u64)
        .sum();
    let cpu = match (cpu_before, daemon_cpu_seconds(&ep).await) {
        (Some(a), Some(b)) if acked > 0 => Some((b - a) / (acked as f64 / 1e6)),
        _ => None,
    };
    let (ok, text) = verdict(&v, Some(lost));
    let [p50, p90, p99, p999, max] = v.latencies.summary_ms();
    let mut c = Conn::open(&ep).await?;
    let _ = c.json("DeleteStream", json!({"StreamName": stream})).await;
    let mut out = std::io::stdout().lock();
    if args.json {
        let report: Value = json!({
            "acked": acked, "read": v.records, "lost": lost, "corrupt": v.corrupt, "duplicates": v.duplicates,
            "reordered": v.reordered, "put_to_get_latency": v.latencies.json(), "put_latency": put_latency.json(),
            "daemon_cpu_seconds_per_million_records": cpu, "ok": ok,
        });
        writeln!(out, "{report:#}")?;
    } else {
        writeln!(
            out,
            "e2e: {} producers at {} records/s, {} x {} B, {} shards, GetRecords polling",
            args.producers, args.rate, args.batch, args.record_size, args.shards
        )?;
        writeln!(out, "  acknowledged {acked}, read {}", v.records)?;
        writeln!(out, "  {text}")?;
        writeln!(out, "  put -> get latency p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms (polling every 200 ms when idle)")?;
        if let Some(c) = cpu {
            writeln!(out, "  daemon cost  {c:.2} CPU-seconds per million records (put and get)")?;
        }
    }
    if !ok {
        anyhow::bail!("VERIFICATION FAILED: {text}");
    }
    Ok(())
}
