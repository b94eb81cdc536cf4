//! The queue operations: their inputs (already checked against AWS's model by the Kinesis
//! service), what they mean, and their answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::engine::{self, Action, Command};
use super::{QueueMeta, Queues, MAX_RECEIVE_DEFAULT, TAGS_MAX, VISIBILITY_DEFAULT_S};
use crate::kinesis::epoch_seconds;
use crate::protocol::error::{ApiError, ApiResult};
use crate::stream::meta::StreamMode;

pub const OPERATIONS: &[&str] = &[
    "AcknowledgeDeadLetterQueueRecords",
    "AcknowledgeQueueRecords",
    "CreateQueue",
    "DeleteQueue",
    "DescribeQueue",
    "ListQueues",
    "ReceiveDeadLetterQueueRecords",
    "ReceiveQueueRecords",
    "RestoreDeadLetterQueueRecords",
    "UpdateDeadLetterQueueRecordsVisibility",
    "UpdateQueue",
    "UpdateQueueRecordsVisibility",
];

/// ReceiveQueueRecords: Limit and WaitTimeSeconds when not given.
pub const LIMIT_DEFAULT: usize = 10;
pub const WAIT_DEFAULT_S: u64 = 9;
/// ListQueues: results per page when MaxResults is not given.
pub const LIST_DEFAULT: usize = 100;

/// Runs a queue operation for a caller of `account`: CreateQueue makes a queue of that account,
/// ListQueues lists that account's, the others name their queue by ARN.
pub async fn dispatch(q: &Arc<Queues>, op: &str, mut req: Value, account: &str) -> ApiResult<Value> {
    crate::kinesis::accounts::qualify_member(&q.svc, account, &mut req, "QueueName");
    match op {
        "CreateQueue" => create(q, req).await,
        "DescribeQueue" => describe(q, &req),
        "ListQueues" => list(q, &req, account),
        "UpdateQueue" => update(q, req).await,
        "DeleteQueue" => delete(q, &req).await,
        "ReceiveQueueRecords" => receive(q, &req, false).await,
        "ReceiveDeadLetterQueueRecords" => receive(q, &req, true).await,
        "AcknowledgeQueueRecords" => settle(q, &req, Action::Acknowledge, false).await,
        "AcknowledgeDeadLetterQueueRecords" => settle(q, &req, Action::Acknowledge, true).await,
        "UpdateQueueRecordsVisibility" => settle(q, &req, Action::Visibility, false).await,
        "UpdateDeadLetterQueueRecordsVisibility" => settle(q, &req, Action::Visibility, true).await,
        "RestoreDeadLetterQueueRecords" => settle(q, &req, Action::Restore, true).await,
        _ => Err(ApiError::UnknownOperation(format!("Operation {op} is not supported by this daemon."))),
    }
}

fn text<'a>(v: &'a Value, member: &str) -> Option<&'a str> {
    v.get(member).and_then(Value::as_str)
}

/// QueueAttributes over `base` (visibility, MaxReceiveCount).
fn attributes(v: Option<&Value>, base: (u32, Option<u32>)) -> ApiResult<(u32, Option<u32>)> {
    let Some(v) = v else { return Ok(base) };
    let visibility = v.get("VisibilityTimeoutSeconds").and_then(Value::as_u64).map(|n| n as u32).unwrap_or(base.0);
    let max_receive = match v.get("DeadLetterConfiguration") {
        None => base.1,
        Some(d) => {
            let count = d.get("MaxReceiveCount").and_then(Value::as_u64).map(|n| n as u32);
            match (text(d, "TargetType"), count) {
                (Some("BUILT_IN"), Some(n)) => Some(n),
                (Some("BUILT_IN"), None) => {
                    return Err(ApiError::Validation(
                        "MaxReceiveCount is required when DeadLetterConfiguration's TargetType is BUILT_IN.".into(),
                    ))
                }
                (_, Some(_)) => {
                    return Err(ApiError::Validation(
                        "MaxReceiveCount can be given only when DeadLetterConfiguration's TargetType is BUILT_IN."
                            .into(),
                    ))
                }
                _ => None,
            }
        }
    };
    Ok((visibility, max_receive))
}

