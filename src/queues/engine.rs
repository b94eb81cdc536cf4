//! One queue's delivery state and the task that owns it.
//!
//! Every queue has one task (an actor): receives, acknowledgements and visibility changes are
//! commands to it, so no record is in flight to two consumers at once. The task applies the
//! commands that are waiting, writes everything they changed in one synced rocksdb batch, and
//! only then answers them: a group commit, so many consumers share one sync.
//!
//! The state, per record the queue holds (taken from the stream and not yet acknowledged): its
//! receive count, first receive time, delivery generation (which receipt handles carry), when it
//! becomes visible (its deadline while in flight), and whether it is a dead letter. Records are
//! taken from the stream through the internal reader, in lineage order across reshards, only
//! when a receive finds nothing visible; the reader's position is saved in the same batch as the
//! records it passed. A record below the position that the queue does not hold has been
//! acknowledged. The record's data is not copied: it is read again from the shard's log when
//! the record is redelivered (the hot tail, usually).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::kinesis::epoch_seconds;
use crate::log::Record;
use crate::protocol::error::{ApiError, ApiResult};
use crate::reader::stream::{Batch, StreamPosition, StreamReader};
use crate::runtime::{Position, ShardKey};
use crate::service::Service;
use crate::stream::seqno::SeqNo;

/// A record the queue holds: (shard index, ordinal).
pub type Key = (u32, u64);

/// Bytes taken from the stream per read, about (at least one record).
const TAKE_BYTES: usize = 1 << 20;
/// Commands applied before their changes are written and answered.
const GROUP_MAX: usize = 512;
/// An unreadable record is tried again this much later.
const UNREADABLE_RETRY_MS: i64 = 30_000;
/// How often the queue's gauges are refreshed.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// A read refused by a full worker queue is retried this often, this many times.
const READ_RETRY: Duration = Duration::from_millis(2);
const READ_RETRIES_MAX: u32 = 1000;

/// What a queue is configured with (QueueAttributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub visibility_s: u32,
    /// MaxReceiveCount; `None` when dead-letter handling is off (TargetType NONE).
    pub max_receive: Option<u32>,
}

/// Everything the task needs to know about its queue.
pub struct Spec {
    pub name: String,
    pub id: String,
    pub key: [u8; 32],
    pub stream_id: u64,
    pub start: Position,
    pub settings: Settings,
    pub in_flight_max: usize,
    pub records_max: usize,
}

/// What is done with the records named by receipt handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Acknowledge,
    /// The new visibility timeout in seconds, per entry.
    Visibility,
    Restore,
}

type Answer<T> = oneshot::Sender<ApiResult<T>>;

pub enum Command {
    Receive {
        dead: bool,
        limit: usize,
        wait: Duration,
        visibility_s: Option<u32>,
        reply: Answer<Vec<Value>>,
    },
    /// Entries: receipt handle and, for [`Action::Visibility`], the new timeout.
    Settle {
        action: Action,
        dead: bool,
        entries: Vec<(String, u32)>,
        reply: Answer<(Vec<Value>, Vec<Value>)>,
    },
    Configure(Settings),
    /// Answers every waiting receive now (empty): the daemon is stopping.
    Release,
    Stop(oneshot::Sender<()>),
}

/// The live task of a queue.
pub struct Handle {
    pub tx: mpsc::Sender<Command>,
}

