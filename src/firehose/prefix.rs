//! S3 object keys as Firehose makes them: prefix expressions and the object name. Pure.
//!
//! - `!{timestamp:<pattern>}`: a Java `DateTimeFormatter` pattern (the letters y, M, d, H, h, m,
//!   s, S, a, E, D, `'quoted'` literals, `''` for a quote) on the arrival time of the oldest
//!   record in the object, in UTC; every instance in a key shows the same instant.
//! - `!{firehose:random-string}`: 11 characters, each instance new.
//! - `!{firehose:error-output-type}`: the error kind (error prefixes only).
//! - No prefix: `yyyy/MM/dd/HH/`. A prefix without a timestamp expression gets `yyyy/MM/dd/HH/`
//!   appended (no `/` between).
//! - The object name: `<delivery stream>-<version>-yyyy-MM-dd-HH-mm-ss-<id><extension>`.
//!
//! Randomness is the caller's (`random` gives the characters), so that a key can be derived
//! again from the same input after a crash.

/// A piece of an evaluated prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Timestamp(Vec<Field>),
    RandomString,
    ErrorOutputType,
    PartitionKeyFromQuery(String),
    PartitionKeyFromLambda(String),
}

/// One element of a date-time pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Literal(String),
    /// A pattern letter and how many times it repeats.
    Letter(char, usize),
}

/// A parsed prefix; the default is the empty one (AWS's `yyyy/MM/dd/HH/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefix {
    parts: Vec<Part>,
}

/// The kinds of namespace a prefix expression names.
const NAMESPACES: &str = "timestamp, firehose, partitionKeyFromQuery, partitionKeyFromLambda";

impl Prefix {
    /// Parses a prefix; the error is the message AWS's InvalidArgumentException carries.
    pub fn parse(text: &str) -> Result<Prefix, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while let Some(at) = rest.find("!{") {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("The expression '{}' is not closed with '}}'.", &rest[at..]));
            };
            let expr = &after[..end];
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            let (ns, arg) = expr.split_once(':').unwrap_or((expr, ""));
            parts.push(match (ns, arg) {
                ("timestamp", p) if !p.is_empty() => Part::Timestamp(parse_pattern(p)?),
                ("firehose", "random-string") => Part::RandomString,
                ("firehose", "error-output-type") => Part::ErrorOutputType,
                ("partitionKeyFromQuery", k) if !k.is_empty() => Part::PartitionKeyFromQuery(k.to_owned()),
                ("partitionKeyFromLambda", k) if !k.is_empty() => Part::PartitionKeyFromLambda(k.to_owned()),
                ("firehose", other) => {
                    return Err(format!(
                        "The expression '!{{{expr}}}' is not valid: firehose:{other} is not one of random-string, error-output-type."
                    ))
                }
                _ => {
                    return Err(format!(
                        "The expression '!{{{expr}}}' is not valid: the namespace must be one of {NAMESPACES}, with an argument."
                    ))
                }
            });
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Prefix { parts })
    }

    pub fn has_timestamp(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Timestamp(_)))
    }

    pub fn has_expressions(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    pub fn has_error_output_type(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::ErrorOutputType))
    }

    pub fn has_partition_keys(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::PartitionKeyFromQuery(_) | Part::PartitionKeyFromLambda(_)))
    }

    /// The prefix for an object whose oldest record arrived at `ts_ms`. `error_type` fills
    /// `!{firehose:error-output-type}`; `random` gives 11 characters for each random string;
    /// `key` gives partition keys by (from query, name).
    pub fn evaluate(
        &self,
        ts_ms: i64,
        error_type: &str,
        random: &mut dyn FnMut() -> String,
        key: &dyn Fn(bool, &str) -> Option<String>,
    ) -> String {
        let t = Civil::from_ms(ts_ms);
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Timestamp(fields) => out.push_str(&format_fields(fields, &t)),
                Part::RandomString => out.push_str(&random()),
                Part::ErrorOutputType => out.push_str(error_type),
                Part::PartitionKeyFromQuery(k) => out.push_str(&key(true, k).unwrap_or_default()),
                Part::PartitionKeyFromLambda(k) => out.push_str(&key(false, k).unwrap_or_default()),
            }
        }
        if !self.has_timestamp() {
            out.push_str(&format_fields(&default_fields(), &t));
        }
        out
    }
}

