//! The daemon's state behind the API: configuration, the stream registry (mirrored in rocksdb),
//! the core workers and metrics. Start-up reads as a list in [`Service::start`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use anyhow::Context;

use crate::config::Config;
use crate::index::{IndexOp, Store};
use crate::log::segment::FORMAT_VERSION;
use crate::metrics::Metrics;
use crate::protocol::error::{ApiError, ApiResult};
use crate::runtime::{Runtime, ShardKey};
use crate::stream::meta::{StreamMeta, StreamStatus};
use crate::time::now_ms;

const META_FORMAT_VERSION: &str = "format_version";

pub struct Service {
    pub cfg: Config,
    /// Held for the life of the daemon: one process per data directory.
    _lock: DataDirLock,
    pub store: Store,
    pub runtime: Arc<Runtime>,
    pub metrics: Metrics,
    /// Live enhanced fan-out subscriptions, one per consumer and shard.
    pub subscriptions: Arc<crate::reader::leases::Subscriptions>,
    /// AWS's per-shard throughput limits, when `[limits] enforce = true`.
    pub limits: Option<crate::limits::ShardLimits>,
    streams: RwLock<BTreeMap<String, Arc<StreamMeta>>>,
    /// Names of the streams deleted since start, by id, for the messages about their iterators
    /// (which live five minutes).
    deleted: RwLock<std::collections::HashMap<u64, String>>,
    /// Serializes control-plane changes (create, delete, retention, tags, ...).
    pub control: tokio::sync::Mutex<()>,
    index_tx: crossbeam_channel::Sender<IndexOp>,
    index_thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Service {
    /// Opens the data directory, recovers every shard and returns a service ready to serve.
    pub async fn start(cfg: Config) -> anyhow::Result<Arc<Service>> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
        let lock = DataDirLock::acquire(&cfg.data_dir)?;
        let store = Store::open(&cfg.data_dir.join("meta")).context("opening the metadata store")?;
        check_format_version(&store)?;
        let key_path = cfg.encryption.master_key_file.clone().unwrap_or_else(|| cfg.data_dir.join("master.key"));
        let ring = crate::keys::KeyRing::load_or_create(&key_path)
            .with_context(|| format!("loading the master key {}", key_path.display()))?;
        // A data directory with encrypted streams only starts with the master key they were
        // written under: a missing or replaced key file must not pass for a fresh one.
        if let Some(recorded) = store.get_meta(crate::keys::FINGERPRINT_META_KEY)? {
            if recorded.as_slice() != ring.fingerprint() {
                anyhow::bail!(
                    "the master key at {} is not the one this data directory's encrypted streams were written with; refusing to start (restore that key file, or set [encryption] master_key_file to it)",
                    key_path.display()
                );
            }
        }
        let fingerprint = ring.fingerprint();
        if crate::keys::install(ring).fingerprint() != fingerprint {
            anyhow::bail!("another master key is already in use in this process");
        }
        // Acknowledged group commits in the write-ahead logs go to their segments before any
        // shard is recovered.
        let replayed = crate::log::wal::replay(&cfg.data_dir).context("replaying the write-ahead logs")?;
        if replayed.files > 0 {
            tracing::info!(
                files = replayed.files,
                writes = replayed.writes,
                skipped = replayed.skipped,
                "write-ahead logs replayed"
            );
        }
        let (index_tx, index_thread) = store.spawn_index_writer();
        let runtime = Runtime::start(&cfg, index_tx.clone()).context("starting core workers")?;
        let limits = cfg.limits.enforce.then(|| crate::limits::ShardLimits::new(cfg.limits.clone()));
        let svc = Arc::new(Service {
            cfg,
            _lock: lock,
            store,
            runtime: Arc::new(runtime),
            metrics: Metrics::default(),
            subscriptions: Arc::default(),
            limits,
            streams: RwLock::new(BTreeMap::new()),
            deleted: RwLock::default(),
            control: tokio::sync::Mutex::new(()),
            index_tx,
            index_thread: std::sync::Mutex::new(Some(index_thread)),
        });
        svc.recover().await?;
        Ok(svc)
    }

