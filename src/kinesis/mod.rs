//! Amazon Kinesis Data Streams: the `Kinesis_20131202` service.
//!
//! Owns the Kinesis operations table ([`Kinesis::dispatch`]), their input and output shapes
//! ([`ops`]), their validation against AWS's model, and the Kinesis domain: stream lifecycle,
//! record routing ([`routing`]), resharding ([`reshard`]), on-demand scaling ([`ondemand`]) and
//! enhanced fan-out ([`fanout`], [`ops::consumers`], the push protocol in [`crate::push`]).
//! The channel operations are served by [`crate::firehose::channels`] and the queue operations
//! by [`crate::queues`].
//! Streams are stored by the engine ([`crate::service`], [`crate::runtime`], [`crate::log`]);
//! the HTTP front end ([`crate::http`]) reads bodies and encodes answers and knows nothing of
//! Kinesis. Signatures are checked by the front end as `[auth] mode` says.
//!
//! Limits: AWS's documented quotas (`docs/ARCHITECTURE.md`, section 17), enforced per shard when
//! `[limits] enforce = true`.

pub mod access;
pub mod accounts;
pub mod expiry;
pub mod fanout;
pub mod ondemand;
pub mod ops;
pub mod positions;
pub mod put_wire;
pub mod reshard;
pub mod routing;
pub mod shards;

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::http::{AwsService, BoxFuture, Reply};
use crate::protocol::codec::{decode_request, MemberKinds, Protocol};
use crate::protocol::error::{ApiError, ApiResult};
use crate::protocol::validate::Model;
use crate::service::Service;

/// The `X-Amz-Target` prefix of the Kinesis API.
pub const TARGET_PREFIX: &str = "Kinesis_20131202";

/// Members whose wire form is not their JSON form: blobs (base64 in JSON, byte strings in CBOR)
/// and timestamps (epoch seconds in JSON, CBOR tag 1 with epoch milliseconds).
pub static MEMBER_KINDS: MemberKinds = MemberKinds {
    blobs: &["Data"],
    timestamps: &[
        "ApproximateArrivalTimestamp",
        "StreamCreationTimestamp",
        "ConsumerCreationTimestamp",
        "ChannelCreationTimestamp",
        "QueueCreationTimestamp",
        "FirstReceiveTimestamp",
        "Timestamp",
        "LastUpdateTimestamp",
    ],
};

/// The Kinesis service as the front end sees it.
pub struct Kinesis {
    pub svc: Arc<Service>,
    /// The delivery engine, which serves the channel operations.
    pub delivery: Arc<crate::firehose::State>,
    /// The queues, which serve the queue operations.
    pub queues: Arc<crate::queues::Queues>,
}

