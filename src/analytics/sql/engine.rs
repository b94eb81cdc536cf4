//! The operators: a compiled [`Program`] run over rows, with all of its state in one
//! serializable [`State`] so that an application's state, input position and output are
//! checkpointed together.
//!
//! Rows enter an in-application stream ([`Engine::insert`]) and flow through the pumps reading
//! it, in the program's dependency order; time moves on with every row (its ROWTIME) and with
//! [`Engine::advance`] (the clock, when input is quiet), which closes tumbling and stagger
//! windows whose end has passed. Everything is deterministic: the same rows and the same
//! advances give the same output, which is what makes replay after a crash exact.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::compile::{Agg, AggFn, Frame, Kind, Program, Pump};
use super::expr::{truth, Cx};
use super::value::{key_order, Value};

/// Bounds on one application's state; past one, the row is refused with an error.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Rows one sliding window partition holds.
    pub rows_per_window: usize,
    /// Groups one tumbling window (or the open stagger windows) hold.
    pub groups_per_window: usize,
    /// Bytes of state, about.
    pub state_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { rows_per_window: 100_000, groups_per_window: 100_000, state_bytes: 256 << 20 }
    }
}

/// A row of an in-application stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub rowtime: i64,
    /// APPROXIMATE_ARRIVAL_TIME (input streams), else the ROWTIME it came with.
    pub arrival: i64,
    pub values: Vec<Value>,
}

/// A group key with SQL's value order (NULLs first), usable as a map key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key(pub Vec<Value>);

impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        for (a, b) in self.0.iter().zip(&other.0) {
            let o = key_order(a, b);
            if o.is_ne() {
                return o;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

/// An aggregate's running state: counts, sums, Welford's mean and M2, extremes, first and last.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    pub rows: u64,
    pub n: u64,
    pub int_sum: i64,
    pub float_sum: f64,
    /// The sum is integral (every value an integer, no overflow).
    pub integral: bool,
    pub mean: f64,
    pub m2: f64,
    pub min: Option<Value>,
    pub max: Option<Value>,
    pub first: Option<Value>,
    pub last: Option<Value>,
}

impl Acc {
    fn new() -> Acc {
        Acc { integral: true, ..Acc::default() }
    }

    fn add(&mut self, v: &Value) {
        self.rows += 1;
        if v.is_null() {
            return;
        }
        self.n += 1;
        if self.first.is_none() {
            self.first = Some(v.clone());
        }
        self.last = Some(v.clone());
        if self.min.as_ref().is_none_or(|m| key_order(v, m).is_lt()) {
            self.min = Some(v.clone());
        }
        if self.max.as_ref().is_none_or(|m| key_order(v, m).is_gt()) {
            self.max = Some(v.clone());
        }
        if let Some(x) = v.as_f64() {
            match v {
                Value::Int(i) if self.integral => match self.int_sum.checked_add(*i) {
                    Some(s) => self.int_sum = s,
                    None => self.integral = false,
                },
                _ => self.integral = false,
            }
            self.float_sum += x;
            let delta = x - self.mean;
            self.mean += delta / self.n as f64;
            self.m2 += delta * (x - self.mean);
        }
    }

    fn value(&self, f: AggFn) -> Value {
        let var = |sample: bool| -> Value {
            let d = if sample { self.n.saturating_sub(1) } else { self.n };
            if d == 0 {
                Value::Null
            } else {
                Value::Float((self.m2 / d as f64).max(0.0))
            }
        };
        match f {
            AggFn::CountStar => Value::Int(self.rows as i64),
            AggFn::Count => Value::Int(self.n as i64),
            AggFn::Sum if self.n == 0 => Value::Null,
            AggFn::Sum if self.integral => Value::Int(self.int_sum),
            AggFn::Sum => Value::Float(self.float_sum),
            AggFn::Avg if self.n == 0 => Value::Null,
            AggFn::Avg => Value::Float(self.mean),
            AggFn::Min => self.min.clone().unwrap_or(Value::Null),
            AggFn::Max => self.max.clone().unwrap_or(Value::Null),
            AggFn::FirstValue => self.first.clone().unwrap_or(Value::Null),
            AggFn::LastValue => self.last.clone().unwrap_or(Value::Null),
            AggFn::VarPop => var(false),
            AggFn::VarSamp => var(true),
            AggFn::StddevPop => match var(false) {
                Value::Float(v) => Value::Float(v.sqrt()),
                other => other,
            },
            AggFn::StddevSamp => match var(true) {
                Value::Float(v) => Value::Float(v.sqrt()),
                other => other,
            },
            AggFn::Lag(_) => Value::Null,
        }
    }
}

/// A sliding window's rows of one partition: (ROWTIME, each aggregate's argument).
type Partition = VecDeque<(i64, Vec<Value>)>;

/// One pump's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PumpState {
    Map {
        running: Vec<Acc>,
    },
    Tumbling {
        /// Open windows by start: their groups.
        #[serde(with = "pairs")]
        open: BTreeMap<i64, Groups>,
    },
    Sliding {
        /// Per window definition, its partitions.
        parts: Vec<Parts>,
        /// Rows seen (empty partitions are dropped every so many).
        #[serde(default)]
        rows: u64,
    },
    Stagger {
        /// Open windows by key: when they opened, and their aggregates.
        #[serde(with = "pairs")]
        open: BTreeMap<Key, (i64, Vec<Acc>)>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Groups(#[serde(with = "pairs")] pub BTreeMap<Key, Vec<Acc>>);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Parts(#[serde(with = "pairs")] pub BTreeMap<Key, Partition>);

/// Maps serialized as lists of pairs (their keys are not strings).
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(m: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<K, V>, D::Error> {
        let v: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(v.into_iter().collect())
    }
}

/// Everything an application's run has accumulated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Per stream, the ROWTIME of its last row.
    pub last_rowtime: Vec<i64>,
    pub pumps: Vec<PumpState>,
    /// How far time has advanced.
    pub bound: i64,
    /// When the run started (CURRENT_TIMESTAMP).
    pub started_ms: i64,
}

/// An error row's fields, before it enters `error_stream`.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub name: &'static str,
    pub message: String,
    pub row: Option<Row>,
    pub pump: String,
}

pub struct Engine<'p> {
    prog: &'p Program,
    pub state: State,
    /// Pumps (indexes) reading each stream.
    readers: Vec<Vec<usize>>,
    limits: Limits,
    now_ms: i64,
    /// Reference tables' rows, and per pump joining one by a key, its index.
    tables: Vec<Vec<Vec<Value>>>,
    indexes: Vec<Option<BTreeMap<Key, Vec<usize>>>>,
    /// The state is over `state_bytes`: rows that would add to it are refused.
    pub state_full: bool,
}

