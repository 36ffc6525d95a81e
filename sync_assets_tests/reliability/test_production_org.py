"""A production org's behaviours (issue 15), measured from Salesforce's side: wrapped trigger
errors, maintenance, the two request limits, the daily record allowance.

Each night ends exact (every staged row in Salesforce once, the ledger agreeing) or stops cleanly
with what Salesforce confirmed recorded and nothing called a data error that is not one.
"""

from pathlib import Path

import pytest

from sync_assets.state.layout import failed_rows_path
from sync_assets_tests.reliability.harness import NightFactory, definitions, org_file, record

pytestmark = pytest.mark.slow

DROP = "2026-11-28"
MAX_RECORDS = 60  # several Bulk jobs per partition
WRAPPED_LOCKS = {"opportunity": {"automation": {"lock_errors": "wrapped"}}}


@pytest.mark.parametrize(
    ("case", "org", "faults", "reason"),
    [
        # DLRS #1241/#847: a rollup trigger that cannot lock the parent Account fails its chunk
        # inside CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY.
        ("wrapped_lock", WRAPPED_LOCKS, "lock=0.003", "UNABLE_TO_LOCK_ROW"),
        # salesforce.stackexchange.com 194022: writes refused while the org is read-only.
        (
            "maintenance",
            {},
            "maintenance=0.3",
            "INSERT_UPDATE_DELETE_NOT_ALLOWED_DURING_MAINTENANCE",
        ),
    ],
)
def test_passing_row_errors_are_resent_until_salesforce_holds_every_row(
    make_night: NightFactory, tmp_path: Path, case: str, org: dict, faults: str, reason: str
) -> None:
    night = make_night(org=org_file(tmp_path, **org), faults=faults, seed=7)
    night.land(DROP)
    run = night.run_partition(DROP, "4", definitions(max_records_per_job=MAX_RECORDS))

    assert run.success, run.errors
    assert run.failed_checks() == {}
    loaded = run.loaded()
    assert loaded["retried"] > 0, "the faults hit some rows"
    assert loaded["failed"] == 0
    night.assert_partition_exact(DROP, "4")
    measured = night.measure(DROP, "4")
    assert (measured["lost"], measured["duplicates"]) == (0, 0)
    record(f"production/{case}_resent", retried=loaded["retried"], reason=reason, **measured)


def test_a_permanent_error_wrapped_in_a_trigger_is_kept_with_salesforces_message(
    make_night: NightFactory, tmp_path: Path
) -> None:
    """The CPU limit hit on every attempt: resent within the budget, then kept with its text."""
    # Jobs of 60 records at 3 ms each: every chunk passes a 150 ms limit.
    org = {"opportunity": {"automation": {"apex_ms_per_record": 3, "cpu_limit_ms": 150}}}
    night = make_night(org=org_file(tmp_path, **org))
    night.land(DROP)
    run = night.run_partition(DROP, "4", definitions(max_records_per_job=MAX_RECORDS))

    loaded = run.loaded()
    assert loaded["failed"] > 0 and loaded["retried"] > 0
    assert "APEX_CPU_LIMIT" in loaded["failures_by_reason"]
    failed = night.state.read_parquet(failed_rows_path(DROP, "4"))
    assert failed["error"].str.contains("Apex CPU time limit exceeded").all()
    assert "no_permanently_failed_rows" in run.failed_checks()
    measured = night.measure(DROP, "4")
    assert (measured["lost"], measured["duplicates"]) == (0, 0)
    record("production/cpu_limit_every_time", failed=loaded["failed"], **measured)


def test_the_concurrent_request_limit_is_waited_out_within_the_run(
    make_night: NightFactory,
) -> None:
    night = make_night(faults="http_403_concurrent=0.08", seed=3)
    night.land(DROP)
    run = night.run_partition(DROP, "5", definitions(max_records_per_job=MAX_RECORDS))

    assert run.success, run.errors
    assert run.step_restarts == 0
    assert run.failed_checks() == {}
    throttled = night.stats()["totals"]["fault:http_403_concurrent"]
    assert throttled > 0
    night.assert_partition_exact(DROP, "5")
    record("production/concurrent_limit", throttled=throttled, **night.measure(DROP, "5"))


def test_the_daily_record_allowance_stops_the_night_and_a_later_run_resumes(
    make_night: NightFactory,
) -> None:
    """ExceededQuota while processing: no row is called failed, the confirmed ones are kept."""
    night = make_night(daily_records=150)
    night.land(DROP)
    run = night.run_partition(DROP, "2", definitions(max_records_per_job=MAX_RECORDS))

    assert not run.success
    assert run.step_restarts == 0
    [error] = run.errors
    assert "LoadStoppedError" in error and "ExceededQuota" in error
    assert "are not failures" in error
    assert night.failed_keys(DROP, "2") == set()
    held = set(night.external_ids("2"))
    assert held and set(night.ledger_keys("2")) == held, "the ledger records what was confirmed"

    night.restart_sandbox(daily_records=150_000_000)
    resumed = night.run_partition(DROP, "2", definitions(max_records_per_job=MAX_RECORDS))
    assert resumed.success, resumed.errors
    assert resumed.failed_checks() == {}
    night.assert_partition_exact(DROP, "2")
    record("production/daily_records_stop", error=error, **night.measure(DROP, "2"))
