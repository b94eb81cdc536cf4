//! The KCL lease table: KCL 2.x's item schema and its conditional writes (legacy `Expected` with
//! `AttributeUpdates`), so a table written here reads like one the Java KCL writes and the other
//! way round.
//!
//! Every write that depends on ownership is guarded by the lease counter the writer last saw;
//! a guard that fails means another worker changed the lease (took it, or renewed it after this
//! worker lost it), and the caller treats the lease as lost.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::client::{AwsClient, CallError};

/// The checkpoint of a shard read to its end.
pub const SHARD_END: &str = "SHARD_END";

/// One lease item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The shard id.
    pub key: String,
    pub owner: Option<String>,
    pub counter: u64,
    /// A sequence number (digits) or a sentinel: TRIM_HORIZON, LATEST, AT_TIMESTAMP, SHARD_END.
    pub checkpoint: String,
    pub checkpoint_sub: u64,
    pub owner_switches: u64,
    pub parents: Vec<String>,
    pub children: Vec<String>,
    /// The shard's hash key range, decimal.
    pub hash_range: Option<(String, String)>,
}

impl Lease {
    /// A new, unowned lease of `shard` starting at `checkpoint`.
    pub fn new(shard: &str, checkpoint: &str, parents: Vec<String>, hash_range: Option<(String, String)>) -> Lease {
        Lease {
            key: shard.to_owned(),
            owner: None,
            counter: 0,
            checkpoint: checkpoint.to_owned(),
            checkpoint_sub: 0,
            owner_switches: 0,
            parents,
            children: Vec::new(),
            hash_range,
        }
    }

    pub fn is_shard_end(&self) -> bool {
        self.checkpoint == SHARD_END
    }

    /// Decodes a lease item; `None` for items that are not leases (KCL 3.x's leader and worker
    /// metrics items share the table and carry an `entityType`).
    pub fn from_item(item: &Value) -> Option<Lease> {
        if let Some(kind) = item.get("entityType").and_then(|v| v["S"].as_str()) {
            if kind != "LEASE" {
                return None;
            }
        }
        let s = |k: &str| item.get(k).and_then(|v| v["S"].as_str()).map(str::to_owned);
        let n = |k: &str| item.get(k).and_then(|v| v["N"].as_str()).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ss = |k: &str| -> Vec<String> {
            item.get(k)
                .and_then(|v| v["SS"].as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let hash_range = match (s("startingHashKey"), s("endingHashKey")) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        };
        Some(Lease {
            key: s("leaseKey")?,
            owner: s("leaseOwner"),
            counter: n("leaseCounter"),
            checkpoint: s("checkpoint").unwrap_or_else(|| "TRIM_HORIZON".into()),
            checkpoint_sub: n("checkpointSubSequenceNumber"),
            owner_switches: n("ownerSwitchesSinceCheckpoint"),
            parents: ss("parentShardId"),
            children: ss("childShardIds"),
            hash_range,
        })
    }

    /// The whole item, as KCL's serializer writes it on create.
    pub fn to_item(&self) -> Value {
        let mut m = Map::new();
        m.insert("leaseKey".into(), json!({"S": self.key}));
        m.insert("leaseCounter".into(), json!({"N": self.counter.to_string()}));
        if let Some(o) = &self.owner {
            m.insert("leaseOwner".into(), json!({"S": o}));
        }
        m.insert("checkpoint".into(), json!({"S": self.checkpoint}));
        m.insert("checkpointSubSequenceNumber".into(), json!({"N": self.checkpoint_sub.to_string()}));
        m.insert("ownerSwitchesSinceCheckpoint".into(), json!({"N": self.owner_switches.to_string()}));
        if !self.parents.is_empty() {
            m.insert("parentShardId".into(), json!({"SS": self.parents}));
        }
        if !self.children.is_empty() {
            m.insert("childShardIds".into(), json!({"SS": self.children}));
        }
        if let Some((a, b)) = &self.hash_range {
            m.insert("startingHashKey".into(), json!({"S": a}));
            m.insert("endingHashKey".into(), json!({"S": b}));
        }
        Value::Object(m)
    }
}

/// The lease table of one application.
pub struct LeaseTable {
    client: AwsClient,
    table: String,
}

impl LeaseTable {
    pub fn new(client: AwsClient, table: &str) -> LeaseTable {
        LeaseTable { client, table: table.to_owned() }
    }

