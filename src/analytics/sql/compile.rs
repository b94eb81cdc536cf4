//! Application code compiled into a [`Program`]: its in-application streams and its pumps, each
//! pump a query of one of four shapes ([`Kind`]): row by row (filter and project, with running
//! aggregates for scalar subqueries), tumbling windows (a streaming GROUP BY on a monotonic
//! ROWTIME expression), sliding windows (aggregates OVER a window) and stagger windows.

use std::collections::HashMap;

use sqlparser::ast;
use sqlparser::tokenizer::Location;

use super::expr::{BinOp, Expr, Func, Unit};
use super::parse::{norm, parse, SqlError, Statement};
use super::value::{SqlType, Value};

/// Pumps one application may have.
pub const PUMPS_MAX: usize = 100;
/// In-application streams one application may have.
pub const STREAMS_MAX: usize = 200;
/// The system stream of errors.
pub const ERROR_STREAM: &str = "error_stream";

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
}

#[derive(Debug, Clone)]
pub struct StreamDef {
    pub name: String,
    pub columns: Vec<Column>,
    /// Fed by an application input (index into the application's inputs).
    pub input: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    Count,
    CountStar,
    Sum,
    Avg,
    Min,
    Max,
    FirstValue,
    LastValue,
    VarPop,
    VarSamp,
    StddevPop,
    StddevSamp,
    /// LAG(e, n): the value n rows back in the window (sliding windows only).
    Lag(u32),
}

impl AggFn {
    fn by_name(name: &str) -> Option<AggFn> {
        Some(match name {
            "COUNT" => AggFn::Count,
            "SUM" => AggFn::Sum,
            "AVG" => AggFn::Avg,
            "MIN" => AggFn::Min,
            "MAX" => AggFn::Max,
            "FIRST_VALUE" => AggFn::FirstValue,
            "LAST_VALUE" => AggFn::LastValue,
            "VAR_POP" => AggFn::VarPop,
            // VARIANCE and STDDEV as most SQL engines have them (an extension to KDA).
            "VAR_SAMP" | "VARIANCE" => AggFn::VarSamp,
            "STDDEV_POP" => AggFn::StddevPop,
            "STDDEV_SAMP" | "STDDEV" => AggFn::StddevSamp,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agg {
    pub func: AggFn,
    /// None for COUNT(*).
    pub arg: Option<Expr>,
}

/// A sliding window's frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Rows whose ROWTIME is within this many ms before the current row's.
    Range(i64),
    /// The current row and this many before it.
    Rows(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub partition: Vec<Expr>,
    pub frame: Frame,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// Row by row.
    Map,
    /// GROUP BY with `keys[window]` a STEP or FLOOR of ROWTIME `width` ms wide.
    Tumbling { keys: Vec<Expr>, window: usize, width: i64, aggs: Vec<Agg>, having: Option<Expr> },
    /// Aggregates OVER windows: `aggs[i]` over `windows[i.0]`.
    Sliding { windows: Vec<Window>, aggs: Vec<(usize, Agg)> },
    /// WINDOWED BY STAGGER: each key's window opens at its first row and lasts `range` ms.
    Stagger { keys: Vec<Expr>, range: i64, aggs: Vec<Agg>, having: Option<Expr> },
}

#[derive(Debug, Clone)]
pub struct Pump {
    pub name: String,
    pub source: usize,
    pub target: usize,
    pub kind: Kind,
    pub filter: Option<Expr>,
    /// One expression per target column, in the target's column order.
    pub project: Vec<Expr>,
    /// `expr AS ROWTIME`.
    pub rowtime: Option<Expr>,
    /// Aggregates over every row so far (scalar subqueries over the source stream).
    pub running: Vec<Agg>,
    /// A reference table joined to the stream.
    pub join: Option<Join>,
    pub at: Location,
}

#[derive(Debug, Clone)]
pub struct Program {
    pub streams: Vec<StreamDef>,
    /// Other names of streams: an input's NamePrefix names its `<NamePrefix>_001` stream too
    /// when the code declares no stream of that name (an extension to KDA).
    pub aliases: Vec<(String, usize)>,
    /// Reference tables.
    pub tables: Vec<TableSpec>,
    /// In dependency order: a pump comes after every pump that feeds its source.
    pub pumps: Vec<Pump>,
}

/// A reference data source as the compiler needs it: its table's name and columns.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    pub columns: Vec<Column>,
}

/// A join of a pump's stream with a reference table: each row meets the table's rows for which
/// `on` holds (evaluated on the stream's columns followed by the table's).
#[derive(Debug, Clone)]
pub struct Join {
    pub table: usize,
    pub on: Expr,
    /// LEFT JOIN: a row that meets none goes on with NULLs for the table's columns.
    pub left: bool,
    /// `on` is `stream expression = table column`: the table is looked up by that column.
    pub key: Option<(Expr, usize)>,
}

/// An input as the compiler needs it: its in-application stream's name prefix and columns.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub name_prefix: String,
    pub columns: Vec<Column>,
}

impl Program {
    pub fn stream(&self, name: &str) -> Option<usize> {
        self.streams
            .iter()
            .position(|s| s.name == name)
            .or_else(|| self.aliases.iter().find(|(a, _)| a == name).map(|(_, i)| *i))
    }
}

/// The error stream's columns, as KDA defines them.
pub fn error_columns() -> Vec<Column> {
    let c = |n: &str, ty| Column { name: n.into(), ty };
    vec![
        c("ERROR_TIME", SqlType::Timestamp),
        c("ERROR_LEVEL", SqlType::Varchar(10)),
        c("ERROR_NAME", SqlType::Varchar(32)),
        c("MESSAGE", SqlType::Varchar(4096)),
        c("DATA_ROWTIME", SqlType::Timestamp),
        c("DATA_ROW", SqlType::Varchar(49152)),
        c("PUMP_NAME", SqlType::Varchar(128)),
    ]
}

/// Compiles application code against its inputs. An input's in-application stream is
/// `<NamePrefix>_001`, unless the code declares a stream named exactly the NamePrefix: then that
/// stream is fed, its columns mapped by name (case-insensitively) to the input's columns.
pub fn compile(code: &str, inputs: &[InputSpec], tables: &[TableSpec]) -> Result<Program, SqlError> {
    let statements = parse(code)?;
    let mut prog = Program { streams: Vec::new(), aliases: Vec::new(), tables: tables.to_vec(), pumps: Vec::new() };
    prog.streams.push(StreamDef { name: ERROR_STREAM.into(), columns: error_columns(), input: None });
    let mut declared: HashMap<String, Location> = HashMap::new();
    for s in &statements {
        if let Statement::CreateStream { name, columns, at } = s {
            if name == ERROR_STREAM {
                return Err(SqlError::at(*at, "error_stream is a system stream and cannot be created."));
            }
            let columns: Vec<Column> = columns.iter().map(|(n, t)| Column { name: n.clone(), ty: *t }).collect();
            match prog.stream(name) {
                // CREATE OR REPLACE: the last definition holds.
                Some(i) => prog.streams[i].columns = columns,
                None => prog.streams.push(StreamDef { name: name.clone(), columns, input: None }),
            }
            declared.insert(name.clone(), *at);
        }
    }
    for (n, input) in inputs.iter().enumerate() {
        match prog.stream(&input.name_prefix) {
            Some(i) => {
                for c in &prog.streams[i].columns {
                    if !input.columns.iter().any(|ic| ic.name.eq_ignore_ascii_case(&c.name)) {
                        let at = declared.get(&input.name_prefix).copied().unwrap_or(Location { line: 1, column: 1 });
                        return Err(SqlError::at(
                            at,
                            format!(
                                "The stream {} is fed by the application's input, which has no column {}.",
                                input.name_prefix, c.name
                            ),
                        ));
                    }
                }
                prog.streams[i].input = Some(n);
            }
            None => {
                let name = format!("{}_001", input.name_prefix);
                if prog.stream(&name).is_some() {
                    let at = declared.get(&name).copied().unwrap_or(Location { line: 1, column: 1 });
                    return Err(SqlError::at(
                        at,
                        format!("The stream {name} is the input's stream; it cannot be created."),
                    ));
                }
                prog.streams.push(StreamDef { name, columns: input.columns.clone(), input: Some(n) });
                prog.aliases.push((input.name_prefix.clone(), prog.streams.len() - 1));
            }
        }
    }
    let mut pump_names: HashMap<String, usize> = HashMap::new();
    for s in statements {
        if let Statement::CreatePump { name, target, columns, query, at } = s {
            let pump = compile_pump(&mut prog, &name, &target, &columns, &query, at)?;
            match pump_names.get(&name) {
                Some(&i) => prog.pumps[i] = pump,
                None => {
                    pump_names.insert(name, prog.pumps.len());
                    prog.pumps.push(pump);
                }
            }
            if prog.pumps.len() > PUMPS_MAX {
                return Err(SqlError::at(at, format!("An application may have at most {PUMPS_MAX} pumps.")));
            }
        }
    }
    if prog.streams.len() > STREAMS_MAX {
        return Err(SqlError::at(
            Location { line: 1, column: 1 },
            format!("An application may have at most {STREAMS_MAX} in-application streams."),
        ));
    }
    order_pumps(&mut prog)?;
    Ok(prog)
}

/// Sorts pumps so that each comes after those feeding its source; a cycle is an error.
fn order_pumps(prog: &mut Program) -> Result<(), SqlError> {
    let n = prog.pumps.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&i| {
            !done[i]
                && prog.pumps.iter().enumerate().all(|(j, p)| done[j] || j == i || p.target != prog.pumps[i].source)
        });
        match next {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => {
                let stuck = (0..n).find(|&i| !done[i]).expect("some pump is left");
                let p = &prog.pumps[stuck];
                return Err(SqlError::at(p.at, format!("The pump {} is part of a cycle of pumps.", p.name)));
            }
        }
    }
    let pumps = std::mem::take(&mut prog.pumps);
    let mut slots: Vec<Option<Pump>> = pumps.into_iter().map(Some).collect();
    prog.pumps = order.into_iter().map(|i| slots[i].take().expect("each once")).collect();
    Ok(())
}

