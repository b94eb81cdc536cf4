//! The Firehose operations: shapes in, shapes out, AWS's business rules and messages. The
//! request has passed the model's checks (types, ranges, patterns, enums) before it gets here.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::compress::Compression;
use super::prefix::Prefix;
use super::{DeliveryStream, State};
use crate::kinesis::epoch_seconds;
use crate::kinesis::routing::{append_routed, Routed};
use crate::log::NewRecord;
use crate::protocol::error::{ApiError, ApiResult};
use crate::stream::hashing::hash_partition_key;

/// PutRecordBatch: bytes of data over all records, at most (4 MiB).
pub const BATCH_BYTES_MAX: usize = 4 << 20;
/// Tags per delivery stream.
pub const TAGS_MAX: usize = 50;
/// The one destination's id.
pub const DESTINATION_ID: &str = "destinationId-000000000001";
/// Default buffering: 5 MiB or 300 s.
pub const DEFAULT_SIZE_MB: u64 = 5;
pub const DEFAULT_INTERVAL_S: u64 = 300;

pub async fn dispatch(f: &Arc<State>, op: &str, req: Value, account: &str) -> ApiResult<Value> {
    match op {
        "CreateDeliveryStream" => create(f, req).await,
        "DeleteDeliveryStream" => delete(f, req).await,
        "DescribeDeliveryStream" => describe(f, req),
        "ListDeliveryStreams" => list(f, req, account),
        "PutRecord" => put_record(f, req).await,
        "PutRecordBatch" => put_record_batch(f, req).await,
        "UpdateDestination" => update_destination(f, req).await,
        "TagDeliveryStream" => tag(f, req).await,
        "UntagDeliveryStream" => untag(f, req).await,
        "ListTagsForDeliveryStream" => list_tags(f, req),
        "StartDeliveryStreamEncryption" => encryption(f, req, true).await,
        "StopDeliveryStreamEncryption" => encryption(f, req, false).await,
        _ => Err(ApiError::UnknownOperation(format!("Operation {op} is not supported by this daemon."))),
    }
}

fn text<'a>(v: &'a Value, member: &str) -> Option<&'a str> {
    v.get(member).and_then(Value::as_str)
}

fn name_of(req: &Value) -> String {
    text(req, "DeliveryStreamName").unwrap_or_default().to_owned()
}

/// The destination members Sluice cannot deliver to yet.
const UNSUPPORTED_DESTINATIONS: &[&str] = &[
    "RedshiftDestinationConfiguration",
    "ElasticsearchDestinationConfiguration",
    "AmazonopensearchserviceDestinationConfiguration",
    "SplunkDestinationConfiguration",
    "AmazonOpenSearchServerlessDestinationConfiguration",
    "SnowflakeDestinationConfiguration",
    "IcebergDestinationConfiguration",
    "DatabaseSourceConfiguration",
];

