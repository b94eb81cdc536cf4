//! Durability: every acknowledged record survives `kill -9`; a torn or corrupt tail is cut off and
//! reported, and everything before it is served.

mod common;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use common::{runtime, segment_files, Daemon};
use sluice::log::segment::{decode_batch_header, SEGMENT_HEADER_LEN};

/// (shard id, sequence number, partition key, data) of acknowledged records, in ack order.
type Acked = Vec<(String, String, String, Vec<u8>)>;

async fn read_all(c: &aws_sdk_kinesis::Client, stream: &str, shard: &str) -> Vec<(String, String, Vec<u8>)> {
    let mut it = c
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    let mut out = Vec::new();
    loop {
        let got = c.get_records().shard_iterator(&it).send().await.unwrap();
        if got.records().is_empty() {
            return out;
        }
        for r in got.records() {
            out.push((
                r.sequence_number().to_owned(),
                r.partition_key().unwrap_or("").to_owned(),
                r.data().as_ref().to_vec(),
            ));
        }
        it = got.next_shard_iterator().unwrap().to_owned();
    }
}

fn check_all_acked_present(acked: &Acked, shard: &str, got: &[(String, String, Vec<u8>)]) {
    let expected: Vec<_> = acked.iter().filter(|a| a.0 == shard).collect();
    assert_eq!(got.len(), expected.len(), "record count of {shard}");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g.0, e.1, "sequence number");
        assert_eq!(g.1, e.2, "partition key");
        assert_eq!(g.2, e.3, "data of {}", e.1);
    }
}

/// One PutRecords call of 50 records over 13 keys, all acknowledged.
async fn put_batch(c: &aws_sdk_kinesis::Client, stream: &str, batch: u32) -> Acked {
    let mut req = c.put_records().stream_name(stream);
    let mut sent = Vec::new();
    for i in 0..50u32 {
        let key = format!("k{}", (batch * 7 + i) % 13);
        let data: Vec<u8> = (0..(100 + i * 13)).map(|j| (j as u8) ^ (batch as u8) ^ (i as u8)).collect();
        sent.push((key.clone(), data.clone()));
        req = req.records(PutRecordsRequestEntry::builder().partition_key(key).data(Blob::new(data)).build().unwrap());
    }
    let out = req.send().await.unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    out.records()
        .iter()
        .zip(sent)
        .map(|(r, (k, data))| (r.shard_id().unwrap().to_owned(), r.sequence_number().unwrap().to_owned(), k, data))
        .collect()
}

#[test]
fn acknowledged_records_survive_kill_9() {
    let mut d = Daemon::start();
    let mut acked: Acked = Vec::new();
    runtime().block_on(async {
        let c = d.client();
        c.create_stream().stream_name("durable").shard_count(3).send().await.unwrap();
        for batch in 0..20u32 {
            acked.extend(put_batch(&c, "durable", batch).await);
            let one = c
                .put_record()
                .stream_name("durable")
                .partition_key("single")
                .data(Blob::new(vec![batch as u8; 7]))
                .send()
                .await
                .unwrap();
            acked.push((
                one.shard_id().to_owned(),
                one.sequence_number().to_owned(),
                "single".into(),
                vec![batch as u8; 7],
            ));
        }
    });
    // Straight after the last acknowledgement: no shutdown, no flush.
    d.kill9();
    d.restart();
    runtime().block_on(async {
        let c = d.client();
        for shard in ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"] {
            let got = read_all(&c, "durable", shard).await;
            check_all_acked_present(&acked, shard, &got);
        }
        // Sequence numbers continue after the recovered tail.
        let next = c
            .put_record()
            .stream_name("durable")
            .partition_key("single")
            .data(Blob::new("after"))
            .send()
            .await
            .unwrap();
        let last = acked.iter().rfind(|a| a.0 == next.shard_id()).unwrap();
        assert!(next.sequence_number() > last.1.as_str());
    });
}

/// Acknowledged group commits that spanned several shard files are durable through the
/// write-ahead log alone. Every byte the segments received after their headers is lost here, as
/// if the page cache had never written it back (what a power loss does to unsynced writes); a
/// restart replays the log, and every acknowledged record is there, once, byte for byte.
#[test]
fn acknowledged_records_survive_lost_segment_writes_through_the_write_ahead_log() {
    // Every group commit through the log (by default only those that write several files are:
    // the others are synced in their segment, which this test's loss would not model).
    let mut d = Daemon::start_with(&format!("{}[storage]\nwal_min_files = 1\n", common::FAST_CONFIG));
    let mut acked: Acked = Vec::new();
    runtime().block_on(async {
        let c = d.client();
        c.create_stream().stream_name("logged").shard_count(3).send().await.unwrap();
        for batch in 0..20u32 {
            acked.extend(put_batch(&c, "logged", batch).await);
        }
    });
    d.kill9();
    let logs = |dir: &std::path::Path| -> Vec<(std::path::PathBuf, u64)> {
        let mut out = Vec::new();
        for core in std::fs::read_dir(dir.join("wal")).unwrap() {
            for f in std::fs::read_dir(core.unwrap().path()).unwrap() {
                let f = f.unwrap();
                if f.path().extension().is_some_and(|x| x == "wal") {
                    out.push((f.path(), f.metadata().unwrap().len()));
                }
            }
        }
        out
    };
    assert!(logs(&d.data_dir()).iter().any(|(_, len)| *len > 0), "the calls were logged");
    for seg in segment_files(&d.data_dir()) {
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        std::os::unix::fs::FileExt::write_all_at(
            &f,
            &vec![0u8; (len - SEGMENT_HEADER_LEN) as usize],
            SEGMENT_HEADER_LEN,
        )
        .unwrap();
    }
    d.restart();
    runtime().block_on(async {
        let c = d.client();
        for shard in ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"] {
            let got = read_all(&c, "logged", shard).await;
            check_all_acked_present(&acked, shard, &got);
        }
    });
    // The replayed logs are gone; each worker starts an empty one (spares are not logs).
    assert!(logs(&d.data_dir()).iter().all(|(_, len)| *len == 0), "{:?}", logs(&d.data_dir()));
}