fn loc(id: &ast::Ident) -> Location {
    id.span.start
}

/// What a column reference or expression may read, and what compiling it has collected.
struct Scope<'a> {
    /// The source's columns (a joined table's after the stream's).
    stream: &'a StreamDef,
    /// How many of them are the stream's.
    stream_width: usize,
    /// The names a joined table may be qualified by.
    table_qualifiers: Vec<String>,
    /// The names the source may be qualified by (its name, its alias).
    qualifiers: Vec<String>,
    named_windows: HashMap<String, &'a ast::WindowSpec>,
    mode: Mode,
    keys: Vec<Expr>,
    aggs: Vec<Agg>,
    windows: Vec<Window>,
    win_aggs: Vec<(usize, Agg)>,
    running: Vec<Agg>,
    /// Compiling a scalar subquery: its aggregates are running ones.
    in_subquery: bool,
    at: Location,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Per row: no aggregates but windowed ones.
    Row,
    /// The projection or HAVING of a grouped query: keys and aggregates.
    Grouped,
    /// The WHERE of a row query: scalar subqueries allowed.
    Filter,
}

fn compile_pump(
    prog: &mut Program,
    name: &str,
    target: &str,
    columns: &[String],
    query: &ast::Query,
    at: Location,
) -> Result<Pump, SqlError> {
    let (source, select) = source_of(prog, query, at)?;
    let mut src = prog.streams[source].clone();
    let stream_width = src.columns.len();
    // A joined reference table: its columns follow the stream's.
    let mut joined: Option<(usize, Vec<String>, &ast::JoinConstraint, bool)> = None;
    if let Some(j) = select.from[0].joins.first() {
        let (constraint, left) = match &j.join_operator {
            ast::JoinOperator::Join(c) | ast::JoinOperator::Inner(c) => (c, false),
            ast::JoinOperator::Left(c) | ast::JoinOperator::LeftOuter(c) => (c, true),
            _ => return Err(SqlError::at(at, "Only JOIN and LEFT JOIN ... ON a reference table are supported.")),
        };
        let ast::TableFactor::Table { name, alias, .. } = &j.relation else {
            return Err(SqlError::at(at, "A stream joins a reference table, named by one identifier."));
        };
        let n = match name.0.as_slice() {
            [p] => p.as_ident().map(norm),
            _ => None,
        }
        .ok_or_else(|| SqlError::at(at, "A reference table is named by one identifier."))?;
        let t = prog.tables.iter().position(|t| t.name == n).ok_or_else(|| {
            SqlError::at(at, format!("No reference table {n} exists (a stream can only join a reference data source)."))
        })?;
        src.columns.extend(prog.tables[t].columns.iter().cloned());
        let quals = std::iter::once(n).chain(alias.as_ref().map(|a| norm(&a.name))).collect();
        joined = Some((t, quals, constraint, left));
    }
    if target == ERROR_STREAM {
        return Err(SqlError::at(at, "A pump cannot insert into error_stream."));
    }
    let alias = match &select.from[0].relation {
        ast::TableFactor::Table { alias: Some(a), .. } | ast::TableFactor::Derived { alias: Some(a), .. } => {
            Some(norm(&a.name))
        }
        _ => None,
    };
    let named_windows: HashMap<String, &ast::WindowSpec> = select
        .named_window
        .iter()
        .filter_map(|w| match &w.1 {
            ast::NamedWindowExpr::WindowSpec(s) => Some((norm(&w.0), s)),
            ast::NamedWindowExpr::NamedWindow(_) => None,
        })
        .collect();
    let mut scope = Scope {
        stream: &src,
        stream_width,
        table_qualifiers: joined.as_ref().map(|j| j.1.clone()).unwrap_or_default(),
        qualifiers: std::iter::once(src.name.clone())
            .chain(alias)
            .chain(prog.aliases.iter().filter(|(_, i)| *i == source).map(|(n, _)| n.clone()))
            .collect(),
        named_windows,
        mode: Mode::Row,
        keys: Vec::new(),
        aggs: Vec::new(),
        windows: Vec::new(),
        win_aggs: Vec::new(),
        running: Vec::new(),
        in_subquery: false,
        at,
    };
    if select.distinct.is_some() {
        return Err(SqlError::at(at, "SELECT DISTINCT is not supported on a stream."));
    }
    if query.order_by.is_some() || query.limit_clause.is_some() {
        return Err(SqlError::at(at, "ORDER BY and LIMIT are not supported on a stream."));
    }
    let join = match &joined {
        None => None,
        Some((table, _, constraint, left)) => {
            let ast::JoinConstraint::On(on) = constraint else {
                return Err(SqlError::at(at, "A join with a reference table needs ON."));
            };
            let on = scope.expr(on)?;
            let reads_table = |e: &Expr| {
                let mut t = false;
                e.walk(&mut |x| t |= matches!(x, Expr::Col(i) if *i >= stream_width));
                t
            };
            let key = match &on {
                Expr::Bin(BinOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
                    (x, Expr::Col(j)) | (Expr::Col(j), x) if *j >= stream_width && !reads_table(x) => {
                        Some((x.clone(), j - stream_width))
                    }
                    _ => None,
                },
                _ => None,
            };
            Some(Join { table: *table, on, left: *left, key })
        }
    };
    let filter = match &select.selection {
        Some(w) => {
            scope.mode = Mode::Filter;
            let f = scope.expr(w)?;
            scope.mode = Mode::Row;
            Some(f)
        }
        None => None,
    };
    let running = std::mem::take(&mut scope.running);
    // GROUP BY: tumbling or stagger.
    let group: Vec<&ast::Expr> = match &select.group_by {
        ast::GroupByExpr::Expressions(e, _) => e.iter().collect(),
        ast::GroupByExpr::All(_) => return Err(SqlError::at(at, "GROUP BY ALL is not supported.")),
    };
    let mut stagger = None;
    for g in &group {
        if let ast::Expr::Function(f) = g {
            if f.name.to_string().eq_ignore_ascii_case("STAGGER") {
                let args = plain_args(f, at)?;
                let [arg] = args.as_slice() else {
                    return Err(SqlError::at(at, "STAGGER takes one RANGE INTERVAL."));
                };
                stagger = Some(interval_ms(arg, at)?);
                continue;
            }
        }
        let k = scope.expr(g)?;
        scope.keys.push(k);
    }
    let grouped = !group.is_empty();
    if grouped {
        scope.mode = Mode::Grouped;
    }
    // The projection, named.
    let mut items: Vec<(String, Expr, Location)> = Vec::new();
    let mut rowtime = None;
    for (n, item) in select.projection.iter().enumerate() {
        match item {
            ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => {
                if grouped {
                    return Err(SqlError::at(at, "SELECT * is not allowed with GROUP BY."));
                }
                for (i, c) in src.columns.iter().enumerate() {
                    items.push((c.name.clone(), Expr::Col(i), at));
                }
            }
            ast::SelectItem::UnnamedExpr(e) => {
                let name = match e {
                    ast::Expr::Identifier(id) => norm(id),
                    ast::Expr::CompoundIdentifier(ids) => ids.last().map(norm).unwrap_or_default(),
                    _ => format!("EXPR${n}"),
                };
                let x = scope.expr(e)?;
                if name == "ROWTIME" {
                    // Selecting ROWTIME passes it on, as every pump does.
                    continue;
                }
                items.push((name, x, at));
            }
            ast::SelectItem::ExprWithAliases { .. } => {
                return Err(SqlError::at(at, "A SELECT item has one alias."));
            }
            ast::SelectItem::ExprWithAlias { expr, alias } => {
                let x = scope.expr(expr)?;
                let name = norm(alias);
                if name.eq_ignore_ascii_case("ROWTIME") {
                    if grouped {
                        return Err(SqlError::at(loc(alias), "A grouped query's ROWTIME is its window's end."));
                    }
                    rowtime = Some(x);
                } else {
                    items.push((name, x, loc(alias)));
                }
            }
        }
    }
    let having = match &select.having {
        Some(h) if grouped => Some(scope.expr(h)?),
        Some(_) => return Err(SqlError::at(at, "HAVING needs a GROUP BY.")),
        None => None,
    };
    if !grouped && !scope.aggs.is_empty() {
        return Err(SqlError::at(
            at,
            "An aggregate over a stream needs a GROUP BY on a ROWTIME expression (STEP or FLOOR), a window (OVER), or WINDOWED BY STAGGER.",
        ));
    }
    if !running.is_empty() && (grouped || !scope.win_aggs.is_empty()) {
        return Err(SqlError::at(at, "A scalar subquery in WHERE is only supported in a query without windows."));
    }
    let kind = if let Some(range) = stagger {
        Kind::Stagger { keys: scope.keys.clone(), range, aggs: scope.aggs.clone(), having }
    } else if grouped {
        let window =
            scope.keys.iter().position(|k| matches!(k, Expr::Step(e, _) | Expr::FloorTo(e, _) if **e == Expr::Rowtime));
        let Some(window) = window else {
            return Err(SqlError::at(
                at,
                "A GROUP BY on a stream must include a monotonic expression of ROWTIME, such as STEP(s.ROWTIME BY INTERVAL '1' MINUTE) or FLOOR(s.ROWTIME TO MINUTE).",
            ));
        };
        let width = match &scope.keys[window] {
            Expr::Step(_, w) => *w,
            Expr::FloorTo(_, u) => u.millis().ok_or_else(|| {
                SqlError::at(at, "FLOOR(ROWTIME TO MONTH or YEAR) is not supported as a window; use STEP.")
            })?,
            _ => unreachable!("found above"),
        };
        Kind::Tumbling { keys: scope.keys.clone(), window, width, aggs: scope.aggs.clone(), having }
    } else if !scope.win_aggs.is_empty() {
        Kind::Sliding { windows: scope.windows.clone(), aggs: scope.win_aggs.clone() }
    } else {
        Kind::Map
    };
    // The target: declared, or created with the SELECT's columns (an extension to KDA).
    let types: Vec<SqlType> = items.iter().map(|(_, e, _)| type_of(e, &src, &scope)).collect();
    let target_idx = match prog.stream(target) {
        Some(i) => i,
        None => {
            let mut cols: Vec<Column> = Vec::new();
            for ((n, _, l), ty) in items.iter().zip(&types) {
                if cols.iter().any(|c| &c.name == n) {
                    return Err(SqlError::at(*l, format!("The column {n} appears twice in the SELECT.")));
                }
                cols.push(Column { name: n.clone(), ty: *ty });
            }
            prog.streams.push(StreamDef { name: target.to_owned(), columns: cols, input: None });
            prog.streams.len() - 1
        }
    };
    if prog.streams[target_idx].input.is_some() {
        return Err(SqlError::at(
            at,
            format!("The stream {target} is fed by the application's input; a pump cannot insert into it."),
        ));
    }
    let tcols = &prog.streams[target_idx].columns;
    let mut project: Vec<Expr> = vec![Expr::Lit(Value::Null); tcols.len()];
    let positions: Vec<usize> = if columns.is_empty() {
        (0..tcols.len()).collect()
    } else {
        columns
            .iter()
            .map(|c| {
                tcols
                    .iter()
                    .position(|t| &t.name == c)
                    .ok_or_else(|| SqlError::at(at, format!("The stream {target} has no column {c}.")))
            })
            .collect::<Result<_, _>>()?
    };
    if positions.len() != items.len() {
        return Err(SqlError::at(
            at,
            format!(
                "The pump inserts {} columns into {} columns of the stream {target}.",
                items.len(),
                positions.len()
            ),
        ));
    }
    for ((p, (_, e, l)), ty) in positions.iter().zip(items).zip(types) {
        let want = tcols[*p].ty;
        if !assignable(ty, want) {
            return Err(SqlError::at(
                l,
                format!(
                    "A {} value cannot be inserted into the column {} ({}).",
                    ty.name(),
                    tcols[*p].name,
                    want.name()
                ),
            ));
        }
        project[*p] = e;
    }
    Ok(Pump { name: name.to_owned(), source, target: target_idx, kind, filter, project, rowtime, running, join, at })
}

