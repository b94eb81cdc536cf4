//! Writes and fdatasyncs through io_uring. One ring per core worker: every append of a group commit
//! is submitted at once, each write linked to the fdatasync of its file, and the worker waits for
//! the whole group before it acknowledges anything.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types, IoUring};

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
        Ok(Uring {
            ring: IoUring::new(RING_ENTRIES)?,
        })
    }

    /// Writes every op in full and, when `sync`, fdatasyncs its file once the write is done. The
    /// result of op `i` is `results[i]`; a failed fdatasync fails its op (the data must then be
    /// treated as not durable: the page cache may already have dropped it).
    pub fn write_all(&mut self, ops: &[WriteOp<'_>], sync: bool) -> Vec<io::Result<()>> {
        let mut results: Vec<io::Result<()>> = (0..ops.len()).map(|_| Ok(())).collect();
        let per_chunk = (RING_ENTRIES / 2) as usize;
        for (chunk_i, chunk) in ops.chunks(per_chunk).enumerate() {
            let base = chunk_i * per_chunk;
            let mut short: Vec<(usize, usize)> = Vec::new();
            if let Err(e) = self.submit_chunk(chunk, base, sync, &mut results, &mut short) {
                for r in &mut results[base..base + chunk.len()] {
                    *r = Err(io::Error::new(e.kind(), e.to_string()));
                }
                continue;
            }
            // A short write breaks the link (its fdatasync is cancelled): finish it by hand.
            for (i, written) in short {
                let op = &ops[i];
                results[i] = finish_write(op, written, sync);
            }
        }
        results
    }

    fn submit_chunk(
        &mut self,
        chunk: &[WriteOp<'_>],
        base: usize,
        sync: bool,
        results: &mut [io::Result<()>],
        short: &mut Vec<(usize, usize)>,
    ) -> io::Result<()> {
        let mut expected = 0usize;
        {
            let mut sq = self.ring.submission();
            for (j, op) in chunk.iter().enumerate() {
                let i = (base + j) as u64;
                let len =
                    u32::try_from(op.buf.len()).map_err(|_| io::Error::other("write too large"))?;
                let write = opcode::Write::new(types::Fd(op.fd), op.buf.as_ptr(), len)
                    .offset(op.offset)
                    .build()
                    .user_data(i << 1);
                let write = if sync {
                    write.flags(squeue::Flags::IO_LINK)
                } else {
                    write
                };
                // SAFETY: the buffer outlives the submission: this function waits for every
                // completion of the chunk before returning.
                unsafe {
                    sq.push(&write)
                        .map_err(|_| io::Error::other("submission queue full"))?
                };
                expected += 1;
                if sync {
                    let fsync = opcode::Fsync::new(types::Fd(op.fd))
                        .flags(types::FsyncFlags::DATASYNC)
                        .build()
                        .user_data((i << 1) | 1);
                    // SAFETY: no buffer is referenced.
                    unsafe {
                        sq.push(&fsync)
                            .map_err(|_| io::Error::other("submission queue full"))?
                    };
                    expected += 1;
                }
            }
        }
        let mut done = 0usize;
        while done < expected {
            self.ring.submit_and_wait(expected - done)?;
            for cqe in self.ring.completion() {
                done += 1;
                let i = (cqe.user_data() >> 1) as usize;
                let is_sync = cqe.user_data() & 1 == 1;
                let res = cqe.result();
                let op_len = chunk[i - base].buf.len();
                if !is_sync {
                    if res < 0 {
                        results[i] = Err(io::Error::from_raw_os_error(-res));
                    } else if (res as usize) < op_len {
                        short.push((i, res as usize));
                    }
                } else if res < 0 && res != -libc::ECANCELED && results[i].is_ok() {
                    results[i] = Err(io::Error::from_raw_os_error(-res));
                }
            }
        }
        // A cancelled fdatasync after a failed write leaves the write's error in place.
        Ok(())
    }

    /// fdatasyncs every file (the interval durability mode's periodic sync).
    pub fn sync_all(&mut self, fds: &[RawFd]) -> Vec<io::Result<()>> {
        fds.iter().map(|&fd| fdatasync(fd)).collect()
    }
}

fn finish_write(op: &WriteOp<'_>, mut written: usize, sync: bool) -> io::Result<()> {
    while written < op.buf.len() {
        let rest = &op.buf[written..];
        // SAFETY: `rest` is a valid slice for the duration of the call.
        let n = unsafe {
            libc::pwrite(
                op.fd,
                rest.as_ptr().cast(),
                rest.len(),
                (op.offset + written as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write returned zero",
            ));
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
            WriteOp {
                fd: f.as_raw_fd(),
                offset: 0,
                buf: b"hello ",
            },
            WriteOp {
                fd: g.as_raw_fd(),
                offset: 3,
                buf: b"xyz",
            },
        ];
        let res = ring.write_all(&ops, true);
        assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
        let ops = [WriteOp {
            fd: f.as_raw_fd(),
            offset: 6,
            buf: b"world",
        }];
        assert!(ring.write_all(&ops, false)[0].is_ok());
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"hello world");
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"\0\0\0xyz");
    }

    #[test]
    fn a_bad_descriptor_fails_only_its_op() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(dir.path().join("a"))
            .unwrap();
        let mut ring = Uring::new().unwrap();
        let ops = [
            WriteOp {
                fd: f.as_raw_fd(),
                offset: 0,
                buf: b"ok",
            },
            WriteOp {
                fd: 987_654,
                offset: 0,
                buf: b"no",
            },
        ];
        let res = ring.write_all(&ops, true);
        assert!(res[0].is_ok());
        assert!(res[1].is_err());
    }
}