/// Checks an S3 destination (Extended or plain) and answers its description with AWS's defaults.
fn s3_description(cfg: &Value, extended: bool) -> ApiResult<Value> {
    let mut d = Map::new();
    for m in ["RoleARN", "BucketARN"] {
        d.insert(m.into(), cfg.get(m).cloned().unwrap_or(Value::Null));
    }
    let bucket = text(cfg, "BucketARN").unwrap_or_default();
    let Some(name) = bucket.strip_prefix("arn:aws:s3:::").filter(|b| valid_bucket(b)) else {
        return Err(ApiError::InvalidArgument(format!("BucketARN {bucket} is not a valid S3 bucket ARN.")));
    };
    let _ = name;
    let prefix = text(cfg, "Prefix").unwrap_or("");
    let error_prefix = text(cfg, "ErrorOutputPrefix");
    let p = Prefix::parse(prefix).map_err(ApiError::InvalidArgument)?;
    if p.has_error_output_type() {
        return Err(ApiError::InvalidArgument(
            "The expression !{firehose:error-output-type} is only allowed in ErrorOutputPrefix.".into(),
        ));
    }
    let partitioned = extended && cfg.pointer("/DynamicPartitioningConfiguration/Enabled") == Some(&json!(true));
    let processing = super::transform::processors(cfg.get("ProcessingConfiguration"))
        .map_err(|e| ApiError::InvalidArgument(format!("ProcessingConfiguration: {e}.")))?;
    if p.has_partition_keys() && !partitioned {
        return Err(ApiError::InvalidArgument(
            "Prefix uses partitionKeyFrom* expressions, which need DynamicPartitioningConfiguration enabled.".into(),
        ));
    }
    if partitioned {
        if !p.has_partition_keys() {
            return Err(ApiError::InvalidArgument(
                "Prefix must use partitionKeyFromQuery or partitionKeyFromLambda when dynamic partitioning is enabled."
                    .into(),
            ));
        }
        if prefix.contains("!{partitionKeyFromQuery:") && processing.metadata.is_none() {
            return Err(ApiError::InvalidArgument(
                "partitionKeyFromQuery needs a MetadataExtraction processor with a MetadataExtractionQuery.".into(),
            ));
        }
        if prefix.contains("!{partitionKeyFromLambda:") && processing.lambda.is_none() {
            return Err(ApiError::InvalidArgument("partitionKeyFromLambda needs a Lambda processor.".into()));
        }
        if let Some(size) = cfg.pointer("/BufferingHints/SizeInMBs").and_then(Value::as_u64) {
            if size < 64 {
                return Err(ApiError::InvalidArgument(
                    "BufferingHints.SizeInMBs must be at least 64 when Dynamic Partitioning is enabled.".into(),
                ));
            }
        }
    }
    if p.has_expressions() && error_prefix.is_none_or(str::is_empty) {
        return Err(ApiError::InvalidArgument(
            "ErrorOutputPrefix cannot be null or empty when Prefix contains expressions.".into(),
        ));
    }
    if let Some(ep) = error_prefix {
        let e = Prefix::parse(ep).map_err(ApiError::InvalidArgument)?;
        if e.has_expressions() && !e.has_error_output_type() {
            return Err(ApiError::InvalidArgument(
                "ErrorOutputPrefix must contain !{firehose:error-output-type} when it contains expressions.".into(),
            ));
        }
        d.insert("ErrorOutputPrefix".into(), json!(ep));
    }
    if cfg.get("Prefix").is_some() {
        d.insert("Prefix".into(), json!(prefix));
    }
    let hints = cfg.get("BufferingHints");
    let size = hints.and_then(|h| h.get("SizeInMBs")).and_then(Value::as_u64);
    let interval = hints.and_then(|h| h.get("IntervalInSeconds")).and_then(Value::as_u64);
    let default_size = if partitioned { 64 } else { DEFAULT_SIZE_MB };
    d.insert(
        "BufferingHints".into(),
        json!({"SizeInMBs": size.unwrap_or(default_size), "IntervalInSeconds": interval.unwrap_or(DEFAULT_INTERVAL_S)}),
    );
    let compression = text(cfg, "CompressionFormat").unwrap_or("UNCOMPRESSED");
    if Compression::parse(compression).is_none() {
        return Err(ApiError::InvalidArgument(format!("CompressionFormat {compression} is not supported.")));
    }
    d.insert("CompressionFormat".into(), json!(compression));
    d.insert(
        "EncryptionConfiguration".into(),
        cfg.get("EncryptionConfiguration").cloned().unwrap_or_else(|| json!({"NoEncryptionConfig": "NoEncryption"})),
    );
    d.insert(
        "CloudWatchLoggingOptions".into(),
        cfg.get("CloudWatchLoggingOptions").cloned().unwrap_or_else(|| json!({"Enabled": false})),
    );
    if extended {
        if let Some(pc) = cfg.get("ProcessingConfiguration") {
            d.insert("ProcessingConfiguration".into(), pc.clone());
        }
        if cfg.pointer("/DataFormatConversionConfiguration/Enabled") == Some(&json!(true)) {
            return Err(ApiError::InvalidArgument(
                "DataFormatConversionConfiguration: format conversion is not supported by this daemon yet.".into(),
            ));
        }
        // Source records backed up, as received, to a second S3 destination.
        match text(cfg, "S3BackupMode").unwrap_or("Disabled") {
            "Enabled" => {
                let Some(b) = cfg.get("S3BackupConfiguration").or_else(|| cfg.get("S3BackupDescription")) else {
                    return Err(ApiError::InvalidArgument(
                        "S3BackupConfiguration is required when S3BackupMode is Enabled.".into(),
                    ));
                };
                let backup = s3_description(b, false)
                    .map_err(|e| ApiError::InvalidArgument(format!("S3BackupConfiguration: {}", e.message())))?;
                d.insert("S3BackupDescription".into(), backup);
                d.insert("S3BackupMode".into(), json!("Enabled"));
            }
            _ => {
                d.insert("S3BackupMode".into(), json!("Disabled"));
            }
        }
        for m in
            ["FileExtension", "CustomTimeZone", "DynamicPartitioningConfiguration", "DataFormatConversionConfiguration"]
        {
            if let Some(v) = cfg.get(m) {
                d.insert(m.into(), v.clone());
            }
        }
        if let Some(tz) = text(cfg, "CustomTimeZone") {
            if !tz.is_empty() && tz != "UTC" {
                return Err(ApiError::InvalidArgument(format!(
                    "CustomTimeZone {tz}: only UTC is supported by this daemon."
                )));
            }
        }
    }
    Ok(Value::Object(d))
}

