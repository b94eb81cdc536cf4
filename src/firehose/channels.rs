//! Kinesis channels: the channel operations of the `Kinesis_20131202` API (CreateChannel,
//! DescribeChannel, ListChannels, UpdateChannel, DeleteChannel), delivered by the delivery
//! engine ([`super::delivery`]) that serves Firehose.
//!
//! Owns channels (metadata under `firehose/channel/<name>`), their validation and their
//! object keys ([`KeyTemplate`]). A channel is delivered as an internal delivery stream named
//! `~channel~<name>` (a name no delivery stream can have): its source stream is read through
//! the internal reader from the channel's creation on (no backfill, as on AWS), in buffers of
//! DataFreshnessInSeconds, each written as one object of the records as they are (no
//! transformation), compressed NONE, GZIP or ZSTD, under the OutputKeyTemplate. Records that
//! fail the RecordFormatType's check (JSON must parse, STRING must be UTF-8) go to the
//! dead-letter bucket instead, in Firehose's error record JSON.
//!
//! Limits: general purpose S3 destinations only (S3 Tables answer InvalidArgumentException);
//! one source stream per channel (as on AWS today); EncryptionConfiguration and
//! LoggingConfiguration are recorded, not applied; ExpectedBucketOwner is recorded, not
//! checked (local buckets have no owner).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{DeliveryStream, State};
use crate::kinesis::epoch_seconds;
use crate::protocol::error::{ApiError, ApiResult};
use crate::service::Service;

pub const OPERATIONS: &[&str] = &["CreateChannel", "DeleteChannel", "DescribeChannel", "ListChannels", "UpdateChannel"];

/// DataFreshnessInSeconds: default and bounds.
pub const FRESHNESS_DEFAULT_S: u64 = 300;
pub const FRESHNESS_MIN_S: u64 = 300;
pub const FRESHNESS_MAX_S: u64 = 900;
/// An object is written when its records reach this size even before the freshness interval.
pub const OBJECT_BYTES_MAX_MB: u64 = 128;
/// Tags per channel (the TagMap's bound).
pub const TAGS_MAX: usize = 200;
/// ListChannels: results per page, at most.
pub const LIST_MAX: usize = 100;

/// The template used when a channel gives none.
pub const DEFAULT_TEMPLATE: &str = "kinesis-channel/!{channel-name}/!{channel-id}/!{yyyy}/!{MM}/!{dd}/!{HH}/\
!{channel-name}-!{channel-id}-!{yyyy}-!{MM}-!{dd}-!{HH}-!{mm}!{extension}";

pub fn meta_key(name: &str) -> String {
    format!("firehose/channel/{name}")
}

/// The internal delivery stream's name of a channel.
pub fn delivery_name(name: &str) -> String {
    format!("~channel~{name}")
}

/// A channel, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub name: String,
    pub id: String,
    pub incarnation: u64,
    /// CREATING, ACTIVE, UPDATING or DELETING.
    pub status: String,
    pub created_ms: i64,
    pub role_arn: String,
    pub stream_arn: String,
    pub stream_created_ms: i64,
    /// RecordConfiguration as given.
    pub record_configuration: Value,
    /// S3DestinationDescription (defaults filled in).
    pub s3: Value,
    pub encryption: Option<Value>,
    pub logging: Value,
    pub tags: Vec<(String, String)>,
}

impl Channel {
    /// `arn:aws:kinesis:<region>:<account>:channel/<ChannelId>` (the id, not the name, as AWS).
    pub fn arn(&self, svc: &Service) -> String {
        format!("arn:aws:kinesis:{}:{}:channel/{}", svc.cfg.region, svc.cfg.account_id, self.id)
    }

    pub fn record_format(&self) -> &str {
        self.record_configuration["RecordFormatType"].as_str().unwrap_or("BYTE_ARRAY")
    }

