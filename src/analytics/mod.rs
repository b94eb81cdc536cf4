//! Amazon Kinesis Data Analytics for SQL applications: the `KinesisAnalytics_20150814` service
//! (AWS JSON 1.1), the SQL dialect ([`sql`]) and the applications' runs ([`runner`]).
//!
//! Owns applications (metadata under `analytics/app/<name>`), their operations and validation
//! against AWS's model ([`ops`]), and their runs: a RUNNING application reads its input stream
//! (a Kinesis stream, or a delivery stream's records) through the internal reader, maps records
//! to rows ([`schema`]), runs its pumps and writes the rows of its output streams to Kinesis
//! streams or DirectPut delivery streams. Operator state, the input position and the output
//! not yet known to be written are checkpointed together (`analytics/checkpoint/<name>`), so
//! after `kill -9` an application writes no output row twice and misses none.
//!
//! Reference data sources are read from their bucket (a directory or the S3-compatible server)
//! when a run starts, and joined as tables (JOIN or LEFT JOIN ... ON).
//!
//! Limits: one input with InputParallelism 1; outputs to Kinesis streams and DirectPut delivery
//! streams (no Lambda outputs); no input preprocessing Lambda; RANDOM_CUT_FOREST, HOTSPOTS and the other table functions are refused
//! when the code is compiled; CloudWatch logging options are recorded, errors go to the log.
//! With verified keys, the caller that configures an input or output must itself be allowed to
//! read or write it ([`USES`]): the RoleARN given is recorded, not assumed. Applications are per
//! account: a key of another account than the daemon's names its own account's, kept as
//! `<account>/<name>` inside the daemon, with ARNs of that account.

pub mod ops;
pub mod runner;
pub mod schema;
pub mod sql;

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{AwsService, BoxFuture, Reply};
use crate::protocol::codec::{MemberKinds, Protocol};
use crate::protocol::error::{ApiError, ApiResult};
use crate::protocol::validate::Model;
use crate::service::Service;

pub const TARGET_PREFIX: &str = "KinesisAnalytics_20150814";

pub static MEMBER_KINDS: MemberKinds =
    MemberKinds { blobs: &[], timestamps: &["CreateTimestamp", "LastUpdateTimestamp"] };

/// The request shapes and constraints (generated from AWS's service model by
/// `scripts/gen_model.py analytics`).
pub static MODEL: LazyLock<Model> = LazyLock::new(|| Model::from_json(include_str!("model.json")));

pub const OPERATIONS: &[&str] = &[
    "AddApplicationCloudWatchLoggingOption",
    "AddApplicationInput",
    "AddApplicationInputProcessingConfiguration",
    "AddApplicationOutput",
    "AddApplicationReferenceDataSource",
    "CreateApplication",
    "DeleteApplication",
    "DeleteApplicationCloudWatchLoggingOption",
    "DeleteApplicationInputProcessingConfiguration",
    "DeleteApplicationOutput",
    "DeleteApplicationReferenceDataSource",
    "DescribeApplication",
    "DiscoverInputSchema",
    "ListApplications",
    "ListTagsForResource",
    "StartApplication",
    "StopApplication",
    "TagResource",
    "UntagResource",
    "UpdateApplication",
];

/// An application, as stored. Its inputs, outputs, reference data sources and logging options
/// are kept as DescribeApplication shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub name: String,
    /// Unique per creation of the name.
    pub incarnation: u64,
    pub description: Option<String>,
    /// READY, STARTING, RUNNING, STOPPING, UPDATING or DELETING.
    pub status: String,
    pub version_id: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub code: String,
    pub inputs: Vec<Value>,
    pub outputs: Vec<Value>,
    pub references: Vec<Value>,
    pub logging: Vec<Value>,
    pub tags: Vec<(String, String)>,
    /// Numbers the runs: a start from NOW or TRIM_HORIZON begins a new one (fresh state).
    pub run: u64,
    /// Where the current run's input started: an epoch-ms time (NOW) or the trim horizon.
    pub run_start: Option<i64>,
}

impl Application {
    pub fn arn(&self, svc: &Service) -> String {
        let (account, name) = svc.account_and_name(&self.name);
        format!("arn:aws:kinesisanalytics:{}:{account}:application/{name}", svc.cfg.region)
    }

