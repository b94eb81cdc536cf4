//! Kinesis Data Analytics' SQL: the front end ([`parse`], sqlparser and a token pass for the
//! dialect's own forms), the compiler ([`compile`]: streams, pumps, expressions resolved) and
//! the operators ([`engine`]: row-by-row pumps, tumbling, sliding and stagger windows).

pub mod compile;
pub mod engine;
pub mod expr;
pub mod parse;
pub mod value;
