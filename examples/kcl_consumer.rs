//! A KCL consumer application in Rust: the same lease coordination as `sluice kcl`, with the
//! record processor in-process. Several copies of it share the stream's shards.
//!
//! ```sh
//! cargo run --example kcl_consumer -- http://127.0.0.1:4567 sensor-data-stream sensor-app
//! ```

use sluice::kcl::properties::{InitialPosition, KclConfig, RetrievalMode};
use sluice::kcl::{Checkpointer, InitializeInput, ProcessRecordsInput, RecordProcessor, Worker};

/// Prints each record and checkpoints after every batch.
struct Printer {
    shard: String,
}

impl RecordProcessor for Printer {
    async fn initialize(&mut self, input: InitializeInput) -> anyhow::Result<()> {
        eprintln!("{}: starting after {}", input.shard_id, input.sequence_number);
        Ok(())
    }

    async fn process_records(
        &mut self,
        input: ProcessRecordsInput,
        checkpointer: &mut Checkpointer,
    ) -> anyhow::Result<()> {
        for r in &input.records {
            println!("{} {} {} {}", self.shard, r.sequence_number, r.partition_key, String::from_utf8_lossy(&r.data));
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn lease_lost(&mut self) -> anyhow::Result<()> {
        eprintln!("{}: another worker took over", self.shard);
        Ok(())
    }

    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> anyhow::Result<()> {
        // Required: the children of this shard start once it is checkpointed at SHARD_END.
        Ok(checkpointer.checkpoint().await?)
    }

    async fn shutdown_requested(&mut self, checkpointer: &mut Checkpointer) -> anyhow::Result<()> {
        Ok(checkpointer.checkpoint().await?)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, stream, application] = &args[..] else {
        eprintln!("usage: kcl_consumer ENDPOINT STREAM APPLICATION");
        std::process::exit(2);
    };
    let mut cfg = KclConfig::new(application, stream);
    cfg.kinesis_endpoint = Some(endpoint.clone());
    cfg.initial_position = InitialPosition::TrimHorizon;
    cfg.retrieval_mode = RetrievalMode::FanOut;
    let worker = Worker::new(cfg, |shard: &str| Ok(Printer { shard: shard.to_owned() }))?;
    eprintln!("worker {}", worker.worker_id());
    worker.run(sluice::kcl::stop_signal()).await
}
