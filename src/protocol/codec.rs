//! AWS JSON 1.0 and 1.1 and CBOR 1.1 bodies. Pure: bytes in, bytes out, no I/O.
//!
//! The protocols carry the same shapes. A CBOR request is converted to the JSON form on entry
//! (byte strings become base64 strings, tagged epoch times become epoch seconds), and a response
//! is converted back on exit, so every operation is written once against `serde_json::Value`.
//! Which members are blobs and timestamps is the service's to say ([`MemberKinds`]). CBOR
//! timestamps are tag 1 with an integer of epoch **milliseconds**, as the AWS SDK for Java and
//! the KCL write and read them; a tag-1 float is taken as epoch seconds (RFC 8949's meaning).

use base64::Engine;
use ciborium::value::Value as Cbor;
use serde_json::{Map, Number, Value};

use crate::protocol::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `application/x-amz-json-1.0` (DynamoDB).
    Json10,
    /// `application/x-amz-json-1.1` (Kinesis, Firehose, Kinesis Analytics), and the default.
    Json,
    Cbor,
}

impl Protocol {
    pub fn from_content_type(ct: Option<&str>) -> Protocol {
        match ct.map(|c| c.to_ascii_lowercase()) {
            Some(ct) if ct.contains("cbor") => Protocol::Cbor,
            Some(ct) if ct.contains("json-1.0") => Protocol::Json10,
            _ => Protocol::Json,
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Protocol::Json10 => "application/x-amz-json-1.0",
            Protocol::Json => "application/x-amz-json-1.1",
            Protocol::Cbor => "application/x-amz-cbor-1.1",
        }
    }

    pub fn is_json(&self) -> bool {
        !matches!(self, Protocol::Cbor)
    }
}

/// The members of a service's shapes whose wire form differs between JSON and CBOR.
#[derive(Debug)]
pub struct MemberKinds {
    /// Blobs: base64 strings in JSON, byte strings in CBOR.
    pub blobs: &'static [&'static str],
    /// Timestamps: epoch seconds in JSON, tag 1 with epoch milliseconds in CBOR.
    pub timestamps: &'static [&'static str],
}

/// No member is special.
pub static PLAIN: MemberKinds = MemberKinds { blobs: &[], timestamps: &[] };
/// Nesting deeper than this is refused (no Kinesis shape is deeper than 6).
const DEPTH_MAX: usize = 32;

pub fn decode_request(proto: Protocol, body: &[u8], kinds: &MemberKinds) -> Result<Value, ApiError> {
    let value = match proto {
        Protocol::Json | Protocol::Json10 => {
            // AWS answers an empty body, or one that is not JSON, with a bare SerializationException.
            serde_json::from_slice::<Value>(body).map_err(|_| ApiError::Serialization(String::new()))?
        }
        Protocol::Cbor => {
            let c: Cbor = ciborium::de::from_reader_with_recursion_limit(body, DEPTH_MAX)
                .map_err(|_| ApiError::Serialization(String::new()))?;
            cbor_to_json(c, 0, None, kinds)?
        }
    };
    if !value.is_object() {
        return Err(ApiError::Serialization(String::new()));
    }
    Ok(value)
}

pub fn encode_response(proto: Protocol, value: &Value, kinds: &MemberKinds) -> Vec<u8> {
    match proto {
        Protocol::Json | Protocol::Json10 => serde_json::to_vec(value).expect("a Value always serializes"),
        Protocol::Cbor => {
            let mut out = Vec::new();
            ciborium::ser::into_writer(&json_to_cbor(value, None, kinds), &mut out)
                .expect("writing to a Vec cannot fail");
            out
        }
    }
}

fn cbor_to_json(c: Cbor, depth: usize, member: Option<&str>, kinds: &MemberKinds) -> Result<Value, ApiError> {
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
        // Epoch time: an integer is milliseconds (the AWS SDKs' form), a float is seconds.
        Cbor::Tag(1, inner) if member.is_some_and(|m| kinds.timestamps.contains(&m)) => match *inner {
            Cbor::Integer(i) => {
                let ms = i64::try_from(i128::from(i))
                    .map_err(|_| ApiError::Serialization("Timestamp out of range.".into()))?;
                Number::from_f64(ms as f64 / 1000.0).map(Value::Number).unwrap_or(Value::Null)
            }
            other => cbor_to_json(other, depth + 1, member, kinds)?,
        },
        Cbor::Tag(_, inner) => cbor_to_json(*inner, depth + 1, member, kinds)?,
        Cbor::Array(items) => Value::Array(
            items.into_iter().map(|v| cbor_to_json(v, depth + 1, member, kinds)).collect::<Result<_, _>>()?,
        ),
        Cbor::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let Cbor::Text(k) = k else {
                    return Err(ApiError::Serialization("Map keys must be strings.".into()));
                };
                let v = cbor_to_json(v, depth + 1, Some(&k), kinds)?;
                m.insert(k, v);
            }
            Value::Object(m)
        }
        _ => return Err(ApiError::Serialization("Unsupported CBOR value.".into())),
    })
}

