//! KPL aggregated records: the Kinesis Producer Library packs many user records into one Kinesis
//! record, and the KCL unpacks them. Pure: a record's data in, user records out.
//!
//! Format: the magic `F3 89 9A C2`, a protobuf `AggregatedRecord` (decoded with `prost`), then the
//! MD5 of the protobuf bytes. Data without the magic, or whose MD5 does not match, or that does not
//! decode, is one ordinary record, as the KCL treats it. Each user record gets the Kinesis record's
//! sequence number and its index as the sub-sequence number. If one sub-record's hash key lies
//! outside the shard's range (the KPL aggregated by a stale shard map), the KCL drops the whole
//! aggregate (`AggregatorUtil.deaggregate` removes what it had added and stops); so do we.

use md5::{Digest, Md5};
use prost::Message;

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<AggregatedEntry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AggregatedEntry {
    #[prost(uint64, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// One user record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
    /// Its index in the aggregate (0 for an ordinary record).
    pub sub_sequence_number: u64,
    /// Whether it came out of an aggregate.
    pub aggregated: bool,
}

/// The user records in a Kinesis record's data. With `shard_range` (inclusive hash keys), an
/// aggregate holding a record that does not belong to the shard yields nothing, as in the KCL;
/// `None` keeps them all.
pub fn deaggregate(partition_key: &str, data: &[u8], shard_range: Option<(u128, u128)>) -> Vec<UserRecord> {
    let plain = || {
        vec![UserRecord {
            partition_key: partition_key.to_owned(),
            explicit_hash_key: None,
            data: data.to_vec(),
            sub_sequence_number: 0,
            aggregated: false,
        }]
    };
    if data.len() < MAGIC.len() + DIGEST_LEN || data[..MAGIC.len()] != MAGIC {
        return plain();
    }
    let body = &data[MAGIC.len()..data.len() - DIGEST_LEN];
    if Md5::digest(body)[..] != data[data.len() - DIGEST_LEN..] {
        return plain();
    }
    let Ok(agg) = AggregatedRecord::decode(body) else { return plain() };
    let mut out = Vec::with_capacity(agg.records.len());
    for (i, r) in agg.records.into_iter().enumerate() {
        // A record that points outside the tables is malformed: the whole aggregate is then read
        // as one ordinary record (nothing is silently lost).
        let Some(key) = agg.partition_key_table.get(r.partition_key_index as usize) else { return plain() };
        let ehk = match r.explicit_hash_key_index {
            Some(j) => match agg.explicit_hash_key_table.get(j as usize) {
                Some(h) => Some(h.clone()),
                None => return plain(),
            },
            None => None,
        };
        if let Some((lo, hi)) = shard_range {
            let hash = match &ehk {
                Some(h) => h.parse::<u128>().ok(),
                None => Some(crate::stream::hashing::hash_partition_key(key)),
            };
            if hash.is_some_and(|h| h < lo || h > hi) {
                return Vec::new();
            }
        }
        out.push(UserRecord {
            partition_key: key.clone(),
            explicit_hash_key: ehk,
            data: r.data,
            sub_sequence_number: i as u64,
            aggregated: true,
        });
    }
    out
}

/// Packs user records (partition key, explicit hash key, data) as the KPL does.
pub fn aggregate(records: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut agg = AggregatedRecord::default();
    for (key, ehk, data) in records {
        let pk = index_of(&mut agg.partition_key_table, key);
        let eh = ehk.map(|h| index_of(&mut agg.explicit_hash_key_table, h));
        agg.records.push(AggregatedEntry {
            partition_key_index: pk,
            explicit_hash_key_index: eh,
            data: data.to_vec(),
            tags: Vec::new(),
        });
    }
    let body = agg.encode_to_vec();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

fn index_of(table: &mut Vec<String>, s: &str) -> u64 {
    match table.iter().position(|t| t == s) {
        Some(i) => i as u64,
        None => {
            table.push(s.to_owned());
            (table.len() - 1) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_round_trip_with_sub_sequence_numbers() {
        let packed = aggregate(&[("a", None, b"one"), ("b", Some("5"), b"two"), ("a", None, b"three")]);
        let out = deaggregate("outer", &packed, None);
        let got: Vec<(&str, Option<&str>, &[u8], u64)> = out
            .iter()
            .map(|r| (r.partition_key.as_str(), r.explicit_hash_key.as_deref(), &r.data[..], r.sub_sequence_number))
            .collect();
        assert_eq!(got, [("a", None, &b"one"[..], 0), ("b", Some("5"), &b"two"[..], 1), ("a", None, &b"three"[..], 2)]);
        assert!(out.iter().all(|r| r.aggregated));
    }

    #[test]
    fn anything_else_is_one_ordinary_record() {
        let mut packed = aggregate(&[("a", None, b"x")]);
        let last = packed.len() - 1;
        packed[last] ^= 1; // a wrong MD5
        for data in [&b"plain data"[..], &packed[..], &MAGIC[..], &[]] {
            let out = deaggregate("k", data, None);
            assert_eq!(out.len(), 1);
            assert_eq!((out[0].data.as_slice(), out[0].aggregated, out[0].partition_key.as_str()), (data, false, "k"));
        }
    }

    #[test]
    fn an_aggregate_reaching_outside_the_shard_is_dropped_whole() {
        let packed = aggregate(&[("a", Some("10"), b"in"), ("b", Some("1000"), b"out"), ("c", Some("20"), b"in")]);
        assert!(deaggregate("k", &packed, Some((0, 100))).is_empty());
        let inside = deaggregate("k", &packed, Some((0, 1000)));
        assert_eq!(inside.len(), 3);
        assert_eq!(inside[2].sub_sequence_number, 2);
    }
}
