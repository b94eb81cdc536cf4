//! A DynamoDB-compatible subset: the `DynamoDB_20120810` service, over AWS JSON 1.0, for the
//! coordination tables of KCL consumer applications (lease tables) and the like.
//!
//! Owns its operations, its errors (`com.amazonaws.dynamodb.v20120810#…`), its tables (definitions
//! in the metadata store under `ddb/table/<name>`) and their items (the `tables` column family,
//! keyed by table id and encoded primary key). Every write is a synced rocksdb write before it is
//! answered, and the writes of one item are serialized (a striped lock), so a conditional write is
//! atomic against any other. Tables are per account: a verified key of another account than the
//! daemon's names its own account's tables, kept as `<account>/<name>` inside the daemon
//! ([`scope_tables`]), with ARNs of that account; a table is reached only by its own account's
//! keys (there are no resource policies here).
//!
//! Served: CreateTable, DescribeTable, UpdateTable, DeleteTable, ListTables, GetItem, PutItem,
//! UpdateItem, DeleteItem, Scan (paging, Segment/TotalSegments, FilterExpression), Query (on the
//! table and on a global secondary index, KeyConditionExpression or legacy KeyConditions),
//! BatchGetItem (up to 100 keys) and BatchWriteItem (up to 25 writes), with both
//! condition styles (legacy `Expected`/`AttributeUpdates` and `ConditionExpression`/
//! `UpdateExpression`), `ReturnValues` and `ReturnValuesOnConditionCheckFailure`; TagResource,
//! UntagResource, ListTagsOfResource, UpdateContinuousBackups and DescribeContinuousBackups are
//! accepted. Limits: items of at most [`ITEM_BYTES_MAX`], [`TABLES_MAX`] tables, scan pages of at
//! most 1 MB or [`SCAN_ITEMS_MAX`] items. Not a database: a Query reads the table's items and
//! sorts them in memory (an index is evaluated, not stored), fine for coordination tables of
//! thousands of items and wrong for big ones; no transactions, no streams, no TTL, and tables
//! and indexes are ACTIVE at once.

pub mod expr;
pub mod value;

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::http::{AwsService, BoxFuture, Reply};
use crate::protocol::codec::{decode_request, MemberKinds, Protocol, PLAIN};
use crate::protocol::error::{ApiError, ApiResult};
use crate::service::Service;
use expr::{Cond, Placeholders};
use value::Item;

pub const TARGET_PREFIX: &str = "DynamoDB_20120810";
pub const ERROR_PREFIX: &str = "com.amazonaws.dynamodb.v20120810#";
/// DynamoDB's item size limit.
pub const ITEM_BYTES_MAX: usize = 400 * 1024;
/// Tables per daemon (DynamoDB's default account quota is 2,500).
pub const TABLES_MAX: usize = 256;
/// Items per Scan page at most (DynamoDB stops at 1 MB).
pub const SCAN_ITEMS_MAX: usize = 1000;
const SCAN_BYTES_MAX: usize = 1 << 20;

const OPERATIONS: &[&str] = &[
    "BatchGetItem",
    "BatchWriteItem",
    "CreateTable",
    "DeleteItem",
    "DeleteTable",
    "DescribeContinuousBackups",
    "DescribeTable",
    "GetItem",
    "ListTables",
    "ListTagsOfResource",
    "PutItem",
    "Query",
    "Scan",
    "TagResource",
    "UntagResource",
    "UpdateContinuousBackups",
    "UpdateItem",
    "UpdateTable",
];

/// Items are locked in this many stripes (by key hash): a read-modify-write of one item (a
/// conditional one above all) is atomic, and writes of different items proceed at once, so that
/// their synced rocksdb writes share a commit.
const WRITE_STRIPES: usize = 64;

fn stripe_of(key: &[u8]) -> usize {
    crc32fast::hash(key) as usize % WRITE_STRIPES
}

pub struct DynamoDb {
    pub svc: Arc<Service>,
    writes: Arc<Vec<tokio::sync::Mutex<()>>>,
    /// Serializes table creation, change and deletion.
    tables_lock: Arc<tokio::sync::Mutex<()>>,
}

impl DynamoDb {
    pub fn new(svc: Arc<Service>) -> DynamoDb {
        let writes = (0..WRITE_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect();
        DynamoDb { svc, writes: Arc::new(writes), tables_lock: Arc::default() }
    }
}

impl AwsService for DynamoDb {
    fn signing_name(&self) -> &'static str {
        "dynamodb"
    }

    fn target_prefix(&self) -> &'static str {
        TARGET_PREFIX
    }

    fn protocols(&self) -> &'static [Protocol] {
        &[Protocol::Json10]
    }

    fn has_operation(&self, op: &str) -> bool {
        OPERATIONS.contains(&op)
    }

    fn error_prefix(&self) -> &'static str {
        ERROR_PREFIX
    }

    fn framing_error_prefix(&self) -> &'static str {
        "com.amazon.coral.service#"
    }

    fn member_kinds(&self) -> &'static MemberKinds {
        &PLAIN
    }

    fn call(&self, op: String, proto: Protocol, body: Bytes, auth: crate::http::Auth) -> BoxFuture<Reply> {
        let ctx = Ctx { svc: self.svc.clone(), writes: self.writes.clone(), tables_lock: self.tables_lock.clone() };
        Box::pin(async move {
            let (auth, caller) = crate::http::iam::split(auth);
            let mut req = match decode_request(proto, &body, &PLAIN).and_then(|v| auth.map(|()| v)) {
                Ok(v) => v,
                Err(e) => return Reply::Whole(Err(e)),
            };
            // Tables are per account: a caller's names are its own account's tables.
            let account = crate::kinesis::accounts::account_of(&ctx.svc, caller.as_deref()).to_owned();
            let allowed = scope_tables(&ctx.svc, &account, &mut req).and_then(|()| match caller.as_deref() {
                Some(c) => {
                    let name = req.get("TableName").and_then(Value::as_str).map(|n| ctx.svc.account_and_name(n).1);
                    c.authorize_named("dynamodb", &op, "table", name, &ctx.svc.cfg.region, &account)
                }
                None => Ok(()),
            });
            if let Err(e) = allowed {
                return Reply::Whole(Err(e));
            }
            let result = ctx.dispatch(&op, req, &account).await;
            Reply::Whole(result.map_err(|e| crate::kinesis::accounts::present_error(&ctx.svc, e)))
        })
    }
}

