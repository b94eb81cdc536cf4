//! Push protocol frames. Pure codec: bytes in, frames out, no I/O. `docs/push-protocol.md` is the
//! specification; the golden-byte tests below pin it.
//!
//! ```text
//! frame   = length u32 | crc32c u32 | type u8 | body        (integers big-endian)
//! length  = bytes of type + body (1 ..= FRAME_LEN_MAX)
//! crc32c  = Castagnoli CRC of type + body
//! str16   = length u16 | UTF-8 bytes
//! bytes32 = length u32 | bytes
//! ```

use bytes::{Buf, BufMut};

pub const MAGIC: [u8; 4] = *b"SLPU";
/// Version 1: no authentication.
pub const VERSION: u16 = 1;
/// Version 2: HELLO is answered with CHALLENGE; HELLO_OK comes after the client's AUTH holds.
pub const VERSION_AUTH: u16 = 2;
/// Largest frame accepted, type and body included.
pub const FRAME_LEN_MAX: usize = 16 << 20;
const HEADER_LEN: usize = 8;

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    TrimHorizon,
    Latest,
    AtSequenceNumber(String),
    AfterSequenceNumber(String),
    AtTimestamp(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRecord {
    pub sequence_number: String,
    pub arrival_ms: i64,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Why the server ended a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The shard is closed and fully delivered.
    ShardEnded = 0,
    /// Another subscription for the same consumer and shard took over.
    TakenOver = 1,
    /// The server is shutting down.
    ServerShutdown = 2,
    /// The client unsubscribed.
    Unsubscribed = 3,
    /// The consumer was deregistered.
    Deregistered = 4,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello {
        version: u16,
        client: String,
    },
    HelloOk {
        version: u16,
        server: String,
        heartbeat_ms: u32,
    },
    Subscribe {
        request_id: u32,
        stream: String,
        consumer: String,
        shard: String,
        start: Start,
        credit_bytes: u32,
    },
    Subscribed {
        request_id: u32,
        subscription_id: u32,
        continuation: String,
    },
    Records {
        subscription_id: u32,
        millis_behind: u64,
        continuation: String,
        records: Vec<PushRecord>,
    },
    Credit {
        subscription_id: u32,
        bytes: u32,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    Error {
        id: u32,
        code: u16,
        message: String,
    },
    Unsubscribe {
        subscription_id: u32,
    },
    End {
        subscription_id: u32,
        reason: EndReason,
        continuation: String,
    },
    /// Version 2: the server's answer to HELLO, before HELLO_OK.
    Challenge {
        nonce: Vec<u8>,
    },
    /// Version 2: the client's proof that it holds an access key's secret.
    Auth {
        access_key_id: String,
        date_ms: i64,
        signature: Vec<u8>,
    },
}

const T_HELLO: u8 = 0x01;
const T_HELLO_OK: u8 = 0x02;
const T_SUBSCRIBE: u8 = 0x03;
const T_SUBSCRIBED: u8 = 0x04;
const T_RECORDS: u8 = 0x05;
const T_CREDIT: u8 = 0x06;
const T_PING: u8 = 0x07;
const T_PONG: u8 = 0x08;
const T_ERROR: u8 = 0x09;
const T_UNSUBSCRIBE: u8 = 0x0A;
const T_END: u8 = 0x0B;
const T_CHALLENGE: u8 = 0x0C;
const T_AUTH: u8 = 0x0D;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} out of bounds")]
    Length(usize),
    #[error("frame crc mismatch: expected {expected:#010x}, found {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    #[error("malformed frame body: {0}")]
    Malformed(&'static str),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

/// Appends the encoding of `frame` to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.put_u32(0);
    out.put_u32(0);
    match frame {
        Frame::Hello { version, client } => {
            out.put_u8(T_HELLO);
            out.put_slice(&MAGIC);
            out.put_u16(*version);
            put_str(out, client);
        }
        Frame::HelloOk { version, server, heartbeat_ms } => {
            out.put_u8(T_HELLO_OK);
            out.put_u16(*version);
            put_str(out, server);
            out.put_u32(*heartbeat_ms);
        }
        Frame::Subscribe { request_id, stream, consumer, shard, start, credit_bytes } => {
            out.put_u8(T_SUBSCRIBE);
            out.put_u32(*request_id);
            put_str(out, stream);
            put_str(out, consumer);
            put_str(out, shard);
            match start {
                Start::TrimHorizon => out.put_u8(0),
                Start::Latest => out.put_u8(1),
                Start::AtSequenceNumber(s) => {
                    out.put_u8(2);
                    put_str(out, s);
                }
                Start::AfterSequenceNumber(s) => {
                    out.put_u8(3);
                    put_str(out, s);
                }
                Start::AtTimestamp(ms) => {
                    out.put_u8(4);
                    out.put_i64(*ms);
                }
            }
            out.put_u32(*credit_bytes);
        }
        Frame::Subscribed { request_id, subscription_id, continuation } => {
            out.put_u8(T_SUBSCRIBED);
            out.put_u32(*request_id);
            out.put_u32(*subscription_id);
            put_str(out, continuation);
        }
        Frame::Records { subscription_id, millis_behind, continuation, records } => {
            out.put_u8(T_RECORDS);
            out.put_u32(*subscription_id);
            out.put_u64(*millis_behind);
            put_str(out, continuation);
            out.put_u32(records.len() as u32);
            for r in records {
                put_str(out, &r.sequence_number);
                out.put_i64(r.arrival_ms);
                put_str(out, &r.partition_key);
                out.put_u32(r.data.len() as u32);
                out.put_slice(&r.data);
            }
        }
        Frame::Credit { subscription_id, bytes } => {
            out.put_u8(T_CREDIT);
            out.put_u32(*subscription_id);
            out.put_u32(*bytes);
        }
        Frame::Ping { nonce } => {
            out.put_u8(T_PING);
            out.put_u64(*nonce);
        }
        Frame::Pong { nonce } => {
            out.put_u8(T_PONG);
            out.put_u64(*nonce);
        }
        Frame::Error { id, code, message } => {
            out.put_u8(T_ERROR);
            out.put_u32(*id);
            out.put_u16(*code);
            put_str(out, message);
        }
        Frame::Unsubscribe { subscription_id } => {
            out.put_u8(T_UNSUBSCRIBE);
            out.put_u32(*subscription_id);
        }
        Frame::End { subscription_id, reason, continuation } => {
            out.put_u8(T_END);
            out.put_u32(*subscription_id);
            out.put_u8(*reason as u8);
            put_str(out, continuation);
        }
        Frame::Challenge { nonce } => {
            out.put_u8(T_CHALLENGE);
            out.put_u32(nonce.len() as u32);
            out.put_slice(nonce);
        }
        Frame::Auth { access_key_id, date_ms, signature } => {
            out.put_u8(T_AUTH);
            put_str(out, access_key_id);
            out.put_i64(*date_ms);
            out.put_u32(signature.len() as u32);
            out.put_slice(signature);
        }
    }
    let len = out.len() - start - HEADER_LEN;
    let crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Decodes one frame from the front of `buf`: `Ok(None)` if more bytes are needed, else the frame
/// and how many bytes it took. An error means the stream is unusable and must be closed.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len == 0 || len > FRAME_LEN_MAX {
        return Err(FrameError::Length(len));
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let expected = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
    let body = &buf[HEADER_LEN..HEADER_LEN + len];
    let actual = crc32c::crc32c(body);
    if expected != actual {
        return Err(FrameError::Checksum { expected, actual });
    }
    let mut r = Reader(&body[1..]);
    let frame = match body[0] {
        T_HELLO => {
            if r.take(4)? != MAGIC {
                return Err(FrameError::Malformed("bad magic"));
            }
            Frame::Hello { version: r.u16()?, client: r.str()? }
        }
        T_HELLO_OK => Frame::HelloOk { version: r.u16()?, server: r.str()?, heartbeat_ms: r.u32()? },
        T_SUBSCRIBE => {
            let request_id = r.u32()?;
            let stream = r.str()?;
            let consumer = r.str()?;
            let shard = r.str()?;
            let start = match r.u8()? {
                0 => Start::TrimHorizon,
                1 => Start::Latest,
                2 => Start::AtSequenceNumber(r.str()?),
                3 => Start::AfterSequenceNumber(r.str()?),
                4 => Start::AtTimestamp(r.i64()?),
                _ => return Err(FrameError::Malformed("unknown start type")),
            };
            Frame::Subscribe { request_id, stream, consumer, shard, start, credit_bytes: r.u32()? }
        }
        T_SUBSCRIBED => Frame::Subscribed { request_id: r.u32()?, subscription_id: r.u32()?, continuation: r.str()? },
        T_RECORDS => {
            let subscription_id = r.u32()?;
            let millis_behind = r.u64()?;
            let continuation = r.str()?;
            let count = r.u32()? as usize;
            // Each record takes at least 16 bytes: a count beyond that is a lie.
            if count > r.0.len() / 16 {
                return Err(FrameError::Malformed("record count exceeds the frame"));
            }
            let mut records = Vec::with_capacity(count);
            for _ in 0..count {
                records.push(PushRecord {
                    sequence_number: r.str()?,
                    arrival_ms: r.i64()?,
                    partition_key: r.str()?,
                    data: {
                        let n = r.u32()? as usize;
                        r.take(n)?.to_vec()
                    },
                });
            }
            Frame::Records { subscription_id, millis_behind, continuation, records }
        }
        T_CREDIT => Frame::Credit { subscription_id: r.u32()?, bytes: r.u32()? },
        T_PING => Frame::Ping { nonce: r.u64()? },
        T_PONG => Frame::Pong { nonce: r.u64()? },
        T_ERROR => Frame::Error { id: r.u32()?, code: r.u16()?, message: r.str()? },
        T_UNSUBSCRIBE => Frame::Unsubscribe { subscription_id: r.u32()? },
        T_END => {
            let subscription_id = r.u32()?;
            let reason = match r.u8()? {
                0 => EndReason::ShardEnded,
                1 => EndReason::TakenOver,
                2 => EndReason::ServerShutdown,
                3 => EndReason::Unsubscribed,
                4 => EndReason::Deregistered,
                _ => return Err(FrameError::Malformed("unknown end reason")),
            };
            Frame::End { subscription_id, reason, continuation: r.str()? }
        }
        T_CHALLENGE => Frame::Challenge { nonce: r.bytes()? },
        T_AUTH => Frame::Auth { access_key_id: r.str()?, date_ms: r.i64()?, signature: r.bytes()? },
        t => return Err(FrameError::UnknownType(t)),
    };
    if !r.0.is_empty() {
        return Err(FrameError::Malformed("trailing bytes"));
    }
    Ok(Some((frame, HEADER_LEN + len)))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Malformed("truncated body"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(self.take(2)?.get_u16())
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(self.take(4)?.get_u32())
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(self.take(8)?.get_u64())
    }
    fn i64(&mut self) -> Result<i64, FrameError> {
        Ok(self.take(8)?.get_i64())
    }
    fn bytes(&mut self) -> Result<Vec<u8>, FrameError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn str(&mut self) -> Result<String, FrameError> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).map(str::to_owned).map_err(|_| FrameError::Malformed("string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) -> Vec<u8> {
        let mut b = Vec::new();
        encode(&f, &mut b);
        let (d, used) = decode(&b).unwrap().unwrap();
        assert_eq!(d, f);
        assert_eq!(used, b.len());
        assert_eq!(decode(&b[..b.len() - 1]).unwrap(), None);
        b
    }

    #[test]
    fn golden_hello() {
        let b = round_trip(Frame::Hello { version: 1, client: "cli".into() });
        // length 12 = type 1 + magic 4 + version 2 + str16 (2 + 3)
        let body = [0x01, b'S', b'L', b'P', b'U', 0x00, 0x01, 0x00, 0x03, b'c', b'l', b'i'];
        let mut expected = vec![0, 0, 0, 12];
        expected.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        expected.extend_from_slice(&body);
        assert_eq!(b, expected);
    }

    #[test]
    fn golden_credit_and_ping() {
        let b = round_trip(Frame::Credit { subscription_id: 7, bytes: 1 << 20 });
        assert_eq!(&b[8..], &[0x06, 0, 0, 0, 7, 0, 0x10, 0, 0]);
        let b = round_trip(Frame::Ping { nonce: 0x0102030405060708 });
        assert_eq!(&b[..4], &[0, 0, 0, 9]);
        assert_eq!(&b[8..], &[0x07, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn golden_records() {
        let b = round_trip(Frame::Records {
            subscription_id: 1,
            millis_behind: 0,
            continuation: "5".into(),
            records: vec![PushRecord {
                sequence_number: "5".into(),
                arrival_ms: 2,
                partition_key: "k".into(),
                data: b"hi".to_vec(),
            }],
        });
        let body: Vec<u8> = vec![
            0x05, 0, 0, 0, 1, // type, subscription 1
            0, 0, 0, 0, 0, 0, 0, 0, // millis behind
            0, 1, b'5', // continuation
            0, 0, 0, 1, // one record
            0, 1, b'5', 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, b'k', 0, 0, 0, 2, b'h', b'i',
        ];
        assert_eq!(&b[8..], &body[..]);
        assert_eq!(u32::from_be_bytes(b[4..8].try_into().unwrap()), crc32c::crc32c(&body));
    }

    #[test]
    fn every_frame_round_trips() {
        round_trip(Frame::HelloOk { version: 1, server: "sluice".into(), heartbeat_ms: 5000 });
        for start in [
            Start::TrimHorizon,
            Start::Latest,
            Start::AtSequenceNumber("49".into()),
            Start::AfterSequenceNumber("49".into()),
            Start::AtTimestamp(-5),
        ] {
            round_trip(Frame::Subscribe {
                request_id: 9,
                stream: "s".into(),
                consumer: "c".into(),
                shard: "shardId-000000000000".into(),
                start,
                credit_bytes: 4 << 20,
            });
        }
        round_trip(Frame::Subscribed { request_id: 9, subscription_id: 3, continuation: "x".into() });
        round_trip(Frame::Pong { nonce: 3 });
        round_trip(Frame::Error { id: 0, code: 3, message: "no such stream".into() });
        round_trip(Frame::Unsubscribe { subscription_id: 3 });
        round_trip(Frame::End { subscription_id: 3, reason: EndReason::TakenOver, continuation: "y".into() });
        round_trip(Frame::Challenge { nonce: vec![7; 32] });
    }

    #[test]
    fn golden_auth() {
        let b = round_trip(Frame::Auth { access_key_id: "AK".into(), date_ms: 1, signature: vec![0xab, 0xcd] });
        let body: Vec<u8> = vec![
            0x0D, 0, 2, b'A', b'K', // type, access key id
            0, 0, 0, 0, 0, 0, 0, 1, // date ms
            0, 0, 0, 2, 0xab, 0xcd, // signature
        ];
        assert_eq!(&b[8..], &body[..]);
        let b = round_trip(Frame::Challenge { nonce: vec![1, 2] });
        assert_eq!(&b[8..], &[0x0C, 0, 0, 0, 2, 1, 2]);
    }

    #[test]
    fn damage_is_an_error() {
        let mut b = Vec::new();
        encode(&Frame::Ping { nonce: 1 }, &mut b);
        let mut flipped = b.clone();
        flipped[10] ^= 1;
        assert!(matches!(decode(&flipped), Err(FrameError::Checksum { .. })));
        assert!(matches!(decode(&[0, 0, 0, 0, 0, 0, 0, 0]), Err(FrameError::Length(0))));
        assert!(matches!(decode(&[0xff, 0, 0, 0, 0, 0, 0, 0]), Err(FrameError::Length(_))));
        let mut unknown = Vec::new();
        encode(&Frame::Ping { nonce: 1 }, &mut unknown);
        unknown[8] = 0x7f;
        let crc = crc32c::crc32c(&unknown[8..]);
        unknown[4..8].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(decode(&unknown), Err(FrameError::UnknownType(0x7f))));
    }
}
