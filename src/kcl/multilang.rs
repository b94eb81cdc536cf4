//! The multi-language protocol: a child process per shard (`executableName`, split on spaces),
//! one JSON message per line on its stdin and stdout, as the Java MultiLangDaemon of KCL 2.x and
//! 3.x speaks it.
//!
//! Each message the child is sent (`initialize`, `processRecords`, `leaseLost`, `shardEnded`,
//! `shutdownRequested`) is answered by a `status` whose `responseFor` names it; before that the
//! child may send `checkpoint` requests, each answered with a `checkpoint` message whose `error`
//! is null or the Java exception's simple name. Lines on stdout that are not protocol JSON
//! (a processor's own `print()`, the blank lines amazon_kclpy writes around its messages) are
//! skipped and logged with the shard's name, as the Java daemon skips them; stderr is logged.
//! After `leaseLost`, `shardEnded` or `shutdownRequested` the child's stdin is closed and the
//! child is awaited (killed after 10 s). Children run in process groups of their own, so a
//! signal to the daemon's group reaches them only through the protocol; if the daemon dies, a
//! child sees its stdin end (amazon_kclpy then exits).

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tracing::{info, warn};

use super::worker::{
    record_json, Checkpointer, InitializeInput, ProcessRecordsInput, ProcessorFactory, RecordProcessor,
};

/// Starts `executableName` for each shard.
pub struct MultiLangFactory {
    program: String,
    args: Vec<String>,
}

impl MultiLangFactory {
    pub fn new(executable_name: &str) -> anyhow::Result<MultiLangFactory> {
        let mut parts = executable_name.split_whitespace().map(str::to_owned);
        let program = parts.next().context("executableName is empty")?;
        Ok(MultiLangFactory { program, args: parts.collect() })
    }
}

impl ProcessorFactory for MultiLangFactory {
    type Processor = MultiLangProcessor;

    fn create(&self, shard_id: &str) -> anyhow::Result<MultiLangProcessor> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: a terminal's Ctrl-C or a service manager's SIGTERM to the
            // daemon's group reaches the daemon, which then asks each child to shut down.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting '{}' for {shard_id}", self.program))?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        if let Some(stderr) = child.stderr.take() {
            let shard = shard_id.to_owned();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    warn!(target: "sluice::kcl::child", "{shard} stderr: {line}");
                }
            });
        }
        Ok(MultiLangProcessor { shard: shard_id.to_owned(), child, stdin: Some(stdin), stdout })
    }
}

/// One shard's child process.
pub struct MultiLangProcessor {
    shard: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// One protocol message read from the child, or why a line is not one.
#[derive(Debug, PartialEq)]
pub enum ChildLine {
    Status(String),
    Checkpoint {
        sequence_number: Value,
        sub_sequence_number: Value,
    },
    /// Anything else: logged and skipped.
    Other,
}

/// Reads one line of the child's stdout.
pub fn parse_child_line(line: &str) -> ChildLine {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(line.trim()) else { return ChildLine::Other };
    match m.get("action").and_then(Value::as_str) {
        Some("status") => match m.get("responseFor").and_then(Value::as_str) {
            Some(r) => ChildLine::Status(r.to_owned()),
            None => ChildLine::Other,
        },
        Some("checkpoint") => ChildLine::Checkpoint {
            sequence_number: m.get("sequenceNumber").cloned().unwrap_or(Value::Null),
            sub_sequence_number: m.get("subSequenceNumber").cloned().unwrap_or(Value::Null),
        },
        _ => ChildLine::Other,
    }
}

impl MultiLangProcessor {
    async fn write(&mut self, msg: &Value) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("the child's stdin is closed")?;
        let mut line = serde_json::to_vec(msg)?;
        line.push(b'\n');
        stdin.write_all(&line).await.with_context(|| format!("writing to the record processor of {}", self.shard))?;
        stdin.flush().await?;
        Ok(())
    }