/// `yyyy/MM/dd/HH/`.
fn default_fields() -> Vec<Field> {
    vec![
        Field::Letter('y', 4),
        Field::Literal("/".into()),
        Field::Letter('M', 2),
        Field::Literal("/".into()),
        Field::Letter('d', 2),
        Field::Literal("/".into()),
        Field::Letter('H', 2),
        Field::Literal("/".into()),
    ]
}

/// A Java `SimpleDateFormat` pattern as its fields.
pub fn parse_pattern(p: &str) -> Result<Vec<Field>, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // 'text' is literal; '' is a quote.
            if chars.get(i + 1) == Some(&'\'') {
                out.push(Field::Literal("'".into()));
                i += 2;
                continue;
            }
            let mut lit = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("The timestamp pattern '{p}' has an unclosed quote.")),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        lit.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        lit.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Field::Literal(lit));
        } else if c.is_ascii_alphabetic() {
            let mut n = 1;
            while chars.get(i + n) == Some(&c) {
                n += 1;
            }
            if !"yuMLdHhmsSaEDk".contains(c) {
                return Err(format!("The timestamp pattern '{p}' uses the letter '{c}', which is not supported."));
            }
            out.push(Field::Letter(c, n));
            i += n;
        } else {
            out.push(Field::Literal(c.to_string()));
            i += 1;
        }
    }
    Ok(out)
}

/// A UTC calendar instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
    /// 1 = Monday.
    pub weekday: u32,
    pub day_of_year: u32,
}

impl Civil {
    pub fn from_ms(ms: i64) -> Civil {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let day_of_year = BEFORE[month as usize - 1] + day + u32::from(leap && month > 2);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3_600_000) as u32,
            minute: (rem / 60_000 % 60) as u32,
            second: (rem / 1000 % 60) as u32,
            millis: (rem % 1000) as u32,
            weekday: ((days + 3).rem_euclid(7) + 1) as u32,
            day_of_year,
        }
    }
}

pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

fn pad(v: i64, width: usize) -> String {
    format!("{v:0width$}")
}

/// An instant formatted by a pattern's fields.
pub fn format_fields(fields: &[Field], t: &Civil) -> String {
    let mut out = String::new();
    for f in fields {
        match f {
            Field::Literal(s) => out.push_str(s),
            Field::Letter(c, n) => {
                let n = *n;
                let text = match c {
                    'y' | 'u' if n == 2 => pad(t.year.rem_euclid(100), 2),
                    'y' | 'u' => pad(t.year, n),
                    'M' | 'L' if n >= 4 => MONTHS[t.month as usize - 1].to_owned(),
                    'M' | 'L' if n == 3 => MONTHS[t.month as usize - 1][..3].to_owned(),
                    'M' | 'L' => pad(t.month.into(), n),
                    'd' => pad(t.day.into(), n),
                    'D' => pad(t.day_of_year.into(), n),
                    'H' => pad(t.hour.into(), n),
                    'k' => pad(if t.hour == 0 { 24 } else { t.hour.into() }, n),
                    'h' => pad(if t.hour % 12 == 0 { 12 } else { (t.hour % 12).into() }, n),
                    'm' => pad(t.minute.into(), n),
                    's' => pad(t.second.into(), n),
                    'S' => {
                        let ms = pad(t.millis.into(), 3);
                        let mut s: String = ms.chars().take(n).collect();
                        while s.len() < n {
                            s.push('0');
                        }
                        s
                    }
                    'a' => (if t.hour < 12 { "AM" } else { "PM" }).to_owned(),
                    'E' if n >= 4 => DAYS[t.weekday as usize - 1].to_owned(),
                    'E' => DAYS[t.weekday as usize - 1][..3].to_owned(),
                    _ => String::new(),
                };
                out.push_str(&text);
            }
        }
    }
    out
}

