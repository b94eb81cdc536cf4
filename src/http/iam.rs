//! IAM authorization as AWS evaluates it: an identity policy (an access key's action list) combined
//! with one resource policy (a JSON policy document a client attached to a stream or consumer).
//! Pure functions, no I/O.
//!
//! Policy statements follow the IAM grammar: `Effect`, `Principal` or `NotPrincipal`, `Action` or
//! `NotAction`, optionally `Resource` or `NotResource` (absent: the resource the policy is attached
//! to), optionally `Condition`. An explicit Deny wins over any Allow; within the same account either
//! side may allow, across accounts both must.
//!
//! Limits:
//! - The identity side is an allow list of action patterns only: no identity policy documents,
//!   permission boundaries, session policies or SCPs.
//! - A principal is matched only by `"*"` or `{"AWS": ...}` entries that are `"*"`, its account id,
//!   `arn:aws:iam::<account>:root` or its exact ARN; `Service`, `Federated` and `CanonicalUser`
//!   entries never match. Naming the account (root) counts as allowing its principals directly,
//!   where AWS would delegate to their identity policies.
//! - Policy variables (`${aws:username}`) are not substituted; they are matched literally.
//! - Condition keys: `aws:PrincipalAccount`, `aws:PrincipalArn`, `aws:SourceAccount` (the
//!   principal's account: requests come directly from the principal) and `aws:ResourceAccount`;
//!   any other key is absent. Operators: the `String*` and `Arn*` families, their `...IfExists`
//!   forms and `Null`. Any other operator (`Numeric*`, `Date*`, `Bool`, `IpAddress`, the
//!   `ForAnyValue:`/`ForAllValues:` qualifiers) makes its statement not apply: fail closed for an
//!   Allow, but a Deny that relies on such an operator is not enforced.
//! - A statement with an `Effect` other than `"Allow"`/`"Deny"`, with both or neither of
//!   `Principal`/`NotPrincipal` or `Action`/`NotAction`, or with both `Resource` and `NotResource`,
//!   does not apply. `Version` and `Sid` are ignored.

use std::borrow::Cow;

use serde_json::Value;

/// Matches an IAM pattern with `*` (any run, including empty) and `?` (one char) against `value`.
/// `ignore_case`: actions are matched case-insensitively (IAM), resources/ARNs case-sensitively.
pub fn glob_matches(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (pattern, value): (Vec<char>, Vec<char>) = if ignore_case {
        (pattern.to_lowercase().chars().collect(), value.to_lowercase().chars().collect())
    } else {
        (pattern.chars().collect(), value.chars().collect())
    };
    let (mut p, mut v) = (0, 0);
    // After the last `*` seen: the pattern position following it, and the value position it has
    // swallowed up to. Backtracking only ever retries that star, so the work stays O(n * m).
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = value.get(v) {
        match pattern.get(p) {
            Some('*') => {
                p += 1;
                star = Some((p, v));
            }
            Some(&q) if q == '?' || q == c => {
                p += 1;
                v += 1;
            }
            _ => match star {
                Some((after, swallowed)) => {
                    p = after;
                    v = swallowed + 1;
                    star = Some((after, v));
                }
                None => return false,
            },
        }
    }
    pattern.iter().skip(p).all(|&q| q == '*')
}

/// Whether any of the identity's action patterns (e.g. "kinesis:Get*", "dynamodb:*", "*") allows `action`
/// (e.g. "kinesis:GetRecords"). An empty list allows nothing; callers treat "no list configured" as ["*"].
pub fn actions_allow(patterns: &[String], action: &str) -> bool {
    patterns.iter().any(|p| glob_matches(p, action, true))
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'a> {
    /// The principal's 12-digit account id.
    pub account: &'a str,
    /// The principal's ARN, e.g. `arn:aws:iam::123456789012:user/alice`.
    pub arn: &'a str,
}

/// The request being authorized.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub principal: Principal<'a>,
    /// The IAM action, e.g. `kinesis:GetRecords`.
    pub action: &'a str,
    /// The resource's ARN.
    pub resource: &'a str,
    /// The account that owns the resource.
    pub resource_account: &'a str,
}

