//! SQL values and types: what a row holds, how input text becomes a value of a column's type,
//! and how a value is written out (JSON, CSV).

use serde::{Deserialize, Serialize};

use crate::firehose::prefix::Civil;

/// One value of a row. TIMESTAMP is epoch milliseconds (UTC); an INTERVAL is milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Ts(i64),
    Interval(i64),
}

/// A column's SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SqlType {
    Varchar(u32),
    Char(u32),
    TinyInt,
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    /// Held as a double (precision, scale).
    Decimal(u32, u32),
    Boolean,
    Timestamp,
    Date,
    Time,
}

impl SqlType {
    /// Parses a type as RecordColumn.SqlType writes it (`VARCHAR(16)`, `DOUBLE`, `DECIMAL(5,2)`).
    pub fn parse(text: &str) -> Result<SqlType, String> {
        let t = text.trim().to_ascii_uppercase();
        let (base, args) = match t.find('(') {
            Some(i) if t.ends_with(')') => (t[..i].trim(), Some(&t[i + 1..t.len() - 1])),
            Some(_) => return Err(format!("The SQL type {text} is not valid.")),
            None => (t.as_str(), None),
        };
        let nums: Vec<u32> = match args {
            Some(a) => a
                .split(',')
                .map(|n| n.trim().parse::<u32>().map_err(|_| format!("The SQL type {text} is not valid.")))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let len = |default: u32| -> Result<u32, String> {
            match nums.as_slice() {
                [] => Ok(default),
                [n] if *n >= 1 => Ok(*n),
                _ => Err(format!("The SQL type {text} is not valid.")),
            }
        };
        let plain =
            |ty: SqlType| if nums.is_empty() { Ok(ty) } else { Err(format!("The SQL type {text} is not valid.")) };
        match base.split_whitespace().collect::<Vec<_>>().join(" ").as_str() {
            "VARCHAR" | "CHARACTER VARYING" | "CHAR VARYING" => Ok(SqlType::Varchar(len(u32::MAX)?)),
            "CHAR" | "CHARACTER" => Ok(SqlType::Char(len(1)?)),
            "TINYINT" => plain(SqlType::TinyInt),
            "SMALLINT" => plain(SqlType::SmallInt),
            "INTEGER" | "INT" => plain(SqlType::Integer),
            "BIGINT" => plain(SqlType::BigInt),
            "REAL" | "FLOAT" => plain(SqlType::Real),
            "DOUBLE" | "DOUBLE PRECISION" => plain(SqlType::Double),
            "DECIMAL" | "NUMERIC" | "DEC" => match nums.as_slice() {
                [] => Ok(SqlType::Decimal(19, 0)),
                [p] => Ok(SqlType::Decimal(*p, 0)),
                [p, s] if s <= p => Ok(SqlType::Decimal(*p, *s)),
                _ => Err(format!("The SQL type {text} is not valid.")),
            },
            "BOOLEAN" => plain(SqlType::Boolean),
            "TIMESTAMP" => plain(SqlType::Timestamp),
            "DATE" => plain(SqlType::Date),
            "TIME" => plain(SqlType::Time),
            _ => Err(format!("The SQL type {text} is not supported.")),
        }
    }

    pub fn name(&self) -> String {
        match self {
            SqlType::Varchar(u32::MAX) => "VARCHAR".into(),
            SqlType::Varchar(n) => format!("VARCHAR({n})"),
            SqlType::Char(n) => format!("CHAR({n})"),
            SqlType::TinyInt => "TINYINT".into(),
            SqlType::SmallInt => "SMALLINT".into(),
            SqlType::Integer => "INTEGER".into(),
            SqlType::BigInt => "BIGINT".into(),
            SqlType::Real => "REAL".into(),
            SqlType::Double => "DOUBLE".into(),
            SqlType::Decimal(p, s) => format!("DECIMAL({p},{s})"),
            SqlType::Boolean => "BOOLEAN".into(),
            SqlType::Timestamp => "TIMESTAMP".into(),
            SqlType::Date => "DATE".into(),
            SqlType::Time => "TIME".into(),
        }
    }

    pub fn is_integer(&self) -> bool {
        matches!(self, SqlType::TinyInt | SqlType::SmallInt | SqlType::Integer | SqlType::BigInt)
    }

    pub fn is_numeric(&self) -> bool {
        self.is_integer() || matches!(self, SqlType::Real | SqlType::Double | SqlType::Decimal(..))
    }

    fn int_range(&self) -> (i64, i64) {
        match self {
            SqlType::TinyInt => (i8::MIN.into(), i8::MAX.into()),
            SqlType::SmallInt => (i16::MIN.into(), i16::MAX.into()),
            SqlType::Integer => (i32::MIN.into(), i32::MAX.into()),
            _ => (i64::MIN, i64::MAX),
        }
    }

    /// A value made a value of this type (an INSERT into a column of it). Strings too long for
    /// the column are truncated, as KDA does.
    pub fn coerce(&self, v: Value) -> Result<Value, String> {
        if v == Value::Null {
            return Ok(Value::Null);
        }
        match self {
            SqlType::Varchar(n) | SqlType::Char(n) => {
                let s = match v {
                    Value::Str(s) => s,
                    other => other.to_text(),
                };
                Ok(Value::Str(truncate(s, *n as usize)))
            }
            t if t.is_integer() => {
                let i = match v {
                    Value::Int(i) => i,
                    Value::Float(f) if f.is_finite() && f.abs() < 9.2e18 => f.trunc() as i64,
                    Value::Str(s) => parse_int(&s)?,
                    Value::Bool(b) => i64::from(b),
                    other => return Err(format!("cannot convert {} to {}", other.to_text(), t.name())),
                };
                let (lo, hi) = t.int_range();
                if i < lo || i > hi {
                    return Err(format!("{i} is out of range for {}", t.name()));
                }
                Ok(Value::Int(i))
            }
            SqlType::Real | SqlType::Double | SqlType::Decimal(..) => {
                let f = match v {
                    Value::Int(i) => i as f64,
                    Value::Float(f) => f,
                    Value::Str(s) => s.trim().parse::<f64>().map_err(|_| format!("'{s}' is not a number"))?,
                    other => return Err(format!("cannot convert {} to {}", other.to_text(), self.name())),
                };
                Ok(match self {
                    SqlType::Decimal(_, scale) => {
                        let m = 10f64.powi(*scale as i32);
                        Value::Float((f * m).round() / m)
                    }
                    SqlType::Real => Value::Float(f as f32 as f64),
                    _ => Value::Float(f),
                })
            }
            SqlType::Boolean => match v {
                Value::Bool(b) => Ok(Value::Bool(b)),
                Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    _ => Err(format!("'{s}' is not a BOOLEAN")),
                },
                Value::Int(i) => Ok(Value::Bool(i != 0)),
                other => Err(format!("cannot convert {} to BOOLEAN", other.to_text())),
            },
            SqlType::Timestamp | SqlType::Date | SqlType::Time => {
                let ms = match v {
                    Value::Ts(ms) => ms,
                    Value::Str(s) => parse_timestamp(&s).ok_or_else(|| format!("'{s}' is not a {}", self.name()))?,
                    Value::Int(i) => i,
                    other => return Err(format!("cannot convert {} to {}", other.to_text(), self.name())),
                };
                Ok(Value::Ts(match self {
                    SqlType::Date => ms.div_euclid(86_400_000) * 86_400_000,
                    SqlType::Time => ms.rem_euclid(86_400_000),
                    _ => ms,
                }))
            }
            _ => Ok(v),
        }
    }
}