/// Checks an HTTP endpoint destination: its description (defaults filled in, no access key),
/// its access key, and its S3 backup's description.
fn http_description(cfg: &Value) -> ApiResult<(Value, Option<String>, Value)> {
    let url = cfg.pointer("/EndpointConfiguration/Url").and_then(Value::as_str).unwrap_or_default();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ApiError::InvalidArgument(format!("EndpointConfiguration.Url {url} is not an http(s) URL.")));
    }
    let backup = s3_description(cfg.get("S3Configuration").unwrap_or(&Value::Null), false)?;
    let mut endpoint = json!({"Url": url});
    if let Some(n) = cfg.pointer("/EndpointConfiguration/Name") {
        endpoint["Name"] = n.clone();
    }
    let hints = cfg.get("BufferingHints");
    let size = hints.and_then(|h| h.get("SizeInMBs")).and_then(Value::as_u64).unwrap_or(DEFAULT_SIZE_MB);
    let interval = hints.and_then(|h| h.get("IntervalInSeconds")).and_then(Value::as_u64).unwrap_or(DEFAULT_INTERVAL_S);
    let mut request = cfg.get("RequestConfiguration").cloned().unwrap_or_else(|| json!({}));
    if request.get("ContentEncoding").is_none() {
        request["ContentEncoding"] = json!("NONE");
    }
    if let Some(pc) = cfg.get("ProcessingConfiguration") {
        super::transform::processors(Some(pc))
            .map_err(|e| ApiError::InvalidArgument(format!("ProcessingConfiguration: {e}.")))?;
    }
    let mut d = json!({
        "EndpointConfiguration": endpoint,
        "BufferingHints": {"SizeInMBs": size, "IntervalInSeconds": interval},
        "CloudWatchLoggingOptions": cfg.get("CloudWatchLoggingOptions").cloned().unwrap_or_else(|| json!({"Enabled": false})),
        "RequestConfiguration": request,
        "RetryOptions": {"DurationInSeconds": cfg.pointer("/RetryOptions/DurationInSeconds").and_then(Value::as_u64).unwrap_or(300)},
        "S3BackupMode": cfg.get("S3BackupMode").and_then(Value::as_str).unwrap_or("FailedDataOnly"),
        "S3DestinationDescription": backup,
    });
    for m in ["ProcessingConfiguration", "RoleARN"] {
        if let Some(v) = cfg.get(m) {
            d[m] = v.clone();
        }
    }
    let key = cfg.pointer("/EndpointConfiguration/AccessKey").and_then(Value::as_str).map(str::to_owned);
    Ok((d, key, backup))
}

/// S3's bucket naming rules (3–63 of lower-case letters, digits, dots and hyphens).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

