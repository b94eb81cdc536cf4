//! The put fast path: PutRecords and PutRecord read straight from the request's bytes and
//! answered with bytes written directly, in JSON and in CBOR, without a `Value` tree.
//!
//! Owns two small scanners (one per protocol) for the shapes real producers send: an object of
//! the operation's known members, strings without escapes, each member at most once. Data is
//! borrowed from the body (base64 text in JSON, decoded into one buffer shared by the records; a
//! CBOR byte string is a slice of the body, not copied). Anything else (escapes, `null`, numbers,
//! unknown or repeated members, CBOR tags or indefinite-length strings, trailing bytes) makes the
//! scanner give up, and the request takes the general path: decoded into a `Value`, checked
//! against the model, then served by the same code. A request the fast path refuses with an error
//! is checked against the model too, so the error is always the one AWS gives.
//!
//! Limits: only the two put operations; the answer is encoded here, in the key order AWS uses.

use std::sync::Arc;

use bytes::Bytes;

use crate::http::iam::Caller;
use crate::kinesis::ops::records::{
    encryption_type, put_record_entry, put_records_entries, Blob, PutEntry, PutRecordOutcome, PutRecordsOutcome, Target,
};
use crate::kinesis::{access, accounts};
use crate::protocol::codec::Protocol;
use crate::protocol::error::ApiResult;
use crate::service::Service;
use crate::stream::meta::write_shard_id;
use crate::stream::seqno::SeqNo;

/// A put as the scanner read it.
pub struct Request<'a> {
    pub target: Target,
    pub body: Body<'a>,
}

pub enum Body<'a> {
    /// PutRecords: its entries, `None` when Records is absent.
    Records(Option<Vec<PutEntry<'a>>>),
    /// PutRecord: its one record and SequenceNumberForOrdering.
    Record(PutEntry<'a>, Option<&'a str>),
}

/// Reads a PutRecords or PutRecord request, or `None` when it is not of the simple form this
/// path takes (the caller then uses the general path).
pub fn scan<'a>(proto: Protocol, op: &str, body: &'a Bytes) -> Option<Request<'a>> {
    let records = match op {
        "PutRecords" => true,
        "PutRecord" => false,
        _ => return None,
    };
    match proto {
        Protocol::Json | Protocol::Json10 => json::scan(body, records),
        Protocol::Cbor => cbor::scan(body, records),
    }
}

/// Serves a scanned put and encodes its answer in `proto`.
pub async fn serve(
    svc: &Arc<Service>,
    req: Request<'_>,
    caller: Option<&Caller>,
    proto: Protocol,
) -> ApiResult<Vec<u8>> {
    let Request { mut target, body } = req;
    let op = match body {
        Body::Records(_) => "PutRecords",
        Body::Record(..) => "PutRecord",
    };
    if let Some(c) = caller {
        let named = access::Named {
            stream_name: target.stream_name.as_deref(),
            stream_arn: target.stream_arn.as_deref(),
            ..Default::default()
        };
        access::authorize(svc, c, op, &named)?;
    }
    let account = accounts::account_of(svc, caller);
    accounts::scope_names(svc, account, &mut target.stream_name, &mut target.stream_arn);
    Ok(match body {
        Body::Records(entries) => {
            let outcome = put_records_entries(svc, &target, entries).await?;
            match proto {
                Protocol::Cbor => records_cbor(&outcome),
                _ => records_json(&outcome),
            }
        }
        Body::Record(entry, ordering) => {
            let outcome = put_record_entry(svc, &target, entry, ordering).await?;
            match proto {
                Protocol::Cbor => record_cbor(&outcome),
                _ => record_json(&outcome),
            }
        }
    })
}

/// Bytes of one answer record: the sequence number's 56 digits and the shard id's 20 characters.
const RECORD_ANSWER_BYTES: usize = 56 + 20 + 40;