fn truncate(mut s: String, n: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(n) {
        s.truncate(i);
    }
    s
}

fn parse_int(s: &str) -> Result<i64, String> {
    let t = s.trim();
    t.parse::<i64>().or_else(|_| match t.parse::<f64>() {
        Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
        _ => Err(format!("'{s}' is not an integer")),
    })
}

/// `yyyy-MM-dd[ HH:mm:ss[.SSS]]` (also with a `T`, or an RFC 3339 zone), or epoch milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Some(ms) = crate::time::parse_rfc3339_ms(t) {
        return Some(ms);
    }
    if t.len() == 10 && t.as_bytes().get(4) == Some(&b'-') {
        return crate::time::parse_rfc3339_ms(&format!("{t}T00:00:00Z"));
    }
    if t.len() >= 3 && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    None
}

/// `yyyy-MM-dd HH:mm:ss.SSS`, as KDA prints a TIMESTAMP.
pub fn format_timestamp(ms: i64) -> String {
    let c = Civil::from_ms(ms);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}", c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis)
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as text (CAST to VARCHAR, CSV output, `||`).
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Str(s) => s.clone(),
            Value::Ts(ms) => format_timestamp(*ms),
            Value::Interval(ms) => format!("{ms}"),
        }
    }

    /// The value as a JSON output record holds it.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Ts(ms) => serde_json::Value::String(format_timestamp(*ms)),
            Value::Interval(ms) => serde_json::Value::from(*ms),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Bytes a value holds in state accounting, about.
    pub fn size(&self) -> usize {
        match self {
            Value::Str(s) => 24 + s.len(),
            _ => 16,
        }
    }
}