async fn create(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let name = name_of(&req);
    let kind = text(&req, "DeliveryStreamType").unwrap_or("DirectPut").to_owned();
    let source = req.get("KinesisStreamSourceConfiguration");
    match (kind.as_str(), source) {
        ("DirectPut", Some(_)) => {
            return Err(ApiError::InvalidArgument(
                "KinesisStreamSourceConfiguration is only allowed with DeliveryStreamType KinesisStreamAsSource."
                    .into(),
            ))
        }
        ("KinesisStreamAsSource", None) => {
            return Err(ApiError::InvalidArgument(
                "KinesisStreamSourceConfiguration is required for DeliveryStreamType KinesisStreamAsSource.".into(),
            ))
        }
        ("DirectPut" | "KinesisStreamAsSource", _) => {}
        (other, _) => {
            return Err(ApiError::InvalidArgument(format!(
                "DeliveryStreamType {other} is not supported by this daemon."
            )))
        }
    }
    for m in UNSUPPORTED_DESTINATIONS {
        if req.get(*m).is_some() {
            return Err(ApiError::InvalidArgument(format!(
                "{m}: this destination is not supported by this daemon yet."
            )));
        }
    }
    let given =
        ["ExtendedS3DestinationConfiguration", "S3DestinationConfiguration", "HttpEndpointDestinationConfiguration"]
            .iter()
            .filter(|m| req.get(**m).is_some())
            .count();
    if given > 1 {
        return Err(ApiError::InvalidArgument("Only one destination configuration can be given.".into()));
    }
    let mut http = None;
    let mut http_access_key = None;
    let destination = if let Some(c) = req.get("ExtendedS3DestinationConfiguration") {
        s3_description(c, true)?
    } else if let Some(c) = req.get("S3DestinationConfiguration") {
        s3_description(c, false)?
    } else if let Some(c) = req.get("HttpEndpointDestinationConfiguration") {
        let (desc, key, backup) = http_description(c)?;
        http = Some(desc);
        http_access_key = key;
        backup
    } else {
        return Err(ApiError::InvalidArgument("A destination configuration is required.".into()));
    };
    let tags = tags_of(req.get("Tags"))?;
    let stream_arn = source.and_then(|s| text(s, "KinesisStreamARN")).map(str::to_owned);
    if let Some(arn) = &stream_arn {
        if crate::stream::meta::stream_name_from_arn(arn).is_none() {
            return Err(ApiError::InvalidArgument(format!("KinesisStreamARN {arn} is not a Kinesis stream ARN.")));
        }
    }
    let encryption = match req.get("DeliveryStreamEncryptionConfigurationInput") {
        Some(e) if kind == "DirectPut" => {
            check_key(e)?;
            Some(encryption_description(e, true))
        }
        Some(_) => {
            return Err(ApiError::InvalidArgument(
                "Encryption is only supported for delivery streams of type DirectPut.".into(),
            ))
        }
        None => None,
    };
    let _guard = f.control.lock().await;
    if f.get(&name).is_ok() {
        return Err(ApiError::ResourceInUse(format!(
            "Firehose {name} under accountId {} already exists",
            f.svc.cfg.account_id
        )));
    }
    let incarnation = f.incarnation().await?;
    let now = f.svc.now_ms();
    let mut ds = DeliveryStream {
        name: name.clone(),
        incarnation,
        kind: kind.clone(),
        status: "CREATING".into(),
        version_id: 1,
        created_ms: now,
        updated_ms: now,
        source_stream_arn: stream_arn,
        source_role_arn: source.and_then(|s| text(s, "RoleARN")).map(str::to_owned),
        internal_stream: None,
        destination,
        tags,
        encryption,
        http,
        http_access_key,
    };
    if kind == "DirectPut" {
        // Internal names keep no `/`: they belong to the daemon, whoever's delivery stream it is.
        let internal = format!("~firehose~{}~{incarnation}", name.replace('/', "~"));
        crate::kinesis::ops::streams::create_internal_stream(&f.svc, &internal, 1).await?;
        ds.internal_stream = Some(internal);
    }
    f.save(&ds).await?;
    let arn = ds.arn(&f.svc);
    // CREATING, then ACTIVE after the configured delay (at once when it is zero).
    let delay = f.svc.cfg.streams.create_delay;
    let f2 = f.clone();
    drop(_guard);
    crate::kinesis::after(delay, async move { activate(&f2, &ds).await }).await;
    Ok(json!({"DeliveryStreamARN": arn}))
}

/// CREATING → ACTIVE, delivering (after the create delay, or at start-up for a stream whose
/// creation a crash interrupted).
pub async fn activate(f: &Arc<State>, ds: &DeliveryStream) {
    let _guard = f.control.lock().await;
    if let Ok(mut current) = f.get(&ds.name) {
        if current.incarnation == ds.incarnation && current.status == "CREATING" {
            current.status = "ACTIVE".into();
            if f.save(&current).await.is_ok() {
                f.engine.start(&current);
            }
        }
    }
}

/// A customer managed key needs its ARN.
fn check_key(input: &Value) -> ApiResult<()> {
    if text(input, "KeyType") == Some("CUSTOMER_MANAGED_CMK") && text(input, "KeyARN").is_none() {
        return Err(ApiError::InvalidArgument("KeyARN is required when KeyType is CUSTOMER_MANAGED_CMK.".into()));
    }
    Ok(())
}

