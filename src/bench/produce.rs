//! `sluice bench produce`: PutRecords (or PutRecord) load against any Kinesis-compatible endpoint.
//!
//! Producers each hold one keep-alive HTTP/1.1 connection. Closed loop (the default) sends the
//! next call as soon as the last is answered; `--rate` is open loop: calls leave on a fixed
//! schedule and latency is measured from when a call was due, not when it left, so a slow server
//! cannot hide its queueing (no coordinated omission). Only acknowledged records count. Every
//! record carries a checkable payload ([`super::payload`]) so `sluice bench consume` can verify
//! what was stored. With `--disk-baseline DIR` the disk's own durable append rate is measured
//! first, in the same run.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};

use super::conn::{daemon_cpu_seconds, ensure_stream, parse_endpoint, start_encryption, Conn, Endpoint};
use super::payload;
use super::report::Latencies;

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
    /// Records per PutRecords call; 1 uses PutRecord.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Bytes of data per record (at least 24: the checkable header).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Distinct partition keys.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// How long to produce, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Open loop: records per second across all producers (0: closed loop, as fast as it goes).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Also measure the disk's durable sequential append rate in this directory first.
    #[arg(long)]
    pub disk_baseline: Option<PathBuf>,
    /// Speak CBOR (`application/x-amz-cbor-1.1`, record data as byte strings, as the Java SDK
    /// sends it) instead of JSON.
    #[arg(long)]
    pub cbor: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write latency over time and the latency distribution as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Seal the stream's records at rest (StartStreamEncryption with alias/aws/kinesis).
    #[arg(long)]
    pub encrypt: bool,
    /// Measure twice in one run, on `<stream>-plain` and then on `<stream>-kms` (encrypted),
    /// and report both and their ratio.
    #[arg(long)]
    pub compare_encryption: bool,
}

#[derive(Default)]
pub(crate) struct ProducerResult {
    pub(crate) acked: u64,
    pub(crate) failed: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) latencies: Latencies,
    pub(crate) calls: u64,
    /// (producer, first sequence, count) of every call acknowledged in full: what a consumer
    /// must find.
    pub(crate) acked_ranges: Vec<(u32, u64, u64)>,
}

/// Shared progress counters for the live line.
#[derive(Default)]
pub(crate) struct Progress {
    acked: std::sync::atomic::AtomicU64,
    p99_us: std::sync::atomic::AtomicU64,
}

/// A producer's record filler, raw (for checksums) and in base64 (to append after each header's).
struct Filler {
    raw: Vec<u8>,
    b64: String,
}

