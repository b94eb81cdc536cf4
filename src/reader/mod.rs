//! The internal reader: how everything inside the daemon reads a stream, never through HTTP.
//!
//! A [`ShardCursor`] follows one shard from a position: it holds a receiver of the shard's tip,
//! which the owning core worker publishes after every commit, waits on it, then reads from the
//! log through the worker (hot tail in memory, else mmap). Nothing is queued per reader: a slow
//! reader only falls behind in the log, and never slows producers or other readers.
//! [`stream::StreamReader`] follows a whole stream across reshards, in lineage order (a child only
//! after all of its parents are read to their ends), from a position that can be checkpointed
//! durably in rocksdb. [`leases`] keeps one live reader per (owner, shard), with AWS's takeover
//! rule. Enhanced fan-out (SubscribeToShard and the push protocol) reads through this module;
//! queues, delivery streams and SQL inputs are meant to as well.
//!
//! Owns: read positions and leases in memory, checkpoints under the `reader/` prefix of the
//! metadata store. Limits: a delivery is at most [`DELIVERY_RECORDS_MAX`] records and about
//! [`DELIVERY_BYTES_MAX`] bytes.

pub mod leases;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::log::Record;
use crate::protocol::error::ApiError;
use crate::runtime::{Position, Runtime, ShardKey, Tip};

/// Records of one delivery, at most.
pub const DELIVERY_RECORDS_MAX: usize = 10_000;
/// Bytes of one delivery, about (at least one record is always delivered).
pub const DELIVERY_BYTES_MAX: usize = 4 << 20;
/// A read refused by a full worker queue is retried this often, this long apart.
const READ_RETRIES_MAX: u32 = 1000;
const READ_RETRY: Duration = Duration::from_millis(2);

pub struct ShardCursor {
    runtime: Arc<Runtime>,
    key: ShardKey,
    /// The next ordinal to deliver.
    pub position: u64,
    tip: watch::Receiver<Tip>,
}

pub struct Delivery {
    pub records: Vec<Record>,
    pub millis_behind: u64,
    /// The shard is closed (resharded) and everything in it has been delivered.
    pub ended: bool,
}

impl ShardCursor {
    pub async fn open(runtime: Arc<Runtime>, key: ShardKey, start: Position) -> Result<ShardCursor, ApiError> {
        let tip = runtime.watch(key).await?;
        let position = runtime.position(key, start).await?;
        Ok(ShardCursor { runtime, key, position, tip })
    }

    /// Records committed past the position, as of the last tip seen.
    pub fn pending(&self) -> u64 {
        self.tip.borrow().next.saturating_sub(self.position)
    }

    /// Resolves when the shard's tip changes (a commit or a close); never, once the shard is gone.
    pub async fn changed(&mut self) {
        if self.tip.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits up to `wait` for records past the position, then reads what is there. An empty
    /// delivery means nothing arrived in time. Cancel-safe: the position only moves on return.
    pub async fn next(&mut self, max_bytes: usize, wait: Duration) -> Result<Delivery, ApiError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let tip = *self.tip.borrow_and_update();
            if tip.next > self.position {
                break;
            }
            if tip.closed {
                return Ok(Delivery { records: Vec::new(), millis_behind: 0, ended: true });
            }
            match tokio::time::timeout_at(deadline, self.tip.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(ApiError::ResourceNotFound("The shard was closed on this daemon.".into())),
                Err(_) => return Ok(Delivery { records: Vec::new(), millis_behind: 0, ended: false }),
            }
        }
        // A busy shard's queue may refuse the read for a moment: wait, do not end the subscription.
        let mut attempt = 0;
        let r = loop {
            match self.runtime.read(self.key, self.position, DELIVERY_RECORDS_MAX, max_bytes).await {
                Err(ApiError::ProvisionedThroughputExceeded(_)) if attempt < READ_RETRIES_MAX => {
                    attempt += 1;
                    tokio::time::sleep(READ_RETRY).await;
                }
                other => break other?,
            }
        };
        self.position = r.next;
        let tip = *self.tip.borrow();
        let ended = tip.closed && self.position >= tip.next;
        let millis_behind = match r.records.last() {
            Some(last) if r.next < r.tip => (r.last_ts_ms - last.ts_ms).max(0) as u64,
            _ => 0,
        };
        Ok(Delivery { records: r.records, millis_behind, ended })
    }
}
