//! One shard's log: its segments, the sparse index, the in-memory hot tail, and the append, read
//! and retention operations. The core worker that owns the shard is its only user; I/O for appends
//! is done by that worker's ring ([`super::uring`]) between [`ShardLog::prepare`] and
//! [`ShardLog::commit`] (or [`ShardLog::abort`]).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};

use crate::keys::DataKey;

use super::segment::{
    decode_batch_header, decode_records, encode_batch, find_next_batch, verify_batch, SegmentHeader, BATCH_HEADER_LEN,
    BATCH_PAYLOAD_SOFT_MAX, BATCH_RECORDS_MAX, FORMAT_VERSION, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::{LogConfig, LogError, NewRecord, Record, INDEX_INTERVAL_BYTES};

/// Space is preallocated in steps of this much, up to the segment size.
const PREALLOCATE_STEP_BYTES: u64 = 4 << 20;

/// A sparse index entry: the batch that starts at `offset` of segment `segment_base` holds
/// `ordinal` first and arrived at `ts_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub ordinal: u64,
    pub segment_base: u64,
    pub offset: u64,
    pub ts_ms: i64,
}

pub(super) struct Segment {
    pub base_ordinal: u64,
    pub path: PathBuf,
    pub file: File,
    pub map: Mmap,
    /// End of valid data.
    pub len: u64,
    /// File size: preallocated, zero beyond `len`.
    pub allocated: u64,
    pub end_ordinal: u64,
    pub last_ts_ms: i64,
    /// The KMS KeyId an encrypted segment is sealed under, and its data key (`None` when the
    /// key ring cannot open it: its batches are then not served).
    pub key_id: Option<String>,
    pub key: Option<DataKey>,
}

impl Segment {
    /// The mapped bytes that are backed by the file (touching the mapping past the file's end
    /// would fault).
    pub fn bytes(&self) -> &[u8] {
        &self.map[..self.allocated.min(self.map.len() as u64) as usize]
    }

    pub fn valid(&self) -> &[u8] {
        &self.map[..self.len as usize]
    }
}

struct HotBatch {
    first_ordinal: u64,
    ts_ms: i64,
    records: Vec<NewRecord>,
    bytes: u64,
}

impl HotBatch {
    fn end_ordinal(&self) -> u64 {
        self.first_ordinal + self.records.len() as u64
    }
}

pub struct ShardLog {
    pub stream_id: u64,
    pub shard_index: u32,
    pub(super) dir: PathBuf,
    pub(super) cfg: LogConfig,
    pub(super) segments: Vec<Segment>,
    pub(super) next_ordinal: u64,
    pub(super) last_ts_ms: i64,
    pub(super) sparse: Vec<IndexEntry>,
    pub(super) bytes_since_index: u64,
    hot: VecDeque<HotBatch>,
    hot_bytes: u64,
    /// Segments written since the last sync (interval durability).
    dirty: Vec<u64>,
    /// A write or sync failed: bytes past the tail may sit in the page cache, written but not
    /// durable. They are cut off before the next append ([`ShardLog::repair_tail`]).
    needs_repair: bool,
    /// Ordinal ranges lost to on-disk damage, found by recovery or by reads.
    pub(super) damaged: Vec<Damage>,
    /// The KeyId new batches are sealed under (`None`: plaintext). A change takes effect in a
    /// new segment, so that each segment is wholly sealed under one data key or not at all.
    encryption: Option<String>,
}

/// Records `from..to` (ordinals) are lost: the batch at `offset` of segment `segment_base`, and
/// possibly more after it, failed to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub from: u64,
    pub to: u64,
    pub segment_base: u64,
    pub offset: u64,
    pub reason: String,
}

/// An append laid out on disk but not yet written.
pub struct Prepared {
    pub writes: Vec<PreparedWrite>,
    batches: Vec<PlacedBatch>,
    records: Vec<NewRecord>,
    first_ordinal: u64,
    ts_ms: i64,
    created_segments: usize,
}

