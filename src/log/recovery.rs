//! Opening a shard's log after a start or a crash.
//!
//! For each segment, recovery trusts the persisted sparse index up to its last entry in that
//! segment, then verifies every batch from there to the end of the data (crc32c, dense ordinals).
//! In the last segment the first batch that fails is a torn tail: it was never acknowledged, so it
//! is cut off and the space re-zeroed. A failure in an earlier segment is damage in the middle of
//! the log: it is reported, and the shard serves what verifies.

use std::fs::OpenOptions;
use std::path::PathBuf;

use super::segment::{
    decode_batch_header, find_next_batch, verify_batch, SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_LEN,
};
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
                    // The file name still gives the base ordinal and every batch carries its own
                    // crc and ordinals: read what verifies (whatever does not shows as damage),
                    // so that no ordinal is ever handed out twice.
                    tracing::error!(path = %path.display(), error = %e, "segment header is damaged; reading its batches by their own checksums");
                    report.damage.push(format!("segment {} has a bad header ({e})", path.display()));
                    SegmentHeader {
                        version: FORMAT_VERSION,
                        stream_id,
                        shard_index,
                        base_ordinal: base,
                        created_ms: 0,
                        key: None,
                    }
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
            let key = header.key.as_ref().and_then(|(id, wrapped)| {
                let key = crate::keys::global().and_then(|ring| ring.unwrap_data_key(id, wrapped));
                if key.is_none() {
                    tracing::error!(path = %path.display(), key_id = %id, "the segment's data key does not open with this daemon's master key; its records are not served");
                }
                key
            });
            let mut seg = Segment {
                base_ordinal: base,
                path,
                file,
                map,
                len: SEGMENT_HEADER_LEN,
                allocated: file_len,
                end_ordinal: base,
                last_ts_ms: header.created_ms,
                key_id: header.key.as_ref().map(|(id, _)| id.clone()),
                key,
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
                    Err(e @ LogError::NewerFormat { .. }) => return Err(e),
                    // Zeros are the end of the log, unless data follows them: a zeroed page.
                    Ok(None) if !nonzero_within(seg.bytes(), offset, ZERO_RUN_CHECK_BYTES) => break,
                    Ok(None) => Some(format!("zeros at offset {offset} with data after them")),
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

/// After a zero header, this much of what follows is checked for data (zeroed pages inside the
/// log are damage, not its end).
const ZERO_RUN_CHECK_BYTES: u64 = 1 << 20;

fn nonzero_within(bytes: &[u8], offset: u64, len: u64) -> bool {
    let start = (offset as usize).min(bytes.len());
    let end = (offset.saturating_add(len) as usize).min(bytes.len());
    bytes[start..end].iter().any(|&b| b != 0)
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

#[cfg(test)]
mod tests {
    //! Corruption injection: every way the bytes under a shard can be damaged, and what recovery
    //! and reads make of it.

    use std::path::Path;

    use bytes::Bytes;

    use super::*;
    use crate::config::Compression;
    use crate::log::uring::Uring;
    use crate::log::NewRecord;

    const SEGMENT: u64 = 64 << 10;

    fn cfg() -> LogConfig {
        cfg_with(SEGMENT)
    }

    fn cfg_with(segment_size: u64) -> LogConfig {
        LogConfig { segment_size, compression: Compression::None, hot_tail_bytes: 0, track_unsynced: false }
    }

    fn data(i: u64) -> Bytes {
        Bytes::from(format!("record-{i:06}-").repeat(40))
    }

    /// A shard of `batches` single-record batches (one append each), closed. Returns the batch
    /// offsets per segment base.
    fn build(dir: &Path, batches: u64) -> Vec<(u64, Vec<(u64, u32)>)> {
        build_with(dir, batches, cfg())
    }

    fn build_with(dir: &Path, batches: u64, cfg: LogConfig) -> Vec<(u64, Vec<(u64, u32)>)> {
        let mut ring = Uring::new().unwrap();
        let mut log = ShardLog::empty(dir.to_path_buf(), 1, 0, cfg);
        for i in 0..batches {
            let records = vec![NewRecord { partition_key: "k".into(), data: data(i) }];
            log.append_durably(&mut ring, records, 1_000 + i as i64).unwrap();
        }
        log.segments
            .iter()
            .map(|s| {
                let mut offs = Vec::new();
                let mut off = SEGMENT_HEADER_LEN;
                while let Ok(Some(h)) = decode_batch_header(s.valid(), off) {
                    offs.push((off, h.len));
                    off += u64::from(h.len);
                }
                (s.base_ordinal, offs)
            })
            .collect()
    }

    fn seg_path(dir: &Path, base: u64) -> PathBuf {
        dir.join(crate::log::shard::segment_file_name(base))
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }

    /// Every record read back is the one written at its ordinal: nothing corrupt is ever served.
    fn read_all_checked(log: &mut ShardLog) -> Vec<u64> {
        let mut out = Vec::new();
        let mut from = log.trim_horizon();
        while from < log.next_ordinal() {
            match log.read(from, usize::MAX, usize::MAX) {
                Ok(r) if r.records.is_empty() => break,
                Ok(r) => {
                    for rec in &r.records {
                        assert_eq!(rec.data, data(rec.ordinal), "record {} is served corrupt", rec.ordinal);
                        out.push(rec.ordinal);
                    }
                    from = r.next;
                }
                Err(LogError::Damaged { to, .. }) => from = to,
                Err(e) => panic!("read failed: {e}"),
            }
        }
        out
    }

    fn corrupt(path: &Path, at: u64, f: impl Fn(&mut [u8])) {
        let mut bytes = std::fs::read(path).unwrap();
        f(&mut bytes[at as usize..]);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn truncation_anywhere_in_the_last_batch_is_a_torn_tail() {
        let src = tempfile::tempdir().unwrap();
        let layout = build(src.path(), 30);
        let (base, offs) = layout.last().unwrap().clone();
        let (off, len) = *offs.last().unwrap();
        let total = (layout.iter().map(|(_, o)| o.len()).sum::<usize>()) as u64;
        let cuts = [0, 1, 4, 8, 12, 16, 24, 32, 39, 40, 41, u64::from(len) / 2, u64::from(len) - 1];
        for cut in cuts {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(src.path(), dir.path());
            let f = std::fs::OpenOptions::new().write(true).open(seg_path(dir.path(), base)).unwrap();
            f.set_len(off + cut).unwrap();
            let (mut log, report) = ShardLog::open(dir.path().to_path_buf(), 1, 0, cfg(), Vec::new()).unwrap();
            assert!(report.damage.is_empty(), "cut at {cut}: {report:?}");
            assert_eq!(log.next_ordinal(), total - 1, "cut at {cut}");
            assert_eq!(read_all_checked(&mut log), (0..total - 1).collect::<Vec<_>>());
            if cut > 0 {
                assert!(report.torn_tail.is_some(), "cut at {cut} is reported");
            }
        }
    }

    #[test]
    fn flipped_bits_in_the_last_batch_are_cut_and_never_served() {
        let src = tempfile::tempdir().unwrap();
        let layout = build(src.path(), 12);
        let (base, offs) = layout.last().unwrap().clone();
        let (off, len) = *offs.last().unwrap();
        let total = offs.len() as u64 + layout[..layout.len() - 1].iter().map(|(_, o)| o.len() as u64).sum::<u64>();
        for at in [0, 5, 9, 13, 17, 25, 33, 41, u64::from(len) - 1] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(src.path(), dir.path());
            corrupt(&seg_path(dir.path(), base), off + at, |b| b[0] ^= 0x40);
            let (mut log, report) = ShardLog::open(dir.path().to_path_buf(), 1, 0, cfg(), Vec::new()).unwrap();
            let t = report.torn_tail.as_ref().expect("reported");
            assert_eq!(t.offset, off, "flip at {at}");
            assert_eq!(read_all_checked(&mut log), (0..total - 1).collect::<Vec<_>>());
        }
    }

    #[test]
    fn damage_inside_the_log_is_reported_with_the_readable_ranges() {
        let src = tempfile::tempdir().unwrap();
        let layout = build(src.path(), 20);
        assert_eq!(layout.len(), 1, "one segment");
        let (base, offs) = layout[0].clone();
        // Zero the whole page holding batch 7 (and whatever else shares it).
        let page = offs[7].0 / 4096 * 4096;
        corrupt(&seg_path(src.path(), base), page, |b| b[..4096].fill(0));
        let first_lost = offs.iter().position(|&(o, l)| o + u64::from(l) > page).unwrap() as u64;
        let first_kept = offs.iter().position(|&(o, _)| o >= page + 4096).unwrap() as u64;
        let (mut log, report) = ShardLog::open(src.path().to_path_buf(), 1, 0, cfg(), Vec::new()).unwrap();
        assert!(report.torn_tail.is_none(), "valid batches follow: not a torn tail");
        assert_eq!(report.damage.len(), 1, "{report:?}");
        assert_eq!(log.damaged()[0].from, first_lost);
        assert_eq!(log.damaged()[0].to, first_kept);
        assert_eq!(report.readable, format!("[0, {first_lost}) [{first_kept}, 20)"));
        // Reads stop at the damage, refuse inside it, and go on after it.
        let before = log.read(0, usize::MAX, usize::MAX).unwrap();
        assert_eq!(before.next, first_lost);
        assert!(matches!(log.read(first_lost, 10, usize::MAX), Err(LogError::Damaged { .. })));
        let after = log.read(first_kept, usize::MAX, usize::MAX).unwrap();
        assert_eq!(after.records.len() as u64, 20 - first_kept);
        let expected: Vec<u64> = (0..first_lost).chain(first_kept..20).collect();
        assert_eq!(read_all_checked(&mut log), expected);
    }

    #[test]
    fn damage_behind_the_index_checkpoint_is_found_by_reads() {
        let src = tempfile::tempdir().unwrap();
        let big = cfg_with(1 << 20);
        let layout = build_with(src.path(), 200, big);
        assert_eq!(layout.len(), 1);
        let (base, offs) = layout[0].clone();
        // Reopen once to learn the index a running daemon would have persisted.
        let (log, _) = ShardLog::open(src.path().to_path_buf(), 1, 0, big, Vec::new()).unwrap();
        let index = log.sparse.clone();
        drop(log);
        assert!(index.len() >= 2, "an index checkpoint after the first batch");
        // Corrupt batch 2, which lies before the last checkpoint: recovery does not re-read it.
        corrupt(&seg_path(src.path(), base), offs[2].0 + 50, |b| b[0] ^= 1);
        let (mut log, report) = ShardLog::open(src.path().to_path_buf(), 1, 0, big, index).unwrap();
        assert!(report.damage.is_empty());
        let first = log.read(0, usize::MAX, usize::MAX).unwrap();
        assert_eq!(first.records.len(), 2, "served up to the damage");
        match log.read(2, 10, usize::MAX) {
            Err(LogError::Damaged { from: 2, to: 3, .. }) => {}
            other => panic!("expected damage 2..3, got {:?}", other.map(|r| r.records.len())),
        }
        let expected: Vec<u64> = (0..2).chain(3..200).collect();
        assert_eq!(read_all_checked(&mut log), expected);
    }

    #[test]
    fn a_missing_or_unreadable_segment_in_the_middle_is_a_gap() {
        let src = tempfile::tempdir().unwrap();
        let layout = build(src.path(), 400);
        assert!(layout.len() >= 3, "several segments");
        let (mid_base, _) = layout[1];
        let next_base = layout[2].0;
        let total: u64 = layout.iter().map(|(_, o)| o.len() as u64).sum();
        for damage in ["delete", "bad header"] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(src.path(), dir.path());
            let path = seg_path(dir.path(), mid_base);
            match damage {
                "delete" => std::fs::remove_file(&path).unwrap(),
                _ => corrupt(&path, 10, |b| b[0] ^= 0xff),
            }
            let (mut log, report) = ShardLog::open(dir.path().to_path_buf(), 1, 0, cfg(), Vec::new()).unwrap();
            assert!(!report.damage.is_empty(), "{damage}: reported");
            assert_eq!(log.next_ordinal(), total);
            if damage == "delete" {
                assert_eq!(log.damaged()[0].from, mid_base);
                assert_eq!(log.damaged()[0].to, next_base);
                let expected: Vec<u64> = (0..mid_base).chain(next_base..total).collect();
                assert_eq!(read_all_checked(&mut log), expected);
            } else {
                // A bad header alone loses nothing: the batches carry their own checksums.
                assert!(log.damaged().is_empty(), "{:?}", log.damaged());
                assert_eq!(read_all_checked(&mut log), (0..total).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn a_half_written_last_segment_is_removed() {
        let src = tempfile::tempdir().unwrap();
        let layout = build(src.path(), 10);
        let total: u64 = layout.iter().map(|(_, o)| o.len() as u64).sum();
        for (name, bytes) in [("short", vec![b'S'; 100]), ("zero header", vec![0u8; 8192])] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(src.path(), dir.path());
            std::fs::write(seg_path(dir.path(), total), bytes).unwrap();
            let (mut log, report) = ShardLog::open(dir.path().to_path_buf(), 1, 0, cfg(), Vec::new()).unwrap();
            assert_eq!(report.removed_files.len(), 1, "{name}");
            assert!(report.damage.is_empty(), "{name}");
            assert_eq!(read_all_checked(&mut log).len() as u64, total);
        }
    }

    #[test]
    fn an_index_entry_pointing_past_the_log_is_dropped() {
        let src = tempfile::tempdir().unwrap();
        build(src.path(), 10);
        let bogus = IndexEntry { ordinal: 50, segment_base: 0, offset: 1 << 15, ts_ms: 5 };
        let (mut log, report) = ShardLog::open(src.path().to_path_buf(), 1, 0, cfg(), vec![bogus]).unwrap();
        assert_eq!(report.stale_index, vec![bogus]);
        assert_eq!(read_all_checked(&mut log).len(), 10);
    }

    #[test]
    fn readable_ranges_text() {
        let d = |from, to| Damage { from, to, segment_base: 0, offset: 0, reason: String::new() };
        assert_eq!(readable_ranges(0, 10, &[d(3, 5)]), "[0, 3) [5, 10)");
        assert_eq!(readable_ranges(0, 10, &[d(0, 5)]), "[5, 10)");
        assert_eq!(readable_ranges(0, 10, &[d(3, 10)]), "[0, 3)");
    }
}
