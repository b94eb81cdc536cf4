//! Enhanced fan-out delivery pieces shared by SubscribeToShard (AWS event streams over HTTP/1.1
//! and h2) and the binary push protocol: pacing under limits and the ChildShards of a shard that
//! has just closed. Both read the shard through [`crate::reader::ShardCursor`] and hold a
//! [`crate::reader::leases::Lease`] for their (consumer, shard).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::service::Service;

/// The ChildShards of a shard that has just closed. The shard's worker closes it before the
/// reshard saves the new metadata, so wait (briefly) until the metadata shows it.
pub async fn child_shards_when_known(svc: &Service, stream_id: u64, shard_index: u32) -> Vec<Value> {
    for _ in 0..CHILDREN_WAIT_STEPS {
        if let Some(meta) = svc.stream_by_id(stream_id) {
            if meta.shard(shard_index).is_some_and(|s| !s.is_open()) {
                return super::shards::child_shards_json(&meta, shard_index);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Vec::new()
}

const CHILDREN_WAIT_STEPS: u32 = 400;

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