fn encryption_description(input: &Value, enabled: bool) -> Value {
    let key_type = text(input, "KeyType").unwrap_or("AWS_OWNED_CMK");
    let mut d = json!({"KeyType": key_type, "Status": if enabled { "ENABLED" } else { "DISABLED" }});
    if let Some(arn) = text(input, "KeyARN") {
        d["KeyARN"] = json!(arn);
    }
    d
}

fn tags_of(v: Option<&Value>) -> ApiResult<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in v.and_then(Value::as_array).into_iter().flatten() {
        let k = text(t, "Key").unwrap_or_default().to_owned();
        if k.starts_with("aws:") {
            return Err(ApiError::InvalidArgument(format!("Tag key {k}: keys beginning with aws: are reserved.")));
        }
        let v = text(t, "Value").unwrap_or_default().to_owned();
        match out.iter_mut().find(|(ek, _)| *ek == k) {
            Some(e) => e.1 = v,
            None => out.push((k, v)),
        }
    }
    if out.len() > TAGS_MAX {
        return Err(ApiError::LimitExceeded(format!("A delivery stream can have at most {TAGS_MAX} tags.")));
    }
    Ok(out)
}

fn describe(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let ds = f.get(&name_of(&req))?;
    let dest = &ds.destination;
    // AWS answers the extended description and the plain S3 subset of it side by side.
    let mut plain = Map::new();
    for m in [
        "RoleARN",
        "BucketARN",
        "Prefix",
        "ErrorOutputPrefix",
        "BufferingHints",
        "CompressionFormat",
        "EncryptionConfiguration",
        "CloudWatchLoggingOptions",
    ] {
        if let Some(v) = dest.get(m) {
            plain.insert(m.into(), v.clone());
        }
    }
    let destination = match &ds.http {
        Some(h) => json!({"DestinationId": DESTINATION_ID, "HttpEndpointDestinationDescription": h}),
        None => json!({
            "DestinationId": DESTINATION_ID,
            "S3DestinationDescription": Value::Object(plain),
            "ExtendedS3DestinationDescription": dest,
        }),
    };
    let mut d = json!({
        "DeliveryStreamName": ds.display_name(),
        "DeliveryStreamARN": ds.arn(&f.svc),
        "DeliveryStreamStatus": ds.status,
        "DeliveryStreamType": ds.kind,
        "VersionId": ds.version_id.to_string(),
        "CreateTimestamp": epoch_seconds(ds.created_ms),
        "LastUpdateTimestamp": epoch_seconds(ds.updated_ms),
        "Destinations": [destination],
        "HasMoreDestinations": false,
    });
    if let Some(e) = &ds.encryption {
        d["DeliveryStreamEncryptionConfiguration"] = e.clone();
    }
    if let Some(arn) = &ds.source_stream_arn {
        d["Source"] = json!({"KinesisStreamSourceDescription": {
            "KinesisStreamARN": arn,
            "RoleARN": ds.source_role_arn,
            "DeliveryStartTimestamp": epoch_seconds(ds.created_ms),
        }});
    }
    Ok(json!({"DeliveryStreamDescription": d}))
}

/// Lists the delivery streams of `account` (the caller's).
fn list(f: &Arc<State>, req: Value, account: &str) -> ApiResult<Value> {
    let limit = req.get("Limit").and_then(Value::as_u64).unwrap_or(10) as usize;
    let kind = text(&req, "DeliveryStreamType");
    let after = text(&req, "ExclusiveStartDeliveryStreamName");
    let mut all: Vec<String> = f
        .all()
        .into_iter()
        .filter(|d| f.svc.account_and_name(&d.name).0 == account)
        .filter(|d| kind.is_none_or(|k| d.kind == k))
        .filter(|d| after.is_none_or(|a| d.display_name() > a))
        .map(|d| d.display_name().to_owned())
        .collect();
    all.sort();
    let page: Vec<&String> = all.iter().take(limit).collect();
    Ok(json!({"DeliveryStreamNames": page, "HasMoreDeliveryStreams": all.len() > page.len()}))
}

async fn delete(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let name = name_of(&req);
    let _guard = f.control.lock().await;
    let mut ds = f.get(&name)?;
    if ds.status == "CREATING" {
        return Err(ApiError::ResourceInUse(format!("Firehose {name} is in CREATING state and cannot be deleted.")));
    }
    if ds.status == "DELETING" {
        return Ok(json!({}));
    }
    ds.status = "DELETING".into();
    f.save(&ds).await?;
    drop(_guard);
    let delay = f.svc.cfg.streams.delete_delay;
    let f2 = f.clone();
    crate::kinesis::after(delay, async move { finish_delete(&f2, &ds).await }).await;
    Ok(json!({}))
}