/// Checks the table names of a request (`TableName`, the keys of `RequestItems`) against DynamoDB's
/// pattern, and names the tables of `account` as they are named inside the daemon
/// ([`crate::stream::meta::qualified`]: `<account>/<name>` for another account than the daemon's).
fn scope_tables(svc: &Service, account: &str, req: &mut Value) -> ApiResult<()> {
    let pattern = |name: &str| {
        if name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
            Ok(())
        } else {
            Err(invalid(format!("1 validation error detected: Value '{name}' at 'tableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+")))
        }
    };
    let daemon = svc.cfg.account_id.as_str();
    let Some(obj) = req.as_object_mut() else { return Ok(()) };
    if let Some(Value::String(name)) = obj.get_mut("TableName") {
        pattern(name)?;
        *name = crate::stream::meta::qualified(account, daemon, name);
    }
    if let Some(Value::Object(items)) = obj.get_mut("RequestItems") {
        for name in items.keys() {
            pattern(name)?;
        }
        if account != daemon {
            let scoped = std::mem::take(items)
                .into_iter()
                .map(|(name, v)| (crate::stream::meta::qualified(account, daemon, &name), v))
                .collect();
            *items = scoped;
        }
    }
    Ok(())
}

/// A table's name as its account knows it.
fn display(name: &str) -> &str {
    crate::stream::meta::split_qualified(name).1
}

struct Ctx {
    svc: Arc<Service>,
    writes: Arc<Vec<tokio::sync::Mutex<()>>>,
    tables_lock: Arc<tokio::sync::Mutex<()>>,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::Validation(msg.into())
}

fn not_found() -> ApiError {
    ApiError::ResourceNotFound("Requested resource not found".into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::InternalFailure(e.to_string())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Table {
    name: String,
    id: u64,
    /// (attribute, HASH | RANGE)
    key_schema: Vec<(String, String)>,
    /// (attribute, S | N | B)
    attributes: Vec<(String, String)>,
    billing_mode: String,
    created_ms: i64,
    #[serde(default)]
    gsis: Vec<Value>,
    /// (read, write) capacity units of a PROVISIONED table, as given.
    #[serde(default)]
    capacity: (u64, u64),
    #[serde(default)]
    tags: Vec<Value>,
}

impl Table {
    fn arn(&self, svc: &Service) -> String {
        let (account, name) = svc.account_and_name(&self.name);
        format!("arn:aws:dynamodb:{}:{account}:table/{name}", svc.cfg.region)
    }

    fn key_names(&self) -> Vec<&str> {
        self.key_schema.iter().map(|k| k.0.as_str()).collect()
    }

    fn attr_type(&self, name: &str) -> &str {
        self.attributes.iter().find(|a| a.0 == name).map_or("S", |a| a.1.as_str())
    }

    fn prefix(&self) -> Vec<u8> {
        self.id.to_be_bytes().to_vec()
    }

    /// The stored key of the item with these key attributes, or DynamoDB's error.
    fn item_key(&self, key: &Item, what: &str) -> ApiResult<Vec<u8>> {
        let mut out = self.prefix();
        for name in self.key_names() {
            let v = key.get(name).ok_or_else(|| {
                invalid(format!("One or more parameter values were invalid: Missing the key {name} in the {what}"))
            })?;
            let t = self.attr_type(name);
            let raw = v.get(t).and_then(Value::as_str).ok_or_else(|| {
                if what == "key" {
                    invalid("The provided key element does not match the schema")
                } else {
                    invalid(format!(
                        "One or more parameter values were invalid: Type mismatch for key {name} expected: {t} actual: {}",
                        value::type_of(v).unwrap_or("?")
                    ))
                }
            })?;
            if raw.is_empty() {
                return Err(invalid(format!(
                    "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: {name}"
                )));
            }
            // Numbers are keyed by value, so 1 and 1.0 are one item.
            let canonical = if t == "N" { value::canonical_number(raw) } else { raw.to_owned() };
            out.extend_from_slice(&(canonical.len() as u32).to_be_bytes());
            out.extend_from_slice(canonical.as_bytes());
        }
        Ok(out)
    }

    fn description(&self, svc: &Service, status: &str, item_count: usize, bytes: usize) -> Value {
        let mut d = json!({
            "TableName": display(&self.name),
            "TableArn": self.arn(svc),
            "TableId": format!("{:08x}-0000-4000-8000-{:012x}", self.id, self.id),
            "TableStatus": status,
            "KeySchema": self.key_schema.iter().map(|(n, t)| json!({"AttributeName": n, "KeyType": t})).collect::<Vec<_>>(),
            "AttributeDefinitions": self.attributes.iter().map(|(n, t)| json!({"AttributeName": n, "AttributeType": t})).collect::<Vec<_>>(),
            "CreationDateTime": self.created_ms as f64 / 1000.0,
            "ItemCount": item_count,
            "TableSizeBytes": bytes,
            "BillingModeSummary": {"BillingMode": self.billing_mode},
            "ProvisionedThroughput": {"ReadCapacityUnits": self.capacity.0, "WriteCapacityUnits": self.capacity.1, "NumberOfDecreasesToday": 0},
            "DeletionProtectionEnabled": false,
        });
        if !self.gsis.is_empty() {
            d["GlobalSecondaryIndexes"] = Value::Array(
                self.gsis
                    .iter()
                    .map(|g| {
                        let mut g = g.clone();
                        g["IndexStatus"] = json!("ACTIVE");
                        g["IndexArn"] =
                            json!(format!("{}/index/{}", self.arn(svc), g["IndexName"].as_str().unwrap_or("")));
                        g
                    })
                    .collect(),
            );
        }
        d
    }
}

fn table_key(name: &str) -> String {
    format!("ddb/table/{name}")
}

fn check_table_name(name: &str) -> ApiResult<()> {
    let mut errors = Vec::new();
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) || name.is_empty() {
        errors.push(format!("Value '{name}' at 'tableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"));
    }
    if name.len() < 3 {
        errors.push(format!("Value '{name}' at 'tableName' failed to satisfy constraint: Member must have length greater than or equal to 3"));
    }
    if name.len() > 255 {
        errors.push(format!("Value '{name}' at 'tableName' failed to satisfy constraint: Member must have length less than or equal to 255"));
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(invalid(format!("1 validation error detected: {}", errors[0]))),
        n => Err(invalid(format!("{n} validation errors detected: {}", errors.join("; ")))),
    }
}

fn str_member<'a>(req: &'a Value, member: &str) -> Option<&'a str> {
    req.get(member).and_then(Value::as_str)
}

