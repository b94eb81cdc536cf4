//! Stream and account settings through the official Rust SDK: enhanced monitoring, the maximum
//! record size, encryption at rest, record distribution, warm throughput, account settings and
//! resource policies, with the errors AWS gives.

mod common;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    EncryptionType, MetricsName, MinimumThroughputBillingCommitmentInput,
    MinimumThroughputBillingCommitmentInputStatus, RecordDistributionStrategy, ShardIteratorType, StreamMode,
    StreamModeDetails, StreamStatus,
};
use common::{code, runtime, Daemon};

const ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/";

async fn wait_active(c: &aws_sdk_kinesis::Client, name: &str) {
    for _ in 0..200 {
        let s = c.describe_stream_summary().stream_name(name).send().await.unwrap();
        if s.stream_description_summary().unwrap().stream_status() == &StreamStatus::Active {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{name} did not become ACTIVE");
}

#[test]
fn monitoring_record_size_and_encryption() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        c.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
        let out = c
            .enable_enhanced_monitoring()
            .stream_name("s")
            .shard_level_metrics(MetricsName::IncomingBytes)
            .shard_level_metrics(MetricsName::IteratorAgeMilliseconds)
            .send()
            .await
            .unwrap();
        assert!(out.current_shard_level_metrics().is_empty());
        assert_eq!(
            out.desired_shard_level_metrics(),
            [MetricsName::IncomingBytes, MetricsName::IteratorAgeMilliseconds]
        );
        let out = c
            .disable_enhanced_monitoring()
            .stream_name("s")
            .shard_level_metrics(MetricsName::All)
            .send()
            .await
            .unwrap();
        assert!(out.desired_shard_level_metrics().is_empty());

        // 2 MiB of data is refused at the default 1 MiB, then accepted at 10 MiB.
        let big = vec![0x5au8; 2 << 20];
        let e =
            c.put_record().stream_name("s").partition_key("k").data(Blob::new(big.clone())).send().await.unwrap_err();
        assert_eq!(code(&e), "ValidationException");
        c.update_max_record_size().stream_arn(format!("{ARN}s")).max_record_size_in_kib(10240).send().await.unwrap();
        let summary = c.describe_stream_summary().stream_name("s").send().await.unwrap();
        assert_eq!(summary.stream_description_summary().unwrap().max_record_size_in_kib(), Some(10240));
        let e = c
            .update_max_record_size()
            .stream_arn(format!("{ARN}s"))
            .max_record_size_in_kib(100)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ValidationException");

        c.start_stream_encryption()
            .stream_name("s")
            .encryption_type(EncryptionType::Kms)
            .key_id("alias/aws/kinesis")
            .send()
            .await
            .unwrap();
        wait_active(&c, "s").await;
        let put = c.put_record().stream_name("s").partition_key("k").data(Blob::new(big.clone())).send().await.unwrap();
        assert_eq!(put.encryption_type(), Some(&EncryptionType::Kms));
        let desc = c.describe_stream().stream_name("s").send().await.unwrap();
        let sd = desc.stream_description().unwrap();
        assert_eq!((sd.encryption_type(), sd.key_id()), (Some(&EncryptionType::Kms), Some("alias/aws/kinesis")));
        let e = c
            .start_stream_encryption()
            .stream_name("s")
            .encryption_type(EncryptionType::Kms)
            .key_id("not a key!")
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        let it = c
            .get_shard_iterator()
            .stream_name("s")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap();
        let got = c.get_records().shard_iterator(it.shard_iterator().unwrap()).send().await.unwrap();
        assert_eq!(got.records().len(), 1);
        assert_eq!(got.records()[0].data().as_ref(), &big[..], "a 2 MiB record reads back whole");
        c.stop_stream_encryption()
            .stream_name("s")
            .encryption_type(EncryptionType::Kms)
            .key_id("alias/aws/kinesis")
            .send()
            .await
            .unwrap();
        wait_active(&c, "s").await;
        let desc = c.describe_stream_summary().stream_name("s").send().await.unwrap();
        assert_eq!(desc.stream_description_summary().unwrap().encryption_type(), Some(&EncryptionType::None));
    });
}

#[test]
fn distribution_warm_throughput_account_and_policies() {
    let d = Daemon::start();
    let c = d.client();
    runtime().block_on(async {
        let on_demand = StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build().unwrap();
        c.create_stream().stream_name("od").stream_mode_details(on_demand).send().await.unwrap();
        c.create_stream().stream_name("prov").shard_count(1).send().await.unwrap();
        let e = c
            .update_stream_record_distribution_strategy()
            .stream_arn(format!("{ARN}prov"))
            .record_distribution_strategy(RecordDistributionStrategy::Auto)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        c.update_stream_record_distribution_strategy()
            .stream_arn(format!("{ARN}od"))
            .record_distribution_strategy(RecordDistributionStrategy::Auto)
            .send()
            .await
            .unwrap();
        let mut shards = std::collections::BTreeSet::new();
        for _ in 0..8 {
            let p = c.put_record().stream_name("od").partition_key("same").data(Blob::new(b"x".to_vec())).send().await.unwrap();
            shards.insert(p.shard_id().to_owned());
        }
        assert_eq!(shards.len(), 4, "AUTO spreads one key over every open shard");

        // Warm throughput needs the account's commitment.
        let e = c.update_stream_warm_throughput().stream_name("od").warm_throughput_mibps(6).send().await.unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        let before = c.describe_account_settings().send().await.unwrap();
        assert_eq!(before.minimum_throughput_billing_commitment().unwrap().status().as_str(), "DISABLED");
        let commitment = MinimumThroughputBillingCommitmentInput::builder()
            .status(MinimumThroughputBillingCommitmentInputStatus::Enabled)
            .build()
            .unwrap();
        let after = c.update_account_settings().minimum_throughput_billing_commitment(commitment).send().await.unwrap();
        assert_eq!(after.minimum_throughput_billing_commitment().unwrap().status().as_str(), "ENABLED");
        let w = c.update_stream_warm_throughput().stream_name("od").warm_throughput_mibps(6).send().await.unwrap();
        assert_eq!(w.warm_throughput().unwrap().target_mibps(), Some(6));
        wait_active(&c, "od").await;
        let s = c.describe_stream_summary().stream_name("od").send().await.unwrap();
        assert_eq!(s.stream_description_summary().unwrap().open_shard_count(), 6);

        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kinesis:GetRecords","Resource":"*"}]}"#;
        c.put_resource_policy().resource_arn(format!("{ARN}prov")).policy(policy).send().await.unwrap();
        let got = c.get_resource_policy().resource_arn(format!("{ARN}prov")).send().await.unwrap();
        assert_eq!(got.policy(), policy);
        let e = c.put_resource_policy().resource_arn(format!("{ARN}prov")).policy("{}").send().await.unwrap_err();
        assert_eq!(code(&e), "InvalidArgumentException");
        let e = c.get_resource_policy().resource_arn(format!("{ARN}none")).send().await.unwrap_err();
        assert_eq!(code(&e), "ResourceNotFoundException");
        c.delete_resource_policy().resource_arn(format!("{ARN}prov")).send().await.unwrap();
        let got = c.get_resource_policy().resource_arn(format!("{ARN}prov")).send().await.unwrap();
        assert_eq!(got.policy(), "{}");
    });
}