impl Handle {
    pub async fn call<T>(&self, make: impl FnOnce(Answer<T>) -> Command) -> ApiResult<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Stops the task once what it has taken is written.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn gone() -> ApiError {
    ApiError::ResourceNotFound("The queue was deleted.".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    receive_count: u32,
    /// Incremented by every delivery; a receipt handle carries the one it was issued for.
    generation: u32,
    /// 0 until the record is first received.
    first_receive_ms: i64,
    /// When the record is (or becomes) visible: its deadline while it is in flight.
    visible_at: i64,
    arrival_ms: i64,
    dead: bool,
}

impl Entry {
    const LEN: usize = 33;

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.extend_from_slice(&self.receive_count.to_be_bytes());
        v.extend_from_slice(&self.generation.to_be_bytes());
        v.extend_from_slice(&self.first_receive_ms.to_be_bytes());
        v.extend_from_slice(&self.visible_at.to_be_bytes());
        v.extend_from_slice(&self.arrival_ms.to_be_bytes());
        v.push(self.dead as u8);
        v
    }

    fn decode(v: &[u8]) -> Option<Entry> {
        if v.len() != Self::LEN {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes(v[i..i + 4].try_into().expect("4 bytes"));
        let i64_at = |i: usize| i64::from_be_bytes(v[i..i + 8].try_into().expect("8 bytes"));
        Some(Entry {
            receive_count: u32_at(0),
            generation: u32_at(4),
            first_receive_ms: i64_at(8),
            visible_at: i64_at(16),
            arrival_ms: i64_at(24),
            dead: v[32] != 0,
        })
    }
}

/// Where a queue's state lives in the `queues` column family.
pub fn state_prefix(id: &str) -> Vec<u8> {
    format!("{id}/").into_bytes()
}

fn entry_key(id: &str, key: Key) -> Vec<u8> {
    let mut k = format!("{id}/e/").into_bytes();
    k.extend_from_slice(&key.0.to_be_bytes());
    k.extend_from_slice(&key.1.to_be_bytes());
    k
}

fn position_key(id: &str) -> Vec<u8> {
    format!("{id}/p").into_bytes()
}

/// A per-entry failure: the receipt handle is not (or no longer) good.
fn invalid(why: String) -> (&'static str, String) {
    ("InvalidArgumentException", why)
}

/// The clock visibility timeouts are measured by.
pub fn clock(svc: &Service) -> i64 {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    if let Some(path) = &svc.cfg.queues.clock_file {
        if let Some(ms) = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse::<i64>().ok()) {
            LAST.store(ms, std::sync::atomic::Ordering::Relaxed);
            return ms;
        }
        // A file caught while it is rewritten: the last time read from it.
        let last = LAST.load(std::sync::atomic::Ordering::Relaxed);
        if last != 0 {
            return last;
        }
    }
    svc.now_ms()
}

/// A receive waiting for a record to become visible.
struct Waiter {
    dead: bool,
    limit: usize,
    visibility_s: Option<u32>,
    until: tokio::time::Instant,
    reply: Answer<Vec<Value>>,
}

/// An answer held until the changes behind it are written.
type Deferred = Box<dyn FnOnce(Option<ApiError>) + Send>;

fn deferred<T: Send + 'static>(reply: Answer<T>, value: ApiResult<T>) -> Deferred {
    Box::new(move |failed| {
        let _ = reply.send(match failed {
            Some(e) => Err(e),
            None => value,
        });
    })
}

struct Actor {
    svc: Arc<Service>,
    spec: Spec,
    entries: BTreeMap<Key, Entry>,
    /// Records that are not dead letters, by when they are visible.
    ready: BTreeSet<(i64, Key)>,
    /// Dead letters, by when they are visible.
    dead: BTreeSet<(i64, Key)>,
    /// The data of records taken from the stream and not yet received.
    taken: HashMap<Key, Record>,
    reader: StreamReader,
    waiters: VecDeque<Waiter>,
    /// Entries changed since the last write (written, or deleted when no longer held).
    dirty: BTreeSet<Key>,
    position_dirty: bool,
    /// The daemon is stopping: receives with nothing to deliver are answered at once.
    releasing: bool,
}

/// Loads a queue's state and starts its task.
pub async fn spawn(svc: Arc<Service>, spec: Spec) -> ApiResult<Handle> {
    let (tx, rx) = mpsc::channel(1024);
    let mut actor = Actor {
        reader: StreamReader::new(svc.runtime.clone(), svc.clone(), spec.stream_id, spec.start, Default::default()),
        svc,
        spec,
        entries: BTreeMap::new(),
        ready: BTreeSet::new(),
        dead: BTreeSet::new(),
        taken: HashMap::new(),
        waiters: VecDeque::new(),
        dirty: BTreeSet::new(),
        position_dirty: false,
        releasing: false,
    };
    actor.load().await?;
    tokio::spawn(actor.run(rx));
    Ok(Handle { tx })
}