fn obj_member<'a>(req: &'a Value, member: &str) -> Option<&'a Map<String, Value>> {
    req.get(member).and_then(Value::as_object)
}

fn required_str<'a>(req: &'a Value, member: &str) -> ApiResult<&'a str> {
    str_member(req, member).ok_or_else(|| {
        invalid(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            crate::protocol::validate::lower_first(member)
        ))
    })
}

/// Numbers in their canonical spelling, as DynamoDB stores them.
fn normalized(item: &Item) -> Item {
    let mut v = Value::Object(item.clone());
    if let Some(m) = v.as_object_mut() {
        m.values_mut().for_each(value::normalize);
    }
    v.as_object().cloned().unwrap_or_default()
}

fn check_item(item: &Item) -> ApiResult<()> {
    for v in item.values() {
        value::check(v).map_err(invalid)?;
    }
    if value::item_size(item) > ITEM_BYTES_MAX {
        return Err(invalid("Item size has exceeded the maximum allowed size"));
    }
    Ok(())
}

/// The condition a write must meet: `ConditionExpression` or the legacy `Expected`.
enum Guard {
    None,
    Expr(Cond),
    Expected(Map<String, Value>, bool),
}

fn placeholders(req: &Value) -> Placeholders<'_> {
    Placeholders {
        names: obj_member(req, "ExpressionAttributeNames"),
        values: obj_member(req, "ExpressionAttributeValues"),
    }
}

