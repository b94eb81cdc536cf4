//! AWS's request validation, driven by a service's model. Pure: a request in, an error or nothing
//! out.
//!
//! A service ships its request shapes as JSON (generated from botocore's service model by
//! `scripts/gen_model.py`), and [`Model::check`] answers a request as AWS's Java-based
//! front ends do, in two passes:
//! 1. **Types.** Each member is checked against its shape's type, in member order; the first
//!    mismatch is a `SerializationException` with the text AWS sends (`class java.lang.String can
//!    not be converted to an Integer`, `Expected map or null`, `Start of structure or map found
//!    where not expected.`, base64 faults of blobs, ...). Integers are floored and clamped to
//!    32 bits as AWS does, and `null` members are removed, so later decoding sees AWS's value.
//! 2. **Constraints.** Every violated constraint (required, length, pattern, range, enum, list and
//!    map member lengths) is collected, at most [`ERRORS_MAX`], into one `ValidationException`:
//!    `N validation errors detected: Value '...' at 'member' failed to satisfy constraint: ...`,
//!    members named in lower camel case with their path (`records.1.member.partitionKey`).
//!
//! Business rules (does the stream exist, is the shard open) come after, in the service.

use std::collections::HashMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Number, Value};

use super::error::ApiError;

/// AWS reports at most this many violations of one request.
pub const ERRORS_MAX: usize = 10;

/// The hash AWS's Java objects print with, which its messages show for list members.
const JAVA_OBJECT_HASH: &str = "c965e310";

#[derive(Debug, Deserialize)]
struct Operation {
    input: Option<String>,
    output: bool,
}

#[derive(Debug, Deserialize)]
struct Shape {
    #[serde(rename = "type")]
    kind: String,
    min: Option<f64>,
    max: Option<f64>,
    pattern: Option<String>,
    #[serde(rename = "enum")]
    values: Option<Vec<String>>,
    #[serde(default)]
    members: Vec<(String, String, bool)>,
    member: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ModelFile {
    java_package: String,
    operations: HashMap<String, Operation>,
    shapes: HashMap<String, Shape>,
}

/// A service's request shapes, ready to check requests against.
pub struct Model {
    java_package: String,
    operations: HashMap<String, Operation>,
    shapes: HashMap<String, Shape>,
    patterns: HashMap<String, regex::Regex>,
}

impl Model {
    /// Loads a model file. Panics on a malformed file: models are compiled into the binary and
    /// checked by tests.
    pub fn from_json(text: &str) -> Model {
        let file: ModelFile = serde_json::from_str(text).expect("a service model is valid JSON of the model format");
        let mut patterns = HashMap::new();
        for shape in file.shapes.values() {
            if let Some(p) = &shape.pattern {
                if !patterns.contains_key(p) {
                    // Java's String.matches: the whole value must match.
                    // Some of AWS's patterns repeat Unicode classes hundreds of times: more room
                    // than the default compiled size.
                    let re = regex::RegexBuilder::new(&format!("^(?:{p})$"))
                        .size_limit(256 << 20)
                        .build()
                        .expect("model patterns are valid regexes");
                    patterns.insert(p.clone(), re);
                }
            }
        }
        Model { java_package: file.java_package, operations: file.operations, shapes: file.shapes, patterns }
    }

    /// Whether the model has `op`.
    pub fn has_operation(&self, op: &str) -> bool {
        self.operations.contains_key(op)
    }

    /// Whether `op`'s input shape declares the top-level member `member`.
    pub fn has_member(&self, op: &str, member: &str) -> bool {
        let input = self.operations.get(op).and_then(|o| o.input.as_deref());
        input.and_then(|i| self.shapes.get(i)).is_some_and(|s| s.members.iter().any(|(m, _, _)| m == member))
    }

    /// Whether `op` answers with a body (`false`: AWS sends an empty one).
    pub fn has_output(&self, op: &str) -> bool {
        self.operations.get(op).is_some_and(|o| o.output)
    }

    /// Checks `input` (a JSON object) against `op`'s input shape, normalizing it as AWS reads it.
    /// A request of a JSON service decoded and checked: the operation known, the body decoded,
    /// the caller authenticated and the input valid.
    pub fn request(
        &self,
        operations: &[&str],
        op: &str,
        proto: crate::protocol::codec::Protocol,
        body: &[u8],
        kinds: &crate::protocol::codec::MemberKinds,
        auth: Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        if !operations.contains(&op) {
            return Err(ApiError::UnknownOperation(String::new()));
        }
        let mut value = crate::protocol::codec::decode_request(proto, body, kinds)?;
        auth?;
        self.check(op, &mut value)?;
        Ok(value)
    }

