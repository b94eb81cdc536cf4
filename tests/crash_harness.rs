//! Crash harness: producers write continuously to several shards with known payloads; the daemon
//! is killed with SIGKILL at seeded random moments and restarted. After every restart each
//! acknowledged record must be present exactly once, in order per shard, byte-identical, with its
//! original sequence number; records that were never acknowledged may be absent but never corrupt.
//!
//! CI runs `SLUICE_CRASH_CYCLES` cycles (default 24). The long mode is the same test with more:
//!
//! ```sh
//! SLUICE_CRASH_CYCLES=300 cargo test --release --test crash_harness -- --nocapture
//! ```
//!
//! `SLUICE_CRASH_SEED=<n>` replays a run; the seed is printed at the start and on failure.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::{kinesis_json, Daemon, Rng, SIGNED};

const SHARDS: usize = 4;
const PRODUCERS: u64 = 3;

/// The payload of record `n` of `producer`: an id prefix, then bytes derived from the id.
fn payload(producer: u64, n: u64) -> Vec<u8> {
    let mut r = Rng(producer << 40 ^ n);
    let len = 16 + r.below(600) as usize;
    let mut out = format!("p{producer}-n{n}-").into_bytes();
    out.extend((0..len).map(|_| r.next() as u8));
    out
}

fn parse_id(data: &[u8]) -> Option<(u64, u64)> {
    let rest = data.strip_prefix(b"p")?;
    let dash = rest.iter().position(|&b| b == b'-')?;
    let producer = std::str::from_utf8(&rest[..dash]).ok()?.parse().ok()?;
    let rest = rest[dash + 1..].strip_prefix(b"n")?;
    let dash = rest.iter().position(|&b| b == b'-')?;
    let n = std::str::from_utf8(&rest[..dash]).ok()?.parse().ok()?;
    Some((producer, n))
}

struct Acked {
    shard: String,
    seq: String,
    producer: u64,
    n: u64,
}

