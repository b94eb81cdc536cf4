//! Stream and account settings: enhanced monitoring, the maximum record size, warm throughput,
//! the record distribution strategy, account settings and resource policies.
//!
//! Settings of a stream live in its metadata (one synced rocksdb write each); account settings
//! and resource policies are keys of the metadata store (`account/settings`, `policy/<ARN>`).
//! Resource policies are stored and checked as policy documents; they are not enforced yet.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::kinesis::reshard::{apply, uniform_plan};
use crate::kinesis::{epoch_seconds, required};
use crate::protocol::error::{ApiError, ApiResult};
use crate::service::Service;
use crate::stream::meta::{RecordDistribution, StreamMeta, StreamMode, StreamStatus, SHARD_LEVEL_METRICS};

/// Warm throughput one open on-demand shard carries, in MiB/s.
const MIBPS_PER_SHARD: u32 = 1;
/// The most warm throughput a stream may ask for (AWS: 10 GiB/s).
const WARM_THROUGHPUT_MAX_MIBPS: u32 = 10_240;
/// How long the minimum throughput billing commitment holds once enabled (AWS: 24 hours).
const COMMITMENT_MIN_MS: i64 = 24 * 3600 * 1000;
/// A resource policy document's largest size (AWS: 20 KiB).
const POLICY_MAX_BYTES: usize = 20 << 10;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_level_metrics: Option<Vec<String>>,
    #[serde(rename = "MaxRecordSizeInKiB")]
    max_record_size_kib: Option<i64>,
    #[serde(rename = "WarmThroughputMiBps")]
    warm_throughput_mibps: Option<i64>,
    record_distribution_strategy: Option<String>,
    encryption_type: Option<String>,
    key_id: Option<String>,
}

impl StreamInput {
    fn active(&self, svc: &Service) -> ApiResult<Arc<StreamMeta>> {
        let meta = svc.resolve(self.stream_name.as_deref(), self.stream_arn.as_deref())?;
        if meta.status != StreamStatus::Active {
            return Err(svc.not_active(&meta));
        }
        Ok(meta)
    }
}

/// StartStreamEncryption (`key` Some) and StopStreamEncryption: the stream is UPDATING for a
/// moment, and from the next append on each open shard seals (or stops sealing) its new batches;
/// what is already written stays as it is, readable either way.
pub async fn stream_encryption(svc: &Arc<Service>, input: StreamInput, start: bool) -> ApiResult<Value> {
    let kind = required(input.encryption_type.clone(), "encryptionType")?;
    let key_id = required(input.key_id.clone(), "keyId")?;
    if kind != "KMS" {
        return Err(ApiError::InvalidArgument(format!(
            "EncryptionType {kind} is not valid here; the only valid value is KMS."
        )));
    }
    if !crate::keys::is_valid_key_id(&key_id) {
        return Err(ApiError::InvalidArgument(format!(
            "KeyId {key_id} is not a KMS key id, key ARN, alias name or alias ARN."
        )));
    }
    let _guard = svc.control.lock().await;
    let meta = input.active(svc)?;
    if start {
        record_master_key(svc).await?;
    }
    let mut m = (*meta).clone();
    m.encryption = start.then(|| key_id.clone());
    m.status = StreamStatus::Updating;
    // The setting is durable first: a restart applies it to the shards as they open.
    let saved = svc.save(m).await?;
    for s in saved.shards.iter().filter(|s| s.is_open()) {
        let key = crate::runtime::ShardKey { stream_id: saved.id, shard_index: s.index };
        svc.runtime.set_encryption(key, saved.encryption.clone()).await?;
    }
    crate::kinesis::reshard::schedule_active(svc, saved.id, &saved.name);
    Ok(json!({}))
}

/// Records the master key's fingerprint when a stream is first encrypted (see `Service::start`).
async fn record_master_key(svc: &Service) -> ApiResult<()> {
    let ring = crate::keys::global().ok_or_else(|| ApiError::InternalFailure("no key ring is installed".into()))?;
    let known =
        svc.store.get_meta(crate::keys::FINGERPRINT_META_KEY).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
    if known.is_none() {
        svc.put_meta(crate::keys::FINGERPRINT_META_KEY, ring.fingerprint().to_vec()).await?;
    }
    Ok(())
}

