"""jsforce 3 (npm) as a second client of the sandbox: Bulk API 2.0 loads, results, queries, chunked uploads."""

import csv
import io
import json
import math
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from sync_assets.salesforce.connection import DEFAULT_API_VERSION
from sync_assets.sandbox.runner import SandboxConnection, SandboxHandle
from sync_assets_tests.sandbox.bulk_client import BulkClient

pytestmark = pytest.mark.slow

JS_DIR = Path(__file__).parent / "js"
CHECK_SCRIPT = JS_DIR / "bulk2_check.mjs"
NODE_TIMEOUT_SECONDS = 180
ACCOUNT_KEY = "ACC-000000"
NEW_ROWS = 400
# A prime chunk size, so the streamed upload is cut at odd places, inside UTF-8 characters too.
STREAM_CHUNK_BYTES = 4093
UPLOAD_COLUMNS = (
    "External_Id__c",
    "Name",
    "StageName",
    "CloseDate",
    "Description",
    "Account.External_Id__c",
)
TRICKY_DESCRIPTIONS = (
    'She said "yes, twice", then "no"',
    "first line\nsecond line\n\nfourth, after a blank line",
    "Zürich · 東京 · Ελληνικά · emoji 😀🚀 · e\u0301 combining",
    "  spaces kept around  ",
)
UNKNOWN_COLUMN = "Nonexistent__c"
NAME_MISSING = "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
BAD_STAGE = re.compile(r"^INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:.+:StageName --$")
OPPORTUNITY_ID = re.compile(r"^006[0-9A-Za-z]{15}$")
QUERY_RESULTS = re.compile(r"/services/data/v[\d.]+/jobs/query/(750\w{15})/results")


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class LoadPlan(CamelModel):
    name: str
    job: dict[str, str]
    records: list[dict[str, Any]] | None = None
    csv: str | None = None
    stream_chunk_bytes: int | None = None


class AbortedUploadPlan(CamelModel):
    job: dict[str, str]
    records: list[dict[str, Any]]


class BulkQueryPlan(CamelModel):
    name: str
    soql: str
    scan_all: bool


class CheckPlan(CamelModel):
    api_version: str
    poll_interval_ms: int
    poll_timeout_ms: int
    loads: list[LoadPlan]
    aborted_upload: AbortedUploadPlan
    queries: list[str]
    bulk_queries: list[BulkQueryPlan]


class JsforceError(CamelModel):
    name: str
    error_code: str | None
    message: str


class LoadOutcome(CamelModel):
    job_id: str | None
    job_info: dict[str, Any] | None = None
    successful_results: list[dict[str, str]] = []
    failed_results: list[dict[str, str]] = []
    unprocessed_records: list[dict[str, str]] = []
    error: JsforceError | None


class AbortedUploadOutcome(CamelModel):
    job_id: str | None
    job_info: dict[str, Any] | None = None
    unprocessed_csv: str | None = None
    unprocessed_records: list[dict[str, str]] = []
    error: JsforceError | None


class QueryOutcome(CamelModel):
    soql: str
    total_size: int | None = None
    done: bool | None = None
    records: list[dict[str, Any]] = []
    error: JsforceError | None


class BulkQueryOutcome(CamelModel):
    records: list[dict[str, str]] = []
    error: JsforceError | None


class SentRequest(CamelModel):
    method: str
    path: str
    status: int | None = None
    transfer_encoding: str | None = None
    content_length: str | None = None
    body_bytes: int
    body_writes: int


class CheckSummary(CamelModel):
    jsforce_version: str
    node_version: str
    loads: dict[str, LoadOutcome]
    aborted_upload: AbortedUploadOutcome
    queries: list[QueryOutcome]
    bulk_queries: dict[str, BulkQueryOutcome]
    requests: list[SentRequest]


