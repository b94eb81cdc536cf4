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

use crate::kinesis::positions::parse_position;
use crate::kinesis::routing::{append_routed, spread_hash, Routed};
use crate::kinesis::shards::{find_shard, no_such_shard, shard_does_not_exist};
use crate::kinesis::{epoch_seconds, in_range, required};
use crate::log::NewRecord;
use crate::protocol::error::{ApiError, ApiResult};
use crate::runtime::ShardKey;
use crate::service::Service;
use crate::stream::hashing::{hash_partition_key, parse_explicit_hash_key};
use crate::stream::meta::{shard_id, RecordDistribution, StreamMeta, StreamStatus};
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
    pub stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    pub stream_arn: Option<String>,
    data: Option<String>,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
    sequence_number_for_ordering: Option<String>,
    stream_id: Option<String>,
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
    pub stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    pub stream_arn: Option<String>,
    records: Option<Vec<PutRecordsEntry>>,
    stream_id: Option<String>,
}

/// Where a put goes, as its request names it.
pub struct Target {
    pub stream_name: Option<String>,
    pub stream_arn: Option<String>,
    pub stream_id: Option<String>,
}

/// A record's data as the request carries it.
pub enum Blob<'a> {
    /// Base64 text (JSON).
    Base64(&'a [u8]),
    /// The bytes themselves (a CBOR byte string, a slice of the request body).
    Raw(Bytes),
}

/// One record of a put, borrowed from its request.
pub struct PutEntry<'a> {
    pub data: Option<Blob<'a>>,
    pub partition_key: Option<&'a str>,
    pub explicit_hash_key: Option<&'a str>,
}

/// Decodes and checks the records of a put, in AWS's order per record: Data present, the
/// partition key's length, the data's base64, the explicit hash key. All base64 is decoded into
/// one buffer that the records share.
fn decode_records<'a>(entries: &[PutEntry<'a>], indexed: bool) -> ApiResult<Vec<Decoded<'a>>> {
    enum Span {
        Shared(std::ops::Range<usize>),
        Own(Bytes),
    }
    let text: usize = entries.iter().map(|e| if let Some(Blob::Base64(t)) = &e.data { t.len() } else { 0 }).sum();
    let mut buf = Vec::with_capacity(base64_simd::STANDARD.estimated_decoded_length(text));
    let mut checked = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let index = indexed.then_some(i);
        let Some(data) = &e.data else { return required(None, &format!("{}data", member(index))) };
        if let Some(k) = e.partition_key {
            let key_chars = k.encode_utf16().count();
            if key_chars == 0 || key_chars > PARTITION_KEY_MAX_CHARS {
                let bound = if key_chars == 0 { "greater than or equal to 1" } else { "less than or equal to 256" };
                return Err(ApiError::validation(
                    k,
                    &format!("{}partitionKey", member(index)),
                    &format!("Member must have length {bound}"),
                ));
            }
        }
        let span = match data {
            // SIMD base64, strict as AWS is: padded, and the unused bits of the last digit zero.
            Blob::Base64(t) => {
                let start = buf.len();
                base64_simd::STANDARD
                    .decode_append(t, &mut buf)
                    .map_err(|_| ApiError::Serialization(format!("{}Data is not valid base64.", member(index))))?;
                Span::Shared(start..buf.len())
            }
            Blob::Raw(b) => Span::Own(b.clone()),
        };
        let hash = match e.explicit_hash_key {
            Some(h) => Some(parse_explicit_hash_key(h)?),
            None => None,
        };
        checked.push((span, e.partition_key, hash, index));
    }
    let shared = Bytes::from(buf);
    Ok(checked
        .into_iter()
        .map(|(span, partition_key, hash, index)| Decoded {
            data: match span {
                Span::Shared(r) => shared.slice(r),
                Span::Own(b) => b,
            },
            partition_key,
            hash,
            index,
        })
        .collect())
}

/// The member path of PutRecords entry `index` in messages (`records.N.member.`); empty for
/// PutRecord. Built only when a message needs it.
fn member(index: Option<usize>) -> String {
    match index {
        Some(i) => format!("records.{}.member.", i + 1),
        None => String::new(),
    }
}

