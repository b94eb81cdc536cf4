"""Kinesis Data Analytics SQL applications, through boto3's `kinesisanalytics` client.

The seed's two programs run unmodified as the code of two applications reading the seed's
`sensor-data-stream` (4 shards, as the seed creates it), fed by the seed's producer. Their
outputs, read from Kinesis streams, are checked against references computed here from the same
input.

ROWTIME control: the daemon takes ROWTIME from `[analytics] clock_file`, a file holding epoch
milliseconds that the test writes. Records are put in phases; in each phase the clock is set,
the records are put, and the test waits until the filter application has written the phase's
last hot reading (so every record of the phase has entered both applications at that clock).
The readings all use sensors whose partition keys route to one shard, so the order the
applications see them in is the order they were put in, which the running-aggregate anomaly
query depends on.
"""

from __future__ import annotations

import json
import random
import statistics
import time

import pytest
from botocore.exceptions import ClientError

from conftest import FAST_CONFIG, hash_key, list_all_shards, make_client, read_shard, shard_for_hash, unique_name

ROLE = "arn:aws:iam::123456789012:role/KinesisAnalyticsRole"
T0 = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC, a window boundary.
FIVE_MIN = 300_000

SEED_FILTER = '''CREATE STREAM "sensor_stream" (
    sensor_id VARCHAR(16),
    temperature DOUBLE,
    event_time TIMESTAMP
);

CREATE OR REPLACE PUMP "stream_pump" AS
INSERT INTO "output_stream"
SELECT * FROM "sensor_stream"
WHERE temperature > 50.0;
'''

SEED_ANALYTICS = '''-- Real-time aggregation
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

-- Anomaly detection
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
);
'''


def config(clock) -> str:
    return FAST_CONFIG + f'[analytics]\ntick = "100ms"\nclock_file = "{clock}"\n'


def set_clock(path, ms: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(ms))
    tmp.replace(path)


def stream_arn(name: str) -> str:
    return f"arn:aws:kinesis:us-east-1:000000000000:stream/{name}"


def schema(names=("SENSOR_ID", "TEMPERATURE", "EVENT_TIME")) -> dict:
    sid, temp, ev = names
    return {
        "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
        "RecordEncoding": "UTF-8",
        "RecordColumns": [
            {"Name": sid, "SqlType": "VARCHAR(16)", "Mapping": "$.sensor_id"},
            {"Name": temp, "SqlType": "DOUBLE", "Mapping": "$.temperature"},
            {"Name": ev, "SqlType": "TIMESTAMP", "Mapping": "$.event_time"},
        ],
    }


def kinesis_input(stream: str, prefix: str = "sensor_stream") -> dict:
    return {"NamePrefix": prefix, "KinesisStreamsInput": {"ResourceARN": stream_arn(stream), "RoleARN": ROLE}, "InputSchema": schema()}


def kinesis_output(in_app: str, stream: str, fmt: str = "JSON") -> dict:
    return {"Name": in_app, "KinesisStreamsOutput": {"ResourceARN": stream_arn(stream), "RoleARN": ROLE}, "DestinationSchema": {"RecordFormatType": fmt}}