/// `ALL` stands for every metric; the result is in AWS's order, without repeats.
fn metric_set(names: &[String]) -> Vec<String> {
    let all = names.iter().any(|n| n == "ALL");
    SHARD_LEVEL_METRICS.iter().filter(|m| all || names.iter().any(|n| n == *m)).map(|m| m.to_string()).collect()
}

pub async fn enhanced_monitoring(svc: &Arc<Service>, input: StreamInput, enable: bool) -> ApiResult<Value> {
    let asked = metric_set(&required(input.shard_level_metrics.clone(), "shardLevelMetrics")?);
    let _guard = svc.control.lock().await;
    let meta = input.active(svc)?;
    let current = meta.shard_level_metrics.clone();
    let desired: Vec<String> = if enable {
        SHARD_LEVEL_METRICS.iter().map(|m| m.to_string()).filter(|m| current.contains(m) || asked.contains(m)).collect()
    } else {
        current.iter().filter(|m| !asked.contains(m)).cloned().collect()
    };
    let mut m = (*meta).clone();
    m.shard_level_metrics = desired.clone();
    let saved = svc.save(m).await?;
    Ok(json!({
        "StreamName": saved.display_name(),
        "StreamARN": svc.arn(&saved),
        "CurrentShardLevelMetrics": current,
        "DesiredShardLevelMetrics": desired,
    }))
}

pub async fn update_max_record_size(svc: &Arc<Service>, input: StreamInput) -> ApiResult<Value> {
    let kib = required(input.max_record_size_kib, "maxRecordSizeInKiB")?;
    let _guard = svc.control.lock().await;
    let meta = input.active(svc)?;
    let mut m = (*meta).clone();
    m.max_record_size_kib = kib as u32;
    svc.save(m).await?;
    Ok(json!({}))
}

pub async fn update_record_distribution(svc: &Arc<Service>, input: StreamInput) -> ApiResult<Value> {
    let strategy = match required(input.record_distribution_strategy.as_deref(), "recordDistributionStrategy")? {
        "AUTO" => RecordDistribution::Auto,
        _ => RecordDistribution::UserPartitionKey,
    };
    let _guard = svc.control.lock().await;
    let meta = input.active(svc)?;
    if strategy == RecordDistribution::Auto && meta.mode != StreamMode::OnDemand {
        return Err(ApiError::InvalidArgument(format!(
            "RecordDistributionStrategy AUTO is only supported for streams in ON_DEMAND mode; stream {} under account {} is PROVISIONED.",
            meta.name, svc.cfg.account_id
        )));
    }
    let mut m = (*meta).clone();
    m.distribution = strategy;
    svc.save(m).await?;
    Ok(json!({}))
}

/// The shards an on-demand stream keeps open for `mibps` of warm throughput.
pub fn warm_shards(mibps: u32) -> u32 {
    mibps.div_ceil(MIBPS_PER_SHARD).max(1)
}

/// The WarmThroughput member of DescribeStreamSummary and UpdateStreamWarmThroughput.
pub fn warm_throughput_json(meta: &StreamMeta) -> Option<Value> {
    let target = meta.warm_throughput_mibps?;
    Some(json!({"TargetMiBps": target, "CurrentMiBps": meta.open_shard_count() * MIBPS_PER_SHARD}))
}

pub async fn update_warm_throughput(svc: &Arc<Service>, input: StreamInput) -> ApiResult<Value> {
    let mibps = required(input.warm_throughput_mibps, "warmThroughputMiBps")?;
    if mibps > i64::from(WARM_THROUGHPUT_MAX_MIBPS) {
        return Err(ApiError::InvalidArgument(format!(
            "WarmThroughputMiBps {mibps} exceeds the maximum of {WARM_THROUGHPUT_MAX_MIBPS} MiB/s."
        )));
    }
    check_warm_throughput_allowed(svc)?;
    let _guard = svc.control.lock().await;
    let meta = input.active(svc)?;
    if meta.mode != StreamMode::OnDemand {
        return Err(ApiError::InvalidArgument(format!(
            "Stream {} under account {} is PROVISIONED; warm throughput is only supported for streams in ON_DEMAND mode.",
            meta.name, svc.cfg.account_id
        )));
    }
    let mibps = mibps as u32;
    let mut m = (*meta).clone();
    m.warm_throughput_mibps = Some(mibps);
    let mut saved = svc.save(m).await?;
    let needed = warm_shards(mibps);
    if saved.open_shard_count() < needed {
        // Pre-split now: the stream is UPDATING until the new shards are settled.
        let steps = uniform_plan(&saved, needed);
        saved = apply(svc, &saved, steps).await?;
    }
    Ok(json!({
        "StreamName": saved.display_name(),
        "StreamARN": svc.arn(&saved),
        "WarmThroughput": warm_throughput_json(&saved),
    }))
}