/// What a step produced: rows that entered each stream the caller observes, and failures.
#[derive(Debug, Default)]
pub struct Emitted {
    pub rows: Vec<(usize, Row)>,
    pub failures: Vec<Failure>,
}

impl State {
    pub fn new(prog: &Program, started_ms: i64) -> State {
        let pumps = prog
            .pumps
            .iter()
            .map(|p| match &p.kind {
                Kind::Map => PumpState::Map { running: p.running.iter().map(|_| Acc::new()).collect() },
                Kind::Tumbling { .. } => PumpState::Tumbling { open: BTreeMap::new() },
                Kind::Sliding { windows, .. } => {
                    PumpState::Sliding { parts: windows.iter().map(|_| Parts::default()).collect(), rows: 0 }
                }
                Kind::Stagger { .. } => PumpState::Stagger { open: BTreeMap::new() },
            })
            .collect();
        State { last_rowtime: vec![i64::MIN; prog.streams.len()], pumps, bound: i64::MIN, started_ms }
    }

    /// Whether this state fits the program (the same pumps of the same kinds).
    pub fn fits(&self, prog: &Program) -> bool {
        self.last_rowtime.len() == prog.streams.len()
            && self.pumps.len() == prog.pumps.len()
            && self.pumps.iter().zip(&prog.pumps).all(|(s, p)| match (s, &p.kind) {
                (PumpState::Map { running }, Kind::Map) => running.len() == p.running.len(),
                (PumpState::Tumbling { .. }, Kind::Tumbling { .. })
                | (PumpState::Stagger { .. }, Kind::Stagger { .. }) => true,
                (PumpState::Sliding { parts, .. }, Kind::Sliding { windows, .. }) => parts.len() == windows.len(),
                _ => false,
            })
    }
}

