//! Control-plane operations through the official Rust SDK, happy paths and AWS errors.

mod common;

use aws_sdk_kinesis::types::{ShardFilter, ShardFilterType, StreamMode, StreamModeDetails, StreamStatus};
use common::{code, runtime, Daemon};

#[test]
fn stream_lifecycle_and_listing() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("alpha").shard_count(3).send().await.unwrap();
        c.create_stream()
            .stream_name("beta")
            .stream_mode_details(StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build().unwrap())
            .send()
            .await
            .unwrap();
        for n in ["gamma", "delta"] {
            c.create_stream().stream_name(n).shard_count(1).send().await.unwrap();
        }

        let desc = c.describe_stream().stream_name("alpha").send().await.unwrap();
        let sd = desc.stream_description().unwrap();
        assert_eq!(sd.stream_status(), &StreamStatus::Active);
        assert_eq!(sd.shards().len(), 3);
        assert_eq!(sd.retention_period_hours(), 24);
        assert_eq!(sd.stream_arn(), "arn:aws:kinesis:us-east-1:000000000000:stream/alpha");
        assert_eq!(sd.shards()[0].shard_id(), "shardId-000000000000");
        assert_eq!(sd.shards()[0].hash_key_range().unwrap().starting_hash_key(), "0");
        assert_eq!(sd.shards()[2].hash_key_range().unwrap().ending_hash_key(), u128::MAX.to_string());

        let beta = c.describe_stream_summary().stream_name("beta").send().await.unwrap();
        let s = beta.stream_description_summary().unwrap();
        assert_eq!(s.open_shard_count(), 4, "ON_DEMAND starts with 4 shards");
        assert_eq!(s.stream_mode_details().unwrap().stream_mode(), &StreamMode::OnDemand);

        // Pagination: 4 streams, 3 pages of at most 2 / 2.
        let p1 = c.list_streams().limit(2).send().await.unwrap();
        assert_eq!(p1.stream_names(), ["alpha", "beta"]);
        assert!(p1.has_more_streams());
        assert_eq!(p1.stream_summaries().len(), 2);
        let p2 = c.list_streams().next_token(p1.next_token().unwrap()).limit(2).send().await.unwrap();
        assert_eq!(p2.stream_names(), ["delta", "gamma"]);
        assert!(!p2.has_more_streams());
        let p3 = c.list_streams().exclusive_start_stream_name("beta").send().await.unwrap();
        assert_eq!(p3.stream_names(), ["delta", "gamma"]);

        // StreamARN works wherever StreamName does.
        let arn = sd.stream_arn().to_owned();
        let by_arn = c.describe_stream_summary().stream_arn(&arn).send().await.unwrap();
        assert_eq!(by_arn.stream_description_summary().unwrap().stream_name(), "alpha");

        c.delete_stream().stream_name("gamma").send().await.unwrap();
        let err = c.describe_stream().stream_name("gamma").send().await.unwrap_err();
        assert_eq!(code(&err), "ResourceNotFoundException");
        let names = c.list_streams().send().await.unwrap();
        assert_eq!(names.stream_names(), ["alpha", "beta", "delta"]);
    });
}

#[test]
fn stream_errors_are_aws_shaped() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
        let e = c.create_stream().stream_name("s").shard_count(1).send().await.unwrap_err();
        assert_eq!(code(&e), "ResourceInUseException");
        let e = c.create_stream().stream_name("bad name!").shard_count(1).send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException");
        let e = c.create_stream().stream_name("zero").shard_count(0).send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException");
        // Without a shard count or a mode, AWS creates an on-demand stream (4 shards).
        c.create_stream().stream_name("nocount").send().await.unwrap();
        let s = c.describe_stream_summary().stream_name("nocount").send().await.unwrap();
        let s = s.stream_description_summary().unwrap();
        assert_eq!(s.stream_mode_details().unwrap().stream_mode().as_str(), "ON_DEMAND");
        assert_eq!(s.open_shard_count(), 4);
        let e = c
            .create_stream()
            .stream_name("nocount2")
            .stream_mode_details(
                aws_sdk_kinesis::types::StreamModeDetails::builder()
                    .stream_mode(aws_sdk_kinesis::types::StreamMode::Provisioned)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException", "PROVISIONED needs a shard count");
        let e = c.delete_stream().stream_name("missing").send().await.unwrap_err();
        assert_eq!(code(&e), "ResourceNotFoundException");
        let e = c.describe_stream_summary().stream_arn("arn:aws:s3:::bucket").send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException");
        let e = c.list_streams().limit(0).send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException");
        let e = c.list_shards().stream_name("s").next_token("bm9wZQ==").send().await.unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        let e = c.list_streams().next_token("garbage").send().await.unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
    });
}