/// What a policy says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
    NotApplicable,
}

/// What one policy document (a resource policy, JSON) says about `req`: Deny if any statement with
/// Effect Deny applies, else Allow if one with Effect Allow applies, else NotApplicable.
/// A document that cannot be read (not an object, no Statement) is NotApplicable.
pub fn evaluate(policy: &Value, req: &Request) -> Effect {
    let Some(statements) = policy.as_object().and_then(|o| o.get("Statement")) else {
        return Effect::NotApplicable;
    };
    let statements: Vec<&Value> = match statements {
        Value::Array(list) => list.iter().collect(),
        Value::Object(_) => vec![statements],
        _ => return Effect::NotApplicable,
    };
    let mut allowed = false;
    for statement in statements {
        match statement_effect(statement, req) {
            Effect::Deny => return Effect::Deny,
            Effect::Allow => allowed = true,
            Effect::NotApplicable => {}
        }
    }
    if allowed {
        Effect::Allow
    } else {
        Effect::NotApplicable
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// A statement of the resource policy denies it.
    ExplicitDeny,
    /// The identity's action list does not allow it (and, in the same account, neither does the resource policy).
    NoIdentityAllow,
    /// Cross account: the identity allows it but the resource policy does not.
    NoResourceAllow,
}

impl Denial {
    /// AWS's AccessDeniedException message for this denial, e.g.
    /// "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: kinesis:PutRecords on resource:
    /// arn:aws:kinesis:us-east-1:123456789012:stream/s because no identity-based policy allows the
    /// kinesis:PutRecords action".
    pub fn message(&self, req: &Request) -> String {
        let why = match self {
            Denial::ExplicitDeny => "with an explicit deny in a resource-based policy".to_string(),
            Denial::NoIdentityAllow => format!("because no identity-based policy allows the {} action", req.action),
            Denial::NoResourceAllow => format!("because no resource-based policy allows the {} action", req.action),
        };
        format!(
            "User: {} is not authorized to perform: {} on resource: {} {why}",
            req.principal.arn, req.action, req.resource
        )
    }
}

/// The final decision, as IAM combines an identity policy (the key's action list) with a resource policy:
/// an explicit Deny in the resource policy denies; in the same account (`principal.account ==
/// resource_account`) either an identity allow or a resource policy Allow is enough; across accounts both
/// are needed.
pub fn authorize(identity_allows: bool, resource_policy: Option<&Value>, req: &Request) -> Result<(), Denial> {
    let resource = resource_policy.map_or(Effect::NotApplicable, |p| evaluate(p, req));
    if resource == Effect::Deny {
        return Err(Denial::ExplicitDeny);
    }
    let resource_allows = resource == Effect::Allow;
    if req.principal.account == req.resource_account {
        if identity_allows || resource_allows {
            Ok(())
        } else {
            Err(Denial::NoIdentityAllow)
        }
    } else if !identity_allows {
        Err(Denial::NoIdentityAllow)
    } else if !resource_allows {
        Err(Denial::NoResourceAllow)
    } else {
        Ok(())
    }
}

/// The effect of one statement if it applies to `req`, else NotApplicable.
fn statement_effect(statement: &Value, req: &Request) -> Effect {
    let effect = match statement.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => return Effect::NotApplicable,
    };
    let principal = match (statement.get("Principal"), statement.get("NotPrincipal")) {
        (Some(p), None) => principal_matches(p, req),
        (None, Some(p)) => !principal_matches(p, req),
        _ => false,
    };
    let action = |p: &str| glob_matches(p, req.action, true);
    let action = match (statement.get("Action"), statement.get("NotAction")) {
        (Some(a), None) => strings(a).iter().any(|p| action(p)),
        (None, Some(a)) => !strings(a).iter().any(|p| action(p)),
        _ => false,
    };
    let resource = |p: &str| glob_matches(p, req.resource, false);
    let resource = match (statement.get("Resource"), statement.get("NotResource")) {
        (None, None) => true,
        (Some(r), None) => strings(r).iter().any(|p| resource(p)),
        (None, Some(r)) => !strings(r).iter().any(|p| resource(p)),
        (Some(_), Some(_)) => false,
    };
    let condition = statement.get("Condition").is_none_or(|c| condition_holds(c, req));
    if principal && action && resource && condition {
        effect
    } else {
        Effect::NotApplicable
    }
}

