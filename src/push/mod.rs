//! The binary push protocol: enhanced fan-out over plain TCP, for clients that want records the
//! moment they are durable without HTTP or the AWS event-stream framing. Specified in
//! `docs/push-protocol.md`; [`frame`] is the codec (no I/O), [`server`] serves it, [`client`] is a
//! Rust client.

pub mod client;
pub mod frame;
pub mod server;
