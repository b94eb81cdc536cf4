//! The rocksdb store: stream metadata and each shard's sparse sequence/time index.
//!
//! Column families:
//! - `streams`: stream name → [`StreamMeta`] as JSON. Written with a synced WAL (control plane).
//! - `seqidx`: (stream id u64 BE, shard index u32 BE, ordinal u64 BE) → (segment base u64 BE,
//!   offset u64 BE, arrival ms i64 BE). Arrival times never decrease within a shard, so this one
//!   index answers both "where is ordinal N" and "where do records from time T start" by binary
//!   search. Written off the core threads by the index writer thread without syncing: an entry
//!   that is lost only makes recovery scan a little further.
//! - `meta`: daemon-wide values (the next stream id, the on-disk format version).
//! - `queues`: each Kinesis queue's delivery state (`crate::queues`), keyed by the queue's id:
//!   one small entry per record the queue holds, and the queue's stream position. Written
//!   synced, in one batch per group of answers.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

use crate::log::IndexEntry;
use crate::stream::meta::StreamMeta;

const CF_STREAMS: &str = "streams";
const CF_SEQIDX: &str = "seqidx";
const CF_META: &str = "meta";
/// A stored key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Items of the DynamoDB-compatible tables, keyed by table id and encoded primary key.
const CF_TABLES: &str = "tables";
/// Kinesis queues' delivery state.
const CF_QUEUES: &str = "queues";
const KEY_NEXT_STREAM_ID: &[u8] = b"next_stream_id";
/// Index operations the writer thread batches into one rocksdb write.
const INDEX_BATCH_OPS_MAX: usize = 4096;
/// Index operations queued before a core worker blocks on the writer.
pub const INDEX_QUEUE_DEPTH: usize = 65_536;

#[derive(Debug, thiserror::Error)]
#[error("metadata store: {0}")]
pub struct StoreError(String);

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError(e.into_string())
    }
}

#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

/// What the index writer thread is asked to do.
pub enum IndexOp {
    Put {
        stream_id: u64,
        shard_index: u32,
        entries: Vec<IndexEntry>,
    },
    Delete {
        stream_id: u64,
        shard_index: u32,
        entries: Vec<IndexEntry>,
    },
    /// Deletes every entry of the shard below `ordinal`.
    DeleteBelow {
        stream_id: u64,
        shard_index: u32,
        ordinal: u64,
    },
    /// Replies once everything sent before it is written.
    Flush(crossbeam_channel::Sender<()>),
    /// Writes what is queued before it and ends the writer thread.
    Stop,
}

fn index_key(stream_id: u64, shard_index: u32, ordinal: u64) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[0..8].copy_from_slice(&stream_id.to_be_bytes());
    k[8..12].copy_from_slice(&shard_index.to_be_bytes());
    k[12..20].copy_from_slice(&ordinal.to_be_bytes());
    k
}

