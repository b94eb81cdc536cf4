//! Shards as Kinesis names and describes them: lineage (ChildShards) and lookup by id.

use serde_json::{json, Value};

use crate::protocol::error::{ApiError, ApiResult};
use crate::service::Service;
use crate::stream::meta::{parse_shard_id, shard_id, ShardMeta, StreamMeta};

/// The ChildShards entries of a closed shard, as GetRecords and SubscribeToShard give them.
pub fn child_shards_json(meta: &StreamMeta, parent: u32) -> Vec<Value> {
    meta.shards
        .iter()
        .filter(|c| c.parent == Some(parent) || c.adjacent_parent == Some(parent))
        .map(|c| {
            let parents: Vec<String> =
                c.parent.iter().chain(c.adjacent_parent.iter()).map(|p| crate::stream::meta::shard_id(*p)).collect();
            json!({
                "ShardId": c.shard_id(),
                "ParentShards": parents,
                "HashKeyRange": {"StartingHashKey": c.hash_start.to_string(), "EndingHashKey": c.hash_end.to_string()},
            })
        })
        .collect()
}

/// The shard named `text` in `meta` (any form AWS accepts), or AWS's ResourceNotFoundException
/// as GetShardIterator words it.
pub fn find_shard<'a>(svc: &Service, meta: &'a StreamMeta, text: &str) -> ApiResult<&'a ShardMeta> {
    let Some(index) = parse_shard_id(text) else { return Err(could_not_find(svc, &meta.name, text)) };
    meta.shard(index).ok_or_else(|| shard_does_not_exist(svc, &meta.name, index))
}

/// The shard named `text` in `meta`, or AWS's ResourceNotFoundException as SplitShard and
/// MergeShards word it.
pub fn find_shard_to_reshard<'a>(svc: &Service, meta: &'a StreamMeta, text: &str) -> ApiResult<&'a ShardMeta> {
    let Some(index) = parse_shard_id(text) else { return Err(could_not_find(svc, &meta.name, text)) };
    meta.shard(index).ok_or_else(|| could_not_find(svc, &meta.name, &shard_id(index)))
}

/// What GetShardIterator answers for a shard of a stream that does not exist, or has no shards
/// yet (CREATING): the shard's error, as AWS checks the shard first.
pub fn no_such_shard(svc: &Service, stream: &str, text: &str) -> ApiError {
    match parse_shard_id(text) {
        Some(index) => shard_does_not_exist(svc, stream, index),
        None => could_not_find(svc, stream, text),
    }
}

/// `Shard shardId-… in stream … under account … does not exist` (AWS writes no period).
pub fn shard_does_not_exist(svc: &Service, stream: &str, index: u32) -> ApiError {
    ApiError::ResourceNotFound(format!(
        "Shard {} in stream {stream} under account {} does not exist",
        shard_id(index),
        svc.cfg.account_id
    ))
}

pub fn could_not_find(svc: &Service, stream: &str, text: &str) -> ApiError {
    ApiError::ResourceNotFound(format!(
        "Could not find shard {text} in stream {stream} under account {}.",
        svc.cfg.account_id
    ))
}
