//! A core worker: owns shards, runs group commit on its own io_uring.
//!
//! Hot path. The loop takes one command (blocking), then drains whatever else is queued, up to
//! [`GROUP_COMMANDS_MAX`] commands or [`GROUP_BYTES_MAX`] bytes of appends. Reads and control
//! commands are answered at once; the appends of the whole group are encoded, written and
//! fdatasynced together (one sync per touched segment, or, for a group that writes to
//! `storage.wal_min_files` files or more, one write-ahead log record and its one sync), and only
//! then acknowledged. Requests that
//! arrive while the group is on disk form the next group: the busier the daemon, the more each
//! sync carries.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Appended, Command, Position, ReadReply, ShardKey, Tip};
use crate::index::IndexOp;
use crate::log::shard::Prepared;
use crate::log::uring::{write_all_blocking, Uring, WriteOp};
use crate::log::wal::{encode_group, LoggedWrite, Wal};
use crate::log::{LogConfig, LogError, NewRecord, ShardLog};
use crate::protocol::error::ApiError;
use crate::stream::seqno::SeqNo;
use crate::time::now_ms;

/// Commands one group takes at most.
pub const GROUP_COMMANDS_MAX: usize = 1024;
/// Append payload one group takes at most.
pub const GROUP_BYTES_MAX: usize = 32 << 20;
/// How long the loop sleeps when idle before doing periodic work.
const IDLE_TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub log: LogConfig,
    pub sync_each_append: bool,
    pub sync_interval: Duration,
    pub retention_check_interval: Duration,
    /// A group that writes to at least this many segment files goes through the write-ahead log
    /// (when the worker has one).
    pub wal_min_files: usize,
}

struct OwnedShard {
    log: ShardLog,
    retention_hours: u32,
    /// The next ordinal (and whether the shard is closed), published after every commit to wake
    /// fan-out subscribers.
    tip: tokio::sync::watch::Sender<Tip>,
    closed: bool,
}

impl OwnedShard {
    fn publish(&self) {
        self.tip.send_replace(Tip { next: self.log.next_ordinal(), closed: self.closed });
    }
}

struct PendingAppend {
    key: ShardKey,
    records: Vec<NewRecord>,
    reply: tokio::sync::oneshot::Sender<Result<Appended, ApiError>>,
}

struct Worker {
    id: usize,
    cfg: WorkerConfig,
    shards: HashMap<ShardKey, OwnedShard>,
    ring: Uring,
    /// The write-ahead log (`sync` durability only).
    wal: Option<Wal>,
    index: Sender<IndexOp>,
    next_sync: Instant,
    next_retention: Instant,
}

pub fn spawn(
    id: usize,
    core: Option<core_affinity::CoreId>,
    cfg: WorkerConfig,
    rx: Receiver<Command>,
    index: Sender<IndexOp>,
    wal: Option<Wal>,
) -> std::io::Result<JoinHandle<()>> {
    let ring = Uring::new()?;
    std::thread::Builder::new().name(format!("sluice-core-{id}")).spawn(move || {
        if let Some(core) = core {
            if !core_affinity::set_for_current(core) {
                tracing::warn!(worker = id, core = core.id, "could not pin core worker");
            }
        }
        let now = Instant::now();
        let mut w = Worker {
            id,
            cfg,
            shards: HashMap::new(),
            ring,
            wal,
            index,
            next_sync: now + cfg.sync_interval,
            next_retention: now + cfg.retention_check_interval,
        };
        w.run(rx);
    })
}

fn log_error(e: LogError) -> ApiError {
    tracing::error!(error = %e, "shard log error");
    match &e {
        LogError::Io(io) => storage_error(io.raw_os_error(), &io.to_string()),
        _ => ApiError::InternalFailure(format!("Storage error: {e}")),
    }
}

