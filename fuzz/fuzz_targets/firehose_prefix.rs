#![no_main]
//! Firehose prefix expressions: any text parses or is refused with a message, never a panic;
//! a parsed prefix evaluates for any instant, and evaluating twice gives the same key.
use libfuzzer_sys::fuzz_target;
use sluice::firehose::prefix::Prefix;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (ts, text) = match text.split_once('\n') {
        Some((t, rest)) => (t.parse::<i64>().unwrap_or(0).clamp(-62_135_596_800_000, 253_402_300_799_999), rest),
        None => (1_767_323_045_678, text),
    };
    if let Ok(p) = Prefix::parse(text) {
        let eval = || p.evaluate(ts, "processing-failed", &mut || "R".repeat(11), &|_, k| Some(k.to_owned()));
        assert_eq!(eval(), eval());
    }
});
