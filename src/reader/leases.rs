//! One live reader per (owner, shard): the subscription slots of enhanced fan-out, with AWS's
//! takeover rule, usable by any reader that must be the only one at a position.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::protocol::error::ApiError;

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