def wait_status(ka, name: str, status: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = ka.describe_application(ApplicationName=name)["ApplicationDetail"]
        if d["ApplicationStatus"] == status:
            return d
        time.sleep(0.05)
    raise AssertionError(f"{name} did not become {status}: {d['ApplicationStatus']}")


def start(ka, name: str, position: str = "TRIM_HORIZON") -> None:
    d = ka.describe_application(ApplicationName=name)["ApplicationDetail"]
    ka.start_application(
        ApplicationName=name,
        InputConfigurations=[{"Id": d["InputDescriptions"][0]["InputId"], "InputStartingPositionConfiguration": {"InputStartingPosition": position}}],
    )
    wait_status(ka, name, "RUNNING")


def read_json(kinesis, stream: str) -> list[dict]:
    """Every record of a stream, decoded (one JSON object per record), shard by shard."""
    out = []
    for s in list_all_shards(kinesis, stream):
        for r in read_shard(kinesis, stream, s["ShardId"]):
            out.append(json.loads(r["Data"]))
    return out


def wait_records(kinesis, stream: str, n: int, what: str, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    got = []
    while time.monotonic() < deadline:
        got = read_json(kinesis, stream)
        if len(got) >= n:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{what}: {len(got)} of {n} records")


def put_records(kinesis, stream_name, records):
    """The seed's producer, unchanged."""
    response = kinesis.put_records(
        StreamName=stream_name,
        Records=[{"Data": json.dumps(r), "PartitionKey": r["sensor_id"]} for r in records],
    )
    if response["FailedRecordCount"] > 0:
        print(f"Failed: {response['FailedRecordCount']} records")
    return response


def one_shard_sensors(kinesis, stream: str, n: int) -> list[str]:
    """Sensor ids whose partition keys route to the stream's first shard."""
    shards = list_all_shards(kinesis, stream)
    first = shards[0]["ShardId"]
    out, i = [], 0
    while len(out) < n:
        sid = f"sensor-{i}"
        if shard_for_hash(shards, hash_key(sid)) == first:
            out.append(sid)
        i += 1
    return out


def ts_text(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}"


def clocked_daemon(new_daemon, tmp_path, extra: str = ""):
    """A daemon whose applications take ROWTIME from a clock file (set to T0), and its clients."""
    clock = tmp_path / "clock"
    set_clock(clock, T0)
    d = new_daemon(config=config(clock) + extra)
    return d, make_client(d.endpoint), make_client(d.endpoint, service="kinesisanalytics"), clock


@pytest.fixture
def seeded(new_daemon, tmp_path):
    return clocked_daemon(new_daemon, tmp_path)


def test_the_seed_programs_run_unmodified(seeded):
    d, kinesis, ka, clock = seeded
    # The seed's create call, then the outputs' streams.
    kinesis.create_stream(StreamName="sensor-data-stream", ShardCount=4, StreamModeDetails={"StreamMode": "PROVISIONED"})
    for s in ("filtered-out", "aggregated-out", "anomaly-out"):
        kinesis.create_stream(StreamName=s, ShardCount=1)
    time.sleep(0.2)
    ka.create_application(
        ApplicationName="seed-filter",
        Inputs=[kinesis_input("sensor-data-stream")],
        Outputs=[kinesis_output("output_stream", "filtered-out")],
        ApplicationCode=SEED_FILTER,
    )
    ka.create_application(
        ApplicationName="seed-analytics",
        Inputs=[kinesis_input("sensor-data-stream")],
        Outputs=[kinesis_output("aggregated_stream", "aggregated-out"), kinesis_output("anomaly_stream", "anomaly-out")],
        ApplicationCode=SEED_ANALYTICS,
    )
    start(ka, "seed-filter")
    start(ka, "seed-analytics")

    sensors = one_shard_sensors(kinesis, "sensor-data-stream", 4)
    rng = random.Random(12)
    # Phase 1 (window 0): ten readings of 10 or 30 degrees; no ten readings can hold an anomaly.
    # Phase 2 (window 0, later): readings of 18..22 and three 200-degree spikes; the spikes are
    # anomalies in any order and the others in none. Phase 3 (window 2, window 1 left empty):
    # readings of 40..60. Each phase ends with a reading above 50 per sensor, the filter's
    # sign that the phase went in.
    phases = []
    p1 = [{"sensor_id": sensors[i % 4], "temperature": 10.0 if i % 2 else 30.0} for i in range(8)]
    p1 += [{"sensor_id": sensors[0], "temperature": 55.0}, {"sensor_id": sensors[1], "temperature": 56.0}]
    phases.append((T0 + 1_000, p1))
    p2 = [{"sensor_id": sensors[rng.randrange(4)], "temperature": round(rng.uniform(18, 22), 3)} for _ in range(40)]
    for at in (5, 17, 33):
        p2.insert(at, {"sensor_id": sensors[at % 4], "temperature": 200.0})
    phases.append((T0 + 200_000, p2))
    p3 = [{"sensor_id": sensors[rng.randrange(4)], "temperature": round(rng.uniform(40, 60), 3)} for _ in range(30)]
    p3.append({"sensor_id": sensors[2], "temperature": 70.0})
    phases.append((T0 + 2 * FIVE_MIN + 10_000, p3))

    inputs = []  # (rowtime, reading)
    hot = 0
    for rowtime, readings in phases:
        set_clock(clock, rowtime)
        for r in readings:
            r["event_time"] = ts_text(rowtime)
        put_records(kinesis, "sensor-data-stream", readings)
        hot += sum(1 for r in readings if r["temperature"] > 50.0)
        wait_records(kinesis, "filtered-out", hot, "filter output")
        inputs += [(rowtime, r) for r in readings]
    # The clock moves past the last window's end: it closes with no more input.
    set_clock(clock, T0 + 3 * FIVE_MIN + 1)

    # The filter: SELECT * WHERE temperature > 50.0, with the declared columns' names.
    filtered = read_json(kinesis, "filtered-out")
    want = [{"SENSOR_ID": r["sensor_id"], "TEMPERATURE": r["temperature"], "EVENT_TIME": r["event_time"]} for _, r in inputs if r["temperature"] > 50.0]
    assert filtered == want

    # The aggregates: per sensor per 5-minute window, emitted when the window closes.
    expected = {}
    for rowtime, r in inputs:
        w = rowtime - rowtime % FIVE_MIN
        expected.setdefault((w, r["sensor_id"]), []).append(r["temperature"])
    agg = wait_records(kinesis, "aggregated-out", len(expected), "aggregates")
    assert len(agg) == len(expected), agg
    got = {}
    for row in agg:
        assert set(row) == {"SENSOR_ID", "AVG_TEMPERATURE", "MAX_TEMPERATURE", "MIN_TEMPERATURE", "READING_COUNT", "WINDOW_START"}
        got[(row["WINDOW_START"], row["SENSOR_ID"])] = row
    for (w, sid), temps in expected.items():
        row = got[(ts_text(w), sid)]
        assert row["READING_COUNT"] == len(temps)
        assert row["MAX_TEMPERATURE"] == max(temps) and row["MIN_TEMPERATURE"] == min(temps)
        assert row["AVG_TEMPERATURE"] == pytest.approx(statistics.fmean(temps), rel=1e-12)
    assert not any(k[0] == ts_text(T0 + FIVE_MIN) for k in got), "the empty window emits nothing"

    # The anomalies: above the mean plus three sample standard deviations of every reading so
    # far, the current one included.
    want_anomalies, seen = [], []
    for _, r in inputs:
        seen.append(r["temperature"])
        if len(seen) > 1 and r["temperature"] > statistics.fmean(seen) + 3 * statistics.stdev(seen):
            want_anomalies.append({"SENSOR_ID": r["sensor_id"], "TEMPERATURE": r["temperature"], "ANOMALY_TYPE": "HIGH_TEMP"})
    assert [a["TEMPERATURE"] for a in want_anomalies] == [200.0, 200.0, 200.0], "the data is built so"
    assert read_json(kinesis, "anomaly-out") == want_anomalies


def test_code_that_does_not_compile_is_refused_with_its_place(seeded):
    d, kinesis, ka, clock = seeded
    name = unique_name("app")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    time.sleep(0.2)
    bad = 'CREATE OR REPLACE PUMP "p" AS INSERT INTO "o"\nSELECT STREAM nope FROM "SOURCE_SQL_STREAM_001";'
    with pytest.raises(ClientError) as e:
        ka.create_application(ApplicationName="bad", Inputs=[kinesis_input(name, "SOURCE_SQL_STREAM")], ApplicationCode=bad)
    assert e.value.response["Error"]["Code"] == "CodeValidationException"
    assert "line 2" in e.value.response["Error"]["Message"] and "NOPE" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        ka.describe_application(ApplicationName="bad")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException", "nothing was created"
    rcf = 'CREATE PUMP "p" AS INSERT INTO "o" SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001")));'
    with pytest.raises(ClientError) as e:
        ka.create_application(ApplicationName="rcf", Inputs=[kinesis_input(name, "SOURCE_SQL_STREAM")], ApplicationCode=rcf)
    assert "RANDOM_CUT_FOREST is not supported" in e.value.response["Error"]["Message"]


def test_versions_statuses_and_errors(seeded):
    d, kinesis, ka, clock = seeded
    src = unique_name("src")
    kinesis.create_stream(StreamName=src, ShardCount=1)
    time.sleep(0.2)
    summary = ka.create_application(ApplicationName="lifecycle", Inputs=[kinesis_input(src, "SOURCE_SQL_STREAM")])["ApplicationSummary"]
    assert summary["ApplicationStatus"] == "READY"
    assert summary["ApplicationARN"] == "arn:aws:kinesisanalytics:us-east-1:000000000000:application/lifecycle"
    detail = ka.describe_application(ApplicationName="lifecycle")["ApplicationDetail"]
    assert detail["ApplicationVersionId"] == 1
    inp = detail["InputDescriptions"][0]
    assert inp["InputId"] == "1.1" and inp["InAppStreamNames"] == ["SOURCE_SQL_STREAM_001"]
    assert inp["InputParallelism"] == {"Count": 1}
    with pytest.raises(ClientError) as e:
        ka.create_application(ApplicationName="lifecycle")
    assert e.value.response["Error"]["Code"] == "ResourceInUseException"
    code = 'CREATE PUMP "p" AS INSERT INTO "DESTINATION_SQL_STREAM" SELECT STREAM * FROM "SOURCE_SQL_STREAM_001";'
    with pytest.raises(ClientError) as e:
        ka.update_application(ApplicationName="lifecycle", CurrentApplicationVersionId=7, ApplicationUpdate={"ApplicationCodeUpdate": code})
    assert e.value.response["Error"]["Code"] == "ConcurrentModificationException"
    ka.update_application(ApplicationName="lifecycle", CurrentApplicationVersionId=1, ApplicationUpdate={"ApplicationCodeUpdate": code})
    out = unique_name("out")
    kinesis.create_stream(StreamName=out, ShardCount=1)
    ka.add_application_output(ApplicationName="lifecycle", CurrentApplicationVersionId=2, Output=kinesis_output("DESTINATION_SQL_STREAM", out, "CSV"))
    detail = ka.describe_application(ApplicationName="lifecycle")["ApplicationDetail"]
    assert detail["ApplicationVersionId"] == 3 and detail["OutputDescriptions"][0]["OutputId"] == "3.1"
    assert detail["ApplicationCode"] == code
    with pytest.raises(ClientError) as e:
        ka.stop_application(ApplicationName="nope")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    start(ka, "lifecycle", "NOW")
    with pytest.raises(ClientError) as e:
        ka.start_application(ApplicationName="lifecycle", InputConfigurations=[{"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "NOW"}}])
    assert e.value.response["Error"]["Code"] == "ResourceInUseException"
    kinesis.put_record(StreamName=src, Data=json.dumps({"sensor_id": "a,b", "temperature": 1.5, "event_time": "2026-01-01 00:00:00"}), PartitionKey="a")
    deadline = time.monotonic() + 10
    rows = []
    while time.monotonic() < deadline and not rows:
        rows = [r["Data"] for s in list_all_shards(kinesis, out) for r in read_shard(kinesis, out, s["ShardId"])]
        time.sleep(0.05)
    assert rows == [b'"a,b",1.5,2026-01-01 00:00:00.000\n'], "CSV: values in column order, quoted where needed"
    ka.stop_application(ApplicationName="lifecycle")
    wait_status(ka, "lifecycle", "READY")
    listed = ka.list_applications()["ApplicationSummaries"]
    assert [a["ApplicationName"] for a in listed] == ["lifecycle"]
    arn = summary["ApplicationARN"]
    ka.tag_resource(ResourceARN=arn, Tags=[{"Key": "team", "Value": "sensors"}])
    assert ka.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "team", "Value": "sensors"}]
    created = detail["CreateTimestamp"]
    ka.delete_application(ApplicationName="lifecycle", CreateTimestamp=created)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and ka.list_applications()["ApplicationSummaries"]:
        time.sleep(0.05)
    assert ka.list_applications()["ApplicationSummaries"] == []


def test_discover_input_schema(seeded):
    d, kinesis, ka, clock = seeded
    src = unique_name("disc")
    kinesis.create_stream(StreamName=src, ShardCount=1)
    time.sleep(0.2)
    for i in range(5):
        kinesis.put_record(StreamName=src, Data=json.dumps({"sensor_id": f"s-{i}", "temperature": 20.5 + i, "count": i}), PartitionKey="k")
    got = ka.discover_input_schema(ResourceARN=stream_arn(src), RoleARN=ROLE, InputStartingPositionConfiguration={"InputStartingPosition": "TRIM_HORIZON"})
    cols = got["InputSchema"]["RecordColumns"]
    # Columns in the order of the record's fields (COUNT is reserved, so it gets a COL_ prefix).
    assert [(c["Name"], c["SqlType"], c["Mapping"]) for c in cols] == [
        ("sensor_id", "VARCHAR(4)", "$.sensor_id"),
        ("temperature", "DOUBLE", "$.temperature"),
        ("COL_count", "INTEGER", "$.count"),
    ]
    assert len(got["RawInputRecords"]) == 5 and got["ParsedInputRecords"][0] == ["s-0", "20.5", "0"]


CRASH_CODE = '''CREATE OR REPLACE PUMP "hot_pump" AS INSERT INTO "hot"
SELECT STREAM sensor_id, temperature FROM "SOURCE_SQL_STREAM_001" WHERE temperature > 50.0;
CREATE OR REPLACE PUMP "minute_pump" AS INSERT INTO "per_minute"
SELECT STREAM sensor_id, COUNT(*) AS n, SUM(temperature) AS total,
    FLOOR("SOURCE_SQL_STREAM_001".ROWTIME TO MINUTE) AS minute
FROM "SOURCE_SQL_STREAM_001"
GROUP BY sensor_id, FLOOR("SOURCE_SQL_STREAM_001".ROWTIME TO MINUTE);
'''


def test_kill9_while_an_application_runs_changes_no_output(seeded):
    """`kill -9` at seeded moments while the application reads, computes and writes: its
    outputs are what an uninterrupted run gives (the reference), no row twice, none missing."""
    import os

    d, kinesis, ka, clock = seeded
    seed = int(os.environ.get("SLUICE_ANALYTICS_CRASH_SEED", 7))
    rounds = int(os.environ.get("SLUICE_ANALYTICS_CRASH_ROUNDS", 6))
    print(f"crash seed {seed} (replay with SLUICE_ANALYTICS_CRASH_SEED={seed})")
    rng = random.Random(seed)
    kinesis.create_stream(StreamName="crash-in", ShardCount=2)
    kinesis.create_stream(StreamName="crash-hot", ShardCount=2)
    kinesis.create_stream(StreamName="crash-minutes", ShardCount=1)
    time.sleep(0.2)
    ka.create_application(
        ApplicationName="crash",
        Inputs=[{**kinesis_input("crash-in", "SOURCE_SQL_STREAM"), "InputSchema": schema()}],
        Outputs=[kinesis_output("hot", "crash-hot"), kinesis_output("per_minute", "crash-minutes")],
        ApplicationCode=CRASH_CODE,
    )
    start(ka, "crash")
    sensors = [f"s{i}" for i in range(6)]
    inputs = []
    hot_total = 0
    for k in range(rounds):
        rowtime = T0 + k * 60_000 + 5_000
        set_clock(clock, rowtime)
        batch = [{"sensor_id": rng.choice(sensors), "temperature": round(rng.uniform(0, 100), 2)} for _ in range(rng.randrange(50, 400))]
        # Each sensor's last reading of the round is hot: the sign the round went in.
        batch += [{"sensor_id": s, "temperature": 99.0} for s in sensors]
        for r in batch:
            r["event_time"] = ts_text(rowtime)
        for i in range(0, len(batch), 100):
            put_records(kinesis, "crash-in", batch[i : i + 100])
        time.sleep(rng.uniform(0, 0.15))
        d.restart(kill=True)
        kinesis = make_client(d.endpoint)
        hot_total += sum(1 for r in batch if r["temperature"] > 50.0)
        wait_records(kinesis, "crash-hot", hot_total, f"round {k} hot rows")
        inputs += [(rowtime, r) for r in batch]
    set_clock(clock, T0 + rounds * 60_000 + 60_000)
    want_hot = sorted((r["sensor_id"], r["temperature"]) for _, r in inputs if r["temperature"] > 50.0)
    got_hot = sorted((r["SENSOR_ID"], r["TEMPERATURE"]) for r in read_json(kinesis, "crash-hot"))
    assert got_hot == want_hot, "every hot reading once"
    expected = {}
    for rowtime, r in inputs:
        key = (ts_text(rowtime - rowtime % 60_000), r["sensor_id"])
        n, total = expected.get(key, (0, 0.0))
        expected[key] = (n + 1, total + r["temperature"])
    rows = wait_records(kinesis, "crash-minutes", len(expected), "per-minute rows")
    time.sleep(0.5)
    rows = read_json(kinesis, "crash-minutes")
    assert len(rows) == len(expected), "one row per sensor and minute, none twice"
    for row in rows:
        n, total = expected[(row["MINUTE"], row["SENSOR_ID"])]
        assert row["N"] == n
        assert row["TOTAL"] == pytest.approx(total, rel=1e-9)


def in_app_schema(columns, fmt="JSON") -> dict:
    """A schema of (name, type, JSONPath) columns; CSV ones map by position."""
    if fmt == "CSV":
        record_format = {"RecordFormatType": "CSV", "MappingParameters": {"CSVMappingParameters": {"RecordRowDelimiter": "\n", "RecordColumnDelimiter": ","}}}
        cols = [{"Name": n, "SqlType": t} for n, t, _ in columns]
    else:
        record_format = {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}}
        cols = [{"Name": n, "SqlType": t, "Mapping": m} for n, t, m in columns]
    return {"RecordFormat": record_format, "RecordEncoding": "UTF-8", "RecordColumns": cols}


READINGS = [("SENSOR_ID", "VARCHAR(16)", "$.sensor_id"), ("TEMPERATURE", "DOUBLE", "$.temperature")]


def app_over(ka, kinesis, name, code, outputs, shards=1, references=()):
    """An application over a fresh input stream, started from TRIM_HORIZON; returns the input."""
    src = unique_name("in")
    kinesis.create_stream(StreamName=src, ShardCount=shards)
    streams = {}
    for in_app, fmt in outputs:
        out = unique_name("out")
        kinesis.create_stream(StreamName=out, ShardCount=1)
        streams[in_app] = out
    time.sleep(0.2)
    ka.create_application(
        ApplicationName=name,
        Inputs=[{"NamePrefix": "SOURCE_SQL_STREAM", "KinesisStreamsInput": {"ResourceARN": stream_arn(src), "RoleARN": ROLE}, "InputSchema": in_app_schema(READINGS)}],
        Outputs=[kinesis_output(in_app, streams[in_app], fmt) for in_app, fmt in outputs],
        **({} if references else {"ApplicationCode": code}),
    )
    if references:
        # Code that joins a table compiles once the table is there.
        version = 1
        for r in references:
            ka.add_application_reference_data_source(ApplicationName=name, CurrentApplicationVersionId=version, ReferenceDataSource=r)
            version += 1
        ka.update_application(ApplicationName=name, CurrentApplicationVersionId=version, ApplicationUpdate={"ApplicationCodeUpdate": code})
    start(ka, name)
    return src, streams


def put_readings(kinesis, stream, readings):
    kinesis.put_records(StreamName=stream, Records=[{"Data": json.dumps({"sensor_id": s, "temperature": t}), "PartitionKey": s} for s, t in readings])


def test_a_reference_table_is_joined(seeded):
    d, kinesis, ka, clock = seeded
    bucket_dir = d.data_dir / "buckets" / "reference-data"
    bucket_dir.mkdir(parents=True)
    (bucket_dir / "sites.csv").write_text("sensor-0,roof\nsensor-1,basement\n")
    reference = {
        "TableName": "SITES",
        "S3ReferenceDataSource": {"BucketARN": "arn:aws:s3:::reference-data", "FileKey": "sites.csv", "ReferenceRoleARN": ROLE},
        "ReferenceSchema": in_app_schema([("SENSOR_ID", "VARCHAR(16)", None), ("SITE", "VARCHAR(16)", None)], "CSV"),
    }
    code = '''CREATE OR REPLACE PUMP "joined" AS INSERT INTO "DESTINATION_SQL_STREAM"
SELECT STREAM s.sensor_id, r.site, s.temperature
FROM "SOURCE_SQL_STREAM_001" AS s LEFT JOIN "SITES" AS r ON s.sensor_id = r.sensor_id;
CREATE OR REPLACE PUMP "inner" AS INSERT INTO "KNOWN"
SELECT STREAM "SOURCE_SQL_STREAM_001".sensor_id, site FROM "SOURCE_SQL_STREAM_001" JOIN "SITES" ON "SOURCE_SQL_STREAM_001".sensor_id = "SITES".sensor_id;
'''
    src, outs = app_over(ka, kinesis, "joins", code, [("DESTINATION_SQL_STREAM", "JSON"), ("KNOWN", "JSON")], references=[reference])
    detail = ka.describe_application(ApplicationName="joins")["ApplicationDetail"]
    assert detail["ReferenceDataSourceDescriptions"][0]["ReferenceId"] == "2.1"
    put_readings(kinesis, src, [("sensor-0", 20.0), ("sensor-9", 21.0), ("sensor-1", 22.0)])
    rows = wait_records(kinesis, outs["DESTINATION_SQL_STREAM"], 3, "joined rows")
    assert rows == [
        {"SENSOR_ID": "sensor-0", "SITE": "roof", "TEMPERATURE": 20.0},
        {"SENSOR_ID": "sensor-9", "SITE": None, "TEMPERATURE": 21.0},
        {"SENSOR_ID": "sensor-1", "SITE": "basement", "TEMPERATURE": 22.0},
    ]
    known = wait_records(kinesis, outs["KNOWN"], 2, "inner join rows")
    assert known == [{"SENSOR_ID": "sensor-0", "SITE": "roof"}, {"SENSOR_ID": "sensor-1", "SITE": "basement"}]


def test_windows_chains_and_the_error_stream(seeded):
    d, kinesis, ka, clock = seeded
    code = '''CREATE OR REPLACE STREAM "ratios" (sensor_id VARCHAR(16), ratio DOUBLE);
CREATE OR REPLACE PUMP "divide" AS INSERT INTO "ratios"
SELECT STREAM sensor_id, 100 / CAST(temperature AS INTEGER) FROM "SOURCE_SQL_STREAM_001";
CREATE OR REPLACE PUMP "slide" AS INSERT INTO "SLIDING"
SELECT STREAM sensor_id, COUNT(*) OVER w AS n, AVG(ratio) OVER w AS mean, LAG(ratio, 1) OVER w AS prev
FROM "ratios" WINDOW w AS (PARTITION BY sensor_id ROWS 2 PRECEDING);
CREATE OR REPLACE PUMP "stagger" AS INSERT INTO "STAGGERED"
SELECT STREAM sensor_id, COUNT(*) AS n, SUM(ratio) AS total FROM "ratios"
WINDOWED BY STAGGER (PARTITION BY sensor_id RANGE INTERVAL '1' MINUTE);
'''
    src, outs = app_over(ka, kinesis, "windows", code, [("SLIDING", "JSON"), ("STAGGERED", "JSON"), ("error_stream", "JSON")])
    # Four readings of a, one of b, and one division by zero.
    set_clock(clock, T0 + 1_000)
    put_readings(kinesis, src, [("a", 10.0), ("a", 20.0), ("b", 50.0), ("a", 0.0), ("a", 25.0), ("a", 5.0)])
    sliding = wait_records(kinesis, outs["SLIDING"], 5, "sliding rows")
    want = [("a", 1, 10.0, None), ("a", 2, 7.5, 10.0), ("b", 1, 2.0, None), ("a", 3, (10 + 5 + 4) / 3, 5.0), ("a", 3, (5 + 4 + 20) / 3, 4.0)]
    assert [(r["SENSOR_ID"], r["N"], r["PREV"]) for r in sliding] == [(s, n, p) for s, n, _, p in want], (
        "a window of the current row and two before it, per sensor; the division by zero never got in"
    )
    assert [r["MEAN"] for r in sliding] == pytest.approx([m for _, _, m, _ in want], rel=1e-12)
    errors = wait_records(kinesis, outs["error_stream"], 1, "error rows")
    assert errors[0]["ERROR_NAME"] == "Error_Evaluating" and "division by zero" in errors[0]["MESSAGE"]
    assert errors[0]["PUMP_NAME"] == "divide"
    assert bytes.fromhex(errors[0]["DATA_ROW"]).decode() == '["a",0.0]'
    assert read_json(kinesis, outs["STAGGERED"]) == [], "the stagger windows are open"
    set_clock(clock, T0 + 61_000)
    staggered = wait_records(kinesis, outs["STAGGERED"], 2, "stagger rows")
    assert sorted((r["SENSOR_ID"], r["N"], r["TOTAL"]) for r in staggered) == [("a", 4, 10.0 + 5.0 + 4.0 + 20.0), ("b", 1, 2.0)]


def test_out_of_order_rowtime_goes_to_the_error_stream(seeded):
    d, kinesis, ka, clock = seeded
    code = '''CREATE OR REPLACE PUMP "reorder" AS INSERT INTO "LATE"
SELECT STREAM sensor_id, CHAR_TO_TIMESTAMP('HH:mm:ss', sensor_id) AS ROWTIME FROM "SOURCE_SQL_STREAM_001";
CREATE OR REPLACE PUMP "per_minute" AS INSERT INTO "MINUTES"
SELECT STREAM COUNT(*) AS n, FLOOR("LATE".ROWTIME TO MINUTE) AS m FROM "LATE" GROUP BY FLOOR("LATE".ROWTIME TO MINUTE);
'''
    src, outs = app_over(ka, kinesis, "late", code, [("MINUTES", "JSON"), ("error_stream", "JSON")])
    times = ["00:00:10", "00:00:40", "00:00:20", "00:01:05", "00:02:00"]
    put_readings(kinesis, src, [(t, 1.0) for t in times])
    minutes = wait_records(kinesis, outs["MINUTES"], 3, "per-minute rows")
    assert minutes == [
        {"N": 2, "M": "1970-01-01 00:00:00.000"},
        {"N": 1, "M": "1970-01-01 00:01:00.000"},
        {"N": 1, "M": "1970-01-01 00:02:00.000"},
    ], "windows close when a later ROWTIME passes their end (the last by the clock, far later); the late row is not counted"
    errors = wait_records(kinesis, outs["error_stream"], 1, "error rows")
    assert errors[0]["ERROR_NAME"] == "Error_Out_Of_Order_Rowtime"
    assert errors[0]["DATA_ROWTIME"] == "1970-01-01 00:00:20.000"


def test_delivery_streams_as_input_and_output(new_daemon, tmp_path):
    d = new_daemon(config=FAST_CONFIG + '[delivery]\nbuffering_interval_cap = "1s"\n[analytics]\ntick = "100ms"\n')
    fh = make_client(d.endpoint, service="firehose")
    ka = make_client(d.endpoint, service="kinesisanalytics")
    dest = {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::sql-out", "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60}}
    for name in ("sql-in", "sql-out"):
        fh.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={**dest, "BucketARN": f"arn:aws:s3:::{name}"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        fh.describe_delivery_stream(DeliveryStreamName=n)["DeliveryStreamDescription"]["DeliveryStreamStatus"] != "ACTIVE" for n in ("sql-in", "sql-out")
    ):
        time.sleep(0.05)
    fh_arn = "arn:aws:firehose:us-east-1:000000000000:deliverystream/"
    ka.create_application(
        ApplicationName="via-firehose",
        Inputs=[{"NamePrefix": "SOURCE_SQL_STREAM", "KinesisFirehoseInput": {"ResourceARN": fh_arn + "sql-in", "RoleARN": ROLE}, "InputSchema": in_app_schema(READINGS)}],
        Outputs=[{"Name": "HOT", "KinesisFirehoseOutput": {"ResourceARN": fh_arn + "sql-out", "RoleARN": ROLE}, "DestinationSchema": {"RecordFormatType": "JSON"}}],
        ApplicationCode='CREATE PUMP "p" AS INSERT INTO "HOT" SELECT STREAM * FROM "SOURCE_SQL_STREAM_001" WHERE temperature > 50;',
    )
    start(ka, "via-firehose")
    fh.put_record_batch(
        DeliveryStreamName="sql-in",
        Records=[{"Data": json.dumps({"sensor_id": f"s{i}", "temperature": float(i * 10)}).encode()} for i in range(10)],
    )
    root = d.data_dir / "buckets" / "sql-out"
    deadline = time.monotonic() + 20
    body = b""
    while time.monotonic() < deadline:
        files = [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".sluice-tmp")] if root.exists() else []
        body = b"".join(p.read_bytes() for p in sorted(files))
        if body.count(b"{") >= 4:
            break
        time.sleep(0.1)
    assert body == b"".join(json.dumps({"SENSOR_ID": f"s{i}", "TEMPERATURE": float(i * 10)}, separators=(",", ":")).encode() for i in range(6, 10)), (
        "rows in the delivery stream's objects, as JSON with no delimiter"
    )


