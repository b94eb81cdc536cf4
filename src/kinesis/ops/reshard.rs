//! SplitShard, MergeShards, UpdateShardCount (UNIFORM_SCALING) and UpdateStreamMode: the
//! operations. The domain, shared with on-demand scaling, is [`crate::kinesis::reshard`].

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::kinesis::reshard::{apply, schedule_active, uniform_plan, Step, SHARDS_PER_STREAM_MAX};
use crate::kinesis::shards::{could_not_find, find_shard_to_reshard};
use crate::kinesis::{in_range, required};
use crate::protocol::error::{ApiError, ApiResult};
use crate::service::Service;
use crate::stream::meta::{parse_shard_id, ShardMeta, StreamMeta, StreamMode, StreamStatus};

/// The stream a SplitShard or MergeShards names. Of a stream that does not exist, AWS reports a
/// shard id it cannot parse before the stream.
fn resolve_for_reshard(
    svc: &Service,
    name: Option<&str>,
    arn: Option<&str>,
    shard_ids: &[&str],
) -> ApiResult<Arc<StreamMeta>> {
    svc.resolve(name, arn).map_err(|e| match (&e, name) {
        (ApiError::ResourceNotFound(_), Some(n)) => {
            shard_ids.iter().find(|t| parse_shard_id(t).is_none()).map(|t| could_not_find(svc, n, t)).unwrap_or(e)
        }
        _ => e,
    })
}

fn open_shard<'a>(svc: &Service, meta: &'a StreamMeta, id: &str) -> ApiResult<&'a ShardMeta> {
    let s = find_shard_to_reshard(svc, meta, id)?;
    if !s.is_open() {
        return Err(ApiError::ResourceInUse(format!(
            "Shard {id} in stream {} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
            meta.name, svc.cfg.account_id
        )));
    }
    Ok(s)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SplitInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_to_split: Option<String>,
    new_starting_hash_key: Option<String>,
}

pub async fn split_shard(svc: &Arc<Service>, input: SplitInput) -> ApiResult<Value> {
    let shard_id = required(input.shard_to_split, "shardToSplit")?;
    let key_text = required(input.new_starting_hash_key, "newStartingHashKey")?;
    // Well formed by the model's pattern; a value past 2^128 - 1 is past every shard's end.
    let at = key_text.parse::<u128>().ok();
    let _guard = svc.control.lock().await;
    let meta = resolve_for_reshard(svc, input.stream_name.as_deref(), input.stream_arn.as_deref(), &[&shard_id])?;
    if meta.status != StreamStatus::Active {
        return Err(svc.not_active(&meta));
    }
    let parent = open_shard(svc, &meta, &shard_id)?;
    let (start, end) = parent.range();
    // AWS's rule, as its message states it: strictly above StartingHashKey + 1, strictly below
    // EndingHashKey.
    let Some(at) = at.filter(|&at| at > start.saturating_add(1) && at < end) else {
        return Err(ApiError::InvalidArgument(format!(
            "NewStartingHashKey {key_text} used in SplitShard() on shard {} in stream {} under account {} is not both greater than one plus the shard's StartingHashKey {start} and less than the shard's EndingHashKey {end}.",
            parent.shard_id(), meta.name, svc.cfg.account_id
        )));
    };
    let step = Step::Split { parent: parent.index, at };
    apply(svc, &meta, vec![step]).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MergeInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_to_merge: Option<String>,
    adjacent_shard_to_merge: Option<String>,
}

pub async fn merge_shards(svc: &Arc<Service>, input: MergeInput) -> ApiResult<Value> {
    let a_id = required(input.shard_to_merge, "shardToMerge")?;
    let b_id = required(input.adjacent_shard_to_merge, "adjacentShardToMerge")?;
    let _guard = svc.control.lock().await;
    let meta = resolve_for_reshard(svc, input.stream_name.as_deref(), input.stream_arn.as_deref(), &[&a_id, &b_id])?;
    if meta.status != StreamStatus::Active {
        return Err(svc.not_active(&meta));
    }
    let a = open_shard(svc, &meta, &a_id)?;
    let b = open_shard(svc, &meta, &b_id)?;
    let ((_, a_end), (b_start, _)) = (a.range(), b.range());
    // As on AWS, the adjacent shard is the one right above ShardToMerge.
    let adjacent = a.index != b.index && a_end.checked_add(1) == Some(b_start);
    if !adjacent {
        return Err(ApiError::InvalidArgument(format!(
            "Shards {} and {} in stream {} under account {} are not an adjacent pair of shards eligible for merging",
            a.shard_id(),
            b.shard_id(),
            meta.name,
            svc.cfg.account_id
        )));
    }
    let step = Step::Merge { a: a.index, b: b.index };
    apply(svc, &meta, vec![step]).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateShardCountInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    target_shard_count: Option<i64>,
    scaling_type: Option<String>,
}

