//! Compiled expressions and their evaluation: column references resolved to positions, the
//! scalar functions of the KDA SQL reference, SQL's three-valued logic.

use serde::{Deserialize, Serialize};

use super::value::{compare, format_timestamp, SqlType, Value};
use crate::firehose::prefix::{format_fields, parse_pattern, Civil, Field};

/// A time unit of FLOOR/CEIL ... TO, EXTRACT and INTERVAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

impl Unit {
    pub fn millis(&self) -> Option<i64> {
        match self {
            Unit::Millisecond => Some(1),
            Unit::Second => Some(1000),
            Unit::Minute => Some(60_000),
            Unit::Hour => Some(3_600_000),
            Unit::Day => Some(86_400_000),
            Unit::Month | Unit::Year => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Concat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Abs,
    Mod,
    Power,
    Sqrt,
    Ln,
    Log10,
    Exp,
    Round,
    Sign,
    Upper,
    Lower,
    Initcap,
    CharLength,
    Substring,
    /// TRIM: (both, leading, trailing) flags in the first argument, the characters in the second.
    Trim(bool, bool),
    Position,
    Overlay,
    RegexReplace,
    Coalesce,
    NullIf,
    CharToTimestamp,
    TimestampToChar,
    Tsdiff,
    UnixTimestamp,
    ToTimestamp,
}

/// One compiled expression. Positions index the evaluation context ([`Cx`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    /// A column of the input row.
    Col(usize),
    Rowtime,
    ArrivalTime,
    /// A GROUP BY key (grouped queries).
    Key(usize),
    /// An aggregate's value (grouped queries).
    Agg(usize),
    /// A running aggregate (a scalar subquery over the source stream).
    Running(usize),
    /// An aggregate over a sliding window.
    Win(usize),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    IsNull(Box<Expr>, bool),
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool),
    InList(Box<Expr>, Vec<Expr>, bool),
    Like(Box<Expr>, Box<Expr>, bool),
    Case(Option<Box<Expr>>, Vec<(Expr, Expr)>, Option<Box<Expr>>),
    Cast(Box<Expr>, SqlType),
    Call(Func, Vec<Expr>),
    FloorTo(Box<Expr>, Unit),
    CeilTo(Box<Expr>, Unit),
    FloorNum(Box<Expr>),
    CeilNum(Box<Expr>),
    /// STEP(e BY INTERVAL): e rounded down to a multiple of the interval.
    Step(Box<Expr>, i64),
    Extract(Unit, Box<Expr>),
    CurrentRowTimestamp,
    CurrentTimestamp,
}

/// What an expression is evaluated against.
pub struct Cx<'a> {
    pub row: &'a [Value],
    pub rowtime: i64,
    pub arrival: i64,
    pub keys: &'a [Value],
    pub aggs: &'a [Value],
    pub running: &'a [Value],
    pub win: &'a [Value],
    /// The wall clock now (CURRENT_ROW_TIMESTAMP).
    pub now_ms: i64,
    /// When the query started (CURRENT_TIMESTAMP).
    pub started_ms: i64,
}

impl Cx<'_> {
    pub fn row(row: &[Value], rowtime: i64) -> Cx<'_> {
        Cx {
            row,
            rowtime,
            arrival: rowtime,
            keys: &[],
            aggs: &[],
            running: &[],
            win: &[],
            now_ms: rowtime,
            started_ms: rowtime,
        }
    }
}

pub type EvalResult = Result<Value, String>;

fn at(v: &[Value], i: usize) -> Value {
    v.get(i).cloned().unwrap_or(Value::Null)
}

