//! Record routing: a record goes to the open shard whose hash key range holds the MD5 of its
//! partition key (or its explicit hash key); the records of one request are sent to every owning
//! core worker before the first reply is awaited. Called by PutRecord(s) and by every producer
//! inside the daemon alike.

use std::sync::Arc;

use crate::log::NewRecord;
use crate::protocol::error::{ApiError, ApiResult};
use crate::runtime::ShardKey;
use crate::service::Service;
use crate::stream::meta::{shard_id, ShardMeta, StreamMeta};

/// A validated record with the hash key that routes it.
/// For AUTO distribution: a hash key in the next open shard, in turn, so records spread evenly.
pub fn spread_hash(meta: &StreamMeta) -> u128 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let open: Vec<&ShardMeta> = meta.shards.iter().filter(|s| s.is_open()).collect();
    if open.is_empty() {
        return 0;
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as usize;
    open[n % open.len()].range().0
}

pub struct Routed {
    pub hash: u128,
    pub record: NewRecord,
}

fn route<'a>(svc: &Service, meta: &'a StreamMeta, hash: u128) -> ApiResult<&'a ShardMeta> {
    meta.shard_for_hash(hash)
        .ok_or_else(|| {
            ApiError::InternalFailure(format!("No open shard of stream {} covers hash key {hash}.", meta.name))
        })
        .inspect_err(
            |_| tracing::error!(stream = %meta.name, account = %svc.cfg.account_id, "hash key space has a hole"),
        )
}

/// Attempts at routing records whose shard a reshard has just closed, and the pause between.
const RESHARD_ROUTE_ATTEMPTS_MAX: usize = 200;
const RESHARD_ROUTE_RETRY: std::time::Duration = std::time::Duration::from_millis(5);

/// Appends records routed by hash key (request order is kept within each shard) and returns,
/// per record in request order, its shard and ordinal. Records that reach a shard that a reshard
/// has just closed are routed again on the new shard set, so none is lost or doubled.
pub async fn append_routed(
    svc: &Arc<Service>,
    meta: &Arc<StreamMeta>,
    routed: Vec<Routed>,
) -> Vec<ApiResult<(u32, u64)>> {
    let mut results: Vec<Option<ApiResult<(u32, u64)>>> = (0..routed.len()).map(|_| None).collect();
    let mut todo: Vec<(usize, Routed)> = routed.into_iter().enumerate().collect();
    let mut meta = meta.clone();
    for attempt in 0..RESHARD_ROUTE_ATTEMPTS_MAX {
        // Group by shard, keeping request order inside each shard.
        let mut groups: Vec<(u32, Vec<usize>)> = Vec::new();
        for (i, (_, r)) in todo.iter().enumerate() {
            let shard = match route(svc, &meta, r.hash) {
                Ok(s) => s.index,
                Err(e) => {
                    results[todo[i].0] = Some(Err(e));
                    continue;
                }
            };
            if let Some(limits) = &svc.limits {
                let size = (r.record.data.len() + r.record.partition_key.len()) as u64;
                if attempt == 0 && !limits.allow_put(ShardKey { stream_id: meta.id, shard_index: shard }, size) {
                    svc.metrics.record_throttled(&meta.name, &shard_id(shard), true, 1);
                    results[todo[i].0] = Some(Err(ApiError::ProvisionedThroughputExceeded(format!(
                        "Rate exceeded for shard {} in stream {} under account {}.",
                        shard_id(shard),
                        meta.name,
                        svc.cfg.account_id
                    ))));
                    continue;
                }
            }
            match groups.iter_mut().find(|g| g.0 == shard) {
                Some(g) => g.1.push(i),
                None => groups.push((shard, vec![i])),
            }
        }
        let pending: Vec<_> = groups
            .iter()
            .map(|(shard, members)| {
                let records = members.iter().map(|&i| todo[i].1.record.clone()).collect();
                svc.runtime.append(ShardKey { stream_id: meta.id, shard_index: *shard }, records)
            })
            .collect();
        let mut retry = Vec::new();
        for ((shard, members), fut) in groups.into_iter().zip(pending) {
            match fut.await {
                Ok(a) => {
                    let bytes = members.iter().map(|&i| todo[i].1.record.data.len() as u64).sum();
                    svc.metrics.record_put(&meta.name, &shard_id(shard), members.len() as u64, bytes);
                    for (pos, &i) in members.iter().enumerate() {
                        results[todo[i].0] = Some(Ok((shard, a.first_ordinal + pos as u64)));
                    }
                }
                Err(ApiError::ShardClosed(_)) if attempt + 1 < RESHARD_ROUTE_ATTEMPTS_MAX => retry.extend(members),
                Err(e) => {
                    if matches!(e, ApiError::ProvisionedThroughputExceeded(_)) {
                        svc.metrics.record_throttled(&meta.name, &shard_id(shard), true, members.len() as u64);
                    }
                    for &i in &members {
                        results[todo[i].0] = Some(Err(e.clone()));
                    }
                }
            }
        }
        if retry.is_empty() {
            break;
        }
        let mut keep = vec![false; todo.len()];
        for i in retry {
            keep[i] = true;
        }
        todo = todo.into_iter().zip(keep).filter(|(_, k)| *k).map(|(t, _)| t).collect();
        tokio::time::sleep(RESHARD_ROUTE_RETRY).await;
        meta = match svc.stream(&meta.name) {
            Ok(m) if m.id == meta.id => m,
            _ => {
                for (i, _) in &todo {
                    results[*i] = Some(Err(svc.not_found(&meta.name)));
                }
                break;
            }
        };
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(ApiError::InternalFailure("The record could not be routed during a reshard.".into()))
            })
        })
        .collect()
}
