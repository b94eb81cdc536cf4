//! Resharding, the domain: plans of splits and merges and how they are carried out, used by
//! SplitShard, MergeShards, UpdateShardCount, UpdateStreamMode and on-demand scaling alike.
//!
//! A reshard is a plan of splits and merges applied to a copy of the stream's metadata. Children
//! are opened on their workers first, then each parent is closed on its worker (which returns its
//! end ordinal: appends that reach it afterwards fail with ShardClosed and are routed again), then
//! the new metadata is saved in one write, with the stream UPDATING until `streams.create_delay`
//! has passed. UpdateShardCount is done as AWS does it: splits at the new boundaries, then merges
//! of the pieces, so that every child has at most a parent and an adjacent parent and readers
//! that finish parents before children keep per-key order.

use std::sync::Arc;

use crate::protocol::error::{ApiError, ApiResult};
use crate::runtime::ShardKey;
use crate::service::Service;
use crate::stream::hashing::uniform_ranges;
use crate::stream::meta::{ShardMeta, StreamMeta, StreamStatus};

/// Shards one stream may have open (AWS's default for UpdateShardCount).
pub const SHARDS_PER_STREAM_MAX: i64 = 10_000;

pub enum Step {
    Split { parent: u32, at: u128 },
    Merge { a: u32, b: u32 },
}

/// Applies `steps` to `meta`: returns the new metadata, the pre-existing shards it closes and
/// the shards it creates (with whether each stays open).
fn plan(meta: &StreamMeta, steps: &[Step], now_ms: i64) -> (StreamMeta, Vec<u32>, Vec<(u32, bool)>) {
    let mut m = meta.clone();
    let existing: Vec<u32> = meta.shards.iter().map(|s| s.index).collect();
    let mut created: Vec<u32> = Vec::new();
    let mut closed: Vec<u32> = Vec::new();
    let child = |m: &StreamMeta, start: u128, end: u128, parent: u32, adjacent: Option<u32>| ShardMeta {
        index: m.next_shard_index(),
        hash_start: start,
        hash_end: end,
        parent: Some(parent),
        adjacent_parent: adjacent,
        end_ordinal: None,
        closed_ms: None,
        created_ms: now_ms,
    };
    for step in steps {
        match *step {
            Step::Split { parent, at } => {
                let (start, end) = m.shard(parent).expect("planned from open shards").range();
                let left = child(&m, start, at - 1, parent, None);
                m.shards.push(left.clone());
                let right = child(&m, at, end, parent, None);
                m.shards.push(right.clone());
                created.extend([left.index, right.index]);
                closed.push(parent);
            }
            Step::Merge { a, b } => {
                let (a_start, a_end) = m.shard(a).expect("planned from open shards").range();
                let (b_start, b_end) = m.shard(b).expect("planned from open shards").range();
                let merged = child(&m, a_start.min(b_start), a_end.max(b_end), a, Some(b));
                m.shards.push(merged.clone());
                created.push(merged.index);
                closed.extend([a, b]);
            }
        }
        for s in m.shards.iter_mut().filter(|s| closed.contains(&s.index) && s.end_ordinal.is_none()) {
            s.end_ordinal = Some(0);
            s.closed_ms = Some(now_ms);
        }
    }
    let closed_existing: Vec<u32> = closed.iter().copied().filter(|c| existing.contains(c)).collect();
    let created_state: Vec<(u32, bool)> = created.iter().map(|c| (*c, !closed.contains(c))).collect();
    (m, closed_existing, created_state)
}

/// Splits an open shard in two equal halves (on-demand scaling). The caller holds the control lock.
pub async fn split_in_half(svc: &Arc<Service>, meta: &StreamMeta, shard: u32) -> ApiResult<()> {
    let s = meta.shard(shard).filter(|s| s.is_open()).ok_or_else(|| svc.not_found(&meta.name))?;
    let (start, end) = s.range();
    if end <= start {
        return Err(ApiError::InvalidArgument("The shard covers a single hash key and cannot be split.".into()));
    }
    apply(svc, meta, vec![Step::Split { parent: shard, at: start + (end - start) / 2 + 1 }]).await.map(|_| ())
}

