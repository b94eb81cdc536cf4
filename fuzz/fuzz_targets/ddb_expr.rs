#![no_main]
//! DynamoDB condition and update expressions: the parser and the evaluator never panic.
//! Input: `<condition>\n<update>`, with fixed placeholders `#n`, `:v`, `:n` and a fixed item.
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sluice::dynamodb::expr::{apply, holds, parse_condition, parse_update, Placeholders};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (cond, update) = text.split_once('\n').unwrap_or((&text, ""));
    let names = json!({"#n": "leaseOwner"});
    let values = json!({":v": {"S": "w1"}, ":n": {"N": "1"}, ":l": {"L": [{"S": "x"}]}, ":s": {"SS": ["a"]}});
    let ph = Placeholders { names: names.as_object(), values: values.as_object() };
    let item = json!({"leaseKey": {"S": "k"}, "leaseCounter": {"N": "7"}, "m": {"M": {"a": {"L": [{"N": "1"}]}}}, "s": {"SS": ["a", "b"]}});
    let mut item = item.as_object().cloned().unwrap_or_default();
    if let Ok(c) = parse_condition(cond, &ph) {
        let _ = holds(&c, &item);
    }
    if let Ok(u) = parse_update(update, &ph) {
        let _ = apply(&u, &mut item);
    }
});