/// Whether a value of type `from` may go into a column of type `to` (numbers into numbers, text
/// into text, times into times; anything into VARCHAR).
fn assignable(from: SqlType, to: SqlType) -> bool {
    let class = |t: SqlType| match t {
        t if t.is_numeric() => 0,
        SqlType::Varchar(_) | SqlType::Char(_) => 1,
        SqlType::Boolean => 2,
        _ => 3,
    };
    class(from) == class(to) || class(to) == 1
}

/// The stream a query reads and its SELECT; a subquery in FROM becomes a pump of its own
/// feeding a hidden stream.
fn source_of<'q>(
    prog: &mut Program,
    query: &'q ast::Query,
    at: Location,
) -> Result<(usize, &'q ast::Select), SqlError> {
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return Err(SqlError::at(at, "A pump's query must be one SELECT (UNION and VALUES are not supported)."));
    };
    let [from] = select.from.as_slice() else {
        return Err(SqlError::at(at, "A pump's SELECT reads exactly one stream (FROM \"stream\")."));
    };
    if from.joins.len() > 1 {
        return Err(SqlError::at(at, "A pump's SELECT joins at most one reference table."));
    }
    match &from.relation {
        ast::TableFactor::Table { name, args: None, .. } => {
            let id = match name.0.as_slice() {
                [p] => p.as_ident(),
                _ => None,
            }
            .ok_or_else(|| SqlError::at(at, "A stream is named by one identifier."))?;
            let (n, here) = (norm(id), loc(id));
            if n.eq_ignore_ascii_case(ERROR_STREAM) {
                return Err(SqlError::at(here, "error_stream cannot be read by application code."));
            }
            let i = prog.stream(&n).ok_or_else(|| SqlError::at(here, format!("The stream {n} does not exist.")))?;
            Ok((i, select))
        }
        ast::TableFactor::Derived { subquery, .. } => {
            let hidden = format!("$SUBQUERY{}", prog.streams.len());
            let pump = compile_pump(prog, &hidden, &hidden, &[], subquery, at)?;
            prog.pumps.push(pump);
            let i = prog.stream(&hidden).expect("created by its pump");
            Ok((i, select))
        }
        _ => Err(SqlError::at(at, "FROM must name an in-application stream or hold a subquery.")),
    }
}

