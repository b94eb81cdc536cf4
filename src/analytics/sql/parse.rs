//! The SQL front end: KDA's dialect read with `sqlparser`, after a pass over the tokens that
//! rewrites what sqlparser does not know into what it does.
//!
//! - `SELECT STREAM`: the `STREAM` is dropped (sqlparser would read it as a column).
//! - `STEP(e BY INTERVAL ...)`: the `BY` becomes a comma, so STEP parses as a call.
//! - `CURSOR(query)`: the `CURSOR` is dropped, leaving a subquery.
//! - `WINDOWED BY STAGGER (PARTITION BY k, ... RANGE INTERVAL ...)` becomes
//!   `GROUP BY STAGGER(INTERVAL ...), k, ...`, which the compiler recognises.
//! - `CREATE [OR REPLACE] STREAM` is parsed as CREATE TABLE; `CREATE [OR REPLACE] PUMP p AS`
//!   is taken off and the INSERT after it parsed on its own.
//!
//! Tokens keep their places in the code, so every error names a line and a column.

use sqlparser::ast;
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer, Word};

use super::value::SqlType;

/// A compile error, with where it is in the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl SqlError {
    pub fn at(loc: Location, message: impl Into<String>) -> SqlError {
        SqlError { line: loc.line, column: loc.column, message: message.into() }
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SQL error at line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// Operators (and AND/OR) one statement may hold: expressions are evaluated recursively.
pub const OPERATORS_PER_STATEMENT_MAX: usize = 2000;

/// One statement of application code.
#[derive(Debug, Clone)]
pub enum Statement {
    CreateStream { name: String, columns: Vec<(String, SqlType)>, at: Location },
    CreatePump { name: String, target: String, columns: Vec<String>, query: Box<ast::Query>, at: Location },
}

/// An identifier as stored: unquoted ones upper-cased, quoted ones as written.
pub fn norm(id: &ast::Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_uppercase()
    }
}

fn object_name(name: &ast::ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [part] => part.as_ident().map(norm),
        _ => None,
    }
}

/// Table functions and analytics Sluice does not run (yet); refused with a clear message.
const UNSUPPORTED: &[&str] = &[
    "RANDOM_CUT_FOREST",
    "RANDOM_CUT_FOREST_WITH_EXPLANATION",
    "HOTSPOTS",
    "TOP_K_ITEMS_TUMBLING",
    "COUNT_DISTINCT_ITEMS_TUMBLING",
];

fn is_word(t: &Token, text: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
}

fn word(text: &str, span: Span) -> TokenWithSpan {
    TokenWithSpan { token: Token::make_word(text, None), span }
}

/// Parses application code into its statements.
pub fn parse(code: &str) -> Result<Vec<Statement>, SqlError> {
    let dialect = GenericDialect {};
    let tokens =
        Tokenizer::new(&dialect, code).tokenize_with_location().map_err(|e| SqlError::at(e.location, e.message))?;
    let tokens: Vec<TokenWithSpan> = tokens.into_iter().filter(|t| !matches!(t.token, Token::Whitespace(_))).collect();
    for t in &tokens {
        if let Some(name) = UNSUPPORTED.iter().find(|n| is_word(&t.token, n)) {
            return Err(SqlError::at(
                t.span.start,
                format!("{name} is not supported by this server; the application cannot use it."),
            ));
        }
    }
    // Statements end at `;` outside parentheses.
    let mut statements = Vec::new();
    let mut current = Vec::new();
    let mut depth = 0i32;
    for t in tokens {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => {
                if !current.is_empty() {
                    statements.push(std::mem::take(&mut current));
                }
                depth = 0;
                continue;
            }
            _ => {}
        }
        current.push(t);
    }
    if !current.is_empty() {
        statements.push(current);
    }
    statements.into_iter().map(|s| statement(&dialect, s)).collect()
}

