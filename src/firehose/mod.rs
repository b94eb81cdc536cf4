//! Amazon Data Firehose: the `Firehose_20150804` service (AWS JSON 1.1) and the delivery engine.
//!
//! Owns delivery streams (metadata under `firehose/stream/<name>`), their operations and
//! validation against AWS's model ([`ops`]), and delivery ([`delivery`]): records read through
//! the internal reader from a Kinesis stream (KinesisStreamAsSource) or from the delivery
//! stream's own internal stream (DirectPut, appended durably before PutRecord(Batch) answers),
//! buffered by size or interval, compressed ([`compress`]) and written as objects whose keys
//! ([`prefix`]) derive from the records they hold, to a directory per bucket under the data
//! directory (`buckets/<bucket>/<key>`).
//!
//! Transformation ([`transform`]): KPL de-aggregation of Kinesis sources, RecordDeAggregation,
//! a Lambda processor running what a `[[delivery.functions]]` entry names,
//! AppendDelimiterToRecord; dynamic partitioning ([`partition`]); HTTP endpoint destinations
//! ([`http_endpoint`]); S3 backup of the source records. Objects go to the bucket directories,
//! or to an S3-compatible server (`[delivery.s3]`). The Kinesis channel operations
//! ([`channels`]) are delivered by the same engine.
//!
//! With verified keys, the creator of a delivery stream with a Kinesis source must itself be
//! allowed to read that stream ([`SOURCE_READS`]): the RoleARN given is recorded, not assumed.
//! Delivery streams are per account: a key of another account than the daemon's names its own
//! account's, kept as `<account>/<name>` inside the daemon, with ARNs of that account.
//!
//! Limits: destinations ExtendedS3, S3 and HTTP endpoint only; no format conversion; UTC only;
//! encryption settings are recorded, not applied; one internal shard per DirectPut stream; one
//! buffer timer for all of a buffer's partitions.

pub mod channels;
pub mod compress;
pub mod delivery;
pub mod http_endpoint;
pub mod ops;
pub mod partition;
pub mod prefix;
pub mod transform;

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{AwsService, BoxFuture, Reply};
use crate::protocol::codec::{MemberKinds, Protocol};
use crate::protocol::error::{ApiError, ApiResult};
use crate::protocol::validate::Model;
use crate::service::Service;

pub const TARGET_PREFIX: &str = "Firehose_20150804";

pub static MEMBER_KINDS: MemberKinds =
    MemberKinds { blobs: &["Data"], timestamps: &["CreateTimestamp", "LastUpdateTimestamp", "DeliveryStartTimestamp"] };

/// The Firehose request shapes and constraints (generated from AWS's service model by
/// `scripts/gen_model.py firehose`).
pub static MODEL: LazyLock<Model> = LazyLock::new(|| Model::from_json(include_str!("model.json")));

pub const OPERATIONS: &[&str] = &[
    "CreateDeliveryStream",
    "DeleteDeliveryStream",
    "DescribeDeliveryStream",
    "ListDeliveryStreams",
    "ListTagsForDeliveryStream",
    "PutRecord",
    "PutRecordBatch",
    "StartDeliveryStreamEncryption",
    "StopDeliveryStreamEncryption",
    "TagDeliveryStream",
    "UntagDeliveryStream",
    "UpdateDestination",
];

/// A delivery stream, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStream {
    pub name: String,
    /// Unique per creation of the name.
    pub incarnation: u64,
    /// DirectPut or KinesisStreamAsSource.
    pub kind: String,
    /// CREATING, ACTIVE or DELETING.
    pub status: String,
    pub version_id: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// KinesisStreamAsSource: the source stream's ARN and the role given with it.
    pub source_stream_arn: Option<String>,
    pub source_role_arn: Option<String>,
    /// DirectPut: the internal stream its records are appended to.
    pub internal_stream: Option<String>,
    /// The destination as DescribeDeliveryStream shows it (ExtendedS3DestinationDescription,
    /// defaults filled in).
    pub destination: Value,
    pub tags: Vec<(String, String)>,
    /// DeliveryStreamEncryptionConfiguration as described.
    pub encryption: Option<Value>,
    /// An HTTP endpoint destination (HttpEndpointDestinationDescription; `destination` is then
    /// its S3 backup), with its access key, which is never described.
    #[serde(default)]
    pub http: Option<Value>,
    #[serde(default)]
    pub http_access_key: Option<String>,
}

impl DeliveryStream {
    pub fn arn(&self, svc: &Service) -> String {
        let (account, name) = svc.account_and_name(&self.name);
        format!("arn:aws:firehose:{}:{account}:deliverystream/{name}", svc.cfg.region)
    }

    /// The delivery stream's name as its account knows it (inside the daemon a delivery stream of
    /// another account is `<account>/<name>`).
    pub fn display_name(&self) -> &str {
        crate::stream::meta::split_qualified(&self.name).1
    }
}

pub fn meta_key(name: &str) -> String {
    format!("firehose/stream/{name}")
}

/// The Firehose service as the front end sees it.
pub struct Firehose(pub Arc<State>);

/// The service's state: the engine below it and its delivery streams' lock.
pub struct State {
    pub svc: Arc<Service>,
    pub engine: Arc<delivery::Engine>,
    /// Serializes changes to delivery streams.
    pub control: tokio::sync::Mutex<()>,
}

