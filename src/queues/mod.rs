//! Kinesis queues: the queue operations of the `Kinesis_20131202` API (CreateQueue,
//! DescribeQueue, ListQueues, UpdateQueue, DeleteQueue; ReceiveQueueRecords,
//! AcknowledgeQueueRecords, UpdateQueueRecordsVisibility; and their dead-letter twins).
//!
//! A queue delivers each record of one ON_DEMAND stream to one of many consumers at a time,
//! tracks its delivery state, redelivers what is not acknowledged before its visibility timeout,
//! and sets aside as dead letters the records received MaxReceiveCount times. The records stay in
//! the stream's log; the queue keeps a small index beside them ([`engine`]).
//!
//! Owns: queues (metadata under `queue/meta/<name>` in the metadata store), their delivery state
//! (the `queues` column family, under the queue's id), their receipt handles (a MAC under a key
//! of the queue's own, so they cannot be made up) and their gauges (`sluice_queue_*`).
//!
//! Limits: `[queues] in_flight_max` records in flight per queue (past it, ThrottlingException)
//! and `[queues] records_max` records held per queue (past it, the queue takes no more from the
//! stream until some are acknowledged). Queues count against the stream's registered-consumer
//! limit (`[fanout] consumers_per_stream`), as on AWS. A receipt handle stays good until the
//! record's visibility timeout passes or it is received again; acknowledging a record the queue
//! no longer holds succeeds. Dead-letter receives do not add to ReceiveCount. A queue that is
//! not ACTIVE or UPDATING answers receives with ResourceInUseException.
//! Queues are per account: a key of another account than the daemon's creates and lists its own,
//! kept as `<account>/<name>` inside the daemon; a queue ARN carries its owner's account.

pub mod engine;
pub mod ops;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::protocol::error::{ApiError, ApiResult};
use crate::runtime::Position;
use crate::service::Service;

pub use ops::{dispatch, OPERATIONS};

/// VisibilityTimeoutSeconds when none is given.
pub const VISIBILITY_DEFAULT_S: u32 = 30;
/// MaxReceiveCount when no DeadLetterConfiguration is given.
pub const MAX_RECEIVE_DEFAULT: u32 = 6;
/// Tags per queue.
pub const TAGS_MAX: usize = 50;

pub fn meta_key(name: &str) -> String {
    format!("queue/meta/{name}")
}

/// A queue, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueMeta {
    pub name: String,
    /// The ARN's resource id (random, not derived from the name).
    pub id: String,
    /// CREATING, ACTIVE, UPDATING or DELETING.
    pub status: String,
    pub created_ms: i64,
    pub stream_name: String,
    pub stream_id: u64,
    pub stream_arn: String,
    pub stream_created_ms: i64,
    /// TRIM_HORIZON, LATEST or AT_TIMESTAMP.
    pub start_type: String,
    /// AT_TIMESTAMP's time as given.
    pub start_ms: Option<i64>,
    /// The effective starting time, set when the queue becomes ACTIVE.
    pub effective_start_ms: Option<i64>,
    pub visibility_s: u32,
    /// MaxReceiveCount; `None` for TargetType NONE.
    pub max_receive: Option<u32>,
    /// An UpdateQueue's attributes, applied when it completes.
    pub pending: Option<(u32, Option<u32>)>,
    pub tags: BTreeMap<String, String>,
    /// The receipt handles' MAC key, hex.
    pub key: String,
}

impl QueueMeta {
    pub fn arn(&self, svc: &Service) -> String {
        let (account, _) = svc.account_and_name(&self.name);
        format!("arn:aws:kinesis:{}:{account}:queue/{}", svc.cfg.region, self.id)
    }

    /// The queue's name as its account knows it (inside the daemon a queue of another account is
    /// `<account>/<name>`).
    pub fn display_name(&self) -> &str {
        crate::stream::meta::split_qualified(&self.name).1
    }

    /// Where the queue starts reading its stream: LATEST is pinned to the creation time, so that
    /// a restart before the first record does not move it.
    pub fn start(&self) -> Position {
        match self.start_type.as_str() {
            "TRIM_HORIZON" => Position::TrimHorizon,
            "AT_TIMESTAMP" => Position::AtTimestamp(self.start_ms.unwrap_or(self.created_ms)),
            _ => Position::AtTimestamp(self.created_ms),
        }
    }

    pub fn settings(&self) -> engine::Settings {
        engine::Settings { visibility_s: self.visibility_s, max_receive: self.max_receive }
    }