impl<'p> Engine<'p> {
    /// An engine over a program, its state and its reference tables' rows (one list per
    /// table of the program, in order; missing ones are empty).
    pub fn new(prog: &'p Program, state: State, limits: Limits, mut tables: Vec<Vec<Vec<Value>>>) -> Engine<'p> {
        let mut readers = vec![Vec::new(); prog.streams.len()];
        for (i, p) in prog.pumps.iter().enumerate() {
            readers[p.source].push(i);
        }
        tables.resize(prog.tables.len(), Vec::new());
        let indexes = prog
            .pumps
            .iter()
            .map(|p| {
                let j = p.join.as_ref()?;
                let (_, col) = j.key.as_ref()?;
                let mut index: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
                for (i, row) in tables[j.table].iter().enumerate() {
                    let v = row.get(*col).cloned().unwrap_or(Value::Null);
                    if !v.is_null() {
                        index.entry(Key(vec![v])).or_default().push(i);
                    }
                }
                Some(index)
            })
            .collect();
        Engine { prog, state, readers, limits, now_ms: 0, tables, indexes, state_full: false }
    }

    /// Rows into a stream (an input's), then through every pump downstream. `observed` says
    /// which streams' rows the caller wants back.
    pub fn insert(&mut self, stream: usize, rows: Vec<Row>, now_ms: i64, observed: &[bool], out: &mut Emitted) {
        self.now_ms = now_ms;
        let mut queue: VecDeque<(usize, Row)> = rows.into_iter().map(|r| (stream, r)).collect();
        self.drain(&mut queue, observed, out);
    }

    /// Time moves to `bound`: windows that end at or before it close and emit.
    pub fn advance(&mut self, bound: i64, now_ms: i64, observed: &[bool], out: &mut Emitted) {
        self.now_ms = now_ms;
        if bound <= self.state.bound {
            return;
        }
        self.state.bound = bound;
        for i in 0..self.prog.pumps.len() {
            let mut rows = Vec::new();
            self.close(i, bound, &mut rows, out);
            let target = self.prog.pumps[i].target;
            let mut queue: VecDeque<(usize, Row)> = rows.into_iter().map(|r| (target, r)).collect();
            self.drain(&mut queue, observed, out);
        }
    }

    fn drain(&mut self, queue: &mut VecDeque<(usize, Row)>, observed: &[bool], out: &mut Emitted) {
        while let Some((s, row)) = queue.pop_front() {
            let last = &mut self.state.last_rowtime[s];
            if row.rowtime < *last {
                out.failures.push(Failure {
                    name: "Error_Out_Of_Order_Rowtime",
                    message: format!(
                        "A row's ROWTIME ({}) is earlier than the last row's in {}; the row was dropped.",
                        super::value::format_timestamp(row.rowtime),
                        self.prog.streams[s].name
                    ),
                    row: Some(row),
                    pump: String::new(),
                });
                continue;
            }
            *last = row.rowtime;
            if observed.get(s).copied().unwrap_or(false) {
                out.rows.push((s, row.clone()));
            }
            for k in 0..self.readers[s].len() {
                let p = self.readers[s][k];
                let mut produced = Vec::new();
                self.on_row(p, &row, &mut produced, out);
                let target = self.prog.pumps[p].target;
                queue.extend(produced.into_iter().map(|r| (target, r)));
            }
        }
    }

    /// One row through one pump: joined with its reference table first, if it has one.
    fn on_row(&mut self, p: usize, row: &Row, produced: &mut Vec<Row>, out: &mut Emitted) {
        let pump = &self.prog.pumps[p];
        let Some(join) = &pump.join else {
            return self.process(p, row, produced, out);
        };
        let table = &self.tables[join.table];
        let cx = row_cx(row, self.now_ms, self.state.started_ms, &[]);
        let candidates: Vec<usize> = match (&join.key, &self.indexes[p]) {
            (Some((e, _)), Some(index)) => match e.eval(&cx) {
                Ok(v) if !v.is_null() => index.get(&Key(vec![v])).cloned().unwrap_or_default(),
                Ok(_) => Vec::new(),
                Err(m) => return fail(out, pump, "Error_Evaluating", m, row),
            },
            _ => (0..table.len()).collect(),
        };
        let width = self.prog.tables[join.table].columns.len();
        let mut matched = Vec::new();
        for i in candidates {
            let mut values = row.values.clone();
            values.extend(table[i].iter().cloned());
            let joined = Row { rowtime: row.rowtime, arrival: row.arrival, values };
            match join.on.eval(&row_cx(&joined, self.now_ms, self.state.started_ms, &[])).and_then(|v| truth(&v)) {
                Ok(Some(true)) => matched.push(joined),
                Ok(_) => {}
                Err(m) => return fail(out, pump, "Error_Evaluating", m, row),
            }
        }
        if matched.is_empty() && join.left {
            let mut values = row.values.clone();
            values.extend(std::iter::repeat_n(Value::Null, width));
            matched.push(Row { rowtime: row.rowtime, arrival: row.arrival, values });
        }
        for r in matched {
            self.process(p, &r, produced, out);
        }
    }

    /// One row (joined, if the pump joins) through one pump.
    fn process(&mut self, p: usize, row: &Row, produced: &mut Vec<Row>, out: &mut Emitted) {
        let prog = self.prog;
        let pump = &prog.pumps[p];
        // Windows that this row's time closes, first.
        if matches!(pump.kind, Kind::Tumbling { .. } | Kind::Stagger { .. }) {
            self.close(p, row.rowtime, produced, out);
        }
        let now = self.now_ms;
        let started = self.state.started_ms;
        // Running aggregates see every row, the current one included, before the filter.
        let mut running_values = Vec::new();
        if let PumpState::Map { running } = &mut self.state.pumps[p] {
            for (acc, agg) in running.iter_mut().zip(&pump.running) {
                let v = match &agg.arg {
                    None => Value::Int(1),
                    Some(e) => match e.eval(&row_cx(row, now, started, &[])) {
                        Ok(v) => v,
                        Err(m) => {
                            return fail(out, pump, "Error_Evaluating", m, row);
                        }
                    },
                };
                acc.add(&v);
            }
            running_values = running.iter().zip(&pump.running).map(|(a, g)| a.value(g.func)).collect();
        }
        if let Some(f) = &pump.filter {
            match f.eval(&row_cx(row, now, started, &running_values)).and_then(|v| truth(&v)) {
                Ok(Some(true)) => {}
                Ok(_) => return,
                Err(m) => return fail(out, pump, "Error_Evaluating", m, row),
            }
        }
        match &pump.kind {
            Kind::Map => match project(pump, &row_cx(row, now, started, &running_values), row.rowtime, prog) {
                Ok(r) => produced.push(r),
                Err(m) => fail(out, pump, "Error_Evaluating", m, row),
            },
            Kind::Tumbling { keys, window, aggs, .. } => {
                let key =
                    match keys.iter().map(|k| k.eval(&row_cx(row, now, started, &[]))).collect::<Result<Vec<_>, _>>() {
                        Ok(k) => k,
                        Err(m) => return fail(out, pump, "Error_Evaluating", m, row),
                    };
                let start = match &key[*window] {
                    Value::Ts(t) => *t,
                    _ => return,
                };
                let args = match agg_args(aggs, &row_cx(row, now, started, &[])) {
                    Ok(a) => a,
                    Err(m) => return fail(out, pump, "Error_Evaluating", m, row),
                };
                let limit = self.limits.groups_per_window;
                let PumpState::Tumbling { open } = &mut self.state.pumps[p] else { return };
                let groups = &mut open.entry(start).or_default().0;
                let key = Key(key);
                if !groups.contains_key(&key) {
                    if let Err(m) = room(self.state_full, groups.len(), limit, || {
                        format!(
                            "The window has {limit} groups, the most allowed (groups_per_window); the row was dropped."
                        )
                    }) {
                        return fail(out, pump, "Error_Limit_Exceeded", m, row);
                    }
                }
                let accs = groups.entry(key).or_insert_with(|| aggs.iter().map(|_| Acc::new()).collect());
                for (a, v) in accs.iter_mut().zip(&args) {
                    a.add(v);
                }
            }
            Kind::Stagger { keys, aggs, .. } => {
                let key =
                    match keys.iter().map(|k| k.eval(&row_cx(row, now, started, &[]))).collect::<Result<Vec<_>, _>>() {
                        Ok(k) => Key(k),
                        Err(m) => return fail(out, pump, "Error_Evaluating", m, row),
                    };
                let args = match agg_args(aggs, &row_cx(row, now, started, &[])) {
                    Ok(a) => a,
                    Err(m) => return fail(out, pump, "Error_Evaluating", m, row),
                };
                let limit = self.limits.groups_per_window;
                let PumpState::Stagger { open } = &mut self.state.pumps[p] else { return };
                if !open.contains_key(&key) {
                    if let Err(m) = room(self.state_full, open.len(), limit, || {
                        format!("{limit} stagger windows are open, the most allowed (groups_per_window); the row was dropped.")
                    }) {
                        return fail(out, pump, "Error_Limit_Exceeded", m, row);
                    }
                }
                let (_, accs) =
                    open.entry(key).or_insert_with(|| (row.rowtime, aggs.iter().map(|_| Acc::new()).collect()));
                for (a, v) in accs.iter_mut().zip(&args) {
                    a.add(v);
                }
            }
            Kind::Sliding { windows, aggs } => {
                let limit = self.limits.rows_per_window;
                let full = self.state_full;
                let PumpState::Sliding { parts, rows } = &mut self.state.pumps[p] else { return };
                // Each window's partition key and the row's arguments, then room checked in all
                // before the row enters any.
                let mut entries = Vec::with_capacity(windows.len());
                for (w, def) in windows.iter().enumerate() {
                    let cx = row_cx(row, now, started, &[]);
                    let key = match def.partition.iter().map(|k| k.eval(&cx)).collect::<Result<Vec<_>, _>>() {
                        Ok(k) => Key(k),
                        Err(m) => return fail(out, pump, "Error_Evaluating", m, row),
                    };
                    let mine: Vec<usize> = (0..aggs.len()).filter(|&i| aggs[i].0 == w).collect();
                    let args = match mine
                        .iter()
                        .map(|&i| aggs[i].1.arg.as_ref().map_or(Ok(Value::Int(1)), |e| e.eval(&cx)))
                        .collect::<Result<Vec<_>, _>>()
                    {
                        Ok(a) => a,
                        Err(m) => return fail(out, pump, "Error_Evaluating", m, row),
                    };
                    let part = parts[w].0.entry(key.clone()).or_default();
                    match def.frame {
                        Frame::Range(r) => {
                            while part.front().is_some_and(|(t, _)| *t < row.rowtime.saturating_sub(r)) {
                                part.pop_front();
                            }
                        }
                        Frame::Rows(n) => {
                            while part.len() as u64 > n {
                                part.pop_front();
                            }
                        }
                    }
                    if part.len() >= limit || (full && part.is_empty()) {
                        let m = if full {
                            STATE_FULL.to_owned()
                        } else {
                            format!("The window holds {limit} rows, the most allowed (rows_per_window); the row was dropped.")
                        };
                        return fail(out, pump, "Error_Limit_Exceeded", m, row);
                    }
                    entries.push((key, mine, args));
                }
                let mut win_values = vec![Value::Null; aggs.len()];
                for (w, (key, mine, args)) in entries.into_iter().enumerate() {
                    let part = parts[w].0.entry(key).or_default();
                    part.push_back((row.rowtime, args));
                    for (slot, &i) in mine.iter().enumerate() {
                        win_values[i] = window_value(&aggs[i].1, part, slot);
                    }
                }
                // Now and then, partitions whose rows have all left their range.
                *rows += 1;
                if *rows % 1024 == 0 {
                    for (w, def) in windows.iter().enumerate() {
                        if let Frame::Range(r) = def.frame {
                            parts[w].0.retain(|_, part| {
                                part.back().is_some_and(|(t, _)| *t >= row.rowtime.saturating_sub(r))
                            });
                        }
                    }
                }
                let cx = Cx { win: &win_values, ..row_cx(row, now, started, &[]) };
                match project(pump, &cx, row.rowtime, prog) {
                    Ok(r) => produced.push(r),
                    Err(m) => fail(out, pump, "Error_Evaluating", m, row),
                }
            }
        }
    }

    /// Closes a pump's windows that end at or before `bound`, emitting their rows.
    fn close(&mut self, p: usize, bound: i64, produced: &mut Vec<Row>, out: &mut Emitted) {
        let prog = self.prog;
        let pump = &prog.pumps[p];
        let now = self.now_ms;
        let started = self.state.started_ms;
        match (&pump.kind, &mut self.state.pumps[p]) {
            (Kind::Tumbling { width, aggs, having, .. }, PumpState::Tumbling { open }) => {
                while let Some((&start, _)) = open.first_key_value() {
                    let end = start.saturating_add(*width);
                    if end > bound {
                        break;
                    }
                    let (_, groups) = open.pop_first().expect("looked at");
                    for (key, accs) in groups.0 {
                        emit_group(pump, prog, &key.0, &accs, aggs, having.as_ref(), end, now, started, produced, out);
                    }
                }
            }
            (Kind::Stagger { range, aggs, having, .. }, PumpState::Stagger { open }) => {
                let due: Vec<Key> = open
                    .iter()
                    .filter(|(_, (t, _))| t.saturating_add(*range) <= bound)
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut closing: Vec<(i64, Key, Vec<Acc>)> = due
                    .into_iter()
                    .filter_map(|k| open.remove(&k).map(|(t, accs)| (t.saturating_add(*range), k, accs)))
                    .collect();
                // In the order they close.
                closing.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
                for (end, key, accs) in closing {
                    emit_group(pump, prog, &key.0, &accs, aggs, having.as_ref(), end, now, started, produced, out);
                }
            }
            _ => {}
        }
    }

    /// The state's size in bytes, about.
    pub fn state_size(&self) -> usize {
        let acc = 160;
        self.state
            .pumps
            .iter()
            .map(|p| match p {
                PumpState::Map { running } => running.len() * acc,
                PumpState::Tumbling { open } => open
                    .values()
                    .map(|g| {
                        g.0.iter()
                            .map(|(k, a)| k.0.iter().map(Value::size).sum::<usize>() + a.len() * acc)
                            .sum::<usize>()
                    })
                    .sum(),
                PumpState::Stagger { open } => {
                    open.iter().map(|(k, (_, a))| k.0.iter().map(Value::size).sum::<usize>() + a.len() * acc).sum()
                }
                PumpState::Sliding { parts, .. } => parts
                    .iter()
                    .map(|ps| {
                        ps.0.values()
                            .map(|part| {
                                part.iter().map(|(_, v)| 8 + v.iter().map(Value::size).sum::<usize>()).sum::<usize>()
                            })
                            .sum::<usize>()
                    })
                    .sum(),
            })
            .sum()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }
}

const STATE_FULL: &str = "The application's state is over its limit (state_bytes); the row was dropped.";

/// Whether a new group (or stagger window) may open: not while the state is over `state_bytes`,
/// nor past `groups_per_window` (`full_message` says which bound).
fn room(state_full: bool, groups: usize, limit: usize, full_message: impl FnOnce() -> String) -> Result<(), String> {
    if state_full {
        return Err(STATE_FULL.into());
    }
    if groups >= limit {
        return Err(full_message());
    }
    Ok(())
}

fn fail(out: &mut Emitted, pump: &Pump, name: &'static str, message: String, row: &Row) {
    out.failures.push(Failure { name, message, row: Some(row.clone()), pump: pump.name.clone() });
}

fn row_cx<'a>(row: &'a Row, now_ms: i64, started_ms: i64, running: &'a [Value]) -> Cx<'a> {
    Cx {
        row: &row.values,
        rowtime: row.rowtime,
        arrival: row.arrival,
        keys: &[],
        aggs: &[],
        running,
        win: &[],
        now_ms,
        started_ms,
    }
}

fn agg_args(aggs: &[Agg], cx: &Cx) -> Result<Vec<Value>, String> {
    aggs.iter().map(|a| a.arg.as_ref().map_or(Ok(Value::Int(1)), |e| e.eval(cx))).collect()
}

/// An aggregate over a window partition; `slot` is its argument's place in each entry.
fn window_value(agg: &Agg, part: &Partition, slot: usize) -> Value {
    if let AggFn::Lag(n) = agg.func {
        let n = n as usize;
        return if part.len() > n { part[part.len() - 1 - n].1[slot].clone() } else { Value::Null };
    }
    let mut acc = Acc::new();
    for (_, args) in part {
        acc.add(&args[slot]);
    }
    acc.value(agg.func)
}

#[allow(clippy::too_many_arguments)]
fn emit_group(
    pump: &Pump,
    prog: &Program,
    keys: &[Value],
    accs: &[Acc],
    aggs: &[Agg],
    having: Option<&super::expr::Expr>,
    rowtime: i64,
    now: i64,
    started: i64,
    produced: &mut Vec<Row>,
    out: &mut Emitted,
) {
    let values: Vec<Value> = accs.iter().zip(aggs).map(|(a, g)| a.value(g.func)).collect();
    let cx = Cx {
        row: &[],
        rowtime,
        arrival: rowtime,
        keys,
        aggs: &values,
        running: &[],
        win: &[],
        now_ms: now,
        started_ms: started,
    };
    if let Some(h) = having {
        match h.eval(&cx).and_then(|v| truth(&v)) {
            Ok(Some(true)) => {}
            Ok(_) => return,
            Err(m) => {
                out.failures.push(Failure { name: "Error_Evaluating", message: m, row: None, pump: pump.name.clone() });
                return;
            }
        }
    }
    match project(pump, &cx, rowtime, prog) {
        Ok(r) => produced.push(r),
        Err(m) => {
            out.failures.push(Failure { name: "Error_Evaluating", message: m, row: None, pump: pump.name.clone() })
        }
    }
}

/// The pump's output row: its projection coerced to the target's columns.
fn project(pump: &Pump, cx: &Cx, rowtime: i64, prog: &Program) -> Result<Row, String> {
    let cols = &prog.streams[pump.target].columns;
    let mut values = Vec::with_capacity(cols.len());
    for (e, c) in pump.project.iter().zip(cols) {
        values.push(c.ty.coerce(e.eval(cx)?).map_err(|m| format!("column {}: {m}", c.name))?);
    }
    let rowtime = match &pump.rowtime {
        Some(e) => match e.eval(cx)? {
            Value::Ts(t) => t,
            other => return Err(format!("ROWTIME must be a TIMESTAMP, not {}", other.to_text())),
        },
        None => rowtime,
    };
    Ok(Row { rowtime, arrival: cx.arrival, values })
}

#[cfg(test)]
mod tests {
    use super::super::compile::{compile, Column, InputSpec};
    use super::super::value::SqlType;
    use super::*;