    pub fn check(&self, op: &str, input: &mut Value) -> Result<(), ApiError> {
        let Some(shape) = self.operations.get(op).and_then(|o| o.input.as_deref()) else {
            return Ok(());
        };
        self.types(shape, input)?;
        let mut errors = Vec::new();
        self.constraints(shape, Some(input), "", &mut errors);
        if errors.is_empty() {
            return Ok(());
        }
        errors.truncate(ERRORS_MAX);
        let n = errors.len();
        Err(ApiError::Validation(format!(
            "{n} validation error{} detected: {}",
            if n == 1 { "" } else { "s" },
            errors.join("; ")
        )))
    }

    fn shape(&self, name: &str) -> &Shape {
        self.shapes.get(name).expect("model shapes are closed under reference")
    }

    fn types(&self, name: &str, v: &mut Value) -> Result<(), ApiError> {
        let shape = self.shape(name);
        let err = |m: String| Err(ApiError::Serialization(m));
        let nested = |v: &Value| match v {
            Value::Array(_) => Some("Start of list found where not expected".to_owned()),
            Value::Object(_) => Some("Start of structure or map found where not expected.".to_owned()),
            _ => None,
        };
        const NUMBER: &str = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber";
        match shape.kind.as_str() {
            "string" => match v {
                Value::String(_) => Ok(()),
                Value::Bool(_) => err("class java.lang.Boolean can not be converted to an String".into()),
                Value::Number(_) => err(format!("{NUMBER} can not be converted to an String")),
                other => err(nested(other).unwrap_or_default()),
            },
            "integer" | "long" | "double" | "float" => {
                let java = match shape.kind.as_str() {
                    "integer" => "Integer",
                    "long" => "Long",
                    "float" => "Float",
                    _ => "Double",
                };
                match v {
                    Value::Number(n) => {
                        if let Some(f) = n.as_f64().filter(|_| !n.is_i64() && !n.is_u64()) {
                            if java == "Integer" || java == "Long" {
                                *n = Number::from(f.floor().clamp(i64::MIN as f64, i64::MAX as f64) as i64);
                            }
                        }
                        if java == "Integer" {
                            let clamped = n.as_i64().map(|i| i.clamp(i32::MIN as i64, i32::MAX as i64)).or_else(|| {
                                n.as_u64().map(|_| i32::MAX as i64) // beyond i64
                            });
                            if let Some(c) = clamped {
                                *n = Number::from(c);
                            }
                        } else if java == "Long" && n.is_u64() && !n.is_i64() {
                            *n = Number::from(i64::MAX);
                        }
                        Ok(())
                    }
                    Value::Bool(_) => err(format!("class java.lang.Boolean can not be converted to an {java}")),
                    Value::String(_) => err(format!("class java.lang.String can not be converted to an {java}")),
                    other => err(nested(other).unwrap_or_default()),
                }
            }
            "boolean" => match v {
                Value::Bool(_) => Ok(()),
                Value::Number(_) => err(format!("{NUMBER} can not be converted to an Boolean")),
                Value::String(s) => err(format!("'{}' can not be converted to an Boolean", s.to_uppercase())),
                other => err(nested(other).unwrap_or_default()),
            },
            "timestamp" => match v {
                Value::Number(_) => Ok(()),
                Value::Bool(_) => {
                    err("class java.lang.Boolean can not be converted to milliseconds since epoch".into())
                }
                Value::String(_) => {
                    err("class java.lang.String can not be converted to milliseconds since epoch".into())
                }
                other => err(nested(other).unwrap_or_default()),
            },
            "blob" => match v {
                Value::String(s) => match base64_fault(s) {
                    Some(fault) => err(format!("'{s}' can not be converted to a Blob: {fault}")),
                    None => Ok(()),
                },
                Value::Bool(_) => err("class java.lang.Boolean can not be converted to a Blob".into()),
                Value::Number(_) => err(format!("{NUMBER} can not be converted to a Blob")),
                other => err(nested(other).unwrap_or_default()),
            },
            "list" => match v {
                Value::Array(items) => {
                    let member = shape.member.as_deref().expect("a list shape names its member");
                    for item in items.iter_mut() {
                        if !item.is_null() {
                            self.types(member, item)?;
                        }
                    }
                    Ok(())
                }
                Value::Object(_) => err("Start of structure or map found where not expected.".into()),
                _ => err("Expected list or null".into()),
            },
            "map" => match v {
                Value::Object(m) => {
                    let value = shape.value.as_deref().expect("a map shape names its value");
                    for item in m.values_mut() {
                        if !item.is_null() {
                            self.types(value, item)?;
                        }
                    }
                    Ok(())
                }
                Value::Array(_) => err("Start of list found where not expected".into()),
                _ => err("Expected map or null".into()),
            },
            "structure" => match v {
                Value::Object(m) => {
                    m.retain(|_, v| !v.is_null());
                    for (member, member_shape, _) in &shape.members {
                        if let Some(mv) = m.get_mut(member) {
                            self.types(member_shape, mv)?;
                        }
                    }
                    Ok(())
                }
                Value::Array(_) => err("Start of list found where not expected".into()),
                _ => err("Expected null".into()),
            },
            _ => Ok(()),
        }
    }