/// A StreamId given with a put (the fast path skips the model's checks) must be the stream's.
fn check_stream_id(svc: &Service, meta: &StreamMeta, id: Option<&str>) -> ApiResult<()> {
    match id {
        Some(id) if id != meta.stream_id() => Err(svc.not_found(&meta.name)),
        _ => Ok(()),
    }
}

/// A record as decoded, before the stream's own rules (size, distribution) apply.
struct Decoded<'a> {
    data: Bytes,
    partition_key: Option<&'a str>,
    hash: Option<u128>,
    /// The entry's place in PutRecords; `None` for PutRecord.
    index: Option<usize>,
}

/// Applies the stream's rules to decoded records: its maximum record size, and its distribution
/// (by key, or AUTO: evenly over the open shards, keys ignored).
fn route_for(meta: &StreamMeta, decoded: Vec<Decoded>) -> ApiResult<Vec<Routed>> {
    let max = meta.max_record_bytes();
    let auto = meta.distribution == RecordDistribution::Auto;
    let mut out = Vec::with_capacity(decoded.len());
    for d in decoded {
        if d.data.len() > max {
            return Err(ApiError::validation(
                format!("java.nio.HeapByteBuffer[pos=0 lim={} cap={}]", d.data.len(), d.data.len()),
                &format!("{}data", member(d.index)),
                &format!("Member must have length less than or equal to {max}"),
            ));
        }
        let partition_key = match (d.partition_key, auto) {
            (Some(k), _) => k,
            (None, true) => "",
            (None, false) => return required(None, &format!("{}partitionKey", member(d.index))),
        };
        if d.data.len() + partition_key.len() > max {
            return Err(ApiError::InvalidArgument(format!(
                "The size of the record (data plus partition key, {} bytes) exceeds the stream's limit of {} KiB.",
                d.data.len() + partition_key.len(),
                meta.max_record_size_kib
            )));
        }
        let hash = match (auto, d.hash) {
            (true, _) => spread_hash(meta),
            (false, Some(h)) => h,
            (false, None) => hash_partition_key(partition_key),
        };
        let partition_key = if partition_key.is_empty() { hash.to_string() } else { partition_key.to_owned() };
        out.push(Routed { hash, record: NewRecord { partition_key, data: d.data } });
    }
    Ok(out)
}

/// What a PutRecord wrote, ready to be answered in any protocol.
pub struct PutRecordOutcome {
    pub stream_id: u64,
    pub shard: u32,
    pub ordinal: u64,
    pub encrypted: bool,
}

impl PutRecordOutcome {
    pub fn to_value(&self) -> Value {
        json!({
            "ShardId": shard_id(self.shard),
            "SequenceNumber": SeqNo::record(self.stream_id, self.shard, self.ordinal).encode(),
            "EncryptionType": encryption_type(self.encrypted),
        })
    }
}

/// What a PutRecords did, per record in request order, ready to be answered in any protocol.
pub struct PutRecordsOutcome {
    pub stream_id: u64,
    pub encrypted: bool,
    /// Each record's shard and ordinal, or the error code and message AWS reports for it.
    pub results: Vec<Result<(u32, u64), RecordFailure>>,
}

/// A record a PutRecords did not write: the error code and message AWS reports for it.
pub type RecordFailure = (&'static str, String);

impl PutRecordsOutcome {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| r.is_err()).count()
    }

    pub fn to_value(&self) -> Value {
        let results: Vec<Value> = self
            .results
            .iter()
            .map(|r| match r {
                Ok((shard, ordinal)) => json!({
                    "SequenceNumber": SeqNo::record(self.stream_id, *shard, *ordinal).encode(),
                    "ShardId": shard_id(*shard),
                }),
                Err((code, message)) => json!({"ErrorCode": code, "ErrorMessage": message}),
            })
            .collect();
        json!({
            "FailedRecordCount": self.failed(),
            "Records": results,
            "EncryptionType": encryption_type(self.encrypted),
        })
    }
}

pub fn encryption_type(encrypted: bool) -> &'static str {
    if encrypted {
        "KMS"
    } else {
        "NONE"
    }
}

