//! Shards as Kinesis names and describes them: lineage (ChildShards) and lookup by id.

use serde_json::{json, Value};

use crate::protocol::error::{ApiError, ApiResult};
use crate::service::Service;
use crate::stream::meta::{parse_shard_id, ShardMeta, StreamMeta};

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

/// The shard named `text` in `meta`, or AWS's ResourceNotFoundException.
pub fn find_shard<'a>(svc: &Service, meta: &'a StreamMeta, text: &str) -> ApiResult<&'a ShardMeta> {
    parse_shard_id(text).and_then(|i| meta.shard(i)).ok_or_else(|| {
        ApiError::ResourceNotFound(format!(
            "Shard {text} in stream {} under account {} does not exist",
            meta.name, svc.cfg.account_id
        ))
    })
}