impl Expr {
    pub fn eval(&self, cx: &Cx) -> EvalResult {
        Ok(match self {
            Expr::Lit(v) => v.clone(),
            Expr::Col(i) => at(cx.row, *i),
            Expr::Rowtime => Value::Ts(cx.rowtime),
            Expr::ArrivalTime => Value::Ts(cx.arrival),
            Expr::Key(i) => at(cx.keys, *i),
            Expr::Agg(i) => at(cx.aggs, *i),
            Expr::Running(i) => at(cx.running, *i),
            Expr::Win(i) => at(cx.win, *i),
            Expr::Bin(BinOp::And, a, b) => {
                let (x, y) = (truth(&a.eval(cx)?)?, truth(&b.eval(cx)?)?);
                match (x, y) {
                    (Some(false), _) | (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                }
            }
            Expr::Bin(BinOp::Or, a, b) => {
                let (x, y) = (truth(&a.eval(cx)?)?, truth(&b.eval(cx)?)?);
                match (x, y) {
                    (Some(true), _) | (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                }
            }
            Expr::Bin(op, a, b) => binary(*op, a.eval(cx)?, b.eval(cx)?)?,
            Expr::Not(a) => match truth(&a.eval(cx)?)? {
                Some(b) => Value::Bool(!b),
                None => Value::Null,
            },
            Expr::Neg(a) => match a.eval(cx)? {
                Value::Int(i) => Value::Int(i.checked_neg().ok_or("integer overflow")?),
                Value::Float(f) => Value::Float(-f),
                Value::Interval(i) => Value::Interval(-i),
                Value::Null => Value::Null,
                other => return Err(format!("cannot negate {}", other.to_text())),
            },
            Expr::IsNull(a, negated) => Value::Bool(a.eval(cx)?.is_null() != *negated),
            Expr::Between(e, lo, hi, negated) => {
                let v = e.eval(cx)?;
                let (l, h) = (lo.eval(cx)?, hi.eval(cx)?);
                match (compare(&v, &l), compare(&v, &h)) {
                    (Some(a), Some(b)) => Value::Bool((a.is_ge() && b.is_le()) != *negated),
                    _ => Value::Null,
                }
            }
            Expr::InList(e, list, negated) => {
                let v = e.eval(cx)?;
                if v.is_null() {
                    return Ok(Value::Null);
                }
                let mut found = false;
                let mut null = false;
                for item in list {
                    let x = item.eval(cx)?;
                    match compare(&v, &x) {
                        Some(std::cmp::Ordering::Equal) => {
                            found = true;
                            break;
                        }
                        None => null |= x.is_null(),
                        _ => {}
                    }
                }
                if found {
                    Value::Bool(!*negated)
                } else if null {
                    Value::Null
                } else {
                    Value::Bool(*negated)
                }
            }
            Expr::Like(e, p, negated) => match (e.eval(cx)?, p.eval(cx)?) {
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                (v, p) => Value::Bool(like(&v.to_text(), &p.to_text()) != *negated),
            },
            Expr::Case(operand, whens, otherwise) => {
                let subject = match operand {
                    Some(o) => Some(o.eval(cx)?),
                    None => None,
                };
                for (w, then) in whens {
                    let hit = match &subject {
                        Some(s) => compare(s, &w.eval(cx)?) == Some(std::cmp::Ordering::Equal),
                        None => truth(&w.eval(cx)?)? == Some(true),
                    };
                    if hit {
                        return then.eval(cx);
                    }
                }
                match otherwise {
                    Some(e) => e.eval(cx)?,
                    None => Value::Null,
                }
            }
            Expr::Cast(e, ty) => ty.coerce(e.eval(cx)?)?,
            Expr::Call(f, args) => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(a.eval(cx)?);
                }
                call(*f, vals)?
            }
            Expr::FloorTo(e, unit) => match e.eval(cx)? {
                Value::Ts(ms) => Value::Ts(floor_to(ms, *unit)),
                Value::Null => Value::Null,
                other => return Err(format!("FLOOR TO needs a TIMESTAMP, not {}", other.to_text())),
            },
            Expr::CeilTo(e, unit) => match e.eval(cx)? {
                Value::Ts(ms) => {
                    let f = floor_to(ms, *unit);
                    Value::Ts(if f == ms { ms } else { add_units(f, *unit, 1) })
                }
                Value::Null => Value::Null,
                other => return Err(format!("CEIL TO needs a TIMESTAMP, not {}", other.to_text())),
            },
            Expr::FloorNum(e) => match e.eval(cx)? {
                Value::Float(f) => Value::Float(f.floor()),
                v @ (Value::Int(_) | Value::Null) => v,
                other => return Err(format!("FLOOR needs a number, not {}", other.to_text())),
            },
            Expr::CeilNum(e) => match e.eval(cx)? {
                Value::Float(f) => Value::Float(f.ceil()),
                v @ (Value::Int(_) | Value::Null) => v,
                other => return Err(format!("CEIL needs a number, not {}", other.to_text())),
            },
            Expr::Step(e, width) => match e.eval(cx)? {
                Value::Ts(ms) => Value::Ts(ms.div_euclid(*width).checked_mul(*width).ok_or("STEP: out of range")?),
                Value::Int(i) => Value::Int(i.div_euclid(*width).checked_mul(*width).ok_or("STEP: out of range")?),
                Value::Null => Value::Null,
                other => return Err(format!("STEP needs a TIMESTAMP or a number, not {}", other.to_text())),
            },
            Expr::Extract(unit, e) => match e.eval(cx)? {
                Value::Ts(ms) => {
                    let c = Civil::from_ms(ms);
                    Value::Int(match unit {
                        Unit::Year => c.year,
                        Unit::Month => c.month.into(),
                        Unit::Day => c.day.into(),
                        Unit::Hour => c.hour.into(),
                        Unit::Minute => c.minute.into(),
                        Unit::Second => c.second.into(),
                        Unit::Millisecond => (c.second * 1000 + c.millis).into(),
                    })
                }
                Value::Null => Value::Null,
                other => return Err(format!("EXTRACT needs a TIMESTAMP, not {}", other.to_text())),
            },
            Expr::CurrentRowTimestamp => Value::Ts(cx.now_ms),
            Expr::CurrentTimestamp => Value::Ts(cx.started_ms),
        })
    }

