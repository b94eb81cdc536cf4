//! Who may do what to a stream: the permission check of a verified caller ([`Caller`]) for one
//! Kinesis operation, as AWS makes it.
//!
//! The action is `kinesis:<Operation>`. The resource is what the request names, read only from
//! members the operation's input shape declares (a member an operation does not have names
//! nothing, so it cannot steer the check to another resource than the one acted on):
//! - `GetRecords`: the stream of its `ShardIterator`, whatever else the request says (a
//!   `StreamARN` beside it must name that stream);
//! - a consumer: its `ConsumerARN`, or for DescribeStreamConsumer and DeregisterStreamConsumer
//!   `StreamARN` + `ConsumerName`; always spelled as the registered ARN, whatever creation time the
//!   request gives;
//! - `ResourceARN`, `QueueARN` or `ChannelARN` as given;
//! - a stream: `StreamARN` (of any account: [`crate::kinesis::accounts`]), or `StreamName` in the
//!   caller's own account (both given: they must name the same stream);
//! - CreateQueue and CreateChannel: each source stream of `StreamConfigurationList` (the queue or
//!   channel does not exist yet; it reads those streams);
//! - otherwise `*`: account-level operations. CreateStream and ListStreams act in the caller's
//!   own account, and so does ListQueues; the others (DescribeLimits, the account settings,
//!   ListChannels) in the daemon's, so keys of other accounts are refused them.
//!
//! The named resource's policy (PutResourcePolicy) is evaluated with the caller's action list
//! ([`crate::http::iam`]). Other services that read or write streams on a caller's behalf
//! (Firehose sources, Analytics inputs and outputs) check the caller with [`authorize_stream`].
//!
//! A key reaches another account's stream only by ARN and as that stream's policy allows; a name
//! resolves in the key's own account. Channels are the daemon's account's only.

use serde_json::Value;

use crate::http::iam::Caller;
use crate::kinesis::MODEL;
use crate::protocol::error::{ApiError, ApiResult};
use crate::service::Service;
use crate::stream::seqno::ShardIterator;

/// What a request names, as far as permission goes.
#[derive(Debug, Default, Clone)]
pub struct Named<'a> {
    pub stream_name: Option<&'a str>,
    pub stream_arn: Option<&'a str>,
    /// A consumer named by its stream and name (DescribeStreamConsumer, DeregisterStreamConsumer,
    /// a push subscription).
    pub consumer_name: Option<&'a str>,
    pub consumer_arn: Option<&'a str>,
    /// `ResourceARN`, `QueueARN` or `ChannelARN`.
    pub resource_arn: Option<&'a str>,
    pub shard_iterator: Option<&'a str>,
    /// The source streams of a queue or channel being created.
    pub sources: Vec<&'a str>,
}

impl<'a> Named<'a> {
    /// The members of `op`'s decoded, checked request that name its resource: only those its
    /// input shape declares.
    pub fn of(op: &str, request: &'a Value) -> Named<'a> {
        let text = |m: &str| match MODEL.has_member(op, m) {
            true => request.get(m).and_then(Value::as_str),
            false => None,
        };
        // RegisterStreamConsumer's ConsumerName names the consumer to be, on the stream it acts on.
        let consumer_name = match MODEL.has_member(op, "ConsumerARN") {
            true => text("ConsumerName"),
            false => None,
        };
        let sources = match MODEL.has_member(op, "StreamConfigurationList") {
            true => request
                .get("StreamConfigurationList")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(|c| c.get("StreamARN").and_then(Value::as_str)).collect())
                .unwrap_or_default(),
            false => Vec::new(),
        };
        Named {
            stream_name: text("StreamName"),
            stream_arn: text("StreamARN"),
            consumer_name,
            consumer_arn: text("ConsumerARN"),
            resource_arn: text("ResourceARN").or(text("QueueARN")).or(text("ChannelARN")),
            shard_iterator: text("ShardIterator"),
            sources,
        }
    }
}

/// Authorizes `caller` to run `op` on what the request names.
pub fn authorize(svc: &Service, caller: &Caller, op: &str, named: &Named) -> ApiResult<()> {
    let action = format!("kinesis:{op}");
    if !named.sources.is_empty() {
        // Channels belong to the daemon's account: creating one is also an account-level action
        // there, which keys of other accounts are refused.
        if op == "CreateChannel" {
            caller.authorize(&action, "*", &svc.cfg.account_id, None)?;
        }
        return named.sources.iter().try_for_each(|arn| authorize_on(svc, caller, &action, arn));
    }
    match resource_of(svc, caller, named)? {
        Some(resource) => authorize_on(svc, caller, &action, &resource),
        None if crate::kinesis::accounts::IN_OWN_ACCOUNT.contains(&op) => {
            caller.authorize(&action, "*", &caller.account, None)
        }
        None => caller.authorize(&action, "*", &svc.cfg.account_id, None),
    }
}

/// Authorizes `caller` for each of `actions` (`kinesis:...`) on the stream `arn`: how a service
/// that reads or writes a stream for the caller (a delivery stream's source, an application's
/// input or output) checks that the caller itself may.
pub fn authorize_stream(svc: &Service, caller: &Caller, actions: &[&str], arn: &str) -> ApiResult<()> {
    actions.iter().try_for_each(|action| authorize_on(svc, caller, action, arn))
}