    fn prog(code: &str) -> Program {
        let input = InputSpec {
            name_prefix: "SOURCE_SQL_STREAM".into(),
            columns: vec![
                Column { name: "K".into(), ty: SqlType::Varchar(8) },
                Column { name: "V".into(), ty: SqlType::Double },
            ],
        };
        compile(code, &[input], &[]).unwrap()
    }

    fn row(t: i64, k: &str, v: f64) -> Row {
        Row { rowtime: t, arrival: t, values: vec![Value::Str(k.into()), Value::Float(v)] }
    }

    fn run(p: &Program, out_stream: &str, rows: Vec<Row>, end: i64) -> Vec<Row> {
        let mut e = Engine::new(p, State::new(p, 0), Limits::default(), Vec::new());
        let src = p.stream("SOURCE_SQL_STREAM_001").unwrap();
        let target = p.stream(out_stream).unwrap();
        let mut observed = vec![false; p.streams.len()];
        observed[target] = true;
        let mut out = Emitted::default();
        for r in rows {
            let t = r.rowtime;
            e.insert(src, vec![r], t, &observed, &mut out);
        }
        e.advance(end, end, &observed, &mut out);
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        out.rows.into_iter().map(|(_, r)| r).collect()
    }

    #[test]
    fn tumbling_windows_close_on_time() {
        let p = prog(
            "CREATE PUMP p AS INSERT INTO o SELECT STREAM k, COUNT(*) AS n, SUM(v) AS s, \
             STEP(SOURCE_SQL_STREAM_001.ROWTIME BY INTERVAL '10' SECOND) AS w FROM SOURCE_SQL_STREAM_001 \
             GROUP BY k, STEP(SOURCE_SQL_STREAM_001.ROWTIME BY INTERVAL '10' SECOND)",
        );
        let rows = vec![
            row(1000, "a", 1.0),
            row(2000, "b", 2.0),
            row(9999, "a", 3.0),
            row(10_000, "a", 4.0),
            row(35_000, "b", 5.0),
        ];
        let got = run(&p, "O", rows, 40_000);
        let simple: Vec<(i64, String, i64, f64)> = got
            .iter()
            .map(|r| {
                (r.rowtime, r.values[0].to_text(), r.values[1].as_f64().unwrap() as i64, r.values[2].as_f64().unwrap())
            })
            .collect();
        assert_eq!(
            simple,
            vec![
                (10_000, "a".into(), 2, 4.0),
                (10_000, "b".into(), 1, 2.0),
                (20_000, "a".into(), 1, 4.0),
                (40_000, "b".into(), 1, 5.0),
            ],
            "window ends as ROWTIME, the empty window 20-30 s emits nothing, the last closes by advance"
        );
    }

