"""The org's automation (``opportunity.automation``): Apex time, wrapped lock errors, the CPU limit,
and batches that run out of time, measured from Salesforce's side (SOQL counts, job info, results).
"""

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml

from sync_assets.sandbox.runner import SandboxHandle
from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv, unique_prefix

WRAPPED = "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"
CPU_LIMIT_ERROR = (
    "OpportunityTrigger: execution of AfterInsert\n\ncaused by: System.LimitException: Apex CPU "
    "time limit exceeded\n\nTrigger.OpportunityTrigger: line 12, column 1"
)


def _org(tmp_path: Path, **automation: Any) -> Path:
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump({"opportunity": {"automation": automation}}))
    return path


def _rows(prefix: str, accounts: list[str]) -> str:
    """One valid row per entry of ``accounts``, its parent Account."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["External_Id__c", "Account.External_Id__c", "Name", "StageName", "CloseDate"])
    for n, account in enumerate(accounts):
        writer.writerow([f"{prefix}{n}", account, f"Opportunity {n}", "Prospecting", "2026-11-28"])
    return buffer.getvalue()


def _account_id(bulk: BulkClient, key: str) -> str:
    [account] = bulk.records(f"SELECT Id FROM Account WHERE External_Id__c = '{key}'")
    return str(account["Id"])


def _wrapped_lock_error(trigger: str, account_id: str) -> str:
    """The message of a rollup trigger that could not lock the parent Account (DLRS #1241)."""
    return (
        f"{trigger}: execution of AfterInsert\n\ncaused by: System.DmlException: Update failed. "
        f"First exception on row 0 with id {account_id}; first error: UNABLE_TO_LOCK_ROW, unable "
        f"to obtain exclusive access to this record: []\n\nTrigger.{trigger}: line 12, column 1"
    )


def _holding_account_one(
    fresh_sandbox: Callable[..., SandboxHandle], tmp_path: Path
) -> tuple[BulkClient, str]:
    """A sandbox with a rollup trigger (wrapped lock errors, 0.2 s lock timeout) and a running
    Bulk job that holds ACC-000001's lock for a second: the client and that job's id."""
    org = _org(tmp_path, lock_errors="wrapped", trigger="dlrs_OpportunityTrigger")
    bulk = BulkClient(
        fresh_sandbox(accounts=5, rate=1_000, slots=2, lock_timeout=0.2, org=org).connection
    )
    holder = bulk.start(
        opportunity_csv(unique_prefix(), 1_000, account="ACC-000001"), operation="insert"
    )
    time.sleep(0.3)
    return bulk, holder


def _rest_create(bulk: BulkClient, account: str) -> requests.Response:
    """``POST /sobjects/Opportunity/``: one Opportunity under the Account ``account``."""
    key = unique_prefix()
    return bulk.session.post(
        f"{bulk.base}/sobjects/Opportunity/",
        json={
            "External_Id__c": key,
            "Name": f"Opportunity {key}",
            "StageName": "Prospecting",
            "CloseDate": "2026-11-28",
            "Account": {"External_Id__c": account},
        },
    )


def _rest_error(message: str) -> list[dict[str, Any]]:
    """REST's answer to a record a trigger failed: the row error's message, no fields."""
    return [{"message": message, "errorCode": WRAPPED, "fields": []}]


def test_without_automation_apex_time_is_zero(bulk: BulkClient) -> None:
    info = bulk.load(opportunity_csv(unique_prefix(), 50), operation="insert")
    assert (info["state"], info["apexProcessingTime"]) == ("JobComplete", 0)


def test_apex_time_per_record_slows_processing_and_shows_in_job_info(
    fresh_sandbox, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    org = _org(tmp_path, apex_ms_per_record=0.5)
    bulk = BulkClient(fresh_sandbox(accounts=3, slots=1, org=org).connection)
    prefix = unique_prefix()
    started = time.monotonic()
    info = bulk.load(opportunity_csv(prefix, 2_000), operation="insert")
    elapsed = time.monotonic() - started
    assert info["state"] == "JobComplete" and info["numberRecordsFailed"] == 0
    # 2,000 records at 0.5 ms: one second of triggers, part of the active processing time.
    assert info["apexProcessingTime"] == 1_000
    assert info["apiActiveProcessingTime"] >= 1_000 and info["totalProcessingTime"] >= 1_000
    assert elapsed >= 0.95
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 2_000


def test_wrapped_lock_errors_fail_the_whole_chunk(fresh_sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """DLRS #1241/#847/#736: a rollup trigger that cannot lock the parent Account fails its chunk."""
    bulk, holder = _holding_account_one(fresh_sandbox, tmp_path)
    # Chunk one (rows 0-199) has one row on the held Account; chunk two (rows 200-399) has none.
    accounts = ["ACC-000002"] * 400
    accounts[150] = "ACC-000001"
    prefix = unique_prefix()
    blocked = bulk.start(_rows(prefix, accounts), operation="insert")
    info = bulk.wait(blocked)
    assert bulk.wait(holder)["numberRecordsFailed"] == 0
    assert (info["state"], info["numberRecordsFailed"], info["retries"]) == (
        "JobComplete",
        200,
        200,
    )
    failed = bulk.results(blocked, "failedResults")
    assert sorted(int(r["External_Id__c"].removeprefix(prefix)) for r in failed) == list(range(200))
    expected = _wrapped_lock_error("dlrs_OpportunityTrigger", _account_id(bulk, "ACC-000001"))
    assert {r["sf__Error"] for r in failed} == {f"{WRAPPED}:{expected}:--"}
    # The multi-line value is quoted in the CSV, so each failed record is one parsed row.
    assert bulk.results_text(blocked, "failedResults").text.count("\n\ncaused by") == 200
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 200


def test_chunks_over_the_cpu_limit_fail_whole(fresh_sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Per 200-record chunk, its own transaction: 200 × 1 ms passes a 150 ms limit, 100 × 1 ms not."""
    org = _org(tmp_path, apex_ms_per_record=1, cpu_limit_ms=150)
    bulk = BulkClient(fresh_sandbox(accounts=3, org=org).connection)
    prefix = unique_prefix()
    info = bulk.load(opportunity_csv(prefix, 500), operation="insert")
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (
        "JobComplete",
        500,
        400,
    )
    # Two chunks stopped at the limit, the last one ran its 100 records.
    assert info["apexProcessingTime"] == 150 + 150 + 100
    errors = {r["sf__Error"] for r in bulk.results(info["id"], "failedResults")}
    assert errors == {f"{WRAPPED}:{CPU_LIMIT_ERROR}:--"}
    saved = bulk.records(
        f"SELECT External_Id__c FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'"
    )
    assert sorted(int(r["External_Id__c"].removeprefix(prefix)) for r in saved) == list(
        range(400, 500)
    )


def test_a_batch_past_its_time_keeps_its_done_chunks_and_retries_the_rest(
    fresh_sandbox, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """1,000 records at 1 ms and a 0.5 s batch limit: 400 + 400 + 200 records in three attempts."""
    org = _org(tmp_path, apex_ms_per_record=1)
    bulk = BulkClient(fresh_sandbox(accounts=3, slots=1, batch_time_limit=0.5, org=org).connection)
    prefix = unique_prefix()
    info = bulk.load(opportunity_csv(prefix, 1_000), operation="insert")
    assert (info["state"], info["numberRecordsProcessed"], info["retries"]) == (
        "JobComplete",
        1_000,
        2,
    )
    assert info["apexProcessingTime"] == 1_000
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 1_000, "no record twice"
    successes = bulk.results(info["id"], "successfulResults")
    assert len({r["sf__Id"] for r in successes}) == len(successes) == 1_000
    assert bulk.results(info["id"], "unprocessedrecords") == []


def test_a_rest_write_costs_its_record_s_apex_time(fresh_sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A REST record is a chunk of one: its triggers run before the answer."""
    org = _org(tmp_path, apex_ms_per_record=400)
    bulk = BulkClient(fresh_sandbox(accounts=3, org=org).connection)
    started = time.monotonic()
    created = _rest_create(bulk, "ACC-000001")
    assert created.status_code == 201, created.text
    assert time.monotonic() - started >= 0.4


def test_a_rest_write_over_the_cpu_limit_fails_with_the_wrapped_error(
    fresh_sandbox, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    org = _org(tmp_path, apex_ms_per_record=400, cpu_limit_ms=100)
    bulk = BulkClient(fresh_sandbox(accounts=3, org=org).connection)
    created = _rest_create(bulk, "ACC-000001")
    assert (created.status_code, created.json()) == (400, _rest_error(CPU_LIMIT_ERROR))
    assert bulk.count() == 0


def test_a_rest_write_waits_for_a_held_parent_then_fails_with_the_wrapped_error(
    fresh_sandbox, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A record under an Account a Bulk batch holds waits ``lock_timeout``; others go through."""
    bulk, holder = _holding_account_one(fresh_sandbox, tmp_path)
    blocked = _rest_create(bulk, "ACC-000001")
    free = _rest_create(bulk, "ACC-000002")
    expected = _wrapped_lock_error("dlrs_OpportunityTrigger", _account_id(bulk, "ACC-000001"))
    assert (blocked.status_code, blocked.json()) == (400, _rest_error(expected))
    assert free.status_code == 201, free.text
    assert bulk.wait(holder)["numberRecordsFailed"] == 0
