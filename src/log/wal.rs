//! The write-ahead log: one per core worker, so that a group commit that writes to several shard
//! files costs one write and one fdatasync instead of one fdatasync per file.
//!
//! Owns every byte under `wal/`. A worker in `sync` durability whose group touches at least
//! `storage.wal_min_files` segment files writes the group's segment writes, byte for byte, as one
//! group record to its log file, fdatasyncs that, then writes the segments without syncing them,
//! and only then acknowledges. A group that touches fewer files is written and synced in its
//! segments as before, with no log record. The segments' own format does not change: the log is
//! redo for their bytes.
//!
//! # On-disk format (data directory format version 3)
//!
//! `wal/core-<worker>/<sequence, 20 digits>.wal`, each a sequence of group records (integers
//! little-endian):
//!
//! ```text
//! magic "SLWG" (or "SLWV": void, skipped) u32 | len u32 (whole record) | crc32c u32 (of every byte
//! after this field) | file sequence u64 | write count u32 |
//! per write  stream id u64 | shard index u32 | segment base ordinal u64 | offset u64 | len u32 | bytes
//! ```
//!
//! # Recovery and checkpoints
//! - At start, before any shard is opened, [`replay`] applies every valid record of every log file
//!   in sequence order (a file's records up to the first that does not verify: a torn tail, never
//!   acknowledged) to its segment, fdatasyncs the segments it wrote, and removes the log files. A
//!   write to a segment or shard that no longer exists (retention, a deleted stream) is skipped.
//!   Writes are idempotent: a record's bytes are what its segment holds at that offset, or must.
//! - When a log file passes [`WAL_ROTATE_BYTES`], the worker starts the next one and hands the
//!   old one, with the segments written under it, to a checkpoint thread that fdatasyncs those
//!   segments and then renames the file `<sequence>.spare`. If a sync fails, the file stays and is
//!   replayed at the next start. Meanwhile that thread starts writeback of the current file's
//!   segments every [`WRITEBACK_INTERVAL`], so the checkpoint is not one burst of writes.
//! - Log files are recycled: the next file is a spare renamed, whose blocks are already written,
//!   so that the log's fdatasync flushes data only (a file that grows, or whose space is merely
//!   allocated, makes every fdatasync commit metadata as well). A recycled file's old records
//!   carry an older sequence number than its name: replay stops at the first of them. Spares
//!   stay across restarts; a worker's first two files, before any spare exists, grow.
//! - A group whose log record is durable but whose segment writes fail is not acknowledged: its
//!   record is voided (its magic overwritten with "SLWV", durably) so that replay skips it; if
//!   even that fails, the process aborts rather than risk replaying writes it refused.
//!
//! Limits: a group record is at most 4 GiB (groups are bounded far below that).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::shard::sync_dir;

const MAGIC: &[u8; 4] = b"SLWG";
const VOID: &[u8; 4] = b"SLWV";
const RECORD_HEADER_LEN: usize = 24;
const WRITE_HEADER_LEN: usize = 32;

/// A log file is closed and checkpointed once it holds this many bytes.
pub const WAL_ROTATE_BYTES: u64 = 64 << 20;

/// The directory of a shard's segments under the data directory.
pub fn shard_dir(data_dir: &Path, stream_id: u64, shard_index: u32) -> PathBuf {
    data_dir.join("streams").join(format!("{stream_id:016}")).join(format!("{shard_index:06}"))
}

fn wal_root(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// One segment write of a group, as the log records it.
pub struct LoggedWrite<'a> {
    pub stream_id: u64,
    pub shard_index: u32,
    pub segment_base: u64,
    pub offset: u64,
    pub bytes: &'a [u8],
}

