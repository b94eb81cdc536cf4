//! Enhanced fan-out: consumer registration and SubscribeToShard.
//!
//! SubscribeToShard answers `application/vnd.amazon.eventstream`: an `initial-response` event
//! first (boto3 refuses a stream without it), then `SubscribeToShardEvent`s as records become
//! durable, an empty event every `fanout.heartbeat_interval` when idle, and a clean end after
//! `fanout.subscription_duration`. Errors after the stream started are exception events.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::records::record_json;
use super::streams::{decode_token, encode_token};
use crate::kinesis::fanout::Pacer;
use crate::kinesis::positions::parse_position;
use crate::kinesis::shards::find_shard;
use crate::kinesis::{epoch_seconds, in_range, required, timestamp_ms};
use crate::protocol::codec::{encode_response, Protocol};
use crate::protocol::error::{ApiError, ApiResult};
use crate::protocol::eventstream;
use crate::reader::{ShardCursor, DELIVERY_BYTES_MAX};
use crate::runtime::ShardKey;
use crate::service::Service;
use crate::stream::meta::{ConsumerMeta, ConsumerStatus, StreamMeta, StreamStatus};
use crate::stream::seqno::SeqNo;

/// Events buffered per subscription between the delivery task and the connection.
const EVENTS_BUFFERED_MAX: usize = 4;

fn validate_consumer_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            name,
            "consumerName",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128",
        ))
    }
}

fn consumer_json(c: &ConsumerMeta, stream_arn: &str) -> Value {
    json!({
        "ConsumerName": c.name,
        "ConsumerARN": c.arn(stream_arn),
        "ConsumerStatus": c.status.as_str(),
        "ConsumerCreationTimestamp": epoch_seconds(c.created_ms),
    })
}

fn consumer_not_found(svc: &Service, what: &str) -> ApiError {
    ApiError::ResourceNotFound(format!("Consumer {what} under account {} not found.", svc.cfg.account_id))
}

