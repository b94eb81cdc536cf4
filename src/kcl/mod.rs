//! `sluice kcl`: KCL consumer applications, hosted natively. A client, not part of the server: it
//! talks only to the Kinesis and DynamoDB APIs of the endpoints it is given (Sluice by default,
//! or AWS) and coordinates its workers through a KCL lease table, so workers run on any host.
//!
//! - [`properties`]: the MultiLangDaemon's properties file.
//! - [`client`]: the signed AWS JSON client.
//! - [`leases`]: the lease table in KCL 2.x's schema, with its conditional writes.
//! - [`worker`]: lease coordination and the [`worker::RecordProcessor`] library interface.
//! - [`retrieval`]: polling and enhanced fan-out, with checkpoint-aware de-aggregation.
//! - [`kpl`]: KPL aggregated records.
//! - [`multilang`]: the multi-language protocol with a child process per shard.
//!
//! Limits: KCL 2.x's lease protocol (no 3.x leader or worker-metrics items, no graceful lease
//! handoff); no CloudWatch metrics (metricsLevel is read and ignored); one stream per application.

pub mod client;
pub mod kpl;
pub mod leases;
pub mod multilang;
pub mod properties;
pub mod retrieval;
pub mod worker;

use std::path::Path;

use tracing::{info, warn};

pub use worker::{
    CheckpointError, Checkpointer, InitializeInput, ProcessRecordsInput, ProcessorFactory, RecordProcessor, Worker,
};

/// Runs the multi-language daemon for a properties file until SIGTERM or Ctrl-C.
pub async fn run_multilang(properties_file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(properties_file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", properties_file.display()))?;
    let cfg = properties::KclConfig::from_properties(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", properties_file.display()))?;
    for k in &cfg.ignored {
        warn!("{}: unknown key {k} ignored", properties_file.display());
    }
    if cfg.metrics_level != "NONE" {
        info!("metricsLevel = {}: no CloudWatch metrics are published", cfg.metrics_level);
    }
    let factory = multilang::MultiLangFactory::new(&cfg.executable_name)?;
    let worker = Worker::new(cfg, factory)?;
    info!("worker id {}", worker.worker_id());
    worker.run(stop_signal()).await
}

/// Completes on SIGTERM or SIGINT.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else { return std::future::pending().await };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
