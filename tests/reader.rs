//! The internal reader (src/reader): a whole stream read in lineage order across splits and
//! merges, every record once and each partition key in order, and a saved position that
//! survives a restart of the engine and resumes exactly where it was.
//!
//! In-process: the engine is started as a library, with real rocksdb, segment files and core
//! workers, and the Kinesis service is called as the HTTP front end calls it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice::config::Config;
use sluice::http::{AwsService, Reply};
use sluice::kinesis::{expiry, Kinesis};
use sluice::protocol::codec::Protocol;
use sluice::reader::stream::{load, save, StreamPosition, StreamReader, StreamSource};
use sluice::runtime::Position;
use sluice::service::Service;
use sluice::time::now_ms;

async fn call(k: &Kinesis, op: &str, body: Value) -> Value {
    match k.call(op.into(), Protocol::Json, serde_json::to_vec(&body).unwrap().into(), Ok(None)).await {
        Reply::Whole(Ok(v)) => v,
        Reply::Whole(Err(e)) => panic!("{op}: {} {}", e.type_name(), e.message()),
        Reply::Encoded(body) => serde_json::from_slice(&body).unwrap(),
        Reply::Events(_) => panic!("{op}: an event stream"),
    }
}

async fn put_round(k: &Kinesis, round: usize) {
    let records: Vec<Value> = (0..3)
        .flat_map(|key| (0..10).map(move |n| (key, n)))
        .map(|(key, n)| {
            let data = format!("key-{key} {round:02}-{n:02}");
            json!({"PartitionKey": format!("key-{key}"), "Data": base64(&data)})
        })
        .collect();
    let v = call(k, "PutRecords", json!({"StreamName": "r", "Records": records})).await;
    assert_eq!(v["FailedRecordCount"], 0, "{v}");
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config { data_dir: dir.join("data"), workers: 2, pin_workers: false, ..Default::default() };
    cfg.streams.create_delay = Duration::ZERO;
    cfg.streams.delete_delay = Duration::ZERO;
    cfg
}

/// Reads until nothing arrives for a while; returns (shard, data) in the order served.
async fn drain(reader: &mut StreamReader, max_batches: usize) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for _ in 0..max_batches {
        match reader.next(4 << 20, Duration::from_millis(300)).await.unwrap() {
            Some(b) => {
                out.extend(b.records.iter().map(|r| (b.shard_index, String::from_utf8(r.data.to_vec()).unwrap())))
            }
            None => break,
        }
    }
    out
}