/// A double as SQL prints it: integral values keep one decimal (`3.0`).
pub fn format_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Orders two values of comparable types (numbers with numbers, text with text, and so on);
/// `None` for NULL or values that do not compare.
pub fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    use Value::*;
    match (a, b) {
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (Int(_) | Float(_), Int(_) | Float(_)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Str(x), Str(y)) => Some(x.cmp(y)),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        (Ts(x), Ts(y)) | (Interval(x), Interval(y)) => Some(x.cmp(y)),
        (Ts(x), Str(s)) => parse_timestamp(s).map(|y| x.cmp(&y)),
        (Str(s), Ts(y)) => parse_timestamp(s).map(|x| x.cmp(y)),
        _ => None,
    }
}

/// A total order for grouping and sorting keys (NULLs first).
pub fn key_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    compare(a, b).unwrap_or_else(|| rank(a).cmp(&rank(b)))
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 2,
        Value::Str(_) => 3,
        Value::Ts(_) => 4,
        Value::Interval(_) => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_and_coerce() {
        assert_eq!(SqlType::parse("varchar(16)").unwrap(), SqlType::Varchar(16));
        assert_eq!(SqlType::parse("DECIMAL(5, 2)").unwrap(), SqlType::Decimal(5, 2));
        assert!(SqlType::parse("BLOB").is_err());
        assert!(SqlType::parse("VARCHAR(0)").is_err());
        let v = SqlType::Varchar(3).coerce(Value::Str("abcdef".into())).unwrap();
        assert_eq!(v, Value::Str("abc".into()), "overlong strings are truncated");
        assert_eq!(SqlType::Integer.coerce(Value::Str(" 42 ".into())).unwrap(), Value::Int(42));
        assert!(SqlType::Integer.coerce(Value::Str("4x".into())).is_err());
        assert!(SqlType::SmallInt.coerce(Value::Int(70_000)).is_err());
        assert_eq!(SqlType::Double.coerce(Value::Int(3)).unwrap(), Value::Float(3.0));
        assert_eq!(
            SqlType::Timestamp.coerce(Value::Str("2024-01-02 03:04:05.678".into())).unwrap(),
            Value::Ts(1_704_164_645_678)
        );
        assert_eq!(format_timestamp(1_704_164_645_678), "2024-01-02 03:04:05.678");
    }
}