fn json_to_cbor(v: &Value, member: Option<&str>, kinds: &MemberKinds) -> Cbor {
    match v {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) => {
            if member.is_some_and(|m| kinds.timestamps.contains(&m)) {
                let ms = (n.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
                Cbor::Tag(1, Box::new(Cbor::Integer(ms.into())))
            } else if let Some(i) = n.as_i64() {
                Cbor::Integer(i.into())
            } else if let Some(u) = n.as_u64() {
                Cbor::Integer(u.into())
            } else {
                Cbor::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => {
            if member.is_some_and(|m| kinds.blobs.contains(&m)) {
                if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(s) {
                    return Cbor::Bytes(b);
                }
            }
            Cbor::Text(s.clone())
        }
        Value::Array(items) => Cbor::Array(items.iter().map(|i| json_to_cbor(i, member, kinds)).collect()),
        Value::Object(m) => {
            Cbor::Map(m.iter().map(|(k, v)| (Cbor::Text(k.clone()), json_to_cbor(v, Some(k), kinds))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static KINDS: MemberKinds =
        MemberKinds { blobs: &["Data"], timestamps: &["Timestamp", "ApproximateArrivalTimestamp"] };

    #[test]
    fn cbor_requests_become_json_shapes() {
        let req = Cbor::Map(vec![
            (Cbor::Text("StreamName".into()), Cbor::Text("s".into())),
            (Cbor::Text("Data".into()), Cbor::Bytes(b"hi".to_vec())),
            (Cbor::Text("Timestamp".into()), Cbor::Tag(1, Box::new(Cbor::Integer(1_500.into())))),
        ]);
        let mut body = Vec::new();
        ciborium::ser::into_writer(&req, &mut body).unwrap();
        let v = decode_request(Protocol::Cbor, &body, &KINDS).unwrap();
        assert_eq!(v, json!({"StreamName": "s", "Data": "aGk=", "Timestamp": 1.5}), "tag 1 integers are milliseconds");
        let req = Cbor::Map(vec![(Cbor::Text("Timestamp".into()), Cbor::Tag(1, Box::new(Cbor::Float(2.25))))]);
        let mut body = Vec::new();
        ciborium::ser::into_writer(&req, &mut body).unwrap();
        assert_eq!(decode_request(Protocol::Cbor, &body, &KINDS).unwrap(), json!({"Timestamp": 2.25}));
    }

    #[test]
    fn cbor_responses_carry_bytes_and_tagged_times() {
        let v = json!({"Records": [{"Data": "aGk=", "ApproximateArrivalTimestamp": 2.5, "PartitionKey": "k"}]});
        let out = encode_response(Protocol::Cbor, &v, &KINDS);
        let c: Cbor = ciborium::de::from_reader(&out[..]).unwrap();
        let rec = &c.as_map().unwrap()[0].1.as_array().unwrap()[0];
        let m = rec.as_map().unwrap();
        assert!(m.iter().any(|(k, v)| k.as_text() == Some("Data") && v.as_bytes() == Some(&b"hi".to_vec())));
        assert!(m.iter().any(|(k, v)| k.as_text() == Some("ApproximateArrivalTimestamp")
            && matches!(v, Cbor::Tag(1, inner) if inner.as_integer() == Some(2_500.into()))));
    }

    #[test]
    fn garbage_is_a_serialization_error() {
        for (p, b) in [
            (Protocol::Json, &b"{"[..]),
            (Protocol::Json, b"[1]"),
            (Protocol::Cbor, b"\xff\xff"),
            (Protocol::Json, b"\"x\""),
        ] {
            assert!(matches!(decode_request(p, b, &KINDS), Err(ApiError::Serialization(_))), "{b:?}");
        }
        assert!(matches!(decode_request(Protocol::Json, b"", &KINDS), Err(ApiError::Serialization(m)) if m.is_empty()));
    }

    #[test]
    fn deep_cbor_nesting_is_refused() {
        let mut v = Cbor::Null;
        for _ in 0..200 {
            v = Cbor::Array(vec![v]);
        }
        let mut body = Vec::new();
        ciborium::ser::into_writer(&Cbor::Map(vec![(Cbor::Text("a".into()), v)]), &mut body).unwrap();
        assert!(decode_request(Protocol::Cbor, &body, &KINDS).is_err());
    }
}