    /// The application's name as its account knows it (inside the daemon an application of
    /// another account is `<account>/<name>`).
    pub fn display_name(&self) -> &str {
        crate::stream::meta::split_qualified(&self.name).1
    }
}

pub fn meta_key(name: &str) -> String {
    format!("analytics/app/{name}")
}

/// The service as the front end sees it.
pub struct Analytics(pub Arc<State>);

pub struct State {
    pub svc: Arc<Service>,
    /// Delivery streams, as inputs and outputs.
    pub firehose: Arc<crate::firehose::State>,
    pub runs: runner::Runs,
    /// Serializes changes to applications.
    pub control: tokio::sync::Mutex<()>,
}

impl Analytics {
    /// The service, with every RUNNING application running again and changes a crash cut short
    /// finished.
    pub fn start(svc: Arc<Service>, firehose: Arc<crate::firehose::State>) -> Analytics {
        let a = Arc::new(State { svc, firehose, runs: runner::Runs::default(), control: tokio::sync::Mutex::new(()) });
        for app in a.all() {
            let a2 = a.clone();
            tokio::spawn(async move { ops::settle(&a2, app).await });
        }
        Analytics(a)
    }
}

impl State {
    pub fn all(&self) -> Vec<Application> {
        let mut out: Vec<Application> = crate::firehose::scan(&self.svc, "analytics/app/", "application");
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn get(&self, name: &str) -> ApiResult<Application> {
        let bytes = self
            .svc
            .store
            .get_meta(&meta_key(name))
            .map_err(|e| ApiError::InternalFailure(e.to_string()))?
            .ok_or_else(|| self.not_found(name))?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::InternalFailure(e.to_string()))
    }

    pub async fn save(&self, app: &Application) -> ApiResult<()> {
        let bytes = serde_json::to_vec(app).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
        self.svc.put_meta(&meta_key(&app.name), bytes).await
    }

    pub fn not_found(&self, name: &str) -> ApiError {
        let (account, name) = self.svc.account_and_name(name);
        ApiError::ResourceNotFound(format!("Application {name} is not found in account {account}."))
    }
}

impl AwsService for Analytics {
    fn signing_name(&self) -> &'static str {
        "kinesisanalytics"
    }

    fn target_prefix(&self) -> &'static str {
        TARGET_PREFIX
    }

    fn protocols(&self) -> &'static [Protocol] {
        &[Protocol::Json]
    }

    fn has_operation(&self, op: &str) -> bool {
        OPERATIONS.contains(&op)
    }

    fn member_kinds(&self) -> &'static MemberKinds {
        &MEMBER_KINDS
    }

    fn call(&self, op: String, proto: Protocol, body: Bytes, auth: crate::http::Auth) -> BoxFuture<Reply> {
        let a = self.0.clone();
        Box::pin(async move {
            let (auth, caller) = crate::http::iam::split(auth);
            let mut value = match MODEL.request(OPERATIONS, &op, proto, &body, &MEMBER_KINDS, auth) {
                Ok(v) => v,
                Err(e) => return Reply::Whole(Err(e)),
            };
            drop(body);
            // Applications are per account: a caller's names are its own account's (the model
            // has checked them against the name pattern, which has no `/`), and an application
            // ARN of another account names nothing it may touch.
            let account = crate::kinesis::accounts::account_of(&a.svc, caller.as_deref()).to_owned();
            crate::kinesis::accounts::qualify_member(&a.svc, &account, &mut value, "ApplicationName");
            let named = value.get("ApplicationName").and_then(Value::as_str).map(|n| a.svc.account_and_name(n).1);
            let arn_owner = value
                .get("ResourceARN")
                .and_then(Value::as_str)
                .and_then(crate::stream::meta::arn_account)
                .map(|owner| a.svc.effective_account(owner).to_owned());
            if let Err(e) = match caller.as_deref() {
                Some(c) => {
                    c.authorize_named("kinesisanalytics", &op, "application", named, &a.svc.cfg.region, &account)
                }
                None => Ok(()),
            }
            .and_then(|()| match arn_owner {
                Some(owner) if owner != account => Err(ApiError::ResourceNotFound(format!(
                    "Resource {} is not found in account {account}.",
                    value["ResourceARN"].as_str().unwrap_or_default()
                ))),
                _ => Ok(()),
            })
            .and_then(|()| match caller.as_deref() {
                Some(c) => authorize_uses(&a.svc, c, &value).and_then(|()| authorize_discovery(&a.svc, c, &op, &value)),
                None => Ok(()),
            }) {
                return Reply::Whole(Err(e));
            }
            let result = ops::dispatch(&a, &op, value, &account).await;
            Reply::Whole(result.map_err(|e| crate::kinesis::accounts::present_error(&a.svc, e)))
        })
    }
}

