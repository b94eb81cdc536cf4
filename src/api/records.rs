//! Data-plane operations: PutRecord, PutRecords, GetShardIterator, GetRecords.
//!
//! Hot path. A put is validated whole before anything is written, routed by hash key to shards,
//! and sent to every owning core worker before the first reply is awaited, so the shards of one
//! PutRecords commit in parallel.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{epoch_seconds, in_range, required, timestamp_ms};
use crate::error::{ApiError, ApiResult};
use crate::log::NewRecord;
use crate::runtime::{Position, ShardKey};
use crate::service::Service;
use crate::stream::hashing::{hash_partition_key, parse_explicit_hash_key};
use crate::stream::meta::{parse_shard_id, shard_id, ShardMeta, StreamMeta};
use crate::stream::seqno::{SeqNo, ShardIterator};

pub const RECORD_DATA_MAX_BYTES: usize = 1 << 20;
pub const PARTITION_KEY_MAX_CHARS: usize = 256;
pub const PUT_RECORDS_MAX_RECORDS: usize = 500;
pub const PUT_RECORDS_MAX_BYTES: usize = 5 << 20;
pub const GET_RECORDS_MAX_RECORDS: i64 = 10_000;
pub const GET_RECORDS_MAX_BYTES: usize = 10 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    data: Option<String>,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
    sequence_number_for_ordering: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsEntry {
    data: Option<String>,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    records: Option<Vec<PutRecordsEntry>>,
}

/// A validated record with the hash key that routes it.
struct Routed {
    hash: u128,
    record: NewRecord,
}

fn decode_record(
    data: Option<String>,
    partition_key: Option<String>,
    explicit_hash_key: Option<&str>,
    member: &str,
) -> ApiResult<Routed> {
    let data = required(data, &format!("{member}data"))?;
    let partition_key = required(partition_key, &format!("{member}partitionKey"))?;
    let key_chars = partition_key.chars().count();
    if key_chars == 0 || key_chars > PARTITION_KEY_MAX_CHARS {
        return Err(ApiError::validation(
            &partition_key,
            &format!("{member}partitionKey"),
            "Member must have length less than or equal to 256 and greater than or equal to 1",
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|_| ApiError::Serialization(format!("{member}Data is not valid base64.")))?;
    if bytes.len() > RECORD_DATA_MAX_BYTES {
        return Err(ApiError::validation(
            format!("java.nio.HeapByteBuffer[pos=0 lim={} cap={}]", bytes.len(), bytes.len()),
            &format!("{member}data"),
            "Member must have length less than or equal to 1048576",
        ));
    }
    if bytes.len() + partition_key.len() > RECORD_DATA_MAX_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "The size of the record (data plus partition key, {} bytes) exceeds the 1 MiB limit.",
            bytes.len() + partition_key.len()
        )));
    }
    let hash = match explicit_hash_key {
        Some(h) => parse_explicit_hash_key(h)?,
        None => hash_partition_key(&partition_key),
    };
    Ok(Routed { hash, record: NewRecord { partition_key, data: Bytes::from(bytes) } })
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

pub async fn put_record(svc: &Arc<Service>, input: PutRecordInput) -> ApiResult<Value> {
    let routed = decode_record(input.data, input.partition_key, input.explicit_hash_key.as_deref(), "")?;
    if let Some(s) = &input.sequence_number_for_ordering {
        let ok = s == "0"
            || (!s.is_empty() && s.len() <= 129 && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return Err(ApiError::validation(
                s,
                "sequenceNumberForOrdering",
                "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
            ));
        }
    }
    let meta = svc.resolve(input.stream_name.as_deref(), input.stream_arn.as_deref())?;
    svc.writable(&meta)?;
    let started = Instant::now();
    let (shard, ordinal) = append_routed(svc, &meta, vec![routed]).await.remove(0)?;
    svc.metrics.record_put_latency(&meta.name, started.elapsed());
    Ok(json!({
        "ShardId": shard_id(shard),
        "SequenceNumber": SeqNo::record(meta.id, shard, ordinal).encode(),
        "EncryptionType": "NONE",
    }))
}

/// Attempts at routing records whose shard a reshard has just closed, and the pause between.
const RESHARD_ROUTE_ATTEMPTS_MAX: usize = 200;
const RESHARD_ROUTE_RETRY: std::time::Duration = std::time::Duration::from_millis(5);

