//! Resharding through the Rust SDK: SplitShard, MergeShards, UpdateShardCount, UpdateStreamMode,
//! lineage as AWS shows it, and a seeded property test that reshards under continuous load and
//! then checks every record once and per-key order across the lineage.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    ShardFilter, ShardFilterType, ShardIteratorType, StreamMode, StreamModeDetails, StreamStatus,
};
use aws_sdk_kinesis::Client;
use common::{code, runtime, Daemon, Rng};

async fn wait_active(c: &Client, name: &str) {
    for _ in 0..500 {
        let s = c.describe_stream_summary().stream_name(name).send().await.unwrap();
        if s.stream_description_summary().unwrap().stream_status() == &StreamStatus::Active {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{name} did not return to ACTIVE");
}

/// Every shard's records, reading parents before children (as the KCL does).
async fn read_lineage(c: &Client, name: &str) -> Vec<(String, String, Vec<u8>)> {
    let shards = c.list_shards().stream_name(name).send().await.unwrap().shards().to_vec();
    let mut done: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    while done.len() < shards.len() {
        let ready: Vec<_> = shards
            .iter()
            .filter(|s| !done.contains(s.shard_id()))
            .filter(|s| {
                s.parent_shard_id().is_none_or(|p| done.contains(p) || !shards.iter().any(|x| x.shard_id() == p))
            })
            .filter(|s| s.adjacent_parent_shard_id().is_none_or(|p| done.contains(p)))
            .cloned()
            .collect();
        assert!(!ready.is_empty(), "lineage has a cycle or a missing parent");
        for s in ready {
            let mut it = c
                .get_shard_iterator()
                .stream_name(name)
                .shard_id(s.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap()
                .shard_iterator()
                .map(str::to_owned);
            while let Some(i) = it {
                let got = c.get_records().shard_iterator(&i).send().await.unwrap();
                for r in got.records() {
                    out.push((
                        r.partition_key().unwrap_or("").to_owned(),
                        r.sequence_number().to_owned(),
                        r.data().as_ref().to_vec(),
                    ));
                }
                if got.records().is_empty() && s.sequence_number_range().unwrap().ending_sequence_number().is_none() {
                    break; // an open shard read to its tip
                }
                it = got.next_shard_iterator().map(str::to_owned);
                if it.is_none() {
                    assert!(
                        !got.child_shards().is_empty()
                            || s.sequence_number_range().unwrap().ending_sequence_number().is_some()
                    );
                }
            }
            done.insert(s.shard_id().to_owned());
        }
    }
    out
}

#[test]
fn split_and_merge_show_aws_lineage() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
        for i in 0..10 {
            c.put_record()
                .stream_name("s")
                .partition_key(format!("k{i}"))
                .data(Blob::new(format!("a{i}")))
                .send()
                .await
                .unwrap();
        }
        let mid = (u128::MAX / 2 + 1).to_string();
        c.split_shard()
            .stream_name("s")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key(&mid)
            .send()
            .await
            .unwrap();
        wait_active(&c, "s").await;
        let desc = c.describe_stream().stream_name("s").send().await.unwrap();
        let shards = desc.stream_description().unwrap().shards();
        assert_eq!(shards.len(), 3);
        let parent = &shards[0];
        assert!(parent.sequence_number_range().unwrap().ending_sequence_number().is_some(), "the parent is closed");
        assert_eq!(shards[1].parent_shard_id(), Some("shardId-000000000000"));
        assert_eq!(shards[2].parent_shard_id(), Some("shardId-000000000000"));
        assert_eq!(shards[1].hash_key_range().unwrap().ending_hash_key(), (u128::MAX / 2).to_string());
        assert_eq!(shards[2].hash_key_range().unwrap().starting_hash_key(), mid);
        // New records go to the children; the parent ends with its ChildShards.
        let out = c.put_record().stream_name("s").partition_key("k0").data(Blob::new("b0")).send().await.unwrap();
        assert_ne!(out.shard_id(), "shardId-000000000000");
        let it = c
            .get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap();
        let got = c.get_records().shard_iterator(it.shard_iterator().unwrap()).send().await.unwrap();
        assert_eq!(got.records().len(), 10);
        assert!(got.next_shard_iterator().is_none(), "a fully read closed shard has no next iterator");
        let children: Vec<&str> = got.child_shards().iter().map(|c| c.shard_id()).collect();
        assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);

        // Merge the children back; errors for non-adjacent and closed shards.
        let e = c
            .merge_shards()
            .stream_name("s")
            .shard_to_merge("shardId-000000000000")
            .adjacent_shard_to_merge("shardId-000000000001")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ResourceInUseException");
        c.merge_shards()
            .stream_name("s")
            .shard_to_merge("shardId-000000000001")
            .adjacent_shard_to_merge("shardId-000000000002")
            .send()
            .await
            .unwrap();
        wait_active(&c, "s").await;
        let shards = c.list_shards().stream_name("s").send().await.unwrap().shards().to_vec();
        let merged = shards.last().unwrap();
        assert_eq!(merged.parent_shard_id(), Some("shardId-000000000001"));
        assert_eq!(merged.adjacent_parent_shard_id(), Some("shardId-000000000002"));
        assert_eq!(merged.hash_key_range().unwrap().starting_hash_key(), "0");
        assert_eq!(merged.hash_key_range().unwrap().ending_hash_key(), u128::MAX.to_string());
        let open = c
            .list_shards()
            .stream_name("s")
            .shard_filter(ShardFilter::builder().r#type(ShardFilterType::AtLatest).build().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(open.shards().len(), 1);
        let all = read_lineage(&c, "s").await;
        assert_eq!(all.len(), 11);
        assert_eq!(all.last().unwrap().2, b"b0");
    });
}