pub async fn put_record(svc: &Arc<Service>, input: PutRecordInput) -> ApiResult<Value> {
    let target = Target { stream_name: input.stream_name, stream_arn: input.stream_arn, stream_id: input.stream_id };
    let entry = PutEntry {
        data: input.data.as_deref().map(|d| Blob::Base64(d.as_bytes())),
        partition_key: input.partition_key.as_deref(),
        explicit_hash_key: input.explicit_hash_key.as_deref(),
    };
    Ok(put_record_entry(svc, &target, entry, input.sequence_number_for_ordering.as_deref()).await?.to_value())
}

/// PutRecord of one decoded entry.
pub async fn put_record_entry(
    svc: &Arc<Service>,
    target: &Target,
    entry: PutEntry<'_>,
    sequence_number_for_ordering: Option<&str>,
) -> ApiResult<PutRecordOutcome> {
    let decoded = decode_records(std::slice::from_ref(&entry), false)?;
    let meta = svc.resolve(target.stream_name.as_deref(), target.stream_arn.as_deref())?;
    svc.writable(&meta)?;
    check_stream_id(svc, &meta, target.stream_id.as_deref())?;
    let routed = route_for(&meta, decoded)?;
    if let Some(s) = sequence_number_for_ordering {
        // Only a sequence number this stream has issued, of one of its shards, orders a put.
        let issued = SeqNo::parse(s).is_ok_and(|q| q.stream_id == meta.id && meta.shard(q.shard_index).is_some());
        if !issued {
            return Err(ApiError::InvalidArgument(format!(
                "ExclusiveMinimumSequenceNumber {s} used in PutRecord on stream {} under account {} is invalid.",
                meta.name, svc.cfg.account_id
            )));
        }
    }
    let started = Instant::now();
    let (shard, ordinal) = append_routed(svc, &meta, routed).await.remove(0)?;
    svc.metrics.record_put_latency(&meta.name, started.elapsed());
    Ok(PutRecordOutcome { stream_id: meta.id, shard, ordinal, encrypted: meta.encryption.is_some() })
}

pub async fn put_records(svc: &Arc<Service>, input: PutRecordsInput) -> ApiResult<Value> {
    let target = Target { stream_name: input.stream_name, stream_arn: input.stream_arn, stream_id: input.stream_id };
    let entries = input.records.as_ref().map(|records| {
        records
            .iter()
            .map(|e| PutEntry {
                data: e.data.as_deref().map(|d| Blob::Base64(d.as_bytes())),
                partition_key: e.partition_key.as_deref(),
                explicit_hash_key: e.explicit_hash_key.as_deref(),
            })
            .collect()
    });
    Ok(put_records_entries(svc, &target, entries).await?.to_value())
}

/// PutRecords of decoded entries (`None`: the request has no Records).
pub async fn put_records_entries(
    svc: &Arc<Service>,
    target: &Target,
    entries: Option<Vec<PutEntry<'_>>>,
) -> ApiResult<PutRecordsOutcome> {
    let entries = required(entries, "records")?;
    if entries.is_empty() || entries.len() > PUT_RECORDS_MAX_RECORDS {
        return Err(ApiError::validation(
            format!("{} records", entries.len()),
            "records",
            "Member must have length less than or equal to 500 and greater than or equal to 1",
        ));
    }
    let decoded = decode_records(&entries, true)?;
    let meta = svc.resolve(target.stream_name.as_deref(), target.stream_arn.as_deref())?;
    svc.writable(&meta)?;
    check_stream_id(svc, &meta, target.stream_id.as_deref())?;
    let routed = route_for(&meta, decoded)?;
    let total: usize = routed.iter().map(|r| r.record.data.len() + r.record.partition_key.len()).sum();
    let limit = PUT_RECORDS_MAX_BYTES.max(meta.max_record_bytes());
    if total > limit {
        return Err(ApiError::InvalidArgument(format!(
            "Records size exceeds {} MiB limit: {total} bytes of data and partition keys.",
            limit >> 20
        )));
    }
    let started = Instant::now();
    let outcomes = append_routed(svc, &meta, routed).await;
    svc.metrics.record_put_latency(&meta.name, started.elapsed());
    let results = outcomes
        .into_iter()
        .map(|o| {
            o.map_err(|e| match e {
                // AWS reports only these two codes per record.
                ApiError::ProvisionedThroughputExceeded(_) => (
                    "ProvisionedThroughputExceededException",
                    format!("Rate exceeded for stream {} under account {}.", meta.name, svc.cfg.account_id),
                ),
                other => ("InternalFailure", other.message().to_owned()),
            })
        })
        .collect();
    Ok(PutRecordsOutcome { stream_id: meta.id, encrypted: meta.encryption.is_some(), results })
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
    let meta = svc.resolve(input.stream_name.as_deref(), input.stream_arn.as_deref()).map_err(|e| {
        match (&e, input.stream_name.as_deref()) {
            (ApiError::ResourceNotFound(_), Some(name)) => no_such_shard(svc, name, &shard_id_text),
            _ => e,
        }
    })?;
    if meta.status == StreamStatus::Creating {
        return Err(no_such_shard(svc, &meta.name, &shard_id_text));
    }
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
    stream_arn: Option<String>,
}