impl Firehose {
    /// The service, with a delivery running for every stored delivery stream.
    pub fn start(svc: Arc<Service>) -> Firehose {
        let engine = delivery::Engine::new(svc.clone());
        let f = Arc::new(State { svc, engine, control: tokio::sync::Mutex::new(()) });
        for ds in f.all() {
            if ds.status == "DELETING" {
                let f2 = f.clone();
                tokio::spawn(async move { ops::finish_delete(&f2, &ds).await });
            } else if ds.status == "CREATING" {
                // Saved, but the process ended before it became ACTIVE.
                let f2 = f.clone();
                tokio::spawn(async move { ops::activate(&f2, &ds).await });
            } else {
                f.engine.start(&ds);
            }
        }
        for c in channels::all(&f.svc) {
            if c.status == "DELETING" {
                let f2 = f.clone();
                tokio::spawn(async move { channels::finish_delete(&f2, &c).await });
            } else if c.status == "CREATING" || c.status == "UPDATING" {
                // The change was saved; only its settling was lost with the process.
                let f2 = f.clone();
                tokio::spawn(async move { channels::settle(&f2, &c.name, c.incarnation, &c.status).await });
            } else {
                f.engine.start(&c.delivery());
            }
        }
        Firehose(f)
    }
}

impl State {
    pub fn all(&self) -> Vec<DeliveryStream> {
        let mut out: Vec<DeliveryStream> = scan(&self.svc, "firehose/stream/", "delivery stream");
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// A new incarnation number (unique for the life of the data directory).
    pub async fn incarnation(&self) -> ApiResult<u64> {
        let store = self.svc.store.clone();
        tokio::task::spawn_blocking(move || store.allocate_stream_id())
            .await
            .map_err(|e| ApiError::InternalFailure(e.to_string()))?
            .map_err(|e| ApiError::InternalFailure(e.to_string()))
    }

    pub fn get(&self, name: &str) -> ApiResult<DeliveryStream> {
        let bytes = self
            .svc
            .store
            .get_meta(&meta_key(name))
            .map_err(|e| ApiError::InternalFailure(e.to_string()))?
            .ok_or_else(|| self.not_found(name))?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::InternalFailure(e.to_string()))
    }

    pub async fn save(&self, ds: &DeliveryStream) -> ApiResult<()> {
        let bytes = serde_json::to_vec(ds).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
        self.svc.put_meta(&meta_key(&ds.name), bytes).await
    }

    pub fn not_found(&self, name: &str) -> ApiError {
        ApiError::ResourceNotFound(format!("Firehose {name} under account {} not found.", self.svc.cfg.account_id))
    }
}

/// Every readable record stored under a metadata prefix; unreadable ones are logged and left.
pub fn scan<T: serde::de::DeserializeOwned>(svc: &Service, prefix: &str, what: &str) -> Vec<T> {
    let rows = match svc.store.meta_scan(prefix) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "reading {what}s");
            return Vec::new();
        }
    };
    rows.into_iter()
        .filter_map(|(k, v)| match serde_json::from_slice(&v) {
            Ok(x) => Some(x),
            Err(e) => {
                tracing::error!(key = %k, error = %e, "unreadable {what} metadata");
                None
            }
        })
        .collect()
}

impl AwsService for Firehose {
    fn signing_name(&self) -> &'static str {
        "firehose"
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
        let f = self.0.clone();
        Box::pin(async move {
            let (auth, caller) = crate::http::iam::split(auth);
            let mut value = match MODEL.request(OPERATIONS, &op, proto, &body, &MEMBER_KINDS, auth) {
                Ok(v) => v,
                Err(e) => return Reply::Whole(Err(e)),
            };
            drop(body);
            // Delivery streams are per account: a caller's names are its own account's (the
            // model has checked them against the name pattern, which has no `/`).
            let account = crate::kinesis::accounts::account_of(&f.svc, caller.as_deref()).to_owned();
            crate::kinesis::accounts::qualify_member(&f.svc, &account, &mut value, "DeliveryStreamName");
            let named = value.get("DeliveryStreamName").and_then(Value::as_str).map(|n| f.svc.account_and_name(n).1);
            if let Err(e) = match caller.as_deref() {
                Some(c) => c.authorize_named("firehose", &op, "deliverystream", named, &f.svc.cfg.region, &account),
                None => Ok(()),
            }
            .and_then(|()| {
                match (caller.as_deref(), value.pointer("/KinesisStreamSourceConfiguration/KinesisStreamARN")) {
                    // A delivery stream reads its source with the rights of whoever creates it (there
                    // are no roles to assume): the creator must itself be allowed to read the stream.
                    (Some(c), Some(Value::String(arn))) => {
                        crate::kinesis::access::authorize_stream(&f.svc, c, SOURCE_READS, arn)
                    }
                    _ => Ok(()),
                }
            }) {
                return Reply::Whole(Err(e));
            }
            let result = ops::dispatch(&f, &op, value, &account).await;
            Reply::Whole(result.map_err(|e| crate::kinesis::accounts::present_error(&f.svc, e)))
        })
    }
}

/// What the creator of a delivery stream with a Kinesis source must be allowed on that stream:
/// what AWS asks of the role a delivery stream reads its source with.
const SOURCE_READS: &[&str] =
    &["kinesis:DescribeStream", "kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:ListShards"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_loads_and_knows_every_operation() {
        for op in OPERATIONS {
            assert!(MODEL.has_operation(op), "{op}");
        }
        let mut req = serde_json::json!({"DeliveryStreamName": "bad name!"});
        assert!(matches!(MODEL.check("DescribeDeliveryStream", &mut req), Err(ApiError::Validation(_))));
    }
}
