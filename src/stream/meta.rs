//! The metadata a stream persists in rocksdb (as JSON, versioned by its fields' defaults): its
//! status, mode, retention, tags and shards with their hash ranges and lineage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::hashing::uniform_ranges;
use super::seqno::SeqNo;

pub const RETENTION_HOURS_MIN: u32 = 24;
pub const RETENTION_HOURS_MAX: u32 = 8760;
/// Shards an ON_DEMAND stream starts with, as on AWS.
pub const ON_DEMAND_INITIAL_SHARDS: u32 = 4;
pub const TAGS_PER_STREAM_MAX: usize = 50;
/// A record's largest size (data plus partition key) unless UpdateMaxRecordSize says otherwise.
pub const MAX_RECORD_SIZE_KIB_DEFAULT: u32 = 1024;
/// Enhanced monitoring's shard-level metrics, in the order AWS lists them.
pub const SHARD_LEVEL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

/// How PutRecord(s) choose a record's shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RecordDistribution {
    /// By the MD5 of the partition key, or the explicit hash key.
    #[default]
    #[serde(rename = "USER_PARTITION_KEY")]
    UserPartitionKey,
    /// Evenly over the open shards, whatever the keys.
    #[serde(rename = "AUTO")]
    Auto,
}

impl RecordDistribution {
    pub fn as_str(&self) -> &'static str {
        match self {
            RecordDistribution::UserPartitionKey => "USER_PARTITION_KEY",
            RecordDistribution::Auto => "AUTO",
        }
    }
}

fn max_record_size_default() -> u32 {
    MAX_RECORD_SIZE_KIB_DEFAULT
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamStatus {
    #[serde(rename = "CREATING")]
    Creating,
    #[serde(rename = "ACTIVE")]
    Active,
    #[serde(rename = "UPDATING")]
    Updating,
    #[serde(rename = "DELETING")]
    Deleting,
}

impl StreamStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            StreamStatus::Creating => "CREATING",
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Updating => "UPDATING",
            StreamStatus::Deleting => "DELETING",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMode {
    #[serde(rename = "PROVISIONED")]
    Provisioned,
    #[serde(rename = "ON_DEMAND")]
    OnDemand,
}

impl StreamMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }
}

/// u128 values stored as decimal strings (JSON has no u128).
mod u128_text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub index: u32,
    /// The hash key range, inclusive.
    #[serde(with = "u128_text")]
    pub hash_start: u128,
    #[serde(with = "u128_text")]
    pub hash_end: u128,
    #[serde(default)]
    pub parent: Option<u32>,
    #[serde(default)]
    pub adjacent_parent: Option<u32>,
    /// Set when the shard is closed: the ordinal one past its last record.
    #[serde(default)]
    pub end_ordinal: Option<u64>,
    /// When the shard was closed by a reshard.
    #[serde(default)]
    pub closed_ms: Option<i64>,
    #[serde(default)]
    pub created_ms: i64,
}

impl ShardMeta {
    pub fn shard_id(&self) -> String {
        shard_id(self.index)
    }

    pub fn range(&self) -> (u128, u128) {
        (self.hash_start, self.hash_end)
    }

    pub fn is_open(&self) -> bool {
        self.end_ordinal.is_none()
    }
}

pub fn shard_id(index: u32) -> String {
    let mut out = Vec::with_capacity(20);
    write_shard_id(&mut out, index);
    String::from_utf8(out).expect("ASCII")
}

/// Appends the id of shard `index` (what [`shard_id`] returns) to `out`.
pub fn write_shard_id(out: &mut Vec<u8>, index: u32) {
    out.extend_from_slice(b"shardId-");
    crate::stream::seqno::push_padded(out, u64::from(index), 12);
}

/// Parses a shard id as AWS does: the digits after the first `-` (or the whole text when there is
/// none), at most 2147483647. So `shardId-000000000003`, `shardId-3`, `shard-3` and `3` are all
/// shard 3.
pub fn parse_shard_id(text: &str) -> Option<u32> {
    let digits = match text.split_once('-') {
        Some((_, rest)) => rest.split('-').next().unwrap_or(rest),
        None => text,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u32>().ok().filter(|&i| i <= i32::MAX as u32)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsumerStatus {
    #[serde(rename = "CREATING")]
    Creating,
    #[serde(rename = "ACTIVE")]
    Active,
    #[serde(rename = "DELETING")]
    Deleting,
}

impl ConsumerStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConsumerStatus::Creating => "CREATING",
            ConsumerStatus::Active => "ACTIVE",
            ConsumerStatus::Deleting => "DELETING",
        }
    }
}