    /// Sends a message and serves the child's checkpoints until its status arrives.
    async fn exchange(&mut self, msg: Value, mut checkpointer: Option<&mut Checkpointer>) -> anyhow::Result<()> {
        let action = msg["action"].as_str().unwrap_or_default().to_owned();
        self.write(&msg).await?;
        loop {
            let line =
                self.stdout.next_line().await?.with_context(|| {
                    format!("the record processor of {} exited while handling {action}", self.shard)
                })?;
            match parse_child_line(&line) {
                ChildLine::Status(r) if r == action => return Ok(()),
                ChildLine::Status(r) => {
                    anyhow::bail!(
                        "the record processor of {} answered a status for {r} while {action} was pending",
                        self.shard
                    )
                }
                ChildLine::Checkpoint { sequence_number, sub_sequence_number } => {
                    let error = match checkpointer.as_deref_mut() {
                        Some(c) => {
                            let seq = match &sequence_number {
                                Value::Null => None,
                                Value::String(s) => Some(s.clone()),
                                other => Some(other.to_string()),
                            };
                            let sub = match &sub_sequence_number {
                                Value::Null => None,
                                v => Some(v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(0)),
                            };
                            match c.request(seq.as_deref(), sub).await {
                                Ok(()) => Value::Null,
                                Err(e) => {
                                    info!("{}: checkpoint refused: {e}", self.shard);
                                    json!(e.java_name())
                                }
                            }
                        }
                        None => json!("InvalidStateException"),
                    };
                    let reply = json!({
                        "action": "checkpoint",
                        "sequenceNumber": sequence_number,
                        "subSequenceNumber": sub_sequence_number,
                        "error": error,
                    });
                    self.write(&reply).await?;
                }
                ChildLine::Other => {
                    if !line.trim().is_empty() {
                        info!(target: "sluice::kcl::child", "{} stdout: {line}", self.shard);
                    }
                }
            }
        }
    }

    /// Closes the child's stdin and waits for it to exit.
    async fn finish(&mut self) {
        self.stdin = None;
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(Ok(status)) if !status.success() => warn!("the record processor of {} exited with {status}", self.shard),
            Ok(_) => {}
            Err(_) => {
                warn!("the record processor of {} did not exit; killing it", self.shard);
                let _ = self.child.kill().await;
            }
        }
    }
}

impl RecordProcessor for MultiLangProcessor {
    async fn initialize(&mut self, input: InitializeInput) -> anyhow::Result<()> {
        let msg = json!({
            "action": "initialize",
            "shardId": input.shard_id,
            "sequenceNumber": input.sequence_number,
            "subSequenceNumber": input.sub_sequence_number,
        });
        self.exchange(msg, None).await
    }

    async fn process_records(
        &mut self,
        input: ProcessRecordsInput,
        checkpointer: &mut Checkpointer,
    ) -> anyhow::Result<()> {
        let records: Vec<Value> = input.records.iter().map(record_json).collect();
        let msg =
            json!({"action": "processRecords", "records": records, "millisBehindLatest": input.millis_behind_latest});
        self.exchange(msg, Some(checkpointer)).await
    }

    async fn lease_lost(&mut self) -> anyhow::Result<()> {
        let r = self.exchange(json!({"action": "leaseLost"}), None).await;
        self.finish().await;
        r
    }

    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> anyhow::Result<()> {
        let r = self.exchange(json!({"action": "shardEnded"}), Some(checkpointer)).await;
        self.finish().await;
        r
    }

    async fn shutdown_requested(&mut self, checkpointer: &mut Checkpointer) -> anyhow::Result<()> {
        let r = self.exchange(json!({"action": "shutdownRequested"}), Some(checkpointer)).await;
        self.finish().await;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_lines() {
        assert_eq!(
            parse_child_line(r#"{"action": "status", "responseFor": "initialize"}"#),
            ChildLine::Status("initialize".into())
        );
        assert_eq!(
            parse_child_line(r#"{"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null}"#),
            ChildLine::Checkpoint { sequence_number: Value::Null, sub_sequence_number: Value::Null }
        );
        for other in
            ["", "Processing: sensor-1", "{\"sensor_id\": 3}", "[1]", "{\"action\": \"status\"}", "{\"action\": 7}"]
        {
            assert_eq!(parse_child_line(other), ChildLine::Other, "{other}");
        }
    }

    #[test]
    fn executable_names_split_on_spaces() {
        let f = MultiLangFactory::new("  python3 -u app.py ").unwrap();
        assert_eq!((f.program.as_str(), f.args.as_slice()), ("python3", &["-u".to_string(), "app.py".to_string()][..]));
        assert!(MultiLangFactory::new("  ").is_err());
    }
}
