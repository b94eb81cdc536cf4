//! The Kinesis API: AWS JSON 1.1 and CBOR 1.1 over HTTP/1.1 and h2c.
//!
//! A request is `POST /` with `X-Amz-Target: Kinesis_20131202.<Operation>`. The body is decoded by
//! [`codec`] (never trusted: every member is checked before anything changes), the operation runs,
//! and the answer (or an AWS-shaped error from [`crate::error`]) is encoded in the request's
//! protocol. Signatures (SigV4) are accepted without verification: the daemon is meant for a
//! trusted network, as its listen address defaults to loopback.

pub mod codec;
pub mod consumers;
pub mod eventstream;
pub mod records;
pub mod reshard;
pub mod server;
pub mod streams;

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::service::Service;

pub const KINESIS_TARGET_PREFIX: &str = "Kinesis_20131202.";

/// Runs one operation.
pub async fn dispatch(svc: &Arc<Service>, op: &str, req: Value) -> ApiResult<Value> {
    match op {
        "CreateStream" => streams::create_stream(svc, parse(req)?).await,
        "DeleteStream" => streams::delete_stream(svc, parse(req)?).await,
        "ListStreams" => streams::list_streams(svc, parse(req)?),
        "DescribeStream" => streams::describe_stream(svc, parse(req)?),
        "DescribeStreamSummary" => streams::describe_stream_summary(svc, parse(req)?),
        "ListShards" => streams::list_shards(svc, parse(req)?),
        "IncreaseStreamRetentionPeriod" => streams::change_retention(svc, parse(req)?, true).await,
        "DecreaseStreamRetentionPeriod" => streams::change_retention(svc, parse(req)?, false).await,
        "AddTagsToStream" => streams::add_tags_to_stream(svc, parse(req)?).await,
        "RemoveTagsFromStream" => streams::remove_tags_from_stream(svc, parse(req)?).await,
        "ListTagsForStream" => streams::list_tags_for_stream(svc, parse(req)?),
        "TagResource" => streams::tag_resource(svc, parse(req)?).await,
        "UntagResource" => streams::untag_resource(svc, parse(req)?).await,
        "ListTagsForResource" => streams::list_tags_for_resource(svc, parse(req)?),
        "DescribeLimits" => streams::describe_limits(svc),
        "RegisterStreamConsumer" => consumers::register_stream_consumer(svc, parse(req)?).await,
        "DeregisterStreamConsumer" => consumers::deregister_stream_consumer(svc, parse(req)?).await,
        "DescribeStreamConsumer" => consumers::describe_stream_consumer(svc, parse(req)?),
        "ListStreamConsumers" => consumers::list_stream_consumers(svc, parse(req)?),
        "SplitShard" => reshard::split_shard(svc, parse(req)?).await,
        "MergeShards" => reshard::merge_shards(svc, parse(req)?).await,
        "UpdateShardCount" => reshard::update_shard_count(svc, parse(req)?).await,
        "UpdateStreamMode" => reshard::update_stream_mode(svc, parse(req)?).await,
        "PutRecord" => records::put_record(svc, parse(req)?).await,
        "PutRecords" => records::put_records(svc, parse(req)?).await,
        "GetShardIterator" => records::get_shard_iterator(svc, parse(req)?).await,
        "GetRecords" => records::get_records(svc, parse(req)?).await,
        _ => Err(ApiError::UnknownOperation(format!("Operation {op} is not supported by this daemon."))),
    }
}

/// The data-plane puts, decoded from JSON bytes straight into their typed shapes.
pub async fn dispatch_json_bytes(svc: &Arc<Service>, op: &str, body: &[u8]) -> ApiResult<Value> {
    let ser =
        |e: serde_json::Error| ApiError::Serialization(format!("Request does not match the operation's shape: {e}"));
    match op {
        "PutRecords" => records::put_records(svc, serde_json::from_slice(body).map_err(ser)?).await,
        "PutRecord" => records::put_record(svc, serde_json::from_slice(body).map_err(ser)?).await,
        _ => Err(ApiError::UnknownOperation(format!("Operation {op} is not supported by this daemon."))),
    }
}

/// Runs a delayed status change (CREATING → ACTIVE, DELETING → gone): in the request when the
/// delay is zero, so the caller sees the final state at once; otherwise in the background after
/// `delay`. The caller must not hold the control lock (the job takes it).
pub(crate) async fn after(delay: std::time::Duration, job: impl std::future::Future<Output = ()> + Send + 'static) {
    if delay.is_zero() {
        job.await;
    } else {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            job.await;
        });
    }
}

/// Decodes a request shape; a member of the wrong type is a SerializationException.
pub(crate) fn parse<T: DeserializeOwned>(v: Value) -> ApiResult<T> {
    serde_json::from_value(v)
        .map_err(|e| ApiError::Serialization(format!("Request does not match the operation's shape: {e}")))
}

/// A required member, or AWS's "must not be null" ValidationException.
pub(crate) fn required<T>(v: Option<T>, member: &str) -> ApiResult<T> {
    v.ok_or_else(|| ApiError::validation("null", member, "Member must not be null").with_null())
}

/// An integer member within [min, max].
pub(crate) fn in_range(v: i64, min: i64, max: i64, member: &str) -> ApiResult<()> {
    if v < min {
        return Err(ApiError::validation(v, member, &format!("Member must have value greater than or equal to {min}")));
    }
    if v > max {
        return Err(ApiError::validation(v, member, &format!("Member must have value less than or equal to {max}")));
    }
    Ok(())
}

impl ApiError {
    /// AWS prints a missing value as `null`, unquoted.
    fn with_null(self) -> ApiError {
        match self {
            ApiError::Validation(m) => ApiError::Validation(m.replacen("'null'", "null", 1)),
            other => other,
        }
    }
}

/// Epoch seconds (with milliseconds) as AWS JSON timestamps are sent.
pub(crate) fn epoch_seconds(ms: i64) -> Value {
    serde_json::Number::from_f64(ms as f64 / 1000.0).map(Value::Number).unwrap_or(Value::Null)
}

/// A timestamp member: epoch seconds as a number, or an ISO-8601 string as some clients send.
pub(crate) fn timestamp_ms(v: &Value, member: &str) -> ApiResult<i64> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| (f * 1000.0).round() as i64)
            .ok_or_else(|| ApiError::Serialization(format!("{member} is not a valid timestamp"))),
        Value::String(s) => crate::time::parse_rfc3339_ms(s)
            .or_else(|| s.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| (f * 1000.0).round() as i64))
            .ok_or_else(|| ApiError::Serialization(format!("{member} is not a valid timestamp: {s}"))),
        _ => Err(ApiError::Serialization(format!("{member} is not a valid timestamp"))),
    }
}
