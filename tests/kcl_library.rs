//! The KCL worker as a library (`sluice::kcl::Worker` with a Rust `RecordProcessor`) against a
//! real daemon: every record of a stream once and in order per shard, KPL aggregates
//! de-aggregated with sub-sequence numbers, a checkpoint inside an aggregate, a second worker
//! that resumes exactly after it, and the checkpointer's range checks.

mod common;

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use sluice::kcl::client::{AwsClient, Credentials, Endpoint};
use sluice::kcl::kpl;
use sluice::kcl::leases::{Lease, LeaseTable};
use sluice::kcl::properties::{InitialPosition, KclConfig, RetrievalMode};
use sluice::kcl::{CheckpointError, Checkpointer, InitializeInput, ProcessRecordsInput, RecordProcessor, Worker};
use tokio::sync::mpsc;

/// What a processor saw: (shard, sequence number, sub-sequence number, data).
type Seen = (String, String, u64, String);

/// Sends what it sees; checkpoints where `checkpoint_at` says (else after each batch).
struct Recorder {
    shard: String,
    tx: mpsc::UnboundedSender<Seen>,
    /// Checkpoint only at the record with this data, at its position.
    checkpoint_at: Option<String>,
    refusals: mpsc::UnboundedSender<String>,
}

impl RecordProcessor for Recorder {
    async fn initialize(&mut self, _input: InitializeInput) -> anyhow::Result<()> {
        Ok(())
    }

    async fn process_records(&mut self, input: ProcessRecordsInput, cp: &mut Checkpointer) -> anyhow::Result<()> {
        let last = input.records.last().cloned();
        for r in input.records {
            let data = String::from_utf8_lossy(&r.data).into_owned();
            if self.checkpoint_at.as_deref() == Some(data.as_str()) {
                cp.checkpoint_at(&r.sequence_number, r.sub_sequence_number).await?;
            }
            let _ = self.tx.send((self.shard.clone(), r.sequence_number, r.sub_sequence_number, data));
        }
        if self.checkpoint_at.is_none() {
            cp.checkpoint().await?;
        } else if let Some(last) = last {
            // Past the last record delivered: refused, and nothing is written.
            let beyond = format!("{}0", last.sequence_number);
            if let Err(e) = cp.checkpoint_at(&beyond, 0).await {
                let _ = self.refusals.send(e.java_name().to_owned());
            }
            if let Err(CheckpointError::IllegalArgument(_)) = cp.checkpoint_at("not-a-number", 0).await {
                let _ = self.refusals.send("non-numeric".into());
            }
        }
        Ok(())
    }

    async fn lease_lost(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) -> anyhow::Result<()> {
        Ok(cp.checkpoint().await?)
    }

    async fn shutdown_requested(&mut self, _cp: &mut Checkpointer) -> anyhow::Result<()> {
        Ok(())
    }
}

fn config(d: &common::Daemon, app: &str, stream: &str, mode: RetrievalMode) -> KclConfig {
    let mut cfg = KclConfig::new(app, stream);
    cfg.kinesis_endpoint = Some(d.endpoint());
    cfg.initial_position = InitialPosition::TrimHorizon;
    cfg.retrieval_mode = mode;
    cfg.failover_time_millis = 1_500;
    cfg.idle_time_between_reads_millis = 50;
    cfg.shard_sync_interval_millis = 1_000;
    cfg.parent_shard_poll_interval_millis = 100;
    cfg
}

/// Runs a worker until `want` records are seen (or 30 s pass), then stops it.
async fn run_until(cfg: KclConfig, want: usize, checkpoint_at: Option<&str>) -> (Vec<Seen>, Vec<String>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (rtx, mut rrx) = mpsc::unbounded_channel();
    let at = checkpoint_at.map(str::to_owned);
    let worker = Worker::new(cfg, move |shard: &str| {
        Ok(Recorder { shard: shard.to_owned(), tx: tx.clone(), checkpoint_at: at.clone(), refusals: rtx.clone() })
    })
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker.run(async move {
        let _ = stop_rx.await;
    }));
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < want {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(s)) => seen.push(s),
            _ => break,
        }
    }
    let _ = stop_tx.send(());
    run.await.unwrap().unwrap();
    let mut refusals = Vec::new();
    while let Ok(r) = rrx.try_recv() {
        refusals.push(r);
    }
    (seen, refusals)
}

async fn put(client: &aws_sdk_kinesis::Client, stream: &str, key: &str, data: Vec<u8>) -> String {
    let out = client.put_record().stream_name(stream).partition_key(key).data(Blob::new(data)).send().await.unwrap();
    out.sequence_number().to_owned()
}

