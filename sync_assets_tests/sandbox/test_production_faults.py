"""Faults a production org shows (``--faults``): the concurrency limit, maintenance, stuck jobs, jobs
aborted by an admin and batches retried until the org gives up, measured from Salesforce's side.
"""

import time

import pytest

from sync_assets.sandbox.faults import CONCURRENCY_MESSAGES, FaultInjector, FaultSpec
from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv, unique_prefix

IN_MAINTENANCE = (
    "INSERT_UPDATE_DELETE_NOT_ALLOWED_DURING_MAINTENANCE:Updates can't be made during maintenance."
    " Try again when maintenance is complete.:--"
)


def _stats(bulk: BulkClient) -> dict:  # type: ignore[type-arg]
    return bulk.session.get(f"{bulk.root}/__sandbox/stats").json()


def test_settings_in_the_fault_spec() -> None:
    spec = FaultSpec.parse("maintenance=30s, stuck=0.1, stuck_seconds=60, batch_timeout=0.2")
    assert (spec.maintenance_seconds, spec.stuck_seconds) == (30.0, 60.0)
    assert spec.rates == {"stuck": 0.1, "batch_timeout": 0.2}
    assert FaultSpec.parse("maintenance=90").maintenance_seconds == 90.0
    assert FaultSpec.parse("maintenance=0.25").rates == {"maintenance": 0.25}


