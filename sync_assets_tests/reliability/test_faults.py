"""Faults: the sandbox fails requests, loses answers, fails jobs midway and locks rows, at fixed seeds.

Under fault rates the retry budget covers, partitions sync through Dagster with exact counts, no
duplicate external ids, and the retries visible in the metadata. Beyond the budget the run fails
with a clear message, the ledger never claims a row Salesforce lacks, and the next run finishes.
"""

import pytest

from sync_assets_tests.reliability.harness import (
    Night,
    NightFactory,
    PartitionRun,
    definitions,
    record,
    wait_until,
)

pytestmark = pytest.mark.slow

DROP = "2026-11-28"
MAX_RECORDS = 60  # ~200 rows per partition: several Bulk jobs, so faults hit jobs in flight

# name → (sandbox --faults, seed, partition, metadata counter the faults must show up in)
FAULT_MIXES = {
    "errors_and_resets_before_handling": (
        "http_500=0.04,http_503=0.04,http_429=0.04,reset=0.04",
        1,
        "1",
        "http_retries",
    ),
    "answers_lost_after_handling": (
        "http_500_after=0.04,http_503_after=0.04,reset_after=0.04",
        2,
        "3",
        "http_retries",
    ),
    "jobs_failing_midway_and_lock_errors": ("job_fail=0.15,lock=0.02", 3, "6", "retried"),
    "everything_at_once": (
        "http_500=0.02,http_503=0.02,http_429=0.02,reset=0.02,"
        "http_500_after=0.02,reset_after=0.02,job_fail=0.1,lock=0.01",
        4,
        "8",
        "retried",
    ),
}


def assert_accounted(night: Night, run: PartitionRun, partition: str) -> None:
    """source = rejected + unchanged + sent and sent = succeeded + failed, from the metadata."""
    staged = night.staged(DROP, partition).counts
    loaded = run.loaded()
    assert loaded["source"] == staged.rejected + staged.unchanged + loaded["sent"]
    assert loaded["sent"] == loaded["succeeded"] + loaded["failed"] == staged.to_send


@pytest.mark.parametrize("mix", sorted(FAULT_MIXES))
def test_sync_is_exact_under_faults_within_the_retry_budget(
    make_night: NightFactory, mix: str
) -> None:
    faults, seed, partition, counter = FAULT_MIXES[mix]
    night = make_night(faults=faults, seed=seed)
    night.land(DROP, bad_fraction=0.01)
    run = night.run_partition(DROP, partition, definitions(max_records_per_job=MAX_RECORDS))

    assert run.success, run.errors
    # A partition may reject a little over 1% of this drop's bad rows: a WARN, not a failure.
    assert run.failed_checks(warnings=False) == {}
    assert run.loaded()["failed"] == 0
    assert_accounted(night, run, partition)
    night.assert_partition_exact(DROP, partition)
    assert int(run.loaded()[counter]) > 0, f"the faults left no trace in {counter}"
    record(
        f"faults/{mix}",
        injected=faults,
        seed=seed,
        http_retries=run.loaded()["http_retries"],
        retried=run.loaded()["retried"],
        jobs=run.loaded()["jobs"],
        **night.measure(DROP, partition),
    )


def test_jobs_failing_beyond_the_resend_budget_fail_the_run_then_the_next_run_finishes(
    make_night: NightFactory,
) -> None:
    night = make_night(faults="job_fail=1.0", seed=5)
    night.land(DROP)
    partition = "1"

    failed = night.run_partition(DROP, partition)
    assert not failed.success
    to_send = night.staged(DROP, partition).counts.to_send
    loaded = failed.loaded()
    assert (loaded["sent"], loaded["succeeded"], loaded["failed"]) == (to_send, 0, to_send)
    assert loaded["retried"] == to_send * 3  # every row resent in each of the three resend rounds
    check = failed.checks["no_permanently_failed_rows"]
    assert not check["passed"]
    assert f"{to_send:,} rows failed in Salesforce" in check["description"]
    # The ledger holds only what Salesforce confirmed: nothing.
    assert night.ledger_keys(partition).is_empty()
    assert night.external_ids(partition).is_empty()

    night.restart_sandbox(faults="")
    finished = night.run_partition(DROP, partition)
    assert finished.success, finished.errors
    assert finished.failed_checks() == {}
    assert (finished.loaded()["succeeded"], finished.loaded()["failed"]) == (to_send, 0)
    night.assert_partition_exact(DROP, partition)
    record(
        "faults/job_fail_beyond_budget",
        first_run=check["description"],
        retried=loaded["retried"],
        **night.measure(DROP, partition),
    )


def test_an_org_unreachable_beyond_the_retry_budget_fails_the_run_then_the_next_run_finishes(
    make_night: NightFactory,
) -> None:
    night = make_night(rate=60, slots=1)
    night.land(DROP)
    partition = "6"
    worker = night.start_worker(DROP, partition, max_records=MAX_RECORDS * 2, fast_retries=True)
    wait_until(
        lambda: any(job["state"] == "InProgress" for job in night.stats()["jobs"].values()),
        120,
        "a Bulk job in progress",
    )
    night.sandbox.kill()
    ended = worker.finish()
    assert ended.code == 0 and ended.run is not None, ended
    assert not ended.run.success
    assert ended.run.step_restarts == 3  # the step's RetryPolicy, then a clear failure
    assert "gave up after 8 tries (last: ConnectionError)" in ended.run.errors[-1]
    assert night.ledger_keys(partition).is_empty()

    night.restart_sandbox()
    to_send = night.staged(DROP, partition).counts.to_send
    finished = night.run_partition(DROP, partition)
    assert finished.success, finished.errors
    assert finished.failed_checks() == {}
    # The jobs of the failed run were collected, not sent again: only rows whose job could not
    # even be created while the org was down are uploaded now.
    assert finished.loaded()["jobs_resumed"] >= 1
    assert int(finished.loaded()["uploaded"]) < to_send
    night.assert_partition_exact(DROP, partition)
    night.assert_every_row_went_through_one_completed_job(to_send)
    record(
        "faults/org_unreachable_beyond_budget",
        error=ended.run.errors[-1],
        step_restarts=ended.run.step_restarts,
        rerun_uploaded=finished.loaded()["uploaded"],
        jobs_resumed=finished.loaded()["jobs_resumed"],
        **night.measure(DROP, partition),
    )
