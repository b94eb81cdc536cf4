//! DynamoDB attribute values in their JSON form (`{"S": "..."}`, `{"N": "12.5"}`, `{"SS": [...]}`,
//! `{"M": {...}}`, ...): checking, comparing, numbers as decimals, sets. Pure.

use std::cmp::Ordering;

use base64::Engine;
use serde_json::{Map, Value};

/// An item: attribute name to attribute value.
pub type Item = Map<String, Value>;

const TYPES: [&str; 10] = ["S", "N", "B", "SS", "NS", "BS", "M", "L", "BOOL", "NULL"];

/// The type of an attribute value (`S`, `N`, ...), if it is one.
pub fn type_of(v: &Value) -> Option<&'static str> {
    let m = v.as_object()?;
    if m.len() != 1 {
        return None;
    }
    let (k, _) = m.iter().next()?;
    TYPES.iter().copied().find(|t| t == k)
}

/// Checks an attribute value's shape; the message is DynamoDB's where it has one.
pub fn check(v: &Value) -> Result<(), String> {
    let t =
        type_of(v).ok_or("Supplied AttributeValue is empty, must contain exactly one of the supported datatypes")?;
    let inner = &v[t];
    let ok = match t {
        "S" => inner.is_string(),
        "N" => inner.as_str().is_some_and(|n| parse_number(n).is_some()),
        "B" => inner.as_str().is_some_and(|b| base64::engine::general_purpose::STANDARD.decode(b).is_ok()),
        "BOOL" => inner.is_boolean(),
        "NULL" => inner.as_bool() == Some(true),
        "SS" | "BS" => inner.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)),
        "NS" => inner
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|n| n.as_str().is_some_and(|n| parse_number(n).is_some()))),
        "L" => match inner.as_array() {
            Some(items) => return items.iter().try_for_each(check),
            None => false,
        },
        "M" => match inner.as_object() {
            Some(m) => return m.values().try_for_each(check),
            None => false,
        },
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("One or more parameter values were invalid: An attribute value of type {t} is malformed"))
    }
}

/// A decimal number: sign, integer digits (no leading zeros), fraction digits (no trailing zeros).
pub(crate) fn parse_number(text: &str) -> Option<(bool, String, String)> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exp) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    if int.len() + frac.len() > 38 || exp.abs() > 125 {
        return None;
    }
    // Shift the decimal point by the exponent.
    let mut digits = format!("{int}{frac}");
    let mut point = int.len() as i64 + i64::from(exp);
    if point < 0 {
        digits = "0".repeat((-point) as usize) + &digits;
        point = 0;
    }
    if point as usize > digits.len() {
        digits += &"0".repeat(point as usize - digits.len());
    }
    let (i, f) = digits.split_at(point as usize);
    let i = i.trim_start_matches('0').to_owned();
    let f = f.trim_end_matches('0').to_owned();
    let zero = i.is_empty() && f.is_empty();
    Some((neg && !zero, i, f))
}

fn cmp_numbers(a: &str, b: &str) -> Option<Ordering> {
    let (an, ai, af) = parse_number(a)?;
    let (bn, bi, bf) = parse_number(b)?;
    let magnitude = ai.len().cmp(&bi.len()).then_with(|| ai.cmp(&bi)).then_with(|| af.cmp(&bf));
    Some(match (an, bn) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
    })
}

/// The sum of two numbers, as DynamoDB writes it (exact for integers; decimals through f64).
pub fn number_add(a: &str, b: &str) -> Result<String, String> {
    let bad = || "An operand in the update expression has an incorrect data type".to_owned();
    if let (Ok(x), Ok(y)) = (a.trim().parse::<i128>(), b.trim().parse::<i128>()) {
        return x
            .checked_add(y)
            .map(|s| s.to_string())
            .ok_or("Number overflow. Attempting to store a number with magnitude larger than supported range".into());
    }
    let (x, y) = (a.trim().parse::<f64>().map_err(|_| bad())?, b.trim().parse::<f64>().map_err(|_| bad())?);
    Ok(format!("{}", x + y))
}

/// The members of a set value, each as a scalar attribute value.
pub fn set_members(v: &Value) -> Option<Vec<Value>> {
    let t = type_of(v)?;
    let scalar = match t {
        "SS" => "S",
        "NS" => "N",
        "BS" => "B",
        _ => return None,
    };
    Some(v[t].as_array()?.iter().map(|m| serde_json::json!({ scalar: m })).collect())
}

/// Orders two values of the same scalar type (S and B by bytes, N as numbers); equal sets, lists
/// and maps compare Equal, anything else does not compare.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    let (ta, tb) = (type_of(a)?, type_of(b)?);
    if ta != tb {
        return None;
    }
    match ta {
        "S" => Some(a["S"].as_str()?.as_bytes().cmp(b["S"].as_str()?.as_bytes())),
        "N" => cmp_numbers(a["N"].as_str()?, b["N"].as_str()?),
        "B" => {
            let d = |v: &Value| base64::engine::general_purpose::STANDARD.decode(v["B"].as_str()?).ok();
            Some(d(a)?.cmp(&d(b)?))
        }
        "SS" | "NS" | "BS" => {
            let (x, y) = (set_members(a)?, set_members(b)?);
            let same = x.len() == y.len() && x.iter().all(|m| y.iter().any(|n| compare(m, n) == Some(Ordering::Equal)));
            same.then_some(Ordering::Equal)
        }
        "L" => {
            let (x, y) = (a["L"].as_array()?, b["L"].as_array()?);
            let same = x.len() == y.len() && x.iter().zip(y).all(|(m, n)| compare(m, n) == Some(Ordering::Equal));
            same.then_some(Ordering::Equal)
        }
        "M" => {
            let (x, y) = (a["M"].as_object()?, b["M"].as_object()?);
            let same = x.len() == y.len()
                && x.iter().all(|(k, m)| y.get(k).is_some_and(|n| compare(m, n) == Some(Ordering::Equal)));
            same.then_some(Ordering::Equal)
        }
        _ => (a == b).then_some(Ordering::Equal),
    }
}