class Scenario(BaseModel):
    """The data sent in one run of the check, keyed by a prefix unique to that run."""

    run: str

    def key(self, suffix: str) -> str:
        return f"{self.run}-{suffix}"

    @property
    def tricky_keys(self) -> list[str]:
        return [self.key(f"tricky-{index}") for index in range(len(TRICKY_DESCRIPTIONS))]

    @property
    def nameless_key(self) -> str:
        return self.key("nameless")

    @property
    def new_keys(self) -> list[str]:
        return [self.key(f"new-{index:04d}") for index in range(NEW_ROWS)]

    @property
    def bad_stage_key(self) -> str:
        return self.key("bad-stage")

    @property
    def aborted_keys(self) -> list[str]:
        return [self.key(f"aborted-{index}") for index in range(3)]

    def insert_records(self) -> list[dict[str, Any]]:
        """Records for jsforce to serialise; None becomes `#N/A` (null), so Amount is nulled once."""
        valid = [
            _opportunity(key, f"jsforce {index}", "Prospecting", description)
            | {"Amount": None if index == 0 else 1250.5}
            for index, (key, description) in enumerate(
                zip(self.tricky_keys, TRICKY_DESCRIPTIONS, strict=True)
            )
        ]
        nameless = _opportunity(self.nameless_key, None, "Prospecting", "no name") | {"Amount": 10}
        return [*valid, nameless]

    def upsert_descriptions(self) -> dict[str, str]:
        updated = {
            key: f"{description} · updated ✓"
            for key, description in zip(self.tricky_keys, TRICKY_DESCRIPTIONS, strict=True)
        }
        created = {key: f"streamed {key}: Grüße, «東京», Привет, 😀\n" * 3 for key in self.new_keys}
        return updated | {self.nameless_key: "named at last"} | created

    def upsert_rows(self) -> list[dict[str, Any]]:
        rows = [
            _opportunity(key, f"jsforce {key}", "Closed Won", description)
            for key, description in self.upsert_descriptions().items()
        ]
        return [*rows, _opportunity(self.bad_stage_key, "bad stage", "Not A Stage", "x")]

    def aborted_records(self) -> list[dict[str, Any]]:
        return [
            _opportunity(key, f"never processed {key}", "Prospecting", f"abgebrochen «{key}» 😀")
            for key in self.aborted_keys
        ]

    def plan(self) -> CheckPlan:
        return CheckPlan(
            api_version=DEFAULT_API_VERSION,
            poll_interval_ms=200,
            poll_timeout_ms=60_000,
            loads=[
                LoadPlan(
                    name="insert",
                    job={"object": "Opportunity", "operation": "insert"},
                    records=self.insert_records(),
                ),
                LoadPlan(
                    name="upsert",
                    job={
                        "object": "Opportunity",
                        "operation": "upsert",
                        "externalIdFieldName": "External_Id__c",
                    },
                    csv=_csv_text(self.upsert_rows()),
                    stream_chunk_bytes=STREAM_CHUNK_BYTES,
                ),
                LoadPlan(
                    name="unknown_column",
                    job={"object": "Opportunity", "operation": "insert"},
                    records=[
                        _opportunity(self.key("unknown-column"), "x", "Prospecting", "x")
                        | {UNKNOWN_COLUMN: "x"}
                    ],
                ),
            ],
            aborted_upload=AbortedUploadPlan(
                job={"object": "Opportunity", "operation": "insert"},
                records=self.aborted_records(),
            ),
            queries=[
                f"SELECT COUNT() FROM Opportunity WHERE External_Id__c LIKE '{self.run}-%'",
                "SELECT External_Id__c, StageName, Amount, Description FROM Opportunity "
                f"WHERE External_Id__c IN ({_soql_strings(self.tricky_keys)})",
            ],
            bulk_queries=[
                BulkQueryPlan(name=name, soql=self.bulk_soql, scan_all=scan_all)
                for name, scan_all in (("query", False), ("queryAll", True))
            ],
        )

    @property
    def bulk_soql(self) -> str:
        return (
            "SELECT External_Id__c, StageName, Amount, Description, Account.External_Id__c "
            f"FROM Opportunity WHERE External_Id__c IN ({_soql_strings(self.tricky_keys)}) "
            "ORDER BY External_Id__c"
        )


def _opportunity(key: str, name: str | None, stage: str, description: str) -> dict[str, Any]:
    values = (key, name, stage, "2026-12-31", description, ACCOUNT_KEY)
    return dict(zip(UPLOAD_COLUMNS, values, strict=True))


def _soql_strings(values: list[str]) -> str:
    """A SOQL list of string literals; the run's keys hold no quote or backslash to escape."""
    return ", ".join(f"'{value}'" for value in values)


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=UPLOAD_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def jsforce_installed() -> None:
    """Skip when jsforce is not installed locally; in CI it must be (`.ci/run` runs `npm ci`)."""
    if shutil.which("node") and (JS_DIR / "node_modules" / "jsforce").is_dir():
        return
    reason = (
        "jsforce is not installed (needs Node.js and "
        "`npm ci --prefix sync_assets_tests/sandbox/js`)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must install it")
    pytest.skip(reason)