fn records_json(o: &PutRecordsOutcome) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + o.results.len() * RECORD_ANSWER_BYTES);
    out.extend_from_slice(b"{\"FailedRecordCount\":");
    out.extend_from_slice(o.failed().to_string().as_bytes());
    out.extend_from_slice(b",\"Records\":[");
    for (i, r) in o.results.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match r {
            Ok((shard, ordinal)) => {
                out.extend_from_slice(b"{\"SequenceNumber\":\"");
                SeqNo::record(o.stream_id, *shard, *ordinal).write_to(&mut out);
                out.extend_from_slice(b"\",\"ShardId\":\"");
                write_shard_id(&mut out, *shard);
                out.extend_from_slice(b"\"}");
            }
            Err((code, message)) => {
                out.extend_from_slice(b"{\"ErrorCode\":");
                json_string(&mut out, code);
                out.extend_from_slice(b",\"ErrorMessage\":");
                json_string(&mut out, message);
                out.push(b'}');
            }
        }
    }
    out.extend_from_slice(b"],\"EncryptionType\":");
    json_string(&mut out, encryption_type(o.encrypted));
    out.push(b'}');
    out
}

fn record_json(o: &PutRecordOutcome) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + RECORD_ANSWER_BYTES);
    out.extend_from_slice(b"{\"ShardId\":\"");
    write_shard_id(&mut out, o.shard);
    out.extend_from_slice(b"\",\"SequenceNumber\":\"");
    SeqNo::record(o.stream_id, o.shard, o.ordinal).write_to(&mut out);
    out.extend_from_slice(b"\",\"EncryptionType\":");
    json_string(&mut out, encryption_type(o.encrypted));
    out.push(b'}');
    out
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn records_cbor(o: &PutRecordsOutcome) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + o.results.len() * RECORD_ANSWER_BYTES);
    cbor::head(&mut out, cbor::MAP, 3);
    cbor::text(&mut out, "FailedRecordCount");
    cbor::head(&mut out, cbor::UINT, o.failed() as u64);
    cbor::text(&mut out, "Records");
    cbor::head(&mut out, cbor::ARRAY, o.results.len() as u64);
    for r in &o.results {
        cbor::head(&mut out, cbor::MAP, 2);
        match r {
            Ok((shard, ordinal)) => {
                cbor::text(&mut out, "SequenceNumber");
                cbor::head(&mut out, cbor::TEXT, crate::stream::seqno::SEQUENCE_NUMBER_DIGITS as u64);
                SeqNo::record(o.stream_id, *shard, *ordinal).write_to(&mut out);
                cbor::text(&mut out, "ShardId");
                cbor::head(&mut out, cbor::TEXT, SHARD_ID_CHARS);
                write_shard_id(&mut out, *shard);
            }
            Err((code, message)) => {
                cbor::text(&mut out, "ErrorCode");
                cbor::text(&mut out, code);
                cbor::text(&mut out, "ErrorMessage");
                cbor::text(&mut out, message);
            }
        }
    }
    cbor::text(&mut out, "EncryptionType");
    cbor::text(&mut out, encryption_type(o.encrypted));
    out
}

fn record_cbor(o: &PutRecordOutcome) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + RECORD_ANSWER_BYTES);
    cbor::head(&mut out, cbor::MAP, 3);
    cbor::text(&mut out, "ShardId");
    cbor::head(&mut out, cbor::TEXT, SHARD_ID_CHARS);
    write_shard_id(&mut out, o.shard);
    cbor::text(&mut out, "SequenceNumber");
    cbor::head(&mut out, cbor::TEXT, crate::stream::seqno::SEQUENCE_NUMBER_DIGITS as u64);
    SeqNo::record(o.stream_id, o.shard, o.ordinal).write_to(&mut out);
    cbor::text(&mut out, "EncryptionType");
    cbor::text(&mut out, encryption_type(o.encrypted));
    out
}

/// `shardId-` and twelve digits.
const SHARD_ID_CHARS: u64 = 20;

/// Which members a scanned object has had, so that a repeated one sends the request to the
/// general path.
#[derive(Default)]
struct Seen(u16);