    pub fn name(&self) -> &str {
        &self.table
    }

    /// Creates the table (HASH `leaseKey`, on demand) unless it exists, and waits until it is
    /// ACTIVE.
    pub async fn ensure(&self) -> Result<(), CallError> {
        match self.client.call("DescribeTable", &json!({"TableName": self.table})).await {
            Ok(v) if v["Table"]["TableStatus"] == "ACTIVE" => return Ok(()),
            Ok(_) => {}
            Err(e) if e.is("ResourceNotFoundException") => {
                let create = json!({
                    "TableName": self.table,
                    "KeySchema": [{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "leaseKey", "AttributeType": "S"}],
                    "BillingMode": "PAY_PER_REQUEST",
                });
                match self.client.call("CreateTable", &create).await {
                    Ok(_) => {}
                    Err(e) if e.is("ResourceInUseException") => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        for _ in 0..600 {
            let v = self.client.call("DescribeTable", &json!({"TableName": self.table})).await?;
            if v["Table"]["TableStatus"] == "ACTIVE" {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(CallError {
            status: 0,
            kind: "Timeout".into(),
            message: format!("table {} never became ACTIVE", self.table),
        })
    }

    /// Every lease, by consistent paged scans.
    pub async fn list(&self) -> Result<Vec<Lease>, CallError> {
        let mut out = Vec::new();
        let mut start: Option<Value> = None;
        loop {
            let mut req = json!({"TableName": self.table, "ConsistentRead": true});
            if let Some(k) = start.take() {
                req["ExclusiveStartKey"] = k;
            }
            let page = self.client.call("Scan", &req).await?;
            if let Some(items) = page["Items"].as_array() {
                out.extend(items.iter().filter_map(Lease::from_item));
            }
            match page.get("LastEvaluatedKey") {
                Some(k) if k.is_object() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// One lease, read consistently.
    pub async fn get(&self, key: &str) -> Result<Option<Lease>, CallError> {
        let v = self
            .client
            .call("GetItem", &json!({"TableName": self.table, "Key": key_of(key), "ConsistentRead": true}))
            .await?;
        Ok(v.get("Item").and_then(Lease::from_item))
    }

    /// Creates the lease unless one with its key exists; true if this call created it.
    pub async fn create_if_absent(&self, lease: &Lease) -> Result<bool, CallError> {
        let req = json!({
            "TableName": self.table,
            "Item": lease.to_item(),
            "Expected": {"leaseKey": {"Exists": false}},
        });
        conditional(self.client.call("PutItem", &req).await)
    }

    /// Renews a held lease: guarded by its counter, which goes up by one.
    pub async fn renew(&self, lease: &mut Lease) -> Result<bool, CallError> {
        let updates = json!({"leaseCounter": put_n(lease.counter + 1)});
        self.update(lease, counter_expected(lease), updates).await
    }

    /// Takes a lease for `owner`: guarded by the counter this worker saw.
    pub async fn take(&self, lease: &mut Lease, owner: &str) -> Result<bool, CallError> {
        let mut updates = json!({
            "leaseCounter": put_n(lease.counter + 1),
            "leaseOwner": {"Action": "PUT", "Value": {"S": owner}},
        });
        let switching = lease.owner.as_deref() != Some(owner);
        if switching {
            updates["ownerSwitchesSinceCheckpoint"] = json!({"Action": "ADD", "Value": {"N": "1"}});
        }
        let ok = self.update(lease, counter_expected(lease), updates).await?;
        if ok {
            lease.owner = Some(owner.to_owned());
            if switching {
                lease.owner_switches += 1;
            }
        }
        Ok(ok)
    }

    /// Gives a held lease up (no owner), guarded by its owner, so another worker takes it at once.
    pub async fn evict(&self, lease: &mut Lease) -> Result<bool, CallError> {
        let Some(owner) = lease.owner.clone() else { return Ok(true) };
        let expected = json!({"leaseOwner": {"Value": {"S": owner}}});
        let updates = json!({"leaseOwner": {"Action": "DELETE"}, "leaseCounter": put_n(lease.counter + 1)});
        let ok = self.update(lease, expected, updates).await?;
        if ok {
            lease.owner = None;
        }
        Ok(ok)
    }

    /// Writes a checkpoint into a held lease (guarded by its counter), as KCL's `updateLease`:
    /// the owner-switch count goes back to 0 and any pending checkpoint is dropped.
    pub async fn checkpoint(
        &self,
        lease: &mut Lease,
        checkpoint: &str,
        sub: u64,
        children: &[String],
    ) -> Result<bool, CallError> {
        let mut updates = json!({
            "leaseCounter": put_n(lease.counter + 1),
            "checkpoint": {"Action": "PUT", "Value": {"S": checkpoint}},
            "checkpointSubSequenceNumber": put_n(sub),
            "ownerSwitchesSinceCheckpoint": put_n(0),
            "pendingCheckpoint": {"Action": "DELETE"},
            "pendingCheckpointSubSequenceNumber": {"Action": "DELETE"},
            "pendingCheckpointState": {"Action": "DELETE"},
        });
        if !children.is_empty() {
            updates["childShardIds"] = json!({"Action": "PUT", "Value": {"SS": children}});
        }
        let ok = self.update(lease, counter_expected(lease), updates).await?;
        if ok {
            lease.checkpoint = checkpoint.to_owned();
            lease.checkpoint_sub = sub;
            lease.owner_switches = 0;
            if !children.is_empty() {
                lease.children = children.to_vec();
            }
        }
        Ok(ok)
    }

    /// Deletes a finished lease (its checkpoint is SHARD_END).
    pub async fn delete_finished(&self, key: &str) -> Result<bool, CallError> {
        let req = json!({
            "TableName": self.table,
            "Key": key_of(key),
            "Expected": {"checkpoint": {"Value": {"S": SHARD_END}}},
        });
        conditional(self.client.call("DeleteItem", &req).await)
    }

    /// A guarded UpdateItem; on success the lease's counter is the new one.
    async fn update(&self, lease: &mut Lease, expected: Value, updates: Value) -> Result<bool, CallError> {
        let req = json!({
            "TableName": self.table,
            "Key": key_of(&lease.key),
            "Expected": expected,
            "AttributeUpdates": updates,
        });
        let ok = conditional(self.client.call("UpdateItem", &req).await)?;
        if ok {
            lease.counter += 1;
        }
        Ok(ok)
    }
}

fn key_of(key: &str) -> Value {
    json!({"leaseKey": {"S": key}})
}

fn put_n(n: u64) -> Value {
    json!({"Action": "PUT", "Value": {"N": n.to_string()}})
}

fn counter_expected(lease: &Lease) -> Value {
    json!({"leaseCounter": {"Value": {"N": lease.counter.to_string()}}})
}

/// A conditional write's outcome: true if it applied, false if its condition failed.
fn conditional(r: Result<Value, CallError>) -> Result<bool, CallError> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.is("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_in_kcl_schema() {
        let mut l = Lease::new(
            "shardId-000000000002",
            "TRIM_HORIZON",
            vec!["shardId-000000000000".into()],
            Some(("0".into(), "170141183460469231731687303715884105727".into())),
        );
        l.owner = Some("w1".into());
        l.counter = 7;
        let item = l.to_item();
        assert_eq!(item["leaseCounter"], json!({"N": "7"}));
        assert_eq!(item["parentShardId"], json!({"SS": ["shardId-000000000000"]}));
        assert!(item.get("childShardIds").is_none(), "empty sets are not written (DynamoDB refuses them)");
        assert_eq!(Lease::from_item(&item).unwrap(), l);
    }

    #[test]
    fn non_lease_items_are_skipped() {
        let leader = json!({"leaseKey": {"S": "Leader"}, "entityType": {"S": "LEADER"}});
        assert!(Lease::from_item(&leader).is_none());
        let java =
            json!({"leaseKey": {"S": "shardId-0"}, "leaseCounter": {"N": "3"}, "checkpoint": {"S": "SHARD_END"}});
        let l = Lease::from_item(&java).unwrap();
        assert!(l.is_shard_end() && l.owner.is_none() && l.counter == 3);
        assert!(Lease::from_item(&json!({"checkpoint": {"S": "x"}})).is_none(), "no key, no lease");
    }
}
