//! Who may do what to a stream: the permission check of a verified caller ([`Caller`]) for one
//! Kinesis operation, as AWS makes it.
//!
//! The action is `kinesis:<Operation>`. The resource is what the request names: a `StreamARN`,
//! `ConsumerARN` or `ResourceARN` as given (their account is the ARN's), a `StreamName` in the
//! caller's own account, the stream of a `ShardIterator`, or `*` for account-level operations
//! (ListStreams, DescribeLimits, the account settings, CreateStream). The named resource's policy
//! (PutResourcePolicy) is evaluated with the caller's action list ([`crate::http::iam`]).
//!
//! Limits: the daemon serves one account's resources (`account_id`); keys of other accounts reach
//! them only through resource policies and by ARN. A name such keys give resolves in their own
//! account, where nothing exists (ResourceNotFoundException), and account-level operations are
//! refused to them (AccessDeniedException).

use serde_json::Value;

use crate::http::iam::Caller;
use crate::protocol::error::{ApiError, ApiResult};
use crate::service::Service;
use crate::stream::seqno::ShardIterator;

/// What a request names, as far as permission goes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Named<'a> {
    pub stream_name: Option<&'a str>,
    pub arn: Option<&'a str>,
    pub shard_iterator: Option<&'a str>,
}

impl<'a> Named<'a> {
    /// The members of a decoded request that name its resource.
    pub fn of(request: &'a Value) -> Named<'a> {
        let text = |m: &str| request.get(m).and_then(Value::as_str);
        Named {
            stream_name: text("StreamName"),
            arn: text("ConsumerARN").or(text("QueueARN")).or(text("StreamARN")).or(text("ResourceARN")),
            shard_iterator: text("ShardIterator"),
        }
    }
}

/// Authorizes `caller` to run `op` on what the request names.
pub fn authorize(svc: &Service, caller: &Caller, op: &str, named: Named) -> ApiResult<()> {
    let daemon = svc.cfg.account_id.as_str();
    let action = format!("kinesis:{op}");
    let from_iterator = || {
        let it = ShardIterator::decode(named.shard_iterator?.trim_matches('"'), svc.now_ms()).ok()?;
        svc.stream_by_id(it.stream_id).map(|m| svc.arn(&m))
    };
    let resource = match (named.arn, named.stream_name) {
        (Some(arn), _) => arn.to_owned(),
        (None, Some(name)) if caller.is_of(daemon) => {
            format!("arn:aws:kinesis:{}:{daemon}:stream/{name}", svc.cfg.region)
        }
        (None, Some(name)) => {
            return Err(ApiError::ResourceNotFound(format!(
                "Stream {name} under account {} not found.",
                caller.account
            )))
        }
        (None, None) => match from_iterator() {
            Some(arn) => arn,
            None if caller.is_of(daemon) => "*".to_owned(),
            // Another account's caller: its own account's resources are not served here, and no
            // policy of this account's can grant an account-level action.
            None => return caller.authorize(&action, "*", daemon, None),
        },
    };
    if resource != "*" {
        // An ARN of another partition, region or account names nothing this daemon serves. The
        // check also keeps one resource from being spelled two ways, which would let a request
        // slip past the policy stored under the other spelling.
        let fields: Vec<&str> = resource.splitn(6, ':').collect();
        let (partition, region, owner) = match fields.as_slice() {
            ["arn", partition, "kinesis", region, owner, _] => (*partition, *region, *owner),
            _ => ("", "", ""),
        };
        if partition != "aws" || region != svc.cfg.region || owner != daemon {
            return Err(ApiError::ResourceNotFound(format!("Resource {resource} not found.")));
        }
    }
    // A consumer is named by its registered ARN, whatever creation time the request spells.
    let resource = match crate::stream::meta::parse_consumer_arn(&resource) {
        Some((stream, consumer, _)) => svc
            .stream(stream)
            .ok()
            .and_then(|m| m.consumers.iter().find(|c| c.name == consumer).map(|c| c.arn(&svc.arn(&m))))
            .unwrap_or(resource),
        None => resource,
    };
    let policy = if resource == "*" { None } else { policy_of(svc, &resource)? };
    caller.authorize(&action, &resource, daemon, policy.as_ref())
}

/// The resource policy attached to `arn`, if any.
fn policy_of(svc: &Service, arn: &str) -> ApiResult<Option<Value>> {
    let stored = svc
        .store
        .get_meta(&crate::kinesis::ops::settings::policy_key(arn))
        .map_err(|e| ApiError::InternalFailure(e.to_string()))?;
    Ok(stored.and_then(|b| serde_json::from_slice(&b).ok()))
}