/// Whether a `Principal` (or `NotPrincipal`) value names the request's principal.
fn principal_matches(principal: &Value, req: &Request) -> bool {
    let entry = |e: &str| {
        e == "*"
            || e == req.principal.account
            || e == req.principal.arn
            || e.strip_prefix("arn:aws:iam::").and_then(|r| r.strip_suffix(":root")) == Some(req.principal.account)
    };
    match principal {
        Value::String(s) => s == "*",
        Value::Object(map) => map.iter().any(|(kind, v)| kind == "AWS" && strings(v).iter().any(|e| entry(e))),
        _ => false,
    }
}

/// Whether every operator of a `Condition` block holds (and, under each, every key).
fn condition_holds(condition: &Value, req: &Request) -> bool {
    let Some(operators) = condition.as_object() else {
        return false;
    };
    operators.iter().all(|(op, keys)| {
        keys.as_object().is_some_and(|keys| keys.iter().all(|(key, wanted)| key_holds(op, key, wanted, req)))
    })
}

/// One operator on one condition key: any of the wanted values (for a negated operator: none of them).
fn key_holds(op: &str, key: &str, wanted: &Value, req: &Request) -> bool {
    let actual = context_value(key, req);
    let wanted = strings(wanted);
    if op == "Null" {
        return wanted.iter().any(|w| {
            (w.eq_ignore_ascii_case("true") && actual.is_none())
                || (w.eq_ignore_ascii_case("false") && actual.is_some())
        });
    }
    let (base, if_exists) = match op.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (op, false),
    };
    let Some((test, negated)) = operator(base) else {
        return false;
    };
    let Some(actual) = actual else {
        return if_exists || negated;
    };
    wanted.iter().any(|w| test(w, actual)) != negated
}

/// A condition test of (wanted, actual).
type Test = fn(&str, &str) -> bool;

/// A condition operator (without `IfExists`): its test and whether it is negated.
fn operator(name: &str) -> Option<(Test, bool)> {
    let equals: Test = |w, a| w == a;
    let equals_ignore_case: Test = |w, a| w.to_lowercase() == a.to_lowercase();
    let like: Test = |w, a| glob_matches(w, a, false);
    let arn: Test = arn_like;
    Some(match name {
        "StringEquals" => (equals, false),
        "StringNotEquals" => (equals, true),
        "StringEqualsIgnoreCase" => (equals_ignore_case, false),
        "StringNotEqualsIgnoreCase" => (equals_ignore_case, true),
        "StringLike" => (like, false),
        "StringNotLike" => (like, true),
        "ArnEquals" | "ArnLike" => (arn, false),
        "ArnNotEquals" | "ArnNotLike" => (arn, true),
        _ => return None,
    })
}

/// `ArnLike` as IAM defines it: each of the six colon-separated components matched on its own.
fn arn_like(pattern: &str, arn: &str) -> bool {
    let pattern: Vec<&str> = pattern.splitn(6, ':').collect();
    let arn: Vec<&str> = arn.splitn(6, ':').collect();
    pattern.len() == 6 && arn.len() == 6 && pattern.iter().zip(&arn).all(|(p, a)| glob_matches(p, a, false))
}

/// The value of a condition key for `req`; keys are case-insensitive, unknown keys are absent.
fn context_value<'a>(key: &str, req: &Request<'a>) -> Option<&'a str> {
    match key.to_ascii_lowercase().as_str() {
        "aws:principalaccount" | "aws:sourceaccount" => Some(req.principal.account),
        "aws:principalarn" => Some(req.principal.arn),
        "aws:resourceaccount" => Some(req.resource_account),
        _ => None,
    }
}