impl Seen {
    fn first(&mut self, bit: u16) -> Option<()> {
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

/// The members of a put request and of a PutRecords entry, by name.
#[derive(Clone, Copy)]
enum Member {
    Records,
    StreamName,
    StreamArn,
    StreamId,
    Data,
    PartitionKey,
    ExplicitHashKey,
    SequenceNumberForOrdering,
}

impl Member {
    /// The member called `name` at the top level of the request (`records`: PutRecords).
    fn top(name: &[u8], records: bool) -> Option<Member> {
        Some(match name {
            b"StreamName" => Member::StreamName,
            b"StreamARN" => Member::StreamArn,
            b"StreamId" => Member::StreamId,
            b"Records" if records => Member::Records,
            b"Data" if !records => Member::Data,
            b"PartitionKey" if !records => Member::PartitionKey,
            b"ExplicitHashKey" if !records => Member::ExplicitHashKey,
            b"SequenceNumberForOrdering" if !records => Member::SequenceNumberForOrdering,
            _ => return None,
        })
    }

    fn entry(name: &[u8]) -> Option<Member> {
        Some(match name {
            b"Data" => Member::Data,
            b"PartitionKey" => Member::PartitionKey,
            b"ExplicitHashKey" => Member::ExplicitHashKey,
            _ => return None,
        })
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// A request being assembled from its members, in whatever order they come.
struct Assembly<'a> {
    target: Target,
    records: Option<Vec<PutEntry<'a>>>,
    entry: PutEntry<'a>,
    ordering: Option<&'a str>,
}

impl<'a> Assembly<'a> {
    fn new() -> Self {
        Assembly {
            target: Target { stream_name: None, stream_arn: None, stream_id: None },
            records: None,
            entry: empty_entry(),
            ordering: None,
        }
    }

    /// Sets a string member (of the request or, for PutRecord, its record).
    fn set_text(&mut self, m: Member, v: &'a str) -> Option<()> {
        match m {
            Member::StreamName => self.target.stream_name = Some(v.to_owned()),
            Member::StreamArn => self.target.stream_arn = Some(v.to_owned()),
            Member::StreamId => self.target.stream_id = Some(v.to_owned()),
            Member::SequenceNumberForOrdering => self.ordering = Some(v),
            m => return set_entry_text(&mut self.entry, m, v),
        }
        Some(())
    }

    fn finish(self, records: bool) -> Request<'a> {
        let body = if records { Body::Records(self.records) } else { Body::Record(self.entry, self.ordering) };
        Request { target: self.target, body }
    }
}

fn empty_entry<'a>() -> PutEntry<'a> {
    PutEntry { data: None, partition_key: None, explicit_hash_key: None }
}

fn set_entry_text<'a>(e: &mut PutEntry<'a>, m: Member, v: &'a str) -> Option<()> {
    match m {
        Member::PartitionKey => e.partition_key = Some(v),
        Member::ExplicitHashKey => e.explicit_hash_key = Some(v),
        _ => return None,
    }
    Some(())
}

mod json {
    use super::*;

    struct Scanner<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl<'a> Scanner<'a> {
        fn ws(&mut self) {
            while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }

        /// The next byte after whitespace, consumed.
        fn next(&mut self) -> Option<u8> {
            self.ws();
            let c = *self.b.get(self.i)?;
            self.i += 1;
            Some(c)
        }

        /// Consumes `c` after whitespace if it is next.
        fn eat(&mut self, c: u8) -> bool {
            self.ws();
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                true
            } else {
                false
            }
        }

        /// The raw bytes of a string without escapes (its quotes consumed).
        fn raw(&mut self) -> Option<&'a [u8]> {
            if self.next()? != b'"' {
                return None;
            }
            let rest = &self.b[self.i..];
            let end = memchr::memchr2(b'"', b'\\', rest)?;
            if rest[end] != b'"' {
                return None;
            }
            self.i += end + 1;
            Some(&rest[..end])
        }

        /// A string member's text: no escapes, no control characters, valid UTF-8.
        fn text(&mut self) -> Option<&'a str> {
            let raw = self.raw()?;
            if raw.iter().any(|&c| c < 0x20) {
                return None;
            }
            std::str::from_utf8(raw).ok()
        }

        /// Runs `member` for each member of an object (its name, then the scanner at its value).
        fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
            if self.next()? != b'{' {
                return None;
            }
            if self.eat(b'}') {
                return Some(());
            }
            loop {
                let name = self.raw()?;
                if self.next()? != b':' {
                    return None;
                }
                member(self, name)?;
                match self.next()? {
                    b',' => continue,
                    b'}' => return Some(()),
                    _ => return None,
                }
            }
        }
    }

    pub(super) fn scan(body: &Bytes, records: bool) -> Option<Request<'_>> {
        let mut s = Scanner { b: body, i: 0 };
        let mut req = Assembly::new();
        let mut seen = Seen::default();
        s.object(|s, name| {
            let m = Member::top(name, records)?;
            seen.first(m.bit())?;
            match m {
                Member::Records => req.records = Some(entries(s)?),
                Member::Data => req.entry.data = Some(Blob::Base64(s.raw()?)),
                m => req.set_text(m, s.text()?)?,
            }
            Some(())
        })?;
        s.ws();
        (s.i == s.b.len()).then(|| req.finish(records))
    }

    fn entries<'a>(s: &mut Scanner<'a>) -> Option<Vec<PutEntry<'a>>> {
        if s.next()? != b'[' {
            return None;
        }
        let mut out = Vec::new();
        if s.eat(b']') {
            return Some(out);
        }
        loop {
            let mut e = empty_entry();
            let mut seen = Seen::default();
            s.object(|s, name| {
                let m = Member::entry(name)?;
                seen.first(m.bit())?;
                match m {
                    Member::Data => e.data = Some(Blob::Base64(s.raw()?)),
                    m => set_entry_text(&mut e, m, s.text()?)?,
                }
                Some(())
            })?;
            out.push(e);
            match s.next()? {
                b',' => continue,
                b']' => return Some(out),
                _ => return None,
            }
        }
    }
}