pub async fn get_records(svc: &Arc<Service>, input: GetRecordsInput) -> ApiResult<Value> {
    Ok(get_records_outcome(svc, input).await?.to_value())
}

/// What a GetRecords read, ready to be answered in any protocol.
pub struct GetRecordsOutcome {
    meta: Arc<StreamMeta>,
    shard_index: u32,
    records: Vec<crate::log::Record>,
    /// `None` when a closed shard was read to its end.
    next_iterator: Option<String>,
    millis_behind: i64,
    child_shards: Option<Value>,
}

impl GetRecordsOutcome {
    pub fn to_value(&self) -> Value {
        let records: Vec<Value> = self.records.iter().map(|r| record_json(&self.meta, self.shard_index, r)).collect();
        match (&self.next_iterator, &self.child_shards) {
            (Some(next), _) => json!({
                "Records": records,
                "NextShardIterator": next,
                "MillisBehindLatest": self.millis_behind,
            }),
            (None, children) => json!({
                "Records": records,
                "MillisBehindLatest": self.millis_behind,
                "ChildShards": children.clone().unwrap_or(Value::Null),
            }),
        }
    }

    /// The JSON answer written directly: what [`GetRecordsOutcome::to_value`] serializes to, with
    /// the data base64-encoded straight into the body.
    pub fn to_json(&self) -> Vec<u8> {
        let data: usize = self.records.iter().map(|r| r.data.len().div_ceil(3) * 4 + r.partition_key.len() + 160).sum();
        let mut out = Vec::with_capacity(data + 256);
        out.extend_from_slice(b"{\"Records\":[");
        for (i, r) in self.records.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"SequenceNumber\":\"");
            SeqNo::record(self.meta.id, self.shard_index, r.ordinal).write_to(&mut out);
            out.extend_from_slice(b"\",\"ApproximateArrivalTimestamp\":");
            write_json(&mut out, &epoch_seconds(r.ts_ms));
            out.extend_from_slice(b",\"Data\":\"");
            base64_simd::STANDARD.encode_append(&r.data, &mut out);
            out.extend_from_slice(b"\",\"PartitionKey\":");
            write_json(&mut out, &r.partition_key);
            out.push(b'}');
        }
        out.extend_from_slice(b"]");
        if let Some(next) = &self.next_iterator {
            out.extend_from_slice(b",\"NextShardIterator\":");
            write_json(&mut out, next);
        }
        out.extend_from_slice(b",\"MillisBehindLatest\":");
        out.extend_from_slice(self.millis_behind.to_string().as_bytes());
        if self.next_iterator.is_none() {
            out.extend_from_slice(b",\"ChildShards\":");
            write_json(&mut out, self.child_shards.as_ref().unwrap_or(&Value::Null));
        }
        out.push(b'}');
        out
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(&mut *out, v).expect("writing to a Vec cannot fail");
}