#[test]
fn shard_limit_is_enforced_and_reported() {
    let d = Daemon::start_with(&format!("{}shard_limit = 5\n", common::FAST_CONFIG));
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("a").shard_count(4).send().await.unwrap();
        let e = c.create_stream().stream_name("b").shard_count(2).send().await.unwrap_err();
        assert_eq!(code(&e), "LimitExceededException");
        let l = c.describe_limits().send().await.unwrap();
        assert_eq!(l.shard_limit(), 5);
        assert_eq!(l.open_shard_count(), 4);
        assert_eq!(l.on_demand_stream_count(), 0);
        assert_eq!(l.on_demand_stream_count_limit(), 50);
        c.create_stream().stream_name("b").shard_count(1).send().await.unwrap();
    });
}

#[test]
fn list_shards_pages_and_filters() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("s").shard_count(5).send().await.unwrap();
        let p1 = c.list_shards().stream_name("s").max_results(2).send().await.unwrap();
        assert_eq!(p1.shards().len(), 2);
        let token = p1.next_token().unwrap().to_owned();
        let p2 = c.list_shards().next_token(&token).max_results(10).send().await.unwrap();
        let ids: Vec<&str> = p2.shards().iter().map(|s| s.shard_id()).collect();
        assert_eq!(ids, ["shardId-000000000002", "shardId-000000000003", "shardId-000000000004"]);
        assert!(p2.next_token().is_none());

        let after = c
            .list_shards()
            .stream_name("s")
            .shard_filter(
                ShardFilter::builder()
                    .r#type(ShardFilterType::AfterShardId)
                    .shard_id("shardId-000000000003")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(after.shards().len(), 1);
        let latest = c
            .list_shards()
            .stream_name("s")
            .shard_filter(ShardFilter::builder().r#type(ShardFilterType::AtLatest).build().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(latest.shards().len(), 5);
        let e = c.list_shards().stream_name("nope").send().await.unwrap_err();
        assert_eq!(code(&e), "ResourceNotFoundException");
        let e = c.list_shards().stream_name("s").max_results(0).send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException");
    });
}

#[test]
fn retention_changes_follow_aws_rules() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("r").shard_count(1).send().await.unwrap();
        c.increase_stream_retention_period().stream_name("r").retention_period_hours(48).send().await.unwrap();
        let s = c.describe_stream_summary().stream_name("r").send().await.unwrap();
        assert_eq!(s.stream_description_summary().unwrap().retention_period_hours(), 48);
        let e =
            c.increase_stream_retention_period().stream_name("r").retention_period_hours(24).send().await.unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        let e =
            c.decrease_stream_retention_period().stream_name("r").retention_period_hours(72).send().await.unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        let e = c
            .increase_stream_retention_period()
            .stream_name("r")
            .retention_period_hours(9000)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        c.decrease_stream_retention_period().stream_name("r").retention_period_hours(24).send().await.unwrap();
        let e =
            c.decrease_stream_retention_period().stream_name("r").retention_period_hours(12).send().await.unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        let s = c.describe_stream_summary().stream_name("r").send().await.unwrap();
        assert_eq!(s.stream_description_summary().unwrap().retention_period_hours(), 24);
    });
}