    async fn recover(self: &Arc<Self>) -> anyhow::Result<()> {
        let streams = self.store.load_streams().context("loading streams")?;
        let started = std::time::Instant::now();
        let (mut shards, mut bytes) = (0usize, 0u64);
        for mut meta in streams {
            if meta.status == StreamStatus::Deleting {
                self.finish_delete(&meta)
                    .await
                    .map_err(|e| anyhow::anyhow!("finishing deletion of {}: {e}", meta.name))?;
                continue;
            }
            for shard in &meta.shards {
                let key = ShardKey { stream_id: meta.id, shard_index: shard.index };
                let index = self.store.load_index(meta.id, shard.index)?;
                let report = self
                    .runtime
                    .open(key, self.shard_dir(key), index, meta.retention_hours, shard.end_ordinal.is_some())
                    .await
                    .map_err(|e| anyhow::anyhow!("recovering stream {} shard {}: {e}", meta.name, shard.index))?;
                if meta.encryption.is_some() && shard.end_ordinal.is_none() {
                    self.runtime
                        .set_encryption(key, meta.encryption.clone())
                        .await
                        .map_err(|e| anyhow::anyhow!("stream {} shard {}: {e}", meta.name, shard.index))?;
                }
                shards += 1;
                bytes += report.bytes_verified;
                if let Some(t) = &report.torn_tail {
                    tracing::warn!(stream = %meta.name, shard = %shard.shard_id(), segment = t.segment_base,
                        offset = t.offset, dropped_bytes = t.dropped_bytes, reason = %t.reason,
                        "recovery dropped a torn tail (never acknowledged)");
                }
                for d in &report.damage {
                    tracing::error!(stream = %meta.name, shard = %shard.shard_id(), damage = %d, "log damage found");
                }
            }
            // Status changes that were waiting on a timer when the daemon stopped happen now.
            let pending = meta.status == StreamStatus::Creating
                || meta.status == StreamStatus::Updating
                || meta.consumers.iter().any(|c| c.status != crate::stream::meta::ConsumerStatus::Active);
            if pending || meta.previous_layout.is_some() {
                meta.status = StreamStatus::Active;
                meta.previous_layout = None;
                meta.consumers.retain(|c| c.status != crate::stream::meta::ConsumerStatus::Deleting);
                for c in &mut meta.consumers {
                    c.status = crate::stream::meta::ConsumerStatus::Active;
                }
                self.store.put_stream(&meta)?;
            }
            self.streams_mut().insert(meta.name.clone(), Arc::new(meta));
        }
        tracing::info!(
            streams = self.streams_read().len(),
            shards,
            bytes_verified = bytes,
            took_ms = started.elapsed().as_millis() as u64,
            "recovery complete"
        );
        Ok(())
    }

    pub fn shard_dir(&self, key: ShardKey) -> PathBuf {
        crate::log::wal::shard_dir(&self.cfg.data_dir, key.stream_id, key.shard_index)
    }

    fn streams_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<StreamMeta>>> {
        self.streams.read().unwrap_or_else(|p| p.into_inner())
    }

    fn streams_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<StreamMeta>>> {
        self.streams.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn all_streams(&self) -> Vec<Arc<StreamMeta>> {
        self.streams_read().values().cloned().collect()
    }

    /// The streams clients see (not the internal ones services keep, such as DirectPut delivery
    /// streams' storage): what ListStreams lists and the account's limits count.
    pub fn client_streams(&self) -> Vec<Arc<StreamMeta>> {
        self.streams_read().values().filter(|s| !crate::stream::meta::is_internal_name(&s.name)).cloned().collect()
    }

    pub fn not_found(&self, name: &str) -> ApiError {
        let (account, name) = self.account_and_name(name);
        ApiError::ResourceNotFound(format!("Stream {name} under account {account} not found."))
    }

    /// The account and the name of a stream named `name` inside the daemon
    /// ([`crate::stream::meta::qualified`]).
    pub fn account_and_name<'a>(&'a self, name: &'a str) -> (&'a str, &'a str) {
        let (account, name) = crate::stream::meta::split_qualified(name);
        (account.unwrap_or(&self.cfg.account_id), name)
    }

    /// The account an ARN's account field means: itself when it is the daemon's or a key's
    /// (`[[auth.keys]] account_id`), the daemon's otherwise. ARNs copied from AWS's examples name
    /// accounts no key has (`123456789012`), and mean the daemon's streams, as they did before
    /// keys had accounts.
    pub fn effective_account<'a>(&'a self, account: &'a str) -> &'a str {
        let known = account == self.cfg.account_id
            || self.cfg.auth.keys.iter().any(|k| k.account_id.as_deref() == Some(account));
        if known {
            account
        } else {
            &self.cfg.account_id
        }
    }

    /// The name inside the daemon of the stream a stream ARN names, in the ARN's account
    /// ([`Service::effective_account`]).
    /// An ARN whose name is not a stream name (a daemon's internal `~` stream, say) names none.
    pub fn stream_of_arn(&self, arn: &str) -> Option<String> {
        let name = crate::stream::meta::stream_name_from_arn(arn).filter(|n| validate_stream_name(n).is_ok())?;
        let account = self.effective_account(crate::stream::meta::arn_account(arn)?);
        Some(crate::stream::meta::qualified(account, &self.cfg.account_id, name))
    }