/// Merges two adjacent open shards (on-demand scaling). The caller holds the control lock.
pub async fn merge_pair(svc: &Arc<Service>, meta: &StreamMeta, a: u32, b: u32) -> ApiResult<()> {
    let open = |i: u32| meta.shard(i).is_some_and(|s| s.is_open());
    if !open(a) || !open(b) {
        return Err(ApiError::ResourceInUse("A shard to merge is no longer open.".into()));
    }
    apply(svc, meta, vec![Step::Merge { a, b }]).await.map(|_| ())
}

/// Carries out a plan: children opened, parents closed on their workers, metadata saved UPDATING.
pub async fn apply(svc: &Arc<Service>, meta: &StreamMeta, steps: Vec<Step>) -> ApiResult<Arc<StreamMeta>> {
    let now = svc.now_ms();
    let (mut m, closing, created) = plan(meta, &steps, now);
    let open_after: u32 =
        svc.client_streams().iter().filter(|s| s.id != meta.id).map(|s| s.open_shard_count()).sum::<u32>()
            + m.open_shard_count();
    if open_after > svc.cfg.streams.shard_limit {
        let open_now: u32 = svc.client_streams().iter().map(|s| s.open_shard_count()).sum();
        return Err(ApiError::LimitExceeded(format!(
            "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {open_now}. Limit: {}. Number of additional shards that would have resulted from this request: {}. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.",
            svc.cfg.account_id,
            svc.cfg.region,
            svc.cfg.streams.shard_limit,
            open_after.saturating_sub(open_now)
        )));
    }
    for (index, open) in &created {
        let key = ShardKey { stream_id: m.id, shard_index: *index };
        svc.runtime.open(key, svc.shard_dir(key), Vec::new(), m.retention_hours, !open).await?;
        if *open && m.encryption.is_some() {
            svc.runtime.set_encryption(key, m.encryption.clone()).await?;
        }
    }
    let mut closed = Vec::new();
    let mut outcome = Ok(());
    for index in closing {
        let key = ShardKey { stream_id: m.id, shard_index: index };
        match svc.runtime.close(key).await {
            Ok(end) => {
                closed.push(key);
                if let Some(s) = m.shards.iter_mut().find(|s| s.index == index) {
                    s.end_ordinal = Some(end);
                }
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    m.status = StreamStatus::Updating;
    if m.previous_layout.is_none() {
        m.previous_layout = Some(meta.shards.clone());
    }
    let saved = match outcome {
        Ok(()) => svc.save(m).await,
        Err(e) => Err(e),
    };
    let saved = match saved {
        Ok(saved) => saved,
        Err(e) => {
            // Undo: the parents take appends again and the unused children go away, so that the
            // shard set stays the one the metadata names.
            tracing::error!(stream = %meta.name, error = %e, "reshard failed; reopening its parents");
            for key in closed {
                let _ = svc.runtime.reopen(key).await;
            }
            for (index, _) in &created {
                let _ = svc.runtime.drop_shard(ShardKey { stream_id: meta.id, shard_index: *index }).await;
            }
            return Err(e);
        }
    };
    tracing::info!(stream = %saved.name, open_shards = saved.open_shard_count(), "resharded");
    schedule_active(svc, saved.id, &saved.name);
    Ok(saved)
}

pub fn schedule_active(svc: &Arc<Service>, id: u64, name: &str) {
    let svc = svc.clone();
    let name = name.to_owned();
    let delay = svc.cfg.streams.create_delay;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _guard = svc.control.lock().await;
        if let Ok(current) = svc.stream(&name) {
            if current.id == id && current.status == StreamStatus::Updating {
                let mut m = (*current).clone();
                m.status = StreamStatus::Active;
                m.previous_layout = None;
                if let Err(e) = svc.save(m).await {
                    tracing::error!(stream = %name, error = %e, "could not return the stream to ACTIVE");
                }
            }
        }
    });
}

/// The splits and merges that turn the open shards of `meta` into `target` uniform ranges.
pub fn uniform_plan(meta: &StreamMeta, target: u32) -> Vec<Step> {
    let mut open: Vec<(u32, u128, u128)> =
        meta.shards.iter().filter(|s| s.is_open()).map(|s| (s.index, s.range().0, s.range().1)).collect();
    open.sort_by_key(|s| s.1);
    let ranges = uniform_ranges(target);
    let boundaries: Vec<u128> = ranges.iter().skip(1).map(|r| r.0).collect();
    let mut steps = Vec::new();
    let mut next_index = meta.next_shard_index();
    // Phase 1: split every shard at the new boundaries inside it. Pieces: (index, start, end).
    let mut pieces: Vec<(u32, u128, u128)> = Vec::new();
    for (index, start, end) in open {
        let mut current = (index, start, end);
        for &b in boundaries.iter().filter(|&&b| b > start && b <= end) {
            steps.push(Step::Split { parent: current.0, at: b });
            let left = (next_index, current.1, b - 1);
            let right = (next_index + 1, b, current.2);
            next_index += 2;
            pieces.push(left);
            current = right;
        }
        pieces.push(current);
    }
    // Phase 2: merge the pieces of each new range, left to right.
    for (start, end) in ranges {
        let mut members = pieces.iter().filter(|p| p.1 >= start && p.2 <= end);
        let Some(first) = members.next() else { continue };
        let mut acc = first.0;
        for p in members {
            steps.push(Step::Merge { a: acc, b: p.0 });
            acc = next_index;
            next_index += 1;
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::meta::StreamMode;

    fn meta(n: u32) -> StreamMeta {
        StreamMeta::new("s".into(), 1, StreamMode::Provisioned, n, 0)
    }

    fn apply_plan(m: &StreamMeta, target: u32) -> StreamMeta {
        plan(m, &uniform_plan(m, target), 5).0
    }

    #[test]
    fn uniform_scaling_ends_uniform_with_at_most_two_parents() {
        for (from, to) in [(1, 2), (2, 1), (3, 5), (5, 3), (4, 8), (8, 4), (7, 7), (6, 11), (10, 5)] {
            let m = apply_plan(&meta(from), to);
            let mut open: Vec<(u128, u128)> = m.shards.iter().filter(|s| s.is_open()).map(|s| s.range()).collect();
            open.sort();
            assert_eq!(open, uniform_ranges(to), "{from} -> {to}");
            for s in &m.shards {
                if let Some(p) = s.parent {
                    let (ps, pe) = m.shard(p).unwrap().range();
                    let (cs, ce) = s.range();
                    assert!(ps <= ce && cs <= pe, "{from} -> {to}: child {} does not overlap its parent", s.index);
                }
            }
        }
    }

    #[test]
    fn every_child_overlaps_only_its_parents() {
        // A reader that finishes parents before children keeps per-key order only if no child
        // overlaps a closed shard other than its parents.
        let m = apply_plan(&meta(5), 3);
        for c in m.shards.iter().filter(|s| s.parent.is_some()) {
            let (cs, ce) = c.range();
            let overlapping: Vec<u32> = m
                .shards
                .iter()
                .filter(|o| o.index < c.index && !o.is_open())
                .filter(|o| {
                    let (os, oe) = o.range();
                    os <= ce && cs <= oe
                })
                .map(|o| o.index)
                .collect();
            for o in overlapping {
                // Either a direct parent, or an ancestor of one.
                let mut ancestors = vec![];
                let mut stack: Vec<u32> = c.parent.iter().chain(c.adjacent_parent.iter()).copied().collect();
                while let Some(x) = stack.pop() {
                    ancestors.push(x);
                    let s = m.shard(x).unwrap();
                    stack.extend(s.parent.iter().chain(s.adjacent_parent.iter()));
                }
                assert!(ancestors.contains(&o), "child {} overlaps {o}, which is not an ancestor", c.index);
            }
        }
    }
}