    #[test]
    fn sliding_windows_match_brute_force() {
        let p = prog(
            "CREATE PUMP p AS INSERT INTO o SELECT STREAM k, AVG(v) OVER w AS a, COUNT(*) OVER w AS n, \
             STDDEV_SAMP(v) OVER w AS sd, LAG(v, 1) OVER w AS prev FROM SOURCE_SQL_STREAM_001 \
             WINDOW w AS (PARTITION BY k RANGE INTERVAL '5' SECOND PRECEDING)",
        );
        let mut rows = Vec::new();
        let mut x: u64 = 7;
        for i in 0..300i64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let k = if x >> 60 < 8 { "a" } else { "b" };
            rows.push(row(i * 700, k, (x >> 40) as f64 / 1000.0));
        }
        let got = run(&p, "O", rows.clone(), 1_000_000);
        assert_eq!(got.len(), rows.len());
        for (r, g) in rows.iter().zip(&got) {
            let k = r.values[0].to_text();
            let win: Vec<f64> = rows
                .iter()
                .filter(|o| o.values[0].to_text() == k && o.rowtime <= r.rowtime && o.rowtime >= r.rowtime - 5000)
                .map(|o| o.values[1].as_f64().unwrap())
                .collect();
            let n = win.len() as f64;
            let mean = win.iter().sum::<f64>() / n;
            assert!((g.values[1].as_f64().unwrap() - mean).abs() < 1e-6);
            assert_eq!(g.values[2], Value::Int(win.len() as i64));
            if win.len() > 1 {
                let sd = (win.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
                assert!((g.values[3].as_f64().unwrap() - sd).abs() < 1e-6);
                assert_eq!(g.values[4].as_f64().unwrap(), win[win.len() - 2]);
            } else {
                assert_eq!(g.values[3], Value::Null);
                assert_eq!(g.values[4], Value::Null);
            }
        }
    }

