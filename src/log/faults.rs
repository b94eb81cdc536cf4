//! Fault injection on the write path: a seam for tests and for people who want to see what the
//! daemon does when the disk fails.
//!
//! Faults are process-wide and off unless set. A write fault fails every write (and segment
//! creation or growth) with the given errno before anything reaches the file. A sync fault lets
//! the writes reach the page cache and then fails the fdatasync, which is the dangerous case: the
//! kernel may already have dropped the dirty pages, so the data must be treated as not durable
//! and is never acknowledged, and the shard cuts its tail back to the last synced byte before it
//! takes another append. The daemon exposes the seam at `POST /debug/failpoints` only when
//! `debug.failpoints = true`.

use std::sync::atomic::{AtomicI32, Ordering};

static WRITE_ERRNO: AtomicI32 = AtomicI32::new(0);
static SYNC_ERRNO: AtomicI32 = AtomicI32::new(0);

/// The errno every write fails with, if a write fault is set.
pub fn write_fault() -> Option<i32> {
    match WRITE_ERRNO.load(Ordering::Relaxed) {
        0 => None,
        e => Some(e),
    }
}

/// The errno every fdatasync fails with, if a sync fault is set.
pub fn sync_fault() -> Option<i32> {
    match SYNC_ERRNO.load(Ordering::Relaxed) {
        0 => None,
        e => Some(e),
    }
}

/// Fails with the write fault, if one is set.
pub fn check_write() -> std::io::Result<()> {
    match write_fault() {
        Some(e) => Err(std::io::Error::from_raw_os_error(e)),
        None => Ok(()),
    }
}

/// Sets or clears the faults from a spec such as `write=EIO`, `sync=ENOSPC`, `write=EIO,sync=EIO`
/// or `off`. Returns the spec now in force.
pub fn apply(spec: &str) -> Result<String, String> {
    let mut write = 0;
    let mut sync = 0;
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "off" {
            continue;
        }
        let (what, errno) = part.split_once('=').ok_or_else(|| format!("'{part}' is not WHAT=ERRNO"))?;
        let errno = match errno {
            "EIO" => libc::EIO,
            "ENOSPC" => libc::ENOSPC,
            "EROFS" => libc::EROFS,
            "EDQUOT" => libc::EDQUOT,
            other => return Err(format!("unknown errno '{other}' (EIO, ENOSPC, EROFS, EDQUOT)")),
        };
        match what {
            "write" => write = errno,
            "sync" => sync = errno,
            other => return Err(format!("unknown fault point '{other}' (write, sync)")),
        }
    }
    WRITE_ERRNO.store(write, Ordering::Relaxed);
    SYNC_ERRNO.store(sync, Ordering::Relaxed);
    Ok(describe())
}

pub fn describe() -> String {
    let name = |e: i32| match e {
        0 => "off",
        libc::EIO => "EIO",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EDQUOT => "EDQUOT",
        _ => "other",
    };
    format!("write={},sync={}", name(WRITE_ERRNO.load(Ordering::Relaxed)), name(SYNC_ERRNO.load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_refuse_nonsense() {
        assert!(apply("write=EPERM").is_err());
        assert!(apply("disk=EIO").is_err());
        assert!(apply("write").is_err());
        // Parsing only: the process-wide state is left off for other tests.
        assert_eq!(apply("off").unwrap(), "write=off,sync=off");
    }
}