/// Stops a DELETING stream's delivery and removes it, its cursor and its internal stream.
pub async fn finish_delete(f: &Arc<State>, ds: &DeliveryStream) {
    f.engine.stop(&ds.name).await;
    f.svc.metrics.forget_delivery(&ds.name);
    if let Some(internal) = &ds.internal_stream {
        if let Ok(meta) = f.svc.stream(internal) {
            if let Err(e) = f.svc.finish_delete(&meta).await {
                tracing::error!(stream = %internal, error = %e, "removing a delivery stream's internal stream");
            }
        }
    }
    let _ = f.svc.delete_meta(&super::delivery::cursor_key(&ds.name)).await;
    if let Err(e) = f.svc.delete_meta(&super::meta_key(&ds.name)).await {
        tracing::error!(delivery_stream = %ds.name, error = %e, "removing a delivery stream");
    }
}

/// The stream a put goes to, or why it cannot (also where SQL applications' outputs go).
pub(crate) fn put_target(f: &Arc<State>, name: &str) -> ApiResult<Arc<crate::stream::meta::StreamMeta>> {
    let ds = f.get(name)?;
    if ds.kind == "KinesisStreamAsSource" {
        return Err(ApiError::InvalidArgument(
            "This operation is not permitted on KinesisStreamAsSource delivery stream type.".into(),
        ));
    }
    if ds.status != "ACTIVE" {
        return Err(ApiError::ResourceNotFound(format!(
            "Firehose {name} under account {} is not ACTIVE.",
            f.svc.cfg.account_id
        )));
    }
    let internal =
        ds.internal_stream.as_deref().ok_or_else(|| ApiError::InternalFailure("no internal stream".into()))?;
    f.svc
        .stream(internal)
        .map_err(|_| ApiError::ServiceUnavailable("The delivery stream's storage is not open.".into()))
}

fn data_of(record: &Value) -> ApiResult<Bytes> {
    let b64 = text(record, "Data").unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(Bytes::from)
        .map_err(|_| ApiError::Serialization("Record.Data is not valid base64.".into()))
}

/// A record's id: its sequence number in the delivery stream's storage.
fn record_id(meta: &crate::stream::meta::StreamMeta, shard: u32, ordinal: u64) -> String {
    crate::stream::seqno::SeqNo::record(meta.id, shard, ordinal).encode()
}

async fn put_record(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let meta = put_target(f, &name_of(&req))?;
    let data = data_of(req.get("Record").unwrap_or(&Value::Null))?;
    let key = partition_key(0);
    let routed = vec![Routed { hash: hash_partition_key(&key), record: NewRecord { partition_key: key, data } }];
    let (shard, ordinal) = append_routed(&f.svc, &meta, routed)
        .await
        .pop()
        .unwrap_or_else(|| Err(ApiError::InternalFailure("no result".into())))?;
    Ok(json!({"RecordId": record_id(&meta, shard, ordinal), "Encrypted": false}))
}

/// DirectPut records carry no partition key of their own.
fn partition_key(i: usize) -> String {
    format!("{i}")
}

async fn put_record_batch(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let meta = put_target(f, &name_of(&req))?;
    let records = req.get("Records").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut routed = Vec::with_capacity(records.len());
    let mut total = 0usize;
    for (i, r) in records.iter().enumerate() {
        let data = data_of(r)?;
        total += data.len();
        let key = partition_key(i);
        routed.push(Routed { hash: hash_partition_key(&key), record: NewRecord { partition_key: key, data } });
    }
    if total > BATCH_BYTES_MAX {
        return Err(ApiError::InvalidArgument(format!(
            "Records size exceeds {BATCH_BYTES_MAX} bytes limit (the request's records hold {total} bytes)."
        )));
    }
    let results = append_routed(&f.svc, &meta, routed).await;
    let mut failed = 0;
    let answers: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok((shard, ordinal)) => json!({"RecordId": record_id(&meta, shard, ordinal)}),
            Err(e) => {
                failed += 1;
                let code = if matches!(e, ApiError::ServiceUnavailable(_) | ApiError::ProvisionedThroughputExceeded(_))
                {
                    "ServiceUnavailableException"
                } else {
                    "InternalFailure"
                };
                json!({"ErrorCode": code, "ErrorMessage": e.message()})
            }
        })
        .collect();
    Ok(json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": answers}))
}

