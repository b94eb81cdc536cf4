//! Enhanced fan-out delivery, shared by SubscribeToShard (AWS event streams over HTTP/1.1 and h2)
//! and the binary push protocol.
//!
//! A [`ShardCursor`] holds a receiver of the shard's tip, which the owning core worker publishes
//! after every commit. A subscriber waits on it, then reads from the log through the worker (hot
//! tail in memory, else mmap) from its own position. Nothing is queued per subscriber: a slow
//! subscriber only falls behind in the log, and never slows producers or other subscribers.
//! [`Subscriptions`] enforces one live subscription per consumer and shard, with AWS's takeover
//! rule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::ApiError;
use crate::log::Record;
use crate::runtime::{Position, ShardKey, Tip};
use crate::service::Service;

/// Records of one delivery, at most.
pub const DELIVERY_RECORDS_MAX: usize = 10_000;
/// Bytes of one delivery, about (at least one record is always delivered).
pub const DELIVERY_BYTES_MAX: usize = 4 << 20;
/// A read refused by a full worker queue is retried this often, this long apart.
const READ_RETRIES_MAX: u32 = 1000;
const READ_RETRY: Duration = Duration::from_millis(2);

/// The ChildShards of a shard that has just closed. The shard's worker closes it before the
/// reshard saves the new metadata, so wait (briefly) until the metadata shows it.
pub async fn child_shards_when_known(svc: &Service, stream_id: u64, shard_index: u32) -> Vec<serde_json::Value> {
    for _ in 0..CHILDREN_WAIT_STEPS {
        if let Some(meta) = svc.stream_by_id(stream_id) {
            if meta.shard(shard_index).is_some_and(|s| !s.is_open()) {
                return crate::api::streams::child_shards_json(&meta, shard_index);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Vec::new()
}

const CHILDREN_WAIT_STEPS: u32 = 400;

pub struct ShardCursor {
    svc: Arc<Service>,
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
    pub async fn open(svc: Arc<Service>, key: ShardKey, start: Position) -> Result<ShardCursor, ApiError> {
        let tip = svc.runtime.watch(key).await?;
        let position = svc.runtime.position(key, start).await?;
        Ok(ShardCursor { svc, key, position, tip })
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
            match self.svc.runtime.read(self.key, self.position, DELIVERY_RECORDS_MAX, max_bytes).await {
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

/// One live subscription per (consumer, shard).
#[derive(Default)]
pub struct Subscriptions {
    slots: Mutex<HashMap<(String, u32), Slot>>,
    next_id: AtomicU64,
}

/// Why a subscription was told to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    TakenOver,
    Deregistered,
    Shutdown,
}

struct Slot {
    id: u64,
    started: Instant,
    cancel: watch::Sender<Option<Cancel>>,
}

/// A registered subscription; dropping it frees the slot.
pub struct Lease {
    owner: Arc<Subscriptions>,
    key: (String, u32),
    id: u64,
    /// Becomes `Some` when the subscription must end (takeover, deregistration, shutdown).
    pub cancelled: watch::Receiver<Option<Cancel>>,
}

impl Subscriptions {
    /// Registers a subscription. Within `takeover_after` of the current one's start, AWS answers
    /// ResourceInUseException; after it, the new subscription takes over and the old one ends.
    pub fn acquire(self: &Arc<Self>, consumer: &str, shard: u32, takeover_after: Duration) -> Result<Lease, ApiError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let key = (consumer.to_owned(), shard);
        if let Some(slot) = slots.get(&key) {
            if slot.started.elapsed() < takeover_after {
                return Err(ApiError::ResourceInUse(format!(
                    "Another active subscription exists for consumer {consumer} and shard {}. Retry after {} seconds.",
                    crate::stream::meta::shard_id(shard),
                    takeover_after.as_secs().max(1)
                )));
            }
            let _ = slot.cancel.send(Some(Cancel::TakenOver));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (cancel, cancelled) = watch::channel(None);
        slots.insert(key.clone(), Slot { id, started: Instant::now(), cancel });
        Ok(Lease { owner: self.clone(), key, id, cancelled })
    }

    /// Ends the subscriptions of a consumer (it was deregistered).
    pub fn cancel_consumer(&self, consumer: &str) {
        for ((c, _), slot) in self.slots.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if c == consumer {
                let _ = slot.cancel.send(Some(Cancel::Deregistered));
            }
        }
    }

    /// Ends every live subscription (shutdown).
    pub fn cancel_all(&self) {
        for slot in self.slots.lock().unwrap_or_else(|p| p.into_inner()).values() {
            let _ = slot.cancel.send(Some(Cancel::Shutdown));
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut slots = self.owner.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.get(&self.key).is_some_and(|s| s.id == self.id) {
            slots.remove(&self.key);
        }
    }
}

/// Paces a subscription to `bytes_per_s` when limits are enforced.
pub struct Pacer {
    bytes_per_s: Option<u64>,
    started: Instant,
    sent: u64,
}

impl Pacer {
    pub fn new(bytes_per_s: Option<u64>) -> Pacer {
        Pacer { bytes_per_s, started: Instant::now(), sent: 0 }
    }

    /// Accounts for `bytes` just delivered and sleeps long enough to stay under the rate.
    pub async fn pace(&mut self, bytes: u64) {
        let Some(rate) = self.bytes_per_s else { return };
        self.sent += bytes;
        let due = Duration::from_secs_f64(self.sent as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_subscription_is_refused_then_takes_over() {
        let subs = Arc::new(Subscriptions::default());
        let first = subs.acquire("c", 0, Duration::from_secs(60)).unwrap();
        assert!(matches!(subs.acquire("c", 0, Duration::from_secs(60)), Err(ApiError::ResourceInUse(_))));
        assert!(subs.acquire("c", 1, Duration::from_secs(60)).is_ok(), "another shard is independent");
        let second = subs.acquire("c", 0, Duration::ZERO).unwrap();
        assert_eq!(*first.cancelled.borrow(), Some(Cancel::TakenOver), "the old subscription is told to end");
        drop(first);
        assert!(
            matches!(subs.acquire("c", 0, Duration::from_secs(60)), Err(ApiError::ResourceInUse(_))),
            "the new one holds the slot"
        );
        drop(second);
        assert!(subs.acquire("c", 0, Duration::from_secs(60)).is_ok());
    }
}