pub async fn get_records_outcome(svc: &Arc<Service>, input: GetRecordsInput) -> ApiResult<GetRecordsOutcome> {
    let text = required(input.shard_iterator, "shardIterator")?;
    // Some clients pass the iterator with the double quotes of its JSON string around it.
    let text = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.to_owned(),
        None => text,
    };
    if text.is_empty() || text.len() > 512 {
        return Err(ApiError::validation(&text, "shardIterator", "Member must have length less than or equal to 512"));
    }
    let limit = input.limit.unwrap_or(GET_RECORDS_MAX_RECORDS);
    in_range(limit, 1, GET_RECORDS_MAX_RECORDS, "limit")?;
    let now = svc.now_ms();
    let it = ShardIterator::decode(&text, now)?;
    let meta = svc
        .stream_by_id(it.stream_id)
        // The daemon's internal streams are not read through the API (an iterator can be forged).
        .filter(|m| !crate::stream::meta::is_internal_name(&m.name))
        .ok_or_else(|| match svc.deleted_stream_name(it.stream_id) {
            Some(name) => shard_does_not_exist(svc, &name, it.shard_index),
            None => ApiError::ResourceNotFound("The stream this shard iterator belongs to no longer exists.".into()),
        })?;
    // The iterator names the stream read; a StreamARN given beside it must be that stream's.
    if let Some(given) = input.stream_arn.as_deref().filter(|a| svc.stream_of_arn(a).as_deref() != Some(&meta.name)) {
        return Err(crate::kinesis::access::iterator_of_another_stream(given));
    }
    svc.writable(&meta)?;
    let shard = meta.shard(it.shard_index).ok_or_else(|| shard_does_not_exist(svc, &meta.name, it.shard_index))?;
    let key = ShardKey { stream_id: meta.id, shard_index: shard.index };
    if let Some(limits) = &svc.limits {
        if !limits.allow_get(key) {
            svc.metrics.record_throttled(&meta.name, &shard.shard_id(), false, 1);
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
    let bytes: u64 = reply.records.iter().map(|r| r.data.len() as u64).sum();
    svc.metrics.record_get(&meta.name, &shard.shard_id(), reply.records.len() as u64, bytes);
    let behind = match reply.records.last() {
        _ if reply.next >= reply.tip => 0,
        Some(last) => (reply.last_ts_ms - last.ts_ms).max(0),
        None => 0,
    };
    svc.metrics.record_iterator_age(&meta.name, &shard.shard_id(), behind.max(0) as u64);
    let shard_index = shard.index;
    if reply.closed && reply.next >= reply.tip {
        // A closed shard read to its end: no next iterator, and where its keys went.
        let children = crate::kinesis::fanout::child_shards_when_known(svc, meta.id, shard_index).await;
        return Ok(GetRecordsOutcome {
            meta,
            shard_index,
            records: reply.records,
            next_iterator: None,
            millis_behind: 0,
            child_shards: Some(Value::Array(children)),
        });
    }
    let next = ShardIterator { ordinal: reply.next, issued_ms: now, ..it };
    Ok(GetRecordsOutcome {
        meta,
        shard_index,
        records: reply.records,
        next_iterator: Some(next.encode()),
        millis_behind: behind,
        child_shards: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::meta::StreamMode;

    #[test]
    fn the_direct_get_records_answer_is_the_value_answer() {
        let meta = Arc::new(StreamMeta::new("s".into(), 9, StreamMode::Provisioned, 2, 0));
        let records = vec![
            crate::log::Record {
                ordinal: 0,
                ts_ms: 1_764_000_000_123,
                partition_key: "k\"\n1".into(),
                data: Bytes::new(),
            },
            crate::log::Record {
                ordinal: 77,
                ts_ms: 1_764_000_000_000,
                partition_key: "é".into(),
                data: Bytes::from((0..=255u8).collect::<Vec<_>>()),
            },
        ];
        let open = GetRecordsOutcome {
            meta: meta.clone(),
            shard_index: 1,
            records: records.clone(),
            next_iterator: Some("AAAA/+x".into()),
            millis_behind: 12,
            child_shards: None,
        };
        let closed = GetRecordsOutcome {
            meta,
            shard_index: 1,
            records,
            next_iterator: None,
            millis_behind: 0,
            child_shards: Some(json!([{"ShardId": "shardId-000000000002", "ParentShards": ["shardId-000000000001"]}])),
        };
        for o in [open, closed] {
            let direct: Value = serde_json::from_slice(&o.to_json()).unwrap();
            assert_eq!(direct, o.to_value());
            assert_eq!(direct["Records"][1]["PartitionKey"], "é");
        }
    }
}
