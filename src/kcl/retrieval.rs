//! Fetching a shard's records for a record processor, as KCL's two retrieval modes do:
//! polling (`GetShardIterator` + `GetRecords` with `maxRecords`, `idleTimeBetweenReadsInMillis`
//! between calls) and enhanced fan-out (`SubscribeToShard` event streams, resubscribed after each
//! subscription's five minutes from the last continuation sequence number).
//!
//! Both hand out de-aggregated records ([`super::kpl`]) and drop what a checkpoint already covers:
//! a worker resuming at checkpoint (s, n) starts AT_SEQUENCE_NUMBER s and skips sub-records up to
//! n, as KCL does.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::client::{AwsClient, CallError};
use super::kpl;

/// One user record as a record processor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KclRecord {
    pub data: Vec<u8>,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub sequence_number: String,
    /// The record's index inside a KPL aggregate; 0 for a plain record.
    pub sub_sequence_number: u64,
    /// Epoch milliseconds.
    pub approximate_arrival_timestamp: i64,
    pub aggregated: bool,
}

/// A shard's child, from `ChildShards` at the shard's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildShard {
    pub shard_id: String,
    pub parents: Vec<String>,
    pub hash_range: Option<(String, String)>,
}

/// What one fetch brought.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<KclRecord>,
    pub millis_behind_latest: i64,
    /// Set when the shard has no more records: its children.
    pub shard_end: Option<Vec<ChildShard>>,
}

/// Where reading starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    TrimHorizon,
    Latest,
    /// Epoch milliseconds.
    AtTimestamp(i64),
    /// A checkpoint: records up to (sequence number, sub-sequence number) are done.
    Checkpoint(String, u64),
}