/// A policy value as a list of strings: a scalar or an array of scalars (strings, numbers, booleans), in
/// their string form; anything else contributes nothing.
fn strings(value: &Value) -> Vec<Cow<'_, str>> {
    fn scalar(value: &Value) -> Option<Cow<'_, str>> {
        match value {
            Value::String(s) => Some(Cow::Borrowed(s.as_str())),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Owned(b.to_string())),
            _ => None,
        }
    }
    match value {
        Value::Array(list) => list.iter().filter_map(scalar).collect(),
        _ => scalar(value).into_iter().collect(),
    }
}

/// Who signed a request (an `[[auth.keys]]` entry), as the services authorize what it asks.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's account.
    pub account: String,
    /// `arn:aws:iam::<account>:user/<user>`.
    pub arn: String,
    /// The key's action patterns; `None`: every action.
    pub actions: Option<Vec<String>>,
}

impl Caller {
    /// Whether the caller belongs to `account`.
    pub fn is_of(&self, account: &str) -> bool {
        self.account == account
    }

    /// Authorizes `action` on `resource` (owned by `resource_account`) under the resource's
    /// `policy`, if it has one; an AccessDeniedException in AWS's words otherwise.
    pub fn authorize(
        &self,
        action: &str,
        resource: &str,
        resource_account: &str,
        policy: Option<&Value>,
    ) -> Result<(), crate::protocol::error::ApiError> {
        let identity_allows = self.actions.as_deref().is_none_or(|patterns| actions_allow(patterns, action));
        if identity_allows && policy.is_none() && self.account == resource_account {
            return Ok(());
        }
        let req = Request {
            principal: Principal { account: &self.account, arn: &self.arn },
            action,
            resource,
            resource_account,
        };
        authorize(identity_allows, policy, &req)
            .map_err(|denial| crate::protocol::error::ApiError::AccessDenied(denial.message(&req)))
    }

    /// Authorizes `service:op` on the resource a request names by `name` (a table, a delivery
    /// stream, an application: `arn:aws:<service>:<region>:<account>:<kind>/<name>`, `*` for none),
    /// for services without resource policies: their resources are the daemon's account's, so a
    /// caller of another account is refused.
    pub fn authorize_named(
        &self,
        service: &str,
        op: &str,
        kind: &str,
        name: Option<&str>,
        region: &str,
        account: &str,
    ) -> Result<(), crate::protocol::error::ApiError> {
        let action = format!("{service}:{op}");
        let resource = match name {
            Some(n) => format!("arn:aws:{service}:{region}:{account}:{kind}/{n}"),
            None => "*".to_owned(),
        };
        self.authorize(&action, &resource, account, None)
    }
}

/// [`Caller::authorize_named`] for a request that names its resource by `member`, when a caller
/// was verified.
pub fn check_named(
    caller: Option<&Caller>,
    request: &Value,
    member: &str,
    (service, kind): (&str, &str),
    op: &str,
    cfg: &crate::config::Config,
) -> crate::protocol::error::ApiResult<()> {
    let Some(caller) = caller else { return Ok(()) };
    let name = request.get(member).and_then(Value::as_str);
    caller.authorize_named(service, op, kind, name, &cfg.region, &cfg.account_id)
}

