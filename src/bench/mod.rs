//! `sluice bench`: load generators for any Kinesis-compatible endpoint.

pub mod fanout;
pub mod produce;

pub use produce::{produce, ProduceArgs};