    #[test]
    fn stagger_windows_open_per_key() {
        let p = prog(
            "CREATE PUMP p AS INSERT INTO o SELECT STREAM k, COUNT(*) AS n FROM SOURCE_SQL_STREAM_001 \
             WINDOWED BY STAGGER (PARTITION BY k RANGE INTERVAL '1' MINUTE)",
        );
        let rows = vec![
            row(1000, "a", 1.0),
            row(30_000, "b", 1.0),
            row(50_000, "a", 1.0),
            row(61_000, "a", 1.0),
            row(95_000, "b", 1.0),
        ];
        let got = run(&p, "O", rows, 200_000);
        let simple: Vec<(i64, String, Value)> =
            got.iter().map(|r| (r.rowtime, r.values[0].to_text(), r.values[1].clone())).collect();
        assert_eq!(
            simple,
            vec![
                (61_000, "a".into(), Value::Int(2)),
                (90_000, "b".into(), Value::Int(1)),
                (121_000, "a".into(), Value::Int(1)),
                (155_000, "b".into(), Value::Int(1)),
            ]
        );
    }

    #[test]
    fn state_round_trips_and_replays_exactly() {
        let p = prog(
            "CREATE PUMP p AS INSERT INTO o SELECT STREAM k, AVG(v) AS a, FLOOR(SOURCE_SQL_STREAM_001.ROWTIME TO MINUTE) AS m \
             FROM SOURCE_SQL_STREAM_001 GROUP BY k, FLOOR(SOURCE_SQL_STREAM_001.ROWTIME TO MINUTE)",
        );
        let rows: Vec<Row> = (0..50).map(|i| row(i * 7_000, if i % 3 == 0 { "x" } else { "y" }, i as f64)).collect();
        let whole = run(&p, "O", rows.clone(), 1_000_000);
        // Half, a checkpoint through JSON, then the rest.
        let src = p.stream("SOURCE_SQL_STREAM_001").unwrap();
        let mut observed = vec![false; p.streams.len()];
        observed[p.stream("O").unwrap()] = true;
        let mut out = Emitted::default();
        let mut e = Engine::new(&p, State::new(&p, 0), Limits::default(), Vec::new());
        for r in rows[..25].iter().cloned() {
            let t = r.rowtime;
            e.insert(src, vec![r], t, &observed, &mut out);
        }
        let saved = serde_json::to_vec(&e.state).unwrap();
        let state: State = serde_json::from_slice(&saved).unwrap();
        assert!(state.fits(&p));
        let mut e = Engine::new(&p, state, Limits::default(), Vec::new());
        for r in rows[25..].iter().cloned() {
            let t = r.rowtime;
            e.insert(src, vec![r], t, &observed, &mut out);
        }
        e.advance(1_000_000, 1_000_000, &observed, &mut out);
        let resumed: Vec<Row> = out.rows.into_iter().map(|(_, r)| r).collect();
        assert_eq!(resumed, whole);
    }

    #[test]
    fn a_full_window_refuses_new_groups() {
        let p = prog(
            "CREATE PUMP p AS INSERT INTO o SELECT STREAM k, COUNT(*) AS n FROM SOURCE_SQL_STREAM_001 \
             GROUP BY k, FLOOR(SOURCE_SQL_STREAM_001.ROWTIME TO MINUTE)",
        );
        let limits = Limits { groups_per_window: 2, ..Limits::default() };
        let mut e = Engine::new(&p, State::new(&p, 0), limits, Vec::new());
        let src = p.stream("SOURCE_SQL_STREAM_001").unwrap();
        let observed = vec![true; p.streams.len()];
        let mut out = Emitted::default();
        e.insert(
            src,
            vec![row(1, "a", 1.0), row(2, "b", 1.0), row(3, "c", 1.0), row(4, "a", 1.0)],
            4,
            &observed,
            &mut out,
        );
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].name, "Error_Limit_Exceeded");
    }
}