/// Merges an update into a description (members given replace members stored; nested
/// structures merge).
fn merge(into: &mut Value, update: &Value) {
    match (into, update) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

async fn update_destination(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let name = name_of(&req);
    let _guard = f.control.lock().await;
    let mut ds = f.get(&name)?;
    let version = text(&req, "CurrentDeliveryStreamVersionId").unwrap_or_default();
    if version != ds.version_id.to_string() {
        return Err(ApiError::ConcurrentModification(format!(
            "Cannot update firehose: {name} since the current version id: {} and specified version id: {version} do not match",
            ds.version_id
        )));
    }
    if text(&req, "DestinationId") != Some(DESTINATION_ID) {
        return Err(ApiError::InvalidArgument(format!(
            "Destination Id {} not found for delivery stream {name}.",
            text(&req, "DestinationId").unwrap_or_default()
        )));
    }
    if ds.status != "ACTIVE" {
        return Err(ApiError::ResourceInUse(format!("Firehose {name} is not ACTIVE.")));
    }
    for m in UNSUPPORTED_DESTINATIONS {
        let update = m.replace("Configuration", "Update");
        if req.get(&update).is_some() {
            return Err(ApiError::InvalidArgument(format!(
                "{update}: this destination is not supported by this daemon yet."
            )));
        }
    }
    if let Some(u) = req.get("HttpEndpointDestinationUpdate") {
        let Some(current) = ds.http.clone() else {
            return Err(ApiError::InvalidArgument(format!(
                "Delivery stream {name} does not deliver to an HTTP endpoint; its destination type cannot be changed here."
            )));
        };
        // Rebuild the configuration from the description, merge, and check it again.
        let mut cfg = current.clone();
        cfg["S3Configuration"] = cfg["S3DestinationDescription"].take();
        if let Some(o) = cfg.as_object_mut() {
            o.remove("S3DestinationDescription");
        }
        if let Some(k) = &ds.http_access_key {
            cfg["EndpointConfiguration"]["AccessKey"] = json!(k);
        }
        let mut u = u.clone();
        if let Some(s3) = u.get_mut("S3Update").map(Value::take) {
            u["S3Configuration"] = s3;
            if let Some(o) = u.as_object_mut() {
                o.remove("S3Update");
            }
        }
        merge(&mut cfg, &u);
        let (desc, key, backup) = http_description(&cfg)?;
        ds.http = Some(desc);
        ds.http_access_key = key;
        ds.destination = backup;
        ds.version_id += 1;
        ds.updated_ms = f.svc.now_ms();
        f.save(&ds).await?;
        f.engine.reconfigure(&ds);
        return Ok(json!({}));
    }
    if ds.http.is_some() {
        return Err(ApiError::InvalidArgument(format!(
            "Delivery stream {name} delivers to an HTTP endpoint: give HttpEndpointDestinationUpdate."
        )));
    }
    let update = match (req.get("ExtendedS3DestinationUpdate"), req.get("S3DestinationUpdate")) {
        (Some(u), None) | (None, Some(u)) => u,
        (None, None) => return Err(ApiError::InvalidArgument("A destination update is required.".into())),
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidArgument("Only one destination update can be given.".into()))
        }
    };
    if update.pointer("/DynamicPartitioningConfiguration").is_some() {
        return Err(ApiError::InvalidArgument(
            "DynamicPartitioningConfiguration cannot be added or removed after creation.".into(),
        ));
    }
    if ds.destination["S3BackupMode"] == "Enabled" && text(update, "S3BackupMode") == Some("Disabled") {
        return Err(ApiError::InvalidArgument("S3BackupMode cannot be changed from Enabled to Disabled.".into()));
    }
    let mut update = update.clone();
    if let Some(b) = update.as_object_mut().and_then(|u| u.remove("S3BackupUpdate")) {
        update["S3BackupDescription"] = b;
    }
    let mut merged = ds.destination.clone();
    merge(&mut merged, &update);
    let extended = req.get("ExtendedS3DestinationUpdate").is_some() || ds.destination.get("S3BackupMode").is_some();
    ds.destination = s3_description(&merged, extended)?;
    ds.version_id += 1;
    ds.updated_ms = f.svc.now_ms();
    f.save(&ds).await?;
    f.engine.reconfigure(&ds);
    Ok(json!({}))
}

