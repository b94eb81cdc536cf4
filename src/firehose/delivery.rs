//! The delivery engine: one task per ACTIVE delivery stream, reading its source through the
//! internal reader ([`crate::reader::stream::StreamReader`]: lineage order, reshards followed),
//! buffering by size or interval (whichever comes first; size counted before compression),
//! and writing each buffer as one object.
//!
//! **What is promised.** Every record of the source after the delivery's start is written into
//! exactly one object, across crashes:
//! 1. when a buffer is due, its plan (the object's key, the shard ranges it holds and the
//!    reader position after it) is saved with a synced write;
//! 2. the object is written (a temporary file, fsync, rename, directory fsync);
//! 3. the cursor moves to the position after it and the plan is cleared, in one synced write.
//!
//! After `kill -9` between 1 and 3 the plan is carried out again: the same records, read again
//! from the log by their ordinals, make the same bytes under the same key, which replaces any
//! object written before the crash. Records after the cursor are read again and buffered anew.
//! (AWS promises at least once.) A record that has expired from the source before it could be
//! delivered is lost, as it is on AWS after 24 hours.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::compress::Compression;
use super::prefix::{object_name, random_string, uuid_from, Prefix};
use super::DeliveryStream;
use crate::reader::stream::{StreamPosition, StreamReader, StreamSource};
use crate::reader::{ShardCursor, DELIVERY_BYTES_MAX};
use crate::runtime::{Position, ShardKey};
use crate::service::Service;

pub fn cursor_key(name: &str) -> String {
    format!("firehose/cursor/{name}")
}

/// A delivery's durable state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The reader's position after the last object written (`None`: from the start).
    pub position: Option<StreamPosition>,
    /// An object planned and perhaps written, not yet committed.
    pub pending: Option<Planned>,
    /// Objects committed so far.
    pub objects: u64,
}

/// One object: where it goes and which records it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    pub bucket: String,
    pub key: String,
    /// Where records that fail processing go (written only if some do).
    #[serde(default)]
    pub error_key: String,
    /// The bucket of `error_key` when it is not `bucket` (a channel's dead-letter bucket).
    #[serde(default)]
    pub error_bucket: String,
    /// HTTP endpoint destinations: where records the endpoint never accepted go.
    #[serde(default)]
    pub http_error_key: String,
    /// Dynamic partitioning: where records that could not be partitioned go.
    #[serde(default)]
    pub partition_error_key: String,
    pub compression: String,
    /// S3BackupMode Enabled: where the source records go, as received (bucket, key, compression).
    #[serde(default)]
    pub backup: Option<(String, String, String)>,
    /// The source records in it, in order: (shard index, first ordinal, end ordinal).
    pub segments: Vec<(u32, u64, u64)>,
    /// The reader's position after it.
    pub end: StreamPosition,
    pub records: u64,
}

impl Planned {
    fn error_bucket(&self) -> &str {
        if self.error_bucket.is_empty() {
            &self.bucket
        } else {
            &self.error_bucket
        }
    }
}

struct Running {
    incarnation: u64,
    config: watch::Sender<DeliveryStream>,
    task: tokio::task::JoinHandle<()>,
}

pub struct Engine {
    svc: Arc<Service>,
    running: Mutex<HashMap<String, Running>>,
}

/// Where objects go: the bucket directories, or an S3-compatible server (`[delivery.s3]`).
pub struct Sink {
    data_dir: PathBuf,
    s3: Option<crate::config::S3Config>,
    buckets: Mutex<HashMap<String, Arc<dyn object_store::ObjectStore>>>,
}