#[test]
fn reshard_errors_are_aws_shaped() {
    let d = Daemon::start_with("[streams]\ncreate_delay = \"300ms\"\n");
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("e").shard_count(3).send().await.unwrap();
        wait_active(&c, "e").await;
        // While the stream is UPDATING, another reshard is refused.
        c.split_shard()
            .stream_name("e")
            .shard_to_split("shardId-000000000001")
            .new_starting_hash_key((u128::MAX / 2).to_string())
            .send()
            .await
            .unwrap();
        let e = c
            .split_shard()
            .stream_name("e")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("5")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ResourceInUseException");
        wait_active(&c, "e").await;
        let e = c
            .merge_shards()
            .stream_name("e")
            .shard_to_merge("shardId-000000000000")
            .adjacent_shard_to_merge("shardId-000000000002")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException", "not adjacent");
        let e = c
            .merge_shards()
            .stream_name("e")
            .shard_to_merge("shardId-000000000000")
            .adjacent_shard_to_merge("shardId-000000000001")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ResourceInUseException", "shard 1 was split: closed");
        let e = c
            .split_shard()
            .stream_name("e")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("0")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException", "a split key must be inside the shard");
        let e = c
            .split_shard()
            .stream_name("e")
            .shard_to_split("shardId-000000000009")
            .new_starting_hash_key("5")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ResourceNotFoundException");
        let e = c
            .update_shard_count()
            .stream_name("e")
            .target_shard_count(9)
            .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "LimitExceededException", "more than double");
        let e = c
            .update_shard_count()
            .stream_name("e")
            .target_shard_count(1)
            .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "LimitExceededException", "less than half");
    });
}

#[test]
fn update_shard_count_and_mode() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("u").shard_count(4).send().await.unwrap();
        let out = c
            .update_shard_count()
            .stream_name("u")
            .target_shard_count(6)
            .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
            .send()
            .await
            .unwrap();
        assert_eq!((out.current_shard_count(), out.target_shard_count()), (Some(4), Some(6)));
        wait_active(&c, "u").await;
        let s = c.describe_stream_summary().stream_name("u").send().await.unwrap();
        assert_eq!(s.stream_description_summary().unwrap().open_shard_count(), 6);
        c.update_shard_count()
            .stream_name("u")
            .target_shard_count(3)
            .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
            .send()
            .await
            .unwrap();
        wait_active(&c, "u").await;
        let open = c
            .list_shards()
            .stream_name("u")
            .shard_filter(ShardFilter::builder().r#type(ShardFilterType::AtLatest).build().unwrap())
            .send()
            .await
            .unwrap();
        let mut ranges: Vec<(u128, u128)> = open
            .shards()
            .iter()
            .map(|s| {
                let r = s.hash_key_range().unwrap();
                (r.starting_hash_key().parse().unwrap(), r.ending_hash_key().parse().unwrap())
            })
            .collect();
        ranges.sort();
        assert_eq!(ranges, sluice::stream::hashing::uniform_ranges(3));

        let arn = s.stream_description_summary().unwrap().stream_arn().to_owned();
        c.update_stream_mode()
            .stream_arn(&arn)
            .stream_mode_details(StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build().unwrap())
            .send()
            .await
            .unwrap();
        wait_active(&c, "u").await;
        let s = c.describe_stream_summary().stream_name("u").send().await.unwrap();
        assert_eq!(
            s.stream_description_summary().unwrap().stream_mode_details().unwrap().stream_mode(),
            &StreamMode::OnDemand
        );
    });
}