/// The object name after the prefix: `<stream>-<version>-yyyy-MM-dd-HH-mm-ss-<id><ext>`.
pub fn object_name(stream: &str, version: u64, ts_ms: i64, id: &str, extension: &str) -> String {
    let t = Civil::from_ms(ts_ms);
    format!(
        "{stream}-{version}-{}-{:02}-{:02}-{:02}-{:02}-{:02}-{id}{extension}",
        pad(t.year, 4),
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second
    )
}

/// A UUID-shaped id from 16 bytes (the caller derives them from the object's input range).
pub fn uuid_from(bytes: [u8; 16]) -> String {
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// 11 characters of `[a-zA-Z0-9]` from a seed.
pub fn random_string(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    (0..11)
        .map(|_| {
            // splitmix64
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ALPHABET[(z % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_767_323_045_678; // 2026-01-02T03:04:05.678Z, a Friday

    fn eval(p: &str) -> String {
        let mut n = 0;
        Prefix::parse(p).unwrap().evaluate(
            T,
            "processing-failed",
            &mut || {
                n += 1;
                format!("R{n}")
            },
            &|q, k| Some(format!("{}{k}", if q { "q-" } else { "l-" })),
        )
    }

    #[test]
    fn civil_time() {
        let c = Civil::from_ms(T);
        assert_eq!((c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis), (2026, 1, 2, 3, 4, 5, 678));
        assert_eq!((c.weekday, c.day_of_year), (5, 2));
        let leap = Civil::from_ms(951_782_400_000); // 2000-02-29
        assert_eq!((leap.year, leap.month, leap.day, leap.day_of_year), (2000, 2, 29, 60));
        let before = Civil::from_ms(-1); // 1969-12-31T23:59:59.999
        assert_eq!((before.year, before.month, before.day, before.hour, before.weekday), (1969, 12, 31, 23, 3));
    }

    #[test]
    fn the_seed_prefix_and_the_defaults() {
        assert_eq!(
            eval("sensor-data/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"),
            "sensor-data/year=2026/month=01/day=02/"
        );
        assert_eq!(eval(""), "2026/01/02/03/");
        assert_eq!(eval("logs"), "logs2026/01/02/03/", "no slash is added");
        assert_eq!(eval("errors/!{firehose:error-output-type}/"), "errors/processing-failed/2026/01/02/03/");
        assert_eq!(eval("a/!{firehose:random-string}/!{firehose:random-string}/!{timestamp:HH}"), "a/R1/R2/03");
        assert_eq!(eval("!{partitionKeyFromQuery:id}/!{partitionKeyFromLambda:x}/!{timestamp:yy}"), "q-id/l-x/26");
    }

    #[test]
    fn java_patterns() {
        assert_eq!(eval("!{timestamp:yyyy-MM-dd'T'HH:mm:ss.SSS}"), "2026-01-02T03:04:05.678");
        assert_eq!(eval("!{timestamp:EEE MMM d h a ''}"), "Fri Jan 2 3 AM '");
        assert_eq!(eval("!{timestamp:EEEE MMMM DDD}"), "Friday January 002");
        assert_eq!(eval("!{timestamp:'quoted ''text'''}"), "quoted 'text'");
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for bad in [
            "!{timestamp:yyyy",
            "!{unknown:x}",
            "!{firehose:nope}",
            "!{timestamp:}",
            "!{timestamp:yyyy'x}",
            "!{timestamp:q}",
        ] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
        let p = Prefix::parse("x/!{firehose:error-output-type}").unwrap();
        assert!(p.has_error_output_type() && p.has_expressions() && !p.has_timestamp());
    }

    #[test]
    fn object_names() {
        let id = uuid_from([0xab; 16]);
        assert_eq!(id, "abababab-abab-abab-abab-abababababab");
        assert_eq!(object_name("s", 1, T, &id, ".gz"), format!("s-1-2026-01-02-03-04-05-{id}.gz"));
        let r = random_string(7);
        assert_eq!(r.len(), 11);
        assert!(r.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(r, random_string(7));
        assert_ne!(r, random_string(8));
    }
}