/// A registered enhanced fan-out consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMeta {
    pub name: String,
    pub created_ms: i64,
    pub status: ConsumerStatus,
}

impl ConsumerMeta {
    /// `<stream ARN>/consumer/<name>:<creation epoch seconds>`, as AWS forms it.
    pub fn arn(&self, stream_arn: &str) -> String {
        format!("{stream_arn}/consumer/{}:{}", self.name, self.created_ms / 1000)
    }
}

/// (stream name, consumer name, creation epoch seconds) of a consumer ARN.
pub fn parse_consumer_arn(arn: &str) -> Option<(&str, &str, i64)> {
    let mut parts = arn.splitn(6, ':');
    let (arn_lit, _partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    let (_region, _account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    if arn_lit != "arn" || service != "kinesis" {
        return None;
    }
    let rest = resource.strip_prefix("stream/")?;
    let (stream, consumer) = rest.split_once("/consumer/")?;
    let (name, epoch) = consumer.rsplit_once(':')?;
    if stream.is_empty() || name.is_empty() {
        return None;
    }
    Some((stream, name, epoch.parse().ok()?))
}

/// Streams that services inside the daemon keep for themselves (a DirectPut delivery stream's
/// records) are named with a leading `~`, which the Kinesis name pattern refuses.
pub fn is_internal_name(name: &str) -> bool {
    name.starts_with('~')
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    /// Unique per incarnation of a name; part of every sequence number and iterator.
    pub id: u64,
    pub status: StreamStatus,
    pub mode: StreamMode,
    pub retention_hours: u32,
    pub created_ms: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub shards: Vec<ShardMeta>,
    #[serde(default)]
    pub consumers: Vec<ConsumerMeta>,
    /// Enhanced monitoring: the shard-level metrics enabled (AWS's names), in AWS's order.
    #[serde(default)]
    pub shard_level_metrics: Vec<String>,
    /// The largest record (data plus partition key) PutRecord(s) accept, in KiB.
    #[serde(default = "max_record_size_default")]
    pub max_record_size_kib: u32,
    /// On-demand warm throughput asked for (MiB/s), if any.
    #[serde(default)]
    pub warm_throughput_mibps: Option<u32>,
    #[serde(default)]
    pub distribution: RecordDistribution,
    /// Encryption at rest: the KMS KeyId new records are sealed under (`None`: not encrypted).
    #[serde(default)]
    pub encryption: Option<String>,
    /// While a reshard's stream is UPDATING: the shards as they were before it, which
    /// DescribeStream shows until the stream is ACTIVE again, as AWS does.
    #[serde(default)]
    pub previous_layout: Option<Vec<ShardMeta>>,
}

impl StreamMeta {
    pub fn new(name: String, id: u64, mode: StreamMode, shard_count: u32, now_ms: i64) -> StreamMeta {
        let shards = uniform_ranges(shard_count)
            .into_iter()
            .enumerate()
            .map(|(i, (s, e))| ShardMeta {
                index: i as u32,
                hash_start: s,
                hash_end: e,
                parent: None,
                adjacent_parent: None,
                end_ordinal: None,
                closed_ms: None,
                created_ms: now_ms,
            })
            .collect();
        StreamMeta {
            name,
            id,
            status: StreamStatus::Creating,
            mode,
            retention_hours: RETENTION_HOURS_MIN,
            created_ms: now_ms,
            tags: BTreeMap::new(),
            shards,
            consumers: Vec::new(),
            shard_level_metrics: Vec::new(),
            max_record_size_kib: MAX_RECORD_SIZE_KIB_DEFAULT,
            warm_throughput_mibps: None,
            distribution: RecordDistribution::UserPartitionKey,
            encryption: None,
            previous_layout: None,
        }
    }

    pub fn arn(&self, region: &str, account: &str) -> String {
        stream_arn(region, account, &self.name)
    }

    /// The stream's name as its account knows it (its name inside the daemon is [`qualified`]).
    pub fn display_name(&self) -> &str {
        split_qualified(&self.name).1
    }

    pub fn open_shard_count(&self) -> u32 {
        self.shards.iter().filter(|s| s.is_open()).count() as u32
    }

    /// The open shard whose hash range holds `hash`.
    pub fn shard_for_hash(&self, hash: u128) -> Option<&ShardMeta> {
        self.shards.iter().filter(|s| s.is_open()).find(|s| {
            let (start, end) = s.range();
            start <= hash && hash <= end
        })
    }

    pub fn shard(&self, index: u32) -> Option<&ShardMeta> {
        self.shards.iter().find(|s| s.index == index)
    }

    pub fn next_shard_index(&self) -> u32 {
        self.shards.iter().map(|s| s.index + 1).max().unwrap_or(0)
    }

    /// The stream's StreamId as AWS shapes it (`[a-z0-9]{20}-[a-z0-9]{3}`), derived from its id.
    pub fn stream_id(&self) -> String {
        let check = crc32fast::hash(&self.id.to_be_bytes()) % 1000;
        format!("{:020x}-{check:03}", self.id)
    }

    /// The largest record this stream accepts, in bytes.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_size_kib as usize * 1024
    }

    pub fn starting_sequence_number(&self, shard: &ShardMeta) -> String {
        SeqNo::shard_start(self.id, shard.index).encode()
    }
}

/// The ARN of the stream named `name` inside the daemon (see [`qualified`]): in `account` (the
/// daemon's), or in the account its name is qualified with.
pub fn stream_arn(region: &str, account: &str, name: &str) -> String {
    let (owner, name) = split_qualified(name);
    format!("arn:aws:kinesis:{region}:{}:stream/{name}", owner.unwrap_or(account))
}

/// The name a stream of `account` has inside the daemon, where one registry holds every
/// account's streams: its own name in the daemon's account (`daemon`), `<account>/<name>` in
/// another (stream names have no `/`, so the two never meet).
pub fn qualified(account: &str, daemon: &str, name: &str) -> String {
    if account == daemon {
        name.to_owned()
    } else {
        format!("{account}/{name}")
    }
}

/// The account (`None`: the daemon's) and the name of a name inside the daemon ([`qualified`]).
pub fn split_qualified(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((account, name)) => (Some(account), name),
        None => (None, name),
    }
}