/// What an application reads and writes, as configured in a request (its inputs, outputs and
/// their updates), and what the caller must itself be allowed on each: an application runs with
/// the rights of whoever configures it (there are no roles to assume).
const USES: &[(&str, &str, &[&str])] = &[
    ("KinesisStreamsInput", "kinesis", STREAM_READS),
    ("KinesisStreamsInputUpdate", "kinesis", STREAM_READS),
    ("KinesisStreamsOutput", "kinesis", STREAM_WRITES),
    ("KinesisStreamsOutputUpdate", "kinesis", STREAM_WRITES),
    ("KinesisFirehoseInput", "firehose", DELIVERY_READS),
    ("KinesisFirehoseInputUpdate", "firehose", DELIVERY_READS),
    ("KinesisFirehoseOutput", "firehose", DELIVERY_WRITES),
    ("KinesisFirehoseOutputUpdate", "firehose", DELIVERY_WRITES),
];
const STREAM_READS: &[&str] =
    &["kinesis:DescribeStream", "kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:ListShards"];
const STREAM_WRITES: &[&str] = &["kinesis:DescribeStream", "kinesis:PutRecord", "kinesis:PutRecords"];
const DELIVERY_READS: &[&str] = &["firehose:DescribeDeliveryStream"];
const DELIVERY_WRITES: &[&str] = &["firehose:DescribeDeliveryStream", "firehose:PutRecordBatch"];

/// DiscoverInputSchema samples the stream or delivery stream its `ResourceARN` names: the caller
/// must itself be allowed to read it.
fn authorize_discovery(svc: &Service, caller: &crate::http::iam::Caller, op: &str, v: &Value) -> ApiResult<()> {
    match v.get("ResourceARN").and_then(Value::as_str) {
        Some(arn) if op == "DiscoverInputSchema" && arn.starts_with("arn:aws:firehose:") => {
            crate::kinesis::access::authorize_delivery_stream(svc, caller, DELIVERY_READS, arn)
        }
        Some(arn) if op == "DiscoverInputSchema" => {
            crate::kinesis::access::authorize_stream(svc, caller, STREAM_READS, arn)
        }
        _ => Ok(()),
    }
}

/// Authorizes `caller` for every stream and delivery stream the request configures the
/// application to read or write ([`USES`]), wherever it sits in the request.
fn authorize_uses(svc: &crate::service::Service, caller: &crate::http::iam::Caller, v: &Value) -> ApiResult<()> {
    match v {
        Value::Object(members) => members.iter().try_for_each(|(key, member)| {
            if let Some((_, service, actions)) = USES.iter().find(|(k, _, _)| k == key) {
                let arn = member.get("ResourceARN").or(member.get("ResourceARNUpdate")).and_then(Value::as_str);
                if let Some(arn) = arn {
                    match *service {
                        "kinesis" => crate::kinesis::access::authorize_stream(svc, caller, actions, arn)?,
                        _ => crate::kinesis::access::authorize_delivery_stream(svc, caller, actions, arn)?,
                    }
                }
            }
            authorize_uses(svc, caller, member)
        }),
        Value::Array(items) => items.iter().try_for_each(|item| authorize_uses(svc, caller, item)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_loads_and_knows_every_operation() {
        for op in OPERATIONS {
            assert!(MODEL.has_operation(op), "{op}");
        }
        let mut req = serde_json::json!({"ApplicationName": "bad name!"});
        assert!(matches!(MODEL.check("DescribeApplication", &mut req), Err(ApiError::Validation(_))));
    }
}
