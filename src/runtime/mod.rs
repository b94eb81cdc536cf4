//! Thread-per-core: one OS thread per core, pinned, each owning a set of shards.
//!
//! The front end (HTTP) never touches a shard. It sends a [`Command`] over the owning worker's
//! bounded channel and awaits the reply. A shard belongs to the worker
//! `(stream id * 31 + shard index) % workers`; nothing about a shard is shared between threads.
//! A full queue is answered with ProvisionedThroughputExceededException (throttling, which every
//! SDK retries) rather than buffered without bound.

mod worker;

use std::future::Future;
use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::oneshot;

use crate::config::{Config, Durability};
use crate::index::IndexOp;
use crate::log::recovery::RecoveryReport;
use crate::log::{IndexEntry, LogConfig, NewRecord, Record};
use crate::protocol::error::ApiError;

pub use worker::WorkerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey {
    pub stream_id: u64,
    pub shard_index: u32,
}

/// Where a new iterator starts.
#[derive(Debug, Clone, Copy)]
pub enum Position {
    TrimHorizon,
    Latest,
    AtTimestamp(i64),
    /// An ordinal taken from a sequence number; refused if beyond the tip.
    AtOrdinal(u64),
}

/// What a shard's owner publishes after every commit and when the shard closes: how enhanced
/// fan-out subscribers are woken without polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    /// The ordinal the next record would get (the end of the shard, once closed).
    pub next: u64,
    pub closed: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub first_ordinal: u64,
    pub ts_ms: i64,
}

#[derive(Debug)]
pub struct ReadReply {
    pub records: Vec<Record>,
    pub next: u64,
    /// The ordinal the next appended record gets, and when the newest one arrived.
    pub tip: u64,
    pub last_ts_ms: i64,
    /// The shard is closed: `tip` is its end.
    pub closed: bool,
}

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

pub enum Command {
    Open {
        key: ShardKey,
        dir: PathBuf,
        index: Vec<IndexEntry>,
        retention_hours: u32,
        /// The shard was closed by a reshard: it serves reads and takes no appends.
        closed: bool,
        reply: Reply<RecoveryReport>,
    },
    Append {
        key: ShardKey,
        records: Vec<NewRecord>,
        reply: Reply<Appended>,
    },
    Read {
        key: ShardKey,
        from: u64,
        limit: usize,
        max_bytes: usize,
        reply: Reply<ReadReply>,
    },
    Position {
        key: ShardKey,
        at: Position,
        reply: Reply<u64>,
    },
    SetRetention {
        key: ShardKey,
        hours: u32,
    },
    /// Seals the shard's new batches under a KMS KeyId (`None`: plaintext), from its next append.
    SetEncryption {
        key: ShardKey,
        key_id: Option<String>,
        reply: Reply<()>,
    },
    /// Closes the shard and deletes its files.
    Drop {
        key: ShardKey,
        reply: Reply<()>,
    },
    /// Answered as soon as the worker reaches it (liveness for the systemd watchdog).
    Ping {
        reply: Reply<()>,
    },
    /// A receiver of the shard's tip (the next ordinal), updated after every commit: how
    /// enhanced fan-out subscribers are woken without polling.
    Watch {
        key: ShardKey,
        reply: Reply<tokio::sync::watch::Receiver<Tip>>,
    },
    /// Closes the shard (resharding): appends after this fail with ShardClosed; the reply is
    /// the shard's end ordinal. With `closed: false`, undoes a close whose reshard failed.
    Close {
        key: ShardKey,
        closed: bool,
        reply: Reply<u64>,
    },
    Shutdown,
}

pub struct Runtime {
    senders: Vec<Sender<Command>>,
    handles: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Which worker owns each shard, and whether the shard is open. New shards go to the worker
    /// with the fewest open shards, so ownership follows the shard set as it changes.
    placement: std::sync::RwLock<std::collections::HashMap<ShardKey, (usize, bool)>>,
}