pub(crate) mod cbor {
    use super::*;

    pub const UINT: u8 = 0;
    pub const BYTES: u8 = 2;
    pub const TEXT: u8 = 3;
    pub const ARRAY: u8 = 4;
    pub const MAP: u8 = 5;
    const BREAK: u8 = 0xff;

    /// Writes an item head: major type and length (or value).
    pub fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        match n {
            0..=23 => out.push(m | n as u8),
            24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
            0x100..=0xffff => {
                out.push(m | 25);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(m | 26);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                out.push(m | 27);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
    }

    pub fn text(out: &mut Vec<u8>, s: &str) {
        head(out, TEXT, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    struct Scanner<'a> {
        body: &'a Bytes,
        i: usize,
    }

    impl<'a> Scanner<'a> {
        /// An item head: its major type and its length, `None` for indefinite (maps and arrays).
        fn head(&mut self) -> Option<(u8, Option<u64>)> {
            let b: &[u8] = self.body;
            let first = *b.get(self.i)?;
            self.i += 1;
            let (major, info) = (first >> 5, first & 0x1f);
            let n = match info {
                0..=23 => u64::from(info),
                24..=27 => {
                    let len = 1usize << (info - 24);
                    let end = self.i.checked_add(len)?;
                    let bytes = b.get(self.i..end)?;
                    self.i = end;
                    bytes.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
                }
                31 if major == ARRAY || major == MAP => return Some((major, None)),
                _ => return None,
            };
            Some((major, Some(n)))
        }

        /// The bytes of a definite-length string of major type `major`.
        fn string(&mut self, major: u8) -> Option<std::ops::Range<usize>> {
            match self.head()? {
                (m, Some(n)) if m == major => {
                    let end = self.i.checked_add(usize::try_from(n).ok()?)?;
                    if end > self.body.len() {
                        return None;
                    }
                    let range = self.i..end;
                    self.i = end;
                    Some(range)
                }
                _ => None,
            }
        }

        fn text(&mut self) -> Option<&'a str> {
            let r = self.string(TEXT)?;
            let body: &'a [u8] = self.body;
            std::str::from_utf8(&body[r]).ok()
        }

        fn blob(&mut self) -> Option<Blob<'a>> {
            let r = self.string(BYTES)?;
            Some(Blob::Raw(self.body.slice(r)))
        }

        /// Whether another item of a container follows (`left`: what a definite one has left).
        fn more(&mut self, left: &mut Option<u64>) -> Option<bool> {
            match left {
                Some(0) => Some(false),
                Some(n) => {
                    *n -= 1;
                    Some(true)
                }
                None if *self.body.get(self.i)? == BREAK => {
                    self.i += 1;
                    Some(false)
                }
                None => Some(true),
            }
        }

        fn container(&mut self, major: u8) -> Option<Option<u64>> {
            match self.head()? {
                (m, len) if m == major => Some(len),
                _ => None,
            }
        }

        /// Runs `member` for each member of a map with text keys.
        fn map(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
            let mut left = self.container(MAP)?;
            while self.more(&mut left)? {
                let name = self.text()?;
                member(self, name)?;
            }
            Some(())
        }
    }

