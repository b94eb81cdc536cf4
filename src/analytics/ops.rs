//! The Kinesis Analytics (v1) operations: shapes in, shapes out, AWS's rules. The request has
//! passed the model's checks (types, ranges, patterns, enums) before it gets here.
//!
//! Every change but tagging needs `CurrentApplicationVersionId` to be the application's version
//! and moves it on by one; ids of inputs, outputs and the rest are `<version made>.<n>`, as AWS
//! numbers them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{runner, Application, State};
use crate::kinesis::epoch_seconds;
use crate::protocol::error::{ApiError, ApiResult};

/// Tags per application.
pub const TAGS_MAX: usize = 50;
/// Inputs, outputs and reference data sources per application (AWS's limits).
pub const INPUTS_MAX: usize = 1;
pub const OUTPUTS_MAX: usize = 3;
pub const REFERENCES_MAX: usize = 1;
/// How long STARTING, STOPPING and UPDATING last.
const SETTLE: Duration = Duration::from_millis(200);

pub async fn dispatch(a: &Arc<State>, op: &str, req: Value, account: &str) -> ApiResult<Value> {
    match op {
        "CreateApplication" => create(a, req).await,
        "DescribeApplication" => describe(a, req),
        "ListApplications" => list(a, req, account),
        "DeleteApplication" => delete(a, req).await,
        "StartApplication" => start(a, req).await,
        "StopApplication" => stop(a, req).await,
        "UpdateApplication" => update(a, req).await,
        "DiscoverInputSchema" => discover(a, req).await,
        "TagResource" => tag(a, req).await,
        "UntagResource" => untag(a, req).await,
        "ListTagsForResource" => list_tags(a, req),
        "AddApplicationInput" => change(a, req, add_input).await,
        "AddApplicationOutput" => change(a, req, add_output).await,
        "DeleteApplicationOutput" => change(a, req, delete_output).await,
        "AddApplicationReferenceDataSource" => change(a, req, add_reference).await,
        "DeleteApplicationReferenceDataSource" => change(a, req, delete_reference).await,
        "AddApplicationInputProcessingConfiguration" => change(a, req, add_processing).await,
        "DeleteApplicationInputProcessingConfiguration" => change(a, req, delete_processing).await,
        "AddApplicationCloudWatchLoggingOption" => change(a, req, add_logging).await,
        "DeleteApplicationCloudWatchLoggingOption" => change(a, req, delete_logging).await,
        _ => Err(ApiError::UnknownOperation(format!("Operation {op} is not supported by this daemon."))),
    }
}

fn text<'a>(v: &'a Value, member: &str) -> Option<&'a str> {
    v.get(member).and_then(Value::as_str)
}

fn name_of(req: &Value) -> String {
    text(req, "ApplicationName").unwrap_or_default().to_owned()
}