/// Authorizes `caller` for each of `actions` (`firehose:...`) on the delivery stream `arn` (an
/// application's Firehose input or output): delivery streams have no resource policies.
pub fn authorize_delivery_stream(svc: &Service, caller: &Caller, actions: &[&str], arn: &str) -> ApiResult<()> {
    if !served(svc, arn, "firehose") {
        return Err(ApiError::ResourceNotFound(format!("Resource {arn} not found.")));
    }
    let owner = svc.effective_account(owner_of(arn));
    actions.iter().try_for_each(|action| caller.authorize(action, arn, owner, None))
}

/// The resource a request names (`None`: the account).
fn resource_of(svc: &Service, caller: &Caller, named: &Named) -> ApiResult<Option<String>> {
    if let Some(text) = named.shard_iterator {
        // The stream read is the iterator's: a StreamARN beside it must be that stream's.
        let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
        let it = ShardIterator::decode(text, svc.now_ms())?;
        let Some(meta) = svc.stream_by_id(it.stream_id) else {
            // The stream is gone: the operation answers that, to a caller it would serve.
            return Ok(None);
        };
        if crate::stream::meta::is_internal_name(&meta.name) {
            return Err(ApiError::ResourceNotFound(
                "The stream this shard iterator belongs to no longer exists.".into(),
            ));
        }
        if let Some(given) = named.stream_arn.filter(|a| svc.stream_of_arn(a).as_deref() != Some(&meta.name)) {
            return Err(iterator_of_another_stream(given));
        }
        return Ok(Some(svc.arn(&meta)));
    }
    // A name names a stream of the caller's own account.
    let own_stream = |name: &str| crate::stream::meta::stream_arn(&svc.cfg.region, &caller.account, name);
    let same = |arn: &str, name: &str| svc.stream_of_arn(arn) == svc.stream_of_arn(&own_stream(name));
    let stream_arn = || -> ApiResult<Option<String>> {
        match (named.stream_arn, named.stream_name) {
            (Some(arn), Some(name)) if !same(arn, name) => Err(ApiError::InvalidArgument(format!(
                "StreamName {name} and StreamARN {arn} do not name the same stream."
            ))),
            (Some(arn), _) => Ok(Some(arn.to_owned())),
            (None, Some(name)) => Ok(Some(own_stream(name))),
            (None, None) => Ok(None),
        }
    };
    if let Some(arn) = named.consumer_arn.or(named.resource_arn) {
        return Ok(Some(arn.to_owned()));
    }
    if let Some(consumer) = named.consumer_name {
        // A consumer of a stream, by name: its registered ARN if it exists, else the stream (the
        // operation then answers that there is no such consumer, to a caller it would serve).
        let Some(stream) = stream_arn()? else { return Ok(None) };
        let registered = svc
            .stream_of_arn(&stream)
            .filter(|_| served(svc, &stream, "kinesis"))
            .and_then(|name| svc.stream(&name).ok())
            .and_then(|m| m.consumers.iter().find(|c| c.name == consumer).map(|c| c.arn(&svc.arn(&m))));
        return Ok(Some(registered.unwrap_or(stream)));
    }
    stream_arn()
}

/// Whether `arn` names a resource of `service` this daemon serves: in its partition and region,
/// and in its account, or in any account for a stream, a consumer or a delivery stream
/// ([`crate::kinesis::accounts`]).
fn served(svc: &Service, arn: &str, service: &str) -> bool {
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    match fields.as_slice() {
        ["arn", "aws", s, region, owner, resource] if *s == service && *region == svc.cfg.region => {
            *owner == svc.cfg.account_id
                || (((service == "kinesis" && (resource.starts_with("stream/") || resource.starts_with("queue/")))
                    || (service == "firehose" && resource.starts_with("deliverystream/")))
                    && owner.len() == 12
                    && owner.bytes().all(|b| b.is_ascii_digit()))
        }
        _ => false,
    }
}

/// ResourceNotFoundException for an ARN this daemon does not serve, in the words the operations
/// on that kind of resource use.
fn not_served(arn: &str) -> ApiError {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
    let kind = match resource.split('/').next() {
        Some("channel") => "Channel",
        Some("queue") => "Queue",
        _ => "Resource",
    };
    ApiError::ResourceNotFound(format!("{kind} {arn} not found."))
}

/// The account a served ARN belongs to.
fn owner_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or_default()
}

/// Authorizes `action` on the resource `arn` under its policy.
fn authorize_on(svc: &Service, caller: &Caller, action: &str, arn: &str) -> ApiResult<()> {
    // An ARN of another partition, region or account names nothing this daemon serves. The check
    // also keeps one resource from being spelled two ways, which would let a request slip past
    // the policy stored under the other spelling.
    if !served(svc, arn, "kinesis") {
        return Err(not_served(arn));
    }
    // One spelling of each resource: its owner as the daemon reads the ARN's account, and a
    // consumer's registered ARN whatever creation time the request spells.
    let resource = svc.canonical_arn(arn);
    let policy = policy_of(svc, &resource)?;
    caller.authorize(action, &resource, owner_of(&resource), policy.as_ref())
}

/// GetRecords with a StreamARN that is not its iterator's stream.
pub fn iterator_of_another_stream(stream_arn: &str) -> ApiError {
    ApiError::InvalidArgument(format!("StreamARN {stream_arn} is not the stream of the shard iterator."))
}

/// The resource policy attached to `arn`, if any.
fn policy_of(svc: &Service, arn: &str) -> ApiResult<Option<Value>> {
    let stored = svc
        .store
        .get_meta(&crate::kinesis::ops::settings::policy_key(arn))
        .map_err(|e| ApiError::InternalFailure(e.to_string()))?;
    Ok(stored.and_then(|b| serde_json::from_slice(&b).ok()))
}
