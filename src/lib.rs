//! Sluice: a durable streaming storage daemon that speaks the Amazon Kinesis wire protocols.
//!
//! One storage engine, AWS services on top of it. Start at [`service::Service::start`] (start-up
//! and recovery), [`http`] (the front end, routing by `X-Amz-Target` to a service),
//! [`protocol`] (codecs, errors, model-driven validation), [`kinesis`] (the Kinesis Data Streams
//! service), [`reader`] (how services inside the daemon read streams), [`runtime`]
//! (thread-per-core shard ownership and group commit) and [`log`] (the on-disk format).

pub mod analytics;
pub mod bench;
pub mod config;
pub mod dynamodb;
pub mod firehose;
pub mod http;
pub mod index;
pub mod kcl;
pub mod keys;
pub mod kinesis;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod protocol;
pub mod push;
pub mod queues;
pub mod reader;
pub mod runtime;
pub mod service;
pub mod stream;
pub mod time;

use std::sync::Arc;

/// Runs the daemon until SIGTERM or SIGINT, then drains, syncs and returns.
pub async fn serve(cfg: config::Config) -> anyhow::Result<()> {
    let listen = cfg.listen;
    tracing::info!(data_dir = %cfg.data_dir.display(), %listen, durability = %cfg.storage.durability,
        workers = cfg.worker_count(), "starting sluice");
    let tls = match cfg.tls.files() {
        Some((cert, key)) => Some(Arc::new(http::tls::Tls::new(cert, key).map_err(|e| anyhow::anyhow!("[tls]: {e}"))?)),
        None => None,
    };
    let svc = service::Service::start(cfg).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
    let push = match svc.cfg.fanout.push_addr() {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("binding push protocol address {addr}: {e}"))?;
            tracing::info!(push = %l.local_addr()?, "push protocol listening");
            Some(tokio::spawn(push::server::serve(l, Arc::clone(&svc), tls.clone())))
        }
        None => None,
    };
    let reloader = Some(tokio::spawn(reload_on_sighup(tls.clone())));
    let autoscaler = tokio::spawn(kinesis::ondemand::run(Arc::clone(&svc)));
    let expiry = tokio::spawn(kinesis::expiry::run(Arc::clone(&svc)));
    tracing::info!(listen = %listener.local_addr()?, "ready");
    notify::notify("READY=1");
    let watchdog = notify::watchdog_period().map(|period| {
        let svc = Arc::clone(&svc);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                match svc.runtime.ping_all().await {
                    Ok(()) => notify::notify("WATCHDOG=1"),
                    Err(e) => tracing::error!(error = %e, "core workers did not answer; withholding the watchdog ping"),
                }
            }
        })
    });
    let subscriptions = Arc::clone(&svc.subscriptions);
    let firehose = firehose::Firehose::start(Arc::clone(&svc));
    let analytics = analytics::Analytics::start(Arc::clone(&svc), Arc::clone(&firehose.0));
    let queues = queues::Queues::start(Arc::clone(&svc)).await;
    let waiting = Arc::clone(&queues);
    let stopping = async move {
        shutdown_signal().await;
        notify::notify("STOPPING=1");
        // Long-lived subscriptions and long polls would otherwise hold the drain.
        subscriptions.cancel_all();
        waiting.release_waiters();
    };
    let routes = http::Routes::default()
        .with(Arc::new(kinesis::Kinesis {
            svc: Arc::clone(&svc),
            delivery: Arc::clone(&firehose.0),
            queues: Arc::clone(&queues),
        }))
        .with(Arc::new(dynamodb::DynamoDb::new(Arc::clone(&svc))))
        .with(Arc::new(firehose))
        .with(Arc::new(analytics));
    http::serve(listener, Arc::clone(&svc), routes, tls, stopping).await;
    svc.subscriptions.cancel_all();
    autoscaler.abort();
    expiry.abort();
    if let Some(p) = push {
        p.abort();
    }
    for task in [watchdog, reloader].into_iter().flatten() {
        task.abort();
    }
    queues.stop().await;
    tracing::info!("stopping: syncing and closing shards");
    tokio::task::spawn_blocking(move || svc.shutdown()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP reads the TLS certificate and key again (connections already open keep theirs);
/// without TLS it is logged and changes nothing (it does not stop the daemon).
async fn reload_on_sighup(tls: Option<Arc<http::tls::Tls>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; the TLS certificate will not be reloaded");
            return;
        }
    };
    while hup.recv().await.is_some() {
        let Some(tls) = &tls else {
            tracing::info!("SIGHUP: no [tls] configured; nothing to reload");
            continue;
        };
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
            Err(e) => tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; the previous one stays"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
