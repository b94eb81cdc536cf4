//! The KCL worker as a library: lease coordination (KCL 2.x's protocol) and one record
//! processor per held lease.
//!
//! Every `failoverTimeMillis / 3` the worker renews its leases (a guarded counter bump; a failed
//! guard, or no successful renewal for `failoverTimeMillis`, loses the lease). Every
//! `2 × failoverTimeMillis` it scans the table and takes leases: expired or free ones first,
//! up to `ceil(leases / workers)` (capped by `maxLeasesForWorker`), else it steals at most
//! `maxLeasesToStealAtOneTime` from the busiest worker. Every `shardSyncIntervalMillis` it lists
//! the stream's shards and creates the leases that are missing (a shard whose descendant holds a
//! lease is done and gets none).
//!
//! A shard's processor starts once each parent's lease is gone or at SHARD_END; it is given
//! records from its checkpoint on; at the shard's end the children's leases are created, the
//! processor must checkpoint SHARD_END, and the finished lease is deleted. A processor that
//! fails is started again from the lease's checkpoint, so delivery is at least once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::client::{AwsClient, CallError, Credentials, Endpoint};
use super::leases::{Lease, LeaseTable, SHARD_END};
use super::properties::{InitialPosition, KclConfig, RetrievalMode};
use super::retrieval::{
    cmp_seq, is_sequence_number, parse_hash_range, Fetcher, KclRecord, Poller, Start, StreamRef, Subscriber,
};

/// What `initialize` is told.
#[derive(Debug, Clone)]
pub struct InitializeInput {
    pub shard_id: String,
    /// The lease's checkpoint: a sequence number or a sentinel (TRIM_HORIZON, LATEST, AT_TIMESTAMP).
    pub sequence_number: String,
    pub sub_sequence_number: u64,
}

/// A batch of records for `process_records`.
#[derive(Debug, Clone)]
pub struct ProcessRecordsInput {
    pub records: Vec<KclRecord>,
    pub millis_behind_latest: i64,
}

/// A shard's record processor. Errors mean the processor is broken: it is dropped and a new
/// one is started from the lease's checkpoint.
pub trait RecordProcessor: Send + 'static {
    fn initialize(&mut self, input: InitializeInput) -> impl Future<Output = anyhow::Result<()>> + Send;
    fn process_records(
        &mut self,
        input: ProcessRecordsInput,
        checkpointer: &mut Checkpointer,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Another worker holds the lease now; checkpointing is no longer possible.
    fn lease_lost(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The shard is read to its end: the processor must checkpoint (SHARD_END).
    fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The worker is stopping: a last chance to checkpoint.
    fn shutdown_requested(
        &mut self,
        checkpointer: &mut Checkpointer,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Makes a processor for each shard the worker starts on.
pub trait ProcessorFactory: Send + Sync + 'static {
    type Processor: RecordProcessor;
    fn create(&self, shard_id: &str) -> anyhow::Result<Self::Processor>;
}

impl<P: RecordProcessor, F: Fn(&str) -> anyhow::Result<P> + Send + Sync + 'static> ProcessorFactory for F {
    type Processor = P;
    fn create(&self, shard_id: &str) -> anyhow::Result<P> {
        self(shard_id)
    }
}

/// Why a checkpoint was refused; the names are the Java exceptions KCL throws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointError {
    /// The lease was lost: another worker owns the shard.
    Shutdown,
    Throttling,
    InvalidState(String),
    /// The lease table could not be written.
    Dependency(String),
    /// Not a sequence number, or outside [last checkpoint, last record delivered].
    IllegalArgument(String),
}

impl CheckpointError {
    pub fn java_name(&self) -> &'static str {
        match self {
            CheckpointError::Shutdown => "ShutdownException",
            CheckpointError::Throttling => "ThrottlingException",
            CheckpointError::InvalidState(_) => "InvalidStateException",
            CheckpointError::Dependency(_) => "KinesisClientLibDependencyException",
            CheckpointError::IllegalArgument(_) => "IllegalArgumentException",
        }
    }
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointError::Shutdown | CheckpointError::Throttling => f.write_str(self.java_name()),
            CheckpointError::InvalidState(m) | CheckpointError::Dependency(m) | CheckpointError::IllegalArgument(m) => {
                write!(f, "{}: {m}", self.java_name())
            }
        }
    }
}

impl std::error::Error for CheckpointError {}

/// A lease this worker holds.
struct Held {
    key: String,
    lease: tokio::sync::Mutex<Lease>,
    lost: watch::Sender<bool>,
    last_renewed: std::sync::Mutex<Instant>,
}

impl Held {
    fn new(lease: Lease) -> Arc<Held> {
        Arc::new(Held {
            key: lease.key.clone(),
            lease: tokio::sync::Mutex::new(lease),
            lost: watch::channel(false).0,
            last_renewed: std::sync::Mutex::new(Instant::now()),
        })
    }