impl AwsService for Kinesis {
    fn signing_name(&self) -> &'static str {
        "kinesis"
    }

    fn target_prefix(&self) -> &'static str {
        TARGET_PREFIX
    }

    fn protocols(&self) -> &'static [Protocol] {
        &[Protocol::Json, Protocol::Cbor]
    }

    fn has_operation(&self, op: &str) -> bool {
        serves(op)
    }

    fn member_kinds(&self) -> &'static MemberKinds {
        &MEMBER_KINDS
    }

    fn call(&self, op: String, proto: Protocol, body: Bytes, auth: crate::http::Auth) -> BoxFuture<Reply> {
        let svc = self.svc.clone();
        let delivery = self.delivery.clone();
        let queues = self.queues.clone();
        Box::pin(async move {
            if !serves(&op) {
                return Reply::Whole(Err(ApiError::UnknownOperation(String::new())));
            }
            let (auth, caller) = crate::http::iam::split(auth);
            let account = accounts::account_of(&svc, caller.as_deref()).to_owned();
            // Hot path: puts of the simple form producers send are read from the body's bytes and
            // answered with bytes (`put_wire`). A request it refuses is decoded again and checked
            // against the model, so that the answer is AWS's.
            if auth.is_ok() {
                if let Some(req) = put_wire::scan(proto, &op, &body) {
                    return match put_wire::serve(&svc, req, caller.as_deref(), proto).await {
                        Ok(encoded) => Reply::Encoded(encoded),
                        Err(e) => {
                            let exact =
                                decode_request(proto, &body, &MEMBER_KINDS).and_then(|mut v| MODEL.check(&op, &mut v));
                            Reply::Whole(Err(accounts::present_error(&svc, exact.err().unwrap_or(e))))
                        }
                    };
                }
            }
            let mut value = match decode_request(proto, &body, &MEMBER_KINDS) {
                Ok(v) => v,
                Err(e) => return Reply::Whole(Err(e)),
            };
            drop(body);
            if let Err(e) = auth
                .and_then(|()| MODEL.check(&op, &mut value))
                .and_then(|()| match &caller {
                    Some(c) => access::authorize(&svc, c, &op, &access::Named::of(&op, &value)),
                    None => Ok(()),
                })
                .and_then(|()| {
                    accounts::scope_request(&svc, &account, &op, &mut value);
                    check_stream_id(&svc, &value)
                })
            {
                return Reply::Whole(Err(accounts::present_error(&svc, e)));
            }
            if op == "SubscribeToShard" {
                return match parse(value) {
                    Ok(input) => match ops::consumers::subscribe_to_shard(&svc, input, proto).await {
                        Ok(events) => Reply::Events(http_body_util::BodyExt::boxed(events)),
                        Err(e) => Reply::Whole(Err(accounts::present_error(&svc, e))),
                    },
                    Err(e) => Reply::Whole(Err(e)),
                };
            }
            if op == "GetRecords" && proto.is_json() {
                // Hot path of reads: the answer is written directly, data base64-encoded into it.
                let result = match parse(value) {
                    Ok(input) => ops::records::get_records_outcome(&svc, input).await,
                    Err(e) => Err(e),
                };
                return match result {
                    Ok(outcome) => Reply::Encoded(outcome.to_json()),
                    Err(e) => Reply::Whole(Err(accounts::present_error(&svc, e))),
                };
            }
            if crate::queues::OPERATIONS.contains(&op.as_str()) {
                let result = crate::queues::dispatch(&queues, &op, value, &account).await;
                return Reply::Whole(result.map_err(|e| accounts::present_error(&svc, e)));
            }
            if matches!(op.as_str(), "TagResource" | "UntagResource" | "ListTagsForResource")
                && crate::queues::ops::names_queue(&value)
            {
                return Reply::Whole(crate::queues::ops::tags(&queues, &op, &value).await);
            }
            if crate::firehose::channels::OPERATIONS.contains(&op.as_str()) {
                return Reply::Whole(crate::firehose::channels::dispatch(&delivery, &op, value).await);
            }
            let result = dispatch(&svc, &op, value, &account).await.map_err(|e| accounts::present_error(&svc, e));
            // Operations without an output shape answer with an empty body, as AWS's do.
            Reply::Whole(result.map(|v| if MODEL.has_output(&op) { v } else { Value::Null }))
        })
    }
}

fn serves(op: &str) -> bool {
    OPERATIONS.contains(&op) || crate::queues::OPERATIONS.contains(&op)
}

/// A `StreamId` given beside the stream's name or ARN must be that stream's.
fn check_stream_id(svc: &Service, req: &Value) -> ApiResult<()> {
    let Some(id) = req.get("StreamId").and_then(Value::as_str) else { return Ok(()) };
    let text = |m: &str| req.get(m).and_then(Value::as_str);
    let name = text("StreamName")
        .map(str::to_owned)
        .or_else(|| text("StreamARN").and_then(|a| svc.stream_of_arn(a)))
        .or_else(|| text("ResourceARN").and_then(|a| svc.stream_of_arn(a)))
        .or_else(|| {
            text("ResourceARN").or(text("ConsumerARN")).and_then(|a| svc.consumer_of_arn(a)).map(|(s, _, _)| s)
        });
    match name.and_then(|n| svc.stream(&n).ok()) {
        Some(meta) if meta.stream_id() != id => Err(svc.not_found(&meta.name)),
        _ => Ok(()),
    }
}

/// The Kinesis request shapes and constraints (generated from AWS's service model by
/// `scripts/gen_model.py`).
pub static MODEL: LazyLock<Model> = LazyLock::new(|| Model::from_json(include_str!("model.json")));

/// The operations this daemon serves besides the queue operations
/// ([`crate::queues::OPERATIONS`]): with them, every operation of the model.
pub const OPERATIONS: &[&str] = &[
    "AddTagsToStream",
    "CreateChannel",
    "CreateStream",
    "DeleteChannel",
    "DescribeChannel",
    "ListChannels",
    "UpdateChannel",
    "DecreaseStreamRetentionPeriod",
    "DeleteResourcePolicy",
    "DeleteStream",
    "DeregisterStreamConsumer",
    "DisableEnhancedMonitoring",
    "EnableEnhancedMonitoring",
    "DescribeAccountSettings",
    "DescribeLimits",
    "DescribeStream",
    "DescribeStreamConsumer",
    "DescribeStreamSummary",
    "GetRecords",
    "GetResourcePolicy",
    "GetShardIterator",
    "IncreaseStreamRetentionPeriod",
    "ListShards",
    "ListStreamConsumers",
    "ListStreams",
    "ListTagsForResource",
    "ListTagsForStream",
    "MergeShards",
    "PutRecord",
    "PutRecords",
    "PutResourcePolicy",
    "RegisterStreamConsumer",
    "RemoveTagsFromStream",
    "SplitShard",
    "StartStreamEncryption",
    "StopStreamEncryption",
    "SubscribeToShard",
    "TagResource",
    "UntagResource",
    "UpdateAccountSettings",
    "UpdateMaxRecordSize",
    "UpdateShardCount",
    "UpdateStreamMode",
    "UpdateStreamRecordDistributionStrategy",
    "UpdateStreamWarmThroughput",
];