def test_a_crash_between_saving_and_settling_a_start_is_finished_at_start_up(seeded):
    d, kinesis, ka, clock = seeded
    src, outs = app_over(ka, kinesis, "restarts", 'CREATE PUMP "p" AS INSERT INTO "O" SELECT STREAM * FROM "SOURCE_SQL_STREAM_001";', [("O", "JSON")])
    put_readings(kinesis, src, [("a", 1.0)])
    wait_records(kinesis, outs["O"], 1, "first row")
    ka.stop_application(ApplicationName="restarts")
    wait_status(ka, "restarts", "READY")
    ka.start_application(ApplicationName="restarts", InputConfigurations=[{"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "LAST_STOPPED_POINT"}}])
    d.restart(kill=True)  # STARTING lasts 200 ms: the kill lands in it
    kinesis = make_client(d.endpoint)
    ka = make_client(d.endpoint, service="kinesisanalytics")
    wait_status(ka, "restarts", "RUNNING")
    put_readings(kinesis, src, [("b", 2.0)])
    rows = wait_records(kinesis, outs["O"], 2, "rows after the restart")
    time.sleep(0.3)
    assert [r["SENSOR_ID"] for r in read_json(kinesis, outs["O"])] == ["a", "b"], "LAST_STOPPED_POINT: a was not read again"


def test_discover_input_schema_from_a_bucket_object(seeded):
    d, kinesis, ka, clock = seeded
    bucket = d.data_dir / "buckets" / "samples"
    bucket.mkdir(parents=True)
    (bucket / "readings.csv").write_text("s-1,20.5,7\ns-22,21.25,8\n")
    got = ka.discover_input_schema(S3Configuration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::samples", "FileKey": "readings.csv"})
    schema = got["InputSchema"]
    assert schema["RecordFormat"]["RecordFormatType"] == "CSV"
    assert schema["RecordFormat"]["MappingParameters"]["CSVMappingParameters"] == {"RecordRowDelimiter": "\n", "RecordColumnDelimiter": ","}
    assert [(c["Name"], c["SqlType"]) for c in schema["RecordColumns"]] == [("COL1", "VARCHAR(4)"), ("COL2", "DOUBLE"), ("COL3", "INTEGER")]
    assert got["ParsedInputRecords"] == [["s-1", "20.5", "7"], ["s-22", "21.25", "8"]]
    with pytest.raises(ClientError) as e:
        ka.discover_input_schema(S3Configuration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::samples", "FileKey": "missing.csv"})
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        ka.discover_input_schema(ResourceARN=stream_arn("no-such-stream"), RoleARN=ROLE, InputStartingPositionConfiguration={"InputStartingPosition": "NOW"})
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_state_limits_refuse_rows_to_the_error_stream(new_daemon, tmp_path):
    d, kinesis, ka, clock = clocked_daemon(new_daemon, tmp_path, "groups_per_window = 2\nrows_per_window = 3\n")
    code = '''CREATE OR REPLACE PUMP "g" AS INSERT INTO "GROUPS"
SELECT STREAM sensor_id, COUNT(*) AS n, FLOOR("SOURCE_SQL_STREAM_001".ROWTIME TO MINUTE) AS m
FROM "SOURCE_SQL_STREAM_001" GROUP BY sensor_id, FLOOR("SOURCE_SQL_STREAM_001".ROWTIME TO MINUTE);
CREATE OR REPLACE PUMP "w" AS INSERT INTO "WINDOWED"
SELECT STREAM sensor_id, COUNT(*) OVER (PARTITION BY sensor_id RANGE INTERVAL '1' HOUR PRECEDING) AS n
FROM "SOURCE_SQL_STREAM_001";
'''
    src, outs = app_over(ka, kinesis, "limits", code, [("GROUPS", "JSON"), ("WINDOWED", "JSON"), ("error_stream", "JSON")])
    put_readings(kinesis, src, [("a", 1.0), ("b", 1.0), ("c", 1.0), ("a", 1.0), ("a", 1.0), ("a", 1.0)])
    windowed = wait_records(kinesis, outs["WINDOWED"], 5, "windowed rows")
    assert [(r["SENSOR_ID"], r["N"]) for r in windowed] == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("a", 3)], "the 4th a found its window full"
    errors = wait_records(kinesis, outs["error_stream"], 2, "limit errors")
    assert sorted((e["PUMP_NAME"], e["ERROR_NAME"]) for e in errors) == [("g", "Error_Limit_Exceeded"), ("w", "Error_Limit_Exceeded")]
    assert any("groups_per_window" in e["MESSAGE"] for e in errors) and any("rows_per_window" in e["MESSAGE"] for e in errors)
    set_clock(clock, T0 + 60_000)
    groups = wait_records(kinesis, outs["GROUPS"], 2, "groups")
    assert sorted((g["SENSOR_ID"], g["N"]) for g in groups) == [("a", 4), ("b", 1)], "c was refused: the window had 2 groups"


def test_records_that_do_not_fit_the_schema_go_to_the_error_stream(seeded):
    d, kinesis, ka, clock = seeded
    code = 'CREATE OR REPLACE PUMP "p" AS INSERT INTO "O" SELECT STREAM * FROM "SOURCE_SQL_STREAM_001";'
    src, outs = app_over(ka, kinesis, "misfits", code, [("O", "CSV"), ("error_stream", "JSON")])
    kinesis.put_records(
        StreamName=src,
        Records=[
            {"Data": b"not json", "PartitionKey": "k"},
            {"Data": json.dumps({"sensor_id": "a", "temperature": "warm"}), "PartitionKey": "k"},
            {"Data": json.dumps({"sensor_id": "a-very-long-sensor-name", "temperature": 3}), "PartitionKey": "k"},
        ],
    )
    errors = wait_records(kinesis, outs["error_stream"], 2, "error rows")
    assert [e["ERROR_NAME"] for e in errors] == ["Error_Parsing_Input", "Error_Parsing_Input"]
    assert bytes.fromhex(errors[0]["DATA_ROW"]) == b"not json", "the record as it came, hex-encoded"
    assert "TEMPERATURE" in errors[1]["MESSAGE"] and "warm" in errors[1]["MESSAGE"]
    assert errors[0]["ERROR_LEVEL"] == "ERROR" and errors[0]["DATA_ROWTIME"] == ts_text(T0)
    rows = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not rows:
        rows = [r["Data"] for s in list_all_shards(kinesis, outs["O"]) for r in read_shard(kinesis, outs["O"], s["ShardId"])]
        time.sleep(0.05)
    assert rows == [b"a-very-long-sens,3.0\n"], "an overlong string is truncated to its column, a number taken as DOUBLE"