    fn mark_lost(&self) {
        self.lost.send_replace(true);
    }

    fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }
}

/// Writes a shard's checkpoints into its lease.
pub struct Checkpointer {
    held: Arc<Held>,
    table: Arc<LeaseTable>,
    latency: Arc<CheckpointLatency>,
    /// The last record handed to the processor.
    largest: Option<(String, u64)>,
    at_shard_end: bool,
    children: Vec<String>,
}

impl Checkpointer {
    /// Checkpoints at the last record delivered, or at SHARD_END once the shard has ended.
    pub async fn checkpoint(&mut self) -> Result<(), CheckpointError> {
        self.request(None, None).await
    }

    /// Checkpoints at a record delivered (a sequence number and a sub-sequence number).
    pub async fn checkpoint_at(
        &mut self,
        sequence_number: &str,
        sub_sequence_number: u64,
    ) -> Result<(), CheckpointError> {
        self.request(Some(sequence_number), Some(sub_sequence_number)).await
    }

    /// A checkpoint as the multi-language protocol asks for it: no sequence number means the
    /// last record delivered (SHARD_END at the shard's end); a sequence number alone means
    /// sub-sequence 0.
    pub async fn request(&mut self, seq: Option<&str>, sub: Option<u64>) -> Result<(), CheckpointError> {
        let (target, target_sub) = match seq {
            None if self.at_shard_end => (SHARD_END.to_owned(), 0),
            None => match &self.largest {
                Some((s, n)) => (s.clone(), *n),
                None => return Ok(()), // nothing delivered: the checkpoint stays where it is
            },
            Some(s) => {
                if !is_sequence_number(s) {
                    return Err(CheckpointError::IllegalArgument(format!(
                        "Could not checkpoint at invalid, non-numeric sequence number {s}"
                    )));
                }
                (s.to_owned(), sub.unwrap_or(0))
            }
        };
        let mut lease = self.held.lease.lock().await;
        if self.held.is_lost() {
            return Err(CheckpointError::Shutdown);
        }
        if target != SHARD_END {
            let before_last = is_sequence_number(&lease.checkpoint)
                && cmp_ext(&target, target_sub, &lease.checkpoint, lease.checkpoint_sub).is_lt();
            let beyond = match &self.largest {
                Some((s, n)) => cmp_ext(&target, target_sub, s, *n).is_gt(),
                None => true,
            };
            if before_last || beyond {
                return Err(CheckpointError::IllegalArgument(format!(
                    "Could not checkpoint at extended sequence number {{SequenceNumber: {target},SubsequenceNumber: {target_sub}}} \
                     as it did not fall into acceptable range between the last checkpoint {{SequenceNumber: {},SubsequenceNumber: {}}} \
                     and the greatest extended sequence number passed to this record processor {}",
                    lease.checkpoint,
                    lease.checkpoint_sub,
                    match &self.largest {
                        Some((s, n)) => format!("{{SequenceNumber: {s},SubsequenceNumber: {n}}}"),
                        None => "null".into(),
                    }
                )));
            }
        }
        let started = Instant::now();
        let written = self.table.checkpoint(&mut lease, &target, target_sub, &self.children).await;
        self.latency.record(started.elapsed());
        match written {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.held.mark_lost();
                Err(CheckpointError::Shutdown)
            }
            Err(e) if e.is_retryable() && e.status != 0 => Err(CheckpointError::Throttling),
            Err(e) => Err(CheckpointError::Dependency(e.to_string())),
        }
    }
}

/// The lease-table write latency of a worker's checkpoints, in microseconds.
pub struct CheckpointLatency(std::sync::Mutex<hdrhistogram::Histogram<u64>>);

impl CheckpointLatency {
    fn new() -> CheckpointLatency {
        CheckpointLatency(std::sync::Mutex::new(
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        ))
    }

    fn record(&self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 60_000_000);
        let _ = self.0.lock().unwrap_or_else(|p| p.into_inner()).record(us);
    }

    /// (count, p50, p99, max) in microseconds.
    pub fn summary(&self) -> (u64, u64, u64, u64) {
        let h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (h.len(), h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
    }
}

/// Orders extended sequence numbers (sequence number, then sub-sequence number).
fn cmp_ext(a: &str, a_sub: u64, b: &str, b_sub: u64) -> std::cmp::Ordering {
    cmp_seq(a, b).then(a_sub.cmp(&b_sub))
}

/// How a shard's processing ended.
#[derive(Debug)]
enum Exit {
    LeaseLost,
    ShardEnded,
    Stopped,
    Failed(String),
}