/// A read error; damage is described with the sequence numbers a client can act on.
fn read_error(key: ShardKey, e: LogError) -> ApiError {
    match e {
        LogError::Damaged { from, to, reason } => {
            let seq = |ordinal| SeqNo::record(key.stream_id, key.shard_index, ordinal).encode();
            ApiError::InternalFailure(format!(
                "Records from sequence number {} up to {} of this shard are lost to on-disk damage ({reason}). \
                 Records before and after are readable: use GetShardIterator with AT_SEQUENCE_NUMBER {} to continue after it.",
                seq(from),
                seq(to),
                seq(to)
            ))
        }
        other => log_error(other),
    }
}

/// A full disk is a condition to wait out (503); anything else is a failure (500).
fn storage_error(errno: Option<i32>, text: &str) -> ApiError {
    match errno {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            ApiError::ServiceUnavailable(format!("The storage is full; nothing was written: {text}"))
        }
        _ => ApiError::InternalFailure(format!("Storage write failed; nothing was acknowledged: {text}")),
    }
}

impl Worker {
    fn run(&mut self, rx: Receiver<Command>) {
        let mut shutting_down = false;
        while !shutting_down {
            let first = match rx.recv_timeout(IDLE_TICK) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut appends: Vec<PendingAppend> = Vec::new();
            let mut bytes = 0usize;
            let mut next = first;
            let mut taken = 0usize;
            while let Some(cmd) = next.take() {
                taken += 1;
                match cmd {
                    Command::Append { key, records, reply } => {
                        bytes += records.iter().map(|r| r.data.len() + r.partition_key.len()).sum::<usize>();
                        appends.push(PendingAppend { key, records, reply });
                    }
                    Command::Shutdown => shutting_down = true,
                    other => self.handle(other),
                }
                if taken < GROUP_COMMANDS_MAX && bytes < GROUP_BYTES_MAX && !shutting_down {
                    next = rx.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                self.commit_group(appends);
            }
            self.periodic(shutting_down);
        }
        // Appends still queued behind the shutdown are answered, not dropped.
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Command::Append { key, records, reply } => {
                    self.commit_group(vec![PendingAppend { key, records, reply }])
                }
                Command::Shutdown => {}
                other => self.handle(other),
            }
        }
        self.periodic(true);
        tracing::debug!(worker = self.id, "core worker stopped");
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Open { key, dir, index, retention_hours, closed, reply } => {
                let res =
                    ShardLog::open(dir, key.stream_id, key.shard_index, self.cfg.log, index).map(|(log, report)| {
                        if !report.new_index.is_empty() {
                            self.send_index(IndexOp::Put {
                                stream_id: key.stream_id,
                                shard_index: key.shard_index,
                                entries: report.new_index.clone(),
                            });
                        }
                        if !report.stale_index.is_empty() {
                            self.send_index(IndexOp::Delete {
                                stream_id: key.stream_id,
                                shard_index: key.shard_index,
                                entries: report.stale_index.clone(),
                            });
                        }
                        let tip = tokio::sync::watch::Sender::new(Tip { next: log.next_ordinal(), closed });
                        self.shards.insert(key, OwnedShard { log, retention_hours, tip, closed });
                        report
                    });
                let _ = reply.send(res.map_err(log_error));
            }
            Command::Read { key, from, limit, max_bytes, reply } => {
                let res = match self.shards.get_mut(&key) {
                    Some(s) => Ok(s),
                    None => Err(ApiError::ResourceNotFound("The shard is not open on this daemon.".into())),
                }
                .and_then(|s| {
                    let out = s.log.read(from, limit, max_bytes).map_err(|e| read_error(key, e))?;
                    Ok(ReadReply {
                        records: out.records,
                        next: out.next,
                        tip: s.log.next_ordinal(),
                        last_ts_ms: s.log.last_ts_ms(),
                        closed: s.closed,
                    })
                });
                let _ = reply.send(res);
            }
            Command::Position { key, at, reply } => {
                let res = self.shard(key).and_then(|s| match at {
                    Position::TrimHorizon => Ok(s.log.trim_horizon()),
                    Position::Latest => Ok(s.log.next_ordinal()),
                    Position::AtTimestamp(ts) => s.log.ordinal_at_timestamp(ts).map_err(log_error),
                    Position::AtOrdinal(o) if o <= s.log.next_ordinal() => Ok(o),
                    Position::AtOrdinal(_) => {
                        Err(ApiError::InvalidArgument("The sequence number is beyond the end of the shard.".into()))
                    }
                });
                let _ = reply.send(res);
            }
            Command::SetRetention { key, hours } => {
                if let Some(s) = self.shards.get_mut(&key) {
                    s.retention_hours = hours;
                }
            }
            Command::SetEncryption { key, key_id, reply } => {
                let res = match self.shards.get_mut(&key) {
                    Some(s) => {
                        s.log.set_encryption(key_id);
                        Ok(())
                    }
                    None => Err(ApiError::ResourceNotFound(format!("Shard {key:?} is not open on this daemon."))),
                };
                let _ = reply.send(res);
            }
            Command::Drop { key, reply } => {
                let res = match self.shards.remove(&key) {
                    Some(s) => {
                        let dir = s.log.dir().to_path_buf();
                        drop(s);
                        std::fs::remove_dir_all(&dir).map_err(|e| log_error(e.into()))
                    }
                    None => Ok(()),
                };
                let _ = reply.send(res);
            }
            Command::Ping { reply } => {
                let _ = reply.send(Ok(()));
            }
            Command::Close { key, closed, reply } => {
                let res = match self.shards.get_mut(&key) {
                    Some(s) => {
                        s.closed = closed;
                        s.publish();
                        Ok(s.log.next_ordinal())
                    }
                    None => Err(ApiError::ResourceNotFound("The shard is not open on this daemon.".into())),
                };
                let _ = reply.send(res);
            }
            Command::Watch { key, reply } => {
                let _ = reply.send(self.shard(key).map(|s| s.tip.subscribe()));
            }
            Command::Append { .. } | Command::Shutdown => unreachable!("handled by the loop"),
        }
    }

    fn shard(&self, key: ShardKey) -> Result<&OwnedShard, ApiError> {
        self.shards.get(&key).ok_or_else(|| ApiError::ResourceNotFound("The shard is not open on this daemon.".into()))
    }

    fn send_index(&self, op: IndexOp) {
        // Blocks only if the index writer is far behind; an index entry is never dropped silently.
        if self.index.send(op).is_err() {
            tracing::error!(worker = self.id, "index writer is gone");
        }
    }

    /// Encodes, writes and syncs a group of appends, then acknowledges them.
    fn commit_group(&mut self, appends: Vec<PendingAppend>) {
        let now = now_ms();
        // Per shard, in arrival order: (the appends' replies with their record counts, records).
        let mut order: Vec<ShardKey> = Vec::new();
        let mut per_shard: HashMap<ShardKey, (Replies, Vec<NewRecord>)> = HashMap::new();
        for a in appends {
            if self.shards.get(&a.key).is_some_and(|s| s.closed) {
                let _ = a.reply.send(Err(ApiError::ShardClosed("The shard was closed by a reshard.".into())));
                continue;
            }
            if !self.shards.contains_key(&a.key) {
                let _ = a.reply.send(Err(ApiError::ResourceNotFound("The shard is not open on this daemon.".into())));
                continue;
            }
            let entry = per_shard.entry(a.key).or_insert_with(|| {
                order.push(a.key);
                (Vec::new(), Vec::new())
            });
            entry.0.push((a.records.len(), a.reply));
            entry.1.extend(a.records);
        }
        let mut prepared: Vec<(ShardKey, Replies, Prepared)> = Vec::new();
        for key in order {
            let (replies, records) = per_shard.remove(&key).expect("inserted above");
            let shard = self.shards.get_mut(&key).expect("checked above");
            match shard.log.prepare(records, now) {
                Ok(p) => prepared.push((key, replies, p)),
                Err(e) => {
                    let err = log_error(e);
                    for (_, reply) in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
        let files: usize = prepared.iter().map(|(_, _, p)| p.writes.len()).sum();
        let failed = match self.wal.as_mut() {
            Some(wal) if self.cfg.sync_each_append && files >= self.cfg.wal_min_files.max(1) => {
                write_logged(wal, &prepared)
            }
            _ => write_direct(&mut self.ring, &prepared, self.cfg.sync_each_append),
        };
        for ((key, replies, p), failure) in prepared.into_iter().zip(failed) {
            let shard = self.shards.get_mut(&key).expect("checked above");
            if let Some((errno, err)) = failure {
                tracing::error!(stream_id = key.stream_id, shard = key.shard_index, error = %err, "append failed; nothing acknowledged");
                shard.log.abort(p);
                // Cut the failed bytes now (they are retried before the next append and by
                // `periodic` while the disk keeps failing).
                if let Err(repair) = shard.log.repair_tail() {
                    tracing::warn!(stream_id = key.stream_id, shard = key.shard_index, error = %repair, "tail repair failed; will retry");
                }
                let e = storage_error(errno, &err);
                for (_, reply) in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                continue;
            }
            let committed = shard.log.commit(p);
            shard.publish();
            if !committed.new_index.is_empty() {
                self.send_index(IndexOp::Put {
                    stream_id: key.stream_id,
                    shard_index: key.shard_index,
                    entries: committed.new_index,
                });
            }
            let mut ordinal = committed.first_ordinal;
            for (count, reply) in replies {
                let _ = reply.send(Ok(Appended { first_ordinal: ordinal, ts_ms: committed.ts_ms }));
                ordinal += count as u64;
            }
        }
    }

    fn periodic(&mut self, force_sync: bool) {
        let now = Instant::now();
        for (key, s) in self.shards.iter_mut().filter(|(_, s)| s.log.needs_repair()) {
            match s.log.repair_tail() {
                Ok(()) => tracing::info!(
                    stream_id = key.stream_id,
                    shard = key.shard_index,
                    "tail repaired after a failed write"
                ),
                Err(e) => {
                    tracing::debug!(stream_id = key.stream_id, shard = key.shard_index, error = %e, "tail repair still failing")
                }
            }
        }
        if !self.cfg.sync_each_append && (force_sync || now >= self.next_sync) {
            self.next_sync = now + self.cfg.sync_interval;
            let fds: Vec<RawFd> = self.shards.values_mut().flat_map(|s| s.log.dirty_fds()).collect();
            for r in self.ring.sync_all(&fds) {
                if let Err(e) = r {
                    tracing::error!(worker = self.id, error = %e, "interval sync failed: the last interval may not be durable");
                }
            }
        }
        if now >= self.next_retention {
            self.next_retention = now + self.cfg.retention_check_interval;
            let wall = now_ms();
            let mut ops = Vec::new();
            for (key, s) in &mut self.shards {
                let cutoff = wall - i64::from(s.retention_hours) * 3_600_000;
                match s.log.expire(cutoff, wall) {
                    Ok(removed) if !removed.is_empty() => {
                        tracing::info!(
                            stream_id = key.stream_id,
                            shard = key.shard_index,
                            segments = removed.len(),
                            "deleted expired segments"
                        );
                        ops.push(IndexOp::DeleteBelow {
                            stream_id: key.stream_id,
                            shard_index: key.shard_index,
                            ordinal: s.log.trim_horizon(),
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(stream_id = key.stream_id, shard = key.shard_index, error = %e, "retention failed")
                    }
                }
            }
            for op in ops {
                self.send_index(op);
            }
        }
    }
}

/// A failed write: its errno and message.
type WriteFailure = Option<(Option<i32>, String)>;

/// Writes a group's appends straight to their segments, each linked to its fdatasync when `sync`:
/// first the writes to segments that already existed, then, only for shards whose first phase
/// is durable, the writes to segments this group created. Returns each append's failure.
fn write_direct(ring: &mut Uring, prepared: &[(ShardKey, Replies, Prepared)], sync: bool) -> Vec<WriteFailure> {
    let mut failed: Vec<WriteFailure> = vec![None; prepared.len()];
    for new_segments in [false, true] {
        let mut ops = Vec::new();
        let mut owner = Vec::new();
        for (i, (_, _, p)) in prepared.iter().enumerate() {
            if failed[i].is_some() {
                continue;
            }
            for w in p.writes.iter().filter(|w| w.new_segment == new_segments) {
                ops.push(WriteOp { fd: w.fd, offset: w.offset, buf: &w.buf });
                owner.push(i);
            }
        }
        if ops.is_empty() {
            continue;
        }
        // One write (and its sync) gains nothing from the ring, which would run it on an io-wq
        // thread; several run concurrently through it.
        let results = if ops.len() == 1 { write_all_blocking(&ops, sync) } else { ring.write_all(&ops, sync) };
        for (r, &i) in results.iter().zip(&owner) {
            if let Err(e) = r {
                failed[i].get_or_insert_with(|| (e.raw_os_error(), e.to_string()));
            }
        }
    }
    failed
}

/// Writes a group's appends through the write-ahead log ([`crate::log::wal`]): one record of all
/// of them, written and fdatasynced; then the segment writes, unsynced (the log is their
/// durability). Both with plain syscalls on this thread ([`write_all_blocking`]): one file's
/// write and sync gain nothing from the ring, and buffered writes would be punted to io-wq. If
/// the log write fails, every append fails; if a segment write fails, the record is voided first,
/// so that a restart never replays what was refused, and every append fails too.
fn write_logged(wal: &mut Wal, prepared: &[(ShardKey, Replies, Prepared)]) -> Vec<WriteFailure> {
    let all = |e: &std::io::Error| vec![Some((e.raw_os_error(), e.to_string())); prepared.len()];
    let mut buf = std::mem::take(&mut wal.buf);
    buf.clear();
    let logged: Vec<LoggedWrite> = prepared
        .iter()
        .flat_map(|(key, _, p)| {
            p.writes.iter().map(move |w| LoggedWrite {
                stream_id: key.stream_id,
                shard_index: key.shard_index,
                segment_base: w.segment_base,
                offset: w.offset,
                bytes: &w.buf,
            })
        })
        .collect();
    encode_group(wal.seq(), &logged, &mut buf);
    let len = buf.len() as u64;
    let result = write_all_blocking(&[WriteOp { fd: wal.fd(), offset: wal.offset(), buf: &buf }], true).remove(0);
    wal.buf = buf;
    if let Err(e) = result {
        tracing::error!(error = %e, "write-ahead log write failed; the group is not acknowledged");
        if let Err(cut) = wal.cut() {
            tracing::warn!(error = %cut, "could not cut the write-ahead log after a failed write");
        }
        return all(&e);
    }
    let ops: Vec<WriteOp> = prepared
        .iter()
        .flat_map(|(_, _, p)| p.writes.iter().map(|w| WriteOp { fd: w.fd, offset: w.offset, buf: &w.buf }))
        .collect();
    if let Some(Err(e)) = write_all_blocking(&ops, false).into_iter().find(Result::is_err) {
        // Some appends of the record were refused: none of it may be replayed. The others are
        // refused too (their bytes are in the page cache but not durable without the record).
        if let Err(v) = wal.void(len) {
            tracing::error!(error = %v, "could not void a refused write-ahead log record; aborting so that it is never replayed over later data");
            std::process::abort();
        }
        return all(&e);
    }
    wal.committed(
        len,
        prepared.iter().flat_map(|(key, _, p)| {
            p.writes.iter().map(move |w| ((key.stream_id, key.shard_index, w.segment_base), w.fd))
        }),
    );
    wal.rotate_if_full();
    vec![None; prepared.len()]
}

type PendingReply = tokio::sync::oneshot::Sender<Result<Appended, ApiError>>;
/// The replies of one shard's appends in a group, each with its record count.
type Replies = Vec<(usize, PendingReply)>;
