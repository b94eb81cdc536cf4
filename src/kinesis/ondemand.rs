//! On-demand scaling: ON_DEMAND streams split shards that stay hot and merge neighbours that stay
//! cold, as AWS's on-demand mode does.
//!
//! Every `ondemand.check_interval` each open shard's write rate is measured from the daemon's own
//! counters. A shard above `split_bytes_per_s` for `split_after_checks` checks in a row is split in
//! half; two adjacent shards both below `merge_bytes_per_s` for `merge_after_checks` checks are
//! merged, never below `min_shards` nor below the shards a warm throughput asks for. Hysteresis: the thresholds are far apart, decisions need a
//! streak, and after a reshard the stream's streaks start over. Decisions are logged and counted
//! in `sluice_ondemand_scaling_total{stream, action}`.

use std::collections::HashMap;
use std::sync::Arc;

use super::reshard::{merge_pair, split_in_half};
use crate::service::Service;
use crate::stream::meta::{StreamMode, StreamStatus};

/// The shards a stream's warm throughput keeps open: merges never go below it.
fn warm_floor(meta: &crate::stream::meta::StreamMeta) -> u32 {
    meta.warm_throughput_mibps.map_or(0, super::ops::settings::warm_shards)
}

#[derive(Clone, Copy)]
struct ShardState {
    last_bytes: u64,
    last_at: std::time::Instant,
    hot: u32,
    cold: u32,
}

pub async fn run(svc: Arc<Service>) {
    let cfg = svc.cfg.ondemand.clone();
    let mut state: HashMap<(u64, u32), ShardState> = HashMap::new();
    let mut ticker = tokio::time::interval(cfg.check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        for meta in svc.all_streams() {
            if meta.mode != StreamMode::OnDemand || meta.status != StreamStatus::Active {
                continue;
            }
            let mut open: Vec<_> = meta.shards.iter().filter(|s| s.is_open()).collect();
            open.sort_by_key(|s| s.range().0);
            for s in &open {
                let bytes = svc.metrics.incoming_bytes(&meta.name, &s.shard_id());
                let now = std::time::Instant::now();
                let st = state.entry((meta.id, s.index)).or_insert(ShardState {
                    last_bytes: bytes,
                    last_at: now,
                    hot: 0,
                    cold: 0,
                });
                // Over the time actually elapsed: a skipped check must not look like a burst.
                let secs = now.duration_since(st.last_at).as_secs_f64().max(1e-3);
                let rate = (bytes.saturating_sub(st.last_bytes)) as f64 / secs;
                st.last_bytes = bytes;
                st.last_at = now;
                st.hot = if rate > cfg.split_bytes_per_s as f64 { st.hot + 1 } else { 0 };
                st.cold = if rate < cfg.merge_bytes_per_s as f64 { st.cold + 1 } else { 0 };
            }
            let hottest = open
                .iter()
                .filter(|s| state[&(meta.id, s.index)].hot >= cfg.split_after_checks)
                .max_by_key(|s| state[&(meta.id, s.index)].hot);
            let decision = if let Some(s) = hottest {
                Some(("split", s.index, None))
            } else if open.len() as u32 > cfg.min_shards.max(warm_floor(&meta)) {
                open.windows(2)
                    .find(|w| {
                        w[0].range().1.checked_add(1) == Some(w[1].range().0)
                            && state[&(meta.id, w[0].index)].cold >= cfg.merge_after_checks
                            && state[&(meta.id, w[1].index)].cold >= cfg.merge_after_checks
                    })
                    .map(|w| ("merge", w[0].index, Some(w[1].index)))
            } else {
                None
            };
            let Some((action, a, b)) = decision else { continue };
            let _guard = svc.control.lock().await;
            // Re-read under the lock: the stream may have changed meanwhile.
            let Ok(current) = svc.stream(&meta.name) else { continue };
            if current.id != meta.id || current.status != StreamStatus::Active {
                continue;
            }
            let result = match b {
                None => split_in_half(&svc, &current, a).await,
                Some(b) => merge_pair(&svc, &current, a, b).await,
            };
            match result {
                Ok(()) => {
                    tracing::info!(stream = %meta.name, action, shard = a, with = ?b, open_shards_before = open.len(), "on-demand scaling");
                    svc.metrics.record_scaling(&meta.name, action);
                    state.retain(|(id, _), _| *id != meta.id);
                }
                Err(e) => tracing::warn!(stream = %meta.name, action, error = %e, "on-demand scaling failed"),
            }
        }
    }
}
