//! Opening a shard's log after a start or a crash.
//!
//! For each segment, recovery trusts the persisted sparse index up to its last entry in that
//! segment, then verifies every batch from there to the end of the data (crc32c, dense ordinals).
//! In the last segment the first batch that fails is a torn tail: it was never acknowledged, so it
//! is cut off and the space re-zeroed. A failure in an earlier segment is damage in the middle of
//! the log: it is reported, and the shard serves what verifies.

use std::fs::OpenOptions;
use std::path::PathBuf;

use super::segment::{decode_batch_header, verify_batch, BatchHeader, SegmentHeader, BATCH_MAGIC, SEGMENT_HEADER_LEN};
use super::shard::{fallocate, map_segment, sync_dir, Damage, IndexEntry, Segment, ShardLog};
use super::{LogConfig, LogError, INDEX_INTERVAL_BYTES};

/// What recovery found and did.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub bytes_verified: u64,
    /// The torn tail cut off, if any: segment base, offset, bytes dropped, why.
    pub torn_tail: Option<TornTail>,
    /// Damage found before the tail; the shard's readable range stops short of it.
    pub damage: Vec<String>,
    /// Index entries recovery added (to persist) and ones it found stale (to delete).
    pub new_index: Vec<IndexEntry>,
    pub stale_index: Vec<IndexEntry>,
    /// Segment files removed because a crash interrupted their creation.
    pub removed_files: Vec<PathBuf>,
    /// With damage: the ordinal ranges that can be read, e.g. `[0, 120) [140, 500)`.
    pub readable: String,
}

/// The readable ordinal ranges of a shard between `trim` and `next`, around `damaged`.
pub fn readable_ranges(trim: u64, next: u64, damaged: &[Damage]) -> String {
    let mut out = Vec::new();
    let mut from = trim;
    for d in damaged {
        if d.from > from {
            out.push(format!("[{from}, {})", d.from));
        }
        from = from.max(d.to);
    }
    if next > from {
        out.push(format!("[{from}, {next})"));
    }
    out.join(" ")
}

/// The next batch at or after offset `from` that verifies and starts at ordinal `expected` or
/// later: where reading can resume after damage. Scans byte by byte; used only on damage.
pub(super) fn find_next_batch(bytes: &[u8], from: u64, expected: u64) -> Option<(u64, BatchHeader)> {
    let magic = BATCH_MAGIC.to_le_bytes();
    let mut at = from as usize;
    while at < bytes.len() {
        let pos = bytes[at..].windows(magic.len()).position(|w| w == magic)?;
        let offset = (at + pos) as u64;
        if let Ok(Some(h)) = decode_batch_header(bytes, offset) {
            if h.first_ordinal >= expected && verify_batch(bytes, offset, &h).is_ok() {
                return Some((offset, h));
            }
        }
        at += pos + 1;
    }
    None
}

#[derive(Debug, Clone)]
pub struct TornTail {
    pub segment_base: u64,
    pub offset: u64,
    pub dropped_bytes: u64,
    pub reason: String,
}