/// Sends `cmd`, waiting (without blocking the async thread) while the queue is full. Fails only
/// if the worker is gone.
async fn send_when_room(sender: &Sender<Command>, mut cmd: Command) -> Result<(), ()> {
    loop {
        match sender.try_send(cmd) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(c)) => {
                cmd = c;
                tokio::time::sleep(QUEUE_FULL_RETRY).await;
            }
            Err(TrySendError::Disconnected(_)) => return Err(()),
        }
    }
}

/// How long a control command waits between tries when a worker's queue is full.
const QUEUE_FULL_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

impl Runtime {
    pub fn start(cfg: &Config, index: Sender<IndexOp>) -> std::io::Result<Runtime> {
        let n = cfg.worker_count();
        let cores = if cfg.pin_workers { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
        let wcfg = WorkerConfig {
            log: LogConfig {
                segment_size: cfg.storage.segment_size,
                compression: cfg.storage.compression,
                hot_tail_bytes: cfg.storage.hot_tail_size,
                track_unsynced: cfg.storage.durability != Durability::Sync,
            },
            sync_each_append: cfg.storage.durability == Durability::Sync,
            sync_interval: cfg.storage.sync_interval,
            retention_check_interval: cfg.storage.retention_check_interval,
            wal_min_files: cfg.storage.wal_min_files,
        };
        let logged = cfg.storage.durability == Durability::Sync && cfg.storage.wal_min_files > 0;
        let mut senders = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = crossbeam_channel::bounded(cfg.http.worker_queue_depth);
            let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
            let index = index.clone();
            let wal = if logged { Some(crate::log::wal::Wal::open(&cfg.data_dir, i)?) } else { None };
            let handle = worker::spawn(i, core, wcfg, rx, index, wal)?;
            senders.push(tx);
            handles.push(handle);
        }
        Ok(Runtime { senders, handles: std::sync::Mutex::new(handles), placement: Default::default() })
    }

    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    fn sender(&self, key: ShardKey) -> &Sender<Command> {
        let placed = self.placement.read().unwrap_or_else(|p| p.into_inner()).get(&key).map(|p| p.0);
        let i = placed.unwrap_or_else(|| {
            ((key.stream_id.wrapping_mul(31).wrapping_add(u64::from(key.shard_index))) % self.senders.len() as u64)
                as usize
        });
        &self.senders[i]
    }

    /// Places a shard on the worker with the fewest open shards (or where it already is).
    fn place(&self, key: ShardKey, open: bool) {
        let mut placement = self.placement.write().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = placement.get_mut(&key) {
            p.1 = open;
            return;
        }
        let mut load = vec![0usize; self.senders.len()];
        for (worker, is_open) in placement.values() {
            load[*worker] += usize::from(*is_open);
        }
        let worker = (0..load.len()).min_by_key(|&w| (load[w], w)).unwrap_or(0);
        placement.insert(key, (worker, open));
    }

    /// Open shards per worker (for metrics and tests).
    pub fn open_shards_per_worker(&self) -> Vec<usize> {
        let mut load = vec![0usize; self.senders.len()];
        for (worker, open) in self.placement.read().unwrap_or_else(|p| p.into_inner()).values() {
            load[*worker] += usize::from(*open);
        }
        load
    }

