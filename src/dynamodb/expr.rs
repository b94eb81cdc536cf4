//! DynamoDB condition, filter and update expressions: a parser and an evaluator. Pure: strings and
//! items in, a verdict or a new item out.
//!
//! Conditions: comparisons (`=`, `<>`, `<`, `<=`, `>`, `>=`), `BETWEEN … AND …`, `IN (…)`,
//! `attribute_exists`, `attribute_not_exists`, `attribute_type`, `begins_with`, `contains`,
//! `size`, with `AND`, `OR`, `NOT` and parentheses. Updates: `SET` (values, `+`/`-` on numbers,
//! `if_not_exists`, `list_append`), `REMOVE`, `ADD` (numbers and sets), `DELETE` (from sets).
//! Paths are names, `#placeholders`, `a.b` and `a[0]`; values are `:placeholders`.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::value::{compare, number_add, set_members, type_of, Item};

/// A parse or evaluation error, in DynamoDB's words where it has them.
pub type ExprError = String;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Placeholder(String),
    Value(String),
    Num(usize),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

fn lex(text: &str) -> Result<Vec<Tok>, ExprError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '.' => {
                out.push(Tok::Dot);
                i += 1
            }
            '=' => {
                out.push(Tok::Op("="));
                i += 1
            }
            '+' => {
                out.push(Tok::Op("+"));
                i += 1
            }
            '-' => {
                out.push(Tok::Op("-"));
                i += 1
            }
            '<' | '>' => {
                let two = b.get(i + 1).copied();
                let op = match (c, two) {
                    ('<', Some(b'=')) => "<=",
                    ('<', Some(b'>')) => "<>",
                    ('>', Some(b'=')) => ">=",
                    ('<', _) => "<",
                    _ => ">",
                };
                out.push(Tok::Op(op));
                i += op.len();
            }
            '#' | ':' => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if i == start + 1 {
                    return Err(format!("a placeholder has no name near char {start}"));
                }
                let name = text[start..i].to_owned();
                out.push(if c == '#' { Tok::Placeholder(name) } else { Tok::Value(name) });
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n = text[start..i].parse().map_err(|_| "list index too large".to_owned())?;
                out.push(Tok::Num(n));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Tok::Name(text[start..i].to_owned()));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(out)
}

/// DynamoDB's words for a token it did not expect.
fn syntax(t: Option<&Tok>) -> ExprError {
    let token = match t {
        None => "<EOF>".to_owned(),
        Some(Tok::Name(n) | Tok::Placeholder(n) | Tok::Value(n)) => n.clone(),
        Some(Tok::Num(n)) => n.to_string(),
        Some(Tok::Op(o)) => (*o).to_owned(),
        Some(Tok::LParen) => "(".into(),
        Some(Tok::RParen) => ")".into(),
        Some(Tok::LBracket) => "[".into(),
        Some(Tok::RBracket) => "]".into(),
        Some(Tok::Comma) => ",".into(),
        Some(Tok::Dot) => ".".into(),
    };
    format!("Syntax error; token: \"{token}\"")
}

/// A path into an item: attribute names and list indexes.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Attr(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Path(Vec<Step>),
    Value(Value),
    Size(Vec<Step>),
    IfNotExists(Vec<Step>, Box<Operand>),
    ListAppend(Box<Operand>, Box<Operand>),
    Plus(Box<Operand>, Box<Operand>),
    Minus(Box<Operand>, Box<Operand>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Cmp(&'static str, Operand, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    Exists(Vec<Step>),
    NotExists(Vec<Step>),
    Type(Vec<Step>, Operand),
    BeginsWith(Operand, Operand),
    Contains(Operand, Operand),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    pub set: Vec<(Vec<Step>, Operand)>,
    pub remove: Vec<Vec<Step>>,
    pub add: Vec<(Vec<Step>, Operand)>,
    pub delete: Vec<(Vec<Step>, Operand)>,
}

/// Placeholders of a request: `ExpressionAttributeNames` and `ExpressionAttributeValues`.
pub struct Placeholders<'a> {
    pub names: Option<&'a Map<String, Value>>,
    pub values: Option<&'a Map<String, Value>>,
}