    fn constraints(&self, name: &str, v: Option<&Value>, path: &str, errors: &mut Vec<String>) {
        let shape = self.shape(name);
        let Some(v) = v else { return };
        match shape.kind.as_str() {
            "structure" => {
                let Value::Object(m) = v else { return };
                for (member, member_shape, required) in &shape.members {
                    let p = join(path, &lower_first(member));
                    match m.get(member) {
                        None if *required => push(errors, "null".into(), &p, "Member must not be null"),
                        None => {}
                        Some(mv) => self.member_constraints(member_shape, mv, &p, errors),
                    }
                }
            }
            _ => self.member_constraints(name, v, path, errors),
        }
    }

    fn member_constraints(&self, name: &str, v: &Value, path: &str, errors: &mut Vec<String>) {
        let shape = self.shape(name);
        let shown = || format!("'{}'", self.show(name, v));
        match shape.kind.as_str() {
            "structure" => self.constraints(name, Some(v), path, errors),
            "string" => {
                let Value::String(s) = v else { return };
                if let Some(p) = &shape.pattern {
                    if !self.patterns[p].is_match(s) {
                        push(errors, shown(), path, &format!("Member must satisfy regular expression pattern: {p}"));
                    }
                }
                if let Some(values) = &shape.values {
                    if !values.contains(s) {
                        push(
                            errors,
                            shown(),
                            path,
                            &format!("Member must satisfy enum value set: [{}]", values.join(", ")),
                        );
                    }
                }
                length(errors, shape, java_len(s), shown, path);
            }
            "blob" => {
                let Value::String(s) = v else { return };
                length(errors, shape, blob_len(s), shown, path);
            }
            "integer" | "long" | "double" | "float" => {
                let Some(n) = v.as_f64() else { return };
                if let Some(min) = shape.min.filter(|m| n < *m) {
                    push(errors, shown(), path, &format!("Member must have value greater than or equal to {min}"));
                }
                if let Some(max) = shape.max.filter(|m| n > *m) {
                    push(errors, shown(), path, &format!("Member must have value less than or equal to {max}"));
                }
            }
            "list" => {
                let Value::Array(items) = v else { return };
                length(errors, shape, items.len(), shown, path);
                let member = shape.member.as_deref().expect("a list shape names its member");
                let member_shape = self.shape(member);
                if member_shape.kind == "structure" {
                    for (i, item) in items.iter().enumerate() {
                        self.constraints(member, Some(item), &format!("{path}.{}.member", i + 1), errors);
                    }
                } else if items.iter().any(|item| !self.scalar_ok(member, item)) {
                    let parts = self.scalar_constraints(member);
                    push(errors, shown(), path, &format!("Member must satisfy constraint: [{}]", parts.join(", ")));
                }
            }
            "map" => {
                let Value::Object(m) = v else { return };
                length(errors, shape, m.len(), shown, path);
                let key = shape.key.as_deref().expect("a map shape names its key");
                let value = shape.value.as_deref().expect("a map shape names its value");
                if m.keys().any(|k| !self.scalar_ok(key, &Value::String(k.clone()))) {
                    let parts = self.scalar_constraints(key);
                    push(errors, shown(), path, &format!("Map keys must satisfy constraint: [{}]", parts.join(", ")));
                }
                if m.values().any(|item| !self.scalar_ok(value, item)) {
                    let parts = self.scalar_constraints(value);
                    push(errors, shown(), path, &format!("Map value must satisfy constraint: [{}]", parts.join(", ")));
                }
            }
            _ => {}
        }
    }

