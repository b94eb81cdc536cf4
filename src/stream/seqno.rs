//! Sequence numbers and shard iterators.
//!
//! A sequence number is a 56-digit decimal string, like AWS's:
//!
//! ```text
//! 49 | stream id (14 digits) | shard index (10 digits) | value (30 digits)
//! ```
//!
//! The value of a record's sequence number is its ordinal (its position in the shard: 0, 1, 2,
//! ...) plus one; value 0 is the shard's StartingSequenceNumber, which sorts before every record
//! as on AWS. So sequence numbers strictly increase per shard, compare correctly as strings and as
//! integers, map to a log position without a lookup, and `AFTER_SEQUENCE_NUMBER` of the starting
//! sequence number (or of a ContinuationSequenceNumber) is always well defined. The stream id changes when a stream of the same name is recreated, so a
//! sequence number of a deleted stream is refused rather than misread.
//!
//! A shard iterator is opaque to clients: base64 of a 33-byte token (version, stream id, shard
//! index, ordinal, issue time in ms) with a crc32c, valid for five minutes as on AWS.

use base64::Engine;

use crate::protocol::error::ApiError;

pub const SEQUENCE_NUMBER_DIGITS: usize = 56;
const PREFIX: &str = "49";

/// A position in a shard: which stream incarnation, which shard, and the value (ordinal + 1 of a
/// record, or 0 before the first record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqNo {
    pub stream_id: u64,
    pub shard_index: u32,
    pub value: u64,
}

impl SeqNo {
    /// The sequence number of the record at `ordinal`.
    pub fn record(stream_id: u64, shard_index: u32, ordinal: u64) -> SeqNo {
        SeqNo { stream_id, shard_index, value: ordinal + 1 }
    }

    /// The shard's StartingSequenceNumber: before its first record.
    pub fn shard_start(stream_id: u64, shard_index: u32) -> SeqNo {
        SeqNo { stream_id, shard_index, value: 0 }
    }

    /// Where `AT_SEQUENCE_NUMBER` starts: the record itself.
    pub fn at_ordinal(&self) -> u64 {
        self.value.saturating_sub(1)
    }

    /// Where `AFTER_SEQUENCE_NUMBER` starts: the record after it.
    pub fn after_ordinal(&self) -> u64 {
        self.value
    }

    pub fn encode(&self) -> String {
        format!("{PREFIX}{:014}{:010}{:030}", self.stream_id, self.shard_index, self.value)
    }

    /// Parses a sequence number this daemon issued. Anything else is an InvalidArgument.
    pub fn parse(text: &str) -> Result<SeqNo, ApiError> {
        let bad = || {
            ApiError::InvalidArgument(format!(
                "StartingSequenceNumber {text} used in GetShardIterator on shard is not a valid sequence number"
            ))
        };
        if text.len() != SEQUENCE_NUMBER_DIGITS
            || !text.bytes().all(|b| b.is_ascii_digit())
            || !text.starts_with(PREFIX)
        {
            return Err(bad());
        }
        let stream_id = text[2..16].parse::<u64>().map_err(|_| bad())?;
        let shard_index = text[16..26].parse::<u32>().map_err(|_| bad())?;
        let value = text[26..56].parse::<u64>().map_err(|_| bad())?;
        Ok(SeqNo { stream_id, shard_index, value })
    }
}

/// Shard iterators expire five minutes after they are issued.
pub const ITERATOR_TTL_MS: i64 = 5 * 60 * 1000;
const ITERATOR_VERSION: u8 = 1;
const ITERATOR_LEN: usize = 1 + 8 + 4 + 8 + 8 + 4;
/// Mixed into the iterator checksum so that a token is not mistaken for another daemon's format.
const ITERATOR_SALT: &[u8] = b"sluice-shard-iterator";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardIterator {
    pub stream_id: u64,
    pub shard_index: u32,
    /// The ordinal of the next record this iterator reads.
    pub ordinal: u64,
    pub issued_ms: i64,
}

impl ShardIterator {
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(ITERATOR_LEN);
        b.push(ITERATOR_VERSION);
        b.extend_from_slice(&self.stream_id.to_be_bytes());
        b.extend_from_slice(&self.shard_index.to_be_bytes());
        b.extend_from_slice(&self.ordinal.to_be_bytes());
        b.extend_from_slice(&self.issued_ms.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(ITERATOR_SALT), &b);
        b.extend_from_slice(&crc.to_be_bytes());
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// Decodes and checks an iterator; `now_ms` decides expiry.
    pub fn decode(text: &str, now_ms: i64) -> Result<ShardIterator, ApiError> {
        let invalid = || ApiError::InvalidArgument("Invalid ShardIterator.".into());
        let b = base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| invalid())?;
        if b.len() != ITERATOR_LEN || b[0] != ITERATOR_VERSION {
            return Err(invalid());
        }
        let body = &b[..ITERATOR_LEN - 4];
        let crc = u32::from_be_bytes(b[ITERATOR_LEN - 4..].try_into().map_err(|_| invalid())?);
        if crc != crc32c::crc32c_append(crc32c::crc32c(ITERATOR_SALT), body) {
            return Err(invalid());
        }
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().expect("length checked"));
        let it = ShardIterator {
            stream_id: u64_at(1),
            shard_index: u32::from_be_bytes(b[9..13].try_into().expect("length checked")),
            ordinal: u64_at(13),
            issued_ms: u64_at(21) as i64,
        };
        if now_ms - it.issued_ms > ITERATOR_TTL_MS {
            return Err(ApiError::ExpiredIterator(format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of 300000 milliseconds.",
                it.issued_ms, now_ms
            )));
        }
        Ok(it)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_round_trip_and_sort() {
        let a = SeqNo::record(7, 3, 9);
        let b = SeqNo::record(7, 3, 10);
        assert!(SeqNo::shard_start(7, 3).encode() < a.encode());
        assert_eq!((a.at_ordinal(), a.after_ordinal()), (9, 10));
        assert_eq!((SeqNo::shard_start(7, 3).at_ordinal(), SeqNo::shard_start(7, 3).after_ordinal()), (0, 0));
        assert_eq!(a.encode().len(), 56);
        assert!(a.encode() < b.encode());
        assert_eq!(SeqNo::parse(&a.encode()).unwrap(), a);
        let max = SeqNo { stream_id: 99_999_999_999_999, shard_index: u32::MAX, value: u64::MAX };
        assert_eq!(SeqNo::parse(&max.encode()).unwrap(), max);
    }

    #[test]
    fn foreign_sequence_numbers_are_refused() {
        for bad in ["", "12", "abc", &"4".repeat(56), &format!("49{}", "9".repeat(60))] {
            assert!(SeqNo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iterators_round_trip_expire_and_detect_tampering() {
        let it = ShardIterator { stream_id: 1, shard_index: 2, ordinal: 3, issued_ms: 1_000 };
        let text = it.encode();
        assert_eq!(ShardIterator::decode(&text, 1_000).unwrap(), it);
        assert!(matches!(ShardIterator::decode(&text, 1_000 + ITERATOR_TTL_MS + 1), Err(ApiError::ExpiredIterator(_))));
        let mut raw = base64::engine::general_purpose::STANDARD.decode(&text).unwrap();
        raw[15] ^= 1;
        let tampered = base64::engine::general_purpose::STANDARD.encode(raw);
        assert!(matches!(ShardIterator::decode(&tampered, 1_000), Err(ApiError::InvalidArgument(_))));
        assert!(matches!(ShardIterator::decode("not base64!", 1_000), Err(ApiError::InvalidArgument(_))));
    }
}
