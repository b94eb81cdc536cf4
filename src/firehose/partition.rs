//! Dynamic partitioning's MetadataExtraction: a jq query (jaq, as JQ-1.6 queries are written)
//! over each record's JSON, giving the partition keys `!{partitionKeyFromQuery:<name>}` names.
//! The query must answer one object of at most [`KEYS_MAX`] keys whose values are strings,
//! numbers or booleans.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::Val;

/// Partition keys from one query, at most (AWS's limit).
pub const KEYS_MAX: usize = 50;
/// Partitions of one delivery buffer, at most; records beyond go to `partitioning-failed`.
pub const PARTITIONS_MAX: usize = 500;

/// A compiled MetadataExtractionQuery.
pub struct Query {
    filter: jaq_core::compile::Filter<jaq_core::Native<data::JustLut<Val>>>,
}

impl Query {
    /// Compiles a query; the error is for InvalidArgumentException.
    pub fn compile(code: &str) -> Result<Query, String> {
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|e| format!("MetadataExtractionQuery {code} does not parse ({} errors)", e.len()))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|e| format!("MetadataExtractionQuery {code} does not compile ({} errors)", e.len()))?;
        Ok(Query { filter })
    }

    /// The partition keys of one record, in the query's order.
    pub fn keys(&self, data: &[u8]) -> Result<Vec<(String, String)>, String> {
        let input = jaq_json::read::parse_single(data).map_err(|e| format!("the record is not JSON: {e}"))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut out = self.filter.id.run((ctx, input)).map(unwrap_valr);
        let first = match out.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(format!("the query failed: {e}")),
            None => return Err("the query gave no value".into()),
        };
        let json: serde_json::Value =
            serde_json::from_str(&first.to_string()).map_err(|e| format!("the query's value is not JSON: {e}"))?;
        let Some(map) = json.as_object() else { return Err(format!("the query gave {json}, not an object")) };
        if map.len() > KEYS_MAX {
            return Err(format!("the query gave {} keys; at most {KEYS_MAX}", map.len()));
        }
        map.iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
                serde_json::Value::Number(n) => Ok((k.clone(), n.to_string())),
                serde_json::Value::Bool(b) => Ok((k.clone(), b.to_string())),
                other => Err(format!("partition key {k} is {other}, not a string, number or boolean")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_give_partition_keys() {
        let q = Query::compile("{customer_id: .customer.id, year: .ts[0:4], ok: .ok}").unwrap();
        let k = q.keys(br#"{"customer": {"id": 42}, "ts": "2026-12-02", "ok": true}"#).unwrap();
        let mut k = k;
        k.sort();
        assert_eq!(
            k,
            [("customer_id".into(), "42".into()), ("ok".into(), "true".into()), ("year".into(), "2026".into())]
        );
        assert!(q.keys(b"not json").is_err());
        assert!(q.keys(br#"{"customer": {"id": [1]}, "ts": "2026", "ok": 1}"#).is_err(), "an array is no key");
        assert!(Query::compile(".customer | map(").is_err());
        assert!(Query::compile(".a").unwrap().keys(br#"{"a": 1}"#).is_err(), "not an object");
        assert!(Query::compile("{a: error(\"x\")}").unwrap().keys(b"{}").is_err());
    }
}