/// Builds one PutRecords body: each record a checkable payload.
fn body(stream: &str, producer: u32, first_seq: u64, count: usize, keys: usize, filler: &Filler, t0: Instant) -> Bytes {
    let (filler_b64, filler) = (filler.b64.as_str(), filler.raw.as_slice());
    let sent = t0.elapsed().as_nanos() as u64;
    let mut s = String::with_capacity(count * (filler_b64.len() + 80) + 64);
    s.push_str(r#"{"StreamName":""#);
    s.push_str(stream);
    s.push_str(r#"","Records":["#);
    for i in 0..count {
        let seq = first_seq + i as u64;
        let h = payload::header(producer, seq, sent, filler);
        if i > 0 {
            s.push(',');
        }
        s.push_str(r#"{"Data":""#);
        base64::engine::general_purpose::STANDARD.encode_string(h, &mut s);
        s.push_str(filler_b64);
        s.push_str(r#"","PartitionKey":"key-"#);
        s.push_str(&((seq as usize * 7919 + producer as usize) % keys.max(1)).to_string());
        s.push_str(r#""}"#);
    }
    s.push_str("]}");
    Bytes::from(s)
}

/// Builds one PutRecords body in CBOR: record data as byte strings, no base64.
fn cbor_body(
    stream: &str,
    producer: u32,
    first_seq: u64,
    count: usize,
    keys: usize,
    filler: &Filler,
    t0: Instant,
) -> Bytes {
    use crate::kinesis::put_wire::cbor;
    let sent = t0.elapsed().as_nanos() as u64;
    let data_len = (payload::HEADER_LEN + filler.raw.len()) as u64;
    let mut out = Vec::with_capacity(count * (filler.raw.len() + 64) + 64);
    cbor::head(&mut out, cbor::MAP, 2);
    cbor::text(&mut out, "StreamName");
    cbor::text(&mut out, stream);
    cbor::text(&mut out, "Records");
    cbor::head(&mut out, cbor::ARRAY, count as u64);
    let mut key = String::new();
    for i in 0..count {
        let seq = first_seq + i as u64;
        cbor::head(&mut out, cbor::MAP, 2);
        cbor::text(&mut out, "Data");
        cbor::head(&mut out, cbor::BYTES, data_len);
        out.extend_from_slice(&payload::header(producer, seq, sent, &filler.raw));
        out.extend_from_slice(&filler.raw);
        cbor::text(&mut out, "PartitionKey");
        key.clear();
        key.push_str("key-");
        key.push_str(&((seq as usize * 7919 + producer as usize) % keys.max(1)).to_string());
        cbor::text(&mut out, &key);
    }
    Bytes::from(out)
}

fn single_body(stream: &str, producer: u32, seq: u64, keys: usize, filler: &Filler, t0: Instant) -> Bytes {
    let (filler_b64, filler) = (filler.b64.as_str(), filler.raw.as_slice());
    let h = payload::header(producer, seq, t0.elapsed().as_nanos() as u64, filler);
    let mut data = base64::engine::general_purpose::STANDARD.encode(h);
    data.push_str(filler_b64);
    let key = (seq as usize * 7919 + producer as usize) % keys.max(1);
    Bytes::from(format!(r#"{{"StreamName":"{stream}","Data":"{data}","PartitionKey":"key-{key}"}}"#))
}

fn error_type(status: u16, body: &[u8]) -> String {
    let t = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["__type"].as_str().map(str::to_owned));
    format!("{status} {}", t.unwrap_or_default())
}

/// Reads FailedRecordCount from a CBOR answer without decoding the whole of it.
fn failed_count_cbor(resp: &[u8]) -> u64 {
    let key = b"\x71FailedRecordCount";
    let Some(p) = resp.windows(key.len()).position(|w| w == key) else { return 0 };
    let rest = &resp[p + key.len()..];
    let Some(&first) = rest.first() else { return 0 };
    let be = |n: usize| rest.get(1..1 + n).map_or(0, |b| b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)));
    match first {
        0..=23 => u64::from(first),
        24 => be(1),
        25 => be(2),
        26 => be(4),
        27 => be(8),
        _ => 0,
    }
}

/// Reads `"FailedRecordCount":N` without parsing the whole response.
fn failed_count(resp: &[u8]) -> u64 {
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

pub(crate) async fn producer(
    ep: Arc<Endpoint>,
    args: Arc<ProduceArgs>,
    id: usize,
    t0: Instant,
    until: Instant,
    progress: Arc<Progress>,
) -> anyhow::Result<ProducerResult> {
    let mut conn = Conn::open(&ep).await?;
    let raw = payload::filler(id as u32, args.record_size);
    let filler = Filler { b64: base64::engine::general_purpose::STANDARD.encode(&raw), raw };
    let mut r = ProducerResult::default();
    let mut seq = 0u64;
    // Open loop: this producer's share of the rate, one call per interval.
    let interval = (args.rate > 0).then(|| {
        let calls_per_s = args.rate as f64 / args.batch as f64 / args.producers as f64;
        Duration::from_secs_f64(1.0 / calls_per_s.max(1e-6))
    });
    let mut due = Instant::now();
    while Instant::now() < until {
        let started = match interval {
            Some(iv) => {
                tokio::time::sleep_until(due.into()).await;
                let d = due;
                due += iv;
                d
            }
            None => Instant::now(),
        };
        let (op, payload) = if args.batch <= 1 {
            ("PutRecord", single_body(&args.stream, id as u32, seq, args.keys, &filler, t0))
        } else if args.cbor {
            ("PutRecords", cbor_body(&args.stream, id as u32, seq, args.batch, args.keys, &filler, t0))
        } else {
            ("PutRecords", body(&args.stream, id as u32, seq, args.batch, args.keys, &filler, t0))
        };
        let count = args.batch.max(1) as u64;
        seq += count;
        let (status, resp) = if args.cbor && args.batch > 1 {
            conn.call_cbor(op, payload).await?
        } else {
            conn.call(op, payload).await?
        };
        let latency_us = started.elapsed().as_micros() as u64;
        r.latencies.record(latency_us, t0.elapsed().as_secs() as usize);
        r.calls += 1;
        if status != 200 {
            *r.errors.entry(error_type(status, &resp)).or_default() += count;
            continue;
        }
        let failed = match (args.batch <= 1, args.cbor) {
            (true, _) => 0,
            (false, true) => failed_count_cbor(&resp),
            (false, false) => failed_count(&resp),
        };
        if failed > 0 {
            *r.errors.entry("per-record failures".into()).or_default() += failed;
        }
        r.failed += failed;
        r.acked += count - failed;
        if failed == 0 {
            r.acked_ranges.push((id as u32, seq - count, count));
        }
        progress.acked.fetch_add(count - failed, std::sync::atomic::Ordering::Relaxed);
        progress.p99_us.store(r.latencies.all.value_at_quantile(0.99), std::sync::atomic::Ordering::Relaxed);
    }
    Ok(r)
}

/// This process's CPU seconds (user and system), so a reader can tell whether the load tool, which
/// shares the machine, was the bottleneck.
pub(crate) fn client_cpu_seconds() -> f64 {
    crate::metrics::process_usage().0
}

/// Durable sequential appends of `chunk_bytes` (write + fdatasync) for `duration`: MB/s and the
/// fdatasync p99 in µs; then 4 KiB appends + fdatasync for the same time: their p99 in µs.
pub(crate) fn disk_baseline(
    dir: &std::path::Path,
    chunk_bytes: usize,
    duration: Duration,
) -> anyhow::Result<(f64, u64, u64)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("sluice-bench-disk-baseline.tmp");
    let run = |chunk: usize, d: Duration| -> anyhow::Result<(f64, Latencies)> {
        let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
        let buf = vec![0x5a_u8; chunk];
        let started = Instant::now();
        let mut offset = 0u64;
        let mut lat = Latencies::default();
        while started.elapsed() < d {
            let t = Instant::now();
            file.write_all_at(&buf, offset)?;
            file.sync_data()?;
            lat.record(t.elapsed().as_micros() as u64, 0);
            offset += chunk as u64;
        }
        Ok((offset as f64 / started.elapsed().as_secs_f64() / 1e6, lat))
    };
    let (mb_s, big) = run(chunk_bytes, duration)?;
    let (_, small) = run(4096, duration.min(Duration::from_secs(3)))?;
    std::fs::remove_file(&path)?;
    Ok((mb_s, big.all.value_at_quantile(0.99), small.all.value_at_quantile(0.99)))
}

/// The write size of the O_DIRECT baseline.
const DIRECT_CHUNK_BYTES: usize = 1 << 20;

/// The disk's best durable sequential rate: `chunk_bytes` appends with O_DIRECT (no page cache
/// copy), each followed by fdatasync, for `duration`, to a new file. MB/s and the fdatasync p99
/// in µs.
pub(crate) fn direct_baseline(
    dir: &std::path::Path,
    chunk_bytes: usize,
    duration: Duration,
) -> anyhow::Result<(f64, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    const ALIGN: usize = 4096;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("sluice-bench-disk-direct.tmp");
    let chunk = chunk_bytes.div_ceil(ALIGN) * ALIGN;
    let file =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).custom_flags(libc::O_DIRECT).open(&path)?;
    let layout = std::alloc::Layout::from_size_align(chunk, ALIGN)?;
    // SAFETY: the layout has a non-zero size; the buffer is freed below with the same layout.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    anyhow::ensure!(!ptr.is_null(), "out of memory");
    // SAFETY: `ptr` points to `chunk` initialised bytes, owned here until the dealloc below.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, chunk) };
    buf.fill(0x5a);
    let started = Instant::now();
    let mut written = 0u64;
    let mut lat = Latencies::default();
    let result = (|| -> anyhow::Result<()> {
        while started.elapsed() < duration {
            let t = Instant::now();
            file.write_all_at(buf, written)?;
            file.sync_data()?;
            lat.record(t.elapsed().as_micros() as u64, 0);
            written += chunk as u64;
        }
        Ok(())
    })();
    // SAFETY: allocated above with this layout; `buf` is not used after this.
    unsafe { std::alloc::dealloc(ptr, layout) };
    std::fs::remove_file(&path)?;
    result?;
    Ok((written as f64 / started.elapsed().as_secs_f64() / 1e6, lat.all.value_at_quantile(0.99)))
}

/// The disk's 4 KiB write + fdatasync p99 in µs, measured in `dir` for 2 s (None without a dir).
pub(crate) async fn small_write_p99(dir: Option<std::path::PathBuf>) -> anyhow::Result<Option<u64>> {
    let Some(dir) = dir else { return Ok(None) };
    let (_, _, small) =
        tokio::task::spawn_blocking(move || disk_baseline(&dir, 4096, Duration::from_secs(2))).await??;
    Ok(Some(small))
}

pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    if !args.compare_encryption {
        let plot = args.plot.clone();
        let json = args.json;
        let (summary, latencies) = measure(args).await?;
        return report(&summary, latencies, plot, json);
    }
    let mut runs = Vec::new();
    for (suffix, encrypt) in [("plain", false), ("kms", true)] {
        let mut a = args.clone();
        a.stream = format!("{}-{suffix}", args.stream);
        a.encrypt = encrypt;
        a.compare_encryption = false;
        a.disk_baseline = None;
        let (summary, _) = measure(a).await?;
        runs.push(summary);
    }
    let rate = |r: &Value| r["records_per_s"].as_f64().unwrap_or(0.0);
    let ratio = rate(&runs[1]) / rate(&runs[0]).max(1e-9);
    let combined = json!({"plain": runs[0], "encrypted": runs[1], "encrypted_over_plain": ratio});
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{combined:#}")?;
        return Ok(());
    }
    for (name, r) in [("plain", &runs[0]), ("encrypted", &runs[1])] {
        writeln!(
            out,
            "{name:>9}: {:.0} records/s, {:.1} MB/s, call p99 {:.2} ms, {} failed",
            rate(r),
            r["mb_per_s"].as_f64().unwrap_or(0.0),
            r["call_latency"]["p99_ms"].as_f64().unwrap_or(0.0),
            r["records_failed"]
        )?;
    }
    writeln!(out, "    ratio: encrypted / plain throughput {ratio:.3}")?;
    Ok(())
}

/// Runs one measurement and returns its summary (and the latencies, for plots).
async fn measure(args: ProduceArgs) -> anyhow::Result<(Value, Latencies)> {
    if args.record_size < payload::HEADER_LEN {
        anyhow::bail!("--record-size must be at least {} bytes", payload::HEADER_LEN);
    }
    let ep = Arc::new(parse_endpoint(&args.endpoint)?);
    let payload_per_call = args.batch.max(1) * args.record_size;
    let baseline = match &args.disk_baseline {
        Some(dir) => {
            let dir = dir.clone();
            let secs = args.seconds.clamp(1, 10);
            Some(
                tokio::task::spawn_blocking(move || {
                    let buffered = disk_baseline(&dir, payload_per_call, Duration::from_secs(secs))?;
                    let direct = direct_baseline(&dir, DIRECT_CHUNK_BYTES, Duration::from_secs(secs))?;
                    anyhow::Ok((buffered, direct))
                })
                .await??,
            )
        }
        None => None,
    };
    ensure_stream(&ep, &args.stream, args.shards).await?;
    if args.encrypt {
        start_encryption(&ep, &args.stream).await?;
    }
    let cpu_before = daemon_cpu_seconds(&ep).await;
    let client_before = client_cpu_seconds();
    let args = Arc::new(args);
    let progress = Arc::new(Progress::default());
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for id in 0..args.producers {
        tasks.push(tokio::spawn(producer(ep.clone(), args.clone(), id, t0, until, progress.clone())));
    }
    let live = std::io::stderr().is_terminal().then(|| {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let acked = progress.acked.load(std::sync::atomic::Ordering::Relaxed);
                let p99 = progress.p99_us.load(std::sync::atomic::Ordering::Relaxed);
                eprint!(
                    "\r  {:>5.0} s  {:>9} records/s  p99 {:>7.2} ms   ",
                    t0.elapsed().as_secs_f64(),
                    acked - last,
                    p99 as f64 / 1e3
                );
                last = acked;
            }
        })
    });
    let mut total = ProducerResult::default();
    for t in tasks {
        let r = t.await??;
        total.acked += r.acked;
        total.failed += r.failed;
        total.calls += r.calls;
        for (k, v) in r.errors {
            *total.errors.entry(k).or_default() += v;
        }
        total.latencies.merge(&r.latencies);
    }
    if let Some(l) = live {
        l.abort();
        eprintln!();
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = match (cpu_before, daemon_cpu_seconds(&ep).await) {
        (Some(a), Some(b)) if total.acked > 0 => Some((b - a) / (total.acked as f64 / 1e6)),
        _ => None,
    };
    let client_cpu = (total.acked > 0).then(|| (client_cpu_seconds() - client_before) / (total.acked as f64 / 1e6));
    let rps = total.acked as f64 / secs;
    let mbps = rps * args.record_size as f64 / 1e6;
    let summary = json!({
        "endpoint": args.endpoint,
        "mode": if args.rate > 0 { "open-loop" } else { "closed-loop" },
        "rate": args.rate,
        "producers": args.producers,
        "shards": args.shards,
        "batch": args.batch,
        "record_size": args.record_size,
        "seconds": secs,
        "records_acked": total.acked,
        "records_failed": total.failed,
        "errors": total.errors,
        "records_per_s": rps,
        "mb_per_s": mbps,
        "call_latency": total.latencies.json(),
        "daemon_cpu_seconds_per_million_records": cpu,
        "client_cpu_seconds_per_million_records": client_cpu,
        "protocol": if args.cbor { "cbor" } else { "json" },
        "disk_baseline": baseline.map(|((mb, p99, small_p99), (direct_mb, direct_p99))| json!({
            "mb_per_s": mb, "fdatasync_p99_us": p99, "fdatasync_4k_p99_us": small_p99, "ratio": mbps / mb,
            "direct_mb_per_s": direct_mb, "direct_fdatasync_p99_us": direct_p99, "direct_ratio": mbps / direct_mb,
        })),
    });
    Ok((summary, total.latencies))
}