/// Encodes one group record of log file `seq`.
pub fn encode_group(seq: u64, writes: &[LoggedWrite<'_>], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(writes.len() as u32).to_le_bytes());
    for w in writes {
        out.extend_from_slice(&w.stream_id.to_le_bytes());
        out.extend_from_slice(&w.shard_index.to_le_bytes());
        out.extend_from_slice(&w.segment_base.to_le_bytes());
        out.extend_from_slice(&w.offset.to_le_bytes());
        out.extend_from_slice(&(w.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(w.bytes);
    }
    let len = (out.len() - start) as u32;
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&out[start + 12..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// What log file `seq` holds: its valid group records' writes, in order, up to the first record
/// that does not verify or belongs to an earlier use of the file. Void records are skipped.
fn decode_file(bytes: &[u8], seq: u64) -> Vec<LoggedWrite<'_>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + RECORD_HEADER_LEN <= bytes.len() {
        let magic = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let Some(end) = at.checked_add(len).filter(|&e| e <= bytes.len() && len >= RECORD_HEADER_LEN) else { break };
        if magic == VOID {
            at = end;
            continue;
        }
        let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        if magic != MAGIC || crc32c::crc32c(&bytes[at + 12..end]) != crc {
            break;
        }
        if u64::from_le_bytes(bytes[at + 12..at + 20].try_into().expect("8 bytes")) != seq {
            break;
        }
        let Some(writes) = decode_writes(&bytes[at + 20..end]) else { break };
        out.extend(writes);
        at = end;
    }
    out
}

fn decode_writes(body: &[u8]) -> Option<Vec<LoggedWrite<'_>>> {
    let count = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let mut at = 4usize;
    let mut out = Vec::with_capacity(count.min(1 << 16));
    let u64_at = |i: usize| body.get(i..i + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let u32_at = |i: usize| body.get(i..i + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    for _ in 0..count {
        let stream_id = u64_at(at)?;
        let shard_index = u32_at(at + 8)?;
        let segment_base = u64_at(at + 12)?;
        let offset = u64_at(at + 20)?;
        let len = u32_at(at + 28)? as usize;
        let start = at + WRITE_HEADER_LEN;
        let bytes = body.get(start..start.checked_add(len)?)?;
        out.push(LoggedWrite { stream_id, shard_index, segment_base, offset, bytes });
        at = start + len;
    }
    (at == body.len()).then_some(out)
}

/// The log files under `wal/`, per worker directory, in sequence order.
fn log_files(data_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let root = wal_root(data_dir);
    let mut files = Vec::new();
    let dirs = match std::fs::read_dir(&root) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e),
    };
    for dir in dirs {
        let dir = dir?.path();
        if !dir.is_dir() {
            continue;
        }
        let mut in_dir: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        in_dir.sort();
        files.extend(in_dir);
    }
    Ok(files)
}

/// What [`replay`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub files: usize,
    pub writes: usize,
    /// Writes to segments that no longer exist.
    pub skipped: usize,
}

/// Applies every worker's log to the segments and removes the logs (see the module doc). Runs
/// before any shard is opened.
pub fn replay(data_dir: &Path) -> io::Result<ReplayReport> {
    let files = log_files(data_dir)?;
    let mut report = ReplayReport { files: files.len(), ..Default::default() };
    let mut open: HashMap<PathBuf, Option<File>> = HashMap::new();
    for path in &files {
        let bytes = std::fs::read(path)?;
        let Some(seq) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()) else { continue };
        for w in decode_file(&bytes, seq) {
            let seg_path =
                shard_dir(data_dir, w.stream_id, w.shard_index).join(super::shard::segment_file_name(w.segment_base));
            let file =
                open.entry(seg_path.clone()).or_insert_with(|| OpenOptions::new().write(true).open(&seg_path).ok());
            match file {
                Some(f) => {
                    f.write_all_at(w.bytes, w.offset)?;
                    report.writes += 1;
                }
                None => report.skipped += 1,
            }
        }
    }
    for f in open.values().flatten() {
        f.sync_data()?;
    }
    for path in &files {
        std::fs::remove_file(path)?;
    }
    if !files.is_empty() {
        for dir in files.iter().filter_map(|p| p.parent()).collect::<std::collections::BTreeSet<_>>() {
            sync_dir(dir)?;
        }
    }
    Ok(report)
}