#[test]
fn tags_through_both_apis() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("t").shard_count(1).send().await.unwrap();
        c.add_tags_to_stream().stream_name("t").tags("env", "dev").tags("team", "data").send().await.unwrap();
        let l = c.list_tags_for_stream().stream_name("t").send().await.unwrap();
        let tags: Vec<(&str, &str)> = l.tags().iter().map(|t| (t.key(), t.value().unwrap_or(""))).collect();
        assert_eq!(tags, [("env", "dev"), ("team", "data")]);
        assert!(!l.has_more_tags());
        let page = c.list_tags_for_stream().stream_name("t").limit(1).send().await.unwrap();
        assert_eq!(page.tags().len(), 1);
        assert!(page.has_more_tags());
        c.remove_tags_from_stream().stream_name("t").tag_keys("env").send().await.unwrap();

        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/t";
        c.tag_resource().resource_arn(arn).tags("owner", "me").send().await.unwrap();
        let l = c.list_tags_for_resource().resource_arn(arn).send().await.unwrap();
        let keys: Vec<&str> = l.tags().iter().map(|t| t.key()).collect();
        assert_eq!(keys, ["owner", "team"]);
        c.untag_resource().resource_arn(arn).tag_keys("team").send().await.unwrap();
        let l = c.list_tags_for_resource().resource_arn(arn).send().await.unwrap();
        assert_eq!(l.tags().len(), 1);

        // A stream holds at most 50 tags (the model allows 200 in one request).
        let mut too_many = c.add_tags_to_stream().stream_name("t");
        for i in 0..50 {
            too_many = too_many.tags(format!("k{i}"), "v");
        }
        assert_eq!(code(&too_many.send().await.unwrap_err()), "InvalidArgumentException");
        let e = c
            .list_tags_for_resource()
            .resource_arn("arn:aws:kinesis:us-east-1:000000000000:stream/none")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ResourceNotFoundException");
    });
}

#[test]
fn streams_survive_restart() {
    let mut d = Daemon::start();
    runtime().block_on(async {
        let c = d.client();
        c.create_stream().stream_name("keep").shard_count(2).send().await.unwrap();
        c.add_tags_to_stream().stream_name("keep").tags("a", "b").send().await.unwrap();
        c.increase_stream_retention_period().stream_name("keep").retention_period_hours(36).send().await.unwrap();
    });
    assert!(d.terminate().success(), "SIGTERM exits 0");
    d.restart();
    runtime().block_on(async {
        let c = d.client();
        let s = c.describe_stream_summary().stream_name("keep").send().await.unwrap();
        let s = s.stream_description_summary().unwrap();
        assert_eq!(s.retention_period_hours(), 36);
        assert_eq!(s.open_shard_count(), 2);
        let t = c.list_tags_for_stream().stream_name("keep").send().await.unwrap();
        assert_eq!(t.tags().len(), 1);
        // A recreated stream does not accept the old incarnation's sequence numbers.
        c.delete_stream().stream_name("keep").send().await.unwrap();
        c.create_stream().stream_name("keep").shard_count(1).send().await.unwrap();
        let desc = c.describe_stream().stream_name("keep").send().await.unwrap();
        assert_eq!(desc.stream_description().unwrap().shards().len(), 1);
    });
}

#[test]
fn status_goes_creating_then_active_and_deleting_then_gone() {
    let d = Daemon::start_with("[streams]\ncreate_delay = \"400ms\"\ndelete_delay = \"400ms\"\n");
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("slow").shard_count(1).send().await.unwrap();
        let s = c.describe_stream_summary().stream_name("slow").send().await.unwrap();
        assert_eq!(s.stream_description_summary().unwrap().stream_status(), &StreamStatus::Creating);
        let e =
            c.put_record().stream_name("slow").partition_key("k").data(b"x".to_vec().into()).send().await.unwrap_err();
        assert_eq!(code(&e), "ResourceNotFoundException", "a CREATING stream takes no records");
        let mut status = StreamStatus::Creating;
        for _ in 0..100 {
            let s = c.describe_stream_summary().stream_name("slow").send().await.unwrap();
            status = s.stream_description_summary().unwrap().stream_status().clone();
            if status == StreamStatus::Active {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(status, StreamStatus::Active);
        c.delete_stream().stream_name("slow").send().await.unwrap();
        let s = c.describe_stream_summary().stream_name("slow").send().await.unwrap();
        assert_eq!(s.stream_description_summary().unwrap().stream_status(), &StreamStatus::Deleting);
        let mut gone = false;
        for _ in 0..100 {
            if c.describe_stream_summary().stream_name("slow").send().await.is_err() {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(gone, "a DELETING stream vanishes");
    });
}
