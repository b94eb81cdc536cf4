//! Control-plane operations: streams, shards listing, retention, tags, limits.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::kinesis::{epoch_seconds, in_range, required, timestamp_ms};
use crate::protocol::error::{ApiError, ApiResult};
use crate::runtime::ShardKey;
use crate::service::{validate_stream_name, Service};
use crate::stream::meta::{
    RecordDistribution, ShardMeta, StreamMeta, StreamMode, StreamStatus, ON_DEMAND_INITIAL_SHARDS, RETENTION_HOURS_MAX,
    RETENTION_HOURS_MIN, TAGS_PER_STREAM_MAX,
};

/// NextToken values expire like AWS's (ExpiredNextTokenException after 300 s).
const NEXT_TOKEN_TTL_MS: i64 = 300_000;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamRef {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

impl StreamRef {
    fn resolve(&self, svc: &Service) -> ApiResult<Arc<StreamMeta>> {
        svc.resolve(self.stream_name.as_deref(), self.stream_arn.as_deref())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModeDetails {
    stream_mode: Option<String>,
}

fn parse_mode(details: Option<&ModeDetails>) -> ApiResult<Option<StreamMode>> {
    let Some(d) = details else { return Ok(None) };
    match required(d.stream_mode.as_deref(), "streamModeDetails.streamMode")? {
        "PROVISIONED" => Ok(Some(StreamMode::Provisioned)),
        "ON_DEMAND" => Ok(Some(StreamMode::OnDemand)),
        other => Err(ApiError::validation(
            other,
            "streamModeDetails.streamMode",
            "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]",
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateStreamInput {
    stream_name: Option<String>,
    shard_count: Option<i64>,
    stream_mode_details: Option<ModeDetails>,
    tags: Option<HashMap<String, String>>,
    #[serde(rename = "MaxRecordSizeInKiB")]
    max_record_size_kib: Option<i64>,
    #[serde(rename = "WarmThroughputMiBps")]
    warm_throughput_mibps: Option<i64>,
    record_distribution_strategy: Option<String>,
}

/// Saves a new stream's metadata, then opens its shards (undone if a shard cannot be opened).
/// The caller holds the control lock.
async fn open_new_stream(svc: &Arc<Service>, meta: StreamMeta) -> ApiResult<Arc<StreamMeta>> {
    // Metadata first: a crash after this point recovers the stream and opens its shards.
    let meta = svc.save(meta).await?;
    for shard in &meta.shards {
        let key = ShardKey { stream_id: meta.id, shard_index: shard.index };
        let opened = svc.runtime.open(key, svc.shard_dir(key), Vec::new(), meta.retention_hours, false).await;
        if let Err(e) = opened {
            // Undo, so that the name is not left stuck in CREATING.
            tracing::error!(stream = %meta.name, error = %e, "could not open a new shard; removing the stream");
            if let Err(undo) = svc.finish_delete(&meta).await {
                tracing::error!(stream = %meta.name, error = %undo, "could not remove the half-created stream");
            }
            return Err(e);
        }
    }
    Ok(meta)
}

/// A stream only services inside the daemon use (a DirectPut delivery stream's records): ACTIVE
/// at once, outside the account's shard limit, hidden from ListStreams; its name is outside the
/// Kinesis name pattern ([`crate::stream::meta::is_internal_name`]), so no client names it.
/// Answers the existing stream if there is one.
pub async fn create_internal_stream(svc: &Arc<Service>, name: &str, shard_count: u32) -> ApiResult<Arc<StreamMeta>> {
    debug_assert!(crate::stream::meta::is_internal_name(name));
    let _guard = svc.control.lock().await;
    if let Ok(existing) = svc.stream(name) {
        return Ok(existing);
    }
    let store = svc.store.clone();
    let id = tokio::task::spawn_blocking(move || store.allocate_stream_id())
        .await
        .map_err(|e| ApiError::InternalFailure(e.to_string()))?
        .map_err(|e| ApiError::InternalFailure(e.to_string()))?;
    let mut meta = StreamMeta::new(name.to_owned(), id, StreamMode::Provisioned, shard_count, svc.now_ms());
    meta.status = StreamStatus::Active;
    open_new_stream(svc, meta).await
}

/// Creates a stream in `account` (the caller's).
pub async fn create_stream(svc: &Arc<Service>, input: CreateStreamInput, account: &str) -> ApiResult<Value> {
    let name = required(input.stream_name, "streamName")?;
    validate_stream_name(&name)?;
    let name = crate::stream::meta::qualified(account, &svc.cfg.account_id, &name);
    // With neither a shard count nor a mode, AWS creates an on-demand stream.
    let default_mode = if input.shard_count.is_some() { StreamMode::Provisioned } else { StreamMode::OnDemand };
    let mode = parse_mode(input.stream_mode_details.as_ref())?.unwrap_or(default_mode);
    let mut shard_count = match (mode, input.shard_count) {
        (StreamMode::Provisioned, None) => {
            return Err(ApiError::InvalidArgument("ShardCount is required for a PROVISIONED stream.".into()))
        }
        (StreamMode::Provisioned, Some(n)) => {
            in_range(n, 1, 100_000, "shardCount")?;
            n as u32
        }
        (StreamMode::OnDemand, _) => ON_DEMAND_INITIAL_SHARDS,
    };
    let warm = input.warm_throughput_mibps.map(|w| w as u32);
    if let Some(w) = warm {
        if mode != StreamMode::OnDemand {
            return Err(ApiError::InvalidArgument(
                "WarmThroughputMiBps is only supported for streams in ON_DEMAND mode.".into(),
            ));
        }
        super::settings::check_warm_throughput_allowed(svc)?;
        shard_count = shard_count.max(super::settings::warm_shards(w));
    }
    let auto = input.record_distribution_strategy.as_deref() == Some("AUTO");
    if auto && mode != StreamMode::OnDemand {
        return Err(ApiError::InvalidArgument(
            "RecordDistributionStrategy AUTO is only supported for streams in ON_DEMAND mode.".into(),
        ));
    }
    if let Some(tags) = &input.tags {
        check_tag_chars(svc, tags.keys().chain(tags.values()), &name, "add tags to")?;
    }
    let _guard = svc.control.lock().await;
    if svc.stream(&name).is_ok() {
        return Err(ApiError::ResourceInUse(format!(
            "Stream {name} under account {} already exists.",
            svc.cfg.account_id
        )));
    }
    let streams = svc.client_streams();
    let open: u32 = streams.iter().map(|s| s.open_shard_count()).sum();
    let limit = svc.cfg.streams.shard_limit;
    if open + shard_count > limit {
        return Err(ApiError::LimitExceeded(format!(
            "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {open}. Limit: {limit}. Number of additional shards that would have resulted from this request: {shard_count}. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.",
            svc.cfg.account_id, svc.cfg.region
        )));
    }
    if mode == StreamMode::OnDemand {
        let on_demand = streams.iter().filter(|s| s.mode == StreamMode::OnDemand).count() as u32;
        if on_demand >= svc.cfg.streams.on_demand_stream_limit {
            return Err(ApiError::LimitExceeded(format!(
                "This request would exceed the limit of {} ON_DEMAND streams for the account {}.",
                svc.cfg.streams.on_demand_stream_limit, svc.cfg.account_id
            )));
        }
    }
    let store = svc.store.clone();
    let id = tokio::task::spawn_blocking(move || store.allocate_stream_id())
        .await
        .map_err(|e| ApiError::InternalFailure(e.to_string()))?
        .map_err(|e| ApiError::InternalFailure(e.to_string()))?;
    let mut meta = StreamMeta::new(name.clone(), id, mode, shard_count, svc.now_ms());
    if let Some(tags) = input.tags {
        meta.tags.extend(tags);
    }
    if let Some(kib) = input.max_record_size_kib {
        meta.max_record_size_kib = kib as u32;
    }
    meta.warm_throughput_mibps = warm;
    if auto {
        meta.distribution = RecordDistribution::Auto;
    }
    open_new_stream(svc, meta).await?;
    drop(_guard);
    let delay = svc.cfg.streams.create_delay;
    let svc2 = svc.clone();
    let activate = async move {
        let _guard = svc2.control.lock().await;
        if let Ok(current) = svc2.stream(&name) {
            if current.id == id && current.status == StreamStatus::Creating {
                let mut m = (*current).clone();
                m.status = StreamStatus::Active;
                if let Err(e) = svc2.save(m).await {
                    tracing::error!(stream = %name, error = %e, "could not activate stream");
                }
            }
        }
    };
    crate::kinesis::after(delay, activate).await;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteStreamInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(default)]
    #[allow(dead_code)]
    enforce_consumer_deletion: Option<bool>,
}

pub async fn delete_stream(svc: &Arc<Service>, input: DeleteStreamInput) -> ApiResult<Value> {
    let _guard = svc.control.lock().await;
    let meta = input.stream.resolve(svc)?;
    // As on AWS, a stream may be deleted while it is still CREATING: it goes DELETING.
    if meta.status == StreamStatus::Deleting {
        return Err(svc.not_found(&meta.name));
    }
    crate::queues::refuse_while_queued(svc, &meta, "the stream")?;
    let channels = crate::firehose::channels::of_stream(svc, &meta.name);
    if !channels.is_empty() {
        return Err(ApiError::ResourceInUse(format!(
            "Stream {} has channels ({}); delete them before the stream.",
            meta.name,
            channels.join(", ")
        )));
    }
    let mut m = (*meta).clone();
    m.status = StreamStatus::Deleting;
    let meta = svc.save(m).await?;
    drop(_guard);
    let delay = svc.cfg.streams.delete_delay;
    let svc2 = svc.clone();
    let finish = async move {
        let _guard = svc2.control.lock().await;
        super::settings::forget_policies(&svc2, &meta).await;
        if let Err(e) = svc2.finish_delete(&meta).await {
            tracing::error!(stream = %meta.name, error = %e, "could not finish deleting stream; will retry at next start");
        }
    };
    crate::kinesis::after(delay, finish).await;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsInput {
    limit: Option<i64>,
    exclusive_start_stream_name: Option<String>,
    next_token: Option<String>,
}

/// Lists the streams of `account` (the caller's).
pub fn list_streams(svc: &Service, input: ListStreamsInput, account: &str) -> ApiResult<Value> {
    let limit = input.limit.unwrap_or(100);
    in_range(limit, 1, 10_000, "limit")?;
    if input.next_token.is_some() && input.exclusive_start_stream_name.is_some() {
        return Err(ApiError::InvalidArgument(
            "NextToken and ExclusiveStartStreamName cannot be provided together.".into(),
        ));
    }
    let after = match &input.next_token {
        Some(t) => Some(decode_token(svc, t)?.after),
        None => input.exclusive_start_stream_name.clone(),
    };
    let own = |s: &StreamMeta| svc.account_and_name(&s.name).0 == account;
    let streams: Vec<Arc<StreamMeta>> = svc
        .client_streams()
        .into_iter()
        .filter(|s| own(s) && after.as_ref().is_none_or(|a| s.display_name() > a.as_str()))
        .collect();
    let page: Vec<&Arc<StreamMeta>> = streams.iter().take(limit as usize).collect();
    let more = streams.len() > page.len();
    let mut out = json!({
        "StreamNames": page.iter().map(|s| s.display_name()).collect::<Vec<_>>(),
        "HasMoreStreams": more,
        "StreamSummaries": page.iter().map(|s| json!({
            "StreamName": s.display_name(),
            "StreamARN": svc.arn(s),
            "StreamStatus": s.status.as_str(),
            "StreamModeDetails": {"StreamMode": s.mode.as_str()},
            "StreamCreationTimestamp": epoch_seconds(s.created_ms),
        })).collect::<Vec<_>>(),
    });
    if more {
        if let Some(last) = page.last() {
            out["NextToken"] = json!(encode_token(svc, "", last.display_name()));
        }
    }
    Ok(out)
}

fn shard_json(meta: &StreamMeta, s: &ShardMeta) -> Value {
    let mut v = json!({
        "ShardId": s.shard_id(),
        "HashKeyRange": {"StartingHashKey": s.hash_start.to_string(), "EndingHashKey": s.hash_end.to_string()},
        "SequenceNumberRange": {"StartingSequenceNumber": meta.starting_sequence_number(s)},
    });
    if let Some(p) = s.parent {
        v["ParentShardId"] = json!(crate::stream::meta::shard_id(p));
    }
    if let Some(p) = s.adjacent_parent {
        v["AdjacentParentShardId"] = json!(crate::stream::meta::shard_id(p));
    }
    if let Some(end) = s.end_ordinal {
        // The last record's sequence number; an empty closed shard ends where it started.
        let last = match end {
            0 => crate::stream::seqno::SeqNo::shard_start(meta.id, s.index),
            _ => crate::stream::seqno::SeqNo::record(meta.id, s.index, end - 1),
        };
        v["SequenceNumberRange"]["EndingSequenceNumber"] = json!(last.encode());
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamInput {
    #[serde(flatten)]
    stream: StreamRef,
    limit: Option<i64>,
    exclusive_start_shard_id: Option<String>,
}

pub fn describe_stream(svc: &Service, input: DescribeStreamInput) -> ApiResult<Value> {
    let limit = input.limit.unwrap_or(100);
    in_range(limit, 1, 10_000, "limit")?;
    let meta = input.stream.resolve(svc)?;
    let after = match &input.exclusive_start_shard_id {
        Some(id) => Some(shard_id_arg(id, "exclusiveStartShardId")?),
        None => None,
    };
    // Until a reshard's stream is ACTIVE again, AWS describes the shards as they were.
    let layout = meta.previous_layout.as_ref().unwrap_or(&meta.shards);
    let shards: Vec<&ShardMeta> = layout.iter().filter(|s| after.as_ref().is_none_or(|a| s.shard_id() > *a)).collect();
    let page = &shards[..shards.len().min(limit as usize)];
    let mut out = json!({
        "StreamDescription": {
            "StreamName": meta.display_name(),
            "StreamARN": svc.arn(&meta),
            "StreamStatus": meta.status.as_str(),
            "StreamModeDetails": {"StreamMode": meta.mode.as_str()},
            "Shards": page.iter().map(|s| shard_json(&meta, s)).collect::<Vec<_>>(),
            "HasMoreShards": shards.len() > page.len(),
            "RetentionPeriodHours": meta.retention_hours,
            "StreamCreationTimestamp": epoch_seconds(meta.created_ms),
            "EnhancedMonitoring": [{"ShardLevelMetrics": meta.shard_level_metrics}],
        }
    });
    encryption_members(&meta, &mut out["StreamDescription"]);
    Ok(out)
}

/// EncryptionType (and KeyId when encrypted), as DescribeStream(Summary) show them.
fn encryption_members(meta: &StreamMeta, out: &mut Value) {
    match &meta.encryption {
        Some(key) => {
            out["EncryptionType"] = json!("KMS");
            out["KeyId"] = json!(key);
        }
        None => out["EncryptionType"] = json!("NONE"),
    }
}

pub fn describe_stream_summary(svc: &Service, input: StreamRef) -> ApiResult<Value> {
    let meta = input.resolve(svc)?;
    let mut out = json!({
        "StreamDescriptionSummary": {
            "StreamName": meta.display_name(),
            "StreamARN": svc.arn(&meta),
            "StreamStatus": meta.status.as_str(),
            "StreamModeDetails": {"StreamMode": meta.mode.as_str()},
            "RetentionPeriodHours": meta.retention_hours,
            "StreamCreationTimestamp": epoch_seconds(meta.created_ms),
            "StreamId": meta.stream_id(),
            "EnhancedMonitoring": [{"ShardLevelMetrics": meta.shard_level_metrics}],
            "OpenShardCount": meta.open_shard_count(),
            "ConsumerCount": meta.consumers.len(),
            "QueueCount": crate::queues::of_stream(svc, meta.id).len(),
            "MaxRecordSizeInKiB": meta.max_record_size_kib,
            "RecordDistributionStrategy": meta.distribution.as_str(),
        }
    });
    encryption_members(&meta, &mut out["StreamDescriptionSummary"]);
    if let Some(w) = super::settings::warm_throughput_json(&meta) {
        out["StreamDescriptionSummary"]["WarmThroughput"] = w;
    }
    Ok(out)
}

/// A shard id argument. Shard ids sort as strings in index order, so any well-formed id (ours or
/// not) works as an exclusive start, as on AWS.
fn shard_id_arg(id: &str, member: &str) -> ApiResult<String> {
    if id.is_empty() || id.len() > 128 {
        return Err(ApiError::validation(id, member, "Member must have length less than or equal to 128"));
    }
    Ok(id.to_owned())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShardFilter {
    #[serde(rename = "Type")]
    kind: Option<String>,
    shard_id: Option<String>,
    timestamp: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListShardsInput {
    #[serde(flatten)]
    stream: StreamRef,
    next_token: Option<String>,
    exclusive_start_shard_id: Option<String>,
    max_results: Option<i64>,
    stream_creation_timestamp: Option<Value>,
    shard_filter: Option<ShardFilter>,
}

pub fn list_shards(svc: &Service, input: ListShardsInput) -> ApiResult<Value> {
    let max = input.max_results.unwrap_or(1000);
    in_range(max, 1, 10_000, "maxResults")?;
    let (meta, after) = match &input.next_token {
        Some(token) => {
            if input.stream.stream_name.is_some() || input.stream.stream_arn.is_some() {
                return Err(ApiError::InvalidArgument("NextToken and StreamName cannot be provided together.".into()));
            }
            if input.exclusive_start_shard_id.is_some()
                || input.stream_creation_timestamp.is_some()
                || input.shard_filter.is_some()
            {
                return Err(ApiError::InvalidArgument(
                    "NextToken cannot be provided together with ExclusiveStartShardId, StreamCreationTimestamp or ShardFilter.".into(),
                ));
            }
            let t = decode_token(svc, token)?;
            let meta = svc.stream(&t.stream)?;
            (meta, Some(t.after))
        }
        None => {
            if input.stream.stream_name.is_none() && input.stream.stream_arn.is_none() {
                return Err(ApiError::InvalidArgument("Either NextToken or StreamName should be provided.".into()));
            }
            let meta = input.stream.resolve(svc)?;
            if let Some(ts) = &input.stream_creation_timestamp {
                let ms = timestamp_ms(ts, "StreamCreationTimestamp")?;
                if ms / 1000 != meta.created_ms / 1000 {
                    return Err(svc.not_found(&meta.name));
                }
            }
            let after = match &input.exclusive_start_shard_id {
                Some(id) => Some(shard_id_arg(id, "exclusiveStartShardId")?),
                None => None,
            };
            (meta, after)
        }
    };
    let filter = shard_filter(input.shard_filter.as_ref())?;
    let shards: Vec<&ShardMeta> = meta
        .shards
        .iter()
        .filter(|s| after.as_ref().is_none_or(|a| s.shard_id() > *a))
        .filter(|s| filter.keeps(s, &meta))
        .collect();
    let page = &shards[..shards.len().min(max as usize)];
    let mut out = json!({"Shards": page.iter().map(|s| shard_json(&meta, s)).collect::<Vec<_>>()});
    if shards.len() > page.len() {
        if let Some(last) = page.last() {
            out["NextToken"] = json!(encode_token(svc, &meta.name, &last.shard_id()));
        }
    }
    Ok(out)
}

enum Filter {
    All,
    AfterShard(String),
    /// The shards a reader starting at the trim horizon starts with: no retained parent.
    TrimHorizonRoots,
    Open,
    OpenAt(i64),
    From(i64),
}

impl Filter {
    fn keeps(&self, s: &ShardMeta, meta: &StreamMeta) -> bool {
        let open_at = |ts: i64| s.created_ms <= ts && s.closed_ms.is_none_or(|c| c > ts);
        match *self {
            Filter::All => true,
            Filter::AfterShard(ref id) => s.shard_id() > *id,
            Filter::TrimHorizonRoots => s.parent.is_none_or(|p| meta.shard(p).is_none()),
            Filter::Open => s.is_open(),
            Filter::OpenAt(ts) => open_at(ts),
            Filter::From(ts) => open_at(ts) || s.created_ms >= ts,
        }
    }
}

fn shard_filter(f: Option<&ShardFilter>) -> ApiResult<Filter> {
    let Some(f) = f else { return Ok(Filter::All) };
    let kind = required(f.kind.as_deref(), "shardFilter.type")?;
    let ts = || -> ApiResult<i64> {
        let v = f
            .timestamp
            .as_ref()
            .ok_or_else(|| ApiError::InvalidArgument(format!("Timestamp is required for ShardFilter type {kind}.")))?;
        timestamp_ms(v, "ShardFilter.Timestamp")
    };
    Ok(match kind {
        "AFTER_SHARD_ID" => {
            let id = f.shard_id.as_deref().ok_or_else(|| {
                ApiError::InvalidArgument("ShardId is required for ShardFilter type AFTER_SHARD_ID.".into())
            })?;
            Filter::AfterShard(shard_id_arg(id, "shardFilter.shardId")?)
        }
        "AT_TRIM_HORIZON" => Filter::TrimHorizonRoots,
        "FROM_TRIM_HORIZON" => Filter::All,
        "AT_LATEST" => Filter::Open,
        "AT_TIMESTAMP" => Filter::OpenAt(ts()?),
        "FROM_TIMESTAMP" => Filter::From(ts()?),
        other => {
            return Err(ApiError::validation(
                other,
                "shardFilter.type",
                "Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
            ))
        }
    })
}

pub(crate) struct Token {
    pub stream: String,
    pub after: String,
}

/// What ListChannels and ListQueues share: the page after the request's NextToken, of the items
/// their StreamFilter admits (a union over the filters; a StreamCreationTimestamp names the
/// stream's incarnation), `limit` at a time.
pub(crate) struct ListRequest {
    after: Option<String>,
    filters: Vec<(String, Option<i64>)>,
    limit: usize,
}

impl ListRequest {
    pub(crate) fn parse(svc: &Service, req: &Value, limit: usize) -> ApiResult<ListRequest> {
        let after = match req.get("NextToken").and_then(Value::as_str) {
            Some(t) => Some(decode_token(svc, t)?.after),
            None => None,
        };
        let filters = req["StreamFilter"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let arn = s.get("StreamARN").and_then(Value::as_str);
                let name = arn.and_then(|a| svc.stream_of_arn(a)).unwrap_or_default();
                let ts = s.get("StreamCreationTimestamp").and_then(|t| crate::kinesis::timestamp_ms(t, "t").ok());
                (name, ts)
            })
            .collect();
        Ok(ListRequest { after, filters, limit })
    }

    /// Whether an item named `name`, on stream `stream` created at `created_ms`, is listed.
    pub(crate) fn admits(&self, name: &str, stream: &str, created_ms: i64) -> bool {
        self.after.as_deref().is_none_or(|a| name > a)
            && (self.filters.is_empty()
                || self.filters.iter().any(|(n, ts)| n == stream && ts.is_none_or(|t| (t - created_ms).abs() < 1000)))
    }

    /// The answer: the first `limit` of `matching` (in name order) under `member`, and a
    /// NextToken when more remain.
    pub(crate) fn page<T>(
        &self,
        svc: &Service,
        matching: &[T],
        member: &str,
        name: impl Fn(&T) -> &str,
        summary: impl Fn(&T) -> Value,
    ) -> Value {
        let page: Vec<Value> = matching.iter().take(self.limit).map(summary).collect();
        let mut out = json!({ member: page });
        if matching.len() > self.limit {
            out["NextToken"] = json!(encode_token(svc, &format!("~{member}~"), name(&matching[self.limit - 1])));
        }
        out
    }
}

pub(crate) fn encode_token(svc: &Service, stream: &str, after: &str) -> String {
    let raw = json!({"s": stream, "a": after, "t": svc.now_ms()}).to_string();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

pub(crate) fn decode_token(svc: &Service, token: &str) -> ApiResult<Token> {
    let invalid =
        || ApiError::InvalidArgument(format!("Invalid NextToken: {}", token.chars().take(64).collect::<String>()));
    let raw = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| invalid())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| invalid())?;
    let (Some(s), Some(a), Some(t)) = (v["s"].as_str(), v["a"].as_str(), v["t"].as_i64()) else {
        return Err(invalid());
    };
    if svc.now_ms() - t > NEXT_TOKEN_TTL_MS {
        return Err(ApiError::ExpiredNextToken(format!(
            "The NextToken {} has expired.",
            token.chars().take(64).collect::<String>()
        )));
    }
    Ok(Token { stream: s.to_owned(), after: a.to_owned() })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetentionInput {
    #[serde(flatten)]
    stream: StreamRef,
    retention_period_hours: Option<i64>,
}

pub async fn change_retention(svc: &Arc<Service>, input: RetentionInput, increase: bool) -> ApiResult<Value> {
    let hours = required(input.retention_period_hours, "retentionPeriodHours")?;
    in_range(hours, 1, i64::from(RETENTION_HOURS_MAX) * 10, "retentionPeriodHours")?;
    let _guard = svc.control.lock().await;
    let meta = input.stream.resolve(svc)?;
    if meta.status != StreamStatus::Active {
        return Err(ApiError::ResourceInUse(format!(
            "Stream {} under account {} is not ACTIVE.",
            meta.name, svc.cfg.account_id
        )));
    }
    let hours = hours as u32;
    let current = meta.retention_hours;
    if hours < RETENTION_HOURS_MIN {
        return Err(ApiError::InvalidArgument(format!(
            "Minimum allowed retention period is {RETENTION_HOURS_MIN} hours. Requested retention period ({hours} hours) is too short."
        )));
    }
    if hours > RETENTION_HOURS_MAX {
        return Err(ApiError::InvalidArgument(format!(
            "Maximum allowed retention period is {RETENTION_HOURS_MAX} hours. Requested retention period ({hours} hours) is too long."
        )));
    }
    if increase && hours < current {
        return Err(ApiError::InvalidArgument(format!(
            "Requested retention period ({hours} hours) for stream {} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.",
            meta.name
        )));
    }
    if !increase && hours > current {
        return Err(ApiError::InvalidArgument(format!(
            "Requested retention period ({hours} hours) for stream {} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.",
            meta.name
        )));
    }
    let mut m = (*meta).clone();
    m.retention_hours = hours;
    let meta = svc.save(m).await?;
    for s in &meta.shards {
        svc.runtime.set_retention(ShardKey { stream_id: meta.id, shard_index: s.index }, hours).await?;
    }
    Ok(json!({}))
}

/// Tag characters as AWS checks them (lengths and counts are the model's): Unicode letters,
/// digits, the space and `_ . / = + - @` are allowed, `%` is refused with its own message, which
/// names the stream and whether tags were being added or removed.
fn check_tag_chars<'a>(
    svc: &Service,
    texts: impl Iterator<Item = &'a String> + Clone,
    stream: &str,
    verb: &str,
) -> ApiResult<()> {
    let allowed = |c: char| c.is_alphanumeric() || c == ' ' || "_./=+-@%".contains(c);
    if texts.clone().any(|t| !t.chars().all(allowed)) {
        return Err(ApiError::InvalidArgument(
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @."
                .into(),
        ));
    }
    if texts.clone().any(|t| t.contains('%')) {
        return Err(ApiError::InvalidArgument(format!(
            "Failed to {verb} stream {stream} under account {} because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'.",
            svc.cfg.account_id
        )));
    }
    Ok(())
}

async fn update_tags(
    svc: &Arc<Service>,
    meta: Arc<StreamMeta>,
    f: impl FnOnce(&mut BTreeMap<String, String>),
) -> ApiResult<()> {
    let mut m = (*meta).clone();
    f(&mut m.tags);
    if m.tags.len() > TAGS_PER_STREAM_MAX {
        return Err(ApiError::InvalidArgument(format!(
            "Failed to add tags to stream {} under account {} because a given stream cannot have more than {TAGS_PER_STREAM_MAX} tags associated with it.",
            meta.name, svc.cfg.account_id
        )));
    }
    svc.save(m).await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddTagsInput {
    #[serde(flatten)]
    stream: StreamRef,
    tags: Option<HashMap<String, String>>,
}

pub async fn add_tags_to_stream(svc: &Arc<Service>, input: AddTagsInput) -> ApiResult<Value> {
    let tags = required(input.tags, "tags")?;
    let _guard = svc.control.lock().await;
    let meta = input.stream.resolve(svc)?;
    check_tag_chars(svc, tags.keys().chain(tags.values()), &meta.name, "add tags to")?;
    update_tags(svc, meta, |t| t.extend(tags)).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemoveTagsInput {
    #[serde(flatten)]
    stream: StreamRef,
    tag_keys: Option<Vec<String>>,
}

pub async fn remove_tags_from_stream(svc: &Arc<Service>, input: RemoveTagsInput) -> ApiResult<Value> {
    let keys = required(input.tag_keys, "tagKeys")?;
    let _guard = svc.control.lock().await;
    let meta = input.stream.resolve(svc)?;
    check_tag_chars(svc, keys.iter(), &meta.name, "remove tags from")?;
    update_tags(svc, meta, |t| keys.iter().for_each(|k| drop(t.remove(k)))).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsInput {
    #[serde(flatten)]
    stream: StreamRef,
    exclusive_start_tag_key: Option<String>,
    limit: Option<i64>,
}

fn tag_list<'a>(tags: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<Value> {
    tags.map(|(k, v)| json!({"Key": k, "Value": v})).collect()
}

pub fn list_tags_for_stream(svc: &Service, input: ListTagsInput) -> ApiResult<Value> {
    let limit = input.limit.unwrap_or(50);
    in_range(limit, 1, 50, "limit")?;
    let meta = input.stream.resolve(svc)?;
    let after = input.exclusive_start_tag_key.as_deref();
    let tags: Vec<(&String, &String)> =
        meta.tags.iter().filter(|(k, _)| after.is_none_or(|a| k.as_str() > a)).collect();
    let page = tags.iter().take(limit as usize).map(|(k, v)| (*k, *v));
    Ok(json!({"Tags": tag_list(page), "HasMoreTags": tags.len() > limit as usize}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceTagsInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    tags: Option<HashMap<String, String>>,
    tag_keys: Option<Vec<String>>,
}

fn resource_stream(svc: &Service, arn: Option<&str>) -> ApiResult<Arc<StreamMeta>> {
    let arn = required(arn, "resourceARN")?;
    svc.resolve(None, Some(arn))
}

pub async fn tag_resource(svc: &Arc<Service>, input: ResourceTagsInput) -> ApiResult<Value> {
    let tags = required(input.tags, "tags")?;
    let _guard = svc.control.lock().await;
    let meta = resource_stream(svc, input.resource_arn.as_deref())?;
    check_tag_chars(svc, tags.keys().chain(tags.values()), &meta.name, "add tags to")?;
    update_tags(svc, meta, |t| t.extend(tags)).await?;
    Ok(json!({}))
}

pub async fn untag_resource(svc: &Arc<Service>, input: ResourceTagsInput) -> ApiResult<Value> {
    let keys = required(input.tag_keys, "tagKeys")?;
    let _guard = svc.control.lock().await;
    let meta = resource_stream(svc, input.resource_arn.as_deref())?;
    check_tag_chars(svc, keys.iter(), &meta.name, "remove tags from")?;
    update_tags(svc, meta, |t| keys.iter().for_each(|k| drop(t.remove(k)))).await?;
    Ok(json!({}))
}

pub fn list_tags_for_resource(svc: &Service, input: ResourceTagsInput) -> ApiResult<Value> {
    let meta = resource_stream(svc, input.resource_arn.as_deref())?;
    Ok(json!({"Tags": tag_list(meta.tags.iter())}))
}

pub fn describe_limits(svc: &Service) -> ApiResult<Value> {
    let streams = svc.client_streams();
    Ok(json!({
        "ShardLimit": svc.cfg.streams.shard_limit,
        "OpenShardCount": streams.iter().map(|s| s.open_shard_count()).sum::<u32>(),
        "OnDemandStreamCount": streams.iter().filter(|s| s.mode == StreamMode::OnDemand).count(),
        "OnDemandStreamCountLimit": svc.cfg.streams.on_demand_stream_limit,
    }))
}