/// `size()`: characters of a string, bytes of a binary, members of a set, list or map.
pub fn size(v: &Value) -> Option<usize> {
    let t = type_of(v)?;
    match t {
        "S" => Some(v["S"].as_str()?.chars().count()),
        "B" => base64::engine::general_purpose::STANDARD.decode(v["B"].as_str()?).ok().map(|b| b.len()),
        "SS" | "NS" | "BS" | "L" => Some(v[t].as_array()?.len()),
        "M" => Some(v["M"].as_object()?.len()),
        _ => None,
    }
}

/// ADD: numbers are summed, sets united; onto nothing, the value itself.
pub fn add(current: Option<&Value>, v: &Value) -> Result<Value, String> {
    let Some(cur) = current else { return Ok(v.clone()) };
    match (type_of(cur), type_of(v)) {
        (Some("N"), Some("N")) => {
            Ok(serde_json::json!({"N": number_add(cur["N"].as_str().unwrap_or("0"), v["N"].as_str().unwrap_or("0"))?}))
        }
        (Some(a), Some(b)) if a == b && matches!(a, "SS" | "NS" | "BS") => {
            let mut members = cur[a].as_array().cloned().unwrap_or_default();
            for m in v[a].as_array().cloned().unwrap_or_default() {
                if !members.contains(&m) {
                    members.push(m);
                }
            }
            Ok(serde_json::json!({ a: members }))
        }
        _ => Err("An operand in the update expression has an incorrect data type".into()),
    }
}

/// DELETE from a set; `None` when nothing is left (the attribute goes).
pub fn delete_from_set(current: &Value, v: &Value) -> Result<Option<Value>, String> {
    match (type_of(current), type_of(v)) {
        (Some(a), Some(b)) if a == b && matches!(a, "SS" | "NS" | "BS") => {
            let gone = v[a].as_array().cloned().unwrap_or_default();
            let left: Vec<Value> =
                current[a].as_array().cloned().unwrap_or_default().into_iter().filter(|m| !gone.contains(m)).collect();
            Ok((!left.is_empty()).then(|| serde_json::json!({ a: left })))
        }
        _ => Err("An operand in the update expression has an incorrect data type".into()),
    }
}

/// A number in one spelling per value, as DynamoDB stores and returns it (`007.500` → `7.5`,
/// `1e1` → `10`).
pub fn canonical_number(text: &str) -> String {
    match parse_number(text) {
        Some((neg, i, f)) => {
            let i = if i.is_empty() { "0".to_owned() } else { i };
            let body = if f.is_empty() { i } else { format!("{i}.{f}") };
            if neg {
                format!("-{body}")
            } else {
                body
            }
        }
        None => text.to_owned(),
    }
}

/// Rewrites every number in a value (sets, lists and maps included) in its canonical spelling.
pub fn normalize(v: &mut Value) {
    let Some(t) = type_of(v) else { return };
    match t {
        "N" => {
            if let Some(n) = v["N"].as_str().map(canonical_number) {
                v["N"] = Value::String(n);
            }
        }
        "NS" => {
            if let Some(a) = v["NS"].as_array_mut() {
                for n in a.iter_mut() {
                    if let Some(c) = n.as_str().map(canonical_number) {
                        *n = Value::String(c);
                    }
                }
            }
        }
        "L" => v["L"].as_array_mut().into_iter().flatten().for_each(normalize),
        "M" => v["M"].as_object_mut().into_iter().flat_map(|m| m.values_mut()).for_each(normalize),
        _ => {}
    }
}

/// An item's size as DynamoDB counts it, about: names and values in bytes.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + v.to_string().len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_as_decimals() {
        let n = |s: &str| json!({"N": s});
        assert_eq!(compare(&n("10"), &n("9")), Some(Ordering::Greater));
        assert_eq!(compare(&n("-10"), &n("9")), Some(Ordering::Less));
        assert_eq!(compare(&n("1.50"), &n("1.5")), Some(Ordering::Equal));
        assert_eq!(compare(&n("1e3"), &n("1000")), Some(Ordering::Equal));
        assert_eq!(compare(&n("-0"), &n("0")), Some(Ordering::Equal));
        assert_eq!(compare(&n("-2.5"), &n("-2.25")), Some(Ordering::Less));
        assert_eq!(compare(&json!({"S": "a"}), &n("1")), None);
        assert_eq!(number_add("41", "1").unwrap(), "42");
    }

    #[test]
    fn values_are_checked() {
        assert!(check(&json!({"S": "x"})).is_ok());
        assert!(check(&json!({"N": "12.5"})).is_ok());
        assert!(check(&json!({"N": "twelve"})).is_err());
        assert!(check(&json!({})).is_err());
        assert!(check(&json!({"S": "x", "N": "1"})).is_err());
        assert!(check(&json!({"M": {"a": {"L": [{"BOOL": true}, {"NULL": true}]}}})).is_ok());
        assert!(check(&json!({"SS": []})).is_err());
    }
}