    /// The stream (its name inside the daemon), consumer name and creation time a consumer ARN
    /// names.
    pub fn consumer_of_arn<'a>(&self, arn: &'a str) -> Option<(String, &'a str, i64)> {
        let (stream, consumer, epoch) = crate::stream::meta::parse_consumer_arn(arn)?;
        validate_stream_name(stream).ok()?;
        let account = self.effective_account(crate::stream::meta::arn_account(arn)?);
        Some((crate::stream::meta::qualified(account, &self.cfg.account_id, stream), consumer, epoch))
    }

    /// The one spelling of a stream or consumer ARN: its owner's account as the daemon reads it,
    /// a consumer's registered creation time. Other ARNs as given.
    pub fn canonical_arn(&self, arn: &str) -> String {
        let region = &self.cfg.region;
        let daemon = &self.cfg.account_id;
        if let Some((stream, consumer, epoch)) = self.consumer_of_arn(arn) {
            let stream_arn = crate::stream::meta::stream_arn(region, daemon, &stream);
            return match self
                .stream(&stream)
                .ok()
                .and_then(|m| m.consumers.iter().find(|c| c.name == consumer).cloned())
            {
                Some(c) => c.arn(&stream_arn),
                None => format!("{stream_arn}/consumer/{consumer}:{epoch}"),
            };
        }
        match self.stream_of_arn(arn) {
            Some(stream) => crate::stream::meta::stream_arn(region, daemon, &stream),
            None => arn.to_owned(),
        }
    }

    /// AWS's ResourceInUseException for a change to a stream that is not ACTIVE.
    pub fn not_active(&self, meta: &StreamMeta) -> ApiError {
        let (account, name) = self.account_and_name(&meta.name);
        ApiError::ResourceInUse(format!(
            "Stream {name} under account {account} not ACTIVE, instead in state {}",
            meta.status.as_str()
        ))
    }

    /// The stream named by `StreamName` or `StreamARN` (either may be given; if both, they agree).
    pub fn resolve(&self, name: Option<&str>, arn: Option<&str>) -> ApiResult<Arc<StreamMeta>> {
        let name = self.resolve_name(name, arn)?;
        self.stream(&name)
    }

    pub fn resolve_name(&self, name: Option<&str>, arn: Option<&str>) -> ApiResult<String> {
        let from_arn = match arn {
            Some(a) => Some(self.stream_of_arn(a).ok_or_else(|| {
                ApiError::validation(
                    a,
                    "streamARN",
                    "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
                )
            })?),
            None => None,
        };
        match (name, from_arn) {
            (Some(n), Some(a)) if n != a => Err(ApiError::InvalidArgument(format!(
                "StreamName {n} and StreamARN {} do not name the same stream.",
                arn.unwrap_or_default()
            ))),
            (Some(n), _) => {
                validate_stream_name(n)?;
                Ok(n.to_owned())
            }
            (None, Some(a)) => Ok(a),
            (None, None) => Err(ApiError::InvalidArgument("Either StreamName or StreamARN should be provided.".into())),
        }
    }

    pub fn stream(&self, name: &str) -> ApiResult<Arc<StreamMeta>> {
        self.streams_read().get(name).cloned().ok_or_else(|| self.not_found(name))
    }

    /// A stream that accepts data: ACTIVE or UPDATING.
    pub fn writable(&self, meta: &StreamMeta) -> ApiResult<()> {
        match meta.status {
            StreamStatus::Active | StreamStatus::Updating => Ok(()),
            _ => Err(self.not_found(&meta.name)),
        }
    }

    pub fn stream_by_id(&self, id: u64) -> Option<Arc<StreamMeta>> {
        self.streams_read().values().find(|m| m.id == id).cloned()
    }

    pub fn arn(&self, meta: &StreamMeta) -> String {
        meta.arn(&self.cfg.region, &self.cfg.account_id)
    }

    /// Persists `meta` and makes it current.
    pub async fn save(&self, meta: StreamMeta) -> ApiResult<Arc<StreamMeta>> {
        let store = self.store.clone();
        let m = meta.clone();
        tokio::task::spawn_blocking(move || store.put_stream(&m))
            .await
            .map_err(|e| ApiError::InternalFailure(e.to_string()))?
            .map_err(|e| ApiError::InternalFailure(e.to_string()))?;
        let meta = Arc::new(meta);
        self.streams_mut().insert(meta.name.clone(), meta.clone());
        Ok(meta)
    }

    /// Closes and deletes a DELETING stream's shards, then forgets it.
    /// Writes a metadata key with a synced write, off the async threads.
    pub async fn put_meta(&self, key: &str, value: Vec<u8>) -> ApiResult<()> {
        let store = self.store.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || store.put_meta(&key, &value))
            .await
            .map_err(|e| ApiError::InternalFailure(e.to_string()))?
            .map_err(|e| ApiError::InternalFailure(e.to_string()))
    }

    /// Removes a metadata key with a synced write, off the async threads.
    pub async fn delete_meta(&self, key: &str) -> ApiResult<()> {
        let store = self.store.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || store.delete_meta(&key))
            .await
            .map_err(|e| ApiError::InternalFailure(e.to_string()))?
            .map_err(|e| ApiError::InternalFailure(e.to_string()))
    }

    /// The name a stream deleted since start had.
    pub fn deleted_stream_name(&self, id: u64) -> Option<String> {
        self.deleted.read().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    pub async fn finish_delete(&self, meta: &StreamMeta) -> ApiResult<()> {
        for shard in &meta.shards {
            let key = ShardKey { stream_id: meta.id, shard_index: shard.index };
            self.runtime.drop_shard(key).await?;
            // A shard that was never opened (e.g. at start-up) still has files to remove.
            let dir = self.shard_dir(key);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| ApiError::InternalFailure(e.to_string()))?;
            }
        }
        let stream_dir = self.cfg.data_dir.join("streams").join(format!("{:016}", meta.id));
        let _ = std::fs::remove_dir(stream_dir);
        let store = self.store.clone();
        let m = meta.clone();
        tokio::task::spawn_blocking(move || store.delete_stream(&m))
            .await
            .map_err(|e| ApiError::InternalFailure(e.to_string()))?
            .map_err(|e| ApiError::InternalFailure(e.to_string()))?;
        let mut streams = self.streams_mut();
        if streams.get(&meta.name).is_some_and(|m| m.id == meta.id) {
            streams.remove(&meta.name);
        }
        drop(streams);
        self.deleted.write().unwrap_or_else(|p| p.into_inner()).insert(meta.id, meta.name.clone());
        self.metrics.forget_stream(&meta.name);
        Ok(())
    }

    /// Stops the core workers (they finish and sync what is queued) and flushes the index. Works
    /// even while requests or background tasks still hold the service.
    pub fn shutdown(&self) {
        self.runtime.shutdown();
        // rocksdb must not be in use by another thread when the process exits.
        if let Some(h) = self.index_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = self.index_tx.send(IndexOp::Stop);
            let _ = h.join();
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "flushing the metadata store");
        }
    }

    /// Returns once every index operation queued so far is written.
    pub fn flush_index(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.index_tx.send(IndexOp::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    pub fn now_ms(&self) -> i64 {
        now_ms()
    }
}

pub fn validate_stream_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else if name.is_empty() || name.len() > 128 {
        Err(ApiError::validation(name, "streamName", "Member must have length less than or equal to 128"))
    } else {
        Err(ApiError::validation(name, "streamName", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"))
    }
}

impl crate::reader::stream::StreamSource for Service {
    fn stream_by_id(&self, id: u64) -> Option<Arc<StreamMeta>> {
        Service::stream_by_id(self, id)
    }
}

fn check_format_version(store: &Store) -> anyhow::Result<()> {
    if let Some(v) = store.get_meta(META_FORMAT_VERSION)? {
        let found = v.as_slice().try_into().map(u32::from_be_bytes).unwrap_or(u32::MAX);
        if found > FORMAT_VERSION {
            anyhow::bail!(
                "the data directory was written by a newer Sluice (on-disk format {found}; this build reads up to {FORMAT_VERSION}); refusing to start"
            );
        }
        if found == FORMAT_VERSION {
            return Ok(());
        }
    }
    // Older formats are read as they are; from now on the directory holds this one too.
    store.put_meta(META_FORMAT_VERSION, &FORMAT_VERSION.to_be_bytes())?;
    Ok(())
}

/// An exclusive `flock` on `<data dir>/LOCK`, which also records the holder's pid.
struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    fn acquire(dir: &std::path::Path) -> anyhow::Result<DataDirLock> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let path = dir.join("LOCK");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: plain syscall on an open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                anyhow::bail!(
                    "data directory {} is in use by another sluice (pid {}); refusing to start",
                    dir.display(),
                    holder.trim()
                );
            }
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        Ok(DataDirLock { _file: file })
    }
}