fn statement(dialect: &GenericDialect, tokens: Vec<TokenWithSpan>) -> Result<Statement, SqlError> {
    let at = tokens[0].span.start;
    let operators = tokens
        .iter()
        .filter(|t| {
            matches!(
                t.token,
                Token::Plus
                    | Token::Minus
                    | Token::Mul
                    | Token::Div
                    | Token::Mod
                    | Token::StringConcat
                    | Token::Eq
                    | Token::Neq
                    | Token::Lt
                    | Token::Gt
                    | Token::LtEq
                    | Token::GtEq
            ) || is_word(&t.token, "AND")
                || is_word(&t.token, "OR")
        })
        .count();
    if operators > OPERATORS_PER_STATEMENT_MAX {
        return Err(SqlError::at(
            at,
            format!("The statement has {operators} operators; at most {OPERATORS_PER_STATEMENT_MAX} are allowed."),
        ));
    }
    let tokens = rewrite(tokens)?;
    let mut i = 0;
    if !is_word(&tokens[0].token, "CREATE") {
        return Err(SqlError::at(
            at,
            "Only CREATE [OR REPLACE] STREAM and CREATE [OR REPLACE] PUMP statements are allowed.",
        ));
    }
    i += 1;
    if tokens.get(i).is_some_and(|t| is_word(&t.token, "OR"))
        && tokens.get(i + 1).is_some_and(|t| is_word(&t.token, "REPLACE"))
    {
        i += 2;
    }
    let kind = tokens.get(i).ok_or_else(|| SqlError::at(at, "CREATE must be followed by STREAM or PUMP."))?;
    if is_word(&kind.token, "STREAM") {
        let mut tokens = tokens;
        let span = tokens[i].span;
        tokens[i] = word("TABLE", span);
        let stmt = parse_one(dialect, tokens, at)?;
        let ast::Statement::CreateTable(ct) = stmt else {
            return Err(SqlError::at(at, "CREATE STREAM could not be read."));
        };
        let name = object_name(&ct.name).ok_or_else(|| SqlError::at(at, "A stream's name must be one identifier."))?;
        if ct.columns.is_empty() {
            return Err(SqlError::at(at, format!("The stream {name} must have at least one column.")));
        }
        let mut columns = Vec::with_capacity(ct.columns.len());
        for c in &ct.columns {
            let col = norm(&c.name);
            let ty = SqlType::parse(&c.data_type.to_string()).map_err(|e| SqlError::at(c.name.span.start, e))?;
            if columns.iter().any(|(n, _)| *n == col) {
                return Err(SqlError::at(c.name.span.start, format!("The column {col} is declared twice.")));
            }
            if col == "ROWTIME" {
                return Err(SqlError::at(c.name.span.start, "ROWTIME is a system column and cannot be declared."));
            }
            columns.push((col, ty));
        }
        return Ok(Statement::CreateStream { name, columns, at });
    }
    if !is_word(&kind.token, "PUMP") {
        return Err(SqlError::at(kind.span.start, "CREATE must be followed by STREAM or PUMP."));
    }
    let name_token = tokens.get(i + 1).ok_or_else(|| SqlError::at(kind.span.end, "The pump needs a name."))?;
    let name = match &name_token.token {
        Token::Word(w) => {
            norm(&ast::Ident { value: w.value.clone(), quote_style: w.quote_style, span: name_token.span })
        }
        _ => return Err(SqlError::at(name_token.span.start, "The pump needs a name.")),
    };
    match tokens.get(i + 2) {
        Some(t) if is_word(&t.token, "AS") => {}
        Some(t) => {
            return Err(SqlError::at(t.span.start, format!("Expected AS after the pump's name, found {}.", t.token)))
        }
        None => return Err(SqlError::at(name_token.span.end, "Expected AS after the pump's name.")),
    }
    let body: Vec<TokenWithSpan> = tokens[i + 3..].to_vec();
    let body_at = body.first().map_or(at, |t| t.span.start);
    if !body.first().is_some_and(|t| is_word(&t.token, "INSERT")) {
        return Err(SqlError::at(body_at, "A pump must be AS INSERT INTO a stream SELECT ...."));
    }
    let stmt = parse_one(dialect, body, body_at)?;
    let ast::Statement::Insert(insert) = stmt else {
        return Err(SqlError::at(body_at, "A pump must be AS INSERT INTO a stream SELECT ...."));
    };
    let target = match &insert.table {
        ast::TableObject::TableName(n) => object_name(n),
        _ => None,
    }
    .ok_or_else(|| SqlError::at(body_at, "A pump inserts into one in-application stream, named by one identifier."))?;
    let query = insert.source.clone().ok_or_else(|| SqlError::at(body_at, "A pump's INSERT needs a SELECT."))?;
    let columns = insert.columns.iter().filter_map(object_name).collect();
    Ok(Statement::CreatePump { name, target, columns, query, at })
}

