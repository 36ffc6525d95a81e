"""Crashes: a partition's run worker killed -9 at several points, and the sandbox killed mid-night.

Each crashed run is followed by a re-run of the partition (what Dagster's run retry does). The
proof that nothing was lost or sent twice comes from the sandbox's own per-job counters: the rows
of every completed Bulk job add up to exactly the rows staged, and every other job was aborted
before Salesforce processed a single row of it.
"""

import signal

import pytest

from sync_assets_tests.reliability.harness import (
    Night,
    NightFactory,
    record,
    wait_until,
)

pytestmark = pytest.mark.slow

DROP = "2026-11-28"
PARTITION = "4"
MAX_RECORDS = 60  # ~200 rows in the partition: three or four Bulk jobs


def rerun_and_check(night: Night, to_send: int) -> dict[str, object]:
    """Re-run the partition; it must succeed with every check passing and exact counts."""
    rerun = night.run_partition(DROP, PARTITION)
    assert rerun.success, rerun.errors
    assert rerun.failed_checks() == {}
    loaded = rerun.loaded()
    assert (loaded["sent"], loaded["succeeded"], loaded["failed"]) == (to_send, to_send, 0)
    night.assert_partition_exact(DROP, PARTITION)
    night.assert_every_row_went_through_one_completed_job(to_send)
    return loaded


@pytest.mark.parametrize(
    ("die_at", "what"),
    [
        ("created:2", "a job was created and checkpointed, before its upload"),
        ("uploaded:2", "an upload reached Salesforce, before the job was closed"),
    ],
)
def test_worker_killed_while_uploading(make_night: NightFactory, die_at: str, what: str) -> None:
    night = make_night(rate=400, slots=2)
    night.land(DROP)
    ended = night.start_worker(DROP, PARTITION, die_at=die_at, max_records=MAX_RECORDS).finish()
    assert ended.code == -signal.SIGKILL, ended
    to_send = night.staged(DROP, PARTITION).counts.to_send
    assert night.checkpoint_jobs(DROP, PARTITION), f"no job checkpointed when {what}"
    assert not night.state.exists(f"ledger/partition={PARTITION}.parquet")
    # Rows in jobs the dead worker closed are Salesforce's to process; the rest never will be.
    closed = sum(
        job["records_received"] for job in night.stats()["jobs"].values() if job["state"] != "Open"
    )

    loaded = rerun_and_check(night, to_send)
    assert loaded["jobs_resumed"] >= 1
    # Closed jobs were collected, Open ones aborted: exactly the rows of the latter were sent again.
    assert loaded["uploaded"] == to_send - closed
    record(
        f"crashes/worker_killed_{die_at}",
        closed_before_the_kill=closed,
        rerun_uploaded=loaded["uploaded"],
        jobs_resumed=loaded["jobs_resumed"],
        **night.measure(DROP, PARTITION),
    )


def test_worker_killed_while_jobs_are_in_progress(make_night: NightFactory) -> None:
    night = make_night(rate=60, slots=1)
    night.land(DROP)
    worker = night.start_worker(DROP, PARTITION, max_records=MAX_RECORDS * 2)

    def all_uploaded_none_collected() -> bool:
        to_send = night.staged(DROP, PARTITION).counts.to_send
        jobs = night.stats()["jobs"].values()
        checkpointed = night.checkpoint_jobs(DROP, PARTITION)
        return (
            sum(job["records_received"] for job in jobs) == to_send
            and all(job["state"] in ("UploadComplete", "InProgress") for job in jobs)
            and len(checkpointed) == len(jobs)
            and all(job["status"] == "created" for job in checkpointed)
        )

    wait_until(all_uploaded_none_collected, 120, "every job uploaded and in progress")
    worker.kill()
    assert worker.finish().code == -signal.SIGKILL
    jobs_in_flight = len(night.checkpoint_jobs(DROP, PARTITION))
    to_send = night.staged(DROP, PARTITION).counts.to_send

    loaded = rerun_and_check(night, to_send)
    # Every job of the killed worker was collected; not one row was uploaded again.
    assert (loaded["uploaded"], loaded["jobs_resumed"]) == (0, jobs_in_flight)
    assert night.received_and_processed() == (to_send, to_send)
    record(
        "crashes/worker_killed_jobs_in_progress",
        rerun_uploaded=loaded["uploaded"],
        jobs_resumed=loaded["jobs_resumed"],
        **night.measure(DROP, PARTITION),
    )


def test_worker_killed_while_writing_the_ledger(make_night: NightFactory) -> None:
    night = make_night()
    night.land(DROP)
    ended = night.start_worker(DROP, PARTITION, die_at="ledger").finish()
    assert ended.code == -signal.SIGKILL, ended
    to_send = night.staged(DROP, PARTITION).counts.to_send
    # Salesforce has every row, the ledger none of them: the rename never happened.
    assert len(night.external_ids(PARTITION)) == to_send
    assert night.ledger_keys(PARTITION).is_empty()

    loaded = rerun_and_check(night, to_send)
    assert loaded["uploaded"] == 0
    assert night.received_and_processed() == (to_send, to_send)
    record(
        "crashes/worker_killed_writing_ledger",
        rerun_uploaded=loaded["uploaded"],
        **night.measure(DROP, PARTITION),
    )


def test_sandbox_killed_and_restarted_mid_night(make_night: NightFactory) -> None:
    night = make_night(rate=60, slots=1)
    night.land(DROP)
    worker = night.start_worker(DROP, PARTITION, max_records=MAX_RECORDS * 2)

    def jobs_in_progress() -> bool:
        jobs = night.stats()["jobs"].values()
        return bool(jobs) and any(job["state"] == "InProgress" for job in jobs)

    wait_until(jobs_in_progress, 120, "a Bulk job in progress")
    night.restart_sandbox()
    ended = worker.finish()
    assert ended.code == 0 and ended.run is not None, ended
    assert ended.run.success, ended.run.errors
    assert ended.run.failed_checks() == {}
    to_send = night.staged(DROP, PARTITION).counts.to_send
    assert ended.run.loaded()["succeeded"] == to_send
    night.assert_partition_exact(DROP, PARTITION)
    night.assert_every_row_went_through_one_completed_job(to_send)
    record(
        "crashes/sandbox_killed_and_restarted",
        http_retries=ended.run.loaded()["http_retries"],
        **night.measure(DROP, PARTITION),
    )
