//! Every account's streams in one daemon.
//!
//! A key may belong to another account than the daemon's (`[[auth.keys]] account_id`). Its
//! streams live in the same registry, under the name `<account>/<name>`
//! ([`crate::stream::meta::qualified`]; stream names have no `/`), and everything inside the
//! daemon (shard logs, indexes, fan-out, resharding, retention) treats them as any other stream.
//! The account shows only at the edges:
//! - a request's `StreamName` names a stream of the caller's own account: [`scope_request`] turns
//!   it into that account's `StreamARN` (CreateStream and ListStreams take the account itself);
//! - ARNs carry the stream's own account, and an ARN names its account's stream whoever asks (the
//!   permission check decides whether they may, [`crate::kinesis::access`]);
//! - answers name a stream by its own name ([`crate::stream::meta::StreamMeta::display_name`]),
//!   and messages say `<name> under account <its account>` ([`present_error`]).
//!
//! An ARN of an account that is neither the daemon's nor a key's means the daemon's account
//! ([`Service::effective_account`]), so ARNs copied from AWS's examples keep working.
//!
//! Queues ([`crate::queues`]), DynamoDB tables ([`crate::dynamodb`]), Firehose delivery streams
//! ([`crate::firehose`]) and Analytics applications ([`crate::analytics`]) are per account the same
//! way. Limits: channels, the account settings and DescribeLimits are the daemon's account's only;
//! the account limits (shards, streams, consumers, queues, tables, delivery streams, applications)
//! are counted over the whole daemon.

use serde_json::Value;

use crate::http::iam::Caller;
use crate::kinesis::MODEL;
use crate::protocol::error::ApiError;
use crate::service::Service;

/// The operations a key of another account may run in its own account, beside those that name a
/// stream: the account's own streams are created and listed there.
pub const IN_OWN_ACCOUNT: &[&str] = &["CreateStream", "ListStreams", "ListQueues"];

/// The account a request acts in: its caller's, or the daemon's when no key was verified.
pub fn account_of<'a>(svc: &'a Service, caller: Option<&'a Caller>) -> &'a str {
    caller.map_or(svc.cfg.account_id.as_str(), |c| c.account.as_str())
}

/// Puts a checked, authorized request into `account`: a `StreamName` of an operation that also
/// takes a `StreamARN` becomes the ARN of `account`'s stream of that name (a `StreamARN` given
/// beside it stays, and names the stream).
pub fn scope_request(svc: &Service, account: &str, op: &str, value: &mut Value) {
    if account == svc.cfg.account_id || !MODEL.has_member(op, "StreamARN") {
        return;
    }
    let Some(obj) = value.as_object_mut() else { return };
    if let Some(Value::String(name)) = obj.remove("StreamName") {
        obj.entry("StreamARN")
            .or_insert_with(|| Value::String(crate::stream::meta::stream_arn(&svc.cfg.region, account, &name)));
    }
}

/// Names the resource a request's `member` names (a name, checked against its pattern by the
/// model) as `account`'s resource of that name is named inside the daemon
/// ([`crate::stream::meta::qualified`]).
pub fn qualify_member(svc: &Service, account: &str, request: &mut Value, member: &str) {
    if let Some(Value::String(name)) = request.get_mut(member) {
        *name = crate::stream::meta::qualified(account, &svc.cfg.account_id, name);
    }
}

/// [`scope_request`] for the typed puts' `StreamName` and `StreamARN`.
pub fn scope_names(svc: &Service, account: &str, name: &mut Option<String>, arn: &mut Option<String>) {
    if account == svc.cfg.account_id {
        return;
    }
    if let Some(name) = name.take() {
        arn.get_or_insert_with(|| crate::stream::meta::stream_arn(&svc.cfg.region, account, &name));
    }
}

/// An error whose message names a stream of another account by its name inside the daemon
/// (`Stream 210987654321/orders under account <daemon> ...`), as its reader knows it (`Stream
/// orders under account 210987654321 ...`).
pub fn present_error(svc: &Service, mut e: ApiError) -> ApiError {
    if let Some(message) = present_message(e.message(), &svc.cfg.account_id) {
        *e.message_mut() = message;
    }
    e
}

/// The message with `<account>/` taken off the names it qualifies and the daemon's account, where
/// it owns them, replaced by theirs; `None` when it names no stream of another account.
fn present_message(message: &str, daemon: &str) -> Option<String> {
    let bytes = message.as_bytes();
    let (mut out, mut account, mut from, mut i) = (String::new(), None, 0, 0);
    while i + 13 <= bytes.len() {
        let starts_word = i == 0 || bytes[i - 1].is_ascii_whitespace();
        if starts_word && bytes[i..i + 12].iter().all(u8::is_ascii_digit) && bytes[i + 12] == b'/' {
            out.push_str(&message[from..i]);
            account = Some(&message[i..i + 12]);
            i += 13;
            from = i;
        } else {
            i += 1;
        }
    }
    let account = account?;
    out.push_str(&message[from..]);
    let out = out.replace(&format!(" under accountId {daemon}"), &format!(" under accountId {account}"));
    Some(out.replace(&format!(" under account {daemon}"), &format!(" under account {account}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_streams_as_their_accounts_know_them() {
        let daemon = "000000000000";
        assert_eq!(
            present_message("Stream 210987654321/orders under account 000000000000 not found.", daemon).as_deref(),
            Some("Stream orders under account 210987654321 not found.")
        );
        assert_eq!(
            present_message(
                "Shard shardId-000000000001 in stream 210987654321/s under account 000000000000 does not exist",
                daemon
            )
            .as_deref(),
            Some("Shard shardId-000000000001 in stream s under account 210987654321 does not exist")
        );
        // Own streams, ARNs and names given by the user are left alone.
        assert_eq!(present_message("Stream orders under account 000000000000 not found.", daemon), None);
        assert_eq!(
            present_message("Resource arn:aws:kinesis:us-east-1:210987654321:stream/s not found.", daemon),
            None
        );
        assert_eq!(present_message("Value '210987654321/x' at 'streamName' failed", daemon), None);
        assert_eq!(present_message("", daemon), None);
    }
}
