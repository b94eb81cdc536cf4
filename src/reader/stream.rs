//! Reading a whole stream across reshards, in lineage order, from a durable position.
//!
//! A shard becomes readable once every parent it has is finished (read to its end after it was
//! closed) or gone from the metadata (expired). Children of a finished shard start at their first
//! record, so each partition key's records come out in order across splits and merges, as the
//! KCL reads them. Shards that have no parents start at the reader's initial position
//! (TRIM_HORIZON, LATEST, a timestamp).
//!
//! The position ([`StreamPosition`]) is small and serializable: per shard being read, the next
//! ordinal, and the set of finished shards. [`save`] writes it to the metadata store with a synced
//! write (a durability point), [`load`] reads it back, so a consumer inside the daemon that saves
//! its position only after its own output is durable neither loses nor skips records after
//! `kill -9`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ShardCursor;
use crate::index::Store;
use crate::log::Record;
use crate::protocol::error::ApiError;
use crate::runtime::{Position, Runtime, ShardKey};
use crate::stream::meta::StreamMeta;

/// Where the stream's metadata comes from: the daemon's registry, or a fixed copy in tests.
pub trait StreamSource: Send + Sync {
    fn stream_by_id(&self, id: u64) -> Option<Arc<StreamMeta>>;
}

/// A reader's durable position in one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The next ordinal of each shard that has been started and not finished.
    pub next: BTreeMap<u32, u64>,
    /// Shards read to their end after they closed.
    pub finished: BTreeSet<u32>,
}

/// What one call to [`StreamReader::next`] returns.
#[derive(Debug)]
pub struct Batch {
    pub shard_index: u32,
    pub records: Vec<Record>,
    /// Milliseconds between the last record returned and the shard's tip.
    pub millis_behind: u64,
}

pub struct StreamReader {
    runtime: Arc<Runtime>,
    source: Arc<dyn StreamSource>,
    stream_id: u64,
    /// Where shards without parents start when the position does not name them.
    start: Position,
    position: StreamPosition,
    cursors: BTreeMap<u32, ShardCursor>,
    /// The shard served last, so that busy shards take turns.
    last: Option<u32>,
}

impl StreamReader {
    pub fn new(
        runtime: Arc<Runtime>,
        source: Arc<dyn StreamSource>,
        stream_id: u64,
        start: Position,
        position: StreamPosition,
    ) -> StreamReader {
        StreamReader { runtime, source, stream_id, start, position, cursors: BTreeMap::new(), last: None }
    }

    /// The position after everything returned so far.
    pub fn position(&self) -> &StreamPosition {
        &self.position
    }

    /// Records in the shards being read that are past the position (shards not yet readable,
    /// such as children waiting on their parents, are not counted).
    pub fn backlog(&self) -> u64 {
        self.cursors.values().map(|c| c.pending()).sum()
    }

    /// Opens cursors on the shards that have become readable and drops the finished ones.
    async fn refresh(&mut self, meta: &StreamMeta) -> Result<(), ApiError> {
        for s in &meta.shards {
            if self.position.finished.contains(&s.index) || self.cursors.contains_key(&s.index) {
                continue;
            }
            let parents_done = s
                .parent
                .iter()
                .chain(s.adjacent_parent.iter())
                .all(|p| self.position.finished.contains(p) || meta.shard(*p).is_none());
            if !parents_done {
                continue;
            }
            // A child starts at its first record, or, for a reader from a time, at that time: a
            // reader that starts after a reshard does not read the children's earlier records.
            let from = match (self.position.next.get(&s.index), self.start) {
                (Some(&ordinal), _) => Position::AtOrdinal(ordinal),
                (None, Position::AtTimestamp(t)) => Position::AtTimestamp(t),
                (None, _) if s.parent.is_some() => Position::TrimHorizon,
                (None, start) => start,
            };
            let key = ShardKey { stream_id: self.stream_id, shard_index: s.index };
            let cursor = ShardCursor::open(self.runtime.clone(), key, from).await?;
            self.position.next.insert(s.index, cursor.position);
            self.cursors.insert(s.index, cursor);
        }
        Ok(())
    }

    /// Waits up to `wait` for records in any readable shard and returns those of one shard (at
    /// most `max_bytes`, about). `None` means nothing arrived in time. The position moves past
    /// what is returned; a shard read to its end after it closed is marked finished and its
    /// children become readable.
    pub async fn next(&mut self, max_bytes: usize, wait: Duration) -> Result<Option<Batch>, ApiError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let meta = self.source.stream_by_id(self.stream_id).ok_or_else(|| {
                ApiError::ResourceNotFound(format!("Stream with id {} no longer exists.", self.stream_id))
            })?;
            self.refresh(&meta).await?;
            // Shards in turn, starting after the one served last.
            let mut order: Vec<u32> = self.cursors.keys().copied().collect();
            if let Some(last) = self.last {
                let first = order.iter().position(|&i| i > last).unwrap_or(0);
                order.rotate_left(first);
            }
            let mut finished_any = false;
            for index in order {
                let cursor = self.cursors.get_mut(&index).expect("listed above");
                let d = match cursor.next(max_bytes, Duration::ZERO).await {
                    // A shard removed from the metadata (expired) while it was being read.
                    Err(ApiError::ResourceNotFound(_)) if meta.shard(index).is_none() => {
                        self.cursors.remove(&index);
                        self.position.next.remove(&index);
                        self.position.finished.insert(index);
                        finished_any = true;
                        continue;
                    }
                    other => other?,
                };
                self.position.next.insert(index, cursor.position);
                if d.ended {
                    self.cursors.remove(&index);
                    self.position.next.remove(&index);
                    self.position.finished.insert(index);
                    finished_any = true;
                }
                if !d.records.is_empty() {
                    self.last = Some(index);
                    return Ok(Some(Batch { shard_index: index, records: d.records, millis_behind: d.millis_behind }));
                }
            }
            if finished_any {
                continue;
            }
            // Nothing ready: wait for a commit (or a close) on any shard being read, or a reshard.
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let step = (deadline - now).min(METADATA_RECHECK);
            let mut waits: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> =
                self.cursors.values_mut().map(|c| Box::pin(c.changed()) as Pin<Box<_>>).collect();
            let any = std::future::poll_fn(|cx| {
                for w in waits.iter_mut() {
                    if w.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(());
                    }
                }
                Poll::Pending
            });
            let _ = tokio::time::timeout(step, any).await;
        }
    }
}

/// How often a reader with nothing to read looks at the metadata again (a reshard adds shards
/// that no tip announces).
const METADATA_RECHECK: Duration = Duration::from_millis(200);

/// Saves a reader's position under `name` with a synced write.
pub fn save(store: &Store, name: &str, position: &StreamPosition) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(position).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
    store.put_meta(&checkpoint_key(name), &bytes).map_err(|e| ApiError::InternalFailure(e.to_string()))
}

/// The position saved under `name`, if any.
pub fn load(store: &Store, name: &str) -> Result<Option<StreamPosition>, ApiError> {
    let Some(bytes) = store.get_meta(&checkpoint_key(name)).map_err(|e| ApiError::InternalFailure(e.to_string()))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::InternalFailure(format!("reader checkpoint {name} is unreadable: {e}")))
}

fn checkpoint_key(name: &str) -> String {
    format!("reader/{name}")
}