/// Prints one measurement's summary (as JSON with `json`), and writes its plot.
fn report(summary: &Value, latencies: Latencies, plot: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let f = |k: &str| summary[k].as_f64().unwrap_or(0.0);
    let u = |k: &str| summary[k].as_u64().unwrap_or(0);
    let (rps, mbps, secs) = (f("records_per_s"), f("mb_per_s"), f("seconds"));
    let (batch, record_size, producers) = (u("batch"), u("record_size"), u("producers"));
    if let Some(path) = &plot {
        let title = format!("PutRecords {batch} x {record_size} B, {producers} producers, {rps:.0} records/s");
        std::fs::write(path, latencies.svg(&title))?;
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{summary:#}")?;
        return Ok(());
    }
    let rate = u("rate");
    let mode = if rate > 0 { format!("open loop at {rate} records/s") } else { "closed loop".into() };
    writeln!(out, "produce: {producers} producers, {batch} x {record_size} B per call, {mode}, {secs:.1} s")?;
    writeln!(out, "  acknowledged {} records ({} failed)", u("records_acked"), u("records_failed"))?;
    if let Some(errors) = summary["errors"].as_object() {
        for (k, v) in errors {
            writeln!(out, "  errors: {v} records: {k}")?;
        }
    }
    writeln!(out, "  throughput   {rps:.0} records/s, {mbps:.1} MB/s of record data")?;
    let l = |k: &str| summary["call_latency"][k].as_f64().unwrap_or(0.0);
    writeln!(
        out,
        "  call latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        l("p50_ms"),
        l("p90_ms"),
        l("p99_ms"),
        l("p999_ms"),
        l("max_ms")
    )?;
    if let Some(c) = summary["daemon_cpu_seconds_per_million_records"].as_f64() {
        writeln!(out, "  daemon cost  {c:.2} CPU-seconds per million records")?;
    }
    if let Some(c) = summary["client_cpu_seconds_per_million_records"].as_f64() {
        writeln!(out, "  client cost  {c:.2} CPU-seconds per million records (this load tool)")?;
    }
    let disk = &summary["disk_baseline"];
    if let Some(mb) = disk["mb_per_s"].as_f64() {
        let us = |k: &str| disk[k].as_f64().unwrap_or(0.0) / 1e3;
        writeln!(
            out,
            "  disk baseline {mb:.1} MB/s durable sequential appends of {} B (fdatasync p99 {:.2} ms; 4 KiB fdatasync p99 {:.2} ms)",
            batch.max(1) * record_size,
            us("fdatasync_p99_us"),
            us("fdatasync_4k_p99_us")
        )?;
        writeln!(out, "  ratio        {:.2} of the disk's durable append bandwidth", mbps / mb)?;
        if let Some(direct) = disk["direct_mb_per_s"].as_f64() {
            writeln!(
                out,
                "  disk direct  {direct:.1} MB/s O_DIRECT appends of 1 MiB + fdatasync (p99 {:.2} ms); ratio {:.2}",
                us("direct_fdatasync_p99_us"),
                mbps / direct
            )?;
        }
    }
    Ok(())
}
