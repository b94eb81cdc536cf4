//! The Kinesis operations: each decodes its input shape, checks it, calls the domain and builds
//! its output shape.

pub mod consumers;
pub mod records;
pub mod reshard;
pub mod settings;
pub mod streams;
