//! `sluice kcl`: KCL consumer applications, hosted natively. A client, not part of the server: it
//! talks to the Kinesis and DynamoDB APIs of the endpoints it is given (Sluice, or AWS) and
//! coordinates workers through a KCL lease table.
//!
//! So far: the MultiLangDaemon properties file ([`properties`]) and KPL de-aggregation
//! ([`kpl`]). The lease worker and the child processes speaking the multi-language protocol come
//! next.

pub mod kpl;
pub mod properties;
