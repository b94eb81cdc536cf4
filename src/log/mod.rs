//! The shard log: one append-only sequence of segment files per shard.
//!
//! This module owns every byte under `streams/<stream id>/<shard index>/` and, through [`wal`],
//! under `wal/`. It is on the hot path:
//! changes here come with a benchmark figure.
//!
//! # On-disk format, version 1
//!
//! A shard directory holds segment files named `<base ordinal, 20 digits>.seg`. A segment is
//! preallocated (`fallocate`, growing in steps up to `storage.segment_size`) so that unwritten space
//! reads as zeros, and is laid out as:
//!
//! ```text
//! offset 0     segment header, 4096 bytes (44 used, the rest zero)
//!              magic "SLUICESG" | version u32 | stream id u64 | shard index u32 |
//!              base ordinal u64 | created ms i64 | crc32c of the preceding 40 bytes u32
//! offset 4096  batch, batch, ... then zeros to the end of the file
//! ```
//!
//! A batch is a group of records committed together (all integers little-endian):
//!
//! ```text
//! magic "SLB1" u32 | len u32 (whole batch) | crc32c u32 (of every byte after this field) |
//! version u8 | codec u8 (0 none, 1 lz4 block, 2 zstd) | reserved u16 |
//! record count u32 | uncompressed payload length u32 | first ordinal u64 | arrival ms i64 |
//! payload: per record  key length u16 | data length u32 | partition key (utf-8) | data
//! ```
//!
//! A record's ordinal is the batch's first ordinal plus its index; ordinals of a shard are dense
//! from the first retained segment's base ordinal, and the sequence number is derived from them
//! ([`crate::stream::seqno`]). Arrival timestamps never decrease within a shard, so the sparse index
//! (one entry per segment start and per [`INDEX_INTERVAL_BYTES`] of log, persisted in rocksdb) finds
//! a position by ordinal and by time alike.
//!
//! # Invariants
//! - A batch is acknowledged only after it, and everything before it in the shard, is written and
//!   (in `sync` durability) fdatasynced, in its segment or as part of a write-ahead log record
//!   ([`wal`]) that is replayed into the segment at start.
//! - A batch whose crc does not match is never served. Recovery scans from the last persisted index
//!   entry to the tail. A batch that fails to verify with nothing valid after it is a torn tail
//!   (never acknowledged): it is cut off. One with valid batches after it is damage: the lost
//!   ordinal range is recorded, reported and never silently skipped by readers.
//! - A reader sees zeros, never stale bytes, past the end of the log: truncation re-zeroes the space.
//!
//! Limits: a batch is at most [`segment::BATCH_LEN_MAX`] bytes on disk and holds at most
//! [`segment::BATCH_RECORDS_MAX`] records.

pub mod faults;
pub mod recovery;
pub mod segment;
pub mod shard;
pub mod uring;
pub mod wal;

use bytes::Bytes;

pub use shard::{Damage, IndexEntry, ShardLog};

/// An index entry is written at least every this many bytes of log.
pub const INDEX_INTERVAL_BYTES: u64 = 64 << 10;

/// A record as stored and served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ordinal: u64,
    pub ts_ms: i64,
    pub partition_key: String,
    pub data: Bytes,
}

/// A record to append.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub partition_key: String,
    pub data: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("checksum mismatch at offset {offset}: expected {expected:#010x}, found {actual:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32, offset: u64 },
    #[error("records {from}..{to} (ordinals) are lost to on-disk damage: {reason}")]
    Damaged { from: u64, to: u64, reason: String },
    #[error("corrupt log at offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("written by a newer on-disk format (version {found}; this build reads up to {supported})")]
    NewerFormat { found: u32, supported: u32 },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Log settings a shard needs.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    pub segment_size: u64,
    pub compression: crate::config::Compression,
    pub hot_tail_bytes: u64,
    /// Appends are not synced one by one (interval durability): remember what to sync.
    pub track_unsynced: bool,
}