/// DynamoDB refuses placeholders that no expression of the request uses.
fn check_placeholders_used(req: &Value) -> ApiResult<()> {
    let texts: Vec<&str> = [
        "ConditionExpression",
        "UpdateExpression",
        "FilterExpression",
        "KeyConditionExpression",
        "ProjectionExpression",
    ]
    .iter()
    .filter_map(|m| str_member(req, m))
    .collect();
    let used = |key: &str| {
        texts.iter().any(|t| {
            t.match_indices(key).any(|(i, _)| {
                let next = t[i + key.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
    };
    for (member, kind) in [("ExpressionAttributeNames", "Names"), ("ExpressionAttributeValues", "Values")] {
        if let Some(m) = obj_member(req, member) {
            let unused: Vec<&str> = m.keys().map(String::as_str).filter(|k| !used(k)).collect();
            if !unused.is_empty() {
                return Err(invalid(format!(
                    "Value provided in ExpressionAttribute{kind} unused in expressions: keys: {{{}}}",
                    unused.join(", ")
                )));
            }
        }
    }
    Ok(())
}

fn guard(req: &Value) -> ApiResult<Guard> {
    match (str_member(req, "ConditionExpression"), obj_member(req, "Expected")) {
        (Some(_), Some(_)) => Err(invalid(
            "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {Expected} Expression parameters: {ConditionExpression}",
        )),
        (Some(text), None) => {
            Ok(Guard::Expr(expr::parse_condition(text, &placeholders(req)).map_err(|e| invalid(format!("Invalid ConditionExpression: {e}")))?))
        }
        (None, Some(exp)) => {
            let any = str_member(req, "ConditionalOperator") == Some("OR");
            Ok(Guard::Expected(exp.clone(), any))
        }
        (None, None) => Ok(Guard::None),
    }
}

/// Whether a legacy `Expected` entry holds for `item`.
fn expected_holds(item: &Item, name: &str, spec: &Value) -> ApiResult<bool> {
    use std::cmp::Ordering::*;
    let cur = item.get(name);
    let list: Vec<Value> = match (spec.get("AttributeValueList"), spec.get("Value")) {
        (Some(Value::Array(l)), _) => l.clone(),
        (_, Some(v)) => vec![v.clone()],
        _ => Vec::new(),
    };
    let op = spec.get("ComparisonOperator").and_then(Value::as_str);
    let exists = spec.get("Exists").and_then(Value::as_bool);
    let first = list.first();
    let cmp = |b: Option<&Value>| match (cur, b) {
        (Some(a), Some(b)) => value::compare(a, b),
        _ => None,
    };
    Ok(match (op, exists) {
        (None, Some(false)) => {
            if first.is_some() {
                return Err(invalid(
                    "One or more parameter values were invalid: Value cannot be used when Exists is false",
                ));
            }
            cur.is_none()
        }
        (None, _) => match first {
            Some(_) => cmp(first) == Some(Equal),
            None => {
                return Err(invalid(
                    "One or more parameter values were invalid: Value must be provided when Exists is true",
                ))
            }
        },
        (Some("EQ"), _) => cmp(first) == Some(Equal),
        (Some("NE"), _) => cmp(first) != Some(Equal),
        (Some("LT"), _) => cmp(first) == Some(Less),
        (Some("LE"), _) => matches!(cmp(first), Some(Less | Equal)),
        (Some("GT"), _) => cmp(first) == Some(Greater),
        (Some("GE"), _) => matches!(cmp(first), Some(Greater | Equal)),
        (Some("NULL"), _) => cur.is_none(),
        (Some("NOT_NULL"), _) => cur.is_some(),
        (Some("BEGINS_WITH"), _) => match (
            cur.and_then(|c| c.get("S")).and_then(Value::as_str),
            first.and_then(|f| f.get("S")).and_then(Value::as_str),
        ) {
            (Some(a), Some(b)) => a.starts_with(b),
            _ => false,
        },
        (Some("IN"), _) => list.iter().any(|v| cmp(Some(v)) == Some(Equal)),
        (Some("BETWEEN"), _) => {
            matches!(cmp(list.first()), Some(Greater | Equal)) && matches!(cmp(list.get(1)), Some(Less | Equal))
        }
        (Some("CONTAINS"), _) | (Some("NOT_CONTAINS"), _) => {
            let has = match (cur, first) {
                (Some(c), Some(f)) => {
                    if let (Some(s), Some(sub)) =
                        (c.get("S").and_then(Value::as_str), f.get("S").and_then(Value::as_str))
                    {
                        s.contains(sub)
                    } else {
                        value::set_members(c).is_some_and(|m| m.iter().any(|x| value::compare(x, f) == Some(Equal)))
                    }
                }
                _ => false,
            };
            has == (op == Some("CONTAINS"))
        }
        (Some(other), _) => return Err(invalid(format!("Unsupported ComparisonOperator: {other}"))),
    })
}

fn guard_holds(g: &Guard, item: &Item) -> ApiResult<bool> {
    match g {
        Guard::None => Ok(true),
        Guard::Expr(c) => expr::holds(c, item).map_err(invalid),
        Guard::Expected(exp, any) => {
            let mut results = Vec::new();
            for (name, spec) in exp {
                results.push(expected_holds(item, name, spec)?);
            }
            Ok(if *any { results.iter().any(|r| *r) } else { results.iter().all(|r| *r) })
        }
    }
}

fn failed(req: &Value, old: Option<&Item>) -> ApiError {
    let item = (str_member(req, "ReturnValuesOnConditionCheckFailure") == Some("ALL_OLD"))
        .then(|| old.map(|o| Value::Object(o.clone()).to_string()))
        .flatten();
    ApiError::ConditionalCheckFailed("The conditional request failed".into(), item)
}

impl Ctx {
    async fn dispatch(&self, op: &str, req: Value, account: &str) -> ApiResult<Value> {
        check_placeholders_used(&req)?;
        match op {
            "CreateTable" => self.create_table(&req).await,
            "DescribeTable" => self.describe_table(&req),
            "UpdateTable" => self.update_table(&req).await,
            "DeleteTable" => self.delete_table(&req).await,
            "ListTables" => self.list_tables(&req, account),
            "GetItem" => self.get_item(&req),
            "PutItem" => self.put_item(&req).await,
            "UpdateItem" => self.update_item(&req).await,
            "DeleteItem" => self.delete_item(&req).await,
            "Scan" => self.scan(&req),
            "Query" => self.query(&req),
            "BatchGetItem" => self.batch_get(&req),
            "BatchWriteItem" => self.batch_write(&req).await,
            "TagResource" | "UntagResource" => Ok(Value::Null),
            "ListTagsOfResource" => Ok(json!({"Tags": []})),
            "UpdateContinuousBackups" | "DescribeContinuousBackups" => Ok(json!({
                "ContinuousBackupsDescription": {
                    "ContinuousBackupsStatus": "ENABLED",
                    "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": "DISABLED"}
                }
            })),
            _ => Err(ApiError::UnknownOperation(String::new())),
        }
    }

    fn stripe(&self, key: &[u8]) -> &tokio::sync::Mutex<()> {
        &self.writes[stripe_of(key)]
    }

    fn table(&self, name: &str) -> ApiResult<Table> {
        let stored = self.svc.store.get_meta(&table_key(name)).map_err(internal)?.ok_or_else(not_found)?;
        serde_json::from_slice(&stored).map_err(internal)
    }

    fn tables(&self) -> ApiResult<Vec<Table>> {
        let rows = self.svc.store.meta_scan("ddb/table/").map_err(internal)?;
        rows.iter().map(|(_, v)| serde_json::from_slice(v).map_err(internal)).collect()
    }

    fn counts(&self, t: &Table) -> ApiResult<(usize, usize)> {
        let rows = self.svc.store.item_scan(&t.prefix(), None, usize::MAX).map_err(internal)?;
        Ok((rows.len(), rows.iter().map(|(_, v)| v.len()).sum()))
    }

    async fn save_table(&self, t: &Table) -> ApiResult<()> {
        self.svc.put_meta(&table_key(&t.name), serde_json::to_vec(t).map_err(internal)?).await
    }

    async fn create_table(&self, req: &Value) -> ApiResult<Value> {
        let name = required_str(req, "TableName")?;
        check_table_name(display(name))?;
        let schema = req.get("KeySchema").and_then(Value::as_array).ok_or_else(|| {
            invalid("1 validation error detected: Value null at 'keySchema' failed to satisfy constraint: Member must not be null")
        })?;
        let key_schema: Vec<(String, String)> = schema
            .iter()
            .map(|k| {
                (k["AttributeName"].as_str().unwrap_or("").to_owned(), k["KeyType"].as_str().unwrap_or("").to_owned())
            })
            .collect();
        let shape_ok = matches!(key_schema.as_slice(), [(_, h)] if h == "HASH")
            || matches!(key_schema.as_slice(), [(_, h), (_, r)] if h == "HASH" && r == "RANGE");
        if !shape_ok || key_schema.iter().any(|k| k.0.is_empty()) {
            return Err(invalid("Invalid KeySchema: The first KeySchemaElement is not a HASH key type"));
        }
        let attributes: Vec<(String, String)> = req
            .get("AttributeDefinitions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|d| {
                        (
                            d["AttributeName"].as_str().unwrap_or("").to_owned(),
                            d["AttributeType"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (k, _) in &key_schema {
            if !attributes.iter().any(|a| &a.0 == k) {
                return Err(invalid(format!(
                    "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [{k}], AttributeDefinitions: [{}]",
                    attributes.iter().map(|a| a.0.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        if attributes.iter().any(|a| !["S", "N", "B"].contains(&a.1.as_str())) {
            return Err(invalid("One or more parameter values were invalid: An attribute type must be S, N or B"));
        }
        let _w = self.tables_lock.lock().await;
        if self.table(name).is_ok() {
            return Err(ApiError::ResourceInUse(format!("Table already exists: {name}")));
        }
        if self.tables()?.len() >= TABLES_MAX {
            return Err(ApiError::LimitExceeded(format!("Subscriber limit exceeded: at most {TABLES_MAX} tables")));
        }
        let store = self.svc.store.clone();
        let id = tokio::task::spawn_blocking(move || store.allocate_stream_id())
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let t = Table {
            name: name.to_owned(),
            id,
            key_schema,
            attributes,
            billing_mode: str_member(req, "BillingMode").unwrap_or("PROVISIONED").to_owned(),
            created_ms: self.svc.now_ms(),
            gsis: req.get("GlobalSecondaryIndexes").and_then(Value::as_array).cloned().unwrap_or_default(),
            capacity: (
                req["ProvisionedThroughput"]["ReadCapacityUnits"].as_u64().unwrap_or(0),
                req["ProvisionedThroughput"]["WriteCapacityUnits"].as_u64().unwrap_or(0),
            ),
            tags: req.get("Tags").and_then(Value::as_array).cloned().unwrap_or_default(),
        };
        self.save_table(&t).await?;
        Ok(json!({"TableDescription": t.description(&self.svc, "ACTIVE", 0, 0)}))
    }

    fn describe_table(&self, req: &Value) -> ApiResult<Value> {
        let name = required_str(req, "TableName")?;
        let t = self.table(name).map_err(|e| match e {
            ApiError::ResourceNotFound(_) => {
                ApiError::ResourceNotFound(format!("Requested resource not found: Table: {name} not found"))
            }
            other => other,
        })?;
        let (n, bytes) = self.counts(&t)?;
        Ok(json!({"Table": t.description(&self.svc, "ACTIVE", n, bytes)}))
    }

    async fn update_table(&self, req: &Value) -> ApiResult<Value> {
        let name = required_str(req, "TableName")?;
        let _w = self.tables_lock.lock().await;
        let mut t = self.table(name)?;
        for update in req.get("GlobalSecondaryIndexUpdates").and_then(Value::as_array).cloned().unwrap_or_default() {
            if let Some(create) = update.get("Create") {
                let index = create["IndexName"].as_str().unwrap_or("");
                if t.gsis.iter().any(|g| g["IndexName"] == index) {
                    return Err(ApiError::Validation(format!(
                        "One or more parameter values were invalid: Index already exists: {index}"
                    )));
                }
                t.gsis.push(create.clone());
            }
            if let Some(delete) = update.get("Delete") {
                t.gsis.retain(|g| g["IndexName"] != delete["IndexName"]);
            }
        }
        for d in req.get("AttributeDefinitions").and_then(Value::as_array).cloned().unwrap_or_default() {
            let n = d["AttributeName"].as_str().unwrap_or("").to_owned();
            if !t.attributes.iter().any(|a| a.0 == n) {
                t.attributes.push((n, d["AttributeType"].as_str().unwrap_or("S").to_owned()));
            }
        }
        if let Some(mode) = str_member(req, "BillingMode") {
            t.billing_mode = mode.to_owned();
        }
        if let Some(p) = req.get("ProvisionedThroughput") {
            t.capacity = (p["ReadCapacityUnits"].as_u64().unwrap_or(0), p["WriteCapacityUnits"].as_u64().unwrap_or(0));
        }
        self.save_table(&t).await?;
        let (n, bytes) = self.counts(&t)?;
        Ok(json!({"TableDescription": t.description(&self.svc, "ACTIVE", n, bytes)}))
    }

    async fn delete_table(&self, req: &Value) -> ApiResult<Value> {
        let name = required_str(req, "TableName")?;
        let _w = self.tables_lock.lock().await;
        let t = self.table(name)?;
        let (n, bytes) = self.counts(&t)?;
        let store = self.svc.store.clone();
        let prefix = t.prefix();
        tokio::task::spawn_blocking(move || store.item_delete_prefix(&prefix))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        self.svc.delete_meta(&table_key(name)).await?;
        Ok(json!({"TableDescription": t.description(&self.svc, "DELETING", n, bytes)}))
    }

    /// Lists the tables of `account` (the caller's).
    fn list_tables(&self, req: &Value, account: &str) -> ApiResult<Value> {
        let limit = req.get("Limit").and_then(Value::as_u64).unwrap_or(100).clamp(1, 100) as usize;
        let after = str_member(req, "ExclusiveStartTableName");
        let mut names: Vec<String> = self
            .tables()?
            .into_iter()
            .filter(|t| self.svc.account_and_name(&t.name).0 == account)
            .map(|t| display(&t.name).to_owned())
            .filter(|n| after.is_none_or(|a| n.as_str() > a))
            .collect();
        names.sort();
        let page: Vec<&String> = names.iter().take(limit).collect();
        let mut out = json!({"TableNames": page});
        if names.len() > page.len() {
            out["LastEvaluatedTableName"] = json!(page.last());
        }
        Ok(out)
    }

    fn load(&self, key: &[u8]) -> ApiResult<Option<Item>> {
        match self.svc.store.item_get(key).map_err(internal)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(internal)?)),
            None => Ok(None),
        }
    }

    async fn store(&self, key: Vec<u8>, item: Option<&Item>) -> ApiResult<()> {
        let bytes = item.map(serde_json::to_vec).transpose().map_err(internal)?;
        let store = self.svc.store.clone();
        tokio::task::spawn_blocking(move || store.item_put(&key, bytes.as_deref()))
            .await
            .map_err(internal)?
            .map_err(internal)
    }

    fn key_of<'a>(&self, req: &'a Value) -> ApiResult<&'a Item> {
        obj_member(req, "Key").ok_or_else(|| {
            invalid("1 validation error detected: Value null at 'key' failed to satisfy constraint: Member must not be null")
        })
    }

    fn get_item(&self, req: &Value) -> ApiResult<Value> {
        let t = self.table(required_str(req, "TableName")?)?;
        let key = self.key_of(req)?;
        if key.len() != t.key_schema.len() {
            return Err(invalid("The provided key element does not match the schema"));
        }
        let item = self.load(&t.item_key(key, "key")?)?;
        Ok(match item {
            Some(i) => json!({"Item": project(&i, req)}),
            None => json!({}),
        })
    }

    async fn put_item(&self, req: &Value) -> ApiResult<Value> {
        let t = self.table(required_str(req, "TableName")?)?;
        let item = obj_member(req, "Item").ok_or_else(|| {
            invalid("1 validation error detected: Value null at 'item' failed to satisfy constraint: Member must not be null")
        })?;
        check_item(item)?;
        let item = &normalized(item);
        let key = t.item_key(item, "item")?;
        let g = guard(req)?;
        let _w = self.stripe(&key).lock().await;
        let old = self.load(&key)?;
        if !guard_holds(&g, old.as_ref().unwrap_or(&Item::new()))? {
            return Err(failed(req, old.as_ref()));
        }
        self.store(key, Some(item)).await?;
        Ok(match (str_member(req, "ReturnValues"), old) {
            (Some("ALL_OLD"), Some(o)) => json!({"Attributes": o}),
            _ => json!({}),
        })
    }

    async fn delete_item(&self, req: &Value) -> ApiResult<Value> {
        let t = self.table(required_str(req, "TableName")?)?;
        let key = t.item_key(self.key_of(req)?, "key")?;
        let g = guard(req)?;
        let _w = self.stripe(&key).lock().await;
        let old = self.load(&key)?;
        if !guard_holds(&g, old.as_ref().unwrap_or(&Item::new()))? {
            return Err(failed(req, old.as_ref()));
        }
        if old.is_some() {
            self.store(key, None).await?;
        }
        Ok(match (str_member(req, "ReturnValues"), old) {
            (Some("ALL_OLD"), Some(o)) => json!({"Attributes": o}),
            _ => json!({}),
        })
    }

    async fn update_item(&self, req: &Value) -> ApiResult<Value> {
        let t = self.table(required_str(req, "TableName")?)?;
        let key_attrs = self.key_of(req)?.clone();
        let key = t.item_key(&key_attrs, "key")?;
        let g = guard(req)?;
        let update = match (str_member(req, "UpdateExpression"), obj_member(req, "AttributeUpdates")) {
            (Some(_), Some(_)) => {
                return Err(invalid("Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {AttributeUpdates} Expression parameters: {UpdateExpression}"))
            }
            (Some(text), None) => Some(expr::parse_update(text, &placeholders(req)).map_err(|e| invalid(format!("Invalid UpdateExpression: {e}")))?),
            _ => None,
        };
        let touched: Vec<String> = update
            .iter()
            .flat_map(|u| {
                u.set
                    .iter()
                    .map(|(p, _)| p)
                    .chain(u.remove.iter())
                    .chain(u.add.iter().map(|(p, _)| p))
                    .chain(u.delete.iter().map(|(p, _)| p))
            })
            .filter_map(|p| match p.first() {
                Some(expr::Step::Attr(a)) => Some(a.clone()),
                _ => None,
            })
            .chain(obj_member(req, "AttributeUpdates").into_iter().flat_map(|m| m.keys().cloned()))
            .collect();
        if let Some(k) = t.key_names().into_iter().find(|k| touched.iter().any(|a| a == k)) {
            return Err(invalid(format!(
                "One or more parameter values were invalid: Cannot update attribute {k}. This attribute is part of the key"
            )));
        }
        let _w = self.stripe(&key).lock().await;
        let old = self.load(&key)?;
        let base = old.clone().unwrap_or_default();
        if !guard_holds(&g, &base)? {
            return Err(failed(req, old.as_ref()));
        }
        let mut new = base.clone();
        for (k, v) in &key_attrs {
            new.insert(k.clone(), v.clone());
        }
        if let Some(u) = &update {
            expr::apply(u, &mut new).map_err(invalid)?;
        }
        if let Some(updates) = obj_member(req, "AttributeUpdates") {
            for (name, spec) in updates {
                let action = spec.get("Action").and_then(Value::as_str).unwrap_or("PUT");
                let v = spec.get("Value");
                match (action, v) {
                    ("PUT", Some(v)) => {
                        new.insert(name.clone(), v.clone());
                    }
                    ("DELETE", None) => {
                        new.remove(name);
                    }
                    ("DELETE", Some(v)) => {
                        if let Some(cur) = new.get(name).cloned() {
                            match value::delete_from_set(&cur, v).map_err(invalid)? {
                                Some(left) => new.insert(name.clone(), left),
                                None => new.remove(name),
                            };
                        }
                    }
                    ("ADD", Some(v)) => {
                        let merged = value::add(new.get(name), v).map_err(invalid)?;
                        new.insert(name.clone(), merged);
                    }
                    _ => {
                        return Err(invalid(format!(
                            "One or more parameter values were invalid: Action {action} needs a Value"
                        )))
                    }
                }
            }
        }
        for k in t.key_names() {
            if new.get(k) != key_attrs.get(k) {
                return Err(invalid(format!(
                    "One or more parameter values were invalid: Cannot update attribute {k}. This attribute is part of the key"
                )));
            }
        }
        check_item(&new)?;
        let new = normalized(&new);
        self.store(key, Some(&new)).await?;
        let changed = |from: &Item, to: &Item| -> Item {
            to.iter().filter(|(k, v)| from.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        Ok(match str_member(req, "ReturnValues") {
            Some("ALL_NEW") => json!({"Attributes": new}),
            Some("ALL_OLD") => old.map_or(json!({}), |o| json!({"Attributes": o})),
            Some("UPDATED_NEW") => json!({"Attributes": changed(&base, &new)}),
            Some("UPDATED_OLD") => {
                let gone: Item =
                    base.iter().filter(|(k, v)| new.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
                json!({"Attributes": gone})
            }
            _ => json!({}),
        })
    }

    fn scan(&self, req: &Value) -> ApiResult<Value> {
        let t = self.table(required_str(req, "TableName")?)?;
        let limit =
            req.get("Limit").and_then(Value::as_u64).map_or(SCAN_ITEMS_MAX, |l| (l as usize).clamp(1, SCAN_ITEMS_MAX));
        let filter = match str_member(req, "FilterExpression") {
            Some(text) => Some(
                expr::parse_condition(text, &placeholders(req))
                    .map_err(|e| invalid(format!("Invalid FilterExpression: {e}")))?,
            ),
            None => None,
        };
        let segment = match (req.get("Segment").and_then(Value::as_u64), req.get("TotalSegments").and_then(Value::as_u64)) {
            (Some(s), Some(n)) if n >= 1 && s < n => Some((s, n)),
            (None, None) => None,
            _ => return Err(invalid("The Segment parameter is required but was not present in the request when parameter TotalSegments is present")),
        };
        let after = match obj_member(req, "ExclusiveStartKey") {
            Some(k) => Some(t.item_key(k, "key")?),
            None => None,
        };
        let rows = self.svc.store.item_scan(&t.prefix(), after.as_deref(), usize::MAX).map_err(internal)?;
        let mut items = Vec::new();
        let (mut scanned, mut bytes, mut last) = (0usize, 0usize, None);
        for (k, v) in rows {
            if let Some((s, n)) = segment {
                if u64::from(crc32fast::hash(&k)) % n != s {
                    continue;
                }
            }
            if scanned >= limit || bytes >= SCAN_BYTES_MAX {
                break;
            }
            let item: Item = serde_json::from_slice(&v).map_err(internal)?;
            scanned += 1;
            bytes += v.len();
            last = Some(item.clone());
            let keep = match &filter {
                Some(f) => expr::holds(f, &item).map_err(invalid)?,
                None => true,
            };
            if keep {
                items.push(Value::Object(project(&item, req)));
            }
        }
        let more = scanned >= limit || bytes >= SCAN_BYTES_MAX;
        let mut out = json!({"Count": items.len(), "ScannedCount": scanned});
        if str_member(req, "Select") != Some("COUNT") {
            out["Items"] = Value::Array(items);
        }
        if more {
            if let Some(last) = last {
                let key: Item =
                    t.key_names().iter().filter_map(|k| last.get(*k).map(|v| (k.to_string(), v.clone()))).collect();
                out["LastEvaluatedKey"] = Value::Object(key);
            }
        }
        Ok(out)
    }
}

impl Ctx {
    fn all_items(&self, t: &Table) -> ApiResult<Vec<Item>> {
        let rows = self.svc.store.item_scan(&t.prefix(), None, usize::MAX).map_err(internal)?;
        rows.iter().map(|(_, v)| serde_json::from_slice(v).map_err(internal)).collect()
    }

    fn query(&self, req: &Value) -> ApiResult<Value> {
        let t = self.table(required_str(req, "TableName")?)?;
        // The key schema the query runs on: the table's, or the index's.
        let (keys, projection): (Vec<(String, String)>, Option<String>) = match str_member(req, "IndexName") {
            Some(index) => {
                let g = t
                    .gsis
                    .iter()
                    .find(|g| g["IndexName"] == index)
                    .ok_or_else(|| invalid(format!("The table does not have the specified index: {index}")))?;
                let keys = g["KeySchema"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|k| {
                                (
                                    k["AttributeName"].as_str().unwrap_or("").to_owned(),
                                    k["KeyType"].as_str().unwrap_or("").to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (keys, g["Projection"]["ProjectionType"].as_str().map(str::to_owned))
            }
            None => (t.key_schema.clone(), None),
        };
        let hash = keys.first().map(|k| k.0.clone()).ok_or_else(|| invalid("The index has no key schema"))?;
        let range = keys.get(1).map(|k| k.0.clone());
        let key_cond = match (str_member(req, "KeyConditionExpression"), obj_member(req, "KeyConditions")) {
            (Some(text), _) => Some(Guard::Expr(
                expr::parse_condition(text, &placeholders(req))
                    .map_err(|e| invalid(format!("Invalid KeyConditionExpression: {e}")))?,
            )),
            (None, Some(kc)) => Some(Guard::Expected(kc.clone(), false)),
            (None, None) => None,
        }
        .ok_or_else(|| {
            invalid("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.")
        })?;
        let filter = match str_member(req, "FilterExpression") {
            Some(text) => Some(
                expr::parse_condition(text, &placeholders(req))
                    .map_err(|e| invalid(format!("Invalid FilterExpression: {e}")))?,
            ),
            None => None,
        };
        let mut matched = Vec::new();
        for item in self.all_items(&t)? {
            // An index holds only the items that have its key attributes.
            if !keys.iter().all(|(k, _)| item.contains_key(k)) {
                continue;
            }
            if guard_holds(&key_cond, &item)? {
                matched.push(item);
            }
        }
        let order = |a: &Item, b: &Item| {
            let by = |name: &str| match (a.get(name), b.get(name)) {
                (Some(x), Some(y)) => value::compare(x, y).unwrap_or(std::cmp::Ordering::Equal),
                _ => std::cmp::Ordering::Equal,
            };
            let mut o = by(&hash);
            if let Some(r) = &range {
                o = o.then(by(r));
            }
            // Then the table's key, so that the order (and paging) is total.
            for k in t.key_names() {
                o = o.then(by(k));
            }
            o
        };
        matched.sort_by(order);
        if req.get("ScanIndexForward").and_then(Value::as_bool) == Some(false) {
            matched.reverse();
        }
        let key_of = |item: &Item| -> Item {
            let mut names: Vec<&str> = t.key_names();
            names.extend(keys.iter().map(|k| k.0.as_str()));
            names.iter().filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone()))).collect()
        };
        if let Some(start) = obj_member(req, "ExclusiveStartKey") {
            match matched.iter().position(|i| key_of(i).iter().all(|(k, v)| start.get(k) == Some(v))) {
                Some(p) => {
                    matched.drain(..=p);
                }
                None => matched.clear(),
            }
        }
        let limit =
            req.get("Limit").and_then(Value::as_u64).map_or(SCAN_ITEMS_MAX, |l| (l as usize).clamp(1, SCAN_ITEMS_MAX));
        let more = matched.len() > limit;
        matched.truncate(limit);
        let mut items = Vec::new();
        for item in &matched {
            let keep = match &filter {
                Some(f) => expr::holds(f, item).map_err(invalid)?,
                None => true,
            };
            if keep {
                let shown = if projection.as_deref() == Some("KEYS_ONLY") { key_of(item) } else { project(item, req) };
                items.push(Value::Object(shown));
            }
        }
        let mut out = json!({"Count": items.len(), "ScannedCount": matched.len()});
        if str_member(req, "Select") != Some("COUNT") {
            out["Items"] = Value::Array(items);
        }
        if more {
            if let Some(last) = matched.last() {
                out["LastEvaluatedKey"] = Value::Object(key_of(last));
            }
        }
        Ok(out)
    }

    fn batch_get(&self, req: &Value) -> ApiResult<Value> {
        let requests = obj_member(req, "RequestItems").ok_or_else(|| {
            invalid("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must not be null")
        })?;
        let total: usize = requests.values().map(|r| r["Keys"].as_array().map_or(0, Vec::len)).sum();
        if total > 100 {
            return Err(invalid("Too many items requested for the BatchGetItem call"));
        }
        let mut responses = Map::new();
        for (name, r) in requests {
            let t = self.table(name)?;
            let mut found = Vec::new();
            for key in r["Keys"].as_array().cloned().unwrap_or_default() {
                let key = key.as_object().cloned().unwrap_or_default();
                if let Some(item) = self.load(&t.item_key(&key, "key")?)? {
                    found.push(Value::Object(project(&item, r)));
                }
            }
            responses.insert(display(name).to_owned(), Value::Array(found));
        }
        Ok(json!({"Responses": responses, "UnprocessedKeys": {}}))
    }

    async fn batch_write(&self, req: &Value) -> ApiResult<Value> {
        let requests = obj_member(req, "RequestItems").ok_or_else(|| {
            invalid("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must not be null")
        })?;
        let total: usize = requests.values().map(|r| r.as_array().map_or(0, Vec::len)).sum();
        if total == 0 || total > 25 {
            return Err(invalid(format!(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 25, Member must have length greater than or equal to 1]; {total} writes"
            )));
        }
        // Every write is checked before any is made.
        let mut writes = Vec::new();
        for (name, list) in requests {
            let t = self.table(name)?;
            for w in list.as_array().cloned().unwrap_or_default() {
                if let Some(item) = w.get("PutRequest").and_then(|p| p.get("Item")).and_then(Value::as_object) {
                    check_item(item)?;
                    let item = normalized(item);
                    writes.push((t.item_key(&item, "item")?, Some(item)));
                } else if let Some(key) = w.get("DeleteRequest").and_then(|d| d.get("Key")).and_then(Value::as_object) {
                    writes.push((t.item_key(key, "key")?, None));
                } else {
                    return Err(invalid("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes"));
                }
            }
        }
        // Every stripe the batch touches, in order (no deadlock with single writes).
        let mut stripes: Vec<usize> = writes.iter().map(|(k, _)| stripe_of(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for i in stripes {
            guards.push(self.writes[i].lock().await);
        }
        for (key, item) in writes {
            self.store(key, item.as_ref()).await?;
        }
        drop(guards);
        Ok(json!({"UnprocessedItems": {}}))
    }
}

/// The attributes a read asks for (`ProjectionExpression` of top-level names, or the legacy
/// `AttributesToGet`); all of them otherwise.
fn project(item: &Item, req: &Value) -> Item {
    let names: Option<Vec<String>> = match (str_member(req, "ProjectionExpression"), req.get("AttributesToGet")) {
        (Some(p), _) => Some(
            p.split(',')
                .map(|n| {
                    let n = n.trim();
                    match n.strip_prefix('#') {
                        Some(_) => obj_member(req, "ExpressionAttributeNames")
                            .and_then(|m| m.get(n))
                            .and_then(Value::as_str)
                            .unwrap_or(n)
                            .to_owned(),
                        None => n.to_owned(),
                    }
                })
                .collect(),
        ),
        (None, Some(Value::Array(a))) => Some(a.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
        _ => None,
    };
    match names {
        Some(names) => item.iter().filter(|(k, _)| names.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect(),
        None => item.clone(),
    }
}