/// Runs one operation.
async fn dispatch(svc: &Arc<Service>, op: &str, req: Value, account: &str) -> ApiResult<Value> {
    match op {
        "CreateStream" => ops::streams::create_stream(svc, parse(req)?, account).await,
        "DeleteStream" => ops::streams::delete_stream(svc, parse(req)?).await,
        "ListStreams" => ops::streams::list_streams(svc, parse(req)?, account),
        "DescribeStream" => ops::streams::describe_stream(svc, parse(req)?),
        "DescribeStreamSummary" => ops::streams::describe_stream_summary(svc, parse(req)?),
        "ListShards" => ops::streams::list_shards(svc, parse(req)?),
        "IncreaseStreamRetentionPeriod" => ops::streams::change_retention(svc, parse(req)?, true).await,
        "DecreaseStreamRetentionPeriod" => ops::streams::change_retention(svc, parse(req)?, false).await,
        "AddTagsToStream" => ops::streams::add_tags_to_stream(svc, parse(req)?).await,
        "RemoveTagsFromStream" => ops::streams::remove_tags_from_stream(svc, parse(req)?).await,
        "ListTagsForStream" => ops::streams::list_tags_for_stream(svc, parse(req)?),
        "TagResource" => ops::streams::tag_resource(svc, parse(req)?).await,
        "UntagResource" => ops::streams::untag_resource(svc, parse(req)?).await,
        "ListTagsForResource" => ops::streams::list_tags_for_resource(svc, parse(req)?),
        "DescribeLimits" => ops::streams::describe_limits(svc),
        "RegisterStreamConsumer" => ops::consumers::register_stream_consumer(svc, parse(req)?).await,
        "DeregisterStreamConsumer" => ops::consumers::deregister_stream_consumer(svc, parse(req)?).await,
        "DescribeStreamConsumer" => ops::consumers::describe_stream_consumer(svc, parse(req)?),
        "ListStreamConsumers" => ops::consumers::list_stream_consumers(svc, parse(req)?),
        "SplitShard" => ops::reshard::split_shard(svc, parse(req)?).await,
        "MergeShards" => ops::reshard::merge_shards(svc, parse(req)?).await,
        "UpdateShardCount" => ops::reshard::update_shard_count(svc, parse(req)?).await,
        "UpdateStreamMode" => ops::reshard::update_stream_mode(svc, parse(req)?).await,
        "PutRecord" => ops::records::put_record(svc, parse(req)?).await,
        "PutRecords" => ops::records::put_records(svc, parse(req)?).await,
        "GetShardIterator" => ops::records::get_shard_iterator(svc, parse(req)?).await,
        "GetRecords" => ops::records::get_records(svc, parse(req)?).await,
        "EnableEnhancedMonitoring" => ops::settings::enhanced_monitoring(svc, parse(req)?, true).await,
        "DisableEnhancedMonitoring" => ops::settings::enhanced_monitoring(svc, parse(req)?, false).await,
        "UpdateMaxRecordSize" => ops::settings::update_max_record_size(svc, parse(req)?).await,
        "StartStreamEncryption" => ops::settings::stream_encryption(svc, parse(req)?, true).await,
        "StopStreamEncryption" => ops::settings::stream_encryption(svc, parse(req)?, false).await,
        "UpdateStreamWarmThroughput" => ops::settings::update_warm_throughput(svc, parse(req)?).await,
        "UpdateStreamRecordDistributionStrategy" => ops::settings::update_record_distribution(svc, parse(req)?).await,
        "DescribeAccountSettings" => ops::settings::describe_account_settings(svc),
        "UpdateAccountSettings" => ops::settings::update_account_settings(svc, parse(req)?).await,
        "PutResourcePolicy" => ops::settings::put_resource_policy(svc, parse(req)?).await,
        "GetResourcePolicy" => ops::settings::get_resource_policy(svc, parse(req)?).await,
        "DeleteResourcePolicy" => ops::settings::delete_resource_policy(svc, parse(req)?).await,
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
    pub(crate) fn with_null(self) -> ApiError {
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