#[test]
fn random_reshards_under_load_lose_nothing_and_keep_key_order() {
    let seed: u64 = std::env::var("SLUICE_RESHARD_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("reshard property test: seed {seed} (SLUICE_RESHARD_SEED replays it)");
    let d = Daemon::start();
    let c = d.client();
    let rt = runtime();
    rt.block_on(async { c.create_stream().stream_name("p").shard_count(2).send().await.unwrap() });
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Producers: each owns some keys and puts k's records in order, one call at a time.
    let producers: Vec<_> = (0..3)
        .map(|p| {
            let (client, acked, stop) = (d.client(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                runtime().block_on(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("p{p}-k{}", n % 7);
                        let data = format!("{key}#{n}");
                        if client
                            .put_record()
                            .stream_name("p")
                            .partition_key(&key)
                            .data(Blob::new(data))
                            .send()
                            .await
                            .is_ok()
                        {
                            acked.lock().unwrap().push((key, n));
                        }
                        n += 1;
                    }
                })
            })
        })
        .collect();
    let mut rng = Rng(seed);
    rt.block_on(async {
        for _ in 0..8 {
            tokio::time::sleep(std::time::Duration::from_millis(30 + rng.next() % 60)).await;
            let open: Vec<_> = c
                .list_shards()
                .stream_name("p")
                .shard_filter(ShardFilter::builder().r#type(ShardFilterType::AtLatest).build().unwrap())
                .send()
                .await
                .unwrap()
                .shards()
                .to_vec();
            let mut sorted = open.clone();
            sorted.sort_by_key(|s| s.hash_key_range().unwrap().starting_hash_key().parse::<u128>().unwrap());
            let began = std::time::Instant::now();
            let r = match rng.next() % 3 {
                0 if sorted.len() > 1 => {
                    let i = (rng.next() as usize) % (sorted.len() - 1);
                    c.merge_shards()
                        .stream_name("p")
                        .shard_to_merge(sorted[i].shard_id())
                        .adjacent_shard_to_merge(sorted[i + 1].shard_id())
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("{e:?}"))
                }
                1 => {
                    let target = (open.len() as i32 + 1).min(open.len() as i32 * 2);
                    c.update_shard_count()
                        .stream_name("p")
                        .target_shard_count(target)
                        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("{e:?}"))
                }
                _ => {
                    let s = &sorted[(rng.next() as usize) % sorted.len()];
                    let r = s.hash_key_range().unwrap();
                    let (lo, hi): (u128, u128) =
                        (r.starting_hash_key().parse().unwrap(), r.ending_hash_key().parse().unwrap());
                    let at = lo + (hi - lo) / 2 + 1;
                    c.split_shard()
                        .stream_name("p")
                        .shard_to_split(s.shard_id())
                        .new_starting_hash_key(at.to_string())
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("{e:?}"))
                }
            };
            r.unwrap_or_else(|e| panic!("seed {seed}: reshard failed: {e:?}"));
            eprintln!("reshard under load took {} ms", began.elapsed().as_millis());
            wait_active(&c, "p").await;
        }
    });
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    let read = rt.block_on(read_lineage(&c, "p"));
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "seed {seed}: load ran ({} records)", acked.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut last_n: BTreeMap<String, u64> = BTreeMap::new();
    for (key, _, data) in &read {
        let text = String::from_utf8(data.clone()).unwrap();
        *seen.entry(text.clone()).or_default() += 1;
        let n: u64 = text.rsplit('#').next().unwrap().parse().unwrap();
        if let Some(prev) = last_n.insert(key.clone(), n) {
            assert!(prev < n, "seed {seed}: key {key} reads {n} after {prev} across the lineage");
        }
    }
    for (key, n) in &acked {
        let text = format!("{key}#{n}");
        assert_eq!(seen.get(&text), Some(&1), "seed {seed}: {text} must be read exactly once");
    }
    eprintln!("reshard property test: seed {seed}, {} acknowledged, {} read, 8 reshards", acked.len(), read.len());
}
