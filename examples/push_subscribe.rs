//! Reads a shard through the push protocol and prints each record as it becomes durable.
//!
//! ```sh
//! cargo run --example push_subscribe -- 127.0.0.1:4568 sensor-data-stream shardId-000000000000
//! ```

use sluice::push::client::{Event, PushClient};
use sluice::push::frame::Start;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, stream, shard] = &args[..] else {
        eprintln!("usage: push_subscribe ADDR STREAM SHARD_ID");
        std::process::exit(2);
    };
    let mut client = PushClient::connect(addr, "push_subscribe example").await?;
    let sub = client.subscribe(stream, "", shard, Start::TrimHorizon).await?;
    eprintln!("subscribed; resume later with AFTER {}", sub.continuation);
    loop {
        match client.next_event().await? {
            Event::Records { records, .. } => {
                for r in records {
                    println!("{} {} {}", r.sequence_number, r.partition_key, String::from_utf8_lossy(&r.data));
                }
            }
            Event::End { reason, continuation, .. } => {
                eprintln!("subscription ended ({reason:?}); resume with AFTER {continuation}");
                return Ok(());
            }
            Event::Error { code, message, .. } => return Err(format!("error {code}: {message}").into()),
        }
    }
}