enum Event {
    Command(Option<Command>),
    Taken(ApiResult<Option<Batch>>),
    Timer,
}

impl Actor {
    /// Reads the stored state (entries and position) into memory, replacing what is there.
    async fn load(&mut self) -> ApiResult<()> {
        let store = self.svc.store.clone();
        let prefix = state_prefix(&self.spec.id);
        let rows = tokio::task::spawn_blocking(move || store.queue_scan(&prefix))
            .await
            .map_err(|e| ApiError::InternalFailure(e.to_string()))?
            .map_err(|e| ApiError::InternalFailure(e.to_string()))?;
        self.entries.clear();
        self.ready.clear();
        self.dead.clear();
        self.taken.clear();
        self.dirty.clear();
        self.position_dirty = false;
        let mut position = StreamPosition::default();
        let entry_prefix = format!("{}/e/", self.spec.id).into_bytes();
        for (k, v) in rows {
            if k == position_key(&self.spec.id) {
                position = serde_json::from_slice(&v).map_err(|e| {
                    ApiError::InternalFailure(format!("queue {} position is unreadable: {e}", self.spec.name))
                })?;
            } else if let Some(rest) = k.strip_prefix(&entry_prefix[..]) {
                let shard = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok());
                let ordinal = rest.get(4..).and_then(|b| <[u8; 8]>::try_from(b).ok());
                let (Some(shard), Some(ordinal), Some(e)) = (shard, ordinal, Entry::decode(&v)) else {
                    return Err(ApiError::InternalFailure(format!("queue {} state is unreadable", self.spec.name)));
                };
                let key = (u32::from_be_bytes(shard), u64::from_be_bytes(ordinal));
                self.insert(key, e);
            }
        }
        self.reader = StreamReader::new(
            self.svc.runtime.clone(),
            self.svc.clone(),
            self.spec.stream_id,
            self.spec.start,
            position,
        );
        // What was just read is what is stored.
        self.dirty.clear();
        Ok(())
    }

    /// Holds `e` for `key`, replacing (and unindexing) what was held before, and marks it to be
    /// written.
    fn insert(&mut self, key: Key, e: Entry) {
        if let Some(old) = self.entries.insert(key, e) {
            self.unindex(key, &old);
        }
        if e.dead {
            self.dead.insert((e.visible_at, key));
        } else {
            self.ready.insert((e.visible_at, key));
        }
        self.dirty.insert(key);
    }

    fn unindex(&mut self, key: Key, e: &Entry) {
        if e.dead {
            self.dead.remove(&(e.visible_at, key));
        } else {
            self.ready.remove(&(e.visible_at, key));
        }
    }

    fn remove(&mut self, key: Key) {
        if let Some(old) = self.entries.remove(&key) {
            self.unindex(key, &old);
        }
        self.taken.remove(&key);
        self.dirty.insert(key);
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut next_stats = tokio::time::Instant::now();
        loop {
            let now = clock(&self.svc);
            if tokio::time::Instant::now() >= next_stats {
                self.publish_stats(now);
                next_stats = tokio::time::Instant::now() + STATS_EVERY;
            }
            let timer = self.next_timer(now).min(next_stats);
            let take = self.waiters.iter().any(|w| !w.dead) && self.entries.len() < self.spec.records_max;
            let event = tokio::select! {
                c = rx.recv() => Event::Command(c),
                b = self.reader.next(TAKE_BYTES, Duration::from_secs(3600)), if take => Event::Taken(b),
                _ = tokio::time::sleep_until(timer) => Event::Timer,
            };
            let mut answers: Vec<Deferred> = Vec::new();
            let mut stop = None;
            match event {
                Event::Command(None) => return,
                Event::Command(Some(c)) => {
                    let mut next = Some(c);
                    let mut n = 0;
                    while let Some(c) = next.take() {
                        if let Command::Stop(done) = c {
                            stop = Some(done);
                            break;
                        }
                        self.handle(c, &mut answers).await;
                        n += 1;
                        if n < GROUP_MAX {
                            next = rx.try_recv().ok();
                        }
                    }
                }
                Event::Taken(Ok(Some(batch))) => self.take(batch, clock(&self.svc)),
                Event::Taken(Ok(None)) | Event::Timer => {}
                Event::Taken(Err(e)) => {
                    tracing::warn!(queue = %self.spec.name, error = %e, "reading the queue's stream");
                    for w in self.waiters.drain(..) {
                        answers.push(deferred(w.reply, Err(e.clone())));
                    }
                }
            }
            self.serve_waiters(&mut answers).await;
            self.commit(answers).await;
            if let Some(done) = stop {
                for w in self.waiters.drain(..) {
                    let _ = w.reply.send(Err(gone()));
                }
                self.svc.metrics.forget_queue(&self.spec.name);
                let _ = done.send(());
                return;
            }
        }
    }

    /// When the task must look again without a command: a waiter's end, or (with waiters) the
    /// next record to become visible.
    fn next_timer(&self, now: i64) -> tokio::time::Instant {
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let mut at = self.waiters.iter().map(|w| w.until).min().unwrap_or(far);
        if !self.waiters.is_empty() {
            let next = [&self.ready, &self.dead]
                .iter()
                .filter_map(|set| set.range((now + 1, (0, 0))..).next().map(|(t, _)| *t))
                .min();
            if let Some(t) = next {
                at = at.min(tokio::time::Instant::now() + Duration::from_millis((t - now).max(0) as u64));
            }
        }
        at
    }

    async fn handle(&mut self, c: Command, answers: &mut Vec<Deferred>) {
        match c {
            Command::Receive { dead, limit, wait, visibility_s, reply } => {
                let now = clock(&self.svc);
                match self.deliver(dead, limit, visibility_s, now).await {
                    Ok(records) if records.is_empty() && !wait.is_zero() && !self.releasing => {
                        self.waiters.push_back(Waiter {
                            dead,
                            limit,
                            visibility_s,
                            until: tokio::time::Instant::now() + wait,
                            reply,
                        })
                    }
                    result => answers.push(deferred(reply, result)),
                }
            }
            Command::Settle { action, dead, entries, reply } => {
                let now = clock(&self.svc);
                let result = self.settle(action, dead, entries, now);
                answers.push(deferred(reply, Ok(result)));
            }
            Command::Configure(settings) => self.spec.settings = settings,
            Command::Release => {
                self.releasing = true;
                for w in self.waiters.drain(..) {
                    answers.push(deferred(w.reply, Ok(Vec::new())));
                }
            }
            Command::Stop(_) => unreachable!("handled by the loop"),
        }
    }

    async fn serve_waiters(&mut self, answers: &mut Vec<Deferred>) {
        let mut kept = VecDeque::new();
        while let Some(w) = self.waiters.pop_front() {
            if w.reply.is_closed() {
                continue; // the client went away: nothing is delivered to it
            }
            let now = clock(&self.svc);
            match self.deliver(w.dead, w.limit, w.visibility_s, now).await {
                Ok(records) if records.is_empty() && tokio::time::Instant::now() < w.until => kept.push_back(w),
                result => answers.push(deferred(w.reply, result)),
            }
        }
        self.waiters = kept;
    }

    fn retention_ms(&self) -> Option<i64> {
        self.svc.stream_by_id(self.spec.stream_id).map(|m| m.retention_hours as i64 * 3_600_000)
    }

    /// Records in flight (held, and not visible until later), counted only when a receive of
    /// `limit` records could reach the bound (0 otherwise).
    fn in_flight(&self, now: i64, limit: usize) -> usize {
        if self.entries.len() + limit < self.spec.in_flight_max {
            return 0;
        }
        [&self.ready, &self.dead].iter().map(|s| s.range((now + 1, (0, 0))..).count()).sum()
    }

    /// Visible records received MaxReceiveCount times become dead letters (a receive does this
    /// as it meets them; a receive of dead letters first looks for them all).
    fn deaden(&mut self, now: i64) {
        let Some(max) = self.spec.settings.max_receive else { return };
        let due: Vec<Key> = self
            .ready
            .range(..(now + 1, (0, 0)))
            .map(|(_, k)| *k)
            .filter(|k| self.entries[k].receive_count >= max)
            .collect();
        for key in due {
            self.make_dead(key, now);
        }
    }

    /// A record becomes a dead letter, visible on the dead-letter path at once.
    fn make_dead(&mut self, key: Key, now: i64) {
        let mut e = self.entries[&key];
        e.dead = true;
        e.visible_at = now;
        self.taken.remove(&key);
        self.insert(key, e);
    }

    /// Up to `limit` visible records (dead letters when `dead`), now in flight.
    async fn deliver(
        &mut self,
        dead: bool,
        limit: usize,
        visibility_s: Option<u32>,
        now: i64,
    ) -> ApiResult<Vec<Value>> {
        let visibility_ms = visibility_s.unwrap_or(self.spec.settings.visibility_s) as i64 * 1000;
        let retention = self.retention_ms();
        if dead {
            self.deaden(now);
        }
        let mut out = Vec::new();
        let mut in_flight = self.in_flight(now, limit);
        let mut delivered: Vec<Key> = Vec::new();
        while out.len() < limit {
            if in_flight >= self.spec.in_flight_max {
                if out.is_empty() {
                    return Err(ApiError::Throttling(format!(
                        "Queue {} has {} records in flight, its limit; acknowledge records or let their \
                         visibility timeouts pass before receiving more.",
                        self.spec.name, self.spec.in_flight_max
                    )));
                }
                break;
            }
            let set = if dead { &self.dead } else { &self.ready };
            // A record delivered with visibility 0 is visible again at once: not twice in one answer.
            let Some(&(at, key)) = set.range(..(now + 1, (0, 0))).find(|(_, k)| !delivered.contains(k)) else {
                if dead || self.entries.len() >= self.spec.records_max {
                    break;
                }
                match self.reader.next(TAKE_BYTES, Duration::ZERO).await {
                    Ok(Some(batch)) => {
                        self.take(batch, now);
                        continue;
                    }
                    Ok(None) => break,
                    // What is already in this answer is delivered; the error is for the next.
                    Err(_) if !out.is_empty() => break,
                    Err(e) => return Err(e),
                }
            };
            let mut e = self.entries[&key];
            debug_assert_eq!(e.visible_at, at);
            if !dead && self.spec.settings.max_receive.is_some_and(|m| e.receive_count >= m) {
                self.make_dead(key, now);
                continue;
            }
            if retention.is_none_or(|r| e.arrival_ms < now - r) {
                self.remove(key);
                continue;
            }
            let record = match self.taken.remove(&key) {
                Some(r) => r,
                None => match self.read(key).await {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        // Trimmed from the log: past retention, no longer delivered.
                        self.remove(key);
                        continue;
                    }
                    Err(err) => {
                        // An unreadable record (a damaged log range) is tried again later and
                        // does not hold up the others.
                        tracing::error!(queue = %self.spec.name, shard = key.0, ordinal = key.1, error = %err,
                            "reading a queue's record");
                        e.visible_at = now + UNREADABLE_RETRY_MS;
                        self.insert(key, e);
                        continue;
                    }
                },
            };
            if !dead {
                e.receive_count += 1;
            }
            e.generation = e.generation.wrapping_add(1);
            if e.first_receive_ms == 0 {
                e.first_receive_ms = now;
            }
            e.visible_at = now + visibility_ms;
            self.insert(key, e);
            if visibility_ms > 0 {
                in_flight += 1;
            }
            delivered.push(key);
            out.push(json!({
                "ReceiptHandle": self.receipt(dead, key, e.generation),
                "RecordId": SeqNo::record(self.spec.stream_id, key.0, key.1).encode(),
                "PartitionKey": record.partition_key,
                "Data": base64::engine::general_purpose::STANDARD.encode(&record.data),
                "ApproximateArrivalTimestamp": epoch_seconds(record.ts_ms),
                "FirstReceiveTimestamp": epoch_seconds(e.first_receive_ms),
                "ReceiveCount": e.receive_count,
            }));
        }
        Ok(out)
    }

    /// Holds the records of a batch taken from the stream, visible at once.
    fn take(&mut self, batch: Batch, now: i64) {
        let retention = self.retention_ms();
        for r in batch.records {
            let key = (batch.shard_index, r.ordinal);
            if self.entries.contains_key(&key) || retention.is_none_or(|ms| r.ts_ms < now - ms) {
                continue;
            }
            let e = Entry {
                receive_count: 0,
                generation: 0,
                first_receive_ms: 0,
                visible_at: r.ts_ms.min(now),
                arrival_ms: r.ts_ms,
                dead: false,
            };
            self.insert(key, e);
            self.taken.insert(key, r);
        }
        self.position_dirty = true;
    }

    /// One record from the shard's log; `None` if it is no longer there.
    async fn read(&self, key: Key) -> ApiResult<Option<Record>> {
        let shard = ShardKey { stream_id: self.spec.stream_id, shard_index: key.0 };
        let mut attempt = 0;
        loop {
            match self.svc.runtime.read(shard, key.1, 1, crate::reader::DELIVERY_BYTES_MAX).await {
                Ok(r) => return Ok(r.records.into_iter().next().filter(|r| r.ordinal == key.1)),
                Err(ApiError::ProvisionedThroughputExceeded(_)) if attempt < READ_RETRIES_MAX => {
                    attempt += 1;
                    tokio::time::sleep(READ_RETRY).await;
                }
                Err(ApiError::ResourceNotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn mac(&self, body: &[u8]) -> Hmac<sha2::Sha256> {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.spec.key).expect("HMAC takes any key length");
        mac.update(self.spec.id.as_bytes());
        mac.update(body);
        mac
    }

    /// A receipt handle: what it names, and a MAC under the queue's key, so that it cannot be
    /// made up; the generation makes it stale once the record is received again.
    fn receipt(&self, dead: bool, key: Key, generation: u32) -> String {
        let mut b = Vec::with_capacity(34);
        b.push(1u8);
        b.push(dead as u8);
        b.extend_from_slice(&key.0.to_be_bytes());
        b.extend_from_slice(&key.1.to_be_bytes());
        b.extend_from_slice(&generation.to_be_bytes());
        let tag = self.mac(&b).finalize().into_bytes();
        b.extend_from_slice(&tag[..16]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn parse_receipt(&self, text: &str) -> Option<(bool, Key, u32)> {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
        if b.len() != 34 || b[0] != 1 || b[1] > 1 {
            return None;
        }
        self.mac(&b[..18]).verify_truncated_left(&b[18..]).ok()?;
        let shard = u32::from_be_bytes(b[2..6].try_into().ok()?);
        let ordinal = u64::from_be_bytes(b[6..14].try_into().ok()?);
        let generation = u32::from_be_bytes(b[14..18].try_into().ok()?);
        Some((b[1] == 1, (shard, ordinal), generation))
    }

    /// Acknowledges, changes the visibility of, or restores the records the handles name.
    fn settle(
        &mut self,
        action: Action,
        dead: bool,
        entries: Vec<(String, u32)>,
        now: i64,
    ) -> (Vec<Value>, Vec<Value>) {
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for (handle, visibility_s) in entries {
            match self.check(action, dead, &handle, now) {
                Ok(None) => ok.push(json!({"ReceiptHandle": handle})),
                Ok(Some(key)) => {
                    let mut e = self.entries[&key];
                    match action {
                        Action::Acknowledge => self.remove(key),
                        Action::Visibility => {
                            e.visible_at = now + visibility_s as i64 * 1000;
                            self.insert(key, e);
                        }
                        Action::Restore => {
                            e.dead = false;
                            e.receive_count = 0;
                            e.visible_at = now;
                            self.insert(key, e);
                        }
                    }
                    ok.push(json!({"ReceiptHandle": handle}));
                }
                Err((code, why)) => failed.push(json!({
                    "ReceiptHandle": handle,
                    "ErrorCode": code,
                    "ErrorMessage": why,
                })),
            }
        }
        (ok, failed)
    }

    /// The record a handle names, if the handle is still good: for an acknowledgement, until the
    /// record is received again (or changes path); for a visibility change or a restore, while
    /// it is in flight. `Ok(None)`: an acknowledgement of a record the queue no longer holds
    /// (acknowledged already), which succeeds. A failure is its ErrorCode and message.
    fn check(&self, action: Action, dead: bool, handle: &str, now: i64) -> Result<Option<Key>, (&'static str, String)> {
        let Some((issued_dead, key, generation)) = self.parse_receipt(handle) else {
            return Err(invalid(format!("The receipt handle {handle} is not valid for queue {}.", self.spec.name)));
        };
        if issued_dead != dead {
            return Err(invalid(if dead {
                "The receipt handle was issued by ReceiveQueueRecords, not ReceiveDeadLetterQueueRecords.".into()
            } else {
                "The receipt handle was issued by ReceiveDeadLetterQueueRecords, not ReceiveQueueRecords.".into()
            }));
        }
        let Some(e) = self.entries.get(&key) else {
            return if action == Action::Acknowledge {
                Ok(None)
            } else {
                Err((
                    "ResourceNotFoundException",
                    "The record is no longer in the queue: it was acknowledged, or it passed the stream's retention \
                     period."
                        .into(),
                ))
            };
        };
        if e.generation != generation {
            return Err(invalid("The receipt handle has expired: the record was received again since.".into()));
        }
        // Received MaxReceiveCount times and out of time: a dead letter, even before a receive
        // has met it.
        let lapsed = self.spec.settings.max_receive.is_some_and(|m| e.receive_count >= m) && e.visible_at <= now;
        if e.dead != dead || (!e.dead && lapsed) {
            return Err(invalid(if dead {
                "The receipt handle has expired: the dead-letter record was restored.".into()
            } else {
                "The receipt handle has expired: the record became a dead-letter record.".into()
            }));
        }
        if action != Action::Acknowledge && e.visible_at <= now {
            return Err(invalid("The receipt handle has expired: the record's visibility timeout has passed.".into()));
        }
        Ok(Some(key))
    }

    /// Writes what changed since the last write in one synced batch, then sends the answers;
    /// if the write fails, they get the error and the state is read back from the store.
    async fn commit(&mut self, answers: Vec<Deferred>) {
        let mut ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(self.dirty.len() + 1);
        for key in &self.dirty {
            ops.push((entry_key(&self.spec.id, *key), self.entries.get(key).map(Entry::encode)));
        }
        if self.position_dirty {
            match serde_json::to_vec(self.reader.position()) {
                Ok(p) => ops.push((position_key(&self.spec.id), Some(p))),
                Err(e) => tracing::error!(queue = %self.spec.name, error = %e, "encoding the queue's position"),
            }
        }
        let mut failed = None;
        if !ops.is_empty() {
            let store = self.svc.store.clone();
            let written = tokio::task::spawn_blocking(move || store.queue_write(&ops))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(e) = written {
                tracing::error!(queue = %self.spec.name, error = %e, "writing queue state");
                failed = Some(ApiError::InternalFailure(format!("The queue's state could not be written: {e}")));
            }
        }
        for a in answers {
            a(failed.clone());
        }
        if failed.is_none() {
            self.dirty.clear();
            self.position_dirty = false;
        } else if let Err(e) = self.load().await {
            // The changes stay marked, and are written with the next commit.
            tracing::error!(queue = %self.spec.name, error = %e, "reading queue state back");
        }
    }

    fn publish_stats(&self, now: i64) {
        let visible = self.ready.range(..(now + 1, (0, 0))).count() as u64;
        let dead_visible = self.dead.range(..(now + 1, (0, 0))).count() as u64;
        let in_flight = (self.entries.len() as u64).saturating_sub(visible + dead_visible);
        let oldest = self.entries.values().map(|e| e.arrival_ms).min();
        let backlog = self.reader.backlog();
        self.svc.metrics.queue(&self.spec.name, |g| {
            g.visible = visible + backlog;
            g.in_flight = in_flight;
            g.dead_letters = self.dead.len() as u64;
            g.oldest_unacknowledged_ms = oldest.unwrap_or(0);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let e = Entry {
            receive_count: 3,
            generation: 7,
            first_receive_ms: 1_700_000_000_000,
            visible_at: 1_700_000_030_000,
            arrival_ms: 1_699_999_999_000,
            dead: true,
        };
        assert_eq!(Entry::decode(&e.encode()), Some(e));
        assert_eq!(Entry::decode(&e.encode()[1..]), None);
    }
}