/// What a worker tells its checkpoint thread.
enum Checkpoint {
    /// A segment written under the current log file: its dirty pages are written back steadily
    /// ([`WRITEBACK_INTERVAL`]), so that the checkpoint finds little left to sync.
    Track(Arc<OwnedFd>),
    /// A closed log file and the segments written under it, to be synced before it goes.
    Close { path: PathBuf, segments: Vec<Arc<OwnedFd>> },
}

/// How often the checkpoint thread starts writeback of the segments written under the current
/// log file. Without it their dirty pages would go to disk in one burst at the checkpoint, and
/// the log's own fdatasyncs, which acknowledgements wait for, would queue behind it.
const WRITEBACK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// A worker's open log file.
pub struct Wal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    seq: u64,
    /// Bytes of valid records in the file; the next record goes here.
    len: u64,
    /// The segments written under this file, by (stream, shard, segment base).
    segments: HashMap<(u64, u32, u64), Arc<OwnedFd>>,
    checkpoints: crossbeam_channel::Sender<Checkpoint>,
    /// Checkpointed files, ready to be the next file.
    spares: crossbeam_channel::Receiver<PathBuf>,
    rotate_bytes: u64,
    /// The group record being written (reused).
    pub buf: Vec<u8>,
}

impl Wal {
    /// Opens worker `worker`'s log directory (emptied of logs by [`replay`]) and starts a file.
    pub fn open(data_dir: &Path, worker: usize) -> io::Result<Wal> {
        Wal::open_with(data_dir, worker, WAL_ROTATE_BYTES)
    }

    /// [`Wal::open`] with files closed at `rotate_bytes` instead of [`WAL_ROTATE_BYTES`].
    pub fn open_with(data_dir: &Path, worker: usize, rotate_bytes: u64) -> io::Result<Wal> {
        let dir = wal_root(data_dir).join(format!("core-{worker}"));
        std::fs::create_dir_all(&dir)?;
        sync_dir(&wal_root(data_dir))?;
        let (checkpoints, rx) = crossbeam_channel::unbounded::<Checkpoint>();
        let (spare_tx, spares) = crossbeam_channel::unbounded::<PathBuf>();
        let mut left: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "spare"))
            .collect();
        left.sort();
        for p in left {
            let _ = spare_tx.send(p);
        }
        std::thread::Builder::new()
            .name(format!("sluice-wal-{worker}"))
            .spawn(move || checkpoint_loop(rx, spare_tx))?;
        let (file, path) = create(&dir, 0)?;
        Ok(Wal {
            dir,
            file,
            path,
            seq: 0,
            len: 0,
            segments: HashMap::new(),
            checkpoints,
            spares,
            rotate_bytes,
            buf: Vec::new(),
        })
    }

    /// The sequence number of the current file (its records carry it).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Where the next record goes.
    pub fn offset(&self) -> u64 {
        self.len
    }

    /// A record of `len` bytes at [`Wal::offset`] is durable; `segment` (stream, shard, base, fd)
    /// are the files it wrote.
    pub fn committed(&mut self, len: u64, segments: impl IntoIterator<Item = ((u64, u32, u64), RawFd)>) {
        self.len += len;
        for (key, fd) in segments {
            if let std::collections::hash_map::Entry::Vacant(v) = self.segments.entry(key) {
                // SAFETY: `fd` is an open segment descriptor; the clone is owned from here on.
                match unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned() {
                    Ok(owned) => {
                        let owned = Arc::new(owned);
                        let _ = self.checkpoints.send(Checkpoint::Track(owned.clone()));
                        v.insert(owned);
                    }
                    Err(e) => tracing::error!(error = %e, "could not keep a segment for the log checkpoint"),
                }
            }
        }
    }

    /// A record written at [`Wal::offset`] must never be replayed: its segment writes failed.
    /// Returns an error if that could not be made durable.
    pub fn void(&mut self, len: u64) -> io::Result<()> {
        self.file.write_all_at(VOID, self.len)?;
        self.file.sync_data()?;
        self.len += len;
        Ok(())
    }

    /// Bytes past the last good record (a failed write) are cut, so they are never read as one.
    pub fn cut(&mut self) -> io::Result<()> {
        self.file.set_len(self.len)?;
        self.file.sync_all()
    }

    /// Starts the next file when this one is full, handing this one to the checkpoint thread.
    pub fn rotate_if_full(&mut self) {
        if self.len < self.rotate_bytes {
            return;
        }
        let next = match self.spares.try_recv() {
            Ok(spare) => reuse(&self.dir, &spare, self.seq + 1),
            Err(_) => create(&self.dir, self.seq + 1),
        };
        match next {
            Ok((file, path)) => {
                let old = std::mem::replace(&mut self.path, path);
                self.file = file;
                self.seq += 1;
                self.len = 0;
                let segments = std::mem::take(&mut self.segments).into_values().collect();
                let _ = self.checkpoints.send(Checkpoint::Close { path: old, segments });
            }
            Err(e) => {
                tracing::error!(error = %e, "could not start the next write-ahead log file; the current one grows")
            }
        }
    }
}