/// Warm throughput needs the account's minimum throughput billing commitment, as on AWS.
pub fn check_warm_throughput_allowed(svc: &Service) -> ApiResult<()> {
    if account_settings(svc)?.status == CommitmentStatus::Disabled {
        return Err(ApiError::InvalidArgument(
            "Warm throughput requires MinimumThroughputBillingCommitment to be enabled for the account (UpdateAccountSettings).".into(),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum CommitmentStatus {
    #[serde(rename = "ENABLED")]
    Enabled,
    #[serde(rename = "DISABLED")]
    Disabled,
    #[serde(rename = "ENABLED_UNTIL_EARLIEST_ALLOWED_END")]
    EnabledUntilEarliestAllowedEnd,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccountSettings {
    status: CommitmentStatus,
    started_ms: Option<i64>,
    ended_ms: Option<i64>,
    earliest_end_ms: Option<i64>,
}

const ACCOUNT_SETTINGS_KEY: &str = "account/settings";

/// The account's settings; an ENABLED_UNTIL_EARLIEST_ALLOWED_END commitment ends on its own.
fn account_settings(svc: &Service) -> ApiResult<AccountSettings> {
    let stored = svc.store.get_meta(ACCOUNT_SETTINGS_KEY).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
    let mut s = match stored {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| ApiError::InternalFailure(e.to_string()))?,
        None => AccountSettings {
            status: CommitmentStatus::Disabled,
            started_ms: None,
            ended_ms: None,
            earliest_end_ms: None,
        },
    };
    if s.status == CommitmentStatus::EnabledUntilEarliestAllowedEnd
        && s.earliest_end_ms.is_some_and(|e| e <= svc.now_ms())
    {
        s.status = CommitmentStatus::Disabled;
        s.ended_ms = s.earliest_end_ms;
    }
    Ok(s)
}

fn account_settings_json(s: &AccountSettings) -> Value {
    let mut c = json!({"Status": s.status});
    for (member, ms) in
        [("StartedAt", s.started_ms), ("EndedAt", s.ended_ms), ("EarliestAllowedEndAt", s.earliest_end_ms)]
    {
        if let Some(ms) = ms {
            c[member] = epoch_seconds(ms);
        }
    }
    json!({"MinimumThroughputBillingCommitment": c})
}

pub fn describe_account_settings(svc: &Service) -> ApiResult<Value> {
    Ok(account_settings_json(&account_settings(svc)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CommitmentInput {
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountSettingsInput {
    minimum_throughput_billing_commitment: Option<CommitmentInput>,
}

pub async fn update_account_settings(svc: &Arc<Service>, input: AccountSettingsInput) -> ApiResult<Value> {
    let c = required(input.minimum_throughput_billing_commitment, "minimumThroughputBillingCommitment")?;
    let enable = required(c.status, "minimumThroughputBillingCommitment.status")? == "ENABLED";
    let _guard = svc.control.lock().await;
    let now = svc.now_ms();
    let mut s = account_settings(svc)?;
    match (enable, s.status) {
        (true, CommitmentStatus::Disabled) => {
            s = AccountSettings {
                status: CommitmentStatus::Enabled,
                started_ms: Some(now),
                ended_ms: None,
                earliest_end_ms: Some(now + COMMITMENT_MIN_MS),
            };
        }
        (true, _) => s.status = CommitmentStatus::Enabled,
        (false, CommitmentStatus::Disabled) => {}
        (false, _) => {
            // A commitment runs at least its minimum window, then ends by itself.
            if s.earliest_end_ms.is_some_and(|e| e > now) {
                s.status = CommitmentStatus::EnabledUntilEarliestAllowedEnd;
            } else {
                s.status = CommitmentStatus::Disabled;
                s.ended_ms = Some(now);
            }
        }
    }
    let bytes = serde_json::to_vec(&s).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
    svc.put_meta(ACCOUNT_SETTINGS_KEY, bytes).await?;
    Ok(account_settings_json(&s))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    policy: Option<String>,
}

pub(crate) fn policy_key(arn: &str) -> String {
    format!("policy/{arn}")
}

/// The stream or consumer an ARN names, which must exist.
fn policy_resource(svc: &Service, arn: &str) -> ApiResult<String> {
    if let Some((stream, consumer, _)) = svc.consumer_of_arn(arn) {
        let meta = svc.stream(&stream)?;
        // The registered consumer's own ARN, whatever creation time the request spells.
        return match meta.consumers.iter().find(|c| c.name == consumer) {
            Some(c) => Ok(c.arn(&svc.arn(&meta))),
            None => {
                let (account, stream) = svc.account_and_name(&stream);
                Err(ApiError::ResourceNotFound(format!(
                    "Consumer {consumer} under stream {stream} under account {account} not found."
                )))
            }
        };
    }
    let meta = svc.resolve(None, Some(arn))?;
    Ok(svc.arn(&meta))
}

/// Checks a resource policy document: a JSON object whose statements each have an Effect of
/// Allow or Deny, an Action or NotAction, and a Principal (resource policies name who).
pub fn check_policy(text: &str) -> Result<(), String> {
    if text.len() > POLICY_MAX_BYTES {
        return Err(format!("the policy is {} bytes; at most {POLICY_MAX_BYTES} are allowed", text.len()));
    }
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("the policy is not JSON ({e})"))?;
    let doc = doc.as_object().ok_or("the policy is not a JSON object")?;
    if let Some(v) = doc.get("Version") {
        if !matches!(v.as_str(), Some("2012-10-17") | Some("2008-10-17")) {
            return Err("Version must be \"2012-10-17\" or \"2008-10-17\"".into());
        }
    }
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return Err("Statement is missing or empty".into()),
    };
    for (i, st) in statements.iter().enumerate() {
        let st = st.as_object().ok_or(format!("statement {} is not an object", i + 1))?;
        if !matches!(st.get("Effect").and_then(Value::as_str), Some("Allow") | Some("Deny")) {
            return Err(format!("statement {} needs an Effect of Allow or Deny", i + 1));
        }
        if !st.contains_key("Action") && !st.contains_key("NotAction") {
            return Err(format!("statement {} needs an Action or NotAction", i + 1));
        }
        if !st.contains_key("Principal") && !st.contains_key("NotPrincipal") {
            return Err(format!("statement {} needs a Principal", i + 1));
        }
    }
    Ok(())
}

pub async fn put_resource_policy(svc: &Arc<Service>, input: PolicyInput) -> ApiResult<Value> {
    let arn = required(input.resource_arn, "resourceARN")?;
    let policy = required(input.policy, "policy")?;
    let _guard = svc.control.lock().await;
    let key = policy_key(&policy_resource(svc, &arn)?);
    check_policy(&policy).map_err(|why| ApiError::InvalidArgument(format!("Invalid resource policy: {why}.")))?;
    svc.put_meta(&key, policy.into_bytes()).await?;
    Ok(json!({}))
}

pub async fn get_resource_policy(svc: &Arc<Service>, input: PolicyInput) -> ApiResult<Value> {
    let arn = required(input.resource_arn, "resourceARN")?;
    let key = policy_key(&policy_resource(svc, &arn)?);
    let stored = svc.store.get_meta(&key).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
    let policy = stored.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_else(|| "{}".into());
    Ok(json!({"Policy": policy}))
}

pub async fn delete_resource_policy(svc: &Arc<Service>, input: PolicyInput) -> ApiResult<Value> {
    let arn = required(input.resource_arn, "resourceARN")?;
    let _guard = svc.control.lock().await;
    let key = policy_key(&policy_resource(svc, &arn)?);
    svc.delete_meta(&key).await?;
    Ok(json!({}))
}

/// Removes the policies of a stream and of its consumers (the stream is being deleted).
pub async fn forget_policies(svc: &Service, meta: &StreamMeta) {
    let arn = svc.arn(meta);
    let mut keys = vec![policy_key(&arn)];
    keys.extend(meta.consumers.iter().map(|c| policy_key(&c.arn(&arn))));
    for key in keys {
        if let Err(e) = svc.delete_meta(&key).await {
            tracing::warn!(stream = %meta.name, error = %e, "could not remove a resource policy of a deleted stream");
        }
    }
}
