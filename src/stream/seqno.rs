//! Sequence numbers and shard iterators.
//!
//! A sequence number is a 56-digit decimal string, like AWS's:
//!
//! ```text
//! 49 | layout (1 digit) | stream id (13 digits) | shard index (10 digits) | value (30 digits)
//! ```
//!
//! Layout 1 (what the daemon issues): the value of the record at ordinal `o` (its position in the
//! shard: 0, 1, 2, ...) is `2o + 2`; value 0 is the shard's StartingSequenceNumber, which sorts
//! before every record as on AWS; and the odd value `2p + 1` is a *position* between records: the
//! ContinuationSequenceNumber of a SubscribeToShard event after which record `p` is the next one.
//! So AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER of a continuation both resume at the next
//! record, as AWS documents, and of a record's number mean the record and the one after it.
//! Sequence numbers strictly increase per shard, compare correctly as strings and as integers,
//! and map to a log position without a lookup. The stream id changes when a stream of the same
//! name is recreated, so a sequence number of a deleted stream is refused rather than misread.
//!
//! Layout 0 (issued before layout 1 existed: a `0` where the layout digit is, the stream id in 14
//! digits, value `o + 1` per record) is still read, so checkpoints taken then resume where they
//! should.
//!
//! A shard iterator is opaque to clients: base64 of a 33-byte token (version, stream id, shard
//! index, ordinal, issue time in ms) with a crc32c, valid for five minutes as on AWS.

use base64::Engine;

use crate::protocol::error::ApiError;

pub const SEQUENCE_NUMBER_DIGITS: usize = 56;
const PREFIX: &str = "49";
/// The layout digit of the sequence numbers issued now.
const LAYOUT: u8 = 1;
/// Stream ids up to this fit the layout's 13 digits.
pub const STREAM_ID_MAX: u64 = 9_999_999_999_999;

/// A position in a shard: which stream incarnation, which shard, and the value in its layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqNo {
    pub stream_id: u64,
    pub shard_index: u32,
    pub value: u64,
    /// 1: the current layout; 0: the first one (value = ordinal + 1).
    pub layout: u8,
}

impl SeqNo {
    /// The sequence number of the record at `ordinal`.
    pub fn record(stream_id: u64, shard_index: u32, ordinal: u64) -> SeqNo {
        SeqNo { stream_id, shard_index, value: 2 * ordinal + 2, layout: LAYOUT }
    }

    /// The shard's StartingSequenceNumber: before its first record.
    pub fn shard_start(stream_id: u64, shard_index: u32) -> SeqNo {
        SeqNo { stream_id, shard_index, value: 0, layout: LAYOUT }
    }

    /// A position between records: both AT and AFTER it start at the record at `next`.
    pub fn continuation(stream_id: u64, shard_index: u32, next: u64) -> SeqNo {
        SeqNo { stream_id, shard_index, value: 2 * next + 1, layout: LAYOUT }
    }

    /// Where `AT_SEQUENCE_NUMBER` starts: the first record whose number is at least this one.
    pub fn at_ordinal(&self) -> u64 {
        match self.layout {
            0 => self.value.saturating_sub(1),
            _ => self.value.saturating_sub(1) / 2,
        }
    }

    /// Where `AFTER_SEQUENCE_NUMBER` starts: the first record whose number is above this one.
    pub fn after_ordinal(&self) -> u64 {
        match self.layout {
            0 => self.value,
            _ => self.value / 2,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = Vec::with_capacity(SEQUENCE_NUMBER_DIGITS);
        self.write_to(&mut out);
        String::from_utf8(out).expect("ASCII digits")
    }

    /// Appends the sequence number's digits to `out` (what [`SeqNo::encode`] returns).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Written digit by digit: `format!` with zero padding costs a call per padding digit, and
        // every put answers with one of these per record.
        out.extend_from_slice(PREFIX.as_bytes());
        match self.layout {
            0 => push_padded(out, self.stream_id, 14),
            l => {
                push_padded(out, u64::from(l), 1);
                push_padded(out, self.stream_id, 13);
            }
        }
        push_padded(out, u64::from(self.shard_index), 10);
        push_padded(out, self.value, 30);
    }