/// Appends records routed by hash key (request order is kept within each shard) and returns,
/// per record in request order, its shard and ordinal. Records that reach a shard that a reshard
/// has just closed are routed again on the new shard set, so none is lost or doubled.
async fn append_routed(svc: &Arc<Service>, meta: &Arc<StreamMeta>, routed: Vec<Routed>) -> Vec<ApiResult<(u32, u64)>> {
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

pub async fn put_records(svc: &Arc<Service>, input: PutRecordsInput) -> ApiResult<Value> {
    let entries = required(input.records, "records")?;
    if entries.is_empty() || entries.len() > PUT_RECORDS_MAX_RECORDS {
        return Err(ApiError::validation(
            format!("{} records", entries.len()),
            "records",
            "Member must have length less than or equal to 500 and greater than or equal to 1",
        ));
    }
    let mut routed = Vec::with_capacity(entries.len());
    let mut total = 0usize;
    for (i, e) in entries.into_iter().enumerate() {
        let r = decode_record(
            e.data,
            e.partition_key,
            e.explicit_hash_key.as_deref(),
            &format!("records.{}.member.", i + 1),
        )?;
        total += r.record.data.len() + r.record.partition_key.len();
        routed.push(r);
    }
    if total > PUT_RECORDS_MAX_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "Records size exceeds 5 MB limit: {total} bytes of data and partition keys."
        )));
    }
    let meta = svc.resolve(input.stream_name.as_deref(), input.stream_arn.as_deref())?;
    svc.writable(&meta)?;
    let started = Instant::now();
    let outcomes = append_routed(svc, &meta, routed).await;
    svc.metrics.record_put_latency(&meta.name, started.elapsed());
    let mut failed = 0;
    let results: Vec<Value> = outcomes
        .iter()
        .map(|o| match o {
            Ok((shard, ordinal)) => json!({
                "SequenceNumber": SeqNo::record(meta.id, *shard, *ordinal).encode(),
                "ShardId": shard_id(*shard),
            }),
            Err(e) => {
                failed += 1;
                // AWS reports only these two codes per record.
                let (code, message) = match e {
                    ApiError::ProvisionedThroughputExceeded(_) => (
                        "ProvisionedThroughputExceededException",
                        format!("Rate exceeded for stream {} under account {}.", meta.name, svc.cfg.account_id),
                    ),
                    other => ("InternalFailure", other.message().to_owned()),
                };
                json!({"ErrorCode": code, "ErrorMessage": message})
            }
        })
        .collect();
    Ok(json!({"FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE"}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetShardIteratorInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_id: Option<String>,
    shard_iterator_type: Option<String>,
    starting_sequence_number: Option<String>,
    timestamp: Option<Value>,
}

pub async fn get_shard_iterator(svc: &Arc<Service>, input: GetShardIteratorInput) -> ApiResult<Value> {
    let shard_id_text = required(input.shard_id, "shardId")?;
    let kind = required(input.shard_iterator_type, "shardIteratorType")?;
    let meta = svc.resolve(input.stream_name.as_deref(), input.stream_arn.as_deref())?;
    svc.writable(&meta)?;
    let shard = find_shard(svc, &meta, &shard_id_text)?;
    let position = parse_position(
        svc,
        &meta,
        shard,
        &kind,
        "shardIteratorType",
        input.starting_sequence_number.as_deref(),
        input.timestamp.as_ref(),
    )?;
    let key = ShardKey { stream_id: meta.id, shard_index: shard.index };
    let ordinal = svc.runtime.position(key, position).await?;
    let it = ShardIterator { stream_id: meta.id, shard_index: shard.index, ordinal, issued_ms: svc.now_ms() };
    Ok(json!({"ShardIterator": it.encode()}))
}

/// The shard named `text` in `meta`, or AWS's ResourceNotFoundException.
pub(crate) fn find_shard<'a>(svc: &Service, meta: &'a StreamMeta, text: &str) -> ApiResult<&'a ShardMeta> {
    parse_shard_id(text).and_then(|i| meta.shard(i)).ok_or_else(|| {
        ApiError::ResourceNotFound(format!(
            "Shard {text} in stream {} under account {} does not exist",
            meta.name, svc.cfg.account_id
        ))
    })
}