    /// Visits this expression and every expression inside it.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Bin(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Not(a)
            | Expr::Neg(a)
            | Expr::IsNull(a, _)
            | Expr::Cast(a, _)
            | Expr::FloorTo(a, _)
            | Expr::CeilTo(a, _)
            | Expr::FloorNum(a)
            | Expr::CeilNum(a)
            | Expr::Step(a, _)
            | Expr::Extract(_, a) => a.walk(f),
            Expr::Between(a, b, c, _) => {
                a.walk(f);
                b.walk(f);
                c.walk(f);
            }
            Expr::InList(a, l, _) => {
                a.walk(f);
                l.iter().for_each(|e| e.walk(f));
            }
            Expr::Like(a, b, _) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Case(o, w, e) => {
                if let Some(o) = o {
                    o.walk(f);
                }
                for (a, b) in w {
                    a.walk(f);
                    b.walk(f);
                }
                if let Some(e) = e {
                    e.walk(f);
                }
            }
            Expr::Call(_, args) => args.iter().for_each(|e| e.walk(f)),
            _ => {}
        }
    }

    /// Whether the expression reads nothing of a row (a constant).
    pub fn is_constant(&self) -> bool {
        let mut c = true;
        self.walk(&mut |e| {
            if matches!(
                e,
                Expr::Col(_)
                    | Expr::Rowtime
                    | Expr::ArrivalTime
                    | Expr::Key(_)
                    | Expr::Agg(_)
                    | Expr::Running(_)
                    | Expr::Win(_)
                    | Expr::CurrentRowTimestamp
            ) {
                c = false;
            }
        });
        c
    }
}

/// A condition's truth: `None` for NULL (unknown).
pub fn truth(v: &Value) -> Result<Option<bool>, String> {
    match v {
        Value::Bool(b) => Ok(Some(*b)),
        Value::Null => Ok(None),
        other => Err(format!("{} is not a BOOLEAN", other.to_text())),
    }
}