    /// Sends the command now (so that several can be in flight) and returns the reply to await.
    fn call<T: 'static>(
        &self,
        key: ShardKey,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> impl Future<Output = Result<T, ApiError>> + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = match self.sender(key).try_send(make(tx)) {
            Ok(()) => Ok(rx),
            // AWS's answer to a shard that cannot keep up: throttling, which every SDK retries.
            Err(TrySendError::Full(_)) => Err(ApiError::ProvisionedThroughputExceeded(
                "Rate exceeded for shard: its core worker's queue is full; retry with backoff.".into(),
            )),
            Err(TrySendError::Disconnected(_)) => {
                Err(ApiError::ServiceUnavailable("The daemon is shutting down.".into()))
            }
        };
        async move {
            let rx = sent?;
            rx.await.unwrap_or_else(|_| Err(ApiError::InternalFailure("The shard's worker stopped.".into())))
        }
    }

    /// Sends a control command, waiting (without blocking the async thread) while the queue is full.
    async fn send_waiting(&self, key: ShardKey, cmd: Command) -> Result<(), ApiError> {
        send_when_room(self.sender(key), cmd)
            .await
            .map_err(|_| ApiError::ServiceUnavailable("The daemon is shutting down.".into()))
    }

    async fn control<T>(&self, key: ShardKey, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.send_waiting(key, make(tx)).await?;
        rx.await.unwrap_or_else(|_| Err(ApiError::InternalFailure("The shard's worker stopped.".into())))
    }

    /// Opens (recovers) a shard on its worker. Control commands wait for room rather than fail.
    pub async fn open(
        &self,
        key: ShardKey,
        dir: PathBuf,
        index: Vec<IndexEntry>,
        retention_hours: u32,
        closed: bool,
    ) -> Result<RecoveryReport, ApiError> {
        self.place(key, !closed);
        self.control(key, move |reply| Command::Open { key, dir, index, retention_hours, closed, reply }).await
    }

    /// Closes a shard for a reshard; returns its end ordinal. Appends that reach the worker after
    /// this fail with ShardClosed and are routed again by the caller.
    pub async fn close(&self, key: ShardKey) -> Result<u64, ApiError> {
        let end = self.control(key, move |reply| Command::Close { key, closed: true, reply }).await?;
        self.place(key, false);
        Ok(end)
    }

    /// Reopens a shard closed by a reshard that then failed to save.
    pub async fn reopen(&self, key: ShardKey) -> Result<(), ApiError> {
        self.control(key, move |reply| Command::Close { key, closed: false, reply }).await?;
        self.place(key, true);
        Ok(())
    }

    pub fn append(&self, key: ShardKey, records: Vec<NewRecord>) -> impl Future<Output = Result<Appended, ApiError>> {
        self.call(key, move |reply| Command::Append { key, records, reply })
    }

    pub fn read(
        &self,
        key: ShardKey,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> impl Future<Output = Result<ReadReply, ApiError>> {
        self.call(key, move |reply| Command::Read { key, from, limit, max_bytes, reply })
    }

    pub fn position(&self, key: ShardKey, at: Position) -> impl Future<Output = Result<u64, ApiError>> {
        self.call(key, move |reply| Command::Position { key, at, reply })
    }

    pub fn watch(&self, key: ShardKey) -> impl Future<Output = Result<tokio::sync::watch::Receiver<Tip>, ApiError>> {
        self.call(key, move |reply| Command::Watch { key, reply })
    }

    pub async fn set_retention(&self, key: ShardKey, hours: u32) -> Result<(), ApiError> {
        self.send_waiting(key, Command::SetRetention { key, hours }).await
    }

    /// Changes what the shard's new batches are sealed under; answered once the worker has it.
    pub async fn set_encryption(&self, key: ShardKey, key_id: Option<String>) -> Result<(), ApiError> {
        self.control(key, |reply| Command::SetEncryption { key, key_id, reply }).await
    }

    pub async fn drop_shard(&self, key: ShardKey) -> Result<(), ApiError> {
        let res = self.control(key, move |reply| Command::Drop { key, reply }).await;
        self.placement.write().unwrap_or_else(|p| p.into_inner()).remove(&key);
        res
    }

    /// Succeeds once every worker has answered a ping: none is stuck.
    pub async fn ping_all(&self) -> Result<(), ApiError> {
        // Waits for room in full queues: a busy worker is alive, a stuck one never answers.
        let mut replies = Vec::with_capacity(self.senders.len());
        for s in &self.senders {
            let (tx, rx) = oneshot::channel();
            send_when_room(s, Command::Ping { reply: tx })
                .await
                .map_err(|_| ApiError::InternalFailure("A core worker stopped.".into()))?;
            replies.push(rx);
        }
        for rx in replies {
            rx.await.map_err(|_| ApiError::InternalFailure("A core worker stopped.".into()))??;
        }
        Ok(())
    }

    /// Asks every worker to finish what it has queued, sync, and stop; waits for them. Later calls
    /// do nothing.
    pub fn shutdown(&self) {
        for s in &self.senders {
            let _ = s.send(Command::Shutdown);
        }
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}
