//! Writes and fdatasyncs through io_uring. One ring per core worker: every append of a group commit
//! is submitted at once, each write linked to the fdatasync of its file, and the worker waits for
//! the whole group before it acknowledges anything.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types, IoUring};

use super::faults;

/// Submission entries per ring; a group larger than half of it is submitted in chunks.
pub const RING_ENTRIES: u32 = 256;

pub struct WriteOp<'a> {
    pub fd: RawFd,
    pub offset: u64,
    pub buf: &'a [u8],
}

pub struct Uring {
    ring: IoUring,
}

impl Uring {
    pub fn new() -> io::Result<Uring> {
        Ok(Uring { ring: IoUring::new(RING_ENTRIES)? })
    }

    /// Writes every op in full and, when `sync`, fdatasyncs its file once the write is done. The
    /// result of op `i` is `results[i]`; a failed fdatasync fails its op (the data must then be
    /// treated as not durable: the page cache may already have dropped it).
    pub fn write_all(&mut self, ops: &[WriteOp<'_>], sync: bool) -> Vec<io::Result<()>> {
        if let Some(errno) = faults::write_fault() {
            return ops.iter().map(|_| Err(io::Error::from_raw_os_error(errno))).collect();
        }
        // An injected sync fault: the writes land in the page cache, then the sync "fails".
        let sync_fault = if sync { faults::sync_fault() } else { None };
        let sync = sync && sync_fault.is_none();
        let mut results: Vec<io::Result<()>> = (0..ops.len()).map(|_| Ok(())).collect();
        let per_chunk = (RING_ENTRIES / 2) as usize;
        for (chunk_i, chunk) in ops.chunks(per_chunk).enumerate() {
            let base = chunk_i * per_chunk;
            let short = self.submit_chunk(chunk, base, sync, &mut results);
            // A short write breaks the link (its fdatasync is cancelled): finish it by hand.
            for (i, written) in short {
                results[i] = finish_write(&ops[i], written, sync);
            }
        }
        if let Some(errno) = sync_fault {
            for r in &mut results {
                *r = Err(io::Error::from_raw_os_error(errno));
            }
        }
        results
    }

    /// Submits one chunk and waits for every one of its completions. It never returns while the
    /// kernel may still read a buffer of the chunk: the buffers belong to the caller and are freed
    /// once this returns.
    fn submit_chunk(
        &mut self,
        chunk: &[WriteOp<'_>],
        base: usize,
        sync: bool,
        results: &mut [io::Result<()>],
    ) -> Vec<(usize, usize)> {
        let mut short = Vec::new();
        let mut expected = 0usize;
        {
            let mut sq = self.ring.submission();
            for (j, op) in chunk.iter().enumerate() {
                let i = (base + j) as u64;
                let Ok(len) = u32::try_from(op.buf.len()) else {
                    results[base + j] = Err(io::Error::other("write larger than 4 GiB"));
                    continue;
                };
                let write = opcode::Write::new(types::Fd(op.fd), op.buf.as_ptr(), len)
                    .offset(op.offset)
                    .build()
                    .user_data(i << 1);
                let write = if sync { write.flags(squeue::Flags::IO_LINK) } else { write };
                // SAFETY: the buffer outlives the submission: this function waits for every
                // completion of the chunk before returning.
                unsafe { sq.push(&write).expect("a chunk fills at most half of an empty ring") };
                expected += 1;
                if sync {
                    let fsync = opcode::Fsync::new(types::Fd(op.fd))
                        .flags(types::FsyncFlags::DATASYNC)
                        .build()
                        .user_data((i << 1) | 1);
                    // SAFETY: no buffer is referenced.
                    unsafe { sq.push(&fsync).expect("a chunk fills at most half of an empty ring") };
                    expected += 1;
                }
            }
        }
        let mut done = 0usize;
        while done < expected {
            if let Err(e) = self.ring.submit_and_wait(expected - done) {
                match e.raw_os_error() {
                    // Interrupted, or the completion queue needs draining first: go round again.
                    Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY) => {}
                    _ => {
                        // The ring itself is broken. Returning would free buffers the kernel may
                        // still read, and nothing in the chunk can be called durable: stop here.
                        tracing::error!(error = %e, "io_uring_enter failed; aborting to protect acknowledged data");
                        std::process::abort();
                    }
                }
            }
            for cqe in self.ring.completion() {
                done += 1;
                let i = (cqe.user_data() >> 1) as usize;
                let Some(op) = i.checked_sub(base).and_then(|j| chunk.get(j)) else {
                    tracing::error!(user_data = cqe.user_data(), "completion for an unknown submission");
                    continue;
                };
                let is_sync = cqe.user_data() & 1 == 1;
                let res = cqe.result();
                if !is_sync {
                    if res < 0 {
                        results[i] = Err(io::Error::from_raw_os_error(-res));
                    } else if (res as usize) < op.buf.len() {
                        short.push((i, res as usize));
                    }
                } else if res < 0 && res != -libc::ECANCELED && results[i].is_ok() {
                    // A cancelled fdatasync after a failed write leaves the write's error in place.
                    results[i] = Err(io::Error::from_raw_os_error(-res));
                }
            }
        }
        short
    }

    /// fdatasyncs every file (the interval durability mode's periodic sync).
    pub fn sync_all(&mut self, fds: &[RawFd]) -> Vec<io::Result<()>> {
        if let Some(errno) = faults::sync_fault() {
            return fds.iter().map(|_| Err(io::Error::from_raw_os_error(errno))).collect();
        }
        fds.iter().map(|&fd| fdatasync(fd)).collect()
    }
}

/// [`Uring::write_all`] with plain `pwrite` and `fdatasync` on the calling thread, one op after
/// another (injected faults included). For writes that gain nothing from the ring: one file, or
/// buffered writes without syncs, which io_uring would hand to its io-wq threads, costing a
/// thread switch for each, and no parallelism the page cache copy needs.
pub fn write_all_blocking(ops: &[WriteOp<'_>], sync: bool) -> Vec<io::Result<()>> {
    if let Some(errno) = faults::write_fault() {
        return ops.iter().map(|_| Err(io::Error::from_raw_os_error(errno))).collect();
    }
    let sync_fault = if sync { faults::sync_fault() } else { None };
    ops.iter()
        .map(|op| match sync_fault {
            Some(errno) => finish_write(op, 0, false).and(Err(io::Error::from_raw_os_error(errno))),
            None => finish_write(op, 0, sync),
        })
        .collect()
}

fn finish_write(op: &WriteOp<'_>, mut written: usize, sync: bool) -> io::Result<()> {
    while written < op.buf.len() {
        let rest = &op.buf[written..];
        // SAFETY: `rest` is a valid slice for the duration of the call.
        let n = unsafe {
            libc::pwrite(op.fd, rest.as_ptr().cast(), rest.len(), (op.offset + written as u64) as libc::off_t)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned zero"));
        }
        written += n as usize;
    }
    if sync {
        fdatasync(op.fd)?;
    }
    Ok(())
}

pub fn fdatasync(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor the caller owns.
    if unsafe { libc::fdatasync(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn writes_and_syncs_land_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("a"))
            .unwrap();
        let g = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("b"))
            .unwrap();
        let mut ring = Uring::new().unwrap();
        let ops = [
            WriteOp { fd: f.as_raw_fd(), offset: 0, buf: b"hello " },
            WriteOp { fd: g.as_raw_fd(), offset: 3, buf: b"xyz" },
        ];
        let res = ring.write_all(&ops, true);
        assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
        let ops = [WriteOp { fd: f.as_raw_fd(), offset: 6, buf: b"world" }];
        assert!(ring.write_all(&ops, false)[0].is_ok());
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"hello world");
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"\0\0\0xyz");
    }

    #[test]
    fn a_bad_descriptor_fails_only_its_op() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(dir.path().join("a")).unwrap();
        let mut ring = Uring::new().unwrap();
        let ops =
            [WriteOp { fd: f.as_raw_fd(), offset: 0, buf: b"ok" }, WriteOp { fd: 987_654, offset: 0, buf: b"no" }];
        let res = ring.write_all(&ops, true);
        assert!(res[0].is_ok());
        assert!(res[1].is_err());
    }
}
