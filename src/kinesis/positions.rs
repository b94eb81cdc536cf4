//! Starting positions (TRIM_HORIZON, LATEST, AT/AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP) as
//! GetShardIterator, SubscribeToShard and the push protocol take them.

use serde_json::Value;

use crate::kinesis::timestamp_ms;
use crate::protocol::error::{ApiError, ApiResult};
use crate::runtime::Position;
use crate::service::Service;
use crate::stream::meta::{shard_id, ShardMeta, StreamMeta};
use crate::stream::seqno::SeqNo;

/// A starting position as GetShardIterator and SubscribeToShard take it: a type (`member` names
/// it in validation errors) with a sequence number or a timestamp where the type needs one.
pub fn parse_position(
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
                    "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} and no StartingSequenceNumber."
                ))
            })?;
            let invalid = |why: &str| {
                ApiError::InvalidArgument(format!(
                    "StartingSequenceNumber {text} used in GetShardIterator on shard {} in stream {} under account {} is invalid{why}.",
                    shard.shard_id(),
                    meta.name,
                    svc.cfg.account_id
                ))
            };
            let seq = SeqNo::parse(text).map_err(|_| invalid(""))?;
            if seq.shard_index != shard.index {
                return Err(ApiError::InvalidArgument(format!(
                    "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {}",
                    shard_id(seq.shard_index),
                    shard.shard_id()
                )));
            }
            if seq.stream_id != meta.id {
                return Err(invalid(" because it did not come from this stream"));
            }
            Position::AtOrdinal(if kind == "AFTER_SEQUENCE_NUMBER" { seq.after_ordinal() } else { seq.at_ordinal() })
        }
    })
}