fn overflow() -> String {
    "integer overflow".into()
}

fn binary(op: BinOp, a: Value, b: Value) -> EvalResult {
    use Value::*;
    if a.is_null() || b.is_null() {
        return Ok(Null);
    }
    let cmp = |want: fn(std::cmp::Ordering) -> bool| -> EvalResult {
        match compare(&a, &b) {
            Some(o) => Ok(Bool(want(o))),
            None => Err(format!("cannot compare {} with {}", a.to_text(), b.to_text())),
        }
    };
    match op {
        BinOp::Eq => cmp(|o| o.is_eq()),
        BinOp::Ne => cmp(|o| o.is_ne()),
        BinOp::Lt => cmp(|o| o.is_lt()),
        BinOp::Le => cmp(|o| o.is_le()),
        BinOp::Gt => cmp(|o| o.is_gt()),
        BinOp::Ge => cmp(|o| o.is_ge()),
        BinOp::Concat => Ok(Str(format!("{}{}", a.to_text(), b.to_text()))),
        BinOp::And | BinOp::Or => unreachable!("evaluated with three-valued logic"),
        _ => match (&a, &b) {
            (Int(x), Int(y)) => {
                let (x, y) = (*x, *y);
                let r = match op {
                    BinOp::Add => x.checked_add(y),
                    BinOp::Sub => x.checked_sub(y),
                    BinOp::Mul => x.checked_mul(y),
                    BinOp::Div | BinOp::Mod if y == 0 => return Err("division by zero".into()),
                    BinOp::Div => x.checked_div(y),
                    _ => x.checked_rem(y),
                };
                r.map(Int).ok_or_else(|| "integer overflow".into())
            }
            (Int(_) | Float(_), Int(_) | Float(_)) => {
                let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
                match op {
                    BinOp::Add => Ok(Float(x + y)),
                    BinOp::Sub => Ok(Float(x - y)),
                    BinOp::Mul => Ok(Float(x * y)),
                    BinOp::Div | BinOp::Mod if y == 0.0 => Err("division by zero".into()),
                    BinOp::Div => Ok(Float(x / y)),
                    _ => Ok(Float(x % y)),
                }
            }
            (Ts(t), Interval(i)) | (Interval(i), Ts(t)) if op == BinOp::Add => {
                t.checked_add(*i).map(Ts).ok_or_else(overflow)
            }
            (Ts(t), Interval(i)) if op == BinOp::Sub => t.checked_sub(*i).map(Ts).ok_or_else(overflow),
            (Ts(t), Ts(u)) if op == BinOp::Sub => t.checked_sub(*u).map(Interval).ok_or_else(overflow),
            (Interval(x), Interval(y)) if op == BinOp::Add => x.checked_add(*y).map(Interval).ok_or_else(overflow),
            (Interval(x), Interval(y)) if op == BinOp::Sub => x.checked_sub(*y).map(Interval).ok_or_else(overflow),
            (Interval(x), Int(n)) | (Int(n), Interval(x)) if op == BinOp::Mul => {
                x.checked_mul(*n).map(Interval).ok_or_else(overflow)
            }
            _ => Err(format!("cannot apply the operator to {} and {}", a.to_text(), b.to_text())),
        },
    }
}

/// SQL LIKE with `%` and `_`.
pub fn like(s: &str, p: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = p.chars().collect();
    // Iterative matching with backtracking to the last `%`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && (p[j] == '_' || p[j] == s[i]) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    while j < p.len() && p[j] == '%' {
        j += 1;
    }
    j == p.len()
}

pub fn floor_to(ms: i64, unit: Unit) -> i64 {
    match unit.millis() {
        Some(w) => ms.div_euclid(w).saturating_mul(w),
        None => {
            let c = Civil::from_ms(ms);
            let month = if unit == Unit::Year { 1 } else { c.month as i64 };
            crate::time::days_from_civil(c.year, month, 1) * 86_400_000
        }
    }
}