/// The lease table as the library reads it (a consistent Scan through the signed client).
async fn lease_table(d: &common::Daemon, table: &str) -> Vec<Lease> {
    let creds = Credentials { access_key_id: "test".into(), secret_access_key: "test".into(), session_token: None };
    let client = AwsClient::dynamodb(Endpoint::parse(&d.endpoint()).unwrap(), "us-east-1", creds);
    LeaseTable::new(client, table).list().await.unwrap()
}

#[test]
fn every_record_once_in_shard_order_with_aggregates_de_aggregated() {
    let d = common::Daemon::start();
    let rt = common::runtime();
    rt.block_on(async {
        let client = d.client();
        client.create_stream().stream_name("lib").shard_count(2).send().await.unwrap();
        let mut expected = Vec::new();
        for i in 0..40 {
            let data = format!("r{i:02}");
            put(&client, "lib", &format!("k{}", i % 5), data.clone().into_bytes()).await;
            expected.push(data);
        }
        let agg = kpl::aggregate(&[("k1", None, b"a0"), ("k1", None, b"a1"), ("k1", None, b"a2")]);
        let agg_seq = put(&client, "lib", "k1", agg).await;
        expected.extend(["a0", "a1", "a2"].map(String::from));
        for mode in [RetrievalMode::Polling, RetrievalMode::FanOut] {
            let app = format!("lib-{mode:?}");
            let (seen, _) = run_until(config(&d, &app, "lib", mode), expected.len(), None).await;
            let mut got: Vec<String> = seen.iter().map(|s| s.3.clone()).collect();
            got.sort();
            let mut want = expected.clone();
            want.sort();
            assert_eq!(got, want, "{mode:?}: every record exactly once");
            for shard in ["shardId-000000000000", "shardId-000000000001"] {
                let in_shard: Vec<&Seen> = seen.iter().filter(|s| s.0 == shard).collect();
                assert!(!in_shard.is_empty(), "{mode:?}: {shard} had records");
                assert!(
                    in_shard
                        .windows(2)
                        .all(|w| sluice::kcl::retrieval::cmp_seq(&w[0].1, &w[1].1).then(w[0].2.cmp(&w[1].2)).is_lt()),
                    "{mode:?}: {shard} in order"
                );
            }
            let subs: Vec<(u64, &str)> = seen.iter().filter(|s| s.1 == agg_seq).map(|s| (s.2, s.3.as_str())).collect();
            assert_eq!(subs, [(0, "a0"), (1, "a1"), (2, "a2")], "{mode:?}");
            // Each shard's checkpoint is its last record; the leases were given up on stop.
            let leases = lease_table(&d, &app).await;
            assert_eq!(leases.len(), 2);
            for l in &leases {
                let last = seen.iter().rfind(|s| s.0 == l.key).unwrap();
                assert_eq!((&l.checkpoint, l.checkpoint_sub), (&last.1, last.2), "{mode:?} {l:?}");
                assert!(l.owner.is_none(), "released on stop: {l:?}");
            }
        }
    });
}

#[test]
fn a_checkpoint_inside_an_aggregate_resumes_at_the_next_sub_record() {
    let d = common::Daemon::start();
    let rt = common::runtime();
    rt.block_on(async {
        let client = d.client();
        client.create_stream().stream_name("agg").shard_count(1).send().await.unwrap();
        for i in 0..3 {
            put(&client, "agg", "k", format!("before{i}").into_bytes()).await;
        }
        let agg = kpl::aggregate(&[("k", None, b"s0"), ("k", None, b"s1"), ("k", None, b"s2")]);
        let agg_seq = put(&client, "agg", "k", agg).await;
        for i in 0..3 {
            put(&client, "agg", "k", format!("after{i}").into_bytes()).await;
        }
        let cfg = config(&d, "agg-app", "agg", RetrievalMode::Polling);
        let (first, refusals) = run_until(cfg.clone(), 9, Some("s1")).await;
        assert_eq!(first.len(), 9);
        assert!(refusals.contains(&"IllegalArgumentException".to_owned()), "{refusals:?}");
        assert!(refusals.contains(&"non-numeric".to_owned()), "{refusals:?}");
        let leases = lease_table(&d, "agg-app").await;
        assert_eq!((&leases[0].checkpoint, leases[0].checkpoint_sub), (&agg_seq, 1));
        // A new worker starts after (aggregate, 1): s2 first, nothing before it again.
        let (second, _) = run_until(cfg, 4, Some("never")).await;
        let data: Vec<&str> = second.iter().map(|s| s.3.as_str()).collect();
        assert_eq!(data, ["s2", "after0", "after1", "after2"]);
        assert_eq!((second[0].1.as_str(), second[0].2), (agg_seq.as_str(), 2));
    });
}
