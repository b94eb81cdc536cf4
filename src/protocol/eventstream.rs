//! The AWS event-stream message format (`application/vnd.amazon.eventstream`), as SubscribeToShard
//! answers. Pure codec: no I/O.
//!
//! ```text
//! total length u32 BE | headers length u32 BE | prelude crc32 u32 BE (of the 8 bytes before) |
//! headers | payload | message crc32 u32 BE (of everything before it)
//! header: name length u8 | name | value type u8 (7 = string) | value length u16 BE | value
//! ```
//!
//! CRCs are CRC-32 (IEEE), not crc32c. Limits: a message is at most [`MESSAGE_LEN_MAX`] bytes, a
//! header value at most 32 KiB.

use bytes::{BufMut, Bytes, BytesMut};

pub const MESSAGE_LEN_MAX: usize = 16 << 20;
const PRELUDE_LEN: usize = 12;
const HEADER_TYPE_STRING: u8 = 7;

/// An event message: `:message-type event`, with an `:event-type` and a JSON payload.
pub fn event(event_type: &str, payload: &[u8]) -> Bytes {
    message(&[(":message-type", "event"), (":event-type", event_type), (":content-type", "application/json")], payload)
}

/// An exception message, as AWS sends a modelled error inside the stream.
pub fn exception(exception_type: &str, message_text: &str) -> Bytes {
    let payload = serde_json::json!({ "message": message_text }).to_string();
    message(
        &[(":message-type", "exception"), (":exception-type", exception_type), (":content-type", "application/json")],
        payload.as_bytes(),
    )
}

/// Encodes one message with string headers.
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let headers_len: usize = headers.iter().map(|(n, v)| 1 + n.len() + 1 + 2 + v.len()).sum();
    let total = PRELUDE_LEN + headers_len + payload.len() + 4;
    let mut b = BytesMut::with_capacity(total);
    b.put_u32(total as u32);
    b.put_u32(headers_len as u32);
    let prelude_crc = crc32fast::hash(&b[..8]);
    b.put_u32(prelude_crc);
    for (name, value) in headers {
        b.put_u8(name.len() as u8);
        b.put_slice(name.as_bytes());
        b.put_u8(HEADER_TYPE_STRING);
        b.put_u16(value.len() as u16);
        b.put_slice(value.as_bytes());
    }
    b.put_slice(payload);
    let crc = crc32fast::hash(&b);
    b.put_u32(crc);
    b.freeze()
}

/// A decoded message: string headers and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message length {0} out of bounds")]
    Length(usize),
    #[error("prelude crc mismatch")]
    PreludeCrc,
    #[error("message crc mismatch")]
    MessageCrc,
    #[error("bad header block")]
    Headers,
}

/// Decodes one message from the front of `buf`: `Ok(None)` if more bytes are needed, else the
/// message and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, DecodeError> {
    if buf.len() < PRELUDE_LEN {
        return Ok(None);
    }
    let total = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    let headers_len = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
    if !(PRELUDE_LEN + 4..=MESSAGE_LEN_MAX).contains(&total) || headers_len > total - PRELUDE_LEN - 4 {
        return Err(DecodeError::Length(total));
    }
    if crc32fast::hash(&buf[..8]) != u32::from_be_bytes(buf[8..12].try_into().expect("4 bytes")) {
        return Err(DecodeError::PreludeCrc);
    }
    if buf.len() < total {
        return Ok(None);
    }
    let crc = u32::from_be_bytes(buf[total - 4..total].try_into().expect("4 bytes"));
    if crc32fast::hash(&buf[..total - 4]) != crc {
        return Err(DecodeError::MessageCrc);
    }
    let mut h = &buf[PRELUDE_LEN..PRELUDE_LEN + headers_len];
    let mut headers = Vec::new();
    while !h.is_empty() {
        let name_len = *h.first().ok_or(DecodeError::Headers)? as usize;
        let name = h.get(1..1 + name_len).ok_or(DecodeError::Headers)?;
        let kind = *h.get(1 + name_len).ok_or(DecodeError::Headers)?;
        if kind != HEADER_TYPE_STRING {
            return Err(DecodeError::Headers);
        }
        let len_at = 2 + name_len;
        let value_len =
            u16::from_be_bytes(h.get(len_at..len_at + 2).ok_or(DecodeError::Headers)?.try_into().expect("2 bytes"))
                as usize;
        let value = h.get(len_at + 2..len_at + 2 + value_len).ok_or(DecodeError::Headers)?;
        headers.push((String::from_utf8_lossy(name).into_owned(), String::from_utf8_lossy(value).into_owned()));
        h = &h[len_at + 2 + value_len..];
    }
    let payload = buf[PRELUDE_LEN + headers_len..total - 4].to_vec();
    Ok(Some((Message { headers, payload }, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_crcs() {
        let m = event("initial-response", b"{}");
        let (d, used) = decode(&m).unwrap().unwrap();
        assert_eq!(used, m.len());
        assert_eq!(d.header(":event-type"), Some("initial-response"));
        assert_eq!(d.header(":message-type"), Some("event"));
        assert_eq!(d.payload, b"{}");
        assert_eq!(decode(&m[..m.len() - 1]).unwrap(), None);
        let mut bad = m.to_vec();
        let last = bad.len() - 6;
        bad[last] ^= 1;
        assert_eq!(decode(&bad), Err(DecodeError::MessageCrc));
        let mut bad = m.to_vec();
        bad[2] ^= 1;
        assert!(decode(&bad).is_err());
    }

    /// A message from the AWS event-stream test suite ("all headers" minus non-string types):
    /// prelude and message CRCs computed with CRC-32 (IEEE).
    #[test]
    fn golden_bytes_of_an_empty_message() {
        // The AWS test vector "empty message": total 16, headers 0.
        let m = message(&[], b"");
        assert_eq!(&m[..], &[0, 0, 0, 16, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff]);
    }

    #[test]
    fn exceptions_carry_their_type() {
        let m = exception("ResourceInUseException", "busy");
        let (d, _) = decode(&m).unwrap().unwrap();
        assert_eq!(d.header(":message-type"), Some("exception"));
        assert_eq!(d.header(":exception-type"), Some("ResourceInUseException"));
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&d.payload).unwrap()["message"], "busy");
    }
}