def _node_environment(connection: SandboxConnection) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        # jsforce sends every request through a proxy named in these variables and ignores
        # NO_PROXY; its logger writes to stdout, which carries the JSON summary.
        if name.lower() not in {"http_proxy", "https_proxy", "jsforce_log_level"}
    }
    return env | {
        "NODE_EXTRA_CA_CERTS": str(connection.ca_cert),
        "SALESFORCE_INSTANCE_URL": connection.instance_url,
        "SALESFORCE_ACCESS_TOKEN": connection.access_token.get_secret_value(),
    }


def run_jsforce_check(plan: CheckPlan, connection: SandboxConnection) -> CheckSummary:
    completed = subprocess.run(
        ["node", str(CHECK_SCRIPT)],
        input=plan.model_dump_json(by_alias=True),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=NODE_TIMEOUT_SECONDS,
        env=_node_environment(connection),
        check=False,
    )
    assert completed.returncode == 0, f"bulk2_check.mjs failed:\n{completed.stderr}"
    return CheckSummary.model_validate(json.loads(completed.stdout))


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario(run=f"js-{secrets.token_hex(4)}")


@pytest.fixture(scope="module")
def summary(jsforce_installed: None, sandbox: SandboxHandle, scenario: Scenario) -> CheckSummary:
    return run_jsforce_check(scenario.plan(), sandbox.connection)


def _completed_load(summary: CheckSummary, name: str) -> LoadOutcome:
    load = summary.loads[name]
    assert load.error is None, f"jsforce {name} failed: {load.error}"
    return load


def _by_key(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["External_Id__c"]: row for row in rows}


def _query(summary: CheckSummary, starts_with: str) -> QueryOutcome:
    (outcome,) = [query for query in summary.queries if query.soql.startswith(starts_with)]
    assert outcome.error is None, f"jsforce query failed: {outcome.error}"
    return outcome


def test_jsforce_is_a_pinned_3x_release(summary: CheckSummary) -> None:
    package = json.loads((JS_DIR / "package.json").read_text(encoding="utf-8"))
    assert summary.jsforce_version == package["dependencies"]["jsforce"]
    assert summary.jsforce_version.startswith("3.")


def test_insert_creates_valid_rows_and_fails_the_nameless_one(
    summary: CheckSummary, scenario: Scenario
) -> None:
    load = _completed_load(summary, "insert")
    successful = _by_key(load.successful_results)
    assert sorted(successful) == sorted(scenario.tricky_keys)
    assert {row["sf__Created"] for row in successful.values()} == {"true"}
    assert all(OPPORTUNITY_ID.match(row["sf__Id"]) for row in successful.values())
    sent = dict(zip(scenario.tricky_keys, TRICKY_DESCRIPTIONS, strict=True))
    assert {key: row["Description"] for key, row in successful.items()} == sent

    (failed,) = load.failed_results
    assert failed["External_Id__c"] == scenario.nameless_key
    assert failed["sf__Id"] == ""
    assert failed["sf__Error"] == NAME_MISSING
    assert load.unprocessed_records == []
    assert load.job_info is not None
    assert load.job_info["state"] == "JobComplete"
    assert load.job_info["numberRecordsProcessed"] == len(scenario.insert_records())
    assert load.job_info["numberRecordsFailed"] == 1


def test_upsert_updates_matched_keys_and_creates_new_ones(
    summary: CheckSummary, scenario: Scenario
) -> None:
    inserted_ids = {
        key: row["sf__Id"]
        for key, row in _by_key(_completed_load(summary, "insert").successful_results).items()
    }
    load = _completed_load(summary, "upsert")
    successful = _by_key(load.successful_results)
    expected_created = {key: "true" for key in scenario.upsert_descriptions()} | dict.fromkeys(
        scenario.tricky_keys, "false"
    )
    assert {key: row["sf__Created"] for key, row in successful.items()} == expected_created
    assert {key: successful[key]["sf__Id"] for key in scenario.tricky_keys} == inserted_ids
    assert {
        key: row["Description"] for key, row in successful.items()
    } == scenario.upsert_descriptions()

    (failed,) = load.failed_results
    assert failed["External_Id__c"] == scenario.bad_stage_key
    assert failed["sf__Id"] == ""
    assert BAD_STAGE.match(failed["sf__Error"]), failed["sf__Error"]
    assert load.job_info is not None
    assert load.job_info["state"] == "JobComplete"
    assert load.job_info["numberRecordsProcessed"] == len(scenario.upsert_rows())
    assert load.job_info["numberRecordsFailed"] == 1