    /// Whether a scalar list member or map key/value meets its shape's constraints.
    fn scalar_ok(&self, name: &str, v: &Value) -> bool {
        let mut errors = Vec::new();
        self.member_constraints(name, v, "", &mut errors);
        errors.is_empty()
    }

    /// A scalar shape's constraints as AWS lists them inside `[...]`.
    fn scalar_constraints(&self, name: &str) -> Vec<String> {
        let s = self.shape(name);
        let mut parts = Vec::new();
        if let Some(max) = s.max {
            parts.push(format!("Member must have length less than or equal to {max}"));
        }
        if let Some(min) = s.min {
            parts.push(format!("Member must have length greater than or equal to {min}"));
        }
        if let Some(p) = &s.pattern {
            parts.push(format!("Member must satisfy regular expression pattern: {p}"));
        }
        if let Some(values) = &s.values {
            parts.push(format!("Member must satisfy enum value set: [{}]", values.join(", ")));
        }
        parts
    }

    /// A value as AWS's messages print it.
    fn show(&self, name: &str, v: &Value) -> String {
        let shape = self.shape(name);
        match (shape.kind.as_str(), v) {
            ("blob", Value::String(s)) => {
                let n = blob_len(s);
                format!("java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]")
            }
            ("structure", _) => format!("{}.{name}@{JAVA_OBJECT_HASH}", self.java_package),
            ("list", Value::Array(items)) => {
                let member = shape.member.as_deref().unwrap_or_default();
                let shown: Vec<String> = items.iter().map(|i| self.show(member, i)).collect();
                format!("[{}]", shown.join(", "))
            }
            ("map", Value::Object(m)) => {
                let value = shape.value.as_deref().unwrap_or_default();
                let shown: Vec<String> = m.iter().map(|(k, i)| format!("{k}={}", self.show(value, i))).collect();
                format!("{{{}}}", shown.join(", "))
            }
            (_, Value::String(s)) => s.clone(),
            (_, Value::Number(n)) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
                _ => n.to_string(),
            },
            (_, other) => other.to_string(),
        }
    }
}

fn length(errors: &mut Vec<String>, shape: &Shape, len: usize, shown: impl Fn() -> String, path: &str) {
    let len = len as f64;
    if let Some(min) = shape.min.filter(|m| len < *m) {
        push(errors, shown(), path, &format!("Member must have length greater than or equal to {min}"));
    }
    if let Some(max) = shape.max.filter(|m| len > *m) {
        push(errors, shown(), path, &format!("Member must have length less than or equal to {max}"));
    }
}

fn push(errors: &mut Vec<String>, value: String, path: &str, constraint: &str) {
    errors.push(format!("Value {value} at '{path}' failed to satisfy constraint: {constraint}"));
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_owned()
    } else {
        format!("{path}.{member}")
    }
}

/// `StreamName` → `streamName`, as AWS names members in messages.
pub fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A Java string's length: UTF-16 code units.
fn java_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn blob_len(s: &str) -> usize {
    base64::engine::general_purpose::STANDARD.decode(s).map(|b| b.len()).unwrap_or(s.len() / 4 * 3)
}