/// A starting position as GetShardIterator and SubscribeToShard take it: a type (`member` names
/// it in validation errors) with a sequence number or a timestamp where the type needs one.
pub(crate) fn parse_position(
    svc: &Service,
    meta: &StreamMeta,
    shard: &ShardMeta,
    kind: &str,
    member: &str,
    sequence_number: Option<&str>,
    timestamp: Option<&Value>,
) -> ApiResult<Position> {
    let kinds = ["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"];
    if !kinds.contains(&kind) {
        return Err(ApiError::validation(
            kind,
            member,
            "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
        ));
    }
    if (kind == "TRIM_HORIZON" || kind == "LATEST") && sequence_number.is_some() {
        return Err(ApiError::InvalidArgument(format!(
            "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} and also a StartingSequenceNumber."
        )));
    }
    Ok(match kind {
        "TRIM_HORIZON" => Position::TrimHorizon,
        "LATEST" => Position::Latest,
        "AT_TIMESTAMP" => {
            let ts = timestamp.ok_or_else(|| {
                ApiError::InvalidArgument("Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.".into())
            })?;
            let ts = timestamp_ms(ts, "Timestamp")?;
            let now = svc.now_ms();
            if ts > now {
                return Err(ApiError::InvalidArgument(format!(
                    "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {ts}, currentTimestampInMillis: {now}"
                )));
            }
            Position::AtTimestamp(ts)
        }
        _ => {
            let text = sequence_number.ok_or_else(|| {
                ApiError::InvalidArgument(format!(
                    "Must specify StartingSequenceNumber for iterator of type {kind}. Current request has no starting sequence number."
                ))
            })?;
            let seq = SeqNo::parse(text)?;
            if seq.stream_id != meta.id || seq.shard_index != shard.index {
                return Err(ApiError::InvalidArgument(format!(
                    "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {}",
                    shard_id(seq.shard_index),
                    shard.shard_id()
                )));
            }
            Position::AtOrdinal(if kind == "AFTER_SEQUENCE_NUMBER" { seq.after_ordinal() } else { seq.at_ordinal() })
        }
    })
}

/// One record as the JSON shapes carry it (GetRecords, SubscribeToShardEvent).
pub(crate) fn record_json(meta: &StreamMeta, shard_index: u32, r: &crate::log::Record) -> Value {
    json!({
        "SequenceNumber": SeqNo::record(meta.id, shard_index, r.ordinal).encode(),
        "ApproximateArrivalTimestamp": epoch_seconds(r.ts_ms),
        "Data": base64::engine::general_purpose::STANDARD.encode(&r.data),
        "PartitionKey": r.partition_key,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecordsInput {
    shard_iterator: Option<String>,
    limit: Option<i64>,
    #[serde(rename = "StreamARN")]
    #[allow(dead_code)]
    stream_arn: Option<String>,
}

pub async fn get_records(svc: &Arc<Service>, input: GetRecordsInput) -> ApiResult<Value> {
    let text = required(input.shard_iterator, "shardIterator")?;
    if text.is_empty() || text.len() > 512 {
        return Err(ApiError::validation(&text, "shardIterator", "Member must have length less than or equal to 512"));
    }
    let limit = input.limit.unwrap_or(GET_RECORDS_MAX_RECORDS);
    in_range(limit, 1, GET_RECORDS_MAX_RECORDS, "limit")?;
    let now = svc.now_ms();
    let it = ShardIterator::decode(&text, now)?;
    let meta = svc.stream_by_id(it.stream_id).ok_or_else(|| {
        ApiError::ResourceNotFound("The stream this shard iterator belongs to no longer exists.".into())
    })?;
    svc.writable(&meta)?;
    let shard = meta.shard(it.shard_index).ok_or_else(|| {
        ApiError::ResourceNotFound(format!("Shard {} in stream {} does not exist", shard_id(it.shard_index), meta.name))
    })?;
    let key = ShardKey { stream_id: meta.id, shard_index: shard.index };
    if let Some(limits) = &svc.limits {
        if !limits.allow_get(key) {
            return Err(ApiError::ProvisionedThroughputExceeded(format!(
                "Rate exceeded for shard {} in stream {} under account {}.",
                shard.shard_id(),
                meta.name,
                svc.cfg.account_id
            )));
        }
    }
    let reply = svc.runtime.read(key, it.ordinal, limit as usize, GET_RECORDS_MAX_BYTES).await?;
    if let Some(limits) = &svc.limits {
        limits.charge_read(key, reply.records.iter().map(|r| r.data.len() as u64).sum());
    }
    let mut bytes = 0u64;
    let records: Vec<Value> = reply
        .records
        .iter()
        .map(|r| {
            bytes += r.data.len() as u64;
            record_json(&meta, shard.index, r)
        })
        .collect();
    svc.metrics.record_get(&meta.name, &shard.shard_id(), records.len() as u64, bytes);
    let behind = match reply.records.last() {
        _ if reply.next >= reply.tip => 0,
        Some(last) => (reply.last_ts_ms - last.ts_ms).max(0),
        None => 0,
    };
    if reply.closed && reply.next >= reply.tip {
        // A closed shard read to its end: no next iterator, and where its keys went.
        return Ok(json!({
            "Records": records,
            "MillisBehindLatest": 0,
            "ChildShards": crate::fanout::child_shards_when_known(svc, meta.id, shard.index).await,
        }));
    }
    let next = ShardIterator { ordinal: reply.next, issued_ms: now, ..it };
    Ok(json!({
        "Records": records,
        "NextShardIterator": next.encode(),
        "MillisBehindLatest": behind,
    }))
}