/// The account field of an ARN.
pub fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4)
}

/// The stream name inside a stream ARN (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`).
pub fn stream_name_from_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (arn_lit, _partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    let (_region, _account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    if arn_lit != "arn" || service != "kinesis" {
        return None;
    }
    let name = resource.strip_prefix("stream/")?;
    // A consumer ARN (stream/NAME/consumer/...) is not a stream ARN.
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids() {
        assert_eq!(shard_id(3), "shardId-000000000003");
        assert_eq!(parse_shard_id("shardId-000000000003"), Some(3));
        // The forms AWS accepts: whatever precedes the first '-', or no prefix at all.
        for text in ["shard-3", "shardId-3", "3", "a-000000000003", "-3"] {
            assert_eq!(parse_shard_id(text), Some(3), "{text}");
        }
        assert_eq!(parse_shard_id("2147483647"), Some(2_147_483_647));
        for text in ["shardId-", "2147483648", "shardId-002147483648", "ABKLFD8", "2.14E4", ""] {
            assert_eq!(parse_shard_id(text), None, "{text}");
        }
    }

    #[test]
    fn arns() {
        let arn = stream_arn("us-east-1", "123456789012", "s1");
        assert_eq!(stream_name_from_arn(&arn), Some("s1"));
        assert_eq!(stream_name_from_arn("arn:aws:kinesis:us-east-1:1:stream/s/consumer/c:1"), None);
        assert_eq!(stream_name_from_arn("arn:aws:s3:::bucket"), None);
    }

    #[test]
    fn consumer_arns_round_trip() {
        let c = ConsumerMeta { name: "app".into(), created_ms: 1_700_000_000_123, status: ConsumerStatus::Active };
        let arn = c.arn(&stream_arn("us-east-1", "000000000000", "s"));
        assert_eq!(arn, "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/app:1700000000");
        assert_eq!(parse_consumer_arn(&arn), Some(("s", "app", 1_700_000_000)));
        assert_eq!(parse_consumer_arn("arn:aws:kinesis:us-east-1:0:stream/s"), None);
    }

    #[test]
    fn routing_covers_every_hash() {
        let m = StreamMeta::new("s".into(), 1, StreamMode::Provisioned, 3, 0);
        for h in [0u128, 1, u128::MAX / 3, u128::MAX / 2, u128::MAX] {
            assert!(m.shard_for_hash(h).is_some());
        }
    }
}
