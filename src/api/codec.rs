//! AWS JSON 1.1 and CBOR 1.1 bodies. Pure: bytes in, bytes out, no I/O.
//!
//! Both protocols carry the same shapes. A CBOR request is converted to the JSON form on entry
//! (byte strings become base64 strings, tagged epoch times become numbers), and a response is
//! converted back on exit, so every operation is written once against `serde_json::Value`.

use base64::Engine;
use ciborium::value::Value as Cbor;
use serde_json::{Map, Number, Value};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Json,
    Cbor,
}

impl Protocol {
    pub fn from_content_type(ct: Option<&str>) -> Protocol {
        match ct {
            Some(ct) if ct.to_ascii_lowercase().contains("cbor") => Protocol::Cbor,
            _ => Protocol::Json,
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Protocol::Json => "application/x-amz-json-1.1",
            Protocol::Cbor => "application/x-amz-cbor-1.1",
        }
    }
}

/// Members that are blobs (base64 in JSON, byte strings in CBOR).
const BLOB_MEMBERS: &[&str] = &["Data"];
/// Members that are timestamps (epoch seconds in JSON, tag 1 in CBOR).
const TIMESTAMP_MEMBERS: &[&str] =
    &["ApproximateArrivalTimestamp", "StreamCreationTimestamp", "ConsumerCreationTimestamp", "Timestamp"];
/// Nesting deeper than this is refused (no Kinesis shape is deeper than 6).
const DEPTH_MAX: usize = 32;

pub fn decode_request(proto: Protocol, body: &[u8]) -> Result<Value, ApiError> {
    let value = match proto {
        Protocol::Json => {
            if body.iter().all(|b| b.is_ascii_whitespace()) {
                Value::Object(Map::new())
            } else {
                serde_json::from_slice::<Value>(body)
                    .map_err(|e| ApiError::Serialization(format!("Request body is not valid JSON: {e}")))?
            }
        }
        Protocol::Cbor => {
            if body.is_empty() {
                Value::Object(Map::new())
            } else {
                let c: Cbor = ciborium::de::from_reader_with_recursion_limit(body, DEPTH_MAX)
                    .map_err(|e| ApiError::Serialization(format!("Request body is not valid CBOR: {e}")))?;
                cbor_to_json(c, 0)?
            }
        }
    };
    if !value.is_object() {
        return Err(ApiError::Serialization("Request body must be a JSON object.".into()));
    }
    Ok(value)
}

pub fn encode_response(proto: Protocol, value: &Value) -> Vec<u8> {
    match proto {
        Protocol::Json => serde_json::to_vec(value).expect("a Value always serializes"),
        Protocol::Cbor => {
            let mut out = Vec::new();
            ciborium::ser::into_writer(&json_to_cbor(value, None), &mut out).expect("writing to a Vec cannot fail");
            out
        }
    }
}

fn cbor_to_json(c: Cbor, depth: usize) -> Result<Value, ApiError> {
    if depth > DEPTH_MAX {
        return Err(ApiError::Serialization("Request nests too deeply.".into()));
    }
    Ok(match c {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Integer(i) => {
            let i: i128 = i.into();
            if let Ok(v) = i64::try_from(i) {
                Value::Number(v.into())
            } else if let Ok(v) = u64::try_from(i) {
                Value::Number(v.into())
            } else {
                return Err(ApiError::Serialization("Integer out of range.".into()));
            }
        }
        Cbor::Float(f) => Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
        Cbor::Text(s) => Value::String(s),
        Cbor::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Cbor::Tag(_, inner) => cbor_to_json(*inner, depth + 1)?,
        Cbor::Array(items) => {
            Value::Array(items.into_iter().map(|v| cbor_to_json(v, depth + 1)).collect::<Result<_, _>>()?)
        }
        Cbor::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let Cbor::Text(k) = k else {
                    return Err(ApiError::Serialization("Map keys must be strings.".into()));
                };
                m.insert(k, cbor_to_json(v, depth + 1)?);
            }
            Value::Object(m)
        }
        _ => return Err(ApiError::Serialization("Unsupported CBOR value.".into())),
    })
}

fn json_to_cbor(v: &Value, member: Option<&str>) -> Cbor {
    match v {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) => {
            if member.is_some_and(|m| TIMESTAMP_MEMBERS.contains(&m)) {
                Cbor::Tag(1, Box::new(Cbor::Float(n.as_f64().unwrap_or(0.0))))
            } else if let Some(i) = n.as_i64() {
                Cbor::Integer(i.into())
            } else if let Some(u) = n.as_u64() {
                Cbor::Integer(u.into())
            } else {
                Cbor::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => {
            if member.is_some_and(|m| BLOB_MEMBERS.contains(&m)) {
                if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(s) {
                    return Cbor::Bytes(b);
                }
            }
            Cbor::Text(s.clone())
        }
        Value::Array(items) => Cbor::Array(items.iter().map(|i| json_to_cbor(i, member)).collect()),
        Value::Object(m) => {
            Cbor::Map(m.iter().map(|(k, v)| (Cbor::Text(k.clone()), json_to_cbor(v, Some(k)))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cbor_requests_become_json_shapes() {
        let req = Cbor::Map(vec![
            (Cbor::Text("StreamName".into()), Cbor::Text("s".into())),
            (Cbor::Text("Data".into()), Cbor::Bytes(b"hi".to_vec())),
            (Cbor::Text("Timestamp".into()), Cbor::Tag(1, Box::new(Cbor::Float(1.5)))),
        ]);
        let mut body = Vec::new();
        ciborium::ser::into_writer(&req, &mut body).unwrap();
        let v = decode_request(Protocol::Cbor, &body).unwrap();
        assert_eq!(v, json!({"StreamName": "s", "Data": "aGk=", "Timestamp": 1.5}));
    }

    #[test]
    fn cbor_responses_carry_bytes_and_tagged_times() {
        let v = json!({"Records": [{"Data": "aGk=", "ApproximateArrivalTimestamp": 2.5, "PartitionKey": "k"}]});
        let out = encode_response(Protocol::Cbor, &v);
        let c: Cbor = ciborium::de::from_reader(&out[..]).unwrap();
        let rec = &c.as_map().unwrap()[0].1.as_array().unwrap()[0];
        let m = rec.as_map().unwrap();
        assert!(m.iter().any(|(k, v)| k.as_text() == Some("Data") && v.as_bytes() == Some(&b"hi".to_vec())));
        assert!(m
            .iter()
            .any(|(k, v)| k.as_text() == Some("ApproximateArrivalTimestamp") && matches!(v, Cbor::Tag(1, _))));
    }

    #[test]
    fn garbage_is_a_serialization_error() {
        for (p, b) in [
            (Protocol::Json, &b"{"[..]),
            (Protocol::Json, b"[1]"),
            (Protocol::Cbor, b"\xff\xff"),
            (Protocol::Json, b"\"x\""),
        ] {
            assert!(matches!(decode_request(p, b), Err(ApiError::Serialization(_))), "{b:?}");
        }
        assert_eq!(decode_request(Protocol::Json, b"").unwrap(), json!({}));
    }

    #[test]
    fn deep_cbor_nesting_is_refused() {
        let mut v = Cbor::Null;
        for _ in 0..200 {
            v = Cbor::Array(vec![v]);
        }
        let mut body = Vec::new();
        ciborium::ser::into_writer(&Cbor::Map(vec![(Cbor::Text("a".into()), v)]), &mut body).unwrap();
        assert!(decode_request(Protocol::Cbor, &body).is_err());
    }
}