/// Splits the front end's verdict into the signature's verdict and the caller it verified.
pub fn split(auth: crate::http::Auth) -> (crate::protocol::error::ApiResult<()>, Option<std::sync::Arc<Caller>>) {
    match auth {
        Ok(caller) => (Ok(()), caller),
        Err(e) => (Err(e), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ME: &str = "123456789012";
    const OTHER: &str = "210987654321";
    const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
    const BOB: &str = "arn:aws:iam::210987654321:user/bob";
    const STREAM: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/s";

    fn alice(action: &str) -> Request<'_> {
        Request { principal: Principal { account: ME, arn: ALICE }, action, resource: STREAM, resource_account: ME }
    }

    fn bob(action: &str) -> Request<'_> {
        Request { principal: Principal { account: OTHER, arn: BOB }, action, resource: STREAM, resource_account: ME }
    }

    /// A one-statement policy allowing anyone `kinesis:*` on the stream, under `condition`.
    fn allow_if(condition: Value) -> Value {
        json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kinesis:*", "Condition": condition}})
    }

    #[test]
    fn glob_stars_and_prefixes() {
        assert!(glob_matches("*", "", false));
        assert!(glob_matches("*", "kinesis:GetRecords", false));
        assert!(glob_matches("**", "", false));
        assert!(glob_matches("kinesis:Get*", "kinesis:GetRecords", true));
        assert!(glob_matches("kinesis:Get*", "kinesis:Get", true));
        assert!(!glob_matches("kinesis:Get*", "kinesis:PutRecord", true));
        assert!(!glob_matches("kinesis:GetRecords", "kinesis:GetRecordsX", true));
        assert!(!glob_matches("", "a", false));
        assert!(glob_matches("", "", false));
    }

    #[test]
    fn glob_question_mark_is_exactly_one_char() {
        assert!(glob_matches("kinesis:Get?ecords", "kinesis:GetRecords", true));
        assert!(glob_matches("?", "a", false));
        assert!(glob_matches("?", "é", false));
        assert!(!glob_matches("?", "", false));
        assert!(!glob_matches("?", "ab", false));
        assert!(glob_matches("stream/??", "stream/ab", false));
        assert!(!glob_matches("stream/??", "stream/a", false));
    }

    #[test]
    fn glob_case_is_ignored_only_when_asked() {
        assert!(glob_matches("Kinesis:getrecords", "kinesis:GetRecords", true));
        assert!(glob_matches("KINESIS:GET*", "kinesis:GetShardIterator", true));
        assert!(!glob_matches("Kinesis:getrecords", "kinesis:GetRecords", false));
        assert!(!glob_matches("arn:aws:kinesis:us-east-1:123456789012:stream/S", STREAM, false));
        assert!(glob_matches("arn:aws:kinesis:us-east-1:123456789012:stream/*", STREAM, false));
    }

    #[test]
    fn glob_leading_trailing_and_multiple_stars() {
        assert!(glob_matches("*Records", "kinesis:GetRecords", false));
        assert!(!glob_matches("*Records", "kinesis:GetRecord", false));
        assert!(glob_matches("*:Get*", "kinesis:GetRecords", false));
        assert!(glob_matches("a*b*c", "abc", false));
        assert!(glob_matches("a*b*c", "aXXbYYc", false));
        assert!(!glob_matches("a*b*c", "acb", false));
        assert!(glob_matches("*a*", "bab", false));
        assert!(glob_matches("a*?c", "abbc", false));
        assert!(!glob_matches("a*?c", "ac", false));
        // A pathological pattern against a long value finishes (no exponential backtracking).
        let long = "a".repeat(20_000);
        assert!(!glob_matches("*a*a*a*a*a*a*a*b", &long, false));
        assert!(glob_matches("*a*a*a*a*a*a*a*", &long, false));
    }

    #[test]
    fn actions_allow_any_pattern() {
        fn list(p: &[&str]) -> Vec<String> {
            p.iter().map(|s| s.to_string()).collect()
        }
        assert!(!actions_allow(&[], "kinesis:GetRecords"));
        assert!(!actions_allow(&list(&["dynamodb:*"]), "kinesis:GetRecords"));
        let both = list(&["dynamodb:*", "kinesis:Get*"]);
        assert!(actions_allow(&both, "kinesis:GetRecords"));
        assert!(!actions_allow(&both, "kinesis:PutRecords"));
        assert!(actions_allow(&list(&["*"]), "kinesis:PutRecords"));
        assert!(actions_allow(&list(&["kinesis:putrecords"]), "kinesis:PutRecords"));
    }

    #[test]
    fn cross_account_grant_then_deny_wins() {
        let grant = json!({"Sid": "g", "Effect": "Allow", "Principal": {"AWS": OTHER},
                           "Action": ["kinesis:GetRecords", "kinesis:GetShardIterator"], "Resource": STREAM});
        let policy = json!({"Version": "2012-10-17", "Statement": [grant]});
        assert_eq!(evaluate(&policy, &bob("kinesis:GetRecords")), Effect::Allow);
        assert_eq!(evaluate(&policy, &bob("kinesis:PutRecords")), Effect::NotApplicable);
        let deny = json!({"Effect": "Deny", "Principal": {"AWS": BOB}, "Action": "kinesis:*"});
        let policy = json!({"Statement": [grant, deny]});
        assert_eq!(evaluate(&policy, &bob("kinesis:GetRecords")), Effect::Deny);
        assert_eq!(evaluate(&policy, &alice("kinesis:GetRecords")), Effect::NotApplicable);
    }

    #[test]
    fn unreadable_documents_and_statements_do_not_apply() {
        let req = alice("kinesis:GetRecords");
        for doc in [json!(null), json!([]), json!({}), json!({"Statement": "x"}), json!({"Statement": [1, null]})] {
            assert_eq!(evaluate(&doc, &req), Effect::NotApplicable, "{doc}");
        }
        let stmt = |effect: &str| json!({"Statement": {"Effect": effect, "Principal": "*", "Action": "*"}});
        assert_eq!(evaluate(&stmt("Allow"), &req), Effect::Allow);
        assert_eq!(evaluate(&stmt("allow"), &req), Effect::NotApplicable);
        let both = json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*", "NotAction": "x"}});
        assert_eq!(evaluate(&both, &req), Effect::NotApplicable);
        let none = json!({"Statement": {"Effect": "Allow", "Action": "*"}});
        assert_eq!(evaluate(&none, &req), Effect::NotApplicable);
    }

    #[test]
    fn principal_forms() {
        let with = |p: Value| json!({"Statement": {"Effect": "Allow", "Principal": p, "Action": "kinesis:*"}});
        let req = bob("kinesis:GetRecords");
        assert_eq!(evaluate(&with(json!("*")), &req), Effect::Allow);
        assert_eq!(evaluate(&with(json!({"AWS": "*"})), &req), Effect::Allow);
        assert_eq!(evaluate(&with(json!({"AWS": OTHER})), &req), Effect::Allow);
        assert_eq!(evaluate(&with(json!({"AWS": 210987654321u64})), &req), Effect::Allow);
        assert_eq!(evaluate(&with(json!({"AWS": "arn:aws:iam::210987654321:root"})), &req), Effect::Allow);
        assert_eq!(evaluate(&with(json!({"AWS": [ALICE, BOB]})), &req), Effect::Allow);
        assert_eq!(evaluate(&with(json!({"AWS": ME})), &req), Effect::NotApplicable);
        assert_eq!(evaluate(&with(json!({"AWS": "arn:aws:iam::210987654321:user/eve"})), &req), Effect::NotApplicable);
        assert_eq!(evaluate(&with(json!({"AWS": "arn:aws:iam::123456789012:root"})), &req), Effect::NotApplicable);
        assert_eq!(evaluate(&with(json!({"Service": "kinesis.amazonaws.com"})), &req), Effect::NotApplicable);
        assert_eq!(evaluate(&with(json!("arn:aws:iam::210987654321:root")), &req), Effect::NotApplicable);
    }

    #[test]
    fn not_principal_applies_to_everyone_else() {
        let policy = json!({"Statement": {"Effect": "Deny", "NotPrincipal": {"AWS": [ALICE]}, "Action": "kinesis:*"}});
        assert_eq!(evaluate(&policy, &alice("kinesis:PutRecords")), Effect::NotApplicable);
        assert_eq!(evaluate(&policy, &bob("kinesis:PutRecords")), Effect::Deny);
    }

    #[test]
    fn not_action_resource_and_not_resource() {
        let policy = json!({"Statement": {"Effect": "Allow", "Principal": "*", "NotAction": "kinesis:Delete*"}});
        assert_eq!(evaluate(&policy, &alice("kinesis:GetRecords")), Effect::Allow);
        assert_eq!(evaluate(&policy, &alice("kinesis:DeleteStream")), Effect::NotApplicable);
        assert_eq!(evaluate(&policy, &alice("Kinesis:deletestream")), Effect::NotApplicable);
        let on =
            |key: &str, r: &str| json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*", key: r}});
        let other = "arn:aws:kinesis:us-east-1:123456789012:stream/t";
        assert_eq!(evaluate(&on("Resource", STREAM), &alice("kinesis:GetRecords")), Effect::Allow);
        assert_eq!(evaluate(&on("Resource", other), &alice("kinesis:GetRecords")), Effect::NotApplicable);
        assert_eq!(evaluate(&on("Resource", &STREAM.to_uppercase()), &alice("x")), Effect::NotApplicable);
        assert_eq!(evaluate(&on("NotResource", other), &alice("kinesis:GetRecords")), Effect::Allow);
        assert_eq!(evaluate(&on("NotResource", "arn:aws:kinesis:*:*:stream/*"), &alice("x")), Effect::NotApplicable);
    }

    #[test]
    fn conditions_on_accounts() {
        let source = allow_if(json!({"StringEquals": {"aws:SourceAccount": OTHER}}));
        assert_eq!(evaluate(&source, &bob("kinesis:GetRecords")), Effect::Allow);
        assert_eq!(evaluate(&source, &alice("kinesis:GetRecords")), Effect::NotApplicable);
        let keys_ignore_case = allow_if(json!({"StringEquals": {"AWS:sourceaccount": OTHER}}));
        assert_eq!(evaluate(&keys_ignore_case, &bob("kinesis:GetRecords")), Effect::Allow);
        let not_mine = allow_if(json!({"StringNotEquals": {"aws:PrincipalAccount": [ME, "111122223333"]}}));
        assert_eq!(evaluate(&not_mine, &bob("kinesis:GetRecords")), Effect::Allow);
        assert_eq!(evaluate(&not_mine, &alice("kinesis:GetRecords")), Effect::NotApplicable);
        // Operators are ANDed; values under one key are ORed.
        let both = allow_if(json!({
            "StringEquals": {"aws:ResourceAccount": ME},
            "StringLike": {"aws:PrincipalArn": ["arn:aws:iam::*:user/eve", "arn:aws:iam::*:user/b?b"]}
        }));
        assert_eq!(evaluate(&both, &bob("kinesis:GetRecords")), Effect::Allow);
        assert_eq!(evaluate(&both, &alice("kinesis:GetRecords")), Effect::NotApplicable);
        let ignore_case = allow_if(json!({"StringEqualsIgnoreCase": {"aws:PrincipalArn": BOB.to_uppercase()}}));
        assert_eq!(evaluate(&ignore_case, &bob("kinesis:GetRecords")), Effect::Allow);
    }

    #[test]
    fn if_exists_null_and_absent_keys() {
        let req = bob("kinesis:GetRecords");
        let eval = |c: Value| evaluate(&allow_if(c), &req);
        assert_eq!(eval(json!({"StringEquals": {"aws:SourceVpc": "vpc-1"}})), Effect::NotApplicable);
        assert_eq!(eval(json!({"StringEqualsIfExists": {"aws:SourceVpc": "vpc-1"}})), Effect::Allow);
        assert_eq!(eval(json!({"StringNotEquals": {"aws:SourceVpc": "vpc-1"}})), Effect::Allow);
        assert_eq!(eval(json!({"StringLikeIfExists": {"aws:PrincipalArn": "*:user/alice"}})), Effect::NotApplicable);
        assert_eq!(eval(json!({"StringLikeIfExists": {"aws:PrincipalArn": "*:user/bob"}})), Effect::Allow);
        assert_eq!(eval(json!({"Null": {"aws:SourceVpc": "true"}})), Effect::Allow);
        assert_eq!(eval(json!({"Null": {"aws:PrincipalArn": "false"}})), Effect::Allow);
        assert_eq!(eval(json!({"Null": {"aws:PrincipalArn": true}})), Effect::NotApplicable);
    }

    #[test]
    fn arn_operators_match_component_by_component() {
        let req = bob("kinesis:GetRecords");
        let eval = |c: Value| evaluate(&allow_if(c), &req);
        assert_eq!(eval(json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/bob"}})), Effect::Allow);
        assert_eq!(eval(json!({"ArnEquals": {"aws:PrincipalArn": BOB}})), Effect::Allow);
        assert_eq!(eval(json!({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}})), Effect::NotApplicable);
        assert_eq!(eval(json!({"ArnNotEquals": {"aws:PrincipalArn": ALICE}})), Effect::Allow);
        // A `*` does not cross a component boundary, unlike StringLike.
        assert_eq!(eval(json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:*:user/bob"}})), Effect::NotApplicable);
        assert_eq!(eval(json!({"StringLike": {"aws:PrincipalArn": "arn:aws:*:user/bob"}})), Effect::Allow);
    }

    #[test]
    fn unknown_operators_and_bad_conditions_fail_closed() {
        let req = bob("kinesis:GetRecords");
        let eval = |c: Value| evaluate(&allow_if(c), &req);
        assert_eq!(eval(json!({"NumericEquals": {"aws:SourceAccount": OTHER}})), Effect::NotApplicable);
        assert_eq!(eval(json!({"ForAnyValue:StringEquals": {"aws:SourceAccount": OTHER}})), Effect::NotApplicable);
        assert_eq!(eval(json!({"NullIfExists": {"aws:SourceVpc": "true"}})), Effect::NotApplicable);
        assert_eq!(eval(json!({"StringEquals": "x"})), Effect::NotApplicable);
        assert_eq!(eval(json!("x")), Effect::NotApplicable);
        assert_eq!(eval(json!({})), Effect::Allow);
        // A Deny behind an unknown operator does not apply either (a documented limit).
        let after = json!({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}});
        let deny = json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "*", "Condition": after}});
        assert_eq!(evaluate(&deny, &req), Effect::NotApplicable);
    }

    #[test]
    fn authorize_same_account() {
        let req = alice("kinesis:PutRecords");
        assert_eq!(authorize(true, None, &req), Ok(()));
        assert_eq!(authorize(false, None, &req), Err(Denial::NoIdentityAllow));
        let grant = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "kinesis:Put*"}});
        assert_eq!(authorize(false, Some(&grant), &req), Ok(()));
        let deny = json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "kinesis:PutRecords"}});
        assert_eq!(authorize(true, Some(&deny), &req), Err(Denial::ExplicitDeny));
        assert_eq!(authorize(true, Some(&json!("garbage")), &req), Ok(()));
    }

    #[test]
    fn authorize_cross_account_needs_both() {
        let req = bob("kinesis:GetRecords");
        let grant = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": OTHER}, "Action": "kinesis:Get*"}});
        assert_eq!(authorize(true, None, &req), Err(Denial::NoResourceAllow));
        assert_eq!(authorize(false, Some(&grant), &req), Err(Denial::NoIdentityAllow));
        assert_eq!(authorize(true, Some(&grant), &req), Ok(()));
        let both = json!({"Statement": [grant["Statement"].clone(),
                          {"Effect": "Deny", "Principal": {"AWS": BOB}, "Action": "*"}]});
        assert_eq!(authorize(true, Some(&both), &req), Err(Denial::ExplicitDeny));
    }

    #[test]
    fn denial_messages() {
        let req = alice("kinesis:PutRecords");
        let head = "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: kinesis:PutRecords on \
                    resource: arn:aws:kinesis:us-east-1:123456789012:stream/s";
        assert_eq!(
            Denial::NoIdentityAllow.message(&req),
            format!("{head} because no identity-based policy allows the kinesis:PutRecords action")
        );
        assert_eq!(
            Denial::ExplicitDeny.message(&req),
            format!("{head} with an explicit deny in a resource-based policy")
        );
        assert_eq!(
            Denial::NoResourceAllow.message(&req),
            format!("{head} because no resource-based policy allows the kinesis:PutRecords action")
        );
    }
}