impl Sink {
    fn new(svc: &Service) -> Sink {
        Sink {
            data_dir: svc.cfg.data_dir.clone(),
            s3: svc.cfg.delivery.s3.clone(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn bucket(&self, s3: &crate::config::S3Config, bucket: &str) -> Result<Arc<dyn object_store::ObjectStore>, String> {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = b.get(bucket) {
            return Ok(s.clone());
        }
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&s3.endpoint)
            .with_region(&s3.region)
            .with_bucket_name(bucket)
            .with_access_key_id(&s3.access_key_id)
            .with_secret_access_key(&s3.secret_access_key)
            .with_virtual_hosted_style_request(!s3.path_style)
            .with_allow_http(s3.endpoint.starts_with("http://"))
            .build()
            .map_err(|e| format!("S3 bucket {bucket}: {e}"))?;
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(store);
        b.insert(bucket.to_owned(), store.clone());
        Ok(store)
    }

    /// Writes one object whole: to S3 with a single PUT (S3 makes it visible whole), or to a
    /// directory durably.
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, encoding: Option<&str>) -> Result<(), String> {
        if let Some(s3) = &self.s3 {
            use object_store::{Attribute, Attributes, PutOptions, PutPayload};
            let store = self.bucket(s3, bucket)?;
            let mut attributes = Attributes::new();
            attributes.insert(Attribute::ContentType, "application/octet-stream".into());
            if let Some(e) = encoding {
                attributes.insert(Attribute::ContentEncoding, e.to_owned().into());
            }
            let opts = PutOptions { attributes, ..Default::default() };
            store
                .put_opts(&object_store::path::Path::from(key), PutPayload::from(body), opts)
                .await
                .map_err(|e| format!("S3 PUT {bucket}/{key}: {e}"))?;
            return Ok(());
        }
        let path = object_path(&self.data_dir, bucket, key).ok_or_else(|| format!("object key {key} is not a path"))?;
        let root = self.data_dir.join("buckets");
        tokio::task::spawn_blocking(move || write_durably(&root, &path, &body))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// Reads one object of a bucket (a directory, or the S3-compatible server): reference data and
/// schema discovery read through this.
pub async fn read_object(svc: &Service, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    let sink = Sink::new(svc);
    if let Some(s3) = &sink.s3 {
        use object_store::ObjectStoreExt;
        let store = sink.bucket(s3, bucket)?;
        let got =
            store.get(&object_store::path::Path::from(key)).await.map_err(|e| format!("S3 GET {bucket}/{key}: {e}"))?;
        return got.bytes().await.map(|b| b.to_vec()).map_err(|e| format!("S3 GET {bucket}/{key}: {e}"));
    }
    let path = object_path(&svc.cfg.data_dir, bucket, key).ok_or_else(|| format!("object key {key} is not a path"))?;
    tokio::fs::read(&path).await.map_err(|e| format!("{bucket}/{key}: {e}"))
}

impl Engine {
    pub fn new(svc: Arc<Service>) -> Arc<Engine> {
        Arc::new(Engine { svc, running: Mutex::new(HashMap::new()) })
    }

    /// Starts delivering an ACTIVE stream (no-op if it is being delivered).
    pub fn start(&self, ds: &DeliveryStream) {
        if ds.status != "ACTIVE" {
            return;
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.get(&ds.name).is_some_and(|r| r.incarnation == ds.incarnation && !r.task.is_finished()) {
            return;
        }
        let (tx, rx) = watch::channel(ds.clone());
        let task = tokio::spawn(run(self.svc.clone(), rx, Arc::new(Sink::new(&self.svc))));
        if let Some(old) = running.insert(ds.name.clone(), Running { incarnation: ds.incarnation, config: tx, task }) {
            old.task.abort();
        }
    }

    /// A new destination configuration, taken at the next buffer.
    pub fn reconfigure(&self, ds: &DeliveryStream) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.get(&ds.name) {
            r.config.send_replace(ds.clone());
        }
    }

    pub async fn stop(&self, name: &str) {
        let r = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        if let Some(r) = r {
            r.task.abort();
            let _ = r.task.await;
        }
    }
}

/// Delivers until aborted; a failure is logged and the delivery starts again from its cursor.
async fn run(svc: Arc<Service>, mut config: watch::Receiver<DeliveryStream>, sink: Arc<Sink>) {
    loop {
        let name = config.borrow().name.clone();
        if let Err(e) = deliver(&svc, &mut config, &sink).await {
            tracing::warn!(delivery_stream = %name, error = %e, "delivery interrupted; resuming from its cursor in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The stream a delivery stream's records are in: its internal stream (DirectPut), or its source.
pub(crate) fn source_stream(
    svc: &Service,
    ds: &DeliveryStream,
) -> Result<Arc<crate::stream::meta::StreamMeta>, String> {
    let name = match (&ds.internal_stream, &ds.source_stream_arn) {
        (Some(n), _) => n.clone(),
        (None, Some(arn)) => svc.stream_of_arn(arn).unwrap_or_default(),
        (None, None) => return Err("no source".into()),
    };
    svc.stream(&name).map_err(|_| format!("the source stream {name} does not exist"))
}

async fn load_cursor(svc: &Service, name: &str) -> Result<Cursor, String> {
    let store = svc.store.clone();
    let key = cursor_key(name);
    let bytes = tokio::task::spawn_blocking(move || store.get_meta(&key))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    match bytes {
        Some(b) => serde_json::from_slice(&b).map_err(|e| format!("the delivery cursor is unreadable: {e}")),
        None => Ok(Cursor::default()),
    }
}

async fn save_cursor(svc: &Service, name: &str, c: &Cursor) -> Result<(), String> {
    let bytes = serde_json::to_vec(c).map_err(|e| e.to_string())?;
    svc.put_meta(&cursor_key(name), bytes).await.map_err(|e| e.to_string())
}

/// Size and interval of a stream's buffers.
fn hints(svc: &Service, ds: &DeliveryStream) -> (usize, Duration) {
    let h = &ds.http.as_ref().unwrap_or(&ds.destination)["BufferingHints"];
    let size = h["SizeInMBs"].as_u64().unwrap_or(super::ops::DEFAULT_SIZE_MB) as usize * (1 << 20);
    let mut interval = Duration::from_secs(h["IntervalInSeconds"].as_u64().unwrap_or(super::ops::DEFAULT_INTERVAL_S));
    if let Some(cap) = svc.cfg.delivery.buffering_interval_cap {
        interval = interval.min(cap);
    }
    (size.max(1), interval)
}

#[derive(Default)]
struct Buffer {
    records_in: Vec<(u32, crate::log::Record)>,
    bytes: usize,
    segments: Vec<(u32, u64, u64)>,
    oldest_ms: Option<i64>,
    started: Option<Instant>,
    /// The same instant as `started`, in epoch ms (for the metrics).
    started_ms: i64,
    records: u64,
}

impl Buffer {
    fn add(&mut self, shard: u32, records: &[crate::log::Record]) {
        if records.is_empty() {
            return;
        }
        if self.started.is_none() {
            self.started = Some(Instant::now());
            self.started_ms = crate::time::now_ms();
        }
        for r in records {
            self.bytes += r.data.len();
            self.records_in.push((shard, r.clone()));
            self.oldest_ms = Some(self.oldest_ms.map_or(r.ts_ms, |o| o.min(r.ts_ms)));
            match self.segments.last_mut() {
                Some((s, _, end)) if *s == shard && *end == r.ordinal => *end = r.ordinal + 1,
                _ => self.segments.push((shard, r.ordinal, r.ordinal + 1)),
            }
            self.records += 1;
        }
    }
}

/// The object for a due buffer: its key derives from the delivery stream, the object's number
/// and the records in it, so that a plan carried out twice writes one object.
fn plan(ds: &DeliveryStream, buf: &Buffer, end: StreamPosition, number: u64) -> Planned {
    let mut h = Sha256::new();
    h.update(ds.name.as_bytes());
    h.update(ds.incarnation.to_be_bytes());
    h.update(number.to_be_bytes());
    for (s, a, b) in &buf.segments {
        h.update(s.to_be_bytes());
        h.update(a.to_be_bytes());
        h.update(b.to_be_bytes());
    }
    let naming = Naming::from_digest(h);
    let dest = &ds.destination;
    let compression = dest["CompressionFormat"].as_str().unwrap_or("UNCOMPRESSED").to_owned();
    let ts = buf.oldest_ms.unwrap_or(0);
    let bucket = bucket_of(dest);
    let error_key = |kind: &str| {
        let prefix = error_prefix(dest["ErrorOutputPrefix"].as_str());
        format!("{}{}", naming.evaluate(&prefix, ts, kind, 1000, &|_, _| None), naming.name(ds, ts, ""))
    };
    let backup = (dest["S3BackupMode"] == "Enabled").then(|| {
        let b = &dest["S3BackupDescription"];
        let c = b["CompressionFormat"].as_str().unwrap_or("UNCOMPRESSED");
        let prefix = Prefix::parse(b["Prefix"].as_str().unwrap_or("")).unwrap_or_default();
        let ext = Compression::parse(c).unwrap_or(Compression::Uncompressed).extension();
        let key = format!("{}{}", naming.evaluate(&prefix, ts, "", 2000, &|_, _| None), naming.name(ds, ts, ext));
        (bucket_of(b), key, c.to_owned())
    });
    if let Some(ch) = dest.get("Channel") {
        let (key, error_key) = super::channels::object_keys(ds, ch, &naming.id, &compression, ts);
        return Planned {
            error_bucket: bucket_of(&json!({"BucketARN": ch["DeadLetterBucketARN"]})),
            bucket,
            key,
            error_key,
            http_error_key: String::new(),
            partition_error_key: String::new(),
            compression,
            backup: None,
            segments: buf.segments.clone(),
            end,
            records: buf.records,
        };
    }
    Planned {
        bucket,
        key: naming.object_key(ds, &compression, ts, &|_, _| None),
        error_bucket: String::new(),
        backup,
        error_key: error_key("processing-failed"),
        http_error_key: error_key("http-endpoint-failed"),
        partition_error_key: error_key("partitioning-failed"),
        compression,
        segments: buf.segments.clone(),
        end,
        records: buf.records,
    }
}

/// The bucket of a destination's BucketARN.
fn bucket_of(dest: &Value) -> String {
    dest["BucketARN"].as_str().unwrap_or_default().trim_start_matches("arn:aws:s3:::").to_owned()
}

/// What an object's key derives from: a digest of its input, giving the UUID-shaped id and the
/// seed of its random strings.
pub(super) struct Naming {
    pub(super) id: String,
    seed: u64,
}

impl Naming {
    fn from_digest(h: Sha256) -> Naming {
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Naming { id: uuid_from(id), seed: u64::from_be_bytes(digest[16..24].try_into().expect("8 bytes")) }
    }

    /// A prefix evaluated at `ts`; random strings are numbered from `first`.
    fn evaluate(
        &self,
        p: &Prefix,
        ts: i64,
        error_type: &str,
        first: u64,
        keys: &dyn Fn(bool, &str) -> Option<String>,
    ) -> String {
        let mut n = first;
        p.evaluate(
            ts,
            error_type,
            &mut || {
                n += 1;
                random_string(self.seed.wrapping_add(n))
            },
            keys,
        )
    }

    /// `<stream>-<version>-<time>-<id><ext>`.
    fn name(&self, ds: &DeliveryStream, ts: i64, ext: &str) -> String {
        object_name(ds.display_name(), ds.version_id, ts, &self.id, ext)
    }

    /// The destination's Prefix evaluated, then the object's name with its extension
    /// (FileExtension if set, else the compression's).
    fn object_key(
        &self,
        ds: &DeliveryStream,
        compression: &str,
        ts: i64,
        keys: &dyn Fn(bool, &str) -> Option<String>,
    ) -> String {
        let dest = &ds.destination;
        let prefix = Prefix::parse(dest["Prefix"].as_str().unwrap_or("")).unwrap_or_default();
        let c = Compression::parse(compression).unwrap_or(Compression::Uncompressed);
        let ext = dest["FileExtension"].as_str().filter(|e| !e.is_empty()).unwrap_or(c.extension());
        format!("{}{}", self.evaluate(&prefix, ts, "", 0, keys), self.name(ds, ts, ext))
    }
}

/// An error prefix: one without `!{firehose:error-output-type}` gets the type and a `/`
/// appended (then the date, as every prefix without a timestamp); no prefix is the type.
fn error_prefix(text: Option<&str>) -> Prefix {
    let text = text.unwrap_or("");
    match Prefix::parse(text) {
        Ok(p) if p.has_error_output_type() => p,
        _ => Prefix::parse(&format!("{text}!{{firehose:error-output-type}}/")).unwrap_or_default(),
    }
}

/// One object's worth of rendered records: a partition (its keys from the query and from the
/// function; both empty without dynamic partitioning).
pub struct Group {
    pub query: Vec<(String, String)>,
    pub lambda: Vec<(String, String)>,
    pub records: Vec<Vec<u8>>,
    pub oldest_ms: i64,
}

/// A plan's records as delivered (transformed, partitioned, delimited), the processing-failed
/// error records and the partitioning-failed ones.
pub struct Rendered {
    pub groups: Vec<Group>,
    pub errors: Vec<u8>,
    pub partition_errors: Vec<u8>,
    /// S3BackupMode Enabled: the source records as received, concatenated.
    pub backup: Vec<u8>,
}

async fn render(
    svc: &Arc<Service>,
    ds: &DeliveryStream,
    records: &[(u32, crate::log::Record)],
    source_id: u64,
) -> Rendered {
    let dest = ds.http.as_ref().unwrap_or(&ds.destination);
    let processing = super::transform::processors(dest.get("ProcessingConfiguration")).unwrap_or_default();
    let partitioned = dest.pointer("/DynamicPartitioningConfiguration/Enabled") == Some(&Value::Bool(true));
    let mut errors = Vec::new();
    // KPL aggregates from a Kinesis source, then RecordDeAggregation: each user record with an
    // id of its own (the sequence number, and the sub-record's index when there are several).
    let mut input: Vec<super::transform::InRecord> = Vec::with_capacity(records.len());
    for (shard, r) in records {
        let seq = crate::stream::seqno::SeqNo::record(source_id, *shard, r.ordinal).encode();
        let users: Vec<Vec<u8>> = if ds.source_stream_arn.is_some() && ds.kind != "Channel" {
            crate::kcl::kpl::deaggregate(&r.partition_key, &r.data, None).into_iter().map(|u| u.data).collect()
        } else {
            vec![r.data.to_vec()]
        };
        let pieces: Vec<Vec<u8>> = match &processing.deaggregation {
            Some(how) => users.iter().flat_map(|u| super::transform::split(u, how)).collect(),
            None => users,
        };
        let many = pieces.len() > 1;
        for (i, data) in pieces.into_iter().enumerate() {
            input.push(super::transform::InRecord {
                id: if many { format!("{seq}:{i}") } else { seq.clone() },
                ts_ms: r.ts_ms,
                data,
                shard_id: format!("shardId-{shard:012}"),
                partition_key: r.partition_key.clone(),
            });
        }
    }
    // A channel's records must be of its RecordFormatType; the others go to its dead-letter
    // bucket.
    if let Some(format) = ds.destination.pointer("/Channel/RecordFormatType").and_then(Value::as_str) {
        let now = svc.now_ms();
        let stream_arn = ds.source_stream_arn.as_deref().unwrap_or_default();
        input.retain(|r| match super::channels::check_record(format, &r.data) {
            Ok(()) => true,
            Err(why) => {
                errors.extend(super::channels::dead_letter(stream_arn, r, &why, now));
                false
            }
        });
    }
    // The function, if any: (record, data to deliver, the function's partition keys).
    type Keys = Vec<(String, String)>;
    let mut delivered: Vec<(usize, Vec<u8>, Keys)> = Vec::with_capacity(input.len());
    match &processing.lambda {
        None => delivered.extend(input.iter().enumerate().map(|(i, r)| (i, r.data.clone(), Vec::new()))),
        Some(p) => {
            let arn = ds.arn(svc);
            let inv = super::transform::Invocation {
                delivery_stream_arn: &arn,
                region: &svc.cfg.region,
                source_stream_arn: ds.source_stream_arn.as_deref(),
            };
            let seed = input.first().map(|r| r.id.clone()).unwrap_or_default();
            let outcomes = super::transform::run(p, &svc.cfg.delivery.functions, &inv, &input, &seed).await;
            let now = svc.now_ms();
            for (i, o) in outcomes.into_iter().enumerate() {
                match o {
                    super::transform::Outcome::Ok(d, keys) => delivered.push((i, d, keys)),
                    super::transform::Outcome::Dropped => {}
                    super::transform::Outcome::Failed(code, msg, attempts) => {
                        errors.extend(super::transform::error_record(&input[i], &code, &msg, attempts, &p.arn, now))
                    }
                }
            }
        }
    }
    let query = match (&processing.metadata, partitioned) {
        (Some(q), true) => super::partition::Query::compile(q).ok(),
        _ => None,
    };
    let mut groups: Vec<Group> = Vec::new();
    let mut partition_errors = Vec::new();
    let now = svc.now_ms();
    for (i, mut data, lambda) in delivered {
        let r = &input[i];
        let query_keys = match &query {
            Some(q) => match q.keys(&data) {
                Ok(k) => k,
                Err(e) => {
                    partition_errors.extend(super::transform::error_record(
                        r,
                        "DynamicPartitioning.MetadataExtractionFailed",
                        &e,
                        1,
                        "",
                        now,
                    ));
                    continue;
                }
            },
            None => Vec::new(),
        };
        if processing.delimiter {
            data.push(b'\n');
        }
        let (query_keys, lambda) = if partitioned { (query_keys, lambda) } else { (Vec::new(), Vec::new()) };
        let full = groups.len() >= super::partition::PARTITIONS_MAX;
        match groups.iter_mut().find(|g| g.query == query_keys && g.lambda == lambda) {
            Some(g) => {
                g.records.push(data);
                g.oldest_ms = g.oldest_ms.min(r.ts_ms);
            }
            None if full => {
                partition_errors.extend(super::transform::error_record(
                    r,
                    "DynamicPartitioning.ActivePartitionsLimitExceeded",
                    &format!("More than {} partitions in one buffer.", super::partition::PARTITIONS_MAX),
                    1,
                    "",
                    now,
                ));
            }
            None => groups.push(Group { query: query_keys, lambda, records: vec![data], oldest_ms: r.ts_ms }),
        }
    }
    let backup = if ds.http.is_none() && ds.destination["S3BackupMode"] == "Enabled" {
        records.iter().flat_map(|(_, r)| r.data.iter().copied()).collect()
    } else {
        Vec::new()
    };
    Rendered { groups, errors, partition_errors, backup }
}

/// The object key of a partition: the prefix evaluated with its keys, and an id derived from
/// the plan and the partition (so a plan carried out again names the same objects).
fn partition_key(ds: &DeliveryStream, p: &Planned, g: &Group) -> String {
    let mut h = Sha256::new();
    h.update(p.key.as_bytes());
    for (k, v) in g.query.iter().chain(g.lambda.iter()) {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([1]);
    }
    Naming::from_digest(h).object_key(ds, &p.compression, g.oldest_ms, &|from_query, name| {
        let keys = if from_query { &g.query } else { &g.lambda };
        keys.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
}

async fn deliver(svc: &Arc<Service>, config: &mut watch::Receiver<DeliveryStream>, sink: &Sink) -> Result<(), String> {
    let ds = config.borrow().clone();
    let source = source_stream(svc, &ds)?;
    let mut cursor = load_cursor(svc, &ds.name).await?;
    if let Some(p) = cursor.pending.clone() {
        tracing::info!(delivery_stream = %ds.name, key = %p.key, "writing an object planned before a restart again");
        let records = read_segments(svc, source.id, &p.segments).await?;
        let rendered = render(svc, &ds, &records, source.id).await;
        let oldest = records.iter().map(|(_, r)| r.ts_ms).min().unwrap_or(0);
        send(svc, sink, &ds, &p, &rendered, oldest).await?;
        cursor = Cursor { position: Some(p.end.clone()), pending: None, objects: cursor.objects + 1 };
        save_cursor(svc, &ds.name, &cursor).await?;
    }
    let start = match ds.internal_stream {
        Some(_) => Position::TrimHorizon,
        // A Kinesis source is read from the delivery stream's creation on.
        None => Position::AtTimestamp(ds.created_ms),
    };
    let src: Arc<dyn StreamSource> = svc.clone();
    let mut reader =
        StreamReader::new(svc.runtime.clone(), src, source.id, start, cursor.position.clone().unwrap_or_default());
    let mut buf = Buffer::default();
    loop {
        let ds = config.borrow_and_update().clone();
        let (size, interval) = hints(svc, &ds);
        let wait = match buf.started {
            Some(t) => interval.saturating_sub(t.elapsed()),
            None => Duration::from_secs(1),
        };
        let batch = reader.next(DELIVERY_BYTES_MAX.min(size.max(64 << 10)), wait).await.map_err(|e| e.to_string())?;
        if let Some(b) = batch {
            let bytes: usize = b.records.iter().map(|r| r.data.len()).sum();
            buf.add(b.shard_index, &b.records);
            let (started, oldest) = (buf.started_ms, buf.oldest_ms.unwrap_or(0));
            svc.metrics.delivery(&ds.name, |c| {
                c.records_in += b.records.len() as u64;
                c.bytes_in += bytes as u64;
                c.buffer_started_ms = started;
                c.oldest_undelivered_ms = oldest;
            });
        }
        let due = buf.started.is_some_and(|t| buf.bytes >= size || t.elapsed() >= interval);
        if !due {
            continue;
        }
        let planned = plan(&ds, &buf, reader.position().clone(), cursor.objects);
        cursor.pending = Some(planned.clone());
        save_cursor(svc, &ds.name, &cursor).await?;
        let rendered = render(svc, &ds, &buf.records_in, source.id).await;
        let bytes: usize = rendered.groups.iter().flat_map(|g| g.records.iter()).map(Vec::len).sum();
        let objects = rendered.groups.iter().filter(|g| !g.records.is_empty()).count() as u64;
        send(svc, sink, &ds, &planned, &rendered, buf.oldest_ms.unwrap_or(0)).await?;
        let failed =
            rendered.errors.iter().chain(rendered.partition_errors.iter()).filter(|b| **b == b'\n').count() as u64;
        svc.metrics.delivery(&ds.name, |c| {
            c.records_delivered += buf.records - failed.min(buf.records);
            c.bytes_delivered += bytes as u64;
            c.records_failed += failed;
            c.objects += objects;
            c.buffer_started_ms = 0;
            c.oldest_undelivered_ms = 0;
        });
        cursor = Cursor { position: Some(planned.end.clone()), pending: None, objects: cursor.objects + 1 };
        save_cursor(svc, &ds.name, &cursor).await?;
        tracing::debug!(delivery_stream = %ds.name, key = %planned.key, records = planned.records, "object delivered");
        buf = Buffer::default();
    }
}

/// The records of a plan, read again from the log by their ordinals.
async fn read_segments(
    svc: &Arc<Service>,
    stream_id: u64,
    segments: &[(u32, u64, u64)],
) -> Result<Vec<(u32, crate::log::Record)>, String> {
    let mut data = Vec::new();
    for &(shard, from, to) in segments {
        let key = ShardKey { stream_id, shard_index: shard };
        let mut c =
            ShardCursor::open(svc.runtime.clone(), key, Position::AtOrdinal(from)).await.map_err(|e| e.to_string())?;
        while c.position < to {
            let d = c.next(DELIVERY_BYTES_MAX, Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
            if d.records.is_empty() {
                return Err(format!("records {from}..{to} of shard {shard} are no longer in the log"));
            }
            data.extend(d.records.into_iter().filter(|r| r.ordinal < to).map(|r| (shard, r)));
        }
    }
    Ok(data)
}

/// `<data_dir>/buckets/<bucket>/<key>`, refusing keys that would leave the bucket's directory.
pub fn object_path(data_dir: &Path, bucket: &str, key: &str) -> Option<PathBuf> {
    if key.is_empty() || key.split('/').any(|p| p == ".." || p == ".") || key.starts_with('/') {
        return None;
    }
    Some(data_dir.join("buckets").join(bucket).join(key))
}

/// Delivers a plan's records: to the HTTP endpoint (backed up to S3 as the destination says), or
/// as an object; processing-failed records to the error object either way.
async fn send(
    svc: &Arc<Service>,
    sink: &Sink,
    ds: &DeliveryStream,
    p: &Planned,
    rendered: &Rendered,
    oldest_ms: i64,
) -> Result<(), String> {
    let errors = &rendered.errors;
    if !rendered.partition_errors.is_empty() && !p.partition_error_key.is_empty() {
        sink.put(&p.bucket, &p.partition_error_key, rendered.partition_errors.clone(), None).await?;
    }
    if let Some((bucket, key, compression)) = p.backup.as_ref().filter(|_| !rendered.backup.is_empty()) {
        put_compressed(sink, bucket, key, compression, &rendered.backup).await?;
    }
    let Some(http) = &ds.http else {
        let partitioned =
            ds.destination.pointer("/DynamicPartitioningConfiguration/Enabled") == Some(&Value::Bool(true));
        if !partitioned {
            let data: Vec<u8> = rendered.groups.iter().flat_map(|g| g.records.iter().flatten().copied()).collect();
            return write_objects(sink, p, &data, errors).await;
        }
        for g in &rendered.groups {
            let mut one = p.clone();
            one.key = partition_key(ds, p, g);
            write_objects(sink, &one, &g.records.concat(), &[]).await?;
        }
        return write_objects(sink, p, &[], errors).await;
    };
    let records: Vec<Vec<u8>> = rendered.groups.iter().flat_map(|g| g.records.iter().cloned()).collect();
    let target = super::http_endpoint::Target::from_description(http, ds.http_access_key.clone(), ds.arn(svc));
    let mut failed = Vec::new();
    for (i, chunk) in records.chunks(super::http_endpoint::RECORDS_PER_REQUEST_MAX).enumerate() {
        // The same request id for every attempt, and after a restart.
        let digest = Sha256::digest(format!("{}#{i}", p.key).as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        let request_id = uuid_from(id);
        if let Err(f) = super::http_endpoint::send(&target, &request_id, oldest_ms, chunk).await {
            tracing::warn!(delivery_stream = %ds.name, request_id, attempts = f.attempts, error = %f.message,
                "the HTTP endpoint did not accept the records; they go to the S3 backup");
            let now = svc.now_ms();
            for r in chunk {
                let rec = super::transform::InRecord {
                    id: String::new(),
                    ts_ms: oldest_ms,
                    data: r.clone(),
                    shard_id: String::new(),
                    partition_key: String::new(),
                };
                failed.extend(super::transform::error_record(&rec, f.code, &f.message, f.attempts, "", now));
            }
        }
    }
    if !failed.is_empty() {
        sink.put(&p.bucket, &p.http_error_key, failed, None).await?;
    }
    if http["S3BackupMode"] == "AllData" && !records.is_empty() {
        write_objects(sink, p, &records.concat(), &[]).await?;
    }
    if !errors.is_empty() && !p.error_key.is_empty() {
        sink.put(p.error_bucket(), &p.error_key, errors.to_vec(), None).await?;
    }
    Ok(())
}

/// Writes a plan's object (compressed as the destination says) and its error object
/// (uncompressed JSON lines), each only if it has something in it.
async fn write_objects(sink: &Sink, p: &Planned, data: &[u8], errors: &[u8]) -> Result<(), String> {
    if !data.is_empty() {
        put_compressed(sink, &p.bucket, &p.key, &p.compression, data).await?;
    }
    if !errors.is_empty() && !p.error_key.is_empty() {
        sink.put(p.error_bucket(), &p.error_key, errors.to_vec(), None).await?;
    }
    Ok(())
}

/// Writes one object compressed as `compression` says (a ZIP's entry is named after the key).
async fn put_compressed(sink: &Sink, bucket: &str, key: &str, compression: &str, data: &[u8]) -> Result<(), String> {
    let c = Compression::parse(compression).unwrap_or(Compression::Uncompressed);
    let entry = key.rsplit('/').next().unwrap_or(key).trim_end_matches(c.extension());
    let body = c.encode(data, entry).map_err(|e| e.to_string())?;
    sink.put(bucket, key, body, c.content_encoding()).await
}

/// Writes `path` whole or not at all: a temporary file beside it, fsync, rename, fsync of the
/// directory (and of every directory created on the way, up to `root`).
fn write_durably(root: &Path, path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().ok_or_else(|| std::io::Error::other("an object path has a parent"))?;
    let mut created = Vec::new();
    let mut d = dir;
    while !d.exists() {
        created.push(d.to_path_buf());
        match d.parent() {
            Some(p) if p.starts_with(root) || p == root => d = p,
            _ => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.sluice-tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("object")));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    for c in created {
        if let Some(parent) = c.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_stay_in_their_bucket() {
        let d = Path::new("/data");
        assert_eq!(object_path(d, "b", "x/y.gz").unwrap(), Path::new("/data/buckets/b/x/y.gz"));
        for bad in ["", "/abs", "a/../../etc", "./x"] {
            assert!(object_path(d, "b", bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn plans_are_derived_from_their_records() {
        let ds = DeliveryStream {
            name: "s".into(),
            incarnation: 7,
            kind: "DirectPut".into(),
            status: "ACTIVE".into(),
            version_id: 1,
            created_ms: 0,
            updated_ms: 0,
            source_stream_arn: None,
            source_role_arn: None,
            internal_stream: None,
            destination: serde_json::json!({"BucketARN": "arn:aws:s3:::b", "Prefix": "p/!{firehose:random-string}/",
                "CompressionFormat": "GZIP", "ErrorOutputPrefix": "e/!{firehose:error-output-type}"}),
            tags: vec![],
            encryption: None,
            http: None,
            http_access_key: None,
        };
        let mut buf = Buffer::default();
        // The oldest record (ordinal 9) arrived at 2026-01-02T03:04:05.669Z.
        let rec = |o: u64| crate::log::Record {
            ordinal: o,
            ts_ms: 1_767_323_045_678 - o as i64,
            partition_key: "k".into(),
            data: "x".into(),
        };
        buf.add(0, &[rec(3), rec(4)]);
        buf.add(1, &[rec(9)]);
        buf.add(0, &[rec(5)]);
        assert_eq!(buf.segments, [(0, 3, 5), (1, 9, 10), (0, 5, 6)]);
        let a = plan(&ds, &buf, StreamPosition::default(), 0);
        assert_eq!(a, plan(&ds, &buf, StreamPosition::default(), 0), "the same input, the same object");
        assert_ne!(a.key, plan(&ds, &buf, StreamPosition::default(), 1).key);
        assert!(a.key.starts_with("p/") && a.key.ends_with(".gz"), "{}", a.key);
        assert!(a.key.contains("/2026/01/02/03/s-1-2026-01-02-03-04-05-"), "named by the oldest record: {}", a.key);
        assert_eq!((a.bucket.as_str(), a.records), ("b", 4));
    }
}