pub async fn update_shard_count(svc: &Arc<Service>, input: UpdateShardCountInput) -> ApiResult<Value> {
    let target = required(input.target_shard_count, "targetShardCount")?;
    in_range(target, 1, SHARDS_PER_STREAM_MAX * 10, "targetShardCount")?;
    let scaling = required(input.scaling_type, "scalingType")?;
    if scaling != "UNIFORM_SCALING" {
        return Err(ApiError::validation(
            &scaling,
            "scalingType",
            "Member must satisfy enum value set: [UNIFORM_SCALING]",
        ));
    }
    let _guard = svc.control.lock().await;
    let meta = svc.resolve(input.stream_name.as_deref(), input.stream_arn.as_deref())?;
    if meta.status != StreamStatus::Active {
        return Err(svc.not_active(&meta));
    }
    let current = i64::from(meta.open_shard_count());
    if target > current * 2 || target * 2 < current || target > SHARDS_PER_STREAM_MAX {
        return Err(ApiError::LimitExceeded(format!(
            "UpdateShardCount of stream {} under account {}: the target shard count {target} must be at least half and at most double the current {current}, and at most {SHARDS_PER_STREAM_MAX}.",
            meta.name, svc.cfg.account_id
        )));
    }
    let steps = uniform_plan(&meta, target as u32);
    let arn = svc.arn(&meta);
    if !steps.is_empty() {
        apply(svc, &meta, steps).await?;
    }
    Ok(json!({
        "StreamName": meta.display_name(),
        "StreamARN": arn,
        "CurrentShardCount": current,
        "TargetShardCount": target,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModeDetailsInput {
    stream_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStreamModeInput {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    stream_mode_details: Option<ModeDetailsInput>,
}

pub async fn update_stream_mode(svc: &Arc<Service>, input: UpdateStreamModeInput) -> ApiResult<Value> {
    let arn = required(input.stream_arn, "streamARN")?;
    let details = required(input.stream_mode_details, "streamModeDetails")?;
    let mode = match required(details.stream_mode, "streamModeDetails.streamMode")?.as_str() {
        "PROVISIONED" => StreamMode::Provisioned,
        "ON_DEMAND" => StreamMode::OnDemand,
        other => {
            return Err(ApiError::validation(
                other,
                "streamModeDetails.streamMode",
                "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]",
            ))
        }
    };
    let _guard = svc.control.lock().await;
    let meta = svc.resolve(None, Some(&arn))?;
    if meta.status != StreamStatus::Active {
        return Err(svc.not_active(&meta));
    }
    if mode == StreamMode::Provisioned && meta.mode == StreamMode::OnDemand {
        crate::queues::refuse_while_queued(svc, &meta, "switching it to PROVISIONED")?;
    }
    if mode == StreamMode::OnDemand && meta.mode != StreamMode::OnDemand {
        let on_demand = svc.client_streams().iter().filter(|s| s.mode == StreamMode::OnDemand).count() as u32;
        if on_demand >= svc.cfg.streams.on_demand_stream_limit {
            return Err(ApiError::LimitExceeded(format!(
                "This request would exceed the limit of {} ON_DEMAND streams for the account {}.",
                svc.cfg.streams.on_demand_stream_limit, svc.cfg.account_id
            )));
        }
    }
    let mut m = (*meta).clone();
    m.mode = mode;
    m.status = StreamStatus::Updating;
    let saved = svc.save(m).await?;
    schedule_active(svc, saved.id, &saved.name);
    Ok(json!({}))
}
