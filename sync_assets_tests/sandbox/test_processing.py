"""The processing model: batches, rate and progress, parent-Account locks, many jobs, restarts."""

import time
from concurrent.futures import ThreadPoolExecutor

from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv, unique_prefix


def _start(bulk: BulkClient, data: str, **job: str) -> str:
    job_id = bulk.create(object="Opportunity", **job).json()["id"]
    assert bulk.upload(job_id, data).status_code == 201
    assert bulk.patch(job_id, "UploadComplete").status_code == 200
    return job_id


def test_progress_rises_in_batches_at_the_configured_rate(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    bulk = BulkClient(fresh_sandbox(accounts=5, rate=20_000, slots=1).connection)
    job_id = _start(bulk, opportunity_csv(unique_prefix(), 30_000), operation="insert")
    started = time.monotonic()
    seen: set[tuple[str, int]] = set()
    while (info := bulk.info(job_id))["state"] != "JobComplete":
        seen.add((info["state"], info["numberRecordsProcessed"]))
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert ("InProgress", 10_000) in seen or ("InProgress", 20_000) in seen
    # Progress moves in whole batches; the last batch's count may show just before JobComplete.
    assert {n for _, n in seen} <= {0, 10_000, 20_000, 30_000}
    assert elapsed >= 1.4, "3 batches of 10,000 at 20,000 records/s take 1.5 s"
    assert info["numberRecordsProcessed"] == 30_000
    assert info["apiActiveProcessingTime"] >= 1_400 and info["totalProcessingTime"] >= 1_400


def test_concurrent_batches_on_one_account_fail_with_unable_to_lock_row(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    bulk = BulkClient(fresh_sandbox(accounts=5, rate=1_000, slots=3, lock_timeout=0.3).connection)
    holder = _start(
        bulk, opportunity_csv(unique_prefix(), 1_000, account="ACC-000001"), operation="insert"
    )
    time.sleep(0.3)
    blocked = _start(
        bulk, opportunity_csv(unique_prefix(), 200, account="ACC-000001"), operation="insert"
    )
    other = _start(
        bulk, opportunity_csv(unique_prefix(), 200, account="ACC-000002"), operation="insert"
    )
    blocked_info, other_info = bulk.wait(blocked), bulk.wait(other)
    assert bulk.wait(holder)["numberRecordsFailed"] == 0
    assert other_info["numberRecordsFailed"] == 0
    assert (blocked_info["numberRecordsFailed"], blocked_info["retries"]) == (200, 200)
    errors = {r["sf__Error"] for r in bulk.results(blocked, "failedResults")}
    assert errors == {"UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--"}


def test_a_record_waits_for_a_lock_released_within_the_timeout(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    bulk = BulkClient(fresh_sandbox(accounts=5, rate=2_000, slots=2, lock_timeout=5).connection)
    holder = _start(
        bulk, opportunity_csv(unique_prefix(), 1_000, account="ACC-000003"), operation="insert"
    )
    time.sleep(0.2)
    waiter = _start(
        bulk, opportunity_csv(unique_prefix(), 100, account="ACC-000003"), operation="insert"
    )
    assert bulk.wait(waiter)["numberRecordsFailed"] == 0
    assert bulk.wait(holder)["numberRecordsFailed"] == 0


def test_a_dozen_concurrent_jobs(bulk: BulkClient) -> None:
    prefixes = [unique_prefix() for _ in range(12)]
    with ThreadPoolExecutor(12) as pool:
        infos = list(
            pool.map(
                lambda p: bulk.load(
                    opportunity_csv(p, 500, account="ACC-000010"),
                    operation="upsert",
                    externalIdFieldName="External_Id__c",
                ),
                prefixes,
            )
        )
    assert {i["state"] for i in infos} == {"JobComplete"}
    assert sum(i["numberRecordsProcessed"] for i in infos) == 6_000
    for p in prefixes:
        assert bulk.count(f"External_Id__c LIKE '{p}%'") == 500


def test_jobs_resume_after_a_crash_without_applying_a_batch_twice(fresh_sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "crash"
    first = fresh_sandbox(data_dir=data_dir, accounts=5, rate=5_000, slots=1)
    bulk = BulkClient(first.connection)
    prefix = unique_prefix()
    job_id = _start(bulk, opportunity_csv(prefix, 30_000), operation="insert")
    while bulk.info(job_id)["numberRecordsProcessed"] < 10_000:
        time.sleep(0.05)
    first.kill()
    second = fresh_sandbox(data_dir=data_dir, accounts=5)
    survivor = BulkClient(
        first.connection.model_copy(update={"instance_url": second.connection.instance_url})
    )
    info = survivor.wait(job_id)
    assert (info["state"], info["numberRecordsProcessed"]) == ("JobComplete", 30_000)
    assert survivor.count(f"External_Id__c LIKE '{prefix}%'") == 30_000
    assert len(survivor.results(job_id, "successfulResults")) == 30_000


def test_counters_survive_a_restart(fresh_sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "restart"
    first = fresh_sandbox(data_dir=data_dir, accounts=5)
    bulk = BulkClient(first.connection)
    for _ in range(5):
        bulk.session.get(f"{bulk.base}/limits")
    first.stop()
    second = BulkClient(fresh_sandbox(data_dir=data_dir, accounts=5).connection)
    limits = second.session.get(f"{second.base}/limits").json()["DailyApiRequests"]
    assert limits["Max"] - limits["Remaining"] >= 6
    assert second.count(sobject="Account") == 5, "accounts are seeded once"