    /// What the delivery engine delivers: the source stream, one buffer per freshness interval,
    /// the storage configuration.
    pub fn delivery(&self) -> DeliveryStream {
        let storage = &self.s3["StorageConfiguration"];
        let compression = match storage["CompressionType"].as_str() {
            Some("GZIP") => "GZIP",
            Some("ZSTD") => "ZSTD",
            _ => "UNCOMPRESSED",
        };
        let dlq = &self.s3["DeadLetterQueueS3Configuration"];
        DeliveryStream {
            name: delivery_name(&self.name),
            incarnation: self.incarnation,
            kind: "Channel".into(),
            status: if matches!(self.status.as_str(), "ACTIVE" | "UPDATING") { "ACTIVE" } else { "CREATING" }.into(),
            version_id: 1,
            created_ms: self.created_ms,
            updated_ms: self.created_ms,
            source_stream_arn: Some(self.stream_arn.clone()),
            source_role_arn: Some(self.role_arn.clone()),
            internal_stream: None,
            destination: json!({
                "BucketARN": storage["BucketARN"],
                "CompressionFormat": compression,
                "BufferingHints": {
                    "SizeInMBs": OBJECT_BYTES_MAX_MB,
                    "IntervalInSeconds": self.s3["DataFreshnessInSeconds"],
                },
                "Channel": {
                    "Name": self.name,
                    "Id": self.id,
                    "Template": storage["OutputKeyTemplate"].as_str().unwrap_or(DEFAULT_TEMPLATE),
                    "RecordFormatType": self.record_format(),
                    "DeadLetterBucketARN": dlq["BucketARN"],
                    "ErrorOutputPrefix": dlq["ErrorOutputPrefix"],
                },
            }),
            tags: Vec::new(),
            encryption: None,
            http: None,
            http_access_key: None,
        }
    }

    fn description(&self, svc: &Service) -> Value {
        let mut d = json!({
            "ChannelName": self.name,
            "ChannelARN": self.arn(svc),
            "ChannelId": self.id,
            "ChannelStatus": self.status,
            "ChannelCreationTimestamp": epoch_seconds(self.created_ms),
            "ServiceExecutionRoleARN": self.role_arn,
            "StreamConfigurationList": [{
                "StreamARN": self.stream_arn,
                "StreamCreationTimestamp": epoch_seconds(self.stream_created_ms),
                "RecordConfiguration": self.record_configuration,
            }],
            "S3DestinationConfiguration": self.s3,
            "LoggingConfiguration": self.logging,
        });
        if let Some(e) = &self.encryption {
            d["EncryptionConfiguration"] = e.clone();
        }
        d
    }

    fn summary(&self, svc: &Service) -> Value {
        json!({
            "ChannelName": self.name,
            "ChannelARN": self.arn(svc),
            "ChannelId": self.id,
            "ChannelStatus": self.status,
            "ChannelCreationTimestamp": epoch_seconds(self.created_ms),
            "ChannelDestinationType": "S3",
            "Streams": [{
                "StreamARN": self.stream_arn,
                "StreamCreationTimestamp": epoch_seconds(self.stream_created_ms),
            }],
        })
    }
}

/// One piece of an OutputKeyTemplate.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Var(Var),
    /// `!{extension:.json}`: an extension of one's own, in place of the compression's.
    Extension(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Var {
    ChannelName,
    ChannelId,
    StreamName,
    Year,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    /// The compression's extension (`.gz`, `.zst`, nothing for NONE).
    Extension,
}

impl Var {
    fn parse(name: &str) -> Option<Var> {
        Some(match name {
            "channel-name" => Var::ChannelName,
            "channel-id" => Var::ChannelId,
            "stream-name" => Var::StreamName,
            "yyyy" => Var::Year,
            "yy" => Var::Year2,
            "MM" => Var::Month,
            "dd" => Var::Day,
            "HH" => Var::Hour,
            "mm" => Var::Minute,
            "extension" => Var::Extension,
            _ => return None,
        })
    }
}

/// An OutputKeyTemplate: literals and `!{variable}`s. The object's unique suffix (`-<uuid>`,
/// derived from the records in it, so that an object written again after a crash replaces
/// itself) goes before the extension placeholder when there is one, else at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyTemplate {
    pieces: Vec<Piece>,
}