def test_the_concurrency_limit_answers_403_before_anything_is_applied(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    """Salesforce Help 000389067 and captured fixtures: 403 REQUEST_LIMIT_EXCEEDED, two texts."""
    bulk = BulkClient(fresh_sandbox(accounts=0, faults="http_403_concurrent=1", seed=5).connection)
    answers = [bulk.create(object="Opportunity", operation="insert") for _ in range(12)]
    assert {a.status_code for a in answers} == {403}
    assert {a.json()[0]["errorCode"] for a in answers} == {"REQUEST_LIMIT_EXCEEDED"}
    assert {a.json()[0]["message"] for a in answers} == set(CONCURRENCY_MESSAGES)
    stats = _stats(bulk)
    assert (stats["totals"]["jobs"], stats["totals"]["fault:http_403_concurrent"]) == (0, 12)


def test_batches_processed_in_maintenance_fail_their_rows(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    bulk = BulkClient(fresh_sandbox(accounts=3, faults="maintenance=1").connection)
    prefix = unique_prefix()
    info = bulk.load(opportunity_csv(prefix, 300), operation="insert")
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (
        "JobComplete",
        300,
        300,
    )
    assert {r["sf__Error"] for r in bulk.results(info["id"], "failedResults")} == {IN_MAINTENANCE}
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 0, "reads go on, writes do not"


def test_rest_record_writes_in_maintenance_fail_with_the_same_error(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    """A REST write is a batch of one: the row error of Bulk, in REST's 400 answer."""
    bulk = BulkClient(fresh_sandbox(accounts=3, faults="maintenance=1").connection)
    key = unique_prefix()
    record = {"Name": key, "StageName": "Prospecting", "CloseDate": "2026-11-28"}
    code, message, _ = IN_MAINTENANCE.split(":")
    refused = [{"message": message, "errorCode": code, "fields": []}]
    created = bulk.session.post(f"{bulk.base}/sobjects/Opportunity/", json=record)
    upserted = bulk.session.patch(
        f"{bulk.base}/sobjects/Opportunity/External_Id__c/{key}", json=record
    )
    for answer in (created, upserted):
        assert (answer.status_code, answer.json()) == (400, refused)
    assert bulk.count(f"Name = '{key}'") == 0, "reads go on, writes do not"


def test_a_maintenance_window_from_the_start_then_writes_again(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    """Jobs are still accepted during the window (no captured answer says otherwise)."""
    handle = fresh_sandbox(accounts=3, faults="maintenance=3s")
    ready = time.monotonic()
    bulk = BulkClient(handle.connection)
    during, after = unique_prefix(), unique_prefix()
    info = bulk.load(opportunity_csv(during, 50), operation="insert")
    assert info["numberRecordsFailed"] == 50
    time.sleep(max(0.0, ready + 3.2 - time.monotonic()))
    assert bulk.load(opportunity_csv(after, 50), operation="insert")["numberRecordsFailed"] == 0
    assert (
        bulk.count(f"External_Id__c LIKE '{during}%'"),
        bulk.count(f"External_Id__c LIKE '{after}%'"),
    ) == (0, 50)


def test_a_stuck_job_stays_in_progress_then_goes_on(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    bulk = BulkClient(fresh_sandbox(accounts=3, faults="stuck=1,stuck_seconds=2").connection)
    prefix = unique_prefix()
    started = time.monotonic()
    job_id = bulk.start(opportunity_csv(prefix, 100), operation="insert")
    time.sleep(1.0)
    info = bulk.info(job_id)
    assert (info["state"], info["numberRecordsProcessed"]) == ("InProgress", 0)
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 0
    done = bulk.wait(job_id)
    assert time.monotonic() - started >= 2.0
    assert (done["state"], done["numberRecordsProcessed"]) == ("JobComplete", 100)
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 100


def test_a_stuck_job_can_be_aborted(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    bulk = BulkClient(fresh_sandbox(accounts=3, faults="stuck=1,stuck_seconds=600").connection)
    prefix = unique_prefix()
    job_id = bulk.start(opportunity_csv(prefix, 100), operation="insert")
    time.sleep(0.5)
    assert bulk.info(job_id)["state"] == "InProgress"
    assert bulk.patch(job_id, "Aborted").json()["state"] == "Aborted"
    assert len(bulk.results(job_id, "unprocessedrecords")) == 100
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 0


def test_a_job_aborted_by_an_admin_keeps_what_was_processed(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    """Seed 3 aborts the job at its third batch: two batches applied, not rolled back."""
    bulk = BulkClient(fresh_sandbox(accounts=3, faults="admin_abort=1", seed=3, slots=1).connection)
    prefix = unique_prefix()
    info = bulk.load(opportunity_csv(prefix, 25_000), operation="insert")
    assert (info["state"], info["numberRecordsProcessed"]) == ("Aborted", 20_000)
    assert "errorMessage" not in info
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 20_000
    assert len(bulk.results(info["id"], "successfulResults")) == 20_000
    assert len(bulk.results(info["id"], "unprocessedrecords")) == 5_000


def test_timed_out_batches_are_retried_until_the_org_gives_up(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    bulk = BulkClient(
        fresh_sandbox(
            accounts=3, faults="batch_timeout=1", seed=4, batch_time_limit=0.05, batch_retries=2
        ).connection
    )
    prefix = unique_prefix()
    info = bulk.load(opportunity_csv(prefix, 2_000), operation="insert")
    assert info["state"] == "Failed"
    assert info["errorMessage"] == (
        "Timeout : An internal batch was retried more than 2 times; the remaining records were "
        "not processed"
    )
    assert info["retries"] == 3, "three attempts, each one out of time"
    # The chunks each attempt got done stay applied, once; the rest is unprocessed.
    applied = bulk.count(f"External_Id__c LIKE '{prefix}%'")
    assert applied == info["numberRecordsProcessed"] < 2_000
    assert len(bulk.results(info["id"], "successfulResults")) == applied
    assert len(bulk.results(info["id"], "unprocessedrecords")) == 2_000 - applied


@pytest.mark.parametrize("fault", ["admin_abort", "stuck", "batch_timeout", "maintenance"])
def test_new_faults_are_reproducible_for_a_seed(fault: str) -> None:
    spec = FaultSpec.parse(f"{fault}=0.5")

    def draws(injector: FaultInjector) -> list[tuple[object, ...]]:
        return [
            (injector.job_faults(5), injector.stalled_chunk(50), injector.in_maintenance())
            for _ in range(30)
        ]

    first = draws(FaultInjector(spec, 9))
    assert first == draws(FaultInjector(spec, 9))
    assert len(set(first)) > 1, "the fault fires for some draws and not for others"