pub struct PreparedWrite {
    pub fd: RawFd,
    /// The base ordinal of the segment written (its file name).
    pub segment_base: u64,
    pub offset: u64,
    pub buf: Vec<u8>,
    /// Goes to a segment this append created. Such writes must start only once the writes to
    /// older segments are durable, so that a crash never leaves data in a new segment behind a
    /// torn tail in the one before it (recovery relies on this).
    pub new_segment: bool,
}

struct PlacedBatch {
    segment: usize,
    offset: u64,
    len: u64,
    first_ordinal: u64,
    count: u64,
}

/// What a commit made durable.
pub struct Committed {
    pub first_ordinal: u64,
    pub ts_ms: i64,
    pub new_index: Vec<IndexEntry>,
}

pub struct ReadOut {
    pub records: Vec<Record>,
    /// The ordinal to read from next.
    pub next: u64,
}

impl ShardLog {
    pub(super) fn empty(dir: PathBuf, stream_id: u64, shard_index: u32, cfg: LogConfig) -> ShardLog {
        ShardLog {
            stream_id,
            shard_index,
            dir,
            cfg,
            segments: Vec::new(),
            encryption: None,
            next_ordinal: 0,
            last_ts_ms: 0,
            sparse: Vec::new(),
            bytes_since_index: 0,
            hot: VecDeque::new(),
            hot_bytes: 0,
            dirty: Vec::new(),
            needs_repair: false,
            damaged: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The ordinal the next appended record gets.
    pub fn next_ordinal(&self) -> u64 {
        self.next_ordinal
    }

    pub fn last_ts_ms(&self) -> i64 {
        self.last_ts_ms
    }

    /// The oldest retained ordinal.
    pub fn trim_horizon(&self) -> u64 {
        self.segments.first().map_or(self.next_ordinal, |s| s.base_ordinal)
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Encodes `records` into batches and places them after the tail, creating and preallocating
    /// segments as needed. Nothing is acknowledged or visible until [`ShardLog::commit`].
    pub fn prepare(&mut self, records: Vec<NewRecord>, now_ms: i64) -> Result<Prepared, LogError> {
        assert!(!records.is_empty(), "an append has records");
        if self.needs_repair {
            self.repair_tail()?;
        }
        let ts_ms = now_ms.max(self.last_ts_ms);
        let first_ordinal = self.next_ordinal;
        let mut prepared = Prepared {
            writes: Vec::new(),
            batches: Vec::new(),
            records: Vec::new(),
            first_ordinal,
            ts_ms,
            created_segments: 0,
        };
        let current_key = self.segments.last().map(|s| s.key_id.clone());
        if self.segments.is_empty() || current_key.is_some_and(|k| k != self.encryption) {
            self.create_segment(first_ordinal, now_ms)?;
            prepared.created_segments += 1;
        }
        let mut seg_i = self.segments.len() - 1;
        let mut offset = self.segments[seg_i].len;
        let mut ordinal = first_ordinal;
        let mut start = 0usize;
        // Room for every record and its batch headers (batches hold up to the soft payload bound),
        // so the write buffer of a segment is not grown, and copied, while batches are encoded
        // into it.
        let raw: usize = records.iter().map(|r| RECORD_HEADER_LEN + r.partition_key.len() + r.data.len()).sum();
        let estimate = raw + BATCH_HEADER_LEN * (raw / BATCH_PAYLOAD_SOFT_MAX + 2);
        while start < records.len() {
            // One batch: records up to the soft payload bound (at least one).
            let mut end = start;
            let mut payload = 0usize;
            while end < records.len() && (end - start) < BATCH_RECORDS_MAX as usize {
                let r = &records[end];
                let size = RECORD_HEADER_LEN + r.partition_key.len() + r.data.len();
                if end > start && payload + size > BATCH_PAYLOAD_SOFT_MAX {
                    break;
                }
                payload += size;
                end += 1;
            }
            let fields: Vec<(&str, &[u8])> =
                records[start..end].iter().map(|r| (r.partition_key.as_str(), &r.data[..])).collect();
            let seal = self.segments[seg_i].key.as_ref();
            if self.segments[seg_i].key_id.is_some() && seal.is_none() {
                self.abort(prepared);
                return Err(LogError::Io(std::io::Error::other("the segment's data key is not available")));
            }
            // The batch is encoded straight into the write that ends where it goes.
            let fd = self.segments[seg_i].file.as_raw_fd();
            let contiguous =
                prepared.writes.last().is_some_and(|w| w.fd == fd && w.offset + w.buf.len() as u64 == offset);
            if !contiguous {
                prepared.writes.push(PreparedWrite {
                    fd,
                    segment_base: self.segments[seg_i].base_ordinal,
                    offset,
                    buf: Vec::with_capacity(estimate),
                    new_segment: seg_i + prepared.created_segments >= self.segments.len(),
                });
            }
            let w = prepared.writes.last_mut().expect("pushed above");
            let at = w.buf.len();
            encode_batch(ordinal, ts_ms, &fields, self.cfg.compression, seal, &mut w.buf);
            let len = (w.buf.len() - at) as u64;
            if offset + len > self.cfg.segment_size && offset > SEGMENT_HEADER_LEN {
                // It does not fit: it goes to a new segment instead.
                let moved = w.buf.split_off(at);
                if w.buf.is_empty() {
                    prepared.writes.pop();
                }
                if let Err(e) = self.create_segment(ordinal, now_ms) {
                    self.abort(prepared);
                    return Err(e);
                }
                prepared.created_segments += 1;
                seg_i = self.segments.len() - 1;
                offset = SEGMENT_HEADER_LEN;
                prepared.writes.push(PreparedWrite {
                    fd: self.segments[seg_i].file.as_raw_fd(),
                    segment_base: self.segments[seg_i].base_ordinal,
                    offset,
                    buf: moved,
                    new_segment: true,
                });
            }
            if let Err(e) = self.ensure_allocated(seg_i, offset + len) {
                self.abort(prepared);
                return Err(e);
            }
            prepared.batches.push(PlacedBatch {
                segment: seg_i,
                offset,
                len,
                first_ordinal: ordinal,
                count: (end - start) as u64,
            });
            offset += len;
            ordinal += (end - start) as u64;
            start = end;
        }
        prepared.records = records;
        Ok(prepared)
    }

    /// Makes a prepared append visible once its writes are durable.
    pub fn commit(&mut self, prepared: Prepared) -> Committed {
        let mut new_index = Vec::new();
        for b in &prepared.batches {
            let seg = &mut self.segments[b.segment];
            assert_eq!(seg.len, b.offset, "batches are committed in the order they were placed");
            assert_eq!(seg.end_ordinal, b.first_ordinal, "ordinals are dense");
            if b.offset == SEGMENT_HEADER_LEN || self.bytes_since_index >= INDEX_INTERVAL_BYTES {
                let entry = IndexEntry {
                    ordinal: b.first_ordinal,
                    segment_base: seg.base_ordinal,
                    offset: b.offset,
                    ts_ms: prepared.ts_ms,
                };
                self.sparse.push(entry);
                new_index.push(entry);
                self.bytes_since_index = 0;
            }
            self.bytes_since_index += b.len;
            seg.len = b.offset + b.len;
            seg.end_ordinal = b.first_ordinal + b.count;
            seg.last_ts_ms = prepared.ts_ms;
            if self.cfg.track_unsynced && !self.dirty.contains(&seg.base_ordinal) {
                self.dirty.push(seg.base_ordinal);
            }
        }
        let count = prepared.records.len() as u64;
        assert_eq!(self.next_ordinal, prepared.first_ordinal);
        self.next_ordinal += count;
        self.last_ts_ms = prepared.ts_ms;
        let bytes: u64 = prepared.records.iter().map(|r| (r.data.len() + r.partition_key.len()) as u64).sum();
        self.hot.push_back(HotBatch {
            first_ordinal: prepared.first_ordinal,
            ts_ms: prepared.ts_ms,
            records: prepared.records,
            bytes,
        });
        self.hot_bytes += bytes;
        while self.hot_bytes > self.cfg.hot_tail_bytes {
            match self.hot.pop_front() {
                Some(b) => self.hot_bytes -= b.bytes,
                None => break,
            }
        }
        Committed { first_ordinal: prepared.first_ordinal, ts_ms: prepared.ts_ms, new_index }
    }

    /// Appends and makes durable in one step, as a core worker does for a group of one: writes to
    /// existing segments, then to new ones, each linked to its fdatasync. For tools, benches and
    /// tests that hold a shard log without a worker.
    pub fn append_durably(
        &mut self,
        ring: &mut super::uring::Uring,
        records: Vec<NewRecord>,
        now_ms: i64,
    ) -> Result<Committed, LogError> {
        let p = self.prepare(records, now_ms)?;
        for new_segments in [false, true] {
            let ops: Vec<super::uring::WriteOp> = p
                .writes
                .iter()
                .filter(|w| w.new_segment == new_segments)
                .map(|w| super::uring::WriteOp { fd: w.fd, offset: w.offset, buf: &w.buf })
                .collect();
            if let Some(Err(e)) = ring.write_all(&ops, true).into_iter().find(|r| r.is_err()) {
                self.abort(p);
                return Err(e.into());
            }
        }
        Ok(self.commit(p))
    }

    /// Forgets a prepared append whose writes failed. Segments it created are removed; the bytes it
    /// may have written past the tail are overwritten by the next append, and recovery would
    /// treat them as an unacknowledged tail.
    pub fn abort(&mut self, prepared: Prepared) {
        for _ in 0..prepared.created_segments {
            if let Some(seg) = self.segments.pop() {
                let _ = std::fs::remove_file(&seg.path);
            }
        }
        self.needs_repair = true;
    }

    /// Cuts everything past the tail of the last segment and re-zeroes it, durably. After a
    /// failed write or fdatasync the bytes there were never acknowledged and may or may not be on
    /// disk; they must not be mistaken for data by a later recovery, nor trusted as synced.
    pub fn repair_tail(&mut self) -> Result<(), LogError> {
        super::faults::check_write()?;
        if let Some(seg) = self.segments.last_mut() {
            seg.file.set_len(seg.len)?;
            fallocate(&seg.file, seg.len, seg.allocated.saturating_sub(seg.len))?;
            if let Some(errno) = super::faults::sync_fault() {
                return Err(std::io::Error::from_raw_os_error(errno).into());
            }
            seg.file.sync_all()?;
        }
        self.needs_repair = false;
        Ok(())
    }

    /// A failed write or sync left bytes past the tail that are not yet cut off.
    pub fn needs_repair(&self) -> bool {
        self.needs_repair
    }

    /// fdatasyncs the segments written since the last call (for the interval durability mode).
    pub fn dirty_fds(&mut self) -> Vec<RawFd> {
        let fds =
            self.segments.iter().filter(|s| self.dirty.contains(&s.base_ordinal)).map(|s| s.file.as_raw_fd()).collect();
        self.dirty.clear();
        fds
    }

    /// Reads up to `limit` records (and about `max_bytes` of data, at least one record) from
    /// `from`, or from the trim horizon if `from` has expired.
    pub fn read(&mut self, from: u64, limit: usize, max_bytes: usize) -> Result<ReadOut, LogError> {
        let start = from.max(self.trim_horizon());
        let mut out = ReadOut { records: Vec::new(), next: start };
        if start >= self.next_ordinal || limit == 0 {
            return Ok(out);
        }
        if let Some(d) = self.damaged.iter().find(|d| d.from <= start && start < d.to) {
            return Err(LogError::Damaged { from: d.from, to: d.to, reason: d.reason.clone() });
        }
        // A read stops short of damage rather than skip over it silently.
        let stop = self.damaged.iter().filter(|d| d.from > start).map(|d| d.from).min().unwrap_or(u64::MAX);
        let mut bytes = 0usize;
        let mut take = |out: &mut ReadOut, r: Record| -> bool {
            let size = r.data.len() + r.partition_key.len();
            if r.ordinal >= stop || out.records.len() >= limit || (!out.records.is_empty() && bytes + size > max_bytes)
            {
                return false;
            }
            bytes += size;
            out.next = r.ordinal + 1;
            out.records.push(r);
            true
        };
        if self.hot.front().is_some_and(|b| b.first_ordinal <= start) {
            for batch in self.hot.iter().filter(|b| b.end_ordinal() > start) {
                for (i, r) in batch.records.iter().enumerate() {
                    let ordinal = batch.first_ordinal + i as u64;
                    if ordinal < start {
                        continue;
                    }
                    let rec = Record {
                        ordinal,
                        ts_ms: batch.ts_ms,
                        partition_key: r.partition_key.clone(),
                        data: r.data.clone(),
                    };
                    if !take(&mut out, rec) {
                        return Ok(out);
                    }
                }
            }
            return Ok(out);
        }
        let (mut seg_i, mut offset, mut expected) = self.locate(start)?;
        let mut decoded = Vec::new();
        loop {
            // Known damage ahead: stop before its bytes rather than decode them again.
            if expected >= stop {
                return Ok(out);
            }
            let Some(seg) = self.segments.get(seg_i) else { return Ok(out) };
            if offset >= seg.len {
                seg_i += 1;
                offset = SEGMENT_HEADER_LEN;
                if let Some(next) = self.segments.get(seg_i) {
                    expected = next.base_ordinal;
                }
                continue;
            }
            let buf = seg.valid();
            let batch = decode_batch_header(buf, offset).and_then(|h| {
                let h = h.ok_or_else(|| LogError::Corrupt {
                    offset,
                    reason: "zeros inside the valid part of a segment".into(),
                })?;
                if h.end_ordinal() > start {
                    verify_batch(buf, offset, &h)?;
                    decoded.clear();
                    decode_records(buf, offset, &h, start, seg.key.as_ref(), &mut decoded)?;
                }
                Ok(h)
            });
            let header = match batch {
                Ok(h) => h,
                Err(e) => {
                    // Found at read time (after start-up): record the damage, then serve what
                    // came before it or say exactly what is lost.
                    let resume = find_next_batch(buf, offset + 1, expected);
                    let to = resume.map_or(seg.end_ordinal, |(_, h)| h.first_ordinal).max(expected + 1);
                    let damage =
                        Damage { from: expected, to, segment_base: seg.base_ordinal, offset, reason: e.to_string() };
                    tracing::error!(stream_id = self.stream_id, shard = self.shard_index, segment = damage.segment_base,
                        offset, from = damage.from, to = damage.to, error = %e, "damaged batch found by a read");
                    if let Some((at, h)) = resume {
                        self.sparse.push(IndexEntry {
                            ordinal: h.first_ordinal,
                            segment_base: damage.segment_base,
                            offset: at,
                            ts_ms: h.ts_ms,
                        });
                        self.sparse.sort_by_key(|e| e.ordinal);
                    }
                    let err = LogError::Damaged { from: damage.from, to: damage.to, reason: damage.reason.clone() };
                    if !self.damaged.iter().any(|d| d.from == damage.from) {
                        self.damaged.push(damage);
                        self.damaged.sort_by_key(|d| d.from);
                    }
                    match resume {
                        // The damage lies wholly before the requested position: read on past it.
                        Some((at, h)) if to <= start => {
                            offset = at;
                            expected = h.first_ordinal;
                            continue;
                        }
                        _ => return if out.records.is_empty() { Err(err) } else { Ok(out) },
                    }
                }
            };
            for r in decoded.drain(..) {
                if !take(&mut out, r) {
                    return Ok(out);
                }
            }
            expected = header.end_ordinal();
            offset += u64::from(header.len);
        }
    }

    /// Ordinal ranges lost to on-disk damage, oldest first.
    pub fn damaged(&self) -> &[Damage] {
        &self.damaged
    }

    /// The segment, offset and first ordinal of the batch at or before `ordinal` to scan from.
    fn locate(&self, ordinal: u64) -> Result<(usize, u64, u64), LogError> {
        let i = self.sparse.partition_point(|e| e.ordinal <= ordinal);
        let entry = match i {
            0 => None,
            _ => Some(self.sparse[i - 1]),
        };
        let (base, offset, first) = match entry {
            Some(e) => (e.segment_base, e.offset, e.ordinal),
            None => {
                let base = self.segments.first().map_or(0, |s| s.base_ordinal);
                (base, SEGMENT_HEADER_LEN, base)
            }
        };
        let seg_i = self
            .segments
            .binary_search_by_key(&base, |s| s.base_ordinal)
            .map_err(|_| LogError::Corrupt { offset, reason: format!("index names missing segment {base}") })?;
        Ok((seg_i, offset, first))
    }

    /// The ordinal of the first record that arrived at or after `ts_ms` (the next ordinal if none).
    pub fn ordinal_at_timestamp(&self, ts_ms: i64) -> Result<u64, LogError> {
        if self.last_ts_ms < ts_ms || self.segments.is_empty() {
            return Ok(self.next_ordinal);
        }
        let i = self.sparse.partition_point(|e| e.ts_ms < ts_ms);
        let (mut seg_i, mut offset) = match i {
            0 => (0, SEGMENT_HEADER_LEN),
            _ => {
                let (seg_i, offset, _) = self.locate(self.sparse[i - 1].ordinal)?;
                (seg_i, offset)
            }
        };
        loop {
            let Some(seg) = self.segments.get(seg_i) else {
                return Ok(self.next_ordinal);
            };
            if offset >= seg.len {
                seg_i += 1;
                offset = SEGMENT_HEADER_LEN;
                continue;
            }
            let header = decode_batch_header(seg.valid(), offset)?
                .ok_or_else(|| LogError::Corrupt { offset, reason: "zeros inside a segment".into() })?;
            if header.ts_ms >= ts_ms {
                return Ok(header.first_ordinal.max(self.trim_horizon()));
            }
            offset += u64::from(header.len);
        }
    }

    /// Deletes whole segments whose newest record arrived before `cutoff_ms`. Returns the base
    /// ordinals of the deleted segments. The last segment is kept (empty) so that the next
    /// ordinal survives a restart.
    pub fn expire(&mut self, cutoff_ms: i64, now_ms: i64) -> Result<Vec<u64>, LogError> {
        let mut removed = Vec::new();
        let Some(last) = self.segments.last() else {
            return Ok(removed);
        };
        if last.last_ts_ms < cutoff_ms && last.end_ordinal > last.base_ordinal {
            // Everything is expired: start an empty segment so the old one can go.
            self.create_segment(self.next_ordinal, now_ms)?;
        }
        while self.segments.len() > 1 && self.segments[0].last_ts_ms < cutoff_ms {
            std::fs::remove_file(&self.segments[0].path)?;
            removed.push(self.segments.remove(0).base_ordinal);
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
            let horizon = self.trim_horizon();
            self.sparse.retain(|e| !removed.contains(&e.segment_base));
            while self.hot.front().is_some_and(|b| b.end_ordinal() <= horizon) {
                if let Some(b) = self.hot.pop_front() {
                    self.hot_bytes -= b.bytes;
                }
            }
        }
        Ok(removed)
    }

    fn create_segment(&mut self, base_ordinal: u64, now_ms: i64) -> Result<(), LogError> {
        super::faults::check_write()?;
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(segment_file_name(base_ordinal));
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        let (key, wrapped) = match &self.encryption {
            Some(id) => {
                let ring = crate::keys::global()
                    .ok_or_else(|| LogError::Io(std::io::Error::other("no key ring is installed for encryption")))?;
                let (key, wrapped) = ring.new_data_key(id)?;
                (Some(key), Some((id.clone(), wrapped)))
            }
            None => (None, None),
        };
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            stream_id: self.stream_id,
            shard_index: self.shard_index,
            base_ordinal,
            created_ms: now_ms,
            key: wrapped,
        };
        file.write_all_at(&header.encode(), 0)?;
        let allocated = PREALLOCATE_STEP_BYTES.min(self.cfg.segment_size);
        fallocate(&file, SEGMENT_HEADER_LEN, allocated - SEGMENT_HEADER_LEN)?;
        file.sync_all()?;
        sync_dir(&self.dir)?;
        let map = map_segment(&file, self.cfg.segment_size)?;
        self.segments.push(Segment {
            base_ordinal,
            path,
            file,
            map,
            len: SEGMENT_HEADER_LEN,
            allocated,
            end_ordinal: base_ordinal,
            last_ts_ms: now_ms,
            key_id: self.encryption.clone(),
            key,
        });
        Ok(())
    }

    /// Seals new batches under `key_id` from the next append on (`None`: plaintext again).
    pub fn set_encryption(&mut self, key_id: Option<String>) {
        self.encryption = key_id;
    }

    fn ensure_allocated(&mut self, seg_i: usize, end: u64) -> Result<(), LogError> {
        let seg = &mut self.segments[seg_i];
        if end <= seg.allocated {
            return Ok(());
        }
        super::faults::check_write()?;
        let limit = seg.map.len() as u64;
        let target = (end + PREALLOCATE_STEP_BYTES).min(limit).max(end);
        if target > limit {
            return Err(LogError::Corrupt { offset: end, reason: "batch does not fit in the segment".into() });
        }
        fallocate(&seg.file, seg.allocated, target - seg.allocated)?;
        seg.allocated = target;
        Ok(())
    }
}

pub(super) fn segment_file_name(base_ordinal: u64) -> String {
    format!("{base_ordinal:020}.seg")
}

pub(super) fn map_segment(file: &File, segment_size: u64) -> Result<Mmap, LogError> {
    let file_len = file.metadata()?.len();
    let len = segment_size.max(file_len);
    // SAFETY: the mapping is read-only and only the part backed by the file (`allocated`) is ever
    // read; the file is written only by this shard's owner through pwrite/io_uring, which the
    // page cache keeps coherent with the mapping.
    let map = unsafe { MmapOptions::new().len(len as usize).map(file)? };
    Ok(map)
}

pub(super) fn fallocate(file: &File, offset: u64, len: u64) -> Result<(), LogError> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: plain syscall on an open descriptor.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset as libc::off_t, len as libc::off_t) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        // Filesystems without fallocate: extend the file instead (reads as zeros all the same).
        if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
            let size = file.metadata()?.len().max(offset + len);
            file.set_len(size)?;
            return Ok(());
        }
        return Err(err.into());
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Compression;
    use crate::log::uring::Uring;
    use bytes::Bytes;

    fn cfg(segment_size: u64, hot: u64) -> LogConfig {
        LogConfig { segment_size, compression: Compression::Lz4, hot_tail_bytes: hot, track_unsynced: false }
    }

    fn rec(i: u64) -> NewRecord {
        // Incompressible bytes, so that small segments really fill up.
        let mut x = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let data = (0..700 + (i % 13) as usize)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (x >> 56) as u8
            })
            .collect::<Vec<u8>>();
        NewRecord { partition_key: format!("k{}", i % 5), data: Bytes::from(data) }
    }

    /// Appends like a core worker does; returns the index entries the commit produced.
    fn append(log: &mut ShardLog, ring: &mut Uring, records: Vec<NewRecord>, now: i64) -> Vec<IndexEntry> {
        log.append_durably(ring, records, now).unwrap().new_index
    }

    fn check_reads(log: &mut ShardLog, n: u64) {
        for from in [0, 1, 17, n / 2, n - 1] {
            let out = log.read(from, usize::MAX, usize::MAX).unwrap();
            assert_eq!(out.records.len() as u64, n - from, "from {from}");
            for r in &out.records {
                let e = rec(r.ordinal);
                assert_eq!((r.partition_key.as_str(), &r.data[..]), (e.partition_key.as_str(), &e.data[..]));
            }
            assert_eq!(out.next, n);
        }
        let page = log.read(10, 5, usize::MAX).unwrap();
        assert_eq!(page.records.iter().map(|r| r.ordinal).collect::<Vec<_>>(), [10, 11, 12, 13, 14]);
        let small = log.read(0, 100, 1).unwrap();
        assert_eq!(small.records.len(), 1, "at least one record, then the byte bound");
    }

    #[test]
    fn appends_span_segments_and_survive_reopen_with_or_without_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = Uring::new().unwrap();
        let mut log = ShardLog::empty(dir.path().join("s"), 1, 0, cfg(64 << 10, 8 << 10));
        let mut index = Vec::new();
        let mut i = 0u64;
        for round in 0..100 {
            let batch: Vec<NewRecord> = (0..(1 + round % 7)).map(|k| rec(i + k)).collect();
            i += batch.len() as u64;
            index.extend(append(&mut log, &mut ring, batch, 1_000 + round as i64));
        }
        assert!(log.segments.len() > 2, "small segments roll");
        check_reads(&mut log, i);
        assert_eq!(
            log.ordinal_at_timestamp(1_010).unwrap(),
            log.read(0, usize::MAX, usize::MAX).unwrap().records.iter().find(|r| r.ts_ms >= 1_010).unwrap().ordinal
        );
        assert_eq!(log.ordinal_at_timestamp(99_999).unwrap(), i);
        drop(log);
        for persisted in [index.clone(), Vec::new(), index[..index.len() / 2].to_vec()] {
            let (mut log, report) =
                ShardLog::open(dir.path().join("s"), 1, 0, cfg(64 << 10, 8 << 10), persisted).unwrap();
            assert!(report.torn_tail.is_none() && report.damage.is_empty(), "{report:?}");
            assert_eq!(log.next_ordinal(), i);
            check_reads(&mut log, i);
        }
    }

    #[test]
    fn a_torn_rollover_drops_the_empty_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = Uring::new().unwrap();
        let path = dir.path().join("s");
        let mut log = ShardLog::empty(path.clone(), 1, 0, cfg(64 << 10, 0));
        let mut n = 0;
        while log.segments.len() < 2 {
            append(&mut log, &mut ring, vec![rec(n)], 5);
            n += 1;
        }
        // Simulate a crash mid-rollover: the first segment's last batch is torn and the new
        // segment never received its write.
        let first = &log.segments[0];
        let last_off = {
            let mut off = SEGMENT_HEADER_LEN;
            let mut last = off;
            while let Ok(Some(h)) = decode_batch_header(first.valid(), off) {
                last = off;
                off += u64::from(h.len);
            }
            last
        };
        first.file.set_len(last_off + 30).unwrap();
        let second = log.segments[1].path.clone();
        let tail_ordinal = log.segments[0].end_ordinal - 1;
        second_segment_truncate_to_header(&second);
        drop(log);
        let (mut log, report) = ShardLog::open(path, 1, 0, cfg(64 << 10, 0), Vec::new()).unwrap();
        assert!(report.torn_tail.is_some(), "{report:?}");
        assert!(report.damage.is_empty(), "a torn rollover is not mid-log damage: {report:?}");
        assert_eq!(report.removed_files, vec![second]);
        assert_eq!(log.next_ordinal(), tail_ordinal);
        assert_eq!(log.read(0, usize::MAX, usize::MAX).unwrap().records.len() as u64, tail_ordinal);
    }

    fn second_segment_truncate_to_header(path: &Path) {
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(SEGMENT_HEADER_LEN).unwrap();
        f.set_len(SEGMENT_HEADER_LEN * 4).unwrap();
    }

    #[test]
    fn retention_deletes_whole_segments_and_keeps_the_next_ordinal() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = Uring::new().unwrap();
        let path = dir.path().join("s");
        let mut log = ShardLog::empty(path.clone(), 1, 0, cfg(64 << 10, 1 << 20));
        for i in 0..200 {
            append(&mut log, &mut ring, vec![rec(i)], i as i64);
        }
        let segments = log.segments.len();
        assert!(segments > 2);
        let removed = log.expire(100, 500).unwrap();
        assert!(!removed.is_empty() && log.segments.len() < segments);
        let horizon = log.trim_horizon();
        assert!(horizon > 0 && horizon <= 100);
        let out = log.read(0, 1, usize::MAX).unwrap();
        assert_eq!(out.records[0].ordinal, horizon, "reads start at the trim horizon");
        // Everything expires: the log keeps an empty segment so the ordinal survives a restart.
        log.expire(1_000, 1_000).unwrap();
        assert_eq!(log.trim_horizon(), 200);
        assert!(log.read(0, 10, usize::MAX).unwrap().records.is_empty());
        drop(log);
        let (log, _) = ShardLog::open(path, 1, 0, cfg(64 << 10, 0), Vec::new()).unwrap();
        assert_eq!(log.next_ordinal(), 200);
    }
}