/// What a key is made of, besides the template.
pub struct KeyValues<'a> {
    pub channel_name: &'a str,
    pub channel_id: &'a str,
    pub stream_name: &'a str,
    /// The arrival time of the oldest record in the object, epoch ms (UTC).
    pub ts_ms: i64,
    /// The compression's extension.
    pub extension: &'a str,
    pub unique: &'a str,
}

/// Characters of a key, at most, before the unique suffix (S3's 1,024 less 38).
pub const EXPANDED_MAX: usize = 986;

impl KeyTemplate {
    /// Parses and checks a template as AWS does: no `..`, no `.` segment, no `//`, no leading or
    /// trailing `/`; every `!{` closed and naming a known variable, at least one; literals of
    /// alphanumerics and `!-_'.*()/=`; at most one extension placeholder, at the end, and one
    /// when the objects are compressed.
    pub fn parse(text: &str, compressed: bool) -> Result<KeyTemplate, String> {
        let refuse = |why: &str| Err(format!("OutputKeyTemplate {text} is invalid: {why}."));
        if text.starts_with('/') || text.ends_with('/') {
            return refuse("it must not start or end with '/'");
        }
        if text.contains("//") {
            return refuse("it must not contain '//'");
        }
        if text.split('/').any(|seg| seg == "." || seg.contains("..")) {
            return refuse("it must not contain '..' or a '.' path segment");
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find("!{") {
                Some(0) => {
                    let Some(end) = rest.find('}') else { return refuse("a '!{' has no matching '}'") };
                    let name = &rest[2..end];
                    let piece = match (Var::parse(name), name.strip_prefix("extension:")) {
                        (Some(v), _) => Piece::Var(v),
                        (None, Some(ext))
                            if ext.len() > 1
                                && ext.starts_with('.')
                                && ext.bytes().all(|b| b == b'.' || b.is_ascii_lowercase()) =>
                        {
                            Piece::Extension(ext.to_owned())
                        }
                        (None, Some(_)) => {
                            return refuse(
                                "an !{extension:...} must start with '.' and hold lower-case letters and dots",
                            )
                        }
                        (None, None) => return refuse(&format!("!{{{name}}} is not a supported variable")),
                    };
                    pieces.push(piece);
                    rest = &rest[end + 1..];
                }
                at => {
                    let end = at.unwrap_or(rest.len());
                    let lit = &rest[..end];
                    if let Some(c) = lit.chars().find(|c| !(c.is_ascii_alphanumeric() || "!-_'.*()/=".contains(*c))) {
                        return refuse(&format!("the character '{c}' is not allowed outside a variable"));
                    }
                    pieces.push(Piece::Text(lit.to_owned()));
                    rest = &rest[end..];
                }
            }
        }
        if !pieces.iter().any(|p| !matches!(p, Piece::Text(_))) {
            return refuse("it must contain at least one variable");
        }
        let extensions = pieces.iter().filter(|p| is_extension(p)).count();
        if extensions > 1 {
            return refuse("it can hold one extension placeholder only");
        }
        if extensions == 1 && !pieces.last().is_some_and(is_extension) {
            return refuse("the extension placeholder must be at its end");
        }
        if compressed && extensions == 0 {
            return refuse("a compressed channel's template needs !{extension} or !{extension:...} at its end");
        }
        Ok(KeyTemplate { pieces })
    }