fn index_value(e: &IndexEntry) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[0..8].copy_from_slice(&e.segment_base.to_be_bytes());
    v[8..16].copy_from_slice(&e.offset.to_be_bytes());
    v[16..24].copy_from_slice(&e.ts_ms.to_be_bytes());
    v
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        let cfs = [CF_STREAMS, CF_SEQIDX, CF_META, CF_TABLES, CF_QUEUES]
            .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Store { db: Arc::new(db) })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    fn synced() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }

    pub fn load_streams(&self) -> Result<Vec<StreamMeta>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_STREAMS), rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            let meta: StreamMeta = serde_json::from_slice(&v).map_err(|e| {
                StoreError(format!("stream record {:?} does not decode: {e}", String::from_utf8_lossy(&k)))
            })?;
            out.push(meta);
        }
        Ok(out)
    }

    pub fn put_stream(&self, meta: &StreamMeta) -> Result<(), StoreError> {
        let v = serde_json::to_vec(meta).map_err(|e| StoreError(e.to_string()))?;
        self.db.put_cf_opt(self.cf(CF_STREAMS), meta.name.as_bytes(), v, &Self::synced())?;
        Ok(())
    }

    pub fn delete_stream(&self, meta: &StreamMeta) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_STREAMS), meta.name.as_bytes());
        let from = index_key(meta.id, 0, 0);
        let to = index_key(meta.id + 1, 0, 0);
        batch.delete_range_cf(self.cf(CF_SEQIDX), from, to);
        self.db.write_opt(batch, &Self::synced())?;
        Ok(())
    }

    /// Allocates a stream id, never reused.
    pub fn allocate_stream_id(&self) -> Result<u64, StoreError> {
        let cf = self.cf(CF_META);
        let current = match self.db.get_cf(cf, KEY_NEXT_STREAM_ID)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v[..].try_into().expect("length checked")),
            Some(_) => return Err(StoreError("next_stream_id is damaged".into())),
            None => 1,
        };
        self.db.put_cf_opt(cf, KEY_NEXT_STREAM_ID, (current + 1).to_be_bytes(), &Self::synced())?;
        Ok(current)
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_META), key.as_bytes())?)
    }

    /// An item of a DynamoDB-compatible table.
    pub fn item_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_TABLES), key)?)
    }

    /// Writes (`Some`) or deletes (`None`) an item, synced: durable before it is answered.
    pub fn item_put(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        match value {
            Some(v) => self.db.put_cf_opt(self.cf(CF_TABLES), key, v, &Self::synced())?,
            None => self.db.delete_cf_opt(self.cf(CF_TABLES), key, &Self::synced())?,
        }
        Ok(())
    }

    /// Up to `limit` items whose keys start with `prefix`, after `after` (exclusive), in key order.
    pub fn item_scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        let start = after.map(|a| a.to_vec()).unwrap_or_else(|| prefix.to_vec());
        let mode = rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_TABLES), mode) {
            let (k, v) = item?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            if after.is_some_and(|a| &k[..] == a) {
                continue;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Deletes every item whose key starts with `prefix` (a dropped table), synced.
    pub fn item_delete_prefix(&self, prefix: &[u8]) -> Result<(), StoreError> {
        self.delete_prefix(CF_TABLES, prefix)
    }

    /// Deletes every key of a column family that starts with `prefix`, synced.
    fn delete_prefix(&self, cf: &str, prefix: &[u8]) -> Result<(), StoreError> {
        let mut end = prefix.to_vec();
        end.push(0xff);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(cf), prefix, &end[..]);
        self.db.write_opt(batch, &Self::synced())?;
        Ok(())
    }

    /// Every key of a column family that starts with `prefix`, in order, with its value.
    fn scan(&self, cf: &str, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Writes (`Some`) and deletes (`None`) queue state in one synced batch.
    pub fn queue_write(&self, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let cf = self.cf(CF_QUEUES);
        let mut batch = WriteBatch::default();
        for (k, v) in ops {
            match v {
                Some(v) => batch.put_cf(cf, k, v),
                None => batch.delete_cf(cf, k),
            }
        }
        self.db.write_opt(batch, &Self::synced())?;
        Ok(())
    }

    /// Every queue-state key starting with `prefix`, in key order, with its value.
    pub fn queue_scan(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.scan(CF_QUEUES, prefix)
    }

    /// Deletes every queue-state key starting with `prefix` (a deleted queue), synced.
    pub fn queue_delete_prefix(&self, prefix: &[u8]) -> Result<(), StoreError> {
        self.delete_prefix(CF_QUEUES, prefix)
    }

    /// Metadata keys starting with `prefix`, in order, with their values.
    pub fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = self.scan(CF_META, prefix.as_bytes())?;
        Ok(rows.into_iter().map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v)).collect())
    }

    /// Removes a metadata key (a synced write).
    pub fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        self.db.delete_cf_opt(self.cf(CF_META), key.as_bytes(), &Self::synced())?;
        Ok(())
    }

    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.db.put_cf_opt(self.cf(CF_META), key.as_bytes(), value, &Self::synced())?;
        Ok(())
    }

    pub fn load_index(&self, stream_id: u64, shard_index: u32) -> Result<Vec<IndexEntry>, StoreError> {
        let from = index_key(stream_id, shard_index, 0);
        let mut out = Vec::new();
        let iter =
            self.db.iterator_cf(self.cf(CF_SEQIDX), rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if k.len() != 20 || k[0..12] != from[0..12] {
                break;
            }
            if v.len() != 24 {
                return Err(StoreError(format!("index entry of shard {shard_index} is damaged")));
            }
            let be = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("length checked"));
            out.push(IndexEntry {
                ordinal: be(&k[12..20]),
                segment_base: be(&v[0..8]),
                offset: be(&v[8..16]),
                ts_ms: be(&v[16..24]) as i64,
            });
        }
        Ok(out)
    }

    /// Starts the index writer thread: index updates from core workers arrive over a bounded
    /// channel and are written in batches, so a core worker waits on rocksdb only if the writer
    /// falls [`INDEX_QUEUE_DEPTH`] operations behind.
    pub fn spawn_index_writer(&self) -> (Sender<IndexOp>, JoinHandle<()>) {
        let (tx, rx) = crossbeam_channel::bounded(INDEX_QUEUE_DEPTH);
        let store = self.clone();
        let handle = std::thread::Builder::new()
            .name("sluice-index".into())
            .spawn(move || store.run_index_writer(rx))
            .expect("spawning the index writer thread");
        (tx, handle)
    }

    fn run_index_writer(&self, rx: Receiver<IndexOp>) {
        let cf = self.cf(CF_SEQIDX);
        let mut stopping = false;
        while !stopping {
            let Ok(first) = rx.recv() else { break };
            let mut batch = WriteBatch::default();
            let mut flushes = Vec::new();
            let mut op = Some(first);
            let mut n = 0;
            while let Some(o) = op.take() {
                match o {
                    IndexOp::Put { stream_id, shard_index, entries } => {
                        for e in &entries {
                            batch.put_cf(cf, index_key(stream_id, shard_index, e.ordinal), index_value(e));
                        }
                    }
                    IndexOp::Delete { stream_id, shard_index, entries } => {
                        for e in &entries {
                            batch.delete_cf(cf, index_key(stream_id, shard_index, e.ordinal));
                        }
                    }
                    IndexOp::DeleteBelow { stream_id, shard_index, ordinal } => {
                        batch.delete_range_cf(
                            cf,
                            index_key(stream_id, shard_index, 0),
                            index_key(stream_id, shard_index, ordinal),
                        );
                    }
                    IndexOp::Flush(done) => flushes.push(done),
                    IndexOp::Stop => stopping = true,
                }
                n += 1;
                if n < INDEX_BATCH_OPS_MAX && !stopping {
                    op = rx.try_recv().ok();
                }
            }
            if let Err(e) = self.db.write(batch) {
                tracing::error!(error = %e, "index write failed; recovery will rescan from older entries");
            }
            for f in flushes {
                let _ = f.send(());
            }
        }
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::meta::StreamMode;

    #[test]
    fn streams_and_index_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.allocate_stream_id().unwrap(), 1);
            assert_eq!(store.allocate_stream_id().unwrap(), 2);
            store.put_stream(&StreamMeta::new("s".into(), 2, StreamMode::Provisioned, 2, 5)).unwrap();
            let (tx, handle) = store.spawn_index_writer();
            let e = |o| IndexEntry { ordinal: o, segment_base: 0, offset: 4096 + o, ts_ms: o as i64 };
            tx.send(IndexOp::Put { stream_id: 2, shard_index: 1, entries: vec![e(0), e(10), e(20)] }).unwrap();
            tx.send(IndexOp::Put { stream_id: 2, shard_index: 0, entries: vec![e(5)] }).unwrap();
            tx.send(IndexOp::DeleteBelow { stream_id: 2, shard_index: 1, ordinal: 10 }).unwrap();
            drop(tx);
            handle.join().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.allocate_stream_id().unwrap(), 3);
        let streams = store.load_streams().unwrap();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].shards.len(), 2);
        let idx = store.load_index(2, 1).unwrap();
        assert_eq!(idx.iter().map(|e| e.ordinal).collect::<Vec<_>>(), vec![10, 20]);
        assert_eq!(store.load_index(2, 0).unwrap().len(), 1);
        store.delete_stream(&streams[0]).unwrap();
        assert!(store.load_index(2, 1).unwrap().is_empty());
        assert!(store.load_streams().unwrap().is_empty());
    }
}