fn add_units(ms: i64, unit: Unit, n: i64) -> i64 {
    match unit.millis() {
        Some(w) => ms.saturating_add(n.saturating_mul(w)),
        None => {
            let c = Civil::from_ms(ms);
            let months = if unit == Unit::Year { 12 * n } else { n };
            let total = c.year * 12 + (c.month as i64 - 1) + months;
            crate::time::days_from_civil(total.div_euclid(12), total.rem_euclid(12) + 1, 1) * 86_400_000
        }
    }
}

fn text(v: &Value) -> String {
    v.to_text()
}

fn int(v: &Value, what: &str) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        other => Err(format!("{what} needs an integer, not {}", other.to_text())),
    }
}

fn num(v: &Value, what: &str) -> Result<f64, String> {
    v.as_f64().ok_or_else(|| format!("{what} needs a number, not {}", v.to_text()))
}

fn call(f: Func, a: Vec<Value>) -> EvalResult {
    use Value::*;
    // NULL in, NULL out, except where the function is about NULLs.
    if !matches!(f, Func::Coalesce | Func::NullIf) && a.iter().any(Value::is_null) {
        return Ok(Null);
    }
    Ok(match f {
        Func::Abs => match &a[0] {
            Int(i) => Int(i.checked_abs().ok_or("integer overflow")?),
            v => Float(num(v, "ABS")?.abs()),
        },
        Func::Mod => match (&a[0], &a[1]) {
            (Int(_), Int(0)) => return Err("division by zero".into()),
            (Int(x), Int(y)) => Int(x.checked_rem(*y).ok_or("integer overflow")?),
            (x, y) => Float(num(x, "MOD")? % num(y, "MOD")?),
        },
        Func::Power => Float(num(&a[0], "POWER")?.powf(num(&a[1], "POWER")?)),
        Func::Sqrt => Float(num(&a[0], "SQRT")?.sqrt()),
        Func::Ln => Float(num(&a[0], "LN")?.ln()),
        Func::Log10 => Float(num(&a[0], "LOG10")?.log10()),
        Func::Exp => Float(num(&a[0], "EXP")?.exp()),
        Func::Sign => match &a[0] {
            Int(i) => Int(i.signum()),
            v => Float(num(v, "SIGN")?.signum()),
        },
        Func::Round => {
            let digits = if a.len() > 1 { int(&a[1], "ROUND")? } else { 0 };
            match &a[0] {
                Int(i) if digits >= 0 => Int(*i),
                v => {
                    let m = 10f64.powi(digits.clamp(-30, 30) as i32);
                    Float((num(v, "ROUND")? * m).round() / m)
                }
            }
        }
        Func::Upper => Str(text(&a[0]).to_uppercase()),
        Func::Lower => Str(text(&a[0]).to_lowercase()),
        Func::Initcap => {
            let mut out = String::new();
            let mut start = true;
            for c in text(&a[0]).chars() {
                if c.is_alphanumeric() {
                    if start {
                        out.extend(c.to_uppercase());
                    } else {
                        out.extend(c.to_lowercase());
                    }
                    start = false;
                } else {
                    out.push(c);
                    start = true;
                }
            }
            Str(out)
        }
        Func::CharLength => Int(text(&a[0]).chars().count() as i64),
        Func::Substring => {
            let s: Vec<char> = text(&a[0]).chars().collect();
            let from = int(&a[1], "SUBSTRING")?;
            let len = if a.len() > 2 { Some(int(&a[2], "SUBSTRING")?) } else { None };
            if len.is_some_and(|l| l < 0) {
                return Err("SUBSTRING length is negative".into());
            }
            // SQL positions start at 1; a start before 1 shortens the length.
            let end = len.map_or(i64::MAX, |l| from.saturating_add(l));
            let (lo, hi) = (from.max(1) - 1, end.saturating_sub(1).min(s.len() as i64));
            Str(if lo >= hi { String::new() } else { s[lo as usize..hi as usize].iter().collect() })
        }
        Func::Trim(leading, trailing) => {
            let chars: Vec<char> = if a.len() > 1 { text(&a[1]).chars().collect() } else { vec![' '] };
            let s = text(&a[0]);
            let mut t = s.as_str();
            if leading {
                t = t.trim_start_matches(|c| chars.contains(&c));
            }
            if trailing {
                t = t.trim_end_matches(|c| chars.contains(&c));
            }
            Str(t.to_owned())
        }
        Func::Position => {
            let (needle, hay) = (text(&a[0]), text(&a[1]));
            Int(hay.find(&needle).map_or(0, |i| hay[..i].chars().count() as i64 + 1))
        }
        Func::Overlay => {
            let s: Vec<char> = text(&a[0]).chars().collect();
            let what = text(&a[1]);
            let from = (int(&a[2], "OVERLAY")?.max(1) - 1) as usize;
            let len = if a.len() > 3 { int(&a[3], "OVERLAY")?.max(0) as usize } else { what.chars().count() };
            let from = from.min(s.len());
            let to = from.saturating_add(len).min(s.len());
            let mut out: String = s[..from].iter().collect();
            out.push_str(&what);
            out.extend(&s[to..]);
            Str(out)
        }
        Func::RegexReplace => {
            let re = regex::Regex::new(&text(&a[1])).map_err(|e| format!("REGEX_REPLACE: {e}"))?;
            Str(re.replace_all(&text(&a[0]), text(&a[2]).as_str()).into_owned())
        }
        Func::Coalesce => a.into_iter().find(|v| !v.is_null()).unwrap_or(Null),
        Func::NullIf => {
            if compare(&a[0], &a[1]) == Some(std::cmp::Ordering::Equal) {
                Null
            } else {
                a[0].clone()
            }
        }
        Func::CharToTimestamp => {
            let fields = parse_pattern(&text(&a[0]))?;
            Ts(parse_with(&fields, &text(&a[1]))
                .ok_or_else(|| format!("'{}' does not match the format '{}'", text(&a[1]), text(&a[0])))?)
        }
        Func::TimestampToChar => match &a[1] {
            Ts(ms) => Str(format_fields(&parse_pattern(&text(&a[0]))?, &Civil::from_ms(*ms))),
            other => return Err(format!("TIMESTAMP_TO_CHAR needs a TIMESTAMP, not {}", other.to_text())),
        },
        Func::Tsdiff => match (&a[0], &a[1]) {
            (Ts(x), Ts(y)) => Int(x.checked_sub(*y).ok_or("integer overflow")?),
            (x, y) => Int(int(x, "TSDIFF")?.checked_sub(int(y, "TSDIFF")?).ok_or("integer overflow")?),
        },
        Func::UnixTimestamp => match &a[0] {
            Ts(ms) => Int(*ms),
            other => return Err(format!("UNIX_TIMESTAMP needs a TIMESTAMP, not {}", other.to_text())),
        },
        Func::ToTimestamp => Ts(int(&a[0], "TO_TIMESTAMP")?),
    })
}