/// Makes a spare file log file `seq`, keeping its written blocks.
fn reuse(dir: &Path, spare: &Path, seq: u64) -> io::Result<(File, PathBuf)> {
    let path = dir.join(file_name(seq));
    std::fs::rename(spare, &path)?;
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    sync_dir(dir)?;
    Ok((file, path))
}

fn create(dir: &Path, seq: u64) -> io::Result<(File, PathBuf)> {
    let path = dir.join(file_name(seq));
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    sync_dir(dir)?;
    Ok((file, path))
}

fn checkpoint_loop(rx: crossbeam_channel::Receiver<Checkpoint>, spares: crossbeam_channel::Sender<PathBuf>) {
    let mut tracked: Vec<Arc<OwnedFd>> = Vec::new();
    loop {
        match rx.recv_timeout(WRITEBACK_INTERVAL) {
            Ok(Checkpoint::Track(fd)) => tracked.push(fd),
            Ok(Checkpoint::Close { path, segments }) => {
                // The segments of the next file are tracked anew as the worker writes them.
                tracked.clear();
                let synced = segments.iter().all(|fd| match super::uring::fdatasync(fd.as_raw_fd()) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, log = %path.display(), "checkpoint sync failed; the log is kept for replay");
                        false
                    }
                });
                if synced {
                    let spare = path.with_extension("spare");
                    match std::fs::rename(&path, &spare) {
                        Ok(()) => {
                            let _ = spares.send(spare);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, log = %path.display(), "could not retire a checkpointed log")
                        }
                    }
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                for fd in &tracked {
                    // SAFETY: plain syscall on an open descriptor; a hint, so its result is not
                    // needed (the checkpoint's fdatasync is what counts).
                    unsafe { libc::sync_file_range(fd.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write<'a>(stream_id: u64, base: u64, offset: u64, bytes: &'a [u8]) -> LoggedWrite<'a> {
        LoggedWrite { stream_id, shard_index: 3, segment_base: base, offset, bytes }
    }

    #[test]
    fn records_decode_up_to_the_first_damaged_one_and_skip_void_ones() {
        let mut file = Vec::new();
        encode_group(7, &[write(1, 0, 4096, b"abc"), write(2, 5, 4100, b"")], &mut file);
        let second = file.len();
        encode_group(7, &[write(1, 0, 4099, b"defg")], &mut file);
        let third = file.len();
        encode_group(7, &[write(9, 0, 1, b"void")], &mut file);
        file[third..third + 4].copy_from_slice(VOID);
        encode_group(7, &[write(1, 0, 4103, b"h")], &mut file);
        let whole = file.len();
        // What follows is left from the file's earlier use.
        encode_group(6, &[write(1, 0, 9000, b"stale")], &mut file);
        let got: Vec<(u64, u64, Vec<u8>)> =
            decode_file(&file, 7).iter().map(|w| (w.stream_id, w.offset, w.bytes.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (1, 4096, b"abc".to_vec()),
                (2, 4100, Vec::new()),
                (1, 4099, b"defg".to_vec()),
                (1, 4103, b"h".to_vec())
            ]
        );
        // Any damage in the second record ends the file there; every truncation too.
        for i in second..third {
            let mut bad = file.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode_file(&bad, 7).len(), 2, "byte {i}");
        }
        assert!(decode_file(&file, 6).is_empty());
        for n in 0..whole {
            let got = decode_file(&file[..n], 7).len();
            assert!(got <= 4, "{n}");
            if n < second {
                assert_eq!(got, 0, "{n}");
            }
        }
    }

    /// A data directory with segment 0 of stream 1, shard 3: `len` zero bytes.
    fn with_segment(len: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let seg_dir = shard_dir(dir.path(), 1, 3);
        std::fs::create_dir_all(&seg_dir).unwrap();
        let seg = seg_dir.join(super::super::shard::segment_file_name(0));
        std::fs::write(&seg, vec![0u8; len]).unwrap();
        (dir, seg)
    }

    #[test]
    fn replay_writes_existing_segments_skips_missing_ones_and_removes_the_logs() {
        let (dir, seg) = with_segment(8);
        let logs = wal_root(dir.path()).join("core-0");
        std::fs::create_dir_all(&logs).unwrap();
        let mut a = Vec::new();
        encode_group(0, &[write(1, 0, 2, b"xy"), write(2, 0, 0, b"gone")], &mut a);
        std::fs::write(logs.join(file_name(0)), &a).unwrap();
        let mut b = Vec::new();
        encode_group(1, &[write(1, 0, 3, b"Z!")], &mut b);
        encode_group(0, &[write(1, 0, 0, b"stale")], &mut b);
        b.extend_from_slice(b"SLWG\xff\xff"); // a torn record
        std::fs::write(logs.join(file_name(1)), &b).unwrap();
        let report = replay(dir.path()).unwrap();
        assert_eq!(report, ReplayReport { files: 2, writes: 2, skipped: 1 });
        assert_eq!(std::fs::read(&seg).unwrap(), b"\0\0xZ!\0\0\0");
        assert!(log_files(dir.path()).unwrap().is_empty());
        assert_eq!(replay(dir.path()).unwrap(), ReplayReport::default());
    }

    fn log_record(wal: &mut Wal, offset: u64, bytes: &[u8]) -> u64 {
        let mut rec = Vec::new();
        encode_group(wal.seq(), &[write(1, 0, offset, bytes)], &mut rec);
        wal.file.write_all_at(&rec, wal.offset()).unwrap();
        wal.committed(rec.len() as u64, []);
        rec.len() as u64
    }

    #[test]
    fn files_rotate_into_recycled_spares_whose_old_records_are_never_replayed() {
        let (dir, seg) = with_segment(16);
        let mut wal = Wal::open_with(dir.path(), 0, 256).unwrap();
        let wait = |p: &Path| {
            for _ in 0..500 {
                if p.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("{} never appeared", p.display());
        };
        // File 0 fills and is closed: it goes to the checkpoint thread and comes back as a spare.
        log_record(&mut wal, 0, &[b'a'; 300]);
        wal.rotate_if_full();
        assert_eq!(wal.seq(), 1);
        wait(&wal.dir.join("00000000000000000000.spare"));
        // File 1 is new (there was no spare yet); file 2 is file 0 recycled, with its old record.
        log_record(&mut wal, 0, &[b'b'; 300]);
        wal.rotate_if_full();
        assert_eq!(wal.seq(), 2);
        std::thread::sleep(std::time::Duration::from_millis(100));
        log_record(&mut wal, 4, b"new");
        wal.rotate_if_full();
        assert!(wal.path.ends_with("00000000000000000002.wal"));
        assert!(std::fs::metadata(&wal.path).unwrap().len() > 300, "file 2 is a recycled file");
        drop(wal);
        // Only file 2's own record (and file 1's, if not yet checkpointed) is replayed.
        replay(dir.path()).unwrap();
        let got = std::fs::read(&seg).unwrap();
        assert_eq!(&got[4..7], b"new");
        assert_ne!(got[7], b'a', "the recycled file's old record is not replayed");
    }
}