fn parse_one(dialect: &GenericDialect, tokens: Vec<TokenWithSpan>, at: Location) -> Result<ast::Statement, SqlError> {
    let mut p = Parser::new(dialect).with_tokens_with_locations(tokens);
    let stmt = p.parse_statement().map_err(|e| parser_error(e, at))?;
    let next = p.peek_token();
    if next.token != Token::EOF {
        return Err(SqlError::at(
            next.span.start,
            format!("Unexpected {} after the end of the statement.", next.token),
        ));
    }
    Ok(stmt)
}

/// A sqlparser error, with the line and column it names taken out of its text.
fn parser_error(e: ParserError, at: Location) -> SqlError {
    let text = match e {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
        ParserError::RecursionLimitExceeded => return SqlError::at(at, "The statement is nested too deeply."),
    };
    if let Some(i) = text.rfind(" at Line: ") {
        let rest = &text[i + " at Line: ".len()..];
        if let Some((line, col)) = rest.split_once(", Column: ") {
            if let (Ok(line), Ok(column)) = (line.trim().parse(), col.trim().parse()) {
                return SqlError { line, column, message: text[..i].to_owned() };
            }
        }
    }
    SqlError::at(at, text)
}

/// The token pass: KDA's forms into ones sqlparser reads.
fn rewrite(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>, SqlError> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    // Open STEP( calls: the depth of their parenthesis, and whether their BY was seen.
    let mut steps: Vec<(i32, bool)> = Vec::new();
    let mut depth = 0i32;
    while i < tokens.len() {
        let t = &tokens[i];
        let next = tokens.get(i + 1).map(|n| &n.token);
        // SELECT STREAM: drop STREAM.
        if matches!(&t.token, Token::Word(Word { keyword: Keyword::SELECT, quote_style: None, .. }))
            && next.is_some_and(|n| is_word(n, "STREAM"))
        {
            out.push(t.clone());
            i += 2;
            continue;
        }
        // CURSOR(: drop CURSOR.
        if is_word(&t.token, "CURSOR") && next == Some(&Token::LParen) {
            i += 1;
            continue;
        }
        // WINDOWED BY STAGGER ( PARTITION BY keys RANGE interval ).
        if is_word(&t.token, "WINDOWED") && next.is_some_and(|n| is_word(n, "BY")) {
            let (rewritten, used) = stagger(&tokens[i..])?;
            out.extend(rewritten);
            i += used;
            continue;
        }
        match &t.token {
            Token::LParen => {
                depth += 1;
                if out.last().is_some_and(|p| is_word(&p.token, "STEP")) {
                    steps.push((depth, false));
                }
            }
            Token::RParen => {
                if steps.last().is_some_and(|s| s.0 == depth) {
                    steps.pop();
                }
                depth -= 1;
            }
            Token::Word(_) if is_word(&t.token, "BY") => {
                if let Some(s) = steps.last_mut() {
                    if s.0 == depth && !s.1 {
                        s.1 = true;
                        out.push(TokenWithSpan { token: Token::Comma, span: t.span });
                        i += 1;
                        continue;
                    }
                }
            }
            _ => {}
        }
        out.push(t.clone());
        i += 1;
    }
    Ok(out)
}

