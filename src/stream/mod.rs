//! The stream and shard model: hash-key routing, sequence numbers, shard iterators and the metadata
//! a stream persists.

pub mod hashing;
pub mod meta;
pub mod seqno;