def test_uploads_are_streamed_chunked_and_arrive_whole(
    summary: CheckSummary, scenario: Scenario
) -> None:
    uploads = [request for request in summary.requests if request.method == "PUT"]
    assert len(uploads) == 4, uploads
    for upload in uploads:
        assert upload.path.endswith("/batches")
        assert upload.transfer_encoding == "chunked"
        assert upload.content_length is None
        assert upload.status == 201
    upsert_job = _completed_load(summary, "upsert").job_id
    (upsert_upload,) = [upload for upload in uploads if f"/{upsert_job}/" in upload.path]
    streamed_csv = _csv_text(scenario.upsert_rows()).encode("utf-8")
    assert upsert_upload.body_bytes == len(streamed_csv)
    assert upsert_upload.body_writes == math.ceil(len(streamed_csv) / STREAM_CHUNK_BYTES)
    # The server has to join chunks before decoding: some cuts fall inside a UTF-8 character.
    cuts = range(STREAM_CHUNK_BYTES, len(streamed_csv), STREAM_CHUNK_BYTES)
    assert any(streamed_csv[cut] & 0b1100_0000 == 0b1000_0000 for cut in cuts)


def test_unprocessed_records_are_read_with_the_lowercase_path(
    summary: CheckSummary, scenario: Scenario
) -> None:
    unprocessed_gets = [
        request
        for request in summary.requests
        if request.method == "GET" and request.path.lower().endswith("/unprocessedrecords")
    ]
    assert len(unprocessed_gets) == 4, unprocessed_gets
    assert all(request.path.endswith("/unprocessedrecords") for request in unprocessed_gets)
    assert all(request.status == 200 for request in unprocessed_gets)

    aborted = summary.aborted_upload
    assert aborted.error is None, f"jsforce aborted upload failed: {aborted.error}"
    assert aborted.job_info is not None
    assert aborted.job_info["state"] == "Aborted"
    assert aborted.unprocessed_csv is not None
    assert aborted.unprocessed_csv.split("\n", 1)[0] == ",".join(UPLOAD_COLUMNS)
    assert aborted.unprocessed_records == scenario.aborted_records()


def test_count_query_sees_exactly_the_applied_rows(
    summary: CheckSummary, scenario: Scenario
) -> None:
    outcome = _query(summary, "SELECT COUNT()")
    assert outcome.done is True
    assert outcome.records == []
    assert outcome.total_size == len(scenario.upsert_descriptions())


def test_text_round_trips_through_the_rest_query(summary: CheckSummary, scenario: Scenario) -> None:
    outcome = _query(summary, "SELECT External_Id__c")
    found = {
        record["External_Id__c"]: (record["StageName"], record["Amount"], record["Description"])
        for record in outcome.records
    }
    descriptions = scenario.upsert_descriptions()
    assert found == {
        key: ("Closed Won", None if index == 0 else 1250.5, descriptions[key])
        for index, key in enumerate(scenario.tricky_keys)
    }


def test_a_job_level_failure_reaches_jsforce_with_its_error_message(summary: CheckSummary) -> None:
    load = summary.loads["unknown_column"]
    assert load.error is not None
    assert load.error.message == (
        "Ingest job failed to complete due to: "
        f"InvalidBatch : Field name not found : {UNKNOWN_COLUMN}"
    )


def test_bulk2_query_reads_back_the_records_as_csv_strings(
    summary: CheckSummary, scenario: Scenario
) -> None:
    descriptions = scenario.upsert_descriptions()
    expected = [
        {
            "External_Id__c": key,
            "StageName": "Closed Won",
            "Amount": "" if index == 0 else "1250.5",
            "Description": descriptions[key],
            "Account.External_Id__c": ACCOUNT_KEY,
        }
        for index, key in enumerate(scenario.tricky_keys)
    ]
    for name in ("query", "queryAll"):
        outcome = summary.bulk_queries[name]
        assert outcome.error is None, f"jsforce bulk2.query failed: {outcome.error}"
        assert outcome.records == sorted(expected, key=lambda row: row["External_Id__c"])


def test_bulk2_query_stops_at_the_null_locator_and_sends_the_operation(
    summary: CheckSummary, sandbox: SandboxHandle
) -> None:
    """jsforce reads result pages until ``Sforce-Locator`` is the string ``null``."""
    results = [
        (found.group(1), request.status)
        for request in summary.requests
        if request.method == "GET" and (found := QUERY_RESULTS.fullmatch(request.path))
    ]
    assert [status for _, status in results] == [200, 200]
    job_ids = [job_id for job_id, _ in results]
    bulk = BulkClient(sandbox.connection)
    assert [bulk.info(job_id, "query")["operation"] for job_id in job_ids] == [
        "query",
        "queryAll",
    ]