    fn spec(&self, svc: &Service) -> ApiResult<engine::Spec> {
        let key = hex_key(&self.key)
            .ok_or_else(|| ApiError::InternalFailure(format!("queue {} has an unreadable key", self.name)))?;
        Ok(engine::Spec {
            name: self.name.clone(),
            id: self.id.clone(),
            key,
            stream_id: self.stream_id,
            start: self.start(),
            settings: self.settings(),
            in_flight_max: svc.cfg.queues.in_flight_max,
            records_max: svc.cfg.queues.records_max,
        })
    }
}

fn hex_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The queues of the daemon: their metadata and their live tasks.
pub struct Queues {
    pub svc: Arc<Service>,
    /// Serializes control-plane changes.
    control: tokio::sync::Mutex<()>,
    metas: RwLock<BTreeMap<String, Arc<QueueMeta>>>,
    /// Live tasks by queue id.
    tasks: Mutex<HashMap<String, Arc<engine::Handle>>>,
}

impl Queues {
    /// Loads every queue, finishes the status changes a stop interrupted, and starts the tasks.
    pub async fn start(svc: Arc<Service>) -> Arc<Queues> {
        let q = Arc::new(Queues {
            svc: svc.clone(),
            control: tokio::sync::Mutex::new(()),
            metas: RwLock::default(),
            tasks: Mutex::default(),
        });
        for mut meta in crate::firehose::scan::<QueueMeta>(&svc, "queue/meta/", "queue") {
            match meta.status.as_str() {
                "DELETING" => {
                    q.finish_delete(&meta).await;
                    continue;
                }
                "CREATING" | "UPDATING" => {
                    if let Err(e) = q.activate(&mut meta).await {
                        tracing::error!(queue = %meta.name, error = %e, "activating a queue");
                    }
                }
                _ => {}
            }
            let meta = Arc::new(meta);
            q.metas_mut().insert(meta.name.clone(), meta.clone());
            if meta.status == "ACTIVE" {
                q.start_task(&meta).await;
            }
        }
        q
    }

    fn metas_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<QueueMeta>>> {
        self.metas.read().unwrap_or_else(|p| p.into_inner())
    }

