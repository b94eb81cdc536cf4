//! Input schemas: how a record becomes rows of an in-application stream (JSON with JSONPath
//! mappings, or CSV by position), and how a schema is inferred from sample records
//! (DiscoverInputSchema).

use serde_json::{json, Value as Json};

use super::sql::compile::Column;
use super::sql::value::{SqlType, Value};

/// One step of a JSONPath.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Field(String),
    Index(usize),
    /// `[*]` or `[0:]`: every element.
    All,
}

fn parse_path(p: &str) -> Result<Vec<Seg>, String> {
    let bad = || format!("The JSONPath {p} is not supported (use $.a.b, $['a'] or $.a[0]).");
    let rest = p.trim().strip_prefix('$').ok_or_else(bad)?;
    let b: Vec<char> = rest.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        match b[i] {
            '.' => {
                let start = i + 1;
                i = start;
                while i < b.len() && b[i] != '.' && b[i] != '[' {
                    i += 1;
                }
                if i == start {
                    return Err(bad());
                }
                out.push(Seg::Field(b[start..i].iter().collect()));
            }
            '[' => {
                let end = b[i..].iter().position(|&c| c == ']').ok_or_else(bad)? + i;
                let inner: String = b[i + 1..end].iter().collect();
                let inner = inner.trim();
                if inner == "*" || inner == "0:" {
                    out.push(Seg::All);
                } else if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                    out.push(Seg::Field(q.to_owned()));
                } else if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    out.push(Seg::Field(q.to_owned()));
                } else {
                    out.push(Seg::Index(inner.parse().map_err(|_| bad())?));
                }
                i = end + 1;
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

fn select<'a>(v: &'a Json, path: &[Seg], out: &mut Vec<&'a Json>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(v);
        return;
    };
    match first {
        Seg::Field(f) => {
            if let Some(x) = v.get(f) {
                select(x, rest, out);
            }
        }
        Seg::Index(i) => {
            if let Some(x) = v.get(*i) {
                select(x, rest, out);
            }
        }
        Seg::All => {
            if let Some(a) = v.as_array() {
                for x in a {
                    select(x, rest, out);
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Format {
    Json { row_path: Vec<Seg>, columns: Vec<Vec<Seg>> },
    Csv { row_delimiter: String, column_delimiter: String },
}

/// How the records of one input become rows.
#[derive(Debug, Clone)]
pub struct Mapping {
    format: Format,
    pub columns: Vec<Column>,
}

/// The schema's columns (RecordColumns).
pub fn columns(schema: &Json) -> Result<Vec<Column>, String> {
    let mut out: Vec<Column> = Vec::new();
    for c in schema["RecordColumns"].as_array().into_iter().flatten() {
        let name = c["Name"].as_str().unwrap_or_default().to_owned();
        let ty =
            SqlType::parse(c["SqlType"].as_str().unwrap_or_default()).map_err(|e| format!("Column {name}: {e}"))?;
        if out.iter().any(|o| o.name == name) {
            return Err(format!("The column {name} appears twice in the input schema."));
        }
        out.push(Column { name, ty });
    }
    if out.is_empty() {
        return Err("The input schema needs at least one column.".into());
    }
    Ok(out)
}

impl Mapping {
    /// The mapping of an InputSchema (SourceSchema shape).
    pub fn new(schema: &Json) -> Result<Mapping, String> {
        let columns = columns(schema)?;
        let format = &schema["RecordFormat"];
        let params = &format["MappingParameters"];
        let format = match format["RecordFormatType"].as_str() {
            Some("JSON") => {
                let row = params.pointer("/JSONMappingParameters/RecordRowPath").and_then(Json::as_str).unwrap_or("$");
                let row_path = parse_path(row)?;
                let mut paths = Vec::new();
                for c in schema["RecordColumns"].as_array().into_iter().flatten() {
                    let name = c["Name"].as_str().unwrap_or_default();
                    let full = match c["Mapping"].as_str() {
                        Some(m) if !m.trim().is_empty() => parse_path(m)?,
                        _ => vec![Seg::Field(name.to_owned())],
                    };
                    // A mapping under the row path is read from the row.
                    let strip = row_path.iter().filter(|s| **s != Seg::All).count();
                    let plain: Vec<Seg> = row_path.iter().filter(|s| **s != Seg::All).cloned().collect();
                    let relative =
                        if full.len() >= strip && full[..strip] == plain[..] { full[strip..].to_vec() } else { full };
                    paths.push(relative);
                }
                Format::Json { row_path, columns: paths }
            }
            Some("CSV") => {
                let csv = &params["CSVMappingParameters"];
                Format::Csv {
                    row_delimiter: unescape(csv["RecordRowDelimiter"].as_str().unwrap_or("\n")),
                    column_delimiter: unescape(csv["RecordColumnDelimiter"].as_str().unwrap_or(",")),
                }
            }
            _ => return Err("RecordFormatType must be JSON or CSV.".into()),
        };
        Ok(Mapping { format, columns })
    }

    /// The rows of one record, each a value per column or why it does not fit the schema.
    pub fn rows(&self, data: &[u8]) -> Vec<Result<Vec<Value>, String>> {
        match &self.format {
            Format::Json { row_path, columns } => {
                // One JSON document, or several one after another (a reference data object of
                // JSON lines).
                let mut docs = Vec::new();
                for d in serde_json::Deserializer::from_slice(data).into_iter::<Json>() {
                    match d {
                        Ok(d) => docs.push(d),
                        Err(e) => return vec![Err(format!("The record is not JSON: {e}"))],
                    }
                }
                let mut rows = Vec::new();
                for doc in &docs {
                    select(doc, row_path, &mut rows);
                }
                if rows.is_empty() {
                    return vec![Err("The record has nothing at the RecordRowPath.".into())];
                }
                rows.into_iter()
                    .map(|r| {
                        columns
                            .iter()
                            .zip(&self.columns)
                            .map(|(path, col)| {
                                let mut found = Vec::new();
                                select(r, path, &mut found);
                                let v = match found.first() {
                                    None | Some(Json::Null) => Value::Null,
                                    Some(Json::String(s)) => Value::Str(s.clone()),
                                    Some(Json::Bool(b)) => Value::Bool(*b),
                                    Some(Json::Number(n)) => match n.as_i64() {
                                        Some(i) => Value::Int(i),
                                        None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                                    },
                                    Some(other) => Value::Str(other.to_string()),
                                };
                                col.ty.coerce(v).map_err(|e| format!("column {}: {e}", col.name))
                            })
                            .collect()
                    })
                    .collect()
            }
            Format::Csv { row_delimiter, column_delimiter } => {
                let text = match std::str::from_utf8(data) {
                    Ok(t) => t,
                    Err(_) => return vec![Err("The record is not UTF-8.".into())],
                };
                text.split(row_delimiter.as_str())
                    .filter(|l| !l.is_empty())
                    .map(|line| {
                        let fields: Vec<&str> = line.split(column_delimiter.as_str()).collect();
                        self.columns
                            .iter()
                            .enumerate()
                            .map(|(i, col)| match fields.get(i) {
                                None => Ok(Value::Null),
                                Some(f) => col
                                    .ty
                                    .coerce(Value::Str((*f).to_owned()))
                                    .map_err(|e| format!("column {}: {e}", col.name)),
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }
}

/// `\n`, `\t` and `\r` as written in a delimiter.
fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\r", "\r").replace("\\t", "\t")
}

/// Words KDA will not take as column names (a `COL_` prefix is added).
const RESERVED: &[&str] = &[
    "TIME",
    "TIMESTAMP",
    "DATE",
    "USER",
    "VALUE",
    "VALUES",
    "ORDER",
    "GROUP",
    "SELECT",
    "FROM",
    "WHERE",
    "TABLE",
    "STREAM",
    "ROWTIME",
    "KEY",
    "WINDOW",
    "YEAR",
    "MONTH",
    "DAY",
    "HOUR",
    "MINUTE",
    "SECOND",
    "COUNT",
    "SUM",
    "MIN",
    "MAX",
    "AVG",
    "CHAR",
    "VARCHAR",
    "INTEGER",
    "INT",
    "DOUBLE",
    "BOOLEAN",
    "CURRENT",
    "END",
    "START",
    "RANGE",
    "ROWS",
    "PARTITION",
];

/// A column name for an inferred field: letters, digits and `_`, not reserved, not starting
/// with a digit.
fn column_name(field: &str) -> String {
    let clean: String = field.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if clean.is_empty() {
        return "COL_0".into();
    }
    if clean.chars().next().is_some_and(|c| c.is_ascii_digit())
        || RESERVED.contains(&clean.to_ascii_uppercase().as_str())
        || clean != field
    {
        format!("COL_{clean}")
    } else {
        clean
    }
}

/// The type wide enough for every sample of one field.
fn infer_type(samples: &[&Json]) -> String {
    let mut kind = 0; // 0 integer, 1 bigint, 2 double, 3 boolean, 4 text
    let mut longest = 1usize;
    let mut any = false;
    for s in samples {
        let k = match s {
            Json::Null => continue,
            Json::Bool(_) => 3,
            Json::Number(n) => match n.as_i64() {
                Some(i) if i32::try_from(i).is_ok() => 0,
                Some(_) => 1,
                None => 2,
            },
            Json::String(t) => {
                longest = longest.max(t.chars().count());
                4
            }
            other => {
                longest = longest.max(other.to_string().len());
                4
            }
        };
        kind = if !any {
            k
        } else if (k <= 2 && kind <= 2) || k == kind {
            kind.max(k)
        } else {
            4
        };
        any = true;
    }
    match kind {
        0 => "INTEGER".into(),
        1 => "BIGINT".into(),
        2 => "DOUBLE".into(),
        3 => "BOOLEAN".into(),
        _ => format!("VARCHAR({})", longest.next_power_of_two().max(4)),
    }
}

/// A JSON document with its objects' keys in the order written (serde_json's map sorts them).
enum Ordered {
    Object(Vec<(String, Ordered)>),
    Other,
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Ordered>()? {
                    out.push((k, v));
                }
                Ok(Ordered::Object(out))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Ordered, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Ordered::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A schema inferred from sample records: JSON objects (their fields in the order written,
/// nested objects flattened by path), or CSV lines (columns COL1, COL2, ...).
pub fn discover(samples: &[Vec<u8>]) -> Result<Json, String> {
    let docs: Vec<Json> =
        samples.iter().filter_map(|s| serde_json::from_slice::<Json>(s).ok()).filter(Json::is_object).collect();
    if !docs.is_empty() && docs.len() * 2 >= samples.len() {
        // Fields in the order first seen, with their paths.
        let mut fields: Vec<(String, Vec<String>)> = Vec::new();
        fn walk(v: &Ordered, path: &mut Vec<String>, fields: &mut Vec<(String, Vec<String>)>, depth: usize) {
            if let (Ordered::Object(o), true) = (v, depth < 8) {
                for (k, x) in o {
                    path.push(k.clone());
                    if matches!(x, Ordered::Object(_)) {
                        walk(x, path, fields, depth + 1);
                    } else if !fields.iter().any(|(_, p)| p == path) {
                        fields.push((path.join("_"), path.clone()));
                    }
                    path.pop();
                }
            }
        }
        for s in samples {
            if let Ok(d) = serde_json::from_slice::<Ordered>(s) {
                walk(&d, &mut Vec::new(), &mut fields, 0);
            }
        }
        if fields.is_empty() {
            return Err("The records have no fields.".into());
        }
        let columns: Vec<Json> = fields
            .iter()
            .map(|(name, path)| {
                let samples: Vec<&Json> =
                    docs.iter().filter_map(|d| path.iter().try_fold(d, |v, k| v.get(k))).collect();
                let mapping = format!("$.{}", path.join("."));
                json!({"Name": column_name(name), "Mapping": mapping, "SqlType": infer_type(&samples)})
            })
            .collect();
        return Ok(json!({
            "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
            "RecordEncoding": "UTF-8",
            "RecordColumns": columns,
        }));
    }
    let texts: Vec<&str> = samples.iter().filter_map(|s| std::str::from_utf8(s).ok()).collect();
    let lines: Vec<&str> =
        texts.iter().flat_map(|t| t.split('\n')).map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()).collect();
    let delimiter = [',', '|', '\t', ';']
        .into_iter()
        .max_by_key(|d| lines.iter().filter(|l| l.contains(*d)).count())
        .unwrap_or(',');
    let width = lines.iter().map(|l| l.split(delimiter).count()).max().unwrap_or(0);
    if lines.is_empty() || width < 2 {
        return Err(
            "Data format is not valid. The server is not able to detect a schema for the given streaming source."
                .into(),
        );
    }
    let columns: Vec<Json> = (0..width)
        .map(|i| {
            let vals: Vec<Json> = lines
                .iter()
                .filter_map(|l| l.split(delimiter).nth(i))
                .map(|f| match serde_json::from_str::<Json>(f.trim()) {
                    Ok(n @ Json::Number(_)) => n,
                    _ => Json::String(f.to_owned()),
                })
                .collect();
            let refs: Vec<&Json> = vals.iter().collect();
            json!({"Name": format!("COL{}", i + 1), "SqlType": infer_type(&refs)})
        })
        .collect();
    let row = if texts.iter().any(|t| t.contains("\r\n")) { "\r\n" } else { "\n" };
    Ok(json!({
        "RecordFormat": {"RecordFormatType": "CSV", "MappingParameters": {"CSVMappingParameters": {"RecordRowDelimiter": row, "RecordColumnDelimiter": delimiter.to_string()}}},
        "RecordEncoding": "UTF-8",
        "RecordColumns": columns,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_csv_records_map_to_rows() {
        let schema = json!({
            "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
            "RecordColumns": [
                {"Name": "sensor_id", "SqlType": "VARCHAR(4)", "Mapping": "$.sensor_id"},
                {"Name": "t", "SqlType": "DOUBLE", "Mapping": "$.reading.temperature"},
            ]
        });
        let m = Mapping::new(&schema).unwrap();
        let rows = m.rows(br#"{"sensor_id": "sensor-1", "reading": {"temperature": 21}}"#);
        assert_eq!(rows, vec![Ok(vec![Value::Str("sens".into()), Value::Float(21.0)])]);
        assert!(m.rows(br#"{"sensor_id": "a", "reading": {"temperature": "hot"}}"#)[0].is_err());
        assert!(m.rows(b"not json")[0].is_err());
        let lines = m.rows(b"{\"sensor_id\": \"a\"}\n{\"sensor_id\": \"b\"}\n");
        assert_eq!(lines.len(), 2, "JSON lines are a row each");
        let csv = json!({
            "RecordFormat": {"RecordFormatType": "CSV", "MappingParameters": {"CSVMappingParameters": {"RecordRowDelimiter": "\\n", "RecordColumnDelimiter": ","}}},
            "RecordColumns": [{"Name": "A", "SqlType": "INTEGER"}, {"Name": "B", "SqlType": "VARCHAR(8)"}]
        });
        let m = Mapping::new(&csv).unwrap();
        assert_eq!(m.rows(b"1,x\n2,y\n").len(), 2);
    }

    #[test]
    fn schemas_are_discovered() {
        let s = discover(&[br#"{"sensor_id":"s-1","temperature":20.5,"n":3,"time":"x"}"#.to_vec()]).unwrap();
        let cols = s["RecordColumns"].as_array().unwrap();
        assert_eq!(cols[0], json!({"Name": "sensor_id", "Mapping": "$.sensor_id", "SqlType": "VARCHAR(4)"}));
        assert_eq!(cols[1]["SqlType"], "DOUBLE");
        assert_eq!(cols[2]["SqlType"], "INTEGER");
        assert_eq!(cols[3]["Name"], "COL_time");
        let s = discover(&[b"1,abc\n2,de\n".to_vec()]).unwrap();
        assert_eq!(s["RecordFormat"]["RecordFormatType"], "CSV");
        assert!(discover(&[b"plain".to_vec()]).is_err());
    }
}