/// The stream and consumer named by a ConsumerARN, or by StreamARN and ConsumerName.
fn resolve_consumer(
    svc: &Service,
    stream_arn: Option<&str>,
    consumer_name: Option<&str>,
    consumer_arn: Option<&str>,
) -> ApiResult<(Arc<StreamMeta>, ConsumerMeta)> {
    match (consumer_arn, stream_arn, consumer_name) {
        // A consumer ARN names the consumer; a stream ARN given beside it must be its stream's.
        (Some(arn), stream_arn, None) => {
            let (stream, name, epoch) = svc.consumer_of_arn(arn).ok_or_else(|| {
                ApiError::validation(arn, "consumerARN", "Member must satisfy regular expression pattern: ^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+")
            })?;
            let meta = svc.stream(&stream).map_err(|_| consumer_not_found(svc, arn))?;
            if stream_arn.is_some_and(|s| svc.stream_of_arn(s).as_deref() != Some(&meta.name)) {
                return Err(consumer_not_found(svc, arn));
            }
            let c = meta
                .consumers
                .iter()
                .find(|c| c.name == name && c.created_ms / 1000 == epoch)
                .cloned()
                .ok_or_else(|| consumer_not_found(svc, arn))?;
            Ok((meta, c))
        }
        (None, Some(stream_arn), Some(name)) => {
            let meta = svc.resolve(None, Some(stream_arn))?;
            let c =
                meta.consumers.iter().find(|c| c.name == name).cloned().ok_or_else(|| consumer_not_found(svc, name))?;
            Ok((meta, c))
        }
        _ => Err(ApiError::InvalidArgument(
            "Either ConsumerARN or both StreamARN and ConsumerName must be provided.".into(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsumerInput {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    consumer_name: Option<String>,
    #[serde(rename = "ConsumerARN")]
    consumer_arn: Option<String>,
}

pub async fn register_stream_consumer(svc: &Arc<Service>, input: ConsumerInput) -> ApiResult<Value> {
    let stream_arn = required(input.stream_arn, "streamARN")?;
    let name = required(input.consumer_name, "consumerName")?;
    validate_consumer_name(&name)?;
    let _guard = svc.control.lock().await;
    let meta = svc.resolve(None, Some(&stream_arn))?;
    if meta.status != StreamStatus::Active && meta.status != StreamStatus::Updating {
        return Err(ApiError::ResourceInUse(format!(
            "Stream {} under account {} is not ACTIVE.",
            meta.name, svc.cfg.account_id
        )));
    }
    if meta.consumers.iter().any(|c| c.name == name) {
        return Err(ApiError::ResourceInUse(format!(
            "Consumer {name} under stream {} already exists for account {}.",
            meta.name, svc.cfg.account_id
        )));
    }
    let limit = svc.cfg.fanout.consumers_per_stream;
    if (meta.consumers.len() + crate::queues::of_stream(svc, meta.id).len()) as u32 >= limit {
        return Err(ApiError::LimitExceeded(format!(
            "Stream {} under account {} has reached the limit of {limit} registered consumers.",
            meta.name, svc.cfg.account_id
        )));
    }
    let consumer = ConsumerMeta { name: name.clone(), created_ms: svc.now_ms(), status: ConsumerStatus::Creating };
    let mut m = (*meta).clone();
    m.consumers.push(consumer.clone());
    let meta = svc.save(m).await?;
    drop(_guard);
    let arn = svc.arn(&meta);
    let out = json!({"Consumer": consumer_json(&consumer, &arn)});
    let svc2 = svc.clone();
    let delay = svc.cfg.streams.create_delay;
    let activate = async move {
        let _guard = svc2.control.lock().await;
        let Ok(current) = svc2.stream(&meta.name) else { return };
        if current.id != meta.id {
            return;
        }
        let mut m = (*current).clone();
        let Some(c) = m.consumers.iter_mut().find(|c| c.name == name && c.status == ConsumerStatus::Creating) else {
            return;
        };
        c.status = ConsumerStatus::Active;
        if let Err(e) = svc2.save(m).await {
            tracing::error!(consumer = %name, error = %e, "could not activate consumer");
        }
    };
    crate::kinesis::after(delay, activate).await;
    Ok(out)
}

pub async fn deregister_stream_consumer(svc: &Arc<Service>, input: ConsumerInput) -> ApiResult<Value> {
    let _guard = svc.control.lock().await;
    let (meta, consumer) = resolve_consumer(
        svc,
        input.stream_arn.as_deref(),
        input.consumer_name.as_deref(),
        input.consumer_arn.as_deref(),
    )?;
    let arn = consumer.arn(&svc.arn(&meta));
    let mut m = (*meta).clone();
    if let Some(c) = m.consumers.iter_mut().find(|c| c.name == consumer.name) {
        c.status = ConsumerStatus::Deleting;
    }
    let meta = svc.save(m).await?;
    svc.subscriptions.cancel_consumer(&arn);
    drop(_guard);
    let svc2 = svc.clone();
    let delay = svc.cfg.streams.delete_delay;
    let remove = async move {
        let _guard = svc2.control.lock().await;
        let Ok(current) = svc2.stream(&meta.name) else { return };
        let mut m = (*current).clone();
        m.consumers.retain(|c| !(c.name == consumer.name && c.created_ms == consumer.created_ms));
        if let Err(e) = svc2.save(m).await {
            tracing::error!(consumer = %consumer.name, error = %e, "could not remove consumer");
        }
    };
    crate::kinesis::after(delay, remove).await;
    Ok(json!({}))
}

pub fn describe_stream_consumer(svc: &Service, input: ConsumerInput) -> ApiResult<Value> {
    let (meta, c) = resolve_consumer(
        svc,
        input.stream_arn.as_deref(),
        input.consumer_name.as_deref(),
        input.consumer_arn.as_deref(),
    )?;
    let stream_arn = svc.arn(&meta);
    let mut d = consumer_json(&c, &stream_arn);
    d["StreamARN"] = json!(stream_arn);
    Ok(json!({ "ConsumerDescription": d }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListConsumersInput {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    stream_creation_timestamp: Option<Value>,
}

pub fn list_stream_consumers(svc: &Service, input: ListConsumersInput) -> ApiResult<Value> {
    let stream_arn = required(input.stream_arn, "streamARN")?;
    let max = input.max_results.unwrap_or(100);
    in_range(max, 1, 10_000, "maxResults")?;
    let meta = svc.resolve(None, Some(&stream_arn))?;
    if let Some(ts) = &input.stream_creation_timestamp {
        if timestamp_ms(ts, "StreamCreationTimestamp")? / 1000 != meta.created_ms / 1000 {
            return Err(svc.not_found(&meta.name));
        }
    }
    let after = match &input.next_token {
        Some(t) => Some(decode_token(svc, t)?.after),
        None => None,
    };
    let mut consumers: Vec<&ConsumerMeta> = meta.consumers.iter().collect();
    consumers.sort_by(|a, b| a.name.cmp(&b.name));
    let rest: Vec<&ConsumerMeta> =
        consumers.into_iter().filter(|c| after.as_ref().is_none_or(|a| c.name > *a)).collect();
    let page = &rest[..rest.len().min(max as usize)];
    let arn = svc.arn(&meta);
    let mut out = json!({"Consumers": page.iter().map(|c| consumer_json(c, &arn)).collect::<Vec<_>>()});
    if rest.len() > page.len() {
        if let Some(last) = page.last() {
            out["NextToken"] = json!(encode_token(svc, &meta.name, &last.name));
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartingPosition {
    #[serde(rename = "Type")]
    kind: Option<String>,
    sequence_number: Option<String>,
    timestamp: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubscribeInput {
    #[serde(rename = "ConsumerARN")]
    consumer_arn: Option<String>,
    shard_id: Option<String>,
    starting_position: Option<StartingPosition>,
}

/// An HTTP response body fed by a channel: one event-stream message per item.
pub struct EventBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|m| m.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Validates a SubscribeToShard request and starts its delivery task; the body streams events.
pub async fn subscribe_to_shard(svc: &Arc<Service>, input: SubscribeInput, proto: Protocol) -> ApiResult<EventBody> {
    let consumer_arn = required(input.consumer_arn, "consumerARN")?;
    let shard_text = required(input.shard_id, "shardId")?;
    let start = required(input.starting_position, "startingPosition")?;
    let kind = required(start.kind, "startingPosition.type")?;
    let (meta, consumer) = resolve_consumer(svc, None, None, Some(&consumer_arn))?;
    if consumer.status != ConsumerStatus::Active {
        return Err(ApiError::ResourceInUse(format!(
            "Consumer {consumer_arn} is {}, not ACTIVE.",
            consumer.status.as_str()
        )));
    }
    svc.writable(&meta)?;
    let shard = find_shard(svc, &meta, &shard_text)?;
    let position = parse_position(
        svc,
        &meta,
        shard,
        &kind,
        "startingPosition.type",
        start.sequence_number.as_deref(),
        start.timestamp.as_ref(),
    )?;
    let key = ShardKey { stream_id: meta.id, shard_index: shard.index };
    let cursor = ShardCursor::open(svc.runtime.clone(), key, position).await?;
    // Only a subscription that can start takes the slot (and so ends an older one). The slot is
    // keyed by the consumer's canonical ARN, however the client spelled it.
    let canonical = consumer.arn(&svc.arn(&meta));
    let lease = svc.subscriptions.acquire(&canonical, shard.index, svc.cfg.fanout.takeover_after)?;
    let (tx, rx) = mpsc::channel(EVENTS_BUFFERED_MAX);
    let svc = svc.clone();
    let shard_index = shard.index;
    tokio::spawn(async move {
        let mut lease = lease;
        deliver(&svc, &meta, shard_index, cursor, &mut lease.cancelled, &tx, proto).await;
        drop(lease);
    });
    Ok(EventBody { rx })
}

fn event_message(proto: Protocol, event_type: &str, v: &Value) -> Bytes {
    let payload = encode_response(proto, v, &crate::kinesis::MEMBER_KINDS);
    let content_type = match proto {
        Protocol::Json | Protocol::Json10 => "application/json",
        Protocol::Cbor => "application/cbor",
    };
    eventstream::message(
        &[(":message-type", "event"), (":event-type", event_type), (":content-type", content_type)],
        &payload,
    )
}

async fn deliver(
    svc: &Arc<Service>,
    meta: &StreamMeta,
    shard_index: u32,
    mut cursor: ShardCursor,
    cancelled: &mut tokio::sync::watch::Receiver<Option<crate::reader::leases::Cancel>>,
    tx: &mpsc::Sender<Bytes>,
    proto: Protocol,
) {
    let fan = &svc.cfg.fanout;
    let ends = tokio::time::Instant::now() + fan.subscription_duration;
    // Every wait, including a send to a client that stops reading, also watches the clock and
    // the cancellation, so that a subscription always ends on time.
    macro_rules! send_or_end {
        ($msg:expr) => {
            tokio::select! {
                r = tx.send($msg) => if r.is_err() { return },
                _ = tokio::time::sleep_until(ends) => return,
                _ = cancelled.changed() => return,
            }
        };
    }
    send_or_end!(event_message(proto, "initial-response", &json!({})));
    let mut pacer = Pacer::new(svc.cfg.limits.enforce.then_some(svc.cfg.limits.fanout_bytes_per_s));
    // The first event goes out at once, so that clients see the subscription is live.
    let mut first = true;
    loop {
        let wait = if first { std::time::Duration::ZERO } else { fan.heartbeat_interval };
        first = false;
        let delivery = tokio::select! {
            _ = tokio::time::sleep_until(ends) => return,
            _ = cancelled.changed() => return,
            d = cursor.next(DELIVERY_BYTES_MAX, wait) => d,
        };
        let d = match delivery {
            Ok(d) => d,
            Err(e) => {
                let kind = match e.type_name() {
                    "InternalFailure" => "InternalFailureException",
                    other => other,
                };
                send_or_end!(eventstream::exception(kind, e.message()));
                return;
            }
        };
        let bytes: u64 = d.records.iter().map(|r| r.data.len() as u64).sum();
        let mut event = json!({
            "Records": d.records.iter().map(|r| record_json(meta, shard_index, r)).collect::<Vec<_>>(),
            "ContinuationSequenceNumber": SeqNo::continuation(meta.id, shard_index, cursor.position).encode(),
            "MillisBehindLatest": d.millis_behind,
        });
        if d.ended {
            // The shard is closed and fully delivered: no continuation (how the KCL sees a shard
            // end), and where its keys went.
            event.as_object_mut().expect("an object").remove("ContinuationSequenceNumber");
            let children = tokio::select! {
                c = crate::kinesis::fanout::child_shards_when_known(svc, meta.id, shard_index) => c,
                _ = tokio::time::sleep_until(ends) => return,
                _ = cancelled.changed() => return,
            };
            event["ChildShards"] = json!(children);
        }
        send_or_end!(event_message(proto, "SubscribeToShardEvent", &event));
        svc.metrics.record_fanout(&meta.name, d.records.len() as u64, bytes);
        if d.ended {
            return;
        }
        tokio::select! {
            _ = pacer.pace(bytes) => {}
            _ = tokio::time::sleep_until(ends) => return,
            _ = cancelled.changed() => return,
        }
    }
}