async fn tag(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let _guard = f.control.lock().await;
    let mut ds = f.get(&name_of(&req))?;
    let mut tags = ds.tags.clone();
    for (k, v) in tags_of(req.get("Tags"))? {
        match tags.iter_mut().find(|(ek, _)| *ek == k) {
            Some(e) => e.1 = v,
            None => tags.push((k, v)),
        }
    }
    if tags.len() > TAGS_MAX {
        return Err(ApiError::LimitExceeded(format!("A delivery stream can have at most {TAGS_MAX} tags.")));
    }
    ds.tags = tags;
    f.save(&ds).await?;
    Ok(json!({}))
}

async fn untag(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let _guard = f.control.lock().await;
    let mut ds = f.get(&name_of(&req))?;
    let keys: Vec<&str> =
        req.get("TagKeys").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    ds.tags.retain(|(k, _)| !keys.contains(&k.as_str()));
    f.save(&ds).await?;
    Ok(json!({}))
}

fn list_tags(f: &Arc<State>, req: Value) -> ApiResult<Value> {
    let ds = f.get(&name_of(&req))?;
    let limit = req.get("Limit").and_then(Value::as_u64).unwrap_or(50) as usize;
    let after = text(&req, "ExclusiveStartTagKey");
    let mut tags = ds.tags.clone();
    tags.sort();
    let rest: Vec<&(String, String)> = tags.iter().filter(|(k, _)| after.is_none_or(|a| k.as_str() > a)).collect();
    let page: Vec<Value> = rest.iter().take(limit).map(|(k, v)| json!({"Key": k, "Value": v})).collect();
    Ok(json!({"Tags": page, "HasMoreTags": rest.len() > page.len()}))
}

async fn encryption(f: &Arc<State>, req: Value, start: bool) -> ApiResult<Value> {
    let name = name_of(&req);
    let _guard = f.control.lock().await;
    let mut ds = f.get(&name)?;
    if ds.kind != "DirectPut" {
        return Err(ApiError::InvalidArgument(format!(
            "Encryption is not supported for delivery stream {name} of type {}.",
            ds.kind
        )));
    }
    let input = req.get("DeliveryStreamEncryptionConfigurationInput").cloned().unwrap_or_else(|| json!({}));
    if start {
        check_key(&input)?;
    }
    ds.encryption = Some(if start {
        encryption_description(&input, true)
    } else {
        let mut d = ds.encryption.clone().unwrap_or_else(|| json!({}));
        d["Status"] = json!("DISABLED");
        d
    });
    f.save(&ds).await?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_get_aws_defaults() {
        let d = s3_description(&json!({"RoleARN": "r", "BucketARN": "arn:aws:s3:::data-lake-raw"}), true).unwrap();
        assert_eq!(d["BufferingHints"], json!({"SizeInMBs": 5, "IntervalInSeconds": 300}));
        assert_eq!(d["CompressionFormat"], "UNCOMPRESSED");
        assert_eq!(d["EncryptionConfiguration"], json!({"NoEncryptionConfig": "NoEncryption"}));
        assert_eq!(d["S3BackupMode"], "Disabled");
        for bad in [
            json!({"BucketARN": "arn:aws:s3:::UPPER"}),
            json!({"BucketARN": "arn:aws:s3:::b1", "Prefix": "x/!{timestamp:yyyy}/"}),
            json!({"BucketARN": "arn:aws:s3:::b1", "Prefix": "!{firehose:error-output-type}", "ErrorOutputPrefix": "e"}),
            json!({"BucketARN": "arn:aws:s3:::b1", "Prefix": "!{timestamp:yyyy}", "ErrorOutputPrefix": "e/!{timestamp:yyyy}"}),
        ] {
            assert!(matches!(s3_description(&bad, true), Err(ApiError::InvalidArgument(_))), "{bad}");
        }
    }

    #[test]
    fn updates_merge() {
        let mut d = json!({"BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300}, "Prefix": "a"});
        merge(&mut d, &json!({"BufferingHints": {"IntervalInSeconds": 60}, "CompressionFormat": "GZIP"}));
        assert_eq!(
            d,
            json!({"BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 60}, "Prefix": "a", "CompressionFormat": "GZIP"})
        );
    }
}
