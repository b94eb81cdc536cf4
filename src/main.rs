//! The `sluice` command: `sluice serve` runs the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::config::{Config, Durability};

/// The request path allocates per record (keys, data, JSON); mimalloc's thread-local caches beat
/// glibc malloc there (measured: see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A durable streaming storage daemon that speaks the Amazon Kinesis wire protocols"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Load-test a Kinesis-compatible endpoint.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print a shard's records as they arrive, through the push protocol.
    Subscribe(SubscribeArgs),
    /// Run a KCL multi-language application (the MultiLangDaemon's properties file).
    Kcl(KclArgs),
}

#[derive(clap::Args)]
struct KclArgs {
    /// The MultiLangDaemon properties file.
    #[arg(long, visible_alias = "properties", value_name = "FILE")]
    properties_file: PathBuf,
    /// Log filter, e.g. "info" or "sluice=debug".
    #[arg(long, env = "SLUICE_LOG", default_value = "info")]
    log: String,
}

#[derive(clap::Args)]
struct SubscribeArgs {
    /// The push protocol address.
    #[arg(long, default_value = "127.0.0.1:4568")]
    push: String,
    #[arg(long)]
    stream: String,
    #[arg(long, default_value = "shardId-000000000000")]
    shard: String,
    /// A registered consumer's name (optional; with one, AWS's one-subscription rule applies).
    #[arg(long, default_value = "")]
    consumer: String,
    /// trim-horizon, latest, at:SEQUENCE_NUMBER, after:SEQUENCE_NUMBER or timestamp:EPOCH_MS.
    #[arg(long, default_value = "latest")]
    from: String,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// Connect with TLS, trusting the certificates in this PEM file.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry (with --ca-file).
    #[arg(long, default_value = "localhost")]
    tls_name: String,
    /// Authenticate with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for a server in sigv4 mode).
    #[arg(long)]
    sign: bool,
    /// The region the server signs for (with --sign).
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// PutRecords as fast as the endpoint acknowledges them.
    Produce(sluice::bench::ProduceArgs),
    /// Put-acknowledged to record-received latency of enhanced fan-out subscribers.
    Fanout(sluice::bench::fanout::FanoutArgs),
    /// Read a stream with GetRecords and verify every record.
    Consume(sluice::bench::consume::ConsumeArgs),
    /// Produce and consume a fresh stream at once: put -> get latency and loss check.
    E2e(sluice::bench::consume::E2eArgs),
    /// Checkpoint latency of a DynamoDB-compatible lease table (conditional UpdateItem).
    Lease(sluice::bench::lease::LeaseArgs),
    /// Records/s through `sluice kcl` with a trivial processor, against a plain GetRecords read.
    Kcl(sluice::bench::kcl::KclBenchArgs),
    /// Firehose delivery: MB/s from PutRecordBatch to objects per compression, put-to-object time.
    Delivery(sluice::bench::delivery::DeliveryArgs),
    /// Kinesis Analytics SQL: rows/s through a filter and a tumbling GROUP BY, put-to-output time.
    Analytics(sluice::bench::analytics::AnalyticsArgs),
    /// Kinesis queues: records/s received and acknowledged per consumer count, put-to-receive time.
    Queues(sluice::bench::queues::QueuesArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see sluice.example.toml).
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the Kinesis API [default: 127.0.0.1:4567].
    #[arg(long, env = "SLUICE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of the binary push protocol [default: 127.0.0.1:4568]; "" turns it off.
    #[arg(long, env = "SLUICE_PUSH_LISTEN")]
    push_listen: Option<String>,
    /// "sync" (default) or "lossy-interval".
    #[arg(long, env = "SLUICE_DURABILITY", value_parser = parse_durability)]
    durability: Option<Durability>,
    /// Log filter, e.g. "info" or "sluice=debug".
    #[arg(long, env = "SLUICE_LOG", default_value = "info")]
    log: String,
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "sync" => Ok(Durability::Sync),
        "lossy-interval" => Ok(Durability::LossyInterval),
        other => Err(format!("unknown durability '{other}' (sync, lossy-interval)")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Subscribe(args) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(subscribe(args))
        }
        Command::Kcl(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(sluice::kcl::run_multilang(&args.properties_file))
        }
        Command::Bench(BenchCommand::Fanout(args)) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(sluice::bench::fanout::run(args))
        }
        Command::Bench(BenchCommand::Consume(args)) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(sluice::bench::consume::consume(args))
        }
        Command::Bench(BenchCommand::E2e(args)) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(sluice::bench::consume::e2e(args))
        }
        Command::Bench(BenchCommand::Lease(args)) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(sluice::bench::lease::run(args))
        }
        Command::Bench(BenchCommand::Delivery(args)) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(sluice::bench::delivery::run(args))
        }
        Command::Bench(BenchCommand::Analytics(args)) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(sluice::bench::analytics::run(args))
        }
        Command::Bench(BenchCommand::Queues(args)) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(sluice::bench::queues::run(args))
        }
        Command::Bench(BenchCommand::Kcl(args)) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(sluice::bench::kcl::run(args))
        }
        Command::Bench(BenchCommand::Produce(args)) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(sluice::bench::produce(args))
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(p) = args.push_listen {
        cfg.fanout.push_listen = p;
    }
    if let Some(d) = args.durability {
        cfg.storage.durability = d;
    }
    cfg.validate()?;
    cfg.check_exposure()?;
    let threads = cfg.worker_count().max(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("sluice-http")
        .enable_all()
        .build()?;
    rt.block_on(sluice::serve(cfg))
}

async fn subscribe(args: SubscribeArgs) -> anyhow::Result<()> {
    use sluice::push::client::{Event, PushClient};
    use sluice::push::frame::Start;
    use std::io::Write;
    let start = match args.from.split_once(':') {
        None if args.from == "trim-horizon" => Start::TrimHorizon,
        None if args.from == "latest" => Start::Latest,
        Some(("at", s)) => Start::AtSequenceNumber(s.into()),
        Some(("after", s)) => Start::AfterSequenceNumber(s.into()),
        Some(("timestamp", ms)) => Start::AtTimestamp(ms.parse().context("--from timestamp:EPOCH_MS")?),
        _ => anyhow::bail!("--from must be trim-horizon, latest, at:SEQ, after:SEQ or timestamp:EPOCH_MS"),
    };
    let mut options = sluice::push::client::ConnectOptions::default();
    if let Some(ca) = &args.ca_file {
        options.tls = Some(sluice::push::client::TlsClient::from_ca_file(ca, &args.tls_name)?);
    }
    if args.sign {
        let var = |name: &str| std::env::var(name).with_context(|| format!("--sign needs {name}"));
        options.credentials = Some(sluice::push::client::Credentials {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            region: args.region.clone(),
        });
    }
    let mut client = PushClient::connect_with(&args.push, "sluice subscribe", &options).await?;
    client.subscribe(&args.stream, &args.consumer, &args.shard, start).await?;
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        match client.next_event().await? {
            Event::Records { records, .. } => {
                for r in records {
                    writeln!(out, "{}\t{}\t{}", r.sequence_number, r.partition_key, String::from_utf8_lossy(&r.data))?;
                    seen += 1;
                    if args.count.is_some_and(|c| seen >= c) {
                        return Ok(());
                    }
                }
                out.flush()?;
            }
            Event::End { reason, continuation, .. } => {
                eprintln!("subscription ended ({reason:?}); resume with --from after:{continuation}");
                return Ok(());
            }
            Event::Error { code, message, .. } => anyhow::bail!("error {code}: {message}"),
        }
    }
}