/// Why `s` is not canonical base64, in AWS's words; `None` if it is.
pub fn base64_fault(s: &str) -> Option<String> {
    if s.len() % 4 != 0 {
        return Some(format!("Base64 encoded length is expected a multiple of 4 bytes but found: {}", s.len()));
    }
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let alphabet = c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
        // '=' is only padding: anything but '=' after it is invalid, and so is '=' first.
        let bad_pad = c == b'=' && b.get(i + 1).is_some_and(|&n| n != b'=');
        if !(alphabet || c == b'=') || bad_pad {
            return Some(format!("Invalid Base64 character: '{}'", c as char));
        }
    }
    match base64::engine::general_purpose::STANDARD.decode(s) {
        Ok(bytes) if base64::engine::general_purpose::STANDARD.encode(&bytes) == s => None,
        _ => Some("Invalid last non-pad Base64 character dectected".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MODEL: &str = r#"{
      "java_package": "com.example.v1",
      "operations": {"Op": {"input": "OpInput", "output": false}},
      "shapes": {
        "OpInput": {"type": "structure", "members": [
          ["Count", "Count", true], ["Name", "Name", true], ["Entries", "Entries", false],
          ["Tags", "Tags", false], ["Data", "Data", false], ["Flag", "Flag", false]]},
        "Count": {"type": "integer", "min": 1, "max": 100},
        "Name": {"type": "string", "min": 1, "max": 5, "pattern": "[a-z]+"},
        "Entries": {"type": "list", "member": "Entry", "min": 1, "max": 2},
        "Entry": {"type": "structure", "members": [["Key", "Name", true]]},
        "Tags": {"type": "map", "key": "Name", "value": "Name"},
        "Data": {"type": "blob", "max": 2},
        "Flag": {"type": "boolean"}
      }
    }"#;

    fn check(v: Value) -> Result<Value, ApiError> {
        let mut v = v;
        Model::from_json(MODEL).check("Op", &mut v).map(|()| v)
    }

    #[test]
    fn violations_are_collected_in_member_order() {
        let e = check(json!({"Count": 0, "Name": ""})).unwrap_err();
        assert_eq!(
            e.message(),
            "3 validation errors detected: Value '0' at 'count' failed to satisfy constraint: Member must have value greater than or equal to 1; \
             Value '' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-z]+; \
             Value '' at 'name' failed to satisfy constraint: Member must have length greater than or equal to 1"
        );
        let e = check(json!({})).unwrap_err();
        assert_eq!(
            e.message(),
            "2 validation errors detected: Value null at 'count' failed to satisfy constraint: Member must not be null; \
             Value null at 'name' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn nested_members_are_named_by_path_and_values_shown_as_java_does() {
        let e = check(json!({"Count": 1e12, "Name": "a", "Entries": [{"Key": "a"}, {}], "Data": "AAAA"})).unwrap_err();
        assert_eq!(
            e.message(),
            "3 validation errors detected: Value '2147483647' at 'count' failed to satisfy constraint: Member must have value less than or equal to 100; \
             Value null at 'entries.2.member.key' failed to satisfy constraint: Member must not be null; \
             Value 'java.nio.HeapByteBuffer[pos=0 lim=3 cap=3]' at 'data' failed to satisfy constraint: Member must have length less than or equal to 2"
        );
        let e = check(json!({"Count": 1, "Name": "a", "Tags": {"AB": "x"}})).unwrap_err();
        assert_eq!(
            e.message(),
            "1 validation error detected: Value '{AB=x}' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 5, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [a-z]+]"
        );
    }

    #[test]
    fn wrong_types_are_serialization_errors_with_java_wording() {
        let cases = [
            (json!({"Count": "1"}), "class java.lang.String can not be converted to an Integer"),
            (json!({"Name": 1}), "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String"),
            (json!({"Name": true}), "class java.lang.Boolean can not be converted to an String"),
            (json!({"Entries": "x"}), "Expected list or null"),
            (json!({"Tags": []}), "Start of list found where not expected"),
            (json!({"Entries": [1]}), "Expected null"),
            (json!({"Name": {}}), "Start of structure or map found where not expected."),
            (json!({"Flag": "yes"}), "'YES' can not be converted to an Boolean"),
            (json!({"Data": "abc"}), "'abc' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 3"),
            (json!({"Data": "=+/="}), "'=+/=' can not be converted to a Blob: Invalid Base64 character: '='"),
            (json!({"Data": "+/+="}), "'+/+=' can not be converted to a Blob: Invalid last non-pad Base64 character dectected"),
        ];
        for (v, want) in cases {
            match check(v.clone()) {
                Err(ApiError::Serialization(m)) => assert_eq!(m, want, "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
    }

    #[test]
    fn integers_are_floored_and_nulls_dropped() {
        let v = check(json!({"Count": 2.7, "Name": "ab", "Flag": null})).unwrap();
        assert_eq!(v, json!({"Count": 2, "Name": "ab"}));
    }

    #[test]
    fn at_most_ten_violations_are_reported() {
        let entries: Vec<Value> = (0..30).map(|_| json!({})).collect();
        let e = check(json!({"Count": 1, "Name": "a", "Entries": entries})).unwrap_err();
        assert!(e.message().starts_with("10 validation errors detected: "), "{}", e.message());
    }
}