/// Parses text by a Java date pattern's fields (CHAR_TO_TIMESTAMP).
pub fn parse_with(fields: &[Field], s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    let (mut y, mut mo, mut d, mut h, mut mi, mut sec, mut ms) = (1970i64, 1i64, 1i64, 0i64, 0i64, 0i64, 0i64);
    let mut pm: Option<bool> = None;
    for f in fields {
        match f {
            Field::Literal(l) => {
                if !s.get(i..)?.starts_with(l.as_str()) {
                    return None;
                }
                i += l.len();
            }
            Field::Letter(c, n) => {
                if *c == 'a' {
                    let rest = s.get(i..)?.to_ascii_uppercase();
                    pm = Some(rest.starts_with("PM"));
                    if !rest.starts_with("AM") && !rest.starts_with("PM") {
                        return None;
                    }
                    i += 2;
                    continue;
                }
                if *c == 'M' && *n >= 3 {
                    let rest = s.get(i..)?;
                    let (idx, name) = crate::firehose::prefix::MONTHS.iter().enumerate().find_map(|(k, m)| {
                        let name = if *n == 3 { &m[..3] } else { m };
                        rest.get(..name.len()).filter(|r| r.eq_ignore_ascii_case(name)).map(|_| (k, name))
                    })?;
                    mo = idx as i64 + 1;
                    i += name.len();
                    continue;
                }
                // Numbers: exactly n digits when the next field is a letter, else as many as there are.
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() && (i - start < 9) {
                    i += 1;
                }
                if i == start {
                    return None;
                }
                let v: i64 = s[start..i].parse().ok()?;
                match c {
                    'y' | 'u' => y = if *n == 2 { 2000 + v } else { v },
                    'M' | 'L' => mo = v,
                    'd' => d = v,
                    'H' | 'k' => h = v % 24,
                    'h' => h = v % 12,
                    'm' => mi = v,
                    's' => sec = v,
                    'S' => {
                        let digits = (i - start) as u32;
                        ms = if digits >= 3 { v / 10i64.pow(digits - 3) } else { v * 10i64.pow(3 - digits) };
                    }
                    _ => {}
                }
            }
        }
    }
    if i != b.len() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || mi > 59 || sec > 60 {
        return None;
    }
    if pm == Some(true) {
        h += 12;
    }
    Some((crate::time::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec) * 1000 + ms)
}