    fn metas_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<QueueMeta>>> {
        self.metas.write().unwrap_or_else(|p| p.into_inner())
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<engine::Handle>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn start_task(&self, meta: &QueueMeta) {
        let spec = match meta.spec(&self.svc) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(queue = %meta.name, error = %e, "starting a queue");
                return;
            }
        };
        match engine::spawn(self.svc.clone(), spec).await {
            Ok(h) => {
                self.tasks().insert(meta.id.clone(), Arc::new(h));
            }
            Err(e) => tracing::error!(queue = %meta.name, error = %e, "loading a queue's state"),
        }
    }

    /// The live task of a queue.
    fn task(&self, id: &str) -> Option<Arc<engine::Handle>> {
        self.tasks().get(id).cloned()
    }

    /// Every queue, by name.
    pub fn all(&self) -> Vec<Arc<QueueMeta>> {
        self.metas_read().values().cloned().collect()
    }

    /// The queue an ARN names (of this region, and of the ARN's account as the daemon reads it:
    /// [`Service::effective_account`]).
    pub fn by_arn(&self, arn: &str) -> ApiResult<Arc<QueueMeta>> {
        let not_found = || ApiError::ResourceNotFound(format!("Queue {arn} not found."));
        let owner = self.svc.effective_account(crate::stream::meta::arn_account(arn).unwrap_or_default());
        let prefix = format!(
            "arn:aws:kinesis:{}:{}:queue/",
            self.svc.cfg.region,
            crate::stream::meta::arn_account(arn).unwrap_or_default()
        );
        let id = arn.strip_prefix(&prefix).ok_or_else(not_found)?;
        self.metas_read()
            .values()
            .find(|m| m.id == id && self.svc.account_and_name(&m.name).0 == owner)
            .cloned()
            .ok_or_else(not_found)
    }

    async fn save(&self, meta: QueueMeta) -> ApiResult<Arc<QueueMeta>> {
        let bytes = serde_json::to_vec(&meta).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
        self.svc.put_meta(&meta_key(&meta.name), bytes).await?;
        let meta = Arc::new(meta);
        self.metas_mut().insert(meta.name.clone(), meta.clone());
        Ok(meta)
    }

    /// CREATING or UPDATING → ACTIVE: the effective start is fixed, pending attributes apply.
    async fn activate(&self, meta: &mut QueueMeta) -> ApiResult<()> {
        if meta.effective_start_ms.is_none() {
            let oldest = self.svc.stream_by_id(meta.stream_id).map(|s| {
                let horizon = self.svc.now_ms() - s.retention_hours as i64 * 3_600_000;
                horizon.max(s.created_ms)
            });
            let oldest = oldest.unwrap_or(meta.created_ms);
            meta.effective_start_ms = Some(match meta.start_type.as_str() {
                "TRIM_HORIZON" => oldest,
                "AT_TIMESTAMP" => meta.start_ms.unwrap_or(meta.created_ms).max(oldest),
                _ => meta.created_ms,
            });
        }
        if let Some((visibility_s, max_receive)) = meta.pending.take() {
            meta.visibility_s = visibility_s;
            meta.max_receive = max_receive;
        }
        meta.status = "ACTIVE".into();
        let bytes = serde_json::to_vec(&*meta).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
        self.svc.put_meta(&meta_key(&meta.name), bytes).await
    }

    /// Completes a CreateQueue or UpdateQueue (after `[streams] create_delay`).
    async fn settle(&self, name: &str, id: &str, from: &str) {
        let _guard = self.control.lock().await;
        let Some(current) = self.metas_read().get(name).cloned() else { return };
        if current.id != id || current.status != from {
            return;
        }
        let mut meta = (*current).clone();
        if let Err(e) = self.activate(&mut meta).await {
            tracing::error!(queue = %name, error = %e, "activating a queue");
            return;
        }
        // The task runs before the queue shows ACTIVE, so that a receive never finds it missing.
        match self.task(&meta.id) {
            Some(task) => {
                let _ = task.tx.send(engine::Command::Configure(meta.settings())).await;
            }
            None => self.start_task(&meta).await,
        }
        self.metas_mut().insert(meta.name.clone(), Arc::new(meta));
    }

    /// Removes a DELETING queue: its task, its state and its metadata.
    async fn finish_delete(&self, meta: &QueueMeta) {
        let task = self.tasks().remove(&meta.id);
        if let Some(task) = task {
            task.stop().await;
        }
        self.svc.metrics.forget_queue(&meta.name);
        let store = self.svc.store.clone();
        let prefix = engine::state_prefix(&meta.id);
        let cleared = tokio::task::spawn_blocking(move || store.queue_delete_prefix(&prefix)).await;
        if !matches!(cleared, Ok(Ok(()))) {
            tracing::error!(queue = %meta.name, "removing a deleted queue's state; will retry at next start");
            return;
        }
        if let Err(e) = self.svc.delete_meta(&meta_key(&meta.name)).await {
            tracing::error!(queue = %meta.name, error = %e, "removing a deleted queue");
            return;
        }
        let mut metas = self.metas_mut();
        if metas.get(&meta.name).is_some_and(|m| m.id == meta.id) {
            metas.remove(&meta.name);
        }
    }

    /// Answers every waiting receive at once (when the daemon starts to stop, so that long polls
    /// do not hold the drain).
    pub fn release_waiters(&self) {
        for t in self.tasks().values() {
            let _ = t.tx.try_send(engine::Command::Release);
        }
    }

    /// Stops every task (at shutdown), once what each has taken is written.
    pub async fn stop(&self) {
        let tasks: Vec<_> = self.tasks().drain().map(|(_, t)| t).collect();
        for t in tasks {
            t.stop().await;
        }
    }
}

/// ResourceInUseException while a stream has queues: `what` is refused until they are deleted.
pub fn refuse_while_queued(svc: &Service, stream: &crate::stream::meta::StreamMeta, what: &str) -> ApiResult<()> {
    let queues = of_stream(svc, stream.id);
    if queues.is_empty() {
        return Ok(());
    }
    Err(ApiError::ResourceInUse(format!(
        "Stream {} has queues ({}); delete them with DeleteQueue before {what}.",
        stream.name,
        queues.join(", ")
    )))
}

/// The queues on a stream, by name, as stored (DeleteStream and UpdateStreamMode refuse while
/// there are any; they count against the stream's registered-consumer limit).
pub fn of_stream(svc: &Service, stream_id: u64) -> Vec<String> {
    crate::firehose::scan::<QueueMeta>(svc, "queue/meta/", "queue")
        .into_iter()
        .filter(|q| q.stream_id == stream_id)
        .map(|q| q.name)
        .collect()
}