/// Orders two sequence numbers (decimal digit strings of any length, as BigInteger does).
pub fn cmp_seq(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

pub fn is_sequence_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The stream's identity in requests: `StreamARN` wins over `StreamName`, as in KCL.
#[derive(Debug, Clone)]
pub enum StreamRef {
    Name(String),
    Arn(String),
}

impl StreamRef {
    pub fn add_to(&self, req: &mut Value) {
        match self {
            StreamRef::Name(n) => req["StreamName"] = json!(n),
            StreamRef::Arn(a) => req["StreamARN"] = json!(a),
        }
    }

    pub fn display(&self) -> &str {
        match self {
            StreamRef::Name(n) | StreamRef::Arn(n) => n,
        }
    }
}

/// Turns Kinesis records (JSON, as GetRecords and SubscribeToShard events carry them) into user
/// records, de-aggregated, dropping what `skip` covers.
fn user_records(
    records: &[Value],
    hash_range: Option<(u128, u128)>,
    skip: &mut Option<(String, u64)>,
) -> Vec<KclRecord> {
    let mut out = Vec::new();
    for r in records {
        let Some(seq) = r["SequenceNumber"].as_str() else { continue };
        let data = r["Data"]
            .as_str()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .unwrap_or_default();
        let pk = r["PartitionKey"].as_str().unwrap_or_default();
        let arrival = r["ApproximateArrivalTimestamp"].as_f64().map(|s| (s * 1000.0).round() as i64).unwrap_or(0);
        for u in kpl::deaggregate(pk, &data, hash_range) {
            if let Some((s, n)) = skip.as_ref() {
                match cmp_seq(seq, s) {
                    Ordering::Less => continue,
                    Ordering::Equal if u.sub_sequence_number <= *n => continue,
                    _ => *skip = None,
                }
            }
            out.push(KclRecord {
                data: u.data,
                partition_key: u.partition_key,
                explicit_hash_key: u.explicit_hash_key,
                sequence_number: seq.to_owned(),
                sub_sequence_number: u.sub_sequence_number,
                approximate_arrival_timestamp: arrival,
                aggregated: u.aggregated,
            });
        }
    }
    out
}

fn child_shards(v: &Value) -> Vec<ChildShard> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    let hash_range = match (
                        c["HashKeyRange"]["StartingHashKey"].as_str(),
                        c["HashKeyRange"]["EndingHashKey"].as_str(),
                    ) {
                        (Some(a), Some(b)) => Some((a.to_owned(), b.to_owned())),
                        _ => None,
                    };
                    Some(ChildShard {
                        shard_id: c["ShardId"].as_str()?.to_owned(),
                        parents: c["ParentShards"]
                            .as_array()
                            .map(|p| p.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                            .unwrap_or_default(),
                        hash_range,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn parse_hash_range(r: &Option<(String, String)>) -> Option<(u128, u128)> {
    let (a, b) = r.as_ref()?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A shard's records, by either retrieval mode.
pub enum Fetcher {
    Polling(Poller),
    FanOut(Subscriber),
}

impl Fetcher {
    pub async fn next(&mut self) -> Result<Batch, CallError> {
        match self {
            Fetcher::Polling(p) => p.next().await,
            Fetcher::FanOut(s) => s.next().await,
        }
    }
}

fn starting(start: &Start, last_seq: &Option<String>) -> Value {
    if let Some(s) = last_seq {
        return json!({"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": s});
    }
    match start {
        Start::TrimHorizon => json!({"Type": "TRIM_HORIZON"}),
        Start::Latest => json!({"Type": "LATEST"}),
        Start::AtTimestamp(ms) => json!({"Type": "AT_TIMESTAMP", "Timestamp": *ms as f64 / 1000.0}),
        Start::Checkpoint(s, _) => json!({"Type": "AT_SEQUENCE_NUMBER", "SequenceNumber": s}),
    }
}

fn skip_of(start: &Start) -> Option<(String, u64)> {
    match start {
        Start::Checkpoint(s, n) => Some((s.clone(), *n)),
        _ => None,
    }
}

/// GetRecords polling of one shard.
pub struct Poller {
    kinesis: Arc<AwsClient>,
    stream: StreamRef,
    shard: String,
    start: Start,
    hash_range: Option<(u128, u128)>,
    limit: u32,
    idle: Duration,
    iterator: Option<String>,
    last_seq: Option<String>,
    skip: Option<(String, u64)>,
    last_call: Option<Instant>,
    was_empty: bool,
}

impl Poller {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kinesis: Arc<AwsClient>,
        stream: StreamRef,
        shard: &str,
        start: Start,
        hash_range: Option<(u128, u128)>,
        limit: u32,
        idle: Duration,
    ) -> Poller {
        let skip = skip_of(&start);
        Poller {
            kinesis,
            stream,
            shard: shard.to_owned(),
            start,
            hash_range,
            limit: limit.clamp(1, 10_000),
            idle,
            iterator: None,
            last_seq: None,
            skip,
            last_call: None,
            was_empty: false,
        }
    }

    async fn iterator(&mut self) -> Result<String, CallError> {
        let pos = starting(&self.start, &self.last_seq);
        let mut req = json!({"ShardId": self.shard, "ShardIteratorType": pos["Type"]});
        if let Some(s) = pos.get("SequenceNumber") {
            req["StartingSequenceNumber"] = s.clone();
        }
        if let Some(t) = pos.get("Timestamp") {
            req["Timestamp"] = t.clone();
        }
        self.stream.add_to(&mut req);
        let v = self.kinesis.call("GetShardIterator", &req).await?;
        v["ShardIterator"].as_str().map(str::to_owned).ok_or_else(|| CallError {
            status: 200,
            kind: "SerializationException".into(),
            message: "GetShardIterator answered no ShardIterator".into(),
        })
    }

    pub async fn next(&mut self) -> Result<Batch, CallError> {
        if let Some(at) = self.last_call {
            // At the tip, at least 50 ms between calls even when idleTimeBetweenReadsInMillis is 0.
            let idle = if self.was_empty { self.idle.max(Duration::from_millis(50)) } else { self.idle };
            tokio::time::sleep_until((at + idle).into()).await;
        }
        let iterator = match self.iterator.take() {
            Some(i) => i,
            None => self.iterator().await?,
        };
        self.last_call = Some(Instant::now());
        let mut req = json!({"ShardIterator": iterator, "Limit": self.limit});
        if let StreamRef::Arn(a) = &self.stream {
            req["StreamARN"] = json!(a);
        }
        let v = match self.kinesis.call("GetRecords", &req).await {
            Ok(v) => v,
            Err(e) => {
                // A failed call leaves the iterator to be fetched again from the last record.
                return Err(e);
            }
        };
        let raw = v["Records"].as_array().cloned().unwrap_or_default();
        if let Some(last) = raw.last().and_then(|r| r["SequenceNumber"].as_str()) {
            self.last_seq = Some(last.to_owned());
        }
        self.was_empty = raw.is_empty();
        let records = user_records(&raw, self.hash_range, &mut self.skip);
        let mut batch =
            Batch { records, millis_behind_latest: v["MillisBehindLatest"].as_i64().unwrap_or(0), shard_end: None };
        match v["NextShardIterator"].as_str() {
            Some(next) => self.iterator = Some(next.to_owned()),
            None => batch.shard_end = Some(child_shards(&v["ChildShards"])),
        }
        Ok(batch)
    }
}

/// Enhanced fan-out of one shard through a registered consumer.
pub struct Subscriber {
    kinesis: Arc<AwsClient>,
    consumer_arn: String,
    shard: String,
    start: Start,
    hash_range: Option<(u128, u128)>,
    last_seq: Option<String>,
    skip: Option<(String, u64)>,
    body: Option<hyper::body::Incoming>,
    buf: BytesMut,
}

impl Subscriber {
    pub fn new(
        kinesis: Arc<AwsClient>,
        consumer_arn: &str,
        shard: &str,
        start: Start,
        hash_range: Option<(u128, u128)>,
    ) -> Subscriber {
        let skip = skip_of(&start);
        Subscriber {
            kinesis,
            consumer_arn: consumer_arn.to_owned(),
            shard: shard.to_owned(),
            start,
            hash_range,
            last_seq: None,
            skip,
            body: None,
            buf: BytesMut::new(),
        }
    }

    async fn subscribe(&mut self) -> Result<(), CallError> {
        let req = json!({
            "ConsumerARN": self.consumer_arn,
            "ShardId": self.shard,
            "StartingPosition": starting(&self.start, &self.last_seq),
        });
        let resp = self.kinesis.stream("SubscribeToShard", &req).await?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let kind = v["__type"].as_str().unwrap_or("UnknownError");
            return Err(CallError {
                status,
                kind: kind.rsplit('#').next().unwrap_or(kind).to_owned(),
                message: v["message"].as_str().unwrap_or("").to_owned(),
            });
        }
        self.body = Some(resp.into_body());
        self.buf.clear();
        Ok(())
    }

    /// The next decoded event message of the current subscription, None when it ended.
    async fn message(&mut self) -> Result<Option<crate::protocol::eventstream::Message>, CallError> {
        use crate::protocol::eventstream;
        loop {
            match eventstream::decode(&self.buf) {
                Ok(Some((msg, used))) => {
                    let _ = self.buf.split_to(used);
                    return Ok(Some(msg));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(CallError {
                        status: 200,
                        kind: "SerializationException".into(),
                        message: format!("{e:?}"),
                    })
                }
            }
            let Some(body) = self.body.as_mut() else { return Ok(None) };
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    // The subscription is gone with its connection: the next call subscribes again.
                    self.body = None;
                    return Err(CallError { status: 0, kind: "ConnectionError".into(), message: e.to_string() });
                }
                None => {
                    self.body = None;
                    return Ok(None);
                }
            }
        }
    }

    pub async fn next(&mut self) -> Result<Batch, CallError> {
        loop {
            if self.body.is_none() {
                self.subscribe().await?;
            }
            let Some(msg) = self.message().await? else { continue };
            match (msg.header(":message-type"), msg.header(":event-type"), msg.header(":exception-type")) {
                (Some("event"), Some("SubscribeToShardEvent"), _) => {
                    let v: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
                    let raw = v["Records"].as_array().cloned().unwrap_or_default();
                    let records = user_records(&raw, self.hash_range, &mut self.skip);
                    let mut batch = Batch {
                        records,
                        millis_behind_latest: v["MillisBehindLatest"].as_i64().unwrap_or(0),
                        shard_end: None,
                    };
                    match v["ContinuationSequenceNumber"].as_str() {
                        Some(c) => self.last_seq = Some(c.to_owned()),
                        None => {
                            batch.shard_end = Some(child_shards(&v["ChildShards"]));
                            self.body = None;
                        }
                    }
                    return Ok(batch);
                }
                (Some("event"), _, _) => continue, // initial-response
                (_, _, Some(kind)) => {
                    self.body = None;
                    let v: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
                    return Err(CallError {
                        status: 200,
                        kind: kind.to_owned(),
                        message: v["message"].as_str().unwrap_or("").to_owned(),
                    });
                }
                _ => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_order_as_big_integers() {
        assert_eq!(cmp_seq("9", "10"), Ordering::Less);
        assert_eq!(cmp_seq("00012", "12"), Ordering::Equal);
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692538361571095921575989136588899";
        assert_eq!(cmp_seq(a, b), Ordering::Less);
        assert!(is_sequence_number(a) && !is_sequence_number("TRIM_HORIZON") && !is_sequence_number(""));
    }

    #[test]
    fn a_checkpoint_skips_what_it_covers_inside_an_aggregate() {
        let agg = kpl::aggregate(&[("a", None, b"1"), ("b", None, b"2"), ("c", None, b"3")]);
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let records = vec![
            json!({"SequenceNumber": "5", "Data": b64(b"x"), "PartitionKey": "p", "ApproximateArrivalTimestamp": 1.5}),
            json!({"SequenceNumber": "7", "Data": b64(&agg), "PartitionKey": "p", "ApproximateArrivalTimestamp": 2.0}),
            json!({"SequenceNumber": "9", "Data": b64(b"y"), "PartitionKey": "p", "ApproximateArrivalTimestamp": 3.0}),
        ];
        let mut skip = Some(("7".to_owned(), 1));
        let got = user_records(&records, None, &mut skip);
        let ids: Vec<(&str, u64)> = got.iter().map(|r| (r.sequence_number.as_str(), r.sub_sequence_number)).collect();
        assert_eq!(ids, [("7", 2), ("9", 0)]);
        assert_eq!(got[0].data, b"3");
        assert_eq!(got[1].approximate_arrival_timestamp, 3000);
        assert!(skip.is_none(), "skipping ends at the first record past the checkpoint");
        let mut none = None;
        assert_eq!(user_records(&records, None, &mut none).len(), 5);
    }

    #[test]
    fn children_from_child_shards() {
        let v = json!([{"ShardId": "shardId-000000000002", "ParentShards": ["shardId-000000000000", "shardId-000000000001"],
                        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "9"}}]);
        let c = child_shards(&v);
        assert_eq!(c[0].parents.len(), 2);
        assert_eq!(c[0].hash_range, Some(("0".into(), "9".into())));
        assert!(child_shards(&Value::Null).is_empty());
    }
}