/// A TIMESTAMP literal's text as printed (for messages).
pub fn show_ts(ms: i64) -> String {
    format_timestamp(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(v: Value) -> Box<Expr> {
        Box::new(Expr::Lit(v))
    }

    #[test]
    fn arithmetic_logic_and_functions() {
        let cx = Cx::row(&[], 0);
        let e = Expr::Bin(BinOp::Div, lit(Value::Int(7)), lit(Value::Int(2)));
        assert_eq!(e.eval(&cx).unwrap(), Value::Int(3), "integer division truncates");
        let e = Expr::Bin(BinOp::Div, lit(Value::Int(7)), lit(Value::Int(0)));
        assert_eq!(e.eval(&cx).unwrap_err(), "division by zero");
        let e = Expr::Bin(BinOp::And, lit(Value::Null), lit(Value::Bool(false)));
        assert_eq!(e.eval(&cx).unwrap(), Value::Bool(false));
        let e = Expr::Bin(BinOp::Or, lit(Value::Null), lit(Value::Bool(false)));
        assert_eq!(e.eval(&cx).unwrap(), Value::Null);
        assert!(like("sensor-42", "sensor%2"));
        assert!(like("abc", "a_c"));
        assert!(!like("abd", "a_c"));
        let sub = call(Func::Substring, vec![Value::Str("hello".into()), Value::Int(2), Value::Int(3)]).unwrap();
        assert_eq!(sub, Value::Str("ell".into()));
        let fields = parse_pattern("yyyy-MM-dd HH:mm:ss").unwrap();
        assert_eq!(parse_with(&fields, "2024-01-02 03:04:05"), Some(1_704_164_645_000));
        assert_eq!(parse_with(&fields, "2024-01-02"), None);
        let ts = call(Func::TimestampToChar, vec![Value::Str("yyyy/MM/dd HH".into()), Value::Ts(1_704_164_645_678)]);
        assert_eq!(ts.unwrap(), Value::Str("2024/01/02 03".into()));
        assert_eq!(floor_to(1_704_164_645_678, Unit::Month), 1_704_067_200_000);
        assert_eq!(add_units(1_704_067_200_000, Unit::Month, 12), 1_735_689_600_000);
    }
}