    /// Parses a sequence number this daemon issued (either layout). Anything else is an
    /// InvalidArgument; callers word the message for their operation.
    pub fn parse(text: &str) -> Result<SeqNo, ApiError> {
        let bad = || ApiError::InvalidArgument(format!("{text} is not a valid sequence number."));
        if text.len() != SEQUENCE_NUMBER_DIGITS
            || !text.bytes().all(|b| b.is_ascii_digit())
            || !text.starts_with(PREFIX)
        {
            return Err(bad());
        }
        let layout = text.as_bytes()[2] - b'0';
        let stream_id = match layout {
            0 => text[2..16].parse::<u64>().map_err(|_| bad())?,
            LAYOUT => text[3..16].parse::<u64>().map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        let shard_index = text[16..26].parse::<u32>().map_err(|_| bad())?;
        let value = text[26..56].parse::<u64>().map_err(|_| bad())?;
        Ok(SeqNo { stream_id, shard_index, value, layout })
    }
}

/// Appends `v` in decimal, zero-padded to at least `width` digits (as `{v:0width$}` does).
pub fn push_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(len)));
    out.extend_from_slice(&digits[i..]);
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
        // A checksum is no signature: the fields may be anyone's, so no arithmetic on them may
        // overflow.
        if it.issued_ms < 0 {
            return Err(invalid());
        }
        if now_ms.saturating_sub(it.issued_ms) > ITERATOR_TTL_MS {
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
    fn encode_matches_zero_padded_formatting() {
        for (stream_id, shard_index, value) in
            [(0, 0, 0), (1, 2, 3), (STREAM_ID_MAX, u32::MAX, u64::MAX), (123_456_789, 77, 2 * 99_999 + 2)]
        {
            let l1 = SeqNo { stream_id, shard_index, value, layout: 1 };
            assert_eq!(l1.encode(), format!("{PREFIX}1{stream_id:013}{shard_index:010}{value:030}"));
            let l0 = SeqNo { stream_id, shard_index, value, layout: 0 };
            assert_eq!(l0.encode(), format!("{PREFIX}{stream_id:014}{shard_index:010}{value:030}"));
            assert_eq!(SeqNo::parse(&l1.encode()).expect("parses"), l1);
        }
        let mut wide = Vec::new();
        push_padded(&mut wide, 12_345, 3);
        assert_eq!(wide, b"12345");
    }

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
        let max = SeqNo { stream_id: STREAM_ID_MAX, shard_index: u32::MAX, value: u64::MAX, layout: 1 };
        assert_eq!(SeqNo::parse(&max.encode()).unwrap(), max);
    }

    #[test]
    fn continuations_sit_between_records() {
        // After records 0..=9 were delivered, record 10 is next.
        let c = SeqNo::continuation(7, 3, 10);
        assert_eq!((c.at_ordinal(), c.after_ordinal()), (10, 10), "AT and AFTER both resume at the next record");
        assert!(SeqNo::record(7, 3, 9).encode() < c.encode() && c.encode() < SeqNo::record(7, 3, 10).encode());
        let none_yet = SeqNo::continuation(7, 3, 0);
        assert_eq!((none_yet.at_ordinal(), none_yet.after_ordinal()), (0, 0));
        assert_eq!(SeqNo::parse(&c.encode()).unwrap(), c);
    }

    #[test]
    fn the_first_layout_is_still_read() {
        // Layout 0: "49", a 14-digit stream id, the shard, value = ordinal + 1.
        let text = format!("49{:014}{:010}{:030}", 7, 3, 10);
        let s = SeqNo::parse(&text).unwrap();
        assert_eq!((s.stream_id, s.shard_index, s.layout), (7, 3, 0));
        assert_eq!((s.at_ordinal(), s.after_ordinal()), (9, 10));
        assert_eq!(s.encode(), text);
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

    #[test]
    fn a_forged_issue_time_is_refused_without_overflow() {
        // The checksum is public: anyone can build an iterator with any fields.
        for issued_ms in [i64::MIN, -1] {
            let text = ShardIterator { stream_id: 1, shard_index: 0, ordinal: 0, issued_ms }.encode();
            assert!(matches!(ShardIterator::decode(&text, i64::MAX), Err(ApiError::InvalidArgument(_))));
        }
        let future = ShardIterator { stream_id: 1, shard_index: 0, ordinal: 0, issued_ms: i64::MAX }.encode();
        assert!(ShardIterator::decode(&future, i64::MIN).is_ok());
    }
}