/// Offsets of every batch in a segment file.
fn batch_offsets(bytes: &[u8]) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    let mut off = SEGMENT_HEADER_LEN;
    while let Ok(Some(h)) = decode_batch_header(bytes, off) {
        out.push((off, h.len));
        off += u64::from(h.len);
    }
    out
}

fn put_singles(d: &Daemon, n: u8) -> Acked {
    let mut acked = Vec::new();
    runtime().block_on(async {
        let c = d.client();
        c.create_stream().stream_name("torn").shard_count(1).send().await.unwrap();
        for i in 0..n {
            let out = c
                .put_record()
                .stream_name("torn")
                .partition_key("k")
                .data(Blob::new(vec![i; 300]))
                .send()
                .await
                .unwrap();
            acked.push((out.shard_id().to_owned(), out.sequence_number().to_owned(), "k".to_owned(), vec![i; 300]));
        }
    });
    acked
}

fn damage_last_batch_and_restart(d: &mut Daemon, damage: impl Fn(&std::path::Path, u64, u32)) -> Acked {
    let acked = put_singles(d, 10);
    assert!(d.terminate().success());
    let segs = segment_files(&d.data_dir());
    assert_eq!(segs.len(), 1);
    let bytes = std::fs::read(&segs[0]).unwrap();
    let batches = batch_offsets(&bytes);
    assert_eq!(batches.len(), 10, "one batch per sequential put");
    let (off, len) = *batches.last().unwrap();
    damage(&segs[0], off, len);
    d.restart();
    acked
}

fn check_served_all_but_last(d: &Daemon, acked: &Acked) {
    runtime().block_on(async {
        let c = d.client();
        let got = read_all(&c, "torn", "shardId-000000000000").await;
        check_all_acked_present(&acked[..9].to_vec(), "shardId-000000000000", &got);
        // The shard keeps working after the cut.
        c.put_record().stream_name("torn").partition_key("k").data(Blob::new("new")).send().await.unwrap();
        let got = read_all(&c, "torn", "shardId-000000000000").await;
        assert_eq!(got.len(), 10);
        assert_eq!(got[9].2, b"new");
    });
    assert!(d.log().contains("torn tail"), "the daemon reports what it dropped:\n{}", d.log());
}

#[test]
fn a_truncated_last_batch_is_cut_off_and_reported() {
    let mut d = Daemon::start();
    let acked = damage_last_batch_and_restart(&mut d, |path, off, len| {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(off + u64::from(len) / 2).unwrap();
    });
    check_served_all_but_last(&d, &acked);
}

#[test]
fn a_corrupt_last_batch_is_never_served() {
    let mut d = Daemon::start();
    let acked = damage_last_batch_and_restart(&mut d, |path, off, len| {
        let mut bytes = std::fs::read(path).unwrap();
        let at = (off + u64::from(len) - 10) as usize;
        bytes[at] ^= 0xff;
        std::fs::write(path, bytes).unwrap();
    });
    check_served_all_but_last(&d, &acked);
}

#[test]
fn garbage_after_the_tail_is_zeroed() {
    let mut d = Daemon::start();
    let acked = damage_last_batch_and_restart(&mut d, |path, off, len| {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        // Half a header's worth of junk where the next batch would go, and the last batch torn.
        f.write_all_at(&[0xAB; 20], off + u64::from(len)).unwrap();
        f.write_all_at(&[0; 8], off + 20).unwrap();
    });
    check_served_all_but_last(&d, &acked);
}

#[test]
fn a_newer_on_disk_format_is_refused() {
    let mut d = Daemon::start();
    put_singles(&d, 1);
    assert!(d.terminate().success());
    let seg = segment_files(&d.data_dir()).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut header = sluice::log::segment::SegmentHeader::decode(&bytes).unwrap();
    header.version += 1;
    bytes[..SEGMENT_HEADER_LEN as usize].copy_from_slice(&header.encode());
    std::fs::write(&seg, bytes).unwrap();
    let status = d.try_start_exit(std::time::Duration::from_secs(20)).expect("the daemon refuses to start");
    assert!(!status.success());
}
