//! Pure codecs shared by every service, no I/O: AWS JSON 1.0 / 1.1 and CBOR bodies ([`codec`]),
//! AWS event streams ([`eventstream`]), the error table ([`error`]) and AWS's model-driven
//! request validation ([`validate`]).

pub mod codec;
pub mod error;
pub mod eventstream;
pub mod validate;