fn attributes_json(visibility_s: u32, max_receive: Option<u32>) -> Value {
    let dead_letters = match max_receive {
        Some(n) => json!({"TargetType": "BUILT_IN", "MaxReceiveCount": n}),
        None => json!({"TargetType": "NONE"}),
    };
    json!({"VisibilityTimeoutSeconds": visibility_s, "DeadLetterConfiguration": dead_letters})
}

fn description(q: &Queues, m: &QueueMeta) -> Value {
    let mut start = json!({"Type": m.start_type});
    let shown = if m.status == "CREATING" { m.start_ms } else { m.effective_start_ms.or(m.start_ms) };
    if let Some(ts) = shown {
        start["Timestamp"] = epoch_seconds(ts);
    }
    let (visibility, max_receive) = m.pending.unwrap_or((m.visibility_s, m.max_receive));
    json!({
        "QueueName": m.display_name(),
        "QueueARN": m.arn(&q.svc),
        "QueueStatus": m.status,
        "QueueCreationTimestamp": epoch_seconds(m.created_ms),
        "StreamConfigurationList": [{"StreamARN": m.stream_arn, "StartingPosition": start}],
        "QueueAttributes": attributes_json(visibility, max_receive),
    })
}

fn tags_of(req: &Value) -> BTreeMap<String, String> {
    req.get("Tags")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

fn check_tags(name: &str, tags: &BTreeMap<String, String>) -> ApiResult<()> {
    if tags.len() > TAGS_MAX {
        return Err(ApiError::InvalidArgument(format!(
            "Queue {name} cannot have more than {TAGS_MAX} tags; {} were given.",
            tags.len()
        )));
    }
    if let Some(k) = tags.keys().find(|k| k.starts_with("aws:")) {
        return Err(ApiError::InvalidArgument(format!("Tag key {k}: keys beginning with aws: are reserved.")));
    }
    Ok(())
}

async fn create(q: &Arc<Queues>, req: Value) -> ApiResult<Value> {
    let name = text(&req, "QueueName").unwrap_or_default().to_owned();
    let streams = req["StreamConfigurationList"].as_array().cloned().unwrap_or_default();
    if streams.len() != 1 {
        return Err(ApiError::Validation(format!(
            "StreamConfigurationList must contain exactly one entry; {} were given.",
            streams.len()
        )));
    }
    let config = &streams[0];
    let stream_arn = text(config, "StreamARN").unwrap_or_default();
    let start = config.get("StartingPosition");
    let start_type = start.and_then(|s| text(s, "Type")).unwrap_or("LATEST").to_owned();
    let start_ms = match start.and_then(|s| s.get("Timestamp")) {
        Some(t) if start_type == "AT_TIMESTAMP" => Some(crate::kinesis::timestamp_ms(t, "Timestamp")?),
        Some(_) => {
            return Err(ApiError::Validation(format!(
                "StartingPosition Timestamp can be given only with Type AT_TIMESTAMP, not {start_type}."
            )))
        }
        None if start_type == "AT_TIMESTAMP" => {
            return Err(ApiError::Validation("StartingPosition Type AT_TIMESTAMP requires a Timestamp.".into()))
        }
        None => None,
    };
    let (visibility_s, max_receive) =
        attributes(req.get("QueueAttributes"), (VISIBILITY_DEFAULT_S, Some(MAX_RECEIVE_DEFAULT)))?;
    let tags = tags_of(&req);
    check_tags(&name, &tags)?;
    let _guard = q.control.lock().await;
    // DeleteStream and UpdateStreamMode check for queues under the stream lock.
    let _stream_guard = q.svc.control.lock().await;
    let stream = q.svc.resolve(None, Some(stream_arn))?;
    if stream.mode != StreamMode::OnDemand {
        return Err(ApiError::InvalidArgument(format!(
            "Stream {} is in PROVISIONED mode; queues are supported only on streams in ON_DEMAND mode.",
            stream.name
        )));
    }
    if stream.status == crate::stream::meta::StreamStatus::Deleting {
        return Err(q.svc.not_found(&stream.name));
    }
    if q.metas_read().contains_key(&name) {
        return Err(ApiError::ResourceInUse(format!(
            "Queue {name} already exists under account {}.",
            q.svc.cfg.account_id
        )));
    }
    let limit = q.svc.cfg.fanout.consumers_per_stream as usize;
    let on_stream = q.all().iter().filter(|m| m.stream_id == stream.id).count();
    if stream.consumers.len() + on_stream >= limit {
        return Err(ApiError::LimitExceeded(format!(
            "Stream {} has reached the limit of {limit} registered consumers and queues.",
            stream.name
        )));
    }
    let mut random = [0u8; 48];
    getrandom::getrandom(&mut random).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
    let id: String = random[..16].iter().map(|b| format!("{b:02x}")).collect();
    let key: String = random[16..].iter().map(|b| format!("{b:02x}")).collect();
    let meta = QueueMeta {
        name: name.clone(),
        id: id.clone(),
        status: "CREATING".into(),
        created_ms: q.svc.now_ms(),
        stream_name: stream.name.clone(),
        stream_id: stream.id,
        stream_arn: q.svc.arn(&stream),
        stream_created_ms: stream.created_ms,
        start_type,
        start_ms,
        effective_start_ms: None,
        visibility_s,
        max_receive,
        pending: None,
        tags,
        key,
    };
    let meta = q.save(meta).await?;
    let out = json!({"QueueDescription": description(q, &meta)});
    drop(_stream_guard);
    drop(_guard);
    let q2 = q.clone();
    let activate = async move { q2.settle(&name, &id, "CREATING").await };
    crate::kinesis::after(q.svc.cfg.streams.create_delay, activate).await;
    Ok(out)
}

fn describe(q: &Arc<Queues>, req: &Value) -> ApiResult<Value> {
    let m = q.by_arn(text(req, "QueueARN").unwrap_or_default())?;
    Ok(json!({"QueueDescription": description(q, &m)}))
}

/// Lists the queues of `account` (the caller's).
fn list(q: &Arc<Queues>, req: &Value, account: &str) -> ApiResult<Value> {
    let limit = req.get("MaxResults").and_then(Value::as_u64).map(|n| n as usize).unwrap_or(LIST_DEFAULT);
    let list = crate::kinesis::ops::streams::ListRequest::parse(&q.svc, req, limit)?;
    let mut matching: Vec<Arc<QueueMeta>> = q
        .all()
        .into_iter()
        .filter(|m| q.svc.account_and_name(&m.name).0 == account)
        .filter(|m| list.admits(m.display_name(), &m.stream_name, m.stream_created_ms))
        .collect();
    matching.sort_by(|a, b| a.display_name().cmp(b.display_name()));
    Ok(list.page(
        &q.svc,
        &matching,
        "QueueSummaries",
        |m| m.display_name(),
        |m| {
            json!({
                "QueueName": m.display_name(),
                "QueueARN": m.arn(&q.svc),
                "QueueStatus": m.status,
                "QueueCreationTimestamp": epoch_seconds(m.created_ms),
                "Streams": [{"StreamARN": m.stream_arn, "StreamCreationTimestamp": epoch_seconds(m.stream_created_ms)}],
            })
        },
    ))
}

async fn update(q: &Arc<Queues>, req: Value) -> ApiResult<Value> {
    let arn = text(&req, "QueueARN").unwrap_or_default().to_owned();
    let _guard = q.control.lock().await;
    let current = q.by_arn(&arn)?;
    if current.status != "ACTIVE" {
        return Err(ApiError::ResourceInUse(format!(
            "Queue {} is {} and cannot be updated now.",
            current.name, current.status
        )));
    }
    let attrs = attributes(req.get("QueueAttributes"), (current.visibility_s, current.max_receive))?;
    let mut m = (*current).clone();
    m.pending = Some(attrs);
    m.status = "UPDATING".into();
    let m = q.save(m).await?;
    let out = json!({"QueueDescription": description(q, &m)});
    drop(_guard);
    let (q2, name, id) = (q.clone(), m.name.clone(), m.id.clone());
    let activate = async move { q2.settle(&name, &id, "UPDATING").await };
    crate::kinesis::after(q.svc.cfg.streams.create_delay, activate).await;
    Ok(out)
}

async fn delete(q: &Arc<Queues>, req: &Value) -> ApiResult<Value> {
    let arn = text(req, "QueueARN").unwrap_or_default();
    let _guard = q.control.lock().await;
    let current = q.by_arn(arn)?;
    if current.status == "DELETING" {
        return Ok(json!({}));
    }
    let mut m = (*current).clone();
    m.status = "DELETING".into();
    let m = q.save(m).await?;
    // In-flight records are not delivered again, and receipt handles stop being good, at once.
    let task = q.tasks().remove(&m.id);
    if let Some(task) = task {
        task.stop().await;
    }
    drop(_guard);
    let q2 = q.clone();
    crate::kinesis::after(q.svc.cfg.streams.delete_delay, async move {
        let _guard = q2.control.lock().await;
        q2.finish_delete(&m).await
    })
    .await;
    Ok(json!({}))
}

/// The live task of a queue that delivers now.
fn delivering(q: &Queues, req: &Value) -> ApiResult<(Arc<QueueMeta>, Arc<engine::Handle>)> {
    let m = q.by_arn(text(req, "QueueARN").unwrap_or_default())?;
    match m.status.as_str() {
        "ACTIVE" | "UPDATING" => {}
        "DELETING" => return Err(ApiError::ResourceNotFound(format!("Queue {} is being deleted.", m.name))),
        other => {
            return Err(ApiError::ResourceInUse(format!(
                "Queue {} is {other}; it delivers records once it is ACTIVE.",
                m.name
            )))
        }
    }
    let task = q.task(&m.id).ok_or_else(|| {
        ApiError::InternalFailure(format!("Queue {}'s state could not be loaded; see the daemon's log.", m.name))
    })?;
    Ok((m, task))
}

async fn receive(q: &Arc<Queues>, req: &Value, dead: bool) -> ApiResult<Value> {
    let (_, task) = delivering(q, req)?;
    let limit = req.get("Limit").and_then(Value::as_u64).map(|n| n as usize).unwrap_or(LIMIT_DEFAULT);
    let wait = Duration::from_secs(req.get("WaitTimeSeconds").and_then(Value::as_u64).unwrap_or(WAIT_DEFAULT_S));
    let visibility_s = req.get("VisibilityTimeoutSeconds").and_then(Value::as_u64).map(|n| n as u32);
    let records = task.call(|reply| Command::Receive { dead, limit, wait, visibility_s, reply }).await?;
    Ok(json!({"QueueRecords": records}))
}

async fn settle(q: &Arc<Queues>, req: &Value, action: Action, dead: bool) -> ApiResult<Value> {
    let (_, task) = delivering(q, req)?;
    let entries: Vec<(String, u32)> = req["Entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let handle = text(e, "ReceiptHandle").unwrap_or_default().to_owned();
            let visibility = e.get("VisibilityTimeoutSeconds").and_then(Value::as_u64).unwrap_or(0) as u32;
            (handle, visibility)
        })
        .collect();
    let (ok, failed) = task.call(|reply| Command::Settle { action, dead, entries, reply }).await?;
    Ok(json!({"Successful": ok, "Failed": failed}))
}

/// TagResource, UntagResource and ListTagsForResource on a queue's ARN.
pub async fn tags(q: &Arc<Queues>, op: &str, req: &Value) -> ApiResult<Value> {
    let arn = text(req, "ResourceARN").unwrap_or_default();
    if op == "ListTagsForResource" {
        let m = q.by_arn(arn)?;
        let tags: Vec<Value> = m.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
        return Ok(json!({"Tags": tags}));
    }
    let _guard = q.control.lock().await;
    let current = q.by_arn(arn)?;
    let mut m = (*current).clone();
    if op == "TagResource" {
        m.tags.extend(tags_of(req));
    } else {
        for k in req["TagKeys"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            m.tags.remove(k);
        }
    }
    check_tags(&m.name, &m.tags)?;
    q.save(m).await?;
    Ok(json!({}))
}

/// Whether a TagResource-family request names a queue.
pub fn names_queue(req: &Value) -> bool {
    text(req, "ResourceARN").is_some_and(|a| a.contains(":queue/"))
}
