//! Partition key → 128-bit hash key → shard, exactly as Kinesis routes: the MD5 digest of the UTF-8
//! partition key read as a big-endian unsigned 128-bit integer, or an explicit decimal hash key.

use md5::{Digest, Md5};

use crate::protocol::error::ApiError;

/// The hash key Kinesis derives from a partition key.
pub fn hash_partition_key(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// Parses an `ExplicitHashKey`: a decimal integer in 0 ..= 2^128 - 1.
pub fn parse_explicit_hash_key(text: &str) -> Result<u128, ApiError> {
    let well_formed = !text.is_empty()
        && text.len() <= 39
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !well_formed {
        return Err(ApiError::validation(
            text,
            "explicitHashKey",
            "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
        ));
    }
    text.parse::<u128>().map_err(|_| {
        ApiError::InvalidArgument(format!(
            "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"
        ))
    })
}

/// Splits the hash key space into `count` contiguous ranges the way AWS does for a new stream:
/// each range is floor(2^128 / count) wide and the last one absorbs the remainder.
pub fn uniform_ranges(count: u32) -> Vec<(u128, u128)> {
    assert!(count > 0, "a stream has at least one shard");
    if count == 1 {
        return vec![(0, u128::MAX)];
    }
    let n = count as u128;
    // floor(2^128 / n) without overflowing: 2^128 = u128::MAX + 1.
    let width = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
    (0..n)
        .map(|i| {
            let start = i * width;
            let end = if i == n - 1 { u128::MAX } else { (i + 1) * width - 1 };
            (start, end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_routing_matches_kinesis() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_partition_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn ranges_match_aws_for_four_shards() {
        let r = uniform_ranges(4);
        assert_eq!(r[0], (0, 85070591730234615865843651857942052863));
        assert_eq!(r[1].0, 85070591730234615865843651857942052864);
        assert_eq!(r[3].1, u128::MAX);
        let one = uniform_ranges(1);
        assert_eq!(one, vec![(0, u128::MAX)]);
    }

    #[test]
    fn ranges_are_contiguous() {
        for n in [1u32, 2, 3, 7, 10, 64, 1000] {
            let r = uniform_ranges(n);
            assert_eq!(r.len(), n as usize);
            assert_eq!(r[0].0, 0);
            assert_eq!(r.last().unwrap().1, u128::MAX);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
            }
        }
    }

    #[test]
    fn explicit_hash_key_bounds() {
        assert_eq!(parse_explicit_hash_key("0").unwrap(), 0);
        assert_eq!(parse_explicit_hash_key(&u128::MAX.to_string()).unwrap(), u128::MAX);
        assert!(matches!(
            parse_explicit_hash_key("340282366920938463463374607431768211456"),
            Err(ApiError::InvalidArgument(_))
        ));
        assert!(matches!(parse_explicit_hash_key("01"), Err(ApiError::Validation(_))));
        assert!(matches!(parse_explicit_hash_key("-1"), Err(ApiError::Validation(_))));
    }
}
