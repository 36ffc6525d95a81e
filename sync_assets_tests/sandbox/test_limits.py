"""Limits as a real org reports them: /limits keys, a rolling 24 hours, the daily records limit."""

import math
import sqlite3
import time
from pathlib import Path

from sync_assets.sandbox.limits import API_REQUESTS, BULK_BATCHES, DailyLimits
from sync_assets.sandbox.store import Database
from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv, unique_prefix

HOUR = 3600.0


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_limits_lists_real_keys_in_the_real_shape(bulk: BulkClient) -> None:
    """Keys from the REST API reference's List Org Limits example; none for ingested records."""
    limits = bulk.session.get(f"{bulk.base}/limits").json()
    for name in (
        "DailyApiRequests",
        "DailyBulkApiBatches",
        "DailyBulkV2QueryJobs",
        "DailyBulkV2QueryFileStorageMB",
        "DailyAsyncApexExecutions",
        "DataStorageMB",
    ):
        assert set(limits[name]) == {"Max", "Remaining"}
        assert isinstance(limits[name]["Max"], int) and isinstance(limits[name]["Remaining"], int)
    assert not [name for name in limits if "Ingest" in name]
    assert list(limits) == sorted(limits)


def test_usage_counts_over_a_rolling_24_hours_and_is_kept(tmp_path: Path) -> None:
    db = Database(tmp_path / "limits.db")
    clock = _Clock()
    limits = DailyLimits(db, {API_REQUESTS: 10, BULK_BATCHES: 5}, clock)
    assert limits.try_consume(API_REQUESTS, 6)
    clock.now += 20 * HOUR
    assert limits.try_consume(API_REQUESTS, 4)
    assert not limits.try_consume(API_REQUESTS), "10 of 10 used within 24 hours"
    limits.flush()
    clock.now += 4 * HOUR + 60
    # The first 6 are more than 24 hours old now; a restart reads the same from the database.
    restarted = DailyLimits(db, {API_REQUESTS: 10, BULK_BATCHES: 5}, clock)
    for counted in (limits, restarted):
        assert counted.usage(API_REQUESTS) == (4, 10)
    assert restarted.try_consume(API_REQUESTS, 6)
    assert restarted.report()[API_REQUESTS] == {"Max": 10, "Remaining": 0}


def test_a_restart_counts_the_last_24_hours_not_the_calendar_day(fresh_sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "rolling"
    fresh_sandbox(data_dir=data_dir, accounts=0, daily_api_requests=1_000).stop()
    minute = math.floor(time.time() / 60)
    with sqlite3.connect(data_dir / "sandbox.db") as conn:
        conn.execute("DELETE FROM usage")
        conn.executemany(
            "INSERT INTO usage (minute, name, value) VALUES (?, ?, ?)",
            [(minute - 25 * 60, API_REQUESTS, 500), (minute - 23 * 60 - 50, API_REQUESTS, 300)],
        )
    bulk = BulkClient(
        fresh_sandbox(data_dir=data_dir, accounts=0, daily_api_requests=1_000).connection
    )
    answer = bulk.session.get(f"{bulk.base}/limits")
    assert answer.headers["Sforce-Limit-Info"] == "api-usage=301/1000"
    assert answer.json()[API_REQUESTS] == {"Max": 1_000, "Remaining": 699}


def test_the_daily_records_limit_fails_the_job_while_processing(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    """ "If the limit is exceeded while processing your job data, the remaining data isn't
    processed. The ingest job is marked as having failed." (Understanding Bulk API 2.0 Ingest)"""
    bulk = BulkClient(fresh_sandbox(accounts=3, slots=1, daily_records=15_000).connection)
    prefix = unique_prefix()
    info = bulk.load(opportunity_csv(prefix, 25_000), operation="insert")
    assert info["state"] == "Failed" and info["errorMessage"].startswith("ExceededQuota : ")
    assert info["numberRecordsProcessed"] == 10_000
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 10_000
    assert len(bulk.results(info["id"], "unprocessedrecords")) == 15_000
    # The next job is accepted (create and upload), and fails at its first batch.
    job_id = bulk.create(object="Opportunity", operation="insert").json()["id"]
    assert bulk.upload(job_id, opportunity_csv(unique_prefix(), 5_001)).status_code == 201
    assert bulk.patch(job_id, "UploadComplete").status_code == 200
    later = bulk.wait(job_id)
    assert (later["state"], later["numberRecordsProcessed"]) == ("Failed", 0)
    limits = bulk.session.get(f"{bulk.base}/limits").json()
    assert limits[BULK_BATCHES]["Max"] - limits[BULK_BATCHES]["Remaining"] == 1