    pub fn evaluate(&self, v: &KeyValues) -> String {
        let t = super::prefix::Civil::from_ms(v.ts_ms);
        let mut out = String::new();
        let mut suffixed = false;
        for p in &self.pieces {
            if is_extension(p) {
                out.push('-');
                out.push_str(v.unique);
                suffixed = true;
            }
            match p {
                Piece::Text(s) => out.push_str(s),
                Piece::Extension(e) => out.push_str(e),
                Piece::Var(Var::ChannelName) => out.push_str(v.channel_name),
                Piece::Var(Var::ChannelId) => out.push_str(v.channel_id),
                Piece::Var(Var::StreamName) => out.push_str(v.stream_name),
                Piece::Var(Var::Year) => out.push_str(&format!("{:04}", t.year)),
                Piece::Var(Var::Year2) => out.push_str(&format!("{:02}", t.year.rem_euclid(100))),
                Piece::Var(Var::Month) => out.push_str(&format!("{:02}", t.month)),
                Piece::Var(Var::Day) => out.push_str(&format!("{:02}", t.day)),
                Piece::Var(Var::Hour) => out.push_str(&format!("{:02}", t.hour)),
                Piece::Var(Var::Minute) => out.push_str(&format!("{:02}", t.minute)),
                Piece::Var(Var::Extension) => out.push_str(v.extension),
            }
        }
        if !suffixed {
            out.push('-');
            out.push_str(v.unique);
        }
        out
    }
}

fn is_extension(p: &Piece) -> bool {
    matches!(p, Piece::Var(Var::Extension) | Piece::Extension(_))
}

/// The dead-letter objects' template, under the dead-letter prefix.
const DEAD_LETTER_TEMPLATE: &str =
    "!{yyyy}/!{MM}/!{dd}/!{HH}/!{channel-name}-!{channel-id}-!{yyyy}-!{MM}-!{dd}-!{HH}-!{mm}!{extension:.json}";

/// A channel object's key and its dead-letter object's key: `unique` (the plan's digest)
/// makes both the same when a plan is carried out again.
pub fn object_keys(ds: &DeliveryStream, ch: &Value, unique: &str, compression: &str, ts_ms: i64) -> (String, String) {
    let c = super::compress::Compression::parse(compression).unwrap_or(super::compress::Compression::Uncompressed);
    let stream = ds.source_stream_arn.as_deref().and_then(crate::stream::meta::stream_name_from_arn);
    let values = KeyValues {
        channel_name: ch["Name"].as_str().unwrap_or_default(),
        channel_id: ch["Id"].as_str().unwrap_or_default(),
        stream_name: stream.unwrap_or_default(),
        ts_ms,
        extension: c.extension(),
        unique,
    };
    let template = ch["Template"].as_str().unwrap_or(DEFAULT_TEMPLATE);
    // Checked when the channel was created.
    let key = KeyTemplate::parse(template, false).map(|t| t.evaluate(&values)).unwrap_or_default();
    let dead = KeyTemplate::parse(DEAD_LETTER_TEMPLATE, false).map(|t| t.evaluate(&values)).unwrap_or_default();
    (key, format!("{}{dead}", ch["ErrorOutputPrefix"].as_str().unwrap_or_default()))
}

