//! Amazon Kinesis Data Analytics for SQL applications.
pub mod sql;
