//! Closed shards leave a stream once every record in them has expired, as on AWS: a shard closed
//! at `closed_ms` holds nothing newer, so after `closed_ms + retention` it is removed from the
//! stream's metadata (ListShards and DescribeStream no longer show it) and its files are deleted.
//! Its children keep naming it as their parent, as AWS's do; readers treat a parent that is gone
//! as read to its end ([`crate::reader::stream`]).
//!
//! Owns nothing durable of its own: the stream metadata (one synced write per stream) is the
//! record of what was removed. Checked every [`CHECK_INTERVAL`].

use std::sync::Arc;
use std::time::Duration;

use crate::runtime::ShardKey;
use crate::service::Service;
use crate::stream::meta::StreamStatus;

/// How often closed shards are checked for expiry.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(60);

pub async fn run(svc: Arc<Service>) {
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        expire_closed_shards(&svc, svc.now_ms()).await;
    }
}

/// Removes, as of `now_ms`, the closed shards whose records have all expired; returns how many.
pub async fn expire_closed_shards(svc: &Arc<Service>, now_ms: i64) -> usize {
    let mut removed = 0;
    for meta in svc.all_streams() {
        let retention_ms = i64::from(meta.retention_hours) * 3_600_000;
        let expired = |s: &crate::stream::meta::ShardMeta| s.closed_ms.is_some_and(|c| c + retention_ms <= now_ms);
        if meta.status != StreamStatus::Active || !meta.shards.iter().any(expired) {
            continue;
        }
        let _guard = svc.control.lock().await;
        // Re-read under the lock: the stream may have changed meanwhile.
        let Ok(current) = svc.stream(&meta.name) else { continue };
        if current.id != meta.id || current.status != StreamStatus::Active {
            continue;
        }
        let mut m = (*current).clone();
        let gone: Vec<u32> = m.shards.iter().filter(|s| expired(s)).map(|s| s.index).collect();
        m.shards.retain(|s| !expired(s));
        if let Err(e) = svc.save(m).await {
            tracing::error!(stream = %meta.name, error = %e, "could not remove expired closed shards");
            continue;
        }
        for index in &gone {
            let key = ShardKey { stream_id: meta.id, shard_index: *index };
            if let Err(e) = svc.runtime.drop_shard(key).await {
                tracing::warn!(stream = %meta.name, shard = index, error = %e, "could not delete an expired shard's files");
            }
        }
        tracing::info!(stream = %meta.name, shards = ?gone, "closed shards expired");
        removed += gone.len();
    }
    removed
}