/// A dead-letter entry: where the record is in the stream and why it was not delivered (not
/// its data, as on AWS), one JSON line.
pub fn dead_letter(stream_arn: &str, r: &super::transform::InRecord, why: &str, now_ms: i64) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({
        "streamARN": stream_arn,
        "shardId": r.shard_id,
        "sequenceNumber": r.id,
        "partitionKey": r.partition_key,
        "approximateArrivalTimestamp": r.ts_ms,
        "errorCode": "InvalidRecordFormat",
        "errorMessage": why,
        "attemptEndingTimestamp": now_ms,
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// Checks a record against the channel's RecordFormatType; the reason when it fails.
pub fn check_record(record_format: &str, data: &[u8]) -> Result<(), String> {
    match record_format {
        "JSON" => serde_json::from_slice::<serde::de::IgnoredAny>(data)
            .map(|_| ())
            .map_err(|e| format!("The record is not valid JSON: {e}")),
        "STRING" => std::str::from_utf8(data).map(|_| ()).map_err(|e| format!("The record is not valid UTF-8: {e}")),
        _ => Ok(()),
    }
}

pub async fn dispatch(f: &Arc<State>, op: &str, req: Value) -> ApiResult<Value> {
    match op {
        "CreateChannel" => create(f, req).await,
        "DescribeChannel" => describe(f, req),
        "ListChannels" => list(f, req),
        "UpdateChannel" => update(f, req).await,
        "DeleteChannel" => delete(f, req).await,
        _ => Err(ApiError::UnknownOperation(format!("Operation {op} is not supported by this daemon."))),
    }
}

fn text<'a>(v: &'a Value, member: &str) -> Option<&'a str> {
    v.get(member).and_then(Value::as_str)
}

