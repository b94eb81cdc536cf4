//! Micro-benchmarks of the write path's storage half: a shard log append (encode, place, write
//! and fdatasync through io_uring, commit) and a group commit of several shards sharing one ring
//! submission. Run: `cargo bench --bench log`. The disk under the temp dir is what is measured.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::config::Compression;
use sluice::log::uring::{Uring, WriteOp};
use sluice::log::{LogConfig, NewRecord, ShardLog};

fn records(n: usize, size: usize) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord { partition_key: format!("k{i}"), data: bytes::Bytes::from(vec![(i % 251) as u8; size]) })
        .collect()
}

fn cfg() -> LogConfig {
    LogConfig { segment_size: 64 << 20, compression: Compression::None, hot_tail_bytes: 4 << 20, track_unsynced: false }
}

/// Appends `batch` to each log in one group: one submission, every write linked to its fdatasync
/// (`ShardLog::append_durably` does the same for one log; a group shares the submission).
fn group_commit(logs: &mut [ShardLog], ring: &mut Uring, batch: &[NewRecord], sync: bool) {
    let prepared: Vec<_> = logs.iter_mut().map(|l| l.prepare(batch.to_vec(), 1).expect("prepare")).collect();
    let ops: Vec<WriteOp> = prepared
        .iter()
        .flat_map(|p| p.writes.iter().map(|w| WriteOp { fd: w.fd, offset: w.offset, buf: &w.buf }))
        .collect();
    assert!(ring.write_all(&ops, sync).iter().all(|r| r.is_ok()));
    drop(ops);
    for (l, p) in logs.iter_mut().zip(prepared) {
        l.commit(p);
    }
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| ".".into())).expect("temp dir");
    let mut ring = Uring::new().expect("io_uring");
    let batch = records(500, 1024);
    let mut g = c.benchmark_group("shard_log_append_500x1KiB");
    g.throughput(Throughput::Bytes(500 * 1024));
    g.sample_size(30);
    for (name, sync) in [("synced", true), ("unsynced", false)] {
        let mut logs = vec![ShardLog::open(dir.path().join(name), 1, 0, cfg(), Vec::new()).expect("open").0];
        g.bench_function(name, |b| b.iter(|| group_commit(&mut logs, &mut ring, &batch, sync)));
    }
    g.finish();
    let mut g = c.benchmark_group("group_commit_4_shards_500x1KiB_synced");
    g.throughput(Throughput::Bytes(4 * 500 * 1024));
    g.sample_size(30);
    let mut logs: Vec<ShardLog> = (0..4)
        .map(|i| ShardLog::open(dir.path().join(format!("g{i}")), 1, i, cfg(), Vec::new()).expect("open").0)
        .collect();
    g.bench_function("one_submission", |b| b.iter(|| group_commit(&mut logs, &mut ring, &batch, true)));
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
