//! `sluice bench`: load generators for any Kinesis-compatible endpoint (and the lease table of
//! a DynamoDB-compatible one).

pub mod analytics;
mod conn;
pub mod consume;
pub mod delivery;
pub mod fanout;
pub mod kcl;
pub mod lease;
pub mod payload;
pub mod produce;
pub mod queues;
pub mod report;

pub use produce::{produce, ProduceArgs};

/// Nearest-rank percentile of a sorted slice.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