fn plain_args(f: &ast::Function, at: Location) -> Result<Vec<&ast::Expr>, SqlError> {
    match &f.args {
        ast::FunctionArguments::None => Ok(Vec::new()),
        ast::FunctionArguments::List(l) => l
            .args
            .iter()
            .map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                _ => Err(SqlError::at(at, format!("{}: named or wildcard arguments are not supported.", f.name))),
            })
            .collect(),
        ast::FunctionArguments::Subquery(_) => {
            Err(SqlError::at(at, format!("{}: a subquery argument is not supported.", f.name)))
        }
    }
}

fn unit_of(f: &ast::DateTimeField, at: Location) -> Result<Unit, SqlError> {
    use ast::DateTimeField as D;
    Ok(match f {
        D::Year | D::Years => Unit::Year,
        D::Month | D::Months => Unit::Month,
        D::Day | D::Days => Unit::Day,
        D::Hour | D::Hours => Unit::Hour,
        D::Minute | D::Minutes => Unit::Minute,
        D::Second | D::Seconds => Unit::Second,
        D::Millisecond | D::Milliseconds => Unit::Millisecond,
        other => return Err(SqlError::at(at, format!("The time unit {other} is not supported."))),
    })
}

/// An INTERVAL literal in ms (day-time intervals only).
fn interval_ms(e: &ast::Expr, at: Location) -> Result<i64, SqlError> {
    let ast::Expr::Interval(iv) = e else {
        return Err(SqlError::at(at, format!("Expected an INTERVAL, found {e}.")));
    };
    interval_of(iv, at)
}

fn interval_of(iv: &ast::Interval, at: Location) -> Result<i64, SqlError> {
    let text = match iv.value.as_ref() {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::Number(s, _) => s.clone(),
            _ => return Err(SqlError::at(at, "An INTERVAL's value must be a literal such as '5'.")),
        },
        _ => return Err(SqlError::at(at, "An INTERVAL's value must be a literal such as '5'.")),
    };
    let unit = match &iv.leading_field {
        Some(f) => unit_of(f, at)?,
        None => return Err(SqlError::at(at, "An INTERVAL needs a unit (SECOND, MINUTE, HOUR, DAY).")),
    };
    let w = unit.millis().ok_or_else(|| SqlError::at(at, "Year-month intervals are not supported."))?;
    let n: f64 = text.trim().parse().map_err(|_| SqlError::at(at, format!("'{text}' is not an interval length.")))?;
    let ms = (n * w as f64).round();
    if !(1.0..1e15).contains(&ms) {
        return Err(SqlError::at(at, format!("The interval '{text}' must be positive.")));
    }
    Ok(ms as i64)
}