/// Every record exactly once, and per key in the order it was written.
fn check(all: &[(u32, String)], rounds: usize) {
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, data) in all {
        let (key, seq) = data.split_once(' ').unwrap();
        per_key.entry(key.to_owned()).or_default().push(seq.to_owned());
    }
    assert_eq!(per_key.len(), 3);
    for (key, seqs) in per_key {
        let want: Vec<String> = (0..rounds).flat_map(|r| (0..10).map(move |n| format!("{r:02}-{n:02}"))).collect();
        assert_eq!(seqs, want, "{key}: every record once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_follows_lineage_and_resumes_from_a_saved_position() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(config(dir.path())).await.unwrap();
    let k = Kinesis {
        svc: svc.clone(),
        delivery: sluice::firehose::Firehose::start(svc.clone()).0,
        queues: sluice::queues::Queues::start(svc.clone()).await,
    };
    call(&k, "CreateStream", json!({"StreamName": "r", "ShardCount": 2})).await;
    put_round(&k, 0).await;
    // Split shard 0 in two, then merge shard 1 with the upper child: records of one key move
    // from parent to child shards between rounds.
    let mid = (u128::MAX / 2) / 2;
    call(
        &k,
        "SplitShard",
        json!({"StreamName": "r", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": mid.to_string()}),
    )
    .await;
    put_round(&k, 1).await;
    call(&k, "MergeShards", json!({"StreamName": "r", "ShardToMerge": "shardId-000000000003", "AdjacentShardToMerge": "shardId-000000000001"})).await;
    put_round(&k, 2).await;
    let stream_id = svc.stream("r").unwrap().id;
    let source: Arc<dyn StreamSource> = svc.clone();

    // One reader reads it all, parents before children.
    let mut reader = StreamReader::new(
        svc.runtime.clone(),
        source.clone(),
        stream_id,
        Position::TrimHorizon,
        StreamPosition::default(),
    );
    let all = drain(&mut reader, 100).await;
    assert_eq!(all.len(), 90);
    check(&all, 3);
    let meta = svc.stream("r").unwrap();
    let first_seen = |shard: u32| all.iter().position(|(s, _)| *s == shard);
    let last_seen = |shard: u32| all.iter().rposition(|(s, _)| *s == shard);
    for s in meta.shards.iter() {
        for p in s.parent.iter().chain(s.adjacent_parent.iter()) {
            if let (Some(child_first), Some(parent_last)) = (first_seen(s.index), last_seen(*p)) {
                assert!(parent_last < child_first, "shard {p} read to its end before its child {}", s.index);
            }
        }
    }
    assert_eq!(reader.position().finished.len(), 3, "the three closed shards are finished");

    // Another reads a third, saves its position (a synced write), and the engine restarts.
    let mut first =
        StreamReader::new(svc.runtime.clone(), source, stream_id, Position::TrimHorizon, StreamPosition::default());
    let mut part = Vec::new();
    while part.len() < 30 {
        let b = first.next(1 << 10, Duration::from_millis(300)).await.unwrap().expect("records are there");
        part.extend(b.records.iter().map(|r| (b.shard_index, String::from_utf8(r.data.to_vec()).unwrap())));
    }
    save(&svc.store, "test-consumer", first.position()).unwrap();
    let saved = first.position().clone();
    drop(first);
    drop(reader);
    drop(k);
    let svc2 = svc.clone();
    tokio::task::spawn_blocking(move || svc2.shutdown()).await.unwrap();
    drop(svc);

    let svc = Service::start(config(dir.path())).await.unwrap();
    let loaded = load(&svc.store, "test-consumer").unwrap().expect("the position was saved");
    assert_eq!(loaded, saved);
    let source: Arc<dyn StreamSource> = svc.clone();
    let mut resumed = StreamReader::new(svc.runtime.clone(), source, stream_id, Position::TrimHorizon, loaded);
    let rest = drain(&mut resumed, 100).await;
    let mut both = part.clone();
    both.extend(rest);
    assert_eq!(both.len(), 90, "nothing lost or repeated across the restart");
    check(&both, 3);
    assert!(load(&svc.store, "nobody").unwrap().is_none());

    // A day and an hour on, the closed shards' records have all expired: the shards leave the
    // stream (ListShards, files), their children stay, and a reader starts at the children.
    let k = Kinesis {
        svc: svc.clone(),
        delivery: sluice::firehose::Firehose::start(svc.clone()).0,
        queues: sluice::queues::Queues::start(svc.clone()).await,
    };
    let before = call(&k, "ListShards", json!({"StreamName": "r"})).await["Shards"].as_array().unwrap().len();
    assert_eq!(before, 5);
    assert_eq!(expiry::expire_closed_shards(&svc, now_ms() + 25 * 3_600_000).await, 3);
    let shards = call(&k, "ListShards", json!({"StreamName": "r"})).await;
    let ids: Vec<&str> = shards["Shards"].as_array().unwrap().iter().map(|s| s["ShardId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["shardId-000000000002", "shardId-000000000004"]);
    assert_eq!(expiry::expire_closed_shards(&svc, now_ms() + 25 * 3_600_000).await, 0, "nothing left to expire");
    let source: Arc<dyn StreamSource> = svc.clone();
    let mut fresh =
        StreamReader::new(svc.runtime.clone(), source, stream_id, Position::TrimHorizon, StreamPosition::default());
    let left = drain(&mut fresh, 100).await;
    assert!(left.iter().all(|(s, _)| *s == 2 || *s == 4), "only the open shards are read");
    let in_children: usize = both.iter().filter(|(s, _)| *s == 2 || *s == 4).count();
    assert_eq!(left.len(), in_children, "the open shards' records are all still there");
    drop(k);
    let svc2 = svc.clone();
    tokio::task::spawn_blocking(move || svc2.shutdown()).await.unwrap();
}