fn tags_of(v: Option<&Value>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in v.and_then(Value::as_array).into_iter().flatten() {
        let k = text(t, "Key").unwrap_or_default().to_owned();
        let v = text(t, "Value").unwrap_or_default().to_owned();
        match out.iter_mut().find(|(ek, _)| *ek == k) {
            Some(e) => e.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

fn too_many_tags() -> ApiError {
    ApiError::TooManyTags(format!("An application can have at most {TAGS_MAX} tags."))
}

/// An Input as DescribeApplication shows it.
fn input_description(a: &State, input: &Value, id: String) -> ApiResult<Value> {
    let prefix = text(input, "NamePrefix").unwrap_or_default();
    let mut d = json!({
        "InputId": id,
        "NamePrefix": prefix,
        "InAppStreamNames": [format!("{prefix}_001")],
        "InputSchema": input["InputSchema"].clone(),
        "InputParallelism": {"Count": 1},
        "InputStartingPositionConfiguration": {},
    });
    if let Some(n) = input.pointer("/InputParallelism/Count").and_then(Value::as_u64) {
        if n != 1 {
            return Err(ApiError::InvalidArgument(
                "InputParallelism Count greater than 1 is not supported by this server.".into(),
            ));
        }
    }
    match (input.get("KinesisStreamsInput"), input.get("KinesisFirehoseInput")) {
        (Some(k), None) => d["KinesisStreamsInputDescription"] = k.clone(),
        (None, Some(f)) => d["KinesisFirehoseInputDescription"] = f.clone(),
        _ => {
            return Err(ApiError::InvalidArgument(
                "An input must have exactly one of KinesisStreamsInput and KinesisFirehoseInput.".into(),
            ))
        }
    }
    let arn = input
        .pointer("/KinesisStreamsInput/ResourceARN")
        .or_else(|| input.pointer("/KinesisFirehoseInput/ResourceARN"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    runner::stream_of(a, arn).map_err(|e| ApiError::InvalidArgument(format!("The input {arn} cannot be read: {e}")))?;
    super::schema::Mapping::new(&input["InputSchema"]).map_err(ApiError::InvalidArgument)?;
    if let Some(p) = input.get("InputProcessingConfiguration") {
        d["InputProcessingConfigurationDescription"] = processing_description(p)?;
    }
    Ok(d)
}

fn processing_description(p: &Value) -> ApiResult<Value> {
    let _ = p;
    Err(ApiError::UnsupportedOperation(
        "Input preprocessing with a Lambda function is not supported by this server.".into(),
    ))
}

/// An Output as DescribeApplication shows it.
fn output_description(output: &Value, id: String) -> ApiResult<Value> {
    let mut d = json!({
        "OutputId": id,
        "Name": output["Name"].clone(),
        "DestinationSchema": output["DestinationSchema"].clone(),
    });
    match (output.get("KinesisStreamsOutput"), output.get("KinesisFirehoseOutput"), output.get("LambdaOutput")) {
        (Some(k), None, None) => d["KinesisStreamsOutputDescription"] = k.clone(),
        (None, Some(f), None) => d["KinesisFirehoseOutputDescription"] = f.clone(),
        (None, None, Some(_)) => {
            return Err(ApiError::UnsupportedOperation("LambdaOutput is not supported by this server.".into()))
        }
        _ => {
            return Err(ApiError::InvalidArgument(
                "An output must have exactly one of KinesisStreamsOutput, KinesisFirehoseOutput and LambdaOutput."
                    .into(),
            ))
        }
    }
    Ok(d)
}

fn reference_description(r: &Value, id: String) -> Value {
    json!({
        "ReferenceId": id,
        "TableName": r["TableName"].clone(),
        "S3ReferenceDataSourceDescription": r["S3ReferenceDataSource"].clone(),
        "ReferenceSchema": r["ReferenceSchema"].clone(),
    })
}

fn logging_description(l: &Value, id: String) -> Value {
    json!({"CloudWatchLoggingOptionId": id, "LogStreamARN": l["LogStreamARN"].clone(), "RoleARN": l["RoleARN"].clone()})
}

/// Compiles the code against the inputs: CodeValidationException with the reason if it fails.
fn check_code(app: &Application) -> ApiResult<()> {
    if app.code.trim().is_empty() {
        return Ok(());
    }
    runner::program(app).map(|_| ()).map_err(ApiError::CodeValidation)
}

fn check_counts(app: &Application) -> ApiResult<()> {
    if app.inputs.len() > INPUTS_MAX {
        return Err(ApiError::InvalidArgument(format!("An application can have at most {INPUTS_MAX} input.")));
    }
    if app.outputs.len() > OUTPUTS_MAX {
        return Err(ApiError::InvalidArgument(format!("An application can have at most {OUTPUTS_MAX} outputs.")));
    }
    if app.references.len() > REFERENCES_MAX {
        return Err(ApiError::InvalidArgument(format!(
            "An application can have at most {REFERENCES_MAX} reference data source."
        )));
    }
    let mut names: Vec<&str> = app.outputs.iter().filter_map(|o| o["Name"].as_str()).collect();
    names.sort();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(ApiError::InvalidArgument("Two outputs name the same in-application stream.".into()));
    }
    Ok(())
}

async fn create(a: &Arc<State>, req: Value) -> ApiResult<Value> {
    let name = name_of(&req);
    let _guard = a.control.lock().await;
    if a.get(&name).is_ok() {
        return Err(ApiError::ResourceInUse(format!("Application {name} already exists.")));
    }
    if a.all().len() >= a.svc.cfg.analytics.applications_max {
        return Err(ApiError::LimitExceeded(format!(
            "Exceeded the number of applications allowed ({}).",
            a.svc.cfg.analytics.applications_max
        )));
    }
    let tags = tags_of(req.get("Tags"));
    if tags.len() > TAGS_MAX {
        return Err(too_many_tags());
    }
    let now = a.svc.now_ms();
    let mut app = Application {
        name: name.clone(),
        incarnation: a.firehose.incarnation().await?,
        description: text(&req, "ApplicationDescription").map(str::to_owned),
        status: "READY".into(),
        version_id: 1,
        created_ms: now,
        updated_ms: now,
        code: text(&req, "ApplicationCode").unwrap_or_default().to_owned(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        references: Vec::new(),
        logging: Vec::new(),
        tags,
        run: 0,
        run_start: None,
    };
    for (i, input) in req.get("Inputs").and_then(Value::as_array).into_iter().flatten().enumerate() {
        app.inputs.push(input_description(a, input, format!("1.{}", i + 1))?);
    }
    for (i, output) in req.get("Outputs").and_then(Value::as_array).into_iter().flatten().enumerate() {
        app.outputs.push(output_description(output, format!("1.{}", i + 1))?);
    }
    for (i, l) in req.get("CloudWatchLoggingOptions").and_then(Value::as_array).into_iter().flatten().enumerate() {
        app.logging.push(logging_description(l, format!("1.{}", i + 1)));
    }
    check_counts(&app)?;
    check_code(&app)?;
    a.save(&app).await?;
    Ok(json!({"ApplicationSummary": summary(a, &app)}))
}

fn summary(a: &State, app: &Application) -> Value {
    json!({"ApplicationName": app.display_name(), "ApplicationARN": app.arn(&a.svc), "ApplicationStatus": app.status})
}

fn describe(a: &Arc<State>, req: Value) -> ApiResult<Value> {
    let app = a.get(&name_of(&req))?;
    let mut d = json!({
        "ApplicationName": app.display_name(),
        "ApplicationARN": app.arn(&a.svc),
        "ApplicationStatus": app.status,
        "CreateTimestamp": epoch_seconds(app.created_ms),
        "LastUpdateTimestamp": epoch_seconds(app.updated_ms),
        "ApplicationVersionId": app.version_id,
    });
    if let Some(desc) = &app.description {
        d["ApplicationDescription"] = json!(desc);
    }
    if !app.code.is_empty() {
        d["ApplicationCode"] = json!(app.code);
    }
    for (member, list) in [
        ("InputDescriptions", &app.inputs),
        ("OutputDescriptions", &app.outputs),
        ("ReferenceDataSourceDescriptions", &app.references),
        ("CloudWatchLoggingOptionDescriptions", &app.logging),
    ] {
        if !list.is_empty() {
            d[member] = json!(list);
        }
    }
    Ok(json!({"ApplicationDetail": d}))
}

/// Lists the applications of `account` (the caller's).
fn list(a: &Arc<State>, req: Value, account: &str) -> ApiResult<Value> {
    let limit = req.get("Limit").and_then(Value::as_u64).unwrap_or(50) as usize;
    let after = text(&req, "ExclusiveStartApplicationName");
    let mut apps: Vec<Application> = a
        .all()
        .into_iter()
        .filter(|x| a.svc.account_and_name(&x.name).0 == account)
        .filter(|x| after.is_none_or(|s| x.display_name() > s))
        .collect();
    apps.sort_by(|x, y| x.display_name().cmp(y.display_name()));
    let page: Vec<Value> = apps.iter().take(limit).map(|x| summary(a, x)).collect();
    Ok(json!({"ApplicationSummaries": page, "HasMoreApplications": apps.len() > limit}))
}

fn version_check(app: &Application, req: &Value) -> ApiResult<()> {
    let given = req.get("CurrentApplicationVersionId").and_then(Value::as_u64).unwrap_or(0);
    if given != app.version_id {
        return Err(ApiError::ConcurrentModification(format!(
            "Current application version id {given} does not match the application's version {} (it was changed meanwhile).",
            app.version_id
        )));
    }
    Ok(())
}

fn changeable(app: &Application) -> ApiResult<()> {
    if app.status != "READY" && app.status != "RUNNING" {
        return Err(ApiError::ResourceInUse(format!(
            "Application {} is {}; it can be changed when READY or RUNNING.",
            app.name, app.status
        )));
    }
    Ok(())
}

/// A versioned change: the version checked, the change applied to a copy and validated, the
/// version moved on, and a running application restarted on the new version.
async fn change(
    a: &Arc<State>,
    req: Value,
    apply: fn(&State, &mut Application, &Value, u64) -> ApiResult<()>,
) -> ApiResult<Value> {
    let _guard = a.control.lock().await;
    let mut app = a.get(&name_of(&req))?;
    changeable(&app)?;
    version_check(&app, &req)?;
    let next = app.version_id + 1;
    apply(a, &mut app, &req, next)?;
    check_counts(&app)?;
    check_code(&app)?;
    app.version_id = next;
    app.updated_ms = a.svc.now_ms();
    let running = app.status == "RUNNING";
    if running {
        app.status = "UPDATING".into();
    }
    a.save(&app).await?;
    if running {
        let a2 = a.clone();
        let name = app.name.clone();
        let incarnation = app.incarnation;
        crate::kinesis::after(SETTLE, async move { settle_status(&a2, &name, incarnation, "UPDATING").await }).await;
    }
    Ok(json!({}))
}

/// The counts of inputs, outputs and reference data sources are checked by `change`
/// (`check_counts`) once the addition is made.
fn add_input(a: &State, app: &mut Application, req: &Value, version: u64) -> ApiResult<()> {
    app.inputs.push(input_description(a, &req["Input"], format!("{version}.1"))?);
    Ok(())
}

fn add_output(_: &State, app: &mut Application, req: &Value, version: u64) -> ApiResult<()> {
    app.outputs.push(output_description(&req["Output"], format!("{version}.1"))?);
    Ok(())
}

fn remove_by_id(list: &mut Vec<Value>, member: &str, id: &str, what: &str) -> ApiResult<()> {
    let before = list.len();
    list.retain(|x| x[member].as_str() != Some(id));
    if list.len() == before {
        return Err(ApiError::ResourceNotFound(format!("The application has no {what} with id {id}.")));
    }
    Ok(())
}

fn delete_output(_: &State, app: &mut Application, req: &Value, _: u64) -> ApiResult<()> {
    remove_by_id(&mut app.outputs, "OutputId", text(req, "OutputId").unwrap_or_default(), "output")
}

fn add_reference(_: &State, app: &mut Application, req: &Value, version: u64) -> ApiResult<()> {
    let r = &req["ReferenceDataSource"];
    if r.get("S3ReferenceDataSource").is_none() {
        return Err(ApiError::InvalidArgument("A reference data source needs S3ReferenceDataSource.".into()));
    }
    super::schema::Mapping::new(&r["ReferenceSchema"]).map_err(ApiError::InvalidArgument)?;
    app.references.push(reference_description(r, format!("{version}.1")));
    Ok(())
}

fn delete_reference(_: &State, app: &mut Application, req: &Value, _: u64) -> ApiResult<()> {
    remove_by_id(
        &mut app.references,
        "ReferenceId",
        text(req, "ReferenceId").unwrap_or_default(),
        "reference data source",
    )
}

fn input_mut<'a>(app: &'a mut Application, req: &Value) -> ApiResult<&'a mut Value> {
    let id = text(req, "InputId").unwrap_or_default().to_owned();
    app.inputs
        .iter_mut()
        .find(|i| i["InputId"].as_str() == Some(id.as_str()))
        .ok_or_else(|| ApiError::ResourceNotFound(format!("The application has no input with id {id}.")))
}

fn add_processing(_: &State, app: &mut Application, req: &Value, _: u64) -> ApiResult<()> {
    let input = input_mut(app, req)?;
    input["InputProcessingConfigurationDescription"] = processing_description(&req["InputProcessingConfiguration"])?;
    Ok(())
}

fn delete_processing(_: &State, app: &mut Application, req: &Value, _: u64) -> ApiResult<()> {
    let input = input_mut(app, req)?;
    match input.as_object_mut().and_then(|o| o.remove("InputProcessingConfigurationDescription")) {
        Some(_) => Ok(()),
        None => Err(ApiError::ResourceNotFound("The input has no input processing configuration.".into())),
    }
}

fn add_logging(_: &State, app: &mut Application, req: &Value, version: u64) -> ApiResult<()> {
    let l = &req["CloudWatchLoggingOption"];
    if app.logging.iter().any(|x| x["LogStreamARN"] == l["LogStreamARN"]) {
        return Err(ApiError::InvalidArgument("The application already logs to this log stream.".into()));
    }
    app.logging.push(logging_description(l, format!("{version}.{}", app.logging.len() + 1)));
    Ok(())
}

fn delete_logging(_: &State, app: &mut Application, req: &Value, _: u64) -> ApiResult<()> {
    remove_by_id(
        &mut app.logging,
        "CloudWatchLoggingOptionId",
        text(req, "CloudWatchLoggingOptionId").unwrap_or_default(),
        "CloudWatch logging option",
    )
}

/// UpdateApplication: any of the code, the inputs, outputs, reference data sources and logging
/// options, in one new version.
fn apply_update(a: &State, app: &mut Application, req: &Value, version: u64) -> ApiResult<()> {
    let u = &req["ApplicationUpdate"];
    if let Some(code) = text(u, "ApplicationCodeUpdate") {
        app.code = code.to_owned();
    }
    for iu in u.get("InputUpdates").and_then(Value::as_array).into_iter().flatten() {
        let input = input_mut(app, iu)?;
        if let Some(p) = text(iu, "NamePrefixUpdate") {
            input["NamePrefix"] = json!(p);
            input["InAppStreamNames"] = json!([format!("{p}_001")]);
        }
        for (from, to) in [
            ("KinesisStreamsInputUpdate", "KinesisStreamsInputDescription"),
            ("KinesisFirehoseInputUpdate", "KinesisFirehoseInputDescription"),
        ] {
            if let Some(x) = iu.get(from) {
                let obj = input.as_object_mut().expect("an object");
                obj.remove("KinesisStreamsInputDescription");
                obj.remove("KinesisFirehoseInputDescription");
                obj.insert(
                    to.into(),
                    json!({"ResourceARN": x.get("ResourceARNUpdate"), "RoleARN": x.get("RoleARNUpdate")}),
                );
                let arn = x.get("ResourceARNUpdate").and_then(Value::as_str).unwrap_or_default();
                runner::stream_of(a, arn)
                    .map_err(|e| ApiError::InvalidArgument(format!("The input {arn} cannot be read: {e}")))?;
            }
        }
        if let Some(s) = iu.get("InputSchemaUpdate") {
            if let Some(f) = s.get("RecordFormatUpdate") {
                input["InputSchema"]["RecordFormat"] = f.clone();
            }
            if let Some(e) = s.get("RecordEncodingUpdate") {
                input["InputSchema"]["RecordEncoding"] = e.clone();
            }
            if let Some(c) = s.get("RecordColumnUpdates") {
                input["InputSchema"]["RecordColumns"] = c.clone();
            }
            super::schema::Mapping::new(&input["InputSchema"]).map_err(ApiError::InvalidArgument)?;
        }
        if let Some(n) = iu.pointer("/InputParallelismUpdate/CountUpdate").and_then(Value::as_u64) {
            if n != 1 {
                return Err(ApiError::InvalidArgument(
                    "InputParallelism Count greater than 1 is not supported by this server.".into(),
                ));
            }
        }
        if iu.get("InputProcessingConfigurationUpdate").is_some() {
            processing_description(&Value::Null)?;
        }
    }
    for ou in u.get("OutputUpdates").and_then(Value::as_array).into_iter().flatten() {
        let id = text(ou, "OutputId").unwrap_or_default();
        let o = app
            .outputs
            .iter_mut()
            .find(|o| o["OutputId"].as_str() == Some(id))
            .ok_or_else(|| ApiError::ResourceNotFound(format!("The application has no output with id {id}.")))?;
        if let Some(n) = ou.get("NameUpdate") {
            o["Name"] = n.clone();
        }
        if let Some(d) = ou.get("DestinationSchemaUpdate") {
            o["DestinationSchema"] = d.clone();
        }
        for (from, to) in [
            ("KinesisStreamsOutputUpdate", "KinesisStreamsOutputDescription"),
            ("KinesisFirehoseOutputUpdate", "KinesisFirehoseOutputDescription"),
        ] {
            if let Some(x) = ou.get(from) {
                let obj = o.as_object_mut().expect("an object");
                obj.remove("KinesisStreamsOutputDescription");
                obj.remove("KinesisFirehoseOutputDescription");
                obj.insert(
                    to.into(),
                    json!({"ResourceARN": x.get("ResourceARNUpdate"), "RoleARN": x.get("RoleARNUpdate")}),
                );
            }
        }
        if ou.get("LambdaOutputUpdate").is_some() {
            return Err(ApiError::UnsupportedOperation("LambdaOutput is not supported by this server.".into()));
        }
    }
    for ru in u.get("ReferenceDataSourceUpdates").and_then(Value::as_array).into_iter().flatten() {
        let id = text(ru, "ReferenceId").unwrap_or_default();
        let r = app.references.iter_mut().find(|r| r["ReferenceId"].as_str() == Some(id)).ok_or_else(|| {
            ApiError::ResourceNotFound(format!("The application has no reference data source with id {id}."))
        })?;
        if let Some(t) = ru.get("TableNameUpdate") {
            r["TableName"] = t.clone();
        }
        if let Some(s) = ru.get("ReferenceSchemaUpdate") {
            r["ReferenceSchema"] = s.clone();
        }
        if let Some(s3) = ru.get("S3ReferenceDataSourceUpdate") {
            for (from, to) in [
                ("BucketARNUpdate", "BucketARN"),
                ("FileKeyUpdate", "FileKey"),
                ("ReferenceRoleARNUpdate", "ReferenceRoleARN"),
            ] {
                if let Some(v) = s3.get(from) {
                    r["S3ReferenceDataSourceDescription"][to] = v.clone();
                }
            }
        }
    }
    for lu in u.get("CloudWatchLoggingOptionUpdates").and_then(Value::as_array).into_iter().flatten() {
        let id = text(lu, "CloudWatchLoggingOptionId").unwrap_or_default();
        let l =
            app.logging.iter_mut().find(|l| l["CloudWatchLoggingOptionId"].as_str() == Some(id)).ok_or_else(|| {
                ApiError::ResourceNotFound(format!("The application has no CloudWatch logging option with id {id}."))
            })?;
        if let Some(v) = lu.get("LogStreamARNUpdate") {
            l["LogStreamARN"] = v.clone();
        }
        if let Some(v) = lu.get("RoleARNUpdate") {
            l["RoleARN"] = v.clone();
        }
    }
    let _ = version;
    Ok(())
}

async fn update(a: &Arc<State>, req: Value) -> ApiResult<Value> {
    change(a, req, apply_update).await
}

async fn start(a: &Arc<State>, req: Value) -> ApiResult<Value> {
    let _guard = a.control.lock().await;
    let mut app = a.get(&name_of(&req))?;
    if app.status != "READY" {
        return Err(ApiError::ResourceInUse(format!(
            "Application {} is {}; only a READY application can be started.",
            app.name, app.status
        )));
    }
    let configs: Vec<&Value> = req.get("InputConfigurations").and_then(Value::as_array).into_iter().flatten().collect();
    let Some(input) = app.inputs.first() else {
        return Err(ApiError::InvalidApplicationConfiguration(format!("Application {} has no input.", app.name)));
    };
    let input_id = input["InputId"].as_str().unwrap_or_default().to_owned();
    let mut position = None;
    for c in &configs {
        let id = text(c, "Id").unwrap_or_default();
        if id != input_id {
            return Err(ApiError::InvalidArgument(format!("Application {} has no input with id {id}.", app.name)));
        }
        position = c.pointer("/InputStartingPositionConfiguration/InputStartingPosition").and_then(Value::as_str);
    }
    let Some(position) = position.map(str::to_owned) else {
        return Err(ApiError::InvalidArgument(format!(
            "An InputStartingPositionConfiguration is needed for input {input_id}."
        )));
    };
    if app.code.trim().is_empty() {
        return Err(ApiError::InvalidApplicationConfiguration(format!("Application {} has no code.", app.name)));
    }
    let prog = runner::program(&app).map_err(ApiError::InvalidApplicationConfiguration)?;
    for o in &app.outputs {
        let name = o["Name"].as_str().unwrap_or_default();
        if prog.stream(name).is_none() {
            return Err(ApiError::InvalidApplicationConfiguration(format!(
                "The output {} names the in-application stream {name}, which the code does not create.",
                o["OutputId"].as_str().unwrap_or_default()
            )));
        }
    }
    match position.as_str() {
        "NOW" => {
            app.run += 1;
            app.run_start = Some(a.svc.now_ms());
        }
        "TRIM_HORIZON" => {
            app.run += 1;
            app.run_start = None;
        }
        // LAST_STOPPED_POINT: the last run goes on from its checkpoint (a first run from now).
        _ if app.run == 0 => {
            app.run = 1;
            app.run_start = Some(a.svc.now_ms());
        }
        _ => {}
    }
    app.inputs[0]["InputStartingPositionConfiguration"] = json!({"InputStartingPosition": position});
    app.status = "STARTING".into();
    a.save(&app).await?;
    let a2 = a.clone();
    let (name, incarnation) = (app.name.clone(), app.incarnation);
    crate::kinesis::after(SETTLE, async move { settle_status(&a2, &name, incarnation, "STARTING").await }).await;
    Ok(json!({}))
}

async fn stop(a: &Arc<State>, req: Value) -> ApiResult<Value> {
    let _guard = a.control.lock().await;
    let mut app = a.get(&name_of(&req))?;
    match app.status.as_str() {
        "RUNNING" | "STARTING" | "UPDATING" => {}
        "READY" | "STOPPING" => return Ok(json!({})),
        other => return Err(ApiError::ResourceInUse(format!("Application {} is {other}.", app.name))),
    }
    app.status = "STOPPING".into();
    a.save(&app).await?;
    let a2 = a.clone();
    let (name, incarnation) = (app.name.clone(), app.incarnation);
    crate::kinesis::after(SETTLE, async move { settle_status(&a2, &name, incarnation, "STOPPING").await }).await;
    Ok(json!({}))
}

async fn delete(a: &Arc<State>, req: Value) -> ApiResult<Value> {
    let _guard = a.control.lock().await;
    let mut app = a.get(&name_of(&req))?;
    let given = req.get("CreateTimestamp").and_then(Value::as_f64).unwrap_or(-1.0);
    if (given * 1000.0 - app.created_ms as f64).abs() >= 1000.0 {
        return Err(ApiError::ResourceNotFound(format!(
            "Application {} with the CreateTimestamp given is not found (it was created at {}).",
            app.name,
            app.created_ms as f64 / 1000.0
        )));
    }
    if app.status == "DELETING" {
        return Err(ApiError::ResourceInUse(format!("Application {} is being deleted.", app.name)));
    }
    app.status = "DELETING".into();
    a.save(&app).await?;
    let a2 = a.clone();
    crate::kinesis::after(SETTLE, async move { finish_delete(&a2, &app).await }).await;
    Ok(json!({}))
}

async fn finish_delete(a: &Arc<State>, app: &Application) {
    a.runs.stop(&app.name).await;
    a.svc.metrics.forget_application(&app.name);
    let _ = a.svc.delete_meta(&runner::checkpoint_key(&app.name)).await;
    if let Err(e) = a.svc.delete_meta(&super::meta_key(&app.name)).await {
        tracing::error!(application = %app.name, error = %e, "removing an application");
    }
}

/// Ends a transitional status: STARTING and UPDATING become RUNNING (the run started or
/// restarted), STOPPING becomes READY (the run stopped after its step).
async fn settle_status(a: &Arc<State>, name: &str, incarnation: u64, from: &str) {
    let _guard = a.control.lock().await;
    let Ok(mut app) = a.get(name) else { return };
    if app.incarnation != incarnation || app.status != from {
        return;
    }
    if from == "STOPPING" {
        a.runs.stop(name).await;
        app.status = "READY".into();
    } else {
        app.status = "RUNNING".into();
        a.runs.start(a, &app);
    }
    if let Err(e) = a.save(&app).await {
        tracing::error!(application = %name, error = %e, "saving an application's status");
    }
}

/// At start-up: runs RUNNING applications again and finishes what a crash cut short.
pub async fn settle(a: &Arc<State>, app: Application) {
    match app.status.as_str() {
        "RUNNING" => a.runs.start(a, &app),
        "STARTING" | "UPDATING" | "STOPPING" => settle_status(a, &app.name, app.incarnation, &app.status.clone()).await,
        "DELETING" => finish_delete(a, &app).await,
        _ => {}
    }
}

fn app_of_arn(a: &State, req: &Value) -> ApiResult<Application> {
    let arn = text(req, "ResourceARN").unwrap_or_default();
    let name = arn
        .strip_prefix("arn:aws:kinesisanalytics:")
        .and_then(|r| r.split_once(":application/"))
        .map(|(_, n)| n)
        .ok_or_else(|| ApiError::InvalidArgument(format!("{arn} is not an application ARN.")))?;
    // The ARN's own account's application.
    let owner = a.svc.effective_account(crate::stream::meta::arn_account(arn).unwrap_or_default());
    let name = crate::stream::meta::qualified(owner, &a.svc.cfg.account_id, name);
    let app = a.get(&name)?;
    if app.arn(&a.svc) != arn {
        return Err(a.not_found(&name));
    }
    Ok(app)
}

async fn tag(a: &Arc<State>, req: Value) -> ApiResult<Value> {
    let _guard = a.control.lock().await;
    let mut app = app_of_arn(a, &req)?;
    for (k, v) in tags_of(req.get("Tags")) {
        match app.tags.iter_mut().find(|(ek, _)| *ek == k) {
            Some(e) => e.1 = v,
            None => app.tags.push((k, v)),
        }
    }
    if app.tags.len() > TAGS_MAX {
        return Err(too_many_tags());
    }
    a.save(&app).await?;
    Ok(json!({}))
}

async fn untag(a: &Arc<State>, req: Value) -> ApiResult<Value> {
    let _guard = a.control.lock().await;
    let mut app = app_of_arn(a, &req)?;
    let keys: Vec<&str> =
        req.get("TagKeys").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    app.tags.retain(|(k, _)| !keys.contains(&k.as_str()));
    a.save(&app).await?;
    Ok(json!({}))
}

fn list_tags(a: &Arc<State>, req: Value) -> ApiResult<Value> {
    let app = app_of_arn(a, &req)?;
    let tags: Vec<Value> = app.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
    Ok(json!({"Tags": tags}))
}

/// Records sampled for DiscoverInputSchema, at most.
const DISCOVERY_SAMPLES: usize = 100;

async fn discover(a: &Arc<State>, req: Value) -> ApiResult<Value> {
    if req.get("InputProcessingConfiguration").is_some() {
        processing_description(&Value::Null)?;
    }
    let samples: Vec<Vec<u8>> = if let Some(s3) = req.get("S3Configuration") {
        let bucket = text(s3, "BucketARN").unwrap_or_default().trim_start_matches("arn:aws:s3:::").to_owned();
        let key = text(s3, "FileKey").unwrap_or_default();
        let body = crate::firehose::delivery::read_object(&a.svc, &bucket, key)
            .await
            .map_err(|e| ApiError::InvalidArgument(format!("The object s3://{bucket}/{key} cannot be read: {e}")))?;
        vec![body]
    } else {
        let arn = text(&req, "ResourceARN")
            .ok_or_else(|| ApiError::InvalidArgument("Either ResourceARN or S3Configuration is required.".into()))?;
        let meta = runner::stream_of(a, arn).map_err(ApiError::ResourceNotFound)?;
        let start =
            match req.pointer("/InputStartingPositionConfiguration/InputStartingPosition").and_then(Value::as_str) {
                Some("NOW") => crate::runtime::Position::AtTimestamp(a.svc.now_ms() - 10_000),
                _ => crate::runtime::Position::TrimHorizon,
            };
        let source: Arc<dyn crate::reader::stream::StreamSource> = a.svc.clone();
        let mut reader =
            crate::reader::stream::StreamReader::new(a.svc.runtime.clone(), source, meta.id, start, Default::default());
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while out.len() < DISCOVERY_SAMPLES && tokio::time::Instant::now() < deadline {
            match reader.next(1 << 20, Duration::from_millis(300)).await? {
                Some(b) => out.extend(b.records.into_iter().map(|r| r.data.to_vec())),
                None => break,
            }
        }
        out.truncate(DISCOVERY_SAMPLES);
        out
    };
    let raw: Vec<String> = samples.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    if samples.is_empty() {
        return Err(ApiError::UnableToDetectSchema("No records were found to detect a schema from.".into()));
    }
    let schema = super::schema::discover(&samples).map_err(ApiError::UnableToDetectSchema)?;
    let mapping = super::schema::Mapping::new(&schema).map_err(ApiError::UnableToDetectSchema)?;
    let parsed: Vec<Value> = samples
        .iter()
        .flat_map(|s| mapping.rows(s))
        .filter_map(Result::ok)
        .map(|row| json!(row.iter().map(|v| v.to_text()).collect::<Vec<_>>()))
        .collect();
    Ok(
        json!({"InputSchema": schema, "ParsedInputRecords": parsed, "RawInputRecords": raw, "ProcessedInputRecords": raw}),
    )
}