impl Scope<'_> {
    fn column(&self, name: &str, at: Location) -> Result<Expr, SqlError> {
        if name == "ROWTIME" {
            return Ok(Expr::Rowtime);
        }
        let mut found = self.stream.columns.iter().enumerate().filter(|(_, c)| c.name == name).map(|(i, _)| i);
        if let Some(i) = found.next() {
            if found.next().is_some() {
                return Err(SqlError::at(
                    at,
                    format!("The column {name} is in both the stream and the table; qualify it."),
                ));
            }
            return Ok(Expr::Col(i));
        }
        if name == "APPROXIMATE_ARRIVAL_TIME" {
            return Ok(Expr::ArrivalTime);
        }
        Err(SqlError::at(at, format!("The stream {} has no column {name}.", self.stream.name)))
    }

    fn expr(&mut self, e: &ast::Expr) -> Result<Expr, SqlError> {
        if self.mode == Mode::Grouped {
            // A GROUP BY key, or a constant, as a whole.
            let saved = (self.aggs.len(), self.windows.len(), self.win_aggs.len(), self.running.len());
            self.mode = Mode::Row;
            let trial = self.expr(e);
            self.mode = Mode::Grouped;
            self.aggs.truncate(saved.0);
            self.windows.truncate(saved.1);
            self.win_aggs.truncate(saved.2);
            self.running.truncate(saved.3);
            if let Ok(x) = trial {
                if let Some(i) = self.keys.iter().position(|k| *k == x) {
                    return Ok(Expr::Key(i));
                }
                if x.is_constant() {
                    return Ok(x);
                }
            }
        }
        let at = self.at;
        let b = |x: Expr| Box::new(x);
        Ok(match e {
            ast::Expr::Identifier(id) => {
                let x = self.column(&norm(id), loc(id))?;
                self.check_grouped(x, &norm(id), loc(id))?
            }
            ast::Expr::CompoundIdentifier(ids) => {
                let [q, c] = ids.as_slice() else {
                    return Err(SqlError::at(ids.first().map_or(at, loc), format!("The name {e} is not understood.")));
                };
                let col = norm(c);
                let x = if self.table_qualifiers.contains(&norm(q)) {
                    let i = self.stream.columns[self.stream_width..]
                        .iter()
                        .position(|t| t.name == col)
                        .ok_or_else(|| SqlError::at(loc(c), format!("The table {} has no column {col}.", norm(q))))?;
                    Expr::Col(self.stream_width + i)
                } else if self.qualifiers.contains(&norm(q)) {
                    if col == "ROWTIME" || col == "APPROXIMATE_ARRIVAL_TIME" {
                        self.column(&col, loc(c))?
                    } else {
                        let i =
                            self.stream.columns[..self.stream_width].iter().position(|t| t.name == col).ok_or_else(
                                || SqlError::at(loc(c), format!("The stream {} has no column {col}.", norm(q))),
                            )?;
                        Expr::Col(i)
                    }
                } else {
                    return Err(SqlError::at(loc(q), format!("{} is not the stream this query reads.", norm(q))));
                };
                self.check_grouped(x, &norm(c), loc(c))?
            }
            ast::Expr::Value(v) => Expr::Lit(literal(&v.value, at)?),
            ast::Expr::TypedString(ts) => {
                let text = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                let ty = SqlType::parse(&ts.data_type.to_string()).map_err(|m| SqlError::at(at, m))?;
                Expr::Lit(ty.coerce(Value::Str(text)).map_err(|m| SqlError::at(at, m))?)
            }
            ast::Expr::Interval(iv) => Expr::Lit(Value::Interval(interval_of(iv, at)?)),
            ast::Expr::Nested(inner) => self.expr(inner)?,
            ast::Expr::BinaryOp { left, op, right } => {
                use ast::BinaryOperator as O;
                let op = match op {
                    O::Plus => BinOp::Add,
                    O::Minus => BinOp::Sub,
                    O::Multiply => BinOp::Mul,
                    O::Divide => BinOp::Div,
                    O::Modulo => BinOp::Mod,
                    O::Eq => BinOp::Eq,
                    O::NotEq => BinOp::Ne,
                    O::Lt => BinOp::Lt,
                    O::LtEq => BinOp::Le,
                    O::Gt => BinOp::Gt,
                    O::GtEq => BinOp::Ge,
                    O::And => BinOp::And,
                    O::Or => BinOp::Or,
                    O::StringConcat => BinOp::Concat,
                    other => return Err(SqlError::at(at, format!("The operator {other} is not supported."))),
                };
                Expr::Bin(op, b(self.expr(left)?), b(self.expr(right)?))
            }
            ast::Expr::UnaryOp { op, expr } => match op {
                ast::UnaryOperator::Not => Expr::Not(b(self.expr(expr)?)),
                ast::UnaryOperator::Minus => Expr::Neg(b(self.expr(expr)?)),
                ast::UnaryOperator::Plus => self.expr(expr)?,
                other => return Err(SqlError::at(at, format!("The operator {other} is not supported."))),
            },
            ast::Expr::IsNull(x) => Expr::IsNull(b(self.expr(x)?), false),
            ast::Expr::IsNotNull(x) => Expr::IsNull(b(self.expr(x)?), true),
            ast::Expr::Between { expr, negated, low, high } => {
                Expr::Between(b(self.expr(expr)?), b(self.expr(low)?), b(self.expr(high)?), *negated)
            }
            ast::Expr::In { expr, target: ast::InTarget::List(list), negated, .. } => {
                let x = self.expr(expr)?;
                let l = list.iter().map(|i| self.expr(i)).collect::<Result<_, _>>()?;
                Expr::InList(b(x), l, *negated)
            }
            ast::Expr::Like { negated, any: false, expr, pattern, escape_char: None } => {
                Expr::Like(b(self.expr(expr)?), b(self.expr(pattern)?), *negated)
            }
            ast::Expr::Case { operand, conditions, else_result, .. } => {
                let o = match operand {
                    Some(o) => Some(b(self.expr(o)?)),
                    None => None,
                };
                let mut whens = Vec::new();
                for c in conditions {
                    whens.push((self.expr(&c.condition)?, self.expr(&c.result)?));
                }
                let e = match else_result {
                    Some(x) => Some(b(self.expr(x)?)),
                    None => None,
                };
                Expr::Case(o, whens, e)
            }
            ast::Expr::Cast { expr, data_type, .. } => {
                let ty = SqlType::parse(&data_type.to_string()).map_err(|m| SqlError::at(at, m))?;
                Expr::Cast(b(self.expr(expr)?), ty)
            }
            ast::Expr::Extract { field, expr, .. } => Expr::Extract(unit_of(field, at)?, b(self.expr(expr)?)),
            ast::Expr::Floor { expr, field } => match field {
                ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime) => {
                    Expr::FloorNum(b(self.expr(expr)?))
                }
                ast::CeilFloorKind::DateTimeField(f) => Expr::FloorTo(b(self.expr(expr)?), unit_of(f, at)?),
                ast::CeilFloorKind::Scale(_) => return Err(SqlError::at(at, "FLOOR with a scale is not supported.")),
            },
            ast::Expr::Ceil { expr, field } => match field {
                ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime) => Expr::CeilNum(b(self.expr(expr)?)),
                ast::CeilFloorKind::DateTimeField(f) => Expr::CeilTo(b(self.expr(expr)?), unit_of(f, at)?),
                ast::CeilFloorKind::Scale(_) => return Err(SqlError::at(at, "CEIL with a scale is not supported.")),
            },
            ast::Expr::Substring { expr, substring_from, substring_for, .. } => {
                let mut args = vec![self.expr(expr)?];
                args.push(match substring_from {
                    Some(f) => self.expr(f)?,
                    None => Expr::Lit(Value::Int(1)),
                });
                if let Some(f) = substring_for {
                    args.push(self.expr(f)?);
                }
                Expr::Call(Func::Substring, args)
            }
            ast::Expr::Trim { trim_where, trim_what, expr, trim_characters } => {
                if trim_characters.is_some() {
                    return Err(SqlError::at(at, "TRIM with a character list is not supported."));
                }
                let (l, t) = match trim_where {
                    Some(ast::TrimWhereField::Leading) => (true, false),
                    Some(ast::TrimWhereField::Trailing) => (false, true),
                    _ => (true, true),
                };
                let mut args = vec![self.expr(expr)?];
                if let Some(w) = trim_what {
                    args.push(self.expr(w)?);
                }
                Expr::Call(Func::Trim(l, t), args)
            }
            ast::Expr::Position { expr, r#in } => Expr::Call(Func::Position, vec![self.expr(expr)?, self.expr(r#in)?]),
            ast::Expr::Subquery(q) => self.running_subquery(q)?,
            ast::Expr::Function(f) => self.function(f)?,
            other => return Err(SqlError::at(at, format!("The expression {other} is not supported."))),
        })
    }

    /// In a grouped projection, a bare column must be a GROUP BY key (found whole above).
    fn check_grouped(&self, x: Expr, name: &str, at: Location) -> Result<Expr, SqlError> {
        if self.mode == Mode::Grouped && !matches!(x, Expr::Rowtime) {
            return Err(SqlError::at(at, format!("The column {name} must be in the GROUP BY or inside an aggregate.")));
        }
        Ok(x)
    }

    /// An uncorrelated scalar subquery over the source stream, in WHERE: a running aggregate over
    /// the rows so far, the current one included (an extension to KDA).
    fn running_subquery(&mut self, q: &ast::Query) -> Result<Expr, SqlError> {
        let at = self.at;
        if self.mode != Mode::Filter {
            return Err(SqlError::at(at, "A scalar subquery is only allowed in WHERE."));
        }
        let ast::SetExpr::Select(s) = q.body.as_ref() else {
            return Err(SqlError::at(at, "A scalar subquery must be one SELECT."));
        };
        let from = match s.from.as_slice() {
            [f] if f.joins.is_empty() => match &f.relation {
                ast::TableFactor::Table { name, .. } => name.0.first().and_then(|p| p.as_ident()).map(norm),
                _ => None,
            },
            _ => None,
        };
        if !from.is_some_and(|f| self.qualifiers.contains(&f)) {
            return Err(SqlError::at(at, "A scalar subquery must read the query's own stream."));
        }
        if s.selection.is_some() || !matches!(&s.group_by, ast::GroupByExpr::Expressions(g, _) if g.is_empty()) {
            return Err(SqlError::at(at, "A scalar subquery over a stream may not have WHERE or GROUP BY."));
        }
        let [ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. }] =
            s.projection.as_slice()
        else {
            return Err(SqlError::at(at, "A scalar subquery selects exactly one value."));
        };
        // Compiled as a grouped projection with no keys, its aggregates becoming running ones.
        self.mode = Mode::Grouped;
        self.in_subquery = true;
        let keys = std::mem::take(&mut self.keys);
        let x = self.expr(e);
        self.keys = keys;
        self.in_subquery = false;
        self.mode = Mode::Filter;
        x
    }

    fn function(&mut self, f: &ast::Function) -> Result<Expr, SqlError> {
        let at = f.name.0.first().and_then(|p| p.as_ident()).map_or(self.at, loc);
        let name = f.name.to_string().to_uppercase();
        let name = name.trim_matches('"').to_owned();
        if f.filter.is_some() || !f.within_group.is_empty() {
            return Err(SqlError::at(at, format!("{name}: FILTER and WITHIN GROUP are not supported.")));
        }
        let distinct = matches!(&f.args, ast::FunctionArguments::List(l) if l.duplicate_treatment == Some(ast::DuplicateTreatment::Distinct));
        if distinct {
            return Err(SqlError::at(at, format!("{name}(DISTINCT ...) is not allowed on a stream.")));
        }
        let star = matches!(&f.args, ast::FunctionArguments::List(l)
            if matches!(l.args.as_slice(), [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)]));
        let agg = if star && name == "COUNT" { Some(AggFn::CountStar) } else { AggFn::by_name(&name) };
        let agg = match (agg, name.as_str()) {
            (None, "LAG") => Some(AggFn::Lag(1)),
            (a, _) => a,
        };
        if let Some(func) = agg {
            let args = if star { Vec::new() } else { plain_args(f, at)? };
            let mut func = func;
            let arg = match (func, args.as_slice()) {
                (AggFn::CountStar, []) => None,
                (AggFn::Lag(_), [a, n]) => {
                    let n = match n {
                        ast::Expr::Value(v) => literal(&v.value, at)?,
                        _ => Value::Null,
                    };
                    let Value::Int(n @ 0..=100_000) = n else {
                        return Err(SqlError::at(at, "LAG's offset must be an integer literal from 0 to 100000."));
                    };
                    func = AggFn::Lag(n as u32);
                    Some(self.in_aggregate(a)?)
                }
                (AggFn::CountStar, _) => return Err(SqlError::at(at, "COUNT(*) takes no argument.")),
                (_, [a]) => Some(self.in_aggregate(a)?),
                _ => return Err(SqlError::at(at, format!("{name} takes one argument."))),
            };
            let agg = Agg { func, arg };
            return match &f.over {
                Some(over) => {
                    if self.mode == Mode::Grouped {
                        return Err(SqlError::at(at, "A windowed aggregate (OVER) cannot be used with GROUP BY."));
                    }
                    if self.mode == Mode::Filter {
                        return Err(SqlError::at(at, "A windowed aggregate cannot be used in WHERE."));
                    }
                    let w = self.window(over, at)?;
                    self.win_aggs.push((w, agg));
                    Ok(Expr::Win(self.win_aggs.len() - 1))
                }
                None if matches!(func, AggFn::Lag(_)) => Err(SqlError::at(at, "LAG needs a window (OVER).")),
                None if self.in_subquery => {
                    self.running.push(agg);
                    Ok(Expr::Running(self.running.len() - 1))
                }
                None => {
                    self.aggs.push(agg);
                    Ok(Expr::Agg(self.aggs.len() - 1))
                }
            };
        }
        if f.over.is_some() {
            return Err(SqlError::at(at, format!("{name} is not an aggregate; it cannot have OVER.")));
        }
        let args = plain_args(f, at)?;
        let n = args.len();
        let arity = |lo: usize, hi: usize| -> Result<(), SqlError> {
            if n < lo || n > hi {
                Err(SqlError::at(
                    at,
                    format!(
                        "{name} takes {} arguments, not {n}.",
                        if lo == hi { lo.to_string() } else { format!("{lo} to {hi}") }
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let simple = |func: Func, lo: usize, hi: usize, s: &mut Self| -> Result<Expr, SqlError> {
            arity(lo, hi)?;
            let a = args.iter().map(|a| s.expr(a)).collect::<Result<Vec<_>, _>>()?;
            Ok(Expr::Call(func, a))
        };
        match name.as_str() {
            "CURRENT_ROW_TIMESTAMP" => Ok(Expr::CurrentRowTimestamp),
            "CURRENT_TIMESTAMP" | "LOCALTIMESTAMP" | "NOW" => Ok(Expr::CurrentTimestamp),
            "STEP" => {
                arity(2, 2)?;
                let e = self.expr(args[0])?;
                let w = interval_ms(args[1], at)?;
                Ok(Expr::Step(Box::new(e), w))
            }
            "STAGGER" => Err(SqlError::at(at, "STAGGER is only allowed as WINDOWED BY STAGGER.")),
            "MONOTONIC" => {
                arity(1, 1)?;
                self.expr(args[0])
            }
            "ABS" => simple(Func::Abs, 1, 1, self),
            "MOD" => simple(Func::Mod, 2, 2, self),
            "POWER" | "POW" => simple(Func::Power, 2, 2, self),
            "SQRT" => simple(Func::Sqrt, 1, 1, self),
            "LN" => simple(Func::Ln, 1, 1, self),
            "LOG10" => simple(Func::Log10, 1, 1, self),
            "EXP" => simple(Func::Exp, 1, 1, self),
            "ROUND" => simple(Func::Round, 1, 2, self),
            "SIGN" => simple(Func::Sign, 1, 1, self),
            "UPPER" => simple(Func::Upper, 1, 1, self),
            "LOWER" => simple(Func::Lower, 1, 1, self),
            "INITCAP" => simple(Func::Initcap, 1, 1, self),
            "CHAR_LENGTH" | "CHARACTER_LENGTH" | "LENGTH" => simple(Func::CharLength, 1, 1, self),
            "SUBSTRING" | "SUBSTR" => simple(Func::Substring, 2, 3, self),
            "OVERLAY" => simple(Func::Overlay, 3, 4, self),
            "REGEX_REPLACE" | "REGEXP_REPLACE" => {
                if let Some(ast::Expr::Value(v)) = args.get(1) {
                    if let ast::Value::SingleQuotedString(p) = &v.value {
                        regex::Regex::new(p).map_err(|e| SqlError::at(at, format!("REGEX_REPLACE: {e}")))?;
                    }
                }
                simple(Func::RegexReplace, 3, 3, self)
            }
            "COALESCE" => simple(Func::Coalesce, 1, 100, self),
            "NULLIF" => simple(Func::NullIf, 2, 2, self),
            "CHAR_TO_TIMESTAMP" => simple(Func::CharToTimestamp, 2, 2, self),
            "TIMESTAMP_TO_CHAR" => simple(Func::TimestampToChar, 2, 2, self),
            "TSDIFF" => simple(Func::Tsdiff, 2, 2, self),
            "UNIX_TIMESTAMP" => simple(Func::UnixTimestamp, 1, 1, self),
            "TO_TIMESTAMP" => simple(Func::ToTimestamp, 1, 1, self),
            _ => Err(SqlError::at(at, format!("No function {name} exists."))),
        }
    }

    /// An aggregate's argument: a row expression.
    fn in_aggregate(&mut self, a: &ast::Expr) -> Result<Expr, SqlError> {
        let mode = self.mode;
        self.mode = Mode::Row;
        let before = (self.aggs.len(), self.win_aggs.len(), self.running.len());
        let x = self.expr(a);
        self.mode = mode;
        if (self.aggs.len(), self.win_aggs.len(), self.running.len()) != before {
            return Err(SqlError::at(self.at, "Aggregates cannot be nested."));
        }
        x
    }

    fn window(&mut self, over: &ast::WindowType, at: Location) -> Result<usize, SqlError> {
        let spec: ast::WindowSpec = match over {
            ast::WindowType::WindowSpec(s) => s.clone(),
            ast::WindowType::NamedWindow(n) => (*self
                .named_windows
                .get(&norm(n))
                .ok_or_else(|| SqlError::at(loc(n), format!("No window {} is defined.", norm(n))))?)
            .clone(),
        };
        if !spec.order_by.is_empty() {
            // Windows are ordered by ROWTIME; ORDER BY ROWTIME is accepted and changes nothing.
            let by_rowtime = spec.order_by.iter().all(|o| o.expr.to_string().to_uppercase().ends_with("ROWTIME"));
            if !by_rowtime {
                return Err(SqlError::at(at, "A window over a stream is ordered by ROWTIME only."));
            }
        }
        let mode = self.mode;
        self.mode = Mode::Row;
        let partition: Result<Vec<Expr>, SqlError> = spec.partition_by.iter().map(|p| self.expr(p)).collect();
        self.mode = mode;
        let partition = partition?;
        let frame = match &spec.window_frame {
            None => {
                return Err(SqlError::at(
                    at,
                    "A window over a stream needs RANGE INTERVAL ... PRECEDING or ROWS n PRECEDING.",
                ))
            }
            Some(f) => {
                if f.end_bound.as_ref().is_some_and(|e| *e != ast::WindowFrameBound::CurrentRow) {
                    return Err(SqlError::at(at, "A window over a stream ends at the current row."));
                }
                match (&f.units, &f.start_bound) {
                    (ast::WindowFrameUnits::Range, ast::WindowFrameBound::Preceding(Some(e))) => {
                        Frame::Range(interval_ms(e, at)?)
                    }
                    (ast::WindowFrameUnits::Rows, ast::WindowFrameBound::Preceding(Some(e))) => match e.as_ref() {
                        ast::Expr::Value(v) => match literal(&v.value, at)? {
                            Value::Int(n) if (0..=1_000_000).contains(&n) => Frame::Rows(n as u64),
                            _ => return Err(SqlError::at(at, "ROWS n PRECEDING needs an integer from 0 to 1000000.")),
                        },
                        _ => return Err(SqlError::at(at, "ROWS n PRECEDING needs an integer literal.")),
                    },
                    _ => {
                        return Err(SqlError::at(
                            at,
                            "A window over a stream needs RANGE INTERVAL ... PRECEDING or ROWS n PRECEDING.",
                        ))
                    }
                }
            }
        };
        let w = Window { partition, frame };
        Ok(match self.windows.iter().position(|x| *x == w) {
            Some(i) => i,
            None => {
                self.windows.push(w);
                self.windows.len() - 1
            }
        })
    }
}

fn literal(v: &ast::Value, at: Location) -> Result<Value, SqlError> {
    Ok(match v {
        ast::Value::Number(s, _) => match s.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(s.parse().map_err(|_| SqlError::at(at, format!("{s} is not a number.")))?),
        },
        ast::Value::SingleQuotedString(s) => Value::Str(s.clone()),
        ast::Value::Boolean(b) => Value::Bool(*b),
        ast::Value::Null => Value::Null,
        other => return Err(SqlError::at(at, format!("The literal {other} is not supported."))),
    })
}

/// An expression's type, for the columns of a stream a pump creates.
fn type_of(e: &Expr, src: &StreamDef, scope: &Scope) -> SqlType {
    let t = |x: &Expr| type_of(x, src, scope);
    let agg_type = |a: &Agg| match a.func {
        AggFn::Count | AggFn::CountStar => SqlType::BigInt,
        AggFn::Avg | AggFn::VarPop | AggFn::VarSamp | AggFn::StddevPop | AggFn::StddevSamp => SqlType::Double,
        _ => a.arg.as_ref().map_or(SqlType::BigInt, t),
    };
    match e {
        Expr::Lit(v) => match v {
            Value::Int(_) => SqlType::Integer,
            Value::Float(_) => SqlType::Double,
            Value::Bool(_) => SqlType::Boolean,
            Value::Ts(_) => SqlType::Timestamp,
            Value::Interval(_) => SqlType::BigInt,
            Value::Str(s) => SqlType::Varchar(s.chars().count().max(1) as u32),
            Value::Null => SqlType::Varchar(u32::MAX),
        },
        Expr::Col(i) => src.columns.get(*i).map_or(SqlType::Varchar(u32::MAX), |c| c.ty),
        Expr::Rowtime | Expr::ArrivalTime | Expr::CurrentRowTimestamp | Expr::CurrentTimestamp => SqlType::Timestamp,
        Expr::FloorTo(..) | Expr::CeilTo(..) => SqlType::Timestamp,
        Expr::Step(x, _) => t(x),
        Expr::Key(i) => scope.keys.get(*i).map_or(SqlType::Varchar(u32::MAX), t),
        Expr::Agg(i) => scope.aggs.get(*i).map_or(SqlType::Double, agg_type),
        Expr::Running(i) => scope.running.get(*i).map_or(SqlType::Double, agg_type),
        Expr::Win(i) => scope.win_aggs.get(*i).map_or(SqlType::Double, |(_, a)| agg_type(a)),
        Expr::Bin(op, a, b) => match op {
            BinOp::Concat => SqlType::Varchar(u32::MAX),
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                let (x, y) = (t(a), t(b));
                if x == SqlType::Timestamp || y == SqlType::Timestamp {
                    if x == y {
                        SqlType::BigInt
                    } else {
                        SqlType::Timestamp
                    }
                } else if x.is_integer() && y.is_integer() {
                    if x == SqlType::BigInt || y == SqlType::BigInt {
                        SqlType::BigInt
                    } else {
                        SqlType::Integer
                    }
                } else {
                    SqlType::Double
                }
            }
            _ => SqlType::Boolean,
        },
        Expr::Neg(a) | Expr::FloorNum(a) | Expr::CeilNum(a) => t(a),
        Expr::Not(_) | Expr::IsNull(..) | Expr::Between(..) | Expr::InList(..) | Expr::Like(..) => SqlType::Boolean,
        Expr::Case(_, w, e) => {
            w.first().map(|(_, r)| t(r)).or_else(|| e.as_ref().map(|x| t(x))).unwrap_or(SqlType::Varchar(u32::MAX))
        }
        Expr::Cast(_, ty) => *ty,
        Expr::Extract(..) => SqlType::BigInt,
        Expr::Call(f, args) => match f {
            Func::Abs | Func::Sign | Func::Mod => args.first().map_or(SqlType::Double, t),
            Func::Round => args.first().map_or(SqlType::Double, t),
            Func::Power | Func::Sqrt | Func::Ln | Func::Log10 | Func::Exp => SqlType::Double,
            Func::CharLength | Func::Position | Func::Tsdiff | Func::UnixTimestamp => SqlType::BigInt,
            Func::CharToTimestamp | Func::ToTimestamp => SqlType::Timestamp,
            Func::Coalesce | Func::NullIf => args.first().map_or(SqlType::Varchar(u32::MAX), t),
            _ => SqlType::Varchar(u32::MAX),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Vec<InputSpec> {
        vec![InputSpec {
            name_prefix: "SOURCE_SQL_STREAM".into(),
            columns: vec![
                Column { name: "SENSOR_ID".into(), ty: SqlType::Varchar(16) },
                Column { name: "TEMPERATURE".into(), ty: SqlType::Double },
            ],
        }]
    }

    #[test]
    fn shapes_of_pumps() {
        let p = compile(
            r#"CREATE PUMP "p" AS INSERT INTO "hot" SELECT STREAM * FROM "SOURCE_SQL_STREAM_001" WHERE temperature > 50.0;
               CREATE PUMP "g" AS INSERT INTO "agg" SELECT STREAM sensor_id, COUNT(*) AS n,
                 STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '10' SECOND) AS w
                 FROM "SOURCE_SQL_STREAM_001" GROUP BY sensor_id, STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '10' SECOND);
               CREATE PUMP "s" AS INSERT INTO "slide" SELECT STREAM sensor_id, AVG(temperature) OVER w AS a
                 FROM "SOURCE_SQL_STREAM_001" WINDOW w AS (PARTITION BY sensor_id RANGE INTERVAL '1' MINUTE PRECEDING);"#,
            &input(),
            &[],
        )
        .unwrap();
        assert_eq!(p.pumps.len(), 3);
        assert!(matches!(p.pumps[0].kind, Kind::Map));
        assert!(matches!(p.pumps[1].kind, Kind::Tumbling { width: 10_000, window: 1, .. }));
        assert!(matches!(p.pumps[2].kind, Kind::Sliding { .. }));
        let agg = &p.streams[p.stream("agg").unwrap()];
        let names: Vec<&str> = agg.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["SENSOR_ID", "N", "W"]);
        assert_eq!(agg.columns[2].ty, SqlType::Timestamp);
    }

    #[test]
    fn bad_programs_are_refused_with_reasons() {
        let cases = [
            ("CREATE PUMP p AS INSERT INTO o SELECT STREAM sensor_id, COUNT(*) FROM SOURCE_SQL_STREAM_001 GROUP BY sensor_id", "monotonic"),
            ("CREATE PUMP p AS INSERT INTO o SELECT STREAM nope FROM SOURCE_SQL_STREAM_001", "no column NOPE"),
            ("CREATE PUMP p AS INSERT INTO o SELECT STREAM * FROM missing", "does not exist"),
            ("CREATE PUMP p AS INSERT INTO o SELECT STREAM COUNT(*) FROM SOURCE_SQL_STREAM_001", "needs a GROUP BY"),
            ("CREATE PUMP p AS INSERT INTO o SELECT STREAM FOO(sensor_id) FROM SOURCE_SQL_STREAM_001", "No function FOO"),
            ("CREATE PUMP p AS INSERT INTO a SELECT STREAM * FROM b; CREATE PUMP q AS INSERT INTO b SELECT STREAM * FROM a", "does not exist"),
            ("CREATE STREAM o (x INTEGER); CREATE PUMP p AS INSERT INTO o SELECT STREAM sensor_id FROM SOURCE_SQL_STREAM_001", "cannot be inserted"),
            ("CREATE PUMP p AS INSERT INTO o SELECT STREAM * FROM \"error_stream\"", "cannot be read"),
        ];
        for (code, want) in cases {
            let e = compile(code, &input(), &[]).unwrap_err();
            assert!(e.message.contains(want), "{code}: {e}");
        }
    }

    #[test]
    fn the_seed_programs_compile() {
        let seed_input = vec![InputSpec {
            name_prefix: "sensor_stream".into(),
            columns: vec![
                Column { name: "sensor_id".into(), ty: SqlType::Varchar(16) },
                Column { name: "temperature".into(), ty: SqlType::Double },
                Column { name: "event_time".into(), ty: SqlType::Timestamp },
            ],
        }];
        let code = r#"
CREATE STREAM "sensor_stream" (
    sensor_id VARCHAR(16),
    temperature DOUBLE,
    event_time TIMESTAMP
);
CREATE OR REPLACE PUMP "stream_pump" AS
INSERT INTO "output_stream"
SELECT * FROM "sensor_stream"
WHERE temperature > 50.0;
CREATE OR REPLACE STREAM "aggregated_stream" (
    sensor_id VARCHAR(16),
    avg_temperature DOUBLE,
    max_temperature DOUBLE,
    min_temperature DOUBLE,
    reading_count INTEGER,
    window_start TIMESTAMP
);
CREATE OR REPLACE PUMP "aggregate_pump" AS
INSERT INTO "aggregated_stream"
SELECT
    sensor_id,
    AVG(temperature) AS avg_temperature,
    MAX(temperature) AS max_temperature,
    MIN(temperature) AS min_temperature,
    COUNT(*) AS reading_count,
    STEP("sensor_stream".ROWTIME BY INTERVAL '5' MINUTE) AS window_start
FROM "sensor_stream"
GROUP BY sensor_id, STEP("sensor_stream".ROWTIME BY INTERVAL '5' MINUTE);
CREATE OR REPLACE STREAM "anomaly_stream" (
    sensor_id VARCHAR(16),
    temperature DOUBLE,
    anomaly_type VARCHAR(32)
);
CREATE OR REPLACE PUMP "anomaly_pump" AS
INSERT INTO "anomaly_stream"
SELECT
    sensor_id,
    temperature,
    'HIGH_TEMP' AS anomaly_type
FROM "sensor_stream"
WHERE temperature > (
    SELECT AVG(temperature) + 3 * STDDEV(temperature)
    FROM "sensor_stream"
);"#;
        let p = compile(code, &seed_input, &[]).unwrap();
        assert_eq!(p.pumps.len(), 3);
        let anomaly = p.pumps.iter().find(|p| p.name == "anomaly_pump").unwrap();
        assert_eq!(anomaly.running.len(), 2);
        assert_eq!(anomaly.running[1].func, AggFn::StddevSamp);
        assert_eq!(p.streams[p.stream("sensor_stream").unwrap()].input, Some(0));
    }
}