/// `WINDOWED BY STAGGER ( PARTITION BY k, ... RANGE INTERVAL 'n' unit )` as
/// `GROUP BY STAGGER ( INTERVAL 'n' unit ) , k, ...`; returns the tokens and how many it read.
fn stagger(t: &[TokenWithSpan]) -> Result<(Vec<TokenWithSpan>, usize), SqlError> {
    let start = t[0].span;
    let expect = |i: usize, what: &str| -> Result<(), SqlError> {
        match t.get(i) {
            Some(x) if is_word(&x.token, what) || (what == "(" && x.token == Token::LParen) => Ok(()),
            Some(x) => {
                Err(SqlError::at(x.span.start, format!("Expected {what} in WINDOWED BY STAGGER, found {}.", x.token)))
            }
            None => Err(SqlError::at(start.start, format!("Expected {what} in WINDOWED BY STAGGER."))),
        }
    };
    expect(2, "STAGGER")?;
    expect(3, "(")?;
    expect(4, "PARTITION")?;
    expect(5, "BY")?;
    let mut depth = 0;
    let mut i = 6;
    let mut keys = Vec::new();
    let mut range = None;
    while i < t.len() {
        match &t[i].token {
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => break,
            Token::RParen => depth -= 1,
            tok if depth == 0 && is_word(tok, "RANGE") && range.is_none() => {
                range = Some(Vec::new());
                i += 1;
                continue;
            }
            _ => {}
        }
        match &mut range {
            Some(r) => r.push(t[i].clone()),
            None => keys.push(t[i].clone()),
        }
        i += 1;
    }
    if i >= t.len() {
        return Err(SqlError::at(start.start, "WINDOWED BY STAGGER ( is not closed."));
    }
    let range = range.filter(|r| !r.is_empty()).ok_or_else(|| {
        SqlError::at(start.start, "WINDOWED BY STAGGER needs RANGE INTERVAL '...' after its PARTITION BY.")
    })?;
    if keys.is_empty() {
        return Err(SqlError::at(start.start, "WINDOWED BY STAGGER needs PARTITION BY columns."));
    }
    let mut out = vec![word("GROUP", start), word("BY", start), word("STAGGER", t[2].span)];
    out.push(TokenWithSpan { token: Token::LParen, span: t[3].span });
    out.extend(range);
    out.push(TokenWithSpan { token: Token::RParen, span: t[i].span });
    out.push(TokenWithSpan { token: Token::Comma, span: t[i].span });
    out.extend(keys);
    Ok((out, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kda_forms_parse() {
        let code = r#"
            CREATE OR REPLACE STREAM "out" (sensor_id VARCHAR(16), "avg" DOUBLE, w TIMESTAMP);
            CREATE OR REPLACE PUMP "p" AS INSERT INTO "out"
              SELECT STREAM sensor_id, AVG(t), STEP("s".ROWTIME BY INTERVAL '5' MINUTE)
              FROM "s" GROUP BY sensor_id, STEP("s".ROWTIME BY INTERVAL '5' MINUTE);
            CREATE PUMP p2 AS INSERT INTO "o2" SELECT STREAM * FROM "s" WINDOWED BY STAGGER (
              PARTITION BY sensor_id RANGE INTERVAL '1' MINUTE);
        "#;
        let stmts = parse(code).unwrap();
        assert_eq!(stmts.len(), 3);
        match &stmts[0] {
            Statement::CreateStream { name, columns, .. } => {
                assert_eq!(name, "out");
                assert_eq!(columns[0], ("SENSOR_ID".to_owned(), SqlType::Varchar(16)));
                assert_eq!(columns[1].0, "avg", "quoted names keep their case");
            }
            other => panic!("{other:?}"),
        }
        match &stmts[1] {
            Statement::CreatePump { name, target, query, .. } => {
                assert_eq!((name.as_str(), target.as_str()), ("p", "out"));
                let text = query.to_string();
                assert!(
                    text.starts_with("SELECT sensor_id, AVG(t), STEP(\"s\".ROWTIME, INTERVAL '5' MINUTE)"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        match &stmts[2] {
            Statement::CreatePump { name, query, .. } => {
                assert_eq!(name, "P2");
                assert!(query.to_string().contains("GROUP BY STAGGER(INTERVAL '1' MINUTE), sensor_id"), "{query}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("CREATE STREAM s (a INTEGER);\nCREATE PUMP p AS INSERT INTO s SELECT STREAM a FROM WHERE")
            .unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("DROP STREAM s").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        let e = parse("CREATE PUMP p AS INSERT INTO o SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM s)))")
            .unwrap_err();
        assert!(e.message.contains("RANDOM_CUT_FOREST is not supported"), "{e}");
        let e = parse("CREATE STREAM s (a BLOB)").unwrap_err();
        assert!(e.message.contains("not supported"), "{e}");
        let deep = format!("CREATE PUMP p AS INSERT INTO o SELECT STREAM {} FROM s", "1+".repeat(5000) + "1");
        assert!(parse(&deep).unwrap_err().message.contains("operators"));
    }
}
