//! AWS's per-shard limits when switched on, and on-demand scaling under a ramp of load.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{kinesis_json, Daemon};

#[test]
fn enforced_limits_throttle_like_aws() {
    let d = Daemon::start_with(
        "[streams]\ncreate_delay = \"0ms\"\n[limits]\nenforce = true\nshard_write_records_per_s = 10\nshard_read_calls_per_s = 5\n",
    );
    let (s, _) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"l","ShardCount":1}"#);
    assert_eq!(s, 200);
    let recs: Vec<String> = (0..50).map(|i| format!(r#"{{"PartitionKey":"k{i}","Data":"eA=="}}"#)).collect();
    let (s, v) = kinesis_json(d.addr, "PutRecords", &format!(r#"{{"StreamName":"l","Records":[{}]}}"#, recs.join(",")));
    assert_eq!(s, 200, "{v}");
    let failed = v["FailedRecordCount"].as_u64().unwrap();
    assert!((35..=42).contains(&failed), "a 10 records/s shard takes about 10 of 50 at once: {failed} failed");
    let codes: Vec<&str> = v["Records"].as_array().unwrap().iter().filter_map(|r| r["ErrorCode"].as_str()).collect();
    assert!(codes.iter().all(|c| *c == "ProvisionedThroughputExceededException"), "{codes:?}");
    let (s, v) = kinesis_json(d.addr, "PutRecord", r#"{"StreamName":"l","PartitionKey":"k","Data":"eA=="}"#);
    assert_eq!((s, v["__type"].as_str()), (400, Some("ProvisionedThroughputExceededException")));

    let (_, v) = kinesis_json(
        d.addr,
        "GetShardIterator",
        r#"{"StreamName":"l","ShardId":"shardId-000000000000","ShardIteratorType":"TRIM_HORIZON"}"#,
    );
    let it = v["ShardIterator"].as_str().unwrap().to_owned();
    let throttled = (0..10)
        .filter(|_| {
            let (s, v) = kinesis_json(d.addr, "GetRecords", &format!(r#"{{"ShardIterator":"{it}"}}"#));
            s == 400 && v["__type"] == "ProvisionedThroughputExceededException"
        })
        .count();
    assert!(throttled >= 4, "5 GetRecords calls/s: {throttled} of 10 quick calls throttled");
}

fn open_shards(d: &Daemon, name: &str) -> usize {
    let (_, v) = kinesis_json(
        d.addr,
        "ListShards",
        &format!(r#"{{"StreamName":"{name}","ShardFilter":{{"Type":"AT_LATEST"}}}}"#),
    );
    v["Shards"].as_array().map_or(0, |a| a.len())
}

#[test]
fn on_demand_streams_split_hot_shards_and_merge_cold_ones() {
    let d = Daemon::start_with(
        "[streams]\ncreate_delay = \"0ms\"\n[ondemand]\ncheck_interval = \"200ms\"\nsplit_bytes_per_s = \"20 KB\"\nsplit_after_checks = 2\nmerge_bytes_per_s = \"5 KB\"\nmerge_after_checks = 3\nmin_shards = 4\n",
    );
    let (s, v) =
        kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"od","StreamModeDetails":{"StreamMode":"ON_DEMAND"}}"#);
    assert_eq!(s, 200, "{v}");
    assert_eq!(open_shards(&d, "od"), 4);
    // A ramp: one hot partition key at about 200 KB/s.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (addr, stop) = (d.addr, stop.clone());
        let data = "eHh4".repeat(1000); // 3,000 bytes
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let recs: Vec<String> =
                    (0..10).map(|_| format!(r#"{{"PartitionKey":"hot","Data":"{data}"}}"#)).collect();
                kinesis_json(addr, "PutRecords", &format!(r#"{{"StreamName":"od","Records":[{}]}}"#, recs.join(",")));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = Instant::now();
    while open_shards(&d, "od") <= 4 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let split_after = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(open_shards(&d, "od") > 4, "the hot shard was split");
    eprintln!("on-demand: split {} ms after the load began", split_after.as_millis());
    let cooled = Instant::now();
    while open_shards(&d, "od") > 4 && cooled.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(open_shards(&d, "od"), 4, "cold neighbours were merged back, not below min_shards");
    eprintln!("on-demand: merged back {} ms after the load stopped", cooled.elapsed().as_millis());
    let (_, body) = common::http_get(d.addr, "/metrics").unwrap();
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(r#"sluice_ondemand_scaling_total{stream="od",action="split"}"#), "{text}");
    assert!(text.contains(r#"sluice_ondemand_scaling_total{stream="od",action="merge"}"#), "{text}");
    // Provisioned streams never scale by themselves.
    let (s, _) = kinesis_json(d.addr, "CreateStream", r#"{"StreamName":"fixed","ShardCount":1}"#);
    assert_eq!(s, 200);
    assert_eq!(open_shards(&d, "fixed"), 1);
}