impl ShardLog {
    /// Opens (or creates) the log in `dir`, given the index entries persisted for it.
    pub fn open(
        dir: PathBuf,
        stream_id: u64,
        shard_index: u32,
        cfg: LogConfig,
        mut persisted: Vec<IndexEntry>,
    ) -> Result<(ShardLog, RecoveryReport), LogError> {
        std::fs::create_dir_all(&dir)?;
        let mut report = RecoveryReport::default();
        let mut bases: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(base) = name.strip_suffix(".seg").and_then(|b| b.parse::<u64>().ok()) {
                bases.push((base, path));
            }
        }
        bases.sort();
        persisted.sort_by_key(|e| e.ordinal);
        let mut log = ShardLog::empty(dir.clone(), stream_id, shard_index, cfg);
        let count = bases.len();
        let mut scanned: Vec<(Segment, Option<String>)> = Vec::new();
        let mut damaged: Vec<Damage> = Vec::new();
        for (i, (base, path)) in bases.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let file_len = file.metadata()?.len();
            let mut head = vec![0u8; SEGMENT_HEADER_LEN.min(file_len) as usize];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, 0)?;
            let header = match SegmentHeader::decode(&head) {
                Ok(h) => h,
                Err(e @ LogError::NewerFormat { .. }) => return Err(e),
                Err(e) if is_last && (head.iter().all(|&b| b == 0) || file_len < SEGMENT_HEADER_LEN) => {
                    // A crash between creating the file and syncing its header: it held nothing.
                    tracing::warn!(path = %path.display(), error = %e, "removing half-created segment");
                    drop(file);
                    std::fs::remove_file(&path)?;
                    sync_dir(&dir)?;
                    report.removed_files.push(path);
                    continue;
                }
                Err(e) => {
                    // Its records are reported lost (the gap shows below); the file is left in
                    // place for inspection.
                    tracing::error!(path = %path.display(), error = %e, "segment header is damaged; skipping the segment");
                    report.damage.push(format!("segment {} has a bad header ({e}); it is not served", path.display()));
                    continue;
                }
            };
            if header.base_ordinal != base || header.stream_id != stream_id || header.shard_index != shard_index {
                tracing::error!(path = %path.display(), "segment belongs to another shard or position; skipping it");
                report
                    .damage
                    .push(format!("segment {} belongs to another shard or position; it is not served", path.display()));
                continue;
            }
            let map = map_segment(&file, cfg.segment_size)?;
            let mut seg = Segment {
                base_ordinal: base,
                path,
                file,
                map,
                len: SEGMENT_HEADER_LEN,
                allocated: file_len,
                end_ordinal: base,
                last_ts_ms: header.created_ms,
            };
            // Entries of this segment: keep the ones that verify; scan from the last one.
            let mine: Vec<IndexEntry> = persisted.iter().filter(|e| e.segment_base == base).copied().collect();
            let mut start = None;
            for e in mine.iter().rev() {
                let ok = matches!(decode_batch_header(seg.bytes(), e.offset), Ok(Some(h))
                    if h.first_ordinal == e.ordinal && verify_batch(seg.bytes(), e.offset, &h).is_ok());
                if ok {
                    start = Some(*e);
                    break;
                }
            }
            let (kept, stale): (Vec<IndexEntry>, Vec<IndexEntry>) = match start {
                Some(s) => mine.iter().partition(|e| e.ordinal <= s.ordinal),
                None => (Vec::new(), mine.clone()),
            };
            report.stale_index.extend(stale);
            log.sparse.extend(kept);
            let (mut offset, mut expected) = match start {
                Some(s) => (s.offset, s.ordinal),
                None => (SEGMENT_HEADER_LEN, base),
            };
            log.bytes_since_index = 0;
            let mut failure = None;
            loop {
                let problem = match decode_batch_header(seg.bytes(), offset) {
                    Ok(None) => break,
                    Err(e) => Some(e.to_string()),
                    Ok(Some(h)) => match verify_batch(seg.bytes(), offset, &h) {
                        Err(e) => Some(e.to_string()),
                        Ok(()) if h.first_ordinal != expected => Some(format!(
                            "batch at offset {offset} starts at ordinal {} where {expected} was expected",
                            h.first_ordinal
                        )),
                        Ok(()) => {
                            let indexed =
                                log.sparse.last().is_some_and(|e| e.segment_base == base && e.offset == offset);
                            if !indexed
                                && (offset == SEGMENT_HEADER_LEN || log.bytes_since_index >= INDEX_INTERVAL_BYTES)
                            {
                                let e =
                                    IndexEntry { ordinal: h.first_ordinal, segment_base: base, offset, ts_ms: h.ts_ms };
                                log.sparse.push(e);
                                report.new_index.push(e);
                                log.bytes_since_index = 0;
                            }
                            log.bytes_since_index += u64::from(h.len);
                            report.bytes_verified += u64::from(h.len);
                            offset += u64::from(h.len);
                            expected = h.end_ordinal();
                            seg.last_ts_ms = h.ts_ms;
                            None
                        }
                    },
                };
                let Some(reason) = problem else { continue };
                // Valid batches after a bad one mean damage inside the log, not a torn tail: keep
                // them, and record what is lost in between.
                match find_next_batch(seg.bytes(), offset + 1, expected) {
                    Some((at, h)) => {
                        tracing::error!(stream_id, shard_index, segment = base, offset, from = expected,
                            to = h.first_ordinal, %reason, "damage inside the log; serving what verifies around it");
                        report.damage.push(format!(
                            "segment {base} is damaged at offset {offset} ({reason}); records {expected}..{} are lost",
                            h.first_ordinal
                        ));
                        if h.first_ordinal > expected {
                            damaged.push(Damage {
                                from: expected,
                                to: h.first_ordinal,
                                segment_base: base,
                                offset,
                                reason,
                            });
                        }
                        offset = at;
                        expected = h.first_ordinal;
                        // The batch after the damage gets an index entry, so reads can start there.
                        log.bytes_since_index = INDEX_INTERVAL_BYTES;
                    }
                    None => {
                        failure = Some(reason);
                        break;
                    }
                }
            }
            seg.len = offset;
            seg.end_ordinal = expected;
            scanned.push((seg, failure));
        }
        // Trailing segments without a batch that do not continue the log come from a rollover
        // whose data never became durable: writes to a new segment start only after the older
        // segment's are synced, so a torn older segment means the newer ones hold nothing.
        if let Some(tail) = scanned.iter().rposition(|(s, _)| s.len > SEGMENT_HEADER_LEN) {
            let mut removed = false;
            while scanned.len() > tail + 1 {
                let (t, t_failure) = &scanned[tail];
                let continues = t_failure.is_none()
                    && scanned.len() == tail + 2
                    && scanned[tail + 1].0.base_ordinal == t.end_ordinal;
                if continues {
                    break;
                }
                let (s, _) = scanned.pop().expect("longer than tail + 1");
                tracing::warn!(
                    stream_id,
                    shard_index,
                    segment = s.base_ordinal,
                    "removing empty segment past the end of the log"
                );
                std::fs::remove_file(&s.path)?;
                report.removed_files.push(s.path.clone());
                removed = true;
            }
            if removed {
                sync_dir(&dir)?;
            }
        }
        let count = scanned.len();
        for (i, (seg, failure)) in scanned.into_iter().enumerate() {
            let (base, offset) = (seg.base_ordinal, seg.len);
            if let Some(prev) = log.segments.last() {
                if prev.end_ordinal != base {
                    report.damage.push(format!(
                        "records {}..{} are missing between segment {} and segment {}",
                        prev.end_ordinal, base, prev.base_ordinal, base
                    ));
                    if prev.end_ordinal < base {
                        damaged.push(Damage {
                            from: prev.end_ordinal,
                            to: base,
                            segment_base: prev.base_ordinal,
                            offset: prev.len,
                            reason: "missing or unreadable segment data".into(),
                        });
                    }
                }
            }
            if let Some(reason) = failure {
                if i + 1 == count {
                    let dropped = nonzero_extent(seg.bytes(), offset);
                    truncate_tail(&seg, offset)?;
                    tracing::warn!(stream_id, shard_index, segment = base, offset, dropped_bytes = dropped, %reason,
                        "truncated torn tail");
                    report.torn_tail = Some(TornTail { segment_base: base, offset, dropped_bytes: dropped, reason });
                } else {
                    tracing::error!(stream_id, shard_index, segment = base, offset, %reason,
                        "damage in the middle of the log: records after it in this segment are not served");
                    report.damage.push(format!("segment {base} is damaged at offset {offset}: {reason}"));
                }
            }
            log.next_ordinal = seg.end_ordinal;
            log.last_ts_ms = log.last_ts_ms.max(seg.last_ts_ms);
            log.segments.push(seg);
        }
        report.segments = log.segments.len();
        damaged.sort_by_key(|d| d.from);
        log.damaged = damaged;
        if !log.damaged.is_empty() {
            report.readable = readable_ranges(log.trim_horizon(), log.next_ordinal, &log.damaged);
            tracing::error!(stream_id, shard_index, readable = %report.readable, "shard has damage; readable ordinal ranges");
        }
        Ok((log, report))
    }
}

/// How many bytes after `offset` are not zero (what a truncation throws away).
fn nonzero_extent(bytes: &[u8], offset: u64) -> u64 {
    let tail = &bytes[(offset as usize).min(bytes.len())..];
    tail.iter().rposition(|&b| b != 0).map_or(0, |p| p as u64 + 1)
}

/// Cuts the segment at `offset` and re-zeroes the space after it, durably.
fn truncate_tail(seg: &Segment, offset: u64) -> Result<(), LogError> {
    seg.file.set_len(offset)?;
    fallocate(&seg.file, offset, seg.allocated.saturating_sub(offset))?;
    seg.file.sync_all()?;
    Ok(())
}