/// Every stored channel, by name.
pub fn all(svc: &Service) -> Vec<Channel> {
    let mut out: Vec<Channel> = super::scan(svc, "firehose/channel/", "channel");
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The channels reading a stream (DeleteStream refuses while there are any).
pub fn of_stream(svc: &Service, stream: &str) -> Vec<String> {
    all(svc)
        .into_iter()
        .filter(|c| svc.stream_of_arn(&c.stream_arn).as_deref() == Some(stream))
        .map(|c| c.name)
        .collect()
}

fn not_found(arn: &str) -> ApiError {
    ApiError::ResourceNotFound(format!("Channel {arn} not found."))
}

/// The channel an ARN names (of this region and account).
fn by_arn(f: &State, arn: &str) -> ApiResult<Channel> {
    let prefix = format!("arn:aws:kinesis:{}:{}:channel/", f.svc.cfg.region, f.svc.cfg.account_id);
    let id = arn.strip_prefix(&prefix).ok_or_else(|| not_found(arn))?;
    all(&f.svc).into_iter().find(|c| c.id == id).ok_or_else(|| not_found(arn))
}

async fn save(f: &State, c: &Channel) -> ApiResult<()> {
    let bytes = serde_json::to_vec(c).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
    f.svc.put_meta(&meta_key(&c.name), bytes).await
}

fn freshness(v: Option<&Value>) -> ApiResult<u64> {
    let Some(n) = v.and_then(Value::as_i64) else { return Ok(FRESHNESS_DEFAULT_S) };
    if n < FRESHNESS_MIN_S as i64 || n > FRESHNESS_MAX_S as i64 {
        return Err(ApiError::InvalidArgument(format!(
            "DataFreshnessInSeconds must be between {FRESHNESS_MIN_S} and {FRESHNESS_MAX_S} seconds; {n} was given."
        )));
    }
    Ok(n as u64)
}

async fn create(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let name = text(&req, "ChannelName").unwrap_or_default().to_owned();
    let s3 = req.get("S3DestinationConfiguration");
    match (s3, req.get("S3TablesDestinationConfiguration")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidArgument(
                "Specify either S3DestinationConfiguration or S3TablesDestinationConfiguration, not both.".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(ApiError::InvalidArgument(
                "S3TablesDestinationConfiguration: delivery to S3 Tables (Apache Iceberg) is not supported by this \
                 daemon yet; use S3DestinationConfiguration."
                    .into(),
            ))
        }
        (None, None) => {
            return Err(ApiError::InvalidArgument(
                "Specify S3DestinationConfiguration or S3TablesDestinationConfiguration.".into(),
            ))
        }
        (Some(_), None) => {}
    }
    let s3 = s3.unwrap_or(&Value::Null);
    let streams = req["StreamConfigurationList"].as_array().cloned().unwrap_or_default();
    if streams.len() != 1 {
        return Err(ApiError::InvalidArgument(format!(
            "StreamConfigurationList must name exactly one stream; {} were given.",
            streams.len()
        )));
    }
    let stream_arn = text(&streams[0], "StreamARN").unwrap_or_default().to_owned();
    let record_configuration = streams[0]["RecordConfiguration"].clone();
    let format = text(&record_configuration, "RecordFormatType").unwrap_or_default();
    if format == "GSR_JSON" {
        return Err(ApiError::InvalidArgument(
            "RecordFormatType GSR_JSON is supported only for S3 Tables destinations.".into(),
        ));
    }
    let freshness = freshness(s3.get("DataFreshnessInSeconds"))?;
    let mut storage = s3["StorageConfiguration"].clone();
    let compressed = text(&storage, "CompressionType").is_some_and(|c| c != "NONE");
    let template = text(&storage, "OutputKeyTemplate").unwrap_or(DEFAULT_TEMPLATE).to_owned();
    let parsed = KeyTemplate::parse(&template, compressed).map_err(ApiError::InvalidArgument)?;
    storage["OutputKeyTemplate"] = json!(template);
    if storage.get("StorageClass").is_none() {
        storage["StorageClass"] = json!("STANDARD");
    }
    let mut dlq = s3.get("DeadLetterQueueS3Configuration").cloned().unwrap_or_else(
        || json!({"BucketARN": storage["BucketARN"], "ExpectedBucketOwner": storage["ExpectedBucketOwner"]}),
    );
    let tags: Vec<(String, String)> = req
        .get("Tags")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default();
    if tags.len() > TAGS_MAX {
        return Err(ApiError::InvalidArgument(format!("A channel can have at most {TAGS_MAX} tags.")));
    }
    if let Some((k, _)) = tags.iter().find(|(k, _)| k.starts_with("aws:")) {
        return Err(ApiError::InvalidArgument(format!("Tag key {k}: keys beginning with aws: are reserved.")));
    }
    let _guard = f.control.lock().await;
    let stream = f.svc.resolve(None, Some(&stream_arn))?;
    if stream.mode != crate::stream::meta::StreamMode::OnDemand {
        return Err(ApiError::InvalidArgument(format!(
            "Stream {} is in PROVISIONED mode; channels are supported only for streams in ON_DEMAND mode.",
            stream.name
        )));
    }
    if f.svc.store.get_meta(&meta_key(&name)).map_err(|e| ApiError::InternalFailure(e.to_string()))?.is_some() {
        return Err(ApiError::ResourceInUse(format!("Channel {name} already exists.")));
    }
    if let Some(other) = of_stream(&f.svc, &stream.name).first() {
        return Err(ApiError::LimitExceeded(format!(
            "Stream {} already has a general purpose S3 channel ({other}); a stream can have one.",
            stream.name
        )));
    }
    let incarnation = f.incarnation().await?;
    let now = f.svc.now_ms();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{name}#{incarnation}#{now}").as_bytes());
    let id = super::prefix::uuid_from(digest[..16].try_into().expect("16 bytes"));
    // The dead-letter prefix defaults to one of the channel's own.
    if dlq.get("ErrorOutputPrefix").is_none() {
        dlq["ErrorOutputPrefix"] = json!(format!("kinesis-channel/errors/{name}/{id}/"));
    }
    let longest = parsed.evaluate(&KeyValues {
        channel_name: &name,
        channel_id: &id,
        stream_name: &stream.name,
        ts_ms: now,
        extension: ".zst",
        unique: "",
    });
    if longest.len() > EXPANDED_MAX {
        return Err(ApiError::InvalidArgument(format!(
            "OutputKeyTemplate {template} is invalid: expanded, it is longer than {EXPANDED_MAX} characters."
        )));
    }
    let channel = Channel {
        name,
        id,
        incarnation,
        status: "CREATING".into(),
        created_ms: now,
        role_arn: text(&req, "ServiceExecutionRoleARN").unwrap_or_default().to_owned(),
        stream_arn: stream.arn(&f.svc.cfg.region, &f.svc.cfg.account_id),
        stream_created_ms: stream.created_ms,
        record_configuration,
        s3: json!({
            "DataFreshnessInSeconds": freshness,
            "DeadLetterQueueS3Configuration": dlq,
            "StorageConfiguration": storage,
        }),
        encryption: req.get("EncryptionConfiguration").cloned(),
        logging: req
            .get("LoggingConfiguration")
            .cloned()
            .unwrap_or_else(|| json!({"CloudWatchLogs": {"Enabled": false}})),
        tags,
    };
    save(f, &channel).await?;
    let description = channel.description(&f.svc);
    drop(_guard);
    let f2 = f.clone();
    let activate = async move { settle(&f2, &channel.name, channel.incarnation, "CREATING").await };
    crate::kinesis::after(f.svc.cfg.streams.create_delay, activate).await;
    Ok(json!({"ChannelDescription": description}))
}

/// CREATING or UPDATING → ACTIVE, delivering.
pub async fn settle(f: &Arc<State>, name: &str, incarnation: u64, from: &str) {
    let _guard = f.control.lock().await;
    let Ok(Some(bytes)) = f.svc.store.get_meta(&meta_key(name)) else { return };
    let Ok(mut c) = serde_json::from_slice::<Channel>(&bytes) else { return };
    if c.incarnation != incarnation || c.status != from {
        return;
    }
    c.status = "ACTIVE".into();
    if save(f, &c).await.is_ok() {
        let ds = c.delivery();
        f.engine.start(&ds);
        f.engine.reconfigure(&ds);
    }
}

fn describe(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let c = by_arn(f, text(&req, "ChannelARN").unwrap_or_default())?;
    Ok(json!({"ChannelDescription": c.description(&f.svc)}))
}

fn list(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let limit = req.get("MaxResults").and_then(Value::as_u64).unwrap_or(LIST_MAX as u64).min(LIST_MAX as u64) as usize;
    let list = crate::kinesis::ops::streams::ListRequest::parse(&f.svc, &req, limit)?;
    let matching: Vec<Channel> = all(&f.svc)
        .into_iter()
        .filter(|c| {
            let stream = f.svc.stream_of_arn(&c.stream_arn).unwrap_or_default();
            list.admits(&c.name, &stream, c.stream_created_ms)
        })
        .collect();
    Ok(list.page(&f.svc, &matching, "ChannelSummaries", |c| &c.name, |c| c.summary(&f.svc)))
}

async fn update(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let arn = text(&req, "ChannelARN").unwrap_or_default().to_owned();
    if req.get("S3TablesDestinationConfiguration").is_some() {
        return Err(ApiError::InvalidArgument(format!(
            "Channel {arn} delivers to a general purpose S3 bucket: give S3DestinationConfiguration."
        )));
    }
    let _guard = f.control.lock().await;
    let mut c = by_arn(f, &arn)?;
    if c.status != "ACTIVE" {
        return Err(ApiError::ResourceInUse(format!("Channel {arn} is {} and cannot be updated now.", c.status)));
    }
    if let Some(s3) = req.get("S3DestinationConfiguration") {
        c.s3["DataFreshnessInSeconds"] = json!(freshness(s3.get("DataFreshnessInSeconds"))?);
    }
    if let Some(l) = req.get("LoggingConfiguration") {
        c.logging = l.clone();
    }
    c.status = "UPDATING".into();
    save(f, &c).await?;
    f.engine.reconfigure(&c.delivery());
    let description = c.description(&f.svc);
    drop(_guard);
    let f2 = f.clone();
    let activate = async move { settle(&f2, &c.name, c.incarnation, "UPDATING").await };
    crate::kinesis::after(f.svc.cfg.streams.create_delay, activate).await;
    Ok(json!({"ChannelDescription": description}))
}

async fn delete(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let arn = text(&req, "ChannelARN").unwrap_or_default().to_owned();
    let _guard = f.control.lock().await;
    let mut c = by_arn(f, &arn)?;
    if c.status == "DELETING" {
        return Ok(json!({}));
    }
    c.status = "DELETING".into();
    save(f, &c).await?;
    drop(_guard);
    let f2 = f.clone();
    crate::kinesis::after(f.svc.cfg.streams.delete_delay, async move { finish_delete(&f2, &c).await }).await;
    Ok(json!({}))
}

/// Stops a DELETING channel's delivery and removes it and its cursor.
pub async fn finish_delete(f: &Arc<State>, c: &Channel) {
    let name = delivery_name(&c.name);
    f.engine.stop(&name).await;
    f.svc.metrics.forget_delivery(&name);
    let _ = f.svc.delete_meta(&super::delivery::cursor_key(&name)).await;
    if let Err(e) = f.svc.delete_meta(&meta_key(&c.name)).await {
        tracing::error!(channel = %c.name, error = %e, "removing a channel");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ts_ms: i64) -> KeyValues<'static> {
        KeyValues {
            channel_name: "ch",
            channel_id: "id-1",
            stream_name: "orders",
            ts_ms,
            extension: ".gz",
            unique: "u1",
        }
    }

    #[test]
    fn templates_evaluate_with_the_suffix_before_the_extension() {
        // 2026-07-14T09:05:00Z
        let at = 1_784_019_900_000;
        let t = KeyTemplate::parse(DEFAULT_TEMPLATE, true).unwrap();
        assert_eq!(t.evaluate(&values(at)), "kinesis-channel/ch/id-1/2026/07/14/09/ch-id-1-2026-07-14-09-05-u1.gz");
        let t = KeyTemplate::parse("data/stream=!{stream-name}/!{yy}-!{HH}!{mm}!{extension:.json}", true).unwrap();
        assert_eq!(t.evaluate(&values(at)), "data/stream=orders/26-0905-u1.json");
        let t = KeyTemplate::parse("!{channel-name}/!{channel-id}", false).unwrap();
        assert_eq!(t.evaluate(&values(at)), "ch/id-1-u1");
    }

    #[test]
    fn bad_templates_are_refused() {
        for (t, why) in [
            ("/data/!{channel-name}!{extension}", "start or end"),
            ("data/!{channel-name}/!{yyyy}/", "start or end"),
            ("data/../!{channel-name}!{extension}", "'..'"),
            ("data/./!{channel-name}", "'..'"),
            ("data//!{channel-name}!{extension}", "'//'"),
            ("!{channel-name}!{extension}/!{yyyy}", "at its end"),
            ("!{channel-name}!{extension}!{extension}", "one extension"),
            ("data/!{partition-id}!{extension}", "not a supported variable"),
            ("data/!{channel-name}/!{yyyy", "no matching"),
            ("foo bar/!{yyyy}", "character ' '"),
            ("static-prefix-only", "at least one variable"),
            ("x/!{yyyy}!{extension:json}", "must start with '.'"),
            ("x/!{yyyy}!{extension:.JSON}", "must start with '.'"),
        ] {
            let e = KeyTemplate::parse(t, false).unwrap_err();
            assert!(e.contains(why), "{t}: {e}");
        }
        let e = KeyTemplate::parse("data/!{channel-name}", true).unwrap_err();
        assert!(e.contains("compressed"), "{e}");
    }

    #[test]
    fn records_are_checked_by_their_format() {
        assert!(check_record("JSON", br#"{"a":1}"#).is_ok());
        assert!(check_record("JSON", b"{not json").is_err());
        assert!(check_record("STRING", "é".as_bytes()).is_ok());
        assert!(check_record("STRING", b"\xff\xfe").is_err());
        assert!(check_record("BYTE_ARRAY", b"\xff").is_ok());
    }
}