struct Parser<'a> {
    toks: Vec<Tok>,
    at: usize,
    ph: &'a Placeholders<'a>,
}

fn is_kw(t: Option<&Tok>, kw: &str) -> bool {
    matches!(t, Some(Tok::Name(n)) if n.eq_ignore_ascii_case(kw))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expect(&mut self, t: Tok) -> Result<(), ExprError> {
        match self.next() {
            Some(ref got) if *got == t => Ok(()),
            got => Err(syntax(got.as_ref())),
        }
    }

    fn done(&self) -> Result<(), ExprError> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(syntax(Some(t))),
        }
    }

    fn path(&mut self) -> Result<Vec<Step>, ExprError> {
        let mut steps = vec![Step::Attr(self.name()?)];
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.at += 1;
                    steps.push(Step::Attr(self.name()?));
                }
                Some(Tok::LBracket) => {
                    self.at += 1;
                    match self.next() {
                        Some(Tok::Num(n)) => steps.push(Step::Index(n)),
                        other => return Err(format!("expected a list index, found {other:?}")),
                    }
                    self.expect(Tok::RBracket)?;
                }
                _ => return Ok(steps),
            }
        }
    }

    fn name(&mut self) -> Result<String, ExprError> {
        match self.next() {
            Some(Tok::Name(n)) => Ok(n),
            Some(Tok::Placeholder(p)) => match self.ph.names.and_then(|m| m.get(&p)).and_then(Value::as_str) {
                Some(n) => Ok(n.to_owned()),
                None => Err(format!(
                    "An expression attribute name used in the document path is not defined; attribute name: {p}"
                )),
            },
            other => Err(syntax(other.as_ref())),
        }
    }

    fn value(&self, p: &str) -> Result<Value, ExprError> {
        self.ph.values.and_then(|m| m.get(p)).cloned().ok_or_else(|| {
            format!("An expression attribute value used in expression is not defined; attribute value: {p}")
        })
    }

    fn operand(&mut self) -> Result<Operand, ExprError> {
        let first = self.atom()?;
        match self.peek() {
            Some(Tok::Op("+")) => {
                self.at += 1;
                Ok(Operand::Plus(Box::new(first), Box::new(self.atom()?)))
            }
            Some(Tok::Op("-")) => {
                self.at += 1;
                Ok(Operand::Minus(Box::new(first), Box::new(self.atom()?)))
            }
            _ => Ok(first),
        }
    }

    fn atom(&mut self) -> Result<Operand, ExprError> {
        match self.peek().cloned() {
            Some(Tok::Value(v)) => {
                self.at += 1;
                Ok(Operand::Value(self.value(&v)?))
            }
            Some(Tok::Name(n)) if self.toks.get(self.at + 1) == Some(&Tok::LParen) => {
                self.at += 2;
                let op = match n.as_str() {
                    "size" => Operand::Size(self.path()?),
                    "if_not_exists" => {
                        let p = self.path()?;
                        self.expect(Tok::Comma)?;
                        Operand::IfNotExists(p, Box::new(self.operand()?))
                    }
                    "list_append" => {
                        let a = self.operand()?;
                        self.expect(Tok::Comma)?;
                        Operand::ListAppend(Box::new(a), Box::new(self.operand()?))
                    }
                    other => return Err(format!("unknown function {other}")),
                };
                self.expect(Tok::RParen)?;
                Ok(op)
            }
            _ => Ok(Operand::Path(self.path()?)),
        }
    }

    fn condition(&mut self) -> Result<Cond, ExprError> {
        let mut left = self.and()?;
        while is_kw(self.peek(), "OR") {
            self.at += 1;
            left = Cond::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cond, ExprError> {
        let mut left = self.not()?;
        while is_kw(self.peek(), "AND") {
            self.at += 1;
            left = Cond::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Cond, ExprError> {
        if is_kw(self.peek(), "NOT") {
            self.at += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Cond, ExprError> {
        if self.peek() == Some(&Tok::LParen) {
            self.at += 1;
            let c = self.condition()?;
            self.expect(Tok::RParen)?;
            return Ok(c);
        }
        if let Some(Tok::Name(n)) = self.peek().cloned() {
            if self.toks.get(self.at + 1) == Some(&Tok::LParen) && n != "size" {
                self.at += 2;
                let c = match n.as_str() {
                    "attribute_exists" => Cond::Exists(self.path()?),
                    "attribute_not_exists" => Cond::NotExists(self.path()?),
                    "attribute_type" => {
                        let p = self.path()?;
                        self.expect(Tok::Comma)?;
                        Cond::Type(p, self.operand()?)
                    }
                    "begins_with" | "contains" => {
                        let a = self.operand()?;
                        self.expect(Tok::Comma)?;
                        let b = self.operand()?;
                        if n == "contains" {
                            Cond::Contains(a, b)
                        } else {
                            Cond::BeginsWith(a, b)
                        }
                    }
                    other => return Err(format!("unknown function {other}")),
                };
                self.expect(Tok::RParen)?;
                return Ok(c);
            }
        }
        let left = self.operand()?;
        match self.next() {
            Some(Tok::Op(op)) if ["=", "<>", "<", "<=", ">", ">="].contains(&op) => {
                Ok(Cond::Cmp(op, left, self.operand()?))
            }
            Some(Tok::Name(k)) if k.eq_ignore_ascii_case("BETWEEN") => {
                let lo = self.operand()?;
                if !is_kw(self.next().as_ref(), "AND") {
                    return Err("BETWEEN needs AND".into());
                }
                Ok(Cond::Between(left, lo, self.operand()?))
            }
            Some(Tok::Name(k)) if k.eq_ignore_ascii_case("IN") => {
                self.expect(Tok::LParen)?;
                let mut list = vec![self.operand()?];
                while self.peek() == Some(&Tok::Comma) {
                    self.at += 1;
                    list.push(self.operand()?);
                }
                self.expect(Tok::RParen)?;
                Ok(Cond::In(left, list))
            }
            other => Err(syntax(other.as_ref())),
        }
    }
}

/// Parses a condition (or filter) expression.
pub fn parse_condition(text: &str, ph: &Placeholders) -> Result<Cond, ExprError> {
    let mut p = Parser { toks: lex(text)?, at: 0, ph };
    if p.toks.is_empty() {
        return Err("Invalid ConditionExpression: The expression can not be empty;".into());
    }
    let c = p.condition()?;
    p.done()?;
    Ok(c)
}

/// Parses an update expression.
pub fn parse_update(text: &str, ph: &Placeholders) -> Result<Update, ExprError> {
    let mut p = Parser { toks: lex(text)?, at: 0, ph };
    let mut u = Update::default();
    if p.toks.is_empty() {
        return Err("Invalid UpdateExpression: The expression can not be empty;".into());
    }
    while let Some(t) = p.next() {
        let Tok::Name(kw) = t else { return Err(format!("Invalid UpdateExpression: unexpected token {t:?}")) };
        let kw = kw.to_ascii_uppercase();
        loop {
            match kw.as_str() {
                "SET" => {
                    let path = p.path()?;
                    p.expect(Tok::Op("="))?;
                    u.set.push((path, p.operand()?));
                }
                "REMOVE" => u.remove.push(p.path()?),
                "ADD" => {
                    let path = p.path()?;
                    u.add.push((path, p.atom()?));
                }
                "DELETE" => {
                    let path = p.path()?;
                    u.delete.push((path, p.atom()?));
                }
                other => return Err(format!("Invalid UpdateExpression: Syntax error; token: \"{other}\"")),
            }
            if p.peek() == Some(&Tok::Comma) {
                p.at += 1;
                continue;
            }
            break;
        }
    }
    Ok(u)
}

/// The value at `path` in `item`.
pub fn get<'v>(item: &'v Item, path: &[Step]) -> Option<&'v Value> {
    let mut cur: Option<&Value> = None;
    for (i, step) in path.iter().enumerate() {
        cur = match (i, step, cur) {
            (0, Step::Attr(a), _) => item.get(a),
            (_, Step::Attr(a), Some(v)) => v.get("M").and_then(|m| m.get(a)),
            (_, Step::Index(n), Some(v)) => v.get("L").and_then(|l| l.get(*n)),
            _ => None,
        };
        cur?;
    }
    cur
}

fn eval(op: &Operand, item: &Item) -> Result<Option<Value>, ExprError> {
    Ok(match op {
        Operand::Path(p) => get(item, p).cloned(),
        Operand::Value(v) => Some(v.clone()),
        Operand::Size(p) => get(item, p).and_then(super::value::size).map(|n| serde_json::json!({"N": n.to_string()})),
        Operand::IfNotExists(p, v) => match get(item, p) {
            Some(x) => Some(x.clone()),
            None => eval(v, item)?,
        },
        Operand::ListAppend(a, b) => {
            let (a, b) = (eval(a, item)?, eval(b, item)?);
            let list = |v: &Option<Value>| v.as_ref().and_then(|v| v.get("L")).and_then(Value::as_array).cloned();
            match (list(&a), list(&b)) {
                (Some(mut x), Some(y)) => {
                    x.extend(y);
                    Some(serde_json::json!({ "L": x }))
                }
                _ => return Err("Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: not a list".into()),
            }
        }
        Operand::Plus(a, b) | Operand::Minus(a, b) => {
            let (a, b) = (eval(a, item)?, eval(b, item)?);
            let n = |v: &Option<Value>| v.as_ref().and_then(|v| v.get("N")).and_then(Value::as_str).map(str::to_owned);
            match (n(&a), n(&b)) {
                (Some(x), Some(y)) => {
                    let y = if matches!(op, Operand::Minus(..)) { negate(&y) } else { y };
                    Some(serde_json::json!({"N": number_add(&x, &y)?}))
                }
                _ => {
                    return Err(
                        "Invalid UpdateExpression: An operand in the update expression has an incorrect data type"
                            .into(),
                    )
                }
            }
        }
    })
}

fn negate(n: &str) -> String {
    match n.strip_prefix('-') {
        Some(p) => p.to_owned(),
        None => format!("-{n}"),
    }
}

/// Whether `cond` holds for `item` (an absent item is the empty item).
pub fn holds(cond: &Cond, item: &Item) -> Result<bool, ExprError> {
    let cmp = |a: &Option<Value>, b: &Option<Value>| match (a, b) {
        (Some(a), Some(b)) => compare(a, b),
        _ => None,
    };
    Ok(match cond {
        Cond::Cmp(op, a, b) => {
            let (a, b) = (eval(a, item)?, eval(b, item)?);
            match *op {
                "=" => a.is_some() && cmp(&a, &b) == Some(Ordering::Equal),
                "<>" => a.is_none() || b.is_none() || cmp(&a, &b) != Some(Ordering::Equal),
                "<" => cmp(&a, &b) == Some(Ordering::Less),
                "<=" => matches!(cmp(&a, &b), Some(Ordering::Less | Ordering::Equal)),
                ">" => cmp(&a, &b) == Some(Ordering::Greater),
                _ => matches!(cmp(&a, &b), Some(Ordering::Greater | Ordering::Equal)),
            }
        }
        Cond::Between(a, lo, hi) => {
            let (a, lo, hi) = (eval(a, item)?, eval(lo, item)?, eval(hi, item)?);
            matches!(cmp(&a, &lo), Some(Ordering::Greater | Ordering::Equal))
                && matches!(cmp(&a, &hi), Some(Ordering::Less | Ordering::Equal))
        }
        Cond::In(a, list) => {
            let a = eval(a, item)?;
            let mut any = false;
            for o in list {
                if cmp(&a, &eval(o, item)?) == Some(Ordering::Equal) {
                    any = true;
                }
            }
            any
        }
        Cond::Exists(p) => get(item, p).is_some(),
        Cond::NotExists(p) => get(item, p).is_none(),
        Cond::Type(p, t) => {
            let want = eval(t, item)?.and_then(|v| v.get("S").and_then(Value::as_str).map(str::to_owned));
            get(item, p).and_then(type_of).map(str::to_owned) == want
        }
        Cond::BeginsWith(a, b) => match (eval(a, item)?, eval(b, item)?) {
            (Some(a), Some(b)) => match (a.get("S").and_then(Value::as_str), b.get("S").and_then(Value::as_str)) {
                (Some(a), Some(b)) => a.starts_with(b),
                _ => false,
            },
            _ => false,
        },
        Cond::Contains(a, b) => match (eval(a, item)?, eval(b, item)?) {
            (Some(a), Some(b)) => {
                if let (Some(s), Some(sub)) = (a.get("S").and_then(Value::as_str), b.get("S").and_then(Value::as_str)) {
                    s.contains(sub)
                } else if let Some(members) = set_members(&a) {
                    members.iter().any(|m| compare(m, &b) == Some(Ordering::Equal))
                } else if let Some(l) = a.get("L").and_then(Value::as_array) {
                    l.iter().any(|m| compare(m, &b) == Some(Ordering::Equal))
                } else {
                    false
                }
            }
            _ => false,
        },
        Cond::And(a, b) => holds(a, item)? && holds(b, item)?,
        Cond::Or(a, b) => holds(a, item)? || holds(b, item)?,
        Cond::Not(a) => !holds(a, item)?,
    })
}

/// Applies an update expression to `item`.
pub fn apply(update: &Update, item: &mut Item) -> Result<(), ExprError> {
    let before = item.clone();
    for (path, op) in &update.set {
        let v = eval(op, &before)?.ok_or_else(|| {
            "The provided expression refers to an attribute that does not exist in the item".to_owned()
        })?;
        put(item, path, v)?;
    }
    for path in &update.remove {
        remove(item, path);
    }
    for (path, op) in &update.add {
        let v = eval(op, &before)?.ok_or("ADD needs a value")?;
        let merged = super::value::add(get(item, path), &v)?;
        put(item, path, merged)?;
    }
    for (path, op) in &update.delete {
        let v = eval(op, &before)?.ok_or("DELETE needs a value")?;
        if let Some(cur) = get(item, path) {
            match super::value::delete_from_set(cur, &v)? {
                Some(left) => put(item, path, left)?,
                None => remove(item, path),
            }
        }
    }
    Ok(())
}

fn put(item: &mut Item, path: &[Step], v: Value) -> Result<(), ExprError> {
    match path {
        [Step::Attr(a)] => {
            item.insert(a.clone(), v);
            Ok(())
        }
        [Step::Attr(a), rest @ ..] => {
            let slot =
                item.get_mut(a).ok_or("The document path provided in the update expression is invalid for update")?;
            put_in(slot, rest, v)
        }
        _ => Err("The document path provided in the update expression is invalid for update".into()),
    }
}

fn put_in(slot: &mut Value, path: &[Step], v: Value) -> Result<(), ExprError> {
    let invalid = || "The document path provided in the update expression is invalid for update".to_owned();
    match path {
        [] => {
            *slot = v;
            Ok(())
        }
        [Step::Attr(a), rest @ ..] => {
            let m = slot.get_mut("M").and_then(Value::as_object_mut).ok_or_else(invalid)?;
            if rest.is_empty() {
                m.insert(a.clone(), v);
                return Ok(());
            }
            put_in(m.get_mut(a).ok_or_else(invalid)?, rest, v)
        }
        [Step::Index(n), rest @ ..] => {
            let l = slot.get_mut("L").and_then(Value::as_array_mut).ok_or_else(invalid)?;
            if rest.is_empty() {
                if *n < l.len() {
                    l[*n] = v;
                } else {
                    l.push(v);
                }
                return Ok(());
            }
            put_in(l.get_mut(*n).ok_or_else(invalid)?, rest, v)
        }
    }
}

fn remove(item: &mut Item, path: &[Step]) {
    match path {
        [Step::Attr(a)] => {
            item.remove(a);
        }
        [Step::Attr(a), rest @ ..] => {
            if let Some(slot) = item.get_mut(a) {
                remove_in(slot, rest);
            }
        }
        _ => {}
    }
}

fn remove_in(slot: &mut Value, path: &[Step]) {
    match path {
        [Step::Attr(a)] => {
            if let Some(m) = slot.get_mut("M").and_then(Value::as_object_mut) {
                m.remove(a);
            }
        }
        [Step::Index(n)] => {
            if let Some(l) = slot.get_mut("L").and_then(Value::as_array_mut) {
                if *n < l.len() {
                    l.remove(*n);
                }
            }
        }
        [Step::Attr(a), rest @ ..] => {
            if let Some(s) = slot.get_mut("M").and_then(|m| m.get_mut(a)) {
                remove_in(s, rest);
            }
        }
        [Step::Index(n), rest @ ..] => {
            if let Some(s) = slot.get_mut("L").and_then(|l| l.get_mut(*n)) {
                remove_in(s, rest);
            }
        }
        [] => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: Value) -> Item {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn kcl_style_conditions() {
        let names = json!({"#o": "leaseOwner"});
        let values = json!({":c": {"N": "7"}, ":o": {"S": "w1"}, ":one": {"N": "1"}});
        let ph = Placeholders { names: names.as_object(), values: values.as_object() };
        let lease =
            item(json!({"leaseKey": {"S": "shardId-0"}, "leaseCounter": {"N": "7"}, "leaseOwner": {"S": "w1"}}));
        for (text, want) in [
            ("attribute_exists(leaseKey) AND leaseCounter = :c", true),
            ("attribute_not_exists(leaseKey)", false),
            ("(#o = :o OR attribute_not_exists(#o)) AND leaseCounter <> :c", false),
            ("NOT (leaseCounter < :c)", true),
            ("leaseCounter BETWEEN :one AND :c", true),
            ("leaseCounter IN (:one, :c)", true),
            ("begins_with(leaseKey, :o)", false),
            ("size(leaseKey) > :one", true),
        ] {
            let c = parse_condition(text, &ph).unwrap();
            assert_eq!(holds(&c, &lease).unwrap(), want, "{text}");
        }
        assert!(parse_condition("leaseCounter = :missing", &ph).is_err());
        assert!(parse_condition("a = ", &ph).is_err());
        assert!(parse_condition("a = :c extra", &ph).is_err());
    }

    #[test]
    fn updates_set_remove_add_delete() {
        let values = json!({":one": {"N": "1"}, ":w": {"S": "w2"}, ":s": {"SS": ["b"]}, ":l": {"L": [{"S": "z"}]}});
        let ph = Placeholders { names: None, values: values.as_object() };
        let mut it = item(json!({"c": {"N": "41"}, "o": {"S": "w1"}, "tags": {"SS": ["a", "b"]}, "l": {"L": []}}));
        let u = parse_update(
            "SET o = :w, c = c + :one, n = if_not_exists(n, :one), l = list_append(l, :l) REMOVE gone DELETE tags :s ADD k :one",
            &ph,
        )
        .unwrap();
        apply(&u, &mut it).unwrap();
        assert_eq!(
            Value::Object(it),
            json!({"c": {"N": "42"}, "o": {"S": "w2"}, "n": {"N": "1"}, "tags": {"SS": ["a"]}, "l": {"L": [{"S": "z"}]}, "k": {"N": "1"}})
        );
    }
}