fn produce(
    addr: std::net::SocketAddr,
    producer: u64,
    seed: u64,
    next_n: Arc<Mutex<u64>>,
    acked: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng(seed ^ (producer * 7919));
    while !stop.load(Ordering::Relaxed) {
        let count = 1 + rng.below(40);
        let first = {
            let mut n = next_n.lock().unwrap();
            let first = *n;
            *n += count;
            first
        };
        let records: Vec<String> = (first..first + count)
            .map(|n| {
                let data = base64::engine::general_purpose::STANDARD.encode(payload(producer, n));
                format!(r#"{{"PartitionKey":"key-{}","Data":"{data}"}}"#, rng.below(64))
            })
            .collect();
        let body = format!(r#"{{"StreamName":"crash","Records":[{}]}}"#, records.join(","));
        let head = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\n{SIGNED}Content-Length: {}\r\n\r\n",
            body.len()
        );
        let Some((200, resp)) = common::http_request(addr, &head, body.as_bytes()) else {
            // The daemon is gone (or refused): this call's records are unacknowledged.
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&resp).expect("a 200 answer is complete JSON");
        let mut acked = acked.lock().unwrap();
        for (i, r) in v["Records"].as_array().unwrap().iter().enumerate() {
            if let (Some(shard), Some(seq)) = (r["ShardId"].as_str(), r["SequenceNumber"].as_str()) {
                acked.push(Acked { shard: shard.into(), seq: seq.into(), producer, n: first + i as u64 });
            }
        }
    }
}

/// Every record of every shard, in shard order: (shard, sequence number, data).
fn read_everything(d: &Daemon) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for s in 0..SHARDS {
        let shard = format!("shardId-{s:012}");
        let (status, v) = kinesis_json(
            d.addr,
            "GetShardIterator",
            &format!(r#"{{"StreamName":"crash","ShardId":"{shard}","ShardIteratorType":"TRIM_HORIZON"}}"#),
        );
        assert_eq!(status, 200, "{v}");
        let mut it = v["ShardIterator"].as_str().unwrap().to_owned();
        loop {
            let (status, v) = kinesis_json(d.addr, "GetRecords", &format!(r#"{{"ShardIterator":"{it}"}}"#));
            assert_eq!(status, 200, "{v}");
            let recs = v["Records"].as_array().unwrap();
            if recs.is_empty() {
                break;
            }
            for r in recs {
                let data = base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().unwrap()).unwrap();
                out.push((shard.clone(), r["SequenceNumber"].as_str().unwrap().to_owned(), data));
            }
            it = v["NextShardIterator"].as_str().unwrap().to_owned();
        }
    }
    out
}

fn verify(d: &Daemon, acked: &[Acked], seed: u64, cycle: u64) -> usize {
    let ctx = format!("seed {seed}, cycle {cycle}");
    let read = read_everything(d);
    let mut by_seq: HashMap<&str, (&str, &[u8])> = HashMap::new();
    let mut seen_ids = HashSet::new();
    let mut last_n: BTreeMap<(&str, u64), u64> = BTreeMap::new();
    let mut last_seq: HashMap<&str, &str> = HashMap::new();
    for (shard, seq, data) in &read {
        // Never corrupt: whatever is served is exactly the payload its id says.
        let (p, n) = parse_id(data).unwrap_or_else(|| panic!("{ctx}: unreadable record {seq}"));
        assert_eq!(data, &payload(p, n), "{ctx}: record {seq} is corrupt");
        assert!(seen_ids.insert((p, n)), "{ctx}: record p{p}-n{n} is served twice");
        if let Some(prev) = last_seq.insert(shard, seq) {
            assert!(prev < seq.as_str(), "{ctx}: sequence numbers of {shard} go backwards");
        }
        if let Some(prev) = last_n.insert((shard, p), n) {
            assert!(prev < n, "{ctx}: {shard} serves p{p} n{n} after n{prev}");
        }
        by_seq.insert(seq, (shard, data));
    }
    for a in acked {
        let (shard, data) = by_seq
            .get(a.seq.as_str())
            .unwrap_or_else(|| panic!("{ctx}: acknowledged record p{}-n{} ({}) is lost", a.producer, a.n, a.seq));
        assert_eq!(*shard, a.shard, "{ctx}: record {} moved shard", a.seq);
        assert_eq!(*data, &payload(a.producer, a.n)[..], "{ctx}: record {} has other bytes", a.seq);
    }
    read.len()
}

/// Starts or stops encryption of the harness's stream (waiting out UPDATING).
fn set_encryption(d: &Daemon, on: bool) {
    let op = if on { "StartStreamEncryption" } else { "StopStreamEncryption" };
    let body = r#"{"StreamName":"crash","EncryptionType":"KMS","KeyId":"alias/aws/kinesis"}"#;
    for _ in 0..500 {
        let (s, v) = kinesis_json(d.addr, op, body);
        if s == 200 {
            return;
        }
        assert_eq!(v["__type"], "ResourceInUseException", "{op}: {v}");
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{op} did not get through");
}

#[test]
fn acknowledged_records_survive_repeated_kill_9() {
    let cycles: u64 = std::env::var("SLUICE_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let seed: u64 = std::env::var("SLUICE_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash harness: seed {seed}, {cycles} cycles (SLUICE_CRASH_SEED={seed} replays the schedule)");
    let mut rng = Rng(seed);
    // Group commits of two shard files go through the write-ahead log, those of one straight to
    // its segment: both write paths take the same kills.
    let mut d = Daemon::start_with(&format!("{}[storage]\nwal_min_files = 2\n", common::FAST_CONFIG));
    let (s, v) = kinesis_json(d.addr, "CreateStream", &format!(r#"{{"StreamName":"crash","ShardCount":{SHARDS}}}"#));
    assert_eq!(s, 200, "{v}");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let counters: Vec<Arc<Mutex<u64>>> = (0..PRODUCERS).map(|_| Arc::new(Mutex::new(0))).collect();
    let mut served = 0;
    let mut encrypted = false;
    for cycle in 0..cycles {
        // Encryption at rest is switched on and off as the run goes, so recovery meets sealed
        // and plain segments, and changes of key, next to each other.
        if rng.below(3) == 0 {
            encrypted = !encrypted;
            set_encryption(&d, encrypted);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (addr, n, a, s) = (d.addr, counters[p as usize].clone(), acked.clone(), stop.clone());
                let seed = rng.next();
                std::thread::spawn(move || produce(addr, p, seed, n, a, s))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + rng.below(250)));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        for p in producers {
            p.join().unwrap();
        }
        d.restart();
        served = verify(&d, &acked.lock().unwrap(), seed, cycle);
    }
    let acked = acked.lock().unwrap().len();
    eprintln!("crash harness summary: seed {seed}, cycles {cycles}, records acknowledged {acked}, records served {served}, lost 0");
    assert!(acked > 0, "the producers got acknowledgements");
}