struct Ctx<F> {
    cfg: KclConfig,
    worker_id: String,
    kinesis: Arc<AwsClient>,
    table: Arc<LeaseTable>,
    stream: StreamRef,
    factory: F,
    /// The registered consumer, in fan-out mode.
    consumer_arn: std::sync::OnceLock<String>,
    latency: Arc<CheckpointLatency>,
}

/// A KCL worker of one application on one stream.
pub struct Worker<F: ProcessorFactory> {
    ctx: Arc<Ctx<F>>,
}

/// A random id in UUID form, for workers without a `workerId`.
fn random_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::getrandom(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    crate::firehose::prefix::uuid_from(b)
}

/// Fisher-Yates with the operating system's randomness.
fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let mut b = [0u8; 8];
        let _ = getrandom::getrandom(&mut b);
        let j = (u64::from_le_bytes(b) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// The number of leases a worker aims at: `ceil(leases / workers)`, capped.
pub fn lease_target(leases: usize, workers: usize, max_for_worker: Option<u32>) -> usize {
    let t = leases.div_ceil(workers.max(1));
    match max_for_worker {
        Some(m) => t.min(m as usize),
        None => t,
    }
}

/// How many leases to steal from the busiest worker, as KCL 2.x's lease taker decides.
pub fn leases_to_steal(needed: usize, busiest: usize, target: usize, max_steal: u32) -> usize {
    if needed == 0 || busiest < target {
        return 0;
    }
    let mut n = needed.min(busiest - target);
    if needed > 1 && n == 0 {
        n = 1;
    }
    n.min(max_steal as usize)
}

impl<F: ProcessorFactory> Worker<F> {
    /// A worker for the application and stream the configuration names.
    pub fn new(cfg: KclConfig, factory: F) -> anyhow::Result<Worker<F>> {
        let default = "http://127.0.0.1:4567";
        let credentials = Credentials::from_environment();
        let kinesis_ep = Endpoint::parse(cfg.kinesis_endpoint.as_deref().unwrap_or(default))?;
        let dynamodb_ep =
            Endpoint::parse(cfg.dynamodb_endpoint.as_deref().or(cfg.kinesis_endpoint.as_deref()).unwrap_or(default))?;
        let roots = if kinesis_ep.tls || dynamodb_ep.tls {
            super::client::trusted_roots()?
        } else {
            tokio_rustls::rustls::RootCertStore::empty()
        };
        let kinesis =
            AwsClient::kinesis(kinesis_ep, &cfg.region_name, credentials.clone()).with_roots(roots.clone())?;
        let dynamodb = AwsClient::dynamodb(dynamodb_ep, &cfg.region_name, credentials).with_roots(roots)?;
        let stream = match (&cfg.stream_arn, &cfg.stream_name) {
            (Some(a), _) => StreamRef::Arn(a.clone()),
            (None, Some(n)) => StreamRef::Name(n.clone()),
            (None, None) => anyhow::bail!("streamName or streamArn is required"),
        };
        let worker_id = cfg.worker_id.clone().unwrap_or_else(random_id);
        let table = Arc::new(LeaseTable::new(dynamodb, &cfg.table_name));
        Ok(Worker {
            ctx: Arc::new(Ctx {
                cfg,
                worker_id,
                kinesis: Arc::new(kinesis),
                table,
                stream,
                factory,
                consumer_arn: std::sync::OnceLock::new(),
                latency: Arc::new(CheckpointLatency::new()),
            }),
        })
    }

    pub fn worker_id(&self) -> &str {
        &self.ctx.worker_id
    }

    /// How long this worker's checkpoints take to write (kept while it runs).
    pub fn checkpoint_latency(&self) -> Arc<CheckpointLatency> {
        self.ctx.latency.clone()
    }

    /// Runs until `shutdown` completes, then asks each processor to shut down, waits for them
    /// and gives the leases up.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let ctx = self.ctx;
        let cfg = &ctx.cfg;
        tokio::pin!(shutdown);
        info!(worker = %ctx.worker_id, table = %ctx.table.name(), stream = %ctx.stream.display(), "KCL worker starting");
        loop {
            match ctx.table.ensure().await {
                Ok(()) => break,
                Err(e) if e.is_retryable() => warn!("lease table {}: {e}; retrying", ctx.table.name()),
                Err(e) => anyhow::bail!("lease table {}: {e}", ctx.table.name()),
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        if cfg.retrieval_mode == RetrievalMode::FanOut {
            let arn = loop {
                match register_consumer(&ctx).await {
                    Ok(a) => break a,
                    Err(e) if e.is_retryable() => warn!("RegisterStreamConsumer: {e}; retrying"),
                    Err(e) => anyhow::bail!("registering consumer {}: {e}", cfg.application_name),
                }
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            };
            let _ = ctx.consumer_arn.set(arn);
        }
        let failover = Duration::from_millis(cfg.failover_time_millis.max(100));
        let renew_every = failover / 3;
        let take_every = failover * 2;
        let sync_every = Duration::from_millis(cfg.shard_sync_interval_millis.max(100));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut coord = Coordinator {
            ctx: ctx.clone(),
            held: HashMap::new(),
            tasks: HashMap::new(),
            restart_at: HashMap::new(),
            observed: HashMap::new(),
            failover,
        };
        coord.shard_sync().await;
        let mut next_take = Instant::now();
        let mut next_sync = Instant::now() + sync_every;
        loop {
            coord.renew().await;
            coord.reap().await;
            let now = Instant::now();
            if now >= next_take {
                coord.take().await;
                next_take = now + take_every;
            }
            if now >= next_sync {
                coord.shard_sync().await;
                next_sync = now + sync_every;
            }
            coord.start_consumers(&stop_rx);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(renew_every) => {}
            }
        }
        info!(worker = %ctx.worker_id, "KCL worker shutting down");
        stop_tx.send_replace(true);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            coord.renew().await;
            coord.reap().await;
            if coord.tasks.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (_, t) in coord.tasks.drain() {
            t.abort();
        }
        for (key, h) in coord.held.drain() {
            let mut lease = h.lease.lock().await;
            match ctx.table.evict(&mut lease).await {
                Ok(_) => debug!("gave up the lease of {key}"),
                Err(e) => warn!("giving up the lease of {key}: {e}"),
            }
        }
        Ok(())
    }
}

async fn register_consumer<F>(ctx: &Ctx<F>) -> Result<String, CallError> {
    let mut req = json!({});
    ctx.stream.add_to(&mut req);
    let summary = ctx.kinesis.call("DescribeStreamSummary", &req).await?;
    let stream_arn = summary["StreamDescriptionSummary"]["StreamARN"].as_str().unwrap_or_default().to_owned();
    let name = &ctx.cfg.application_name;
    let describe = json!({"StreamARN": stream_arn, "ConsumerName": name});
    let mut arn = match ctx.kinesis.call("RegisterStreamConsumer", &describe).await {
        Ok(v) => v["Consumer"]["ConsumerARN"].as_str().map(str::to_owned),
        Err(e) if e.is("ResourceInUseException") => None,
        Err(e) => return Err(e),
    };
    for _ in 0..600 {
        let v = ctx.kinesis.call("DescribeStreamConsumer", &describe).await?;
        let d = &v["ConsumerDescription"];
        if arn.is_none() {
            arn = d["ConsumerARN"].as_str().map(str::to_owned);
        }
        if d["ConsumerStatus"] == "ACTIVE" {
            if let Some(a) = arn {
                info!("fan-out consumer {name}: {a}");
                return Ok(a);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(CallError { status: 0, kind: "Timeout".into(), message: format!("consumer {name} never became ACTIVE") })
}

struct Coordinator<F> {
    ctx: Arc<Ctx<F>>,
    held: HashMap<String, Arc<Held>>,
    tasks: HashMap<String, tokio::task::JoinHandle<Exit>>,
    /// When a shard whose processor failed may start again.
    restart_at: HashMap<String, Instant>,
    /// Each lease's counter as last seen, and when it last changed.
    observed: HashMap<String, (u64, Instant)>,
    failover: Duration,
}

impl<F: ProcessorFactory> Coordinator<F> {
    async fn renew(&mut self) {
        let mut lost = Vec::new();
        for (key, h) in &self.held {
            if h.is_lost() {
                lost.push(key.clone());
                continue;
            }
            let mut lease = h.lease.lock().await;
            match self.ctx.table.renew(&mut lease).await {
                Ok(true) => *h.last_renewed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now(),
                Ok(false) => {
                    info!("lease of {key} lost: another worker changed it");
                    h.mark_lost();
                    lost.push(key.clone());
                }
                Err(e) => {
                    let since = h.last_renewed.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                    warn!("renewing the lease of {key}: {e}");
                    if since > self.failover {
                        info!("lease of {key} lost: not renewed for {since:?}");
                        h.mark_lost();
                        lost.push(key.clone());
                    }
                }
            }
        }
        for k in lost {
            self.held.remove(&k);
        }
    }

    /// Collects the processors that finished.
    async fn reap(&mut self) {
        let done: Vec<String> = self.tasks.iter().filter(|(_, t)| t.is_finished()).map(|(k, _)| k.clone()).collect();
        for key in done {
            let Some(task) = self.tasks.remove(&key) else { continue };
            let exit = task.await.unwrap_or_else(|e| Exit::Failed(format!("the shard's task panicked: {e}")));
            match exit {
                Exit::ShardEnded => {
                    info!("{key} finished (SHARD_END)");
                    if let Some(h) = self.held.remove(&key) {
                        h.mark_lost();
                    }
                    if let Err(e) = self.ctx.table.delete_finished(&key).await {
                        warn!("deleting the finished lease of {key}: {e} (left for a later pass)");
                    }
                }
                Exit::LeaseLost => {
                    self.held.remove(&key);
                }
                Exit::Stopped => {}
                Exit::Failed(why) => {
                    warn!("the record processor of {key} failed: {why}; starting it again from its checkpoint");
                    self.restart_at.insert(key, Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }

    fn start_consumers(&mut self, stop: &watch::Receiver<bool>) {
        let now = Instant::now();
        for (key, h) in &self.held {
            if self.tasks.contains_key(key) || h.is_lost() {
                continue;
            }
            if self.restart_at.get(key).is_some_and(|t| *t > now) {
                continue;
            }
            self.restart_at.remove(key);
            let task = tokio::spawn(consume(self.ctx.clone(), h.clone(), stop.clone()));
            self.tasks.insert(key.clone(), task);
        }
    }

    /// Scans the table and takes leases toward this worker's share.
    async fn take(&mut self) {
        let all = match self.ctx.table.list().await {
            Ok(l) => l,
            Err(e) => {
                warn!("listing leases: {e}");
                return;
            }
        };
        let now = Instant::now();
        let keys: HashSet<&str> = all.iter().map(|l| l.key.as_str()).collect();
        self.observed.retain(|k, _| keys.contains(k.as_str()));
        for l in &all {
            let e = self.observed.entry(l.key.clone()).or_insert((l.counter, now));
            if e.0 != l.counter {
                *e = (l.counter, now);
            }
        }
        let me = self.ctx.worker_id.as_str();
        // Finished leases wait for deletion; a worker never takes them.
        let active: Vec<&Lease> = all.iter().filter(|l| !l.is_shard_end()).collect();
        let available = |l: &Lease| {
            !self.held.contains_key(&l.key)
                && (l.owner.is_none()
                    || l.owner.as_deref() == Some(me)
                    || self.observed.get(&l.key).is_some_and(|(_, t)| now.duration_since(*t) > self.failover))
        };
        let mut per_worker: HashMap<&str, Vec<&Lease>> = HashMap::new();
        for l in active.iter().copied() {
            if let Some(o) = l.owner.as_deref() {
                if o != me && !available(l) {
                    per_worker.entry(o).or_default().push(l);
                }
            }
        }
        let mine = self.held.len();
        let target = lease_target(active.len(), per_worker.len() + 1, self.ctx.cfg.max_leases_for_worker);
        if mine >= target {
            return;
        }
        let needed = target - mine;
        let mut free: Vec<&Lease> = active.iter().copied().filter(|l| available(l)).collect();
        shuffle(&mut free);
        let chosen: Vec<Lease> = if !free.is_empty() {
            free.into_iter().take(needed).cloned().collect()
        } else {
            let Some((_, busiest)) = per_worker.iter().max_by_key(|(_, v)| v.len()) else { return };
            let n = leases_to_steal(needed, busiest.len(), target, self.ctx.cfg.max_leases_to_steal_at_one_time);
            let mut pick: Vec<&Lease> = busiest.clone();
            shuffle(&mut pick);
            pick.into_iter().take(n).cloned().collect()
        };
        for mut l in chosen {
            let from = l.owner.clone();
            match self.ctx.table.take(&mut l, me).await {
                Ok(true) => {
                    info!("took the lease of {} (from {})", l.key, from.as_deref().unwrap_or("nobody"));
                    self.observed.insert(l.key.clone(), (l.counter, Instant::now()));
                    self.held.insert(l.key.clone(), Held::new(l));
                }
                Ok(false) => debug!("lost the race for {}", l.key),
                Err(e) => warn!("taking the lease of {}: {e}", l.key),
            }
        }
    }

    /// Lists the shards and creates the leases that are missing.
    async fn shard_sync(&mut self) {
        let shards = match list_shards(&self.ctx).await {
            Ok(s) => s,
            Err(e) => {
                warn!("ListShards: {e}");
                return;
            }
        };
        let leases = match self.ctx.table.list().await {
            Ok(l) => l,
            Err(e) => {
                warn!("listing leases: {e}");
                return;
            }
        };
        for lease in new_leases(&shards, &leases, self.ctx.cfg.initial_position) {
            match self.ctx.table.create_if_absent(&lease).await {
                Ok(true) => info!("created the lease of {} at {}", lease.key, lease.checkpoint),
                Ok(false) => {}
                Err(e) => warn!("creating the lease of {}: {e}", lease.key),
            }
        }
        // Finished leases whose children all have leases are no longer needed.
        let have: HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
        for l in leases.iter().filter(|l| l.is_shard_end() && l.children.iter().all(|c| have.contains(c.as_str()))) {
            if !self.held.contains_key(&l.key) {
                let _ = self.ctx.table.delete_finished(&l.key).await;
            }
        }
    }
}

/// A shard as ListShards describes it.
#[derive(Debug, Clone)]
pub struct ShardInfo {
    pub id: String,
    pub parents: Vec<String>,
    pub open: bool,
    pub hash_range: Option<(String, String)>,
}

async fn list_shards<F>(ctx: &Ctx<F>) -> Result<Vec<ShardInfo>, CallError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = json!({});
        match &token {
            Some(t) => req["NextToken"] = json!(t),
            None => ctx.stream.add_to(&mut req),
        }
        let v = ctx.kinesis.call("ListShards", &req).await?;
        for s in v["Shards"].as_array().into_iter().flatten() {
            let Some(id) = s["ShardId"].as_str() else { continue };
            let parents = [&s["ParentShardId"], &s["AdjacentParentShardId"]]
                .iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect();
            let hash_range =
                match (s["HashKeyRange"]["StartingHashKey"].as_str(), s["HashKeyRange"]["EndingHashKey"].as_str()) {
                    (Some(a), Some(b)) => Some((a.to_owned(), b.to_owned())),
                    _ => None,
                };
            out.push(ShardInfo {
                id: id.to_owned(),
                parents,
                open: s["SequenceNumberRange"]["EndingSequenceNumber"].is_null(),
                hash_range,
            });
        }
        match v["NextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    Ok(out)
}

/// The leases a shard sync creates: one for each shard without a lease, except shards whose
/// descendants hold leases (they are done). Under LATEST, closed shards without a leased
/// ancestor get none, and a shard with a leased ancestor starts at TRIM_HORIZON (its parent's
/// records were being read).
pub fn new_leases(shards: &[ShardInfo], leases: &[Lease], initial: InitialPosition) -> Vec<Lease> {
    let have: HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    let by_id: HashMap<&str, &ShardInfo> = shards.iter().map(|s| (s.id.as_str(), s)).collect();
    for s in shards {
        for p in &s.parents {
            children.entry(p.as_str()).or_default().push(s.id.as_str());
        }
    }
    let reaches = |start: &str, next: &dyn Fn(&str) -> Vec<String>| -> bool {
        let mut queue: VecDeque<String> = next(start).into();
        let mut seen = HashSet::new();
        while let Some(s) = queue.pop_front() {
            if !seen.insert(s.clone()) {
                continue;
            }
            if have.contains(s.as_str()) {
                return true;
            }
            queue.extend(next(&s));
        }
        false
    };
    let descendants = |s: &str| children.get(s).map(|c| c.iter().map(|x| x.to_string()).collect()).unwrap_or_default();
    let ancestors = |s: &str| by_id.get(s).map(|i| i.parents.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for s in shards {
        if have.contains(s.id.as_str()) || reaches(&s.id, &descendants) {
            continue;
        }
        let checkpoint = match initial {
            InitialPosition::TrimHorizon => "TRIM_HORIZON",
            InitialPosition::AtTimestamp(_) => "AT_TIMESTAMP",
            InitialPosition::Latest if reaches(&s.id, &ancestors) => "TRIM_HORIZON",
            InitialPosition::Latest if s.open => "LATEST",
            InitialPosition::Latest => continue,
        };
        out.push(Lease::new(&s.id, checkpoint, s.parents.clone(), s.hash_range.clone()));
    }
    out
}

/// Whether every parent of the lease is gone or finished.
async fn parents_done(table: &LeaseTable, parents: &[String]) -> Result<Option<String>, CallError> {
    for p in parents {
        if let Some(l) = table.get(p).await? {
            if !l.is_shard_end() {
                return Ok(Some(p.clone()));
            }
        }
    }
    Ok(None)
}

fn record_start(cfg: &KclConfig, checkpoint: &str, sub: u64) -> Start {
    match checkpoint {
        "LATEST" => Start::Latest,
        "AT_TIMESTAMP" => match cfg.initial_position {
            InitialPosition::AtTimestamp(ms) => Start::AtTimestamp(ms),
            _ => Start::TrimHorizon,
        },
        s if is_sequence_number(s) => Start::Checkpoint(s.to_owned(), sub),
        _ => Start::TrimHorizon,
    }
}

/// Processes one held lease until it is lost, the shard ends, the worker stops, or the
/// processor fails.
async fn consume<F: ProcessorFactory>(ctx: Arc<Ctx<F>>, held: Arc<Held>, mut stop: watch::Receiver<bool>) -> Exit {
    let shard = held.key.clone();
    let mut lost = held.lost.subscribe();
    let parents = held.lease.lock().await.parents.clone();
    loop {
        let waiting = match parents_done(&ctx.table, &parents).await {
            Ok(None) => break,
            Ok(Some(p)) => p,
            Err(e) => format!("(lease table: {e})"),
        };
        debug!("{shard} waits for its parent {waiting}");
        let poll = Duration::from_millis(ctx.cfg.parent_shard_poll_interval_millis.max(50));
        let exit = tokio::select! {
            _ = lost.wait_for(|l| *l) => Some(Exit::LeaseLost),
            _ = stop.wait_for(|s| *s) => Some(Exit::Stopped),
            _ = tokio::time::sleep(poll) => None,
        };
        if let Some(exit) = exit {
            return exit;
        }
    }
    let mut processor = match ctx.factory.create(&shard) {
        Ok(p) => p,
        Err(e) => return Exit::Failed(format!("{e:#}")),
    };
    let (checkpoint, sub, hash_range) = {
        let l = held.lease.lock().await;
        (l.checkpoint.clone(), l.checkpoint_sub, parse_hash_range(&l.hash_range))
    };
    let init =
        InitializeInput { shard_id: shard.clone(), sequence_number: checkpoint.clone(), sub_sequence_number: sub };
    if let Err(e) = processor.initialize(init).await {
        return Exit::Failed(format!("initialize: {e:#}"));
    }
    let start = record_start(&ctx.cfg, &checkpoint, sub);
    let mut fetcher = match ctx.consumer_arn.get() {
        Some(arn) => Fetcher::FanOut(Subscriber::new(ctx.kinesis.clone(), arn, &shard, start, hash_range)),
        None => Fetcher::Polling(Poller::new(
            ctx.kinesis.clone(),
            ctx.stream.clone(),
            &shard,
            start,
            hash_range,
            ctx.cfg.max_records,
            Duration::from_millis(ctx.cfg.idle_time_between_reads_millis),
        )),
    };
    let mut checkpointer = Checkpointer {
        held: held.clone(),
        table: ctx.table.clone(),
        latency: ctx.latency.clone(),
        largest: None,
        at_shard_end: false,
        children: Vec::new(),
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        enum Next {
            Lost,
            Stop,
            Fetched(Result<super::retrieval::Batch, CallError>),
        }
        let next = tokio::select! {
            _ = lost.wait_for(|l| *l) => Next::Lost,
            _ = stop.wait_for(|s| *s) => Next::Stop,
            b = fetcher.next() => Next::Fetched(b),
        };
        let fetched = match next {
            Next::Lost => {
                let _ = processor.lease_lost().await;
                return Exit::LeaseLost;
            }
            Next::Stop => {
                if let Err(e) = processor.shutdown_requested(&mut checkpointer).await {
                    warn!("{shard}: shutdownRequested: {e:#}");
                }
                return Exit::Stopped;
            }
            Next::Fetched(b) => b,
        };
        let batch = match fetched {
            Ok(b) => {
                backoff = Duration::from_millis(100);
                b
            }
            Err(e) => {
                if !e.is("ExpiredIteratorException") {
                    warn!("{shard}: reading records: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                continue;
            }
        };
        if held.is_lost() {
            let _ = processor.lease_lost().await;
            return Exit::LeaseLost;
        }
        if let Some(last) = batch.records.last() {
            checkpointer.largest = Some((last.sequence_number.clone(), last.sub_sequence_number));
            let input =
                ProcessRecordsInput { records: batch.records, millis_behind_latest: batch.millis_behind_latest };
            if let Err(e) = processor.process_records(input, &mut checkpointer).await {
                return Exit::Failed(format!("processRecords: {e:#}"));
            }
        }
        if let Some(children) = batch.shard_end {
            for c in &children {
                let lease = Lease::new(&c.shard_id, "TRIM_HORIZON", c.parents.clone(), c.hash_range.clone());
                if let Err(e) = ctx.table.create_if_absent(&lease).await {
                    return Exit::Failed(format!("creating the lease of child {}: {e}", c.shard_id));
                }
            }
            checkpointer.at_shard_end = true;
            checkpointer.children = children.iter().map(|c| c.shard_id.clone()).collect();
            if let Err(e) = processor.shard_ended(&mut checkpointer).await {
                return Exit::Failed(format!("shardEnded: {e:#}"));
            }
            if held.lease.lock().await.is_shard_end() {
                return Exit::ShardEnded;
            }
            if held.is_lost() {
                return Exit::LeaseLost;
            }
            return Exit::Failed("the record processor did not checkpoint at SHARD_END in shardEnded".into());
        }
    }
}

/// The JSON the multi-language protocol gives a record.
pub fn record_json(r: &KclRecord) -> Value {
    use base64::Engine;
    json!({
        "action": "record",
        "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
        "partitionKey": r.partition_key,
        "sequenceNumber": r.sequence_number,
        "subSequenceNumber": r.sub_sequence_number,
        "approximateArrivalTimestamp": r.approximate_arrival_timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], open: bool) -> ShardInfo {
        ShardInfo { id: id.into(), parents: parents.iter().map(|p| p.to_string()).collect(), open, hash_range: None }
    }

    #[test]
    fn targets_and_steals_as_kcl() {
        assert_eq!(lease_target(4, 2, None), 2);
        assert_eq!(lease_target(5, 2, None), 3);
        assert_eq!(lease_target(5, 2, Some(2)), 2);
        assert_eq!(lease_target(0, 1, None), 0);
        // A newcomer (0 of target 2) facing a worker with 4 steals up to the cap.
        assert_eq!(leases_to_steal(2, 4, 2, 1), 1);
        assert_eq!(leases_to_steal(2, 4, 2, 5), 2);
        // The busiest is at target: one lease moves only when more than one is needed.
        assert_eq!(leases_to_steal(1, 2, 2, 1), 0);
        assert_eq!(leases_to_steal(2, 2, 2, 1), 1);
        assert_eq!(leases_to_steal(1, 1, 2, 1), 0);
    }

    #[test]
    fn shard_sync_creates_what_is_missing_and_not_what_is_done() {
        // 0 split into 1 and 2; 1 and 2 merged into 3.
        let shards = [
            shard("s0", &[], false),
            shard("s1", &["s0"], false),
            shard("s2", &["s0"], false),
            shard("s3", &["s1", "s2"], true),
        ];
        let fresh = new_leases(&shards, &[], InitialPosition::TrimHorizon);
        assert_eq!(fresh.iter().map(|l| l.key.as_str()).collect::<Vec<_>>(), ["s0", "s1", "s2", "s3"]);
        assert_eq!(fresh[3].parents, ["s1", "s2"]);
        let latest = new_leases(&shards, &[], InitialPosition::Latest);
        assert_eq!(latest.len(), 1);
        assert_eq!((latest[0].key.as_str(), latest[0].checkpoint.as_str()), ("s3", "LATEST"));
        // s0 finished and was deleted; s1 and s2 hold leases: s0 is not created again.
        let held = [Lease::new("s1", "TRIM_HORIZON", vec![], None), Lease::new("s2", "TRIM_HORIZON", vec![], None)];
        let again = new_leases(&shards, &held, InitialPosition::Latest);
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].key.as_str(), again[0].checkpoint.as_str()),
            ("s3", "TRIM_HORIZON"),
            "descendant of a leased shard"
        );
    }

    #[tokio::test]
    async fn checkpoints_must_lie_between_the_last_and_the_largest_delivered() {
        // No table is reached: every request here is refused before the write.
        let creds = Credentials { access_key_id: "a".into(), secret_access_key: "b".into(), session_token: None };
        let client = AwsClient::dynamodb(Endpoint::parse("http://127.0.0.1:9").unwrap(), "us-east-1", creds);
        let mut lease = Lease::new("s", "100", vec![], None);
        lease.checkpoint_sub = 2;
        let mut cp = Checkpointer {
            held: Held::new(lease),
            table: Arc::new(LeaseTable::new(client, "t")),
            latency: Arc::new(CheckpointLatency::new()),
            largest: Some(("200".into(), 0)),
            at_shard_end: false,
            children: vec![],
        };
        let e = cp.checkpoint_at("abc", 0).await.unwrap_err();
        assert_eq!(e.java_name(), "IllegalArgumentException");
        assert!(
            matches!(cp.checkpoint_at("100", 1).await, Err(CheckpointError::IllegalArgument(_))),
            "before the last"
        );
        assert!(
            matches!(cp.checkpoint_at("201", 0).await, Err(CheckpointError::IllegalArgument(_))),
            "past the largest"
        );
        assert!(
            matches!(cp.checkpoint_at("200", 1).await, Err(CheckpointError::IllegalArgument(_))),
            "past the largest"
        );
        cp.held.mark_lost();
        assert_eq!(cp.checkpoint_at("150", 0).await, Err(CheckpointError::Shutdown));
    }

    #[test]
    fn records_in_the_multilang_shape() {
        let r = KclRecord {
            data: b"hi".to_vec(),
            partition_key: "p".into(),
            explicit_hash_key: None,
            sequence_number: "42".into(),
            sub_sequence_number: 3,
            approximate_arrival_timestamp: 1_700_000_000_123,
            aggregated: true,
        };
        assert_eq!(
            record_json(&r),
            json!({"action": "record", "data": "aGk=", "partitionKey": "p", "sequenceNumber": "42",
                   "subSequenceNumber": 3, "approximateArrivalTimestamp": 1_700_000_000_123i64})
        );
        assert_eq!(random_id().len(), 36);
    }
}
