#![no_main]
//! The Kinesis Analytics SQL front end and compiler never panic, whatever the code.
use libfuzzer_sys::fuzz_target;
use sluice::analytics::sql::compile::{compile, Column, InputSpec, TableSpec};
use sluice::analytics::sql::value::SqlType;

fuzz_target!(|data: &[u8]| {
    let Ok(code) = std::str::from_utf8(data) else { return };
    let input = InputSpec {
        name_prefix: "SOURCE_SQL_STREAM".into(),
        columns: vec![
            Column { name: "SENSOR_ID".into(), ty: SqlType::Varchar(16) },
            Column { name: "TEMPERATURE".into(), ty: SqlType::Double },
        ],
    };
    let table = TableSpec {
        name: "REF".into(),
        columns: vec![
            Column { name: "SENSOR_ID".into(), ty: SqlType::Varchar(16) },
            Column { name: "SITE".into(), ty: SqlType::Varchar(32) },
        ],
    };
    let _ = compile(code, &[input], &[table]);
});