    pub(super) fn scan(body: &Bytes, records: bool) -> Option<Request<'_>> {
        let mut s = Scanner { body, i: 0 };
        let mut req = Assembly::new();
        let mut seen = Seen::default();
        s.map(|s, name| {
            let m = Member::top(name.as_bytes(), records)?;
            seen.first(m.bit())?;
            match m {
                Member::Records => req.records = Some(entries(s)?),
                Member::Data => req.entry.data = Some(s.blob()?),
                m => req.set_text(m, s.text()?)?,
            }
            Some(())
        })?;
        (s.i == body.len()).then(|| req.finish(records))
    }

    fn entries<'a>(s: &mut Scanner<'a>) -> Option<Vec<PutEntry<'a>>> {
        let mut left = s.container(ARRAY)?;
        let mut out = Vec::with_capacity(left.map_or(0, |n| n.min(500) as usize));
        while s.more(&mut left)? {
            let mut e = empty_entry();
            let mut seen = Seen::default();
            s.map(|s, name| {
                let m = Member::entry(name.as_bytes())?;
                seen.first(m.bit())?;
                match m {
                    Member::Data => e.data = Some(s.blob()?),
                    m => set_entry_text(&mut e, m, s.text()?)?,
                }
                Some(())
            })?;
            out.push(e);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinesis::MEMBER_KINDS;
    use crate::protocol::codec::{decode_request, encode_response};

    fn records_outcome() -> PutRecordsOutcome {
        PutRecordsOutcome {
            stream_id: 42,
            encrypted: false,
            results: vec![
                Ok((0, 0)),
                Ok((3, 1 << 40)),
                Err(("ProvisionedThroughputExceededException", "Rate exceeded for \"s\"\n.".into())),
                Ok((4095, u64::MAX >> 8)),
            ],
        }
    }

    #[test]
    fn encoded_answers_match_the_value_answers() {
        let o = records_outcome();
        let one = PutRecordOutcome { stream_id: 7, shard: 12, ordinal: 99, encrypted: true };
        for proto in [Protocol::Json, Protocol::Cbor] {
            let (direct, via) = match proto {
                Protocol::Cbor => (records_cbor(&o), encode_response(proto, &o.to_value(), &MEMBER_KINDS)),
                _ => (records_json(&o), encode_response(proto, &o.to_value(), &MEMBER_KINDS)),
            };
            let decode = |b: &[u8]| decode_request(proto, b, &MEMBER_KINDS).unwrap();
            assert_eq!(decode(&direct), decode(&via), "{proto:?}");
            assert_eq!(decode(&direct)["FailedRecordCount"], 1);
            let direct = if proto == Protocol::Cbor { record_cbor(&one) } else { record_json(&one) };
            assert_eq!(decode(&direct), decode(&encode_response(proto, &one.to_value(), &MEMBER_KINDS)));
            assert_eq!(decode(&direct)["EncryptionType"], "KMS");
        }
    }

    fn body(b: &[u8]) -> Bytes {
        Bytes::copy_from_slice(b)
    }

    fn data_of(e: &PutEntry) -> Vec<u8> {
        match &e.data {
            Some(Blob::Base64(t)) => t.to_vec(),
            Some(Blob::Raw(b)) => b.to_vec(),
            None => b"<none>".to_vec(),
        }
    }

    #[test]
    fn json_scanner_reads_simple_puts() {
        let b = body(
            br#" {"StreamName" : "s", "Records":[{"Data":"QUJD","PartitionKey":"k"},
                {"PartitionKey":"k2","ExplicitHashKey":"5","Data":""}] } "#,
        );
        let r = scan(Protocol::Json, "PutRecords", &b).unwrap();
        assert_eq!(r.target.stream_name.as_deref(), Some("s"));
        let Body::Records(Some(e)) = r.body else { panic!("no records") };
        assert_eq!(e.len(), 2);
        assert_eq!(data_of(&e[0]), b"QUJD");
        assert_eq!(e[1].explicit_hash_key, Some("5"));
        assert_eq!(data_of(&e[1]), b"");
        let b = body(br#"{"StreamARN":"a","Data":"QQ==","PartitionKey":"p","SequenceNumberForOrdering":"1"}"#);
        let r = scan(Protocol::Json, "PutRecord", &b).unwrap();
        let Body::Record(e, ordering) = r.body else { panic!("not a record") };
        assert_eq!((e.partition_key, ordering), (Some("p"), Some("1")));
        let b = body(br#"{"StreamName":"s"}"#);
        assert!(matches!(scan(Protocol::Json, "PutRecords", &b).unwrap().body, Body::Records(None)));
    }

    #[test]
    fn json_scanner_leaves_the_rest_to_the_general_path() {
        for b in [
            &br#"{"StreamName":"a\"b","Records":[]}"#[..],
            br#"{"StreamName":null}"#,
            br#"{"StreamName":"s","Records":[{"Data":"QQ==","PartitionKey":"k","Extra":"x"}]}"#,
            br#"{"StreamName":"s","StreamName":"t"}"#,
            br#"{"StreamName":"s"} x"#,
            br#"{"StreamName":"s""#,
            br#"{"StreamName":1}"#,
            br#"{"StreamName":"s","Data":"QQ=="}"#,
            b"{\"StreamName\":\"a\x01\"}",
            b"{\"StreamName\":\"\xff\"}",
            br#"{"Records":[{"Data":"QQ==","Data":"QQ=="}]}"#,
            br#"{"Records":[{"Data":"QQ=="},]}"#,
            b"",
            b"[]",
        ] {
            assert!(scan(Protocol::Json, "PutRecords", &body(b)).is_none(), "{}", String::from_utf8_lossy(b));
        }
        assert!(scan(Protocol::Json, "PutRecord", &body(br#"{"Records":[]}"#)).is_none());
        assert!(scan(Protocol::Json, "ListStreams", &body(b"{}")).is_none());
    }

    fn cbor_put_records(indefinite: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if indefinite {
            out.push(0xbf);
        } else {
            cbor::head(&mut out, cbor::MAP, 2);
        }
        cbor::text(&mut out, "StreamName");
        cbor::text(&mut out, "s");
        cbor::text(&mut out, "Records");
        if indefinite {
            out.push(0x9f);
        } else {
            cbor::head(&mut out, cbor::ARRAY, 2);
        }
        for (data, key) in [(&b"\x00\x01"[..], "k"), (&[7u8; 300][..], "k2")] {
            cbor::head(&mut out, cbor::MAP, 2);
            cbor::text(&mut out, "Data");
            cbor::head(&mut out, cbor::BYTES, data.len() as u64);
            out.extend_from_slice(data);
            cbor::text(&mut out, "PartitionKey");
            cbor::text(&mut out, key);
        }
        if indefinite {
            out.extend_from_slice(&[0xff, 0xff]);
        }
        out
    }

    #[test]
    fn cbor_scanner_reads_definite_and_indefinite_containers() {
        for indefinite in [false, true] {
            let b = body(&cbor_put_records(indefinite));
            let r = scan(Protocol::Cbor, "PutRecords", &b).unwrap();
            assert_eq!(r.target.stream_name.as_deref(), Some("s"));
            let Body::Records(Some(e)) = r.body else { panic!("no records") };
            assert_eq!(e.len(), 2);
            assert_eq!(data_of(&e[0]), b"\x00\x01");
            assert_eq!(data_of(&e[1]), vec![7u8; 300]);
            assert_eq!(e[1].partition_key, Some("k2"));
        }
    }

    #[test]
    fn cbor_scanner_leaves_the_rest_to_the_general_path() {
        let good = cbor_put_records(false);
        // Every truncation of a good request.
        for n in 0..good.len() {
            assert!(scan(Protocol::Cbor, "PutRecords", &body(&good[..n])).is_none(), "{n}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        // A tag, a text Data, an indefinite-length string, a length beyond the body.
        let mut tagged = Vec::new();
        cbor::head(&mut tagged, cbor::MAP, 1);
        cbor::text(&mut tagged, "StreamName");
        tagged.extend_from_slice(&[0xc1, 0x61, b's']);
        let mut text_data = Vec::new();
        cbor::head(&mut text_data, cbor::MAP, 1);
        cbor::text(&mut text_data, "Records");
        cbor::head(&mut text_data, cbor::ARRAY, 1);
        cbor::head(&mut text_data, cbor::MAP, 1);
        cbor::text(&mut text_data, "Data");
        cbor::text(&mut text_data, "QQ==");
        let indefinite_text =
            [0xa1, 0x6a, b'S', b't', b'r', b'e', b'a', b'm', b'N', b'a', b'm', b'e', 0x7f, 0x61, b's', 0xff];
        let mut huge = vec![0xa1];
        cbor::text(&mut huge, "StreamName");
        huge.extend_from_slice(&[0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        for b in [trailing, tagged, text_data, indefinite_text.to_vec(), huge] {
            assert!(scan(Protocol::Cbor, "PutRecords", &body(&b)).is_none(), "{b:?}");
        }
    }
}
