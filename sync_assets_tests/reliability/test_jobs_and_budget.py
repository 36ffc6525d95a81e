"""Stuck and aborted jobs, the API budget and adaptive concurrency (issue 15), measured from
Salesforce's side: SOQL, the sandbox's job table and its request counters.
"""

import json
import time
from pathlib import Path

import polars as pl
import pytest

from sync_assets.salesforce.limits import CALLS_PER_JOB, POLL_CALLS_PER_JOB
from sync_assets.salesforce.transport import verified_session
from sync_assets.state.layout import pace_path
from sync_assets_tests.reliability.harness import (
    Night,
    NightFactory,
    definitions,
    org_file,
    record,
    wait_until,
)

pytestmark = pytest.mark.slow

DROP, NEXT = "2026-11-28", "2026-11-29"
MAX_RECORDS = 60


def descriptions(night: Night, partition: str) -> dict[str, str]:
    """What Salesforce holds now: each opportunity's Description, by external id."""
    records = night.query_all(
        "SELECT External_Id__c, Description FROM Opportunity "
        f"WHERE Sync_Partition__c = '{partition}'"
    )
    return {r["External_Id__c"]: r["Description"] or "" for r in records}


def staged_descriptions(night: Night, drop_id: str, partition: str) -> dict[str, str]:
    staged = night.state.read_parquet(
        night.staged(drop_id, partition).to_send, columns=["External_Id__c", "Description"]
    ).with_columns(pl.col("Description").fill_null(""))
    return dict(zip(staged["External_Id__c"], staged["Description"], strict=True))


def test_a_stuck_job_is_aborted_at_its_deadline_and_never_applies_an_older_value(
    make_night: NightFactory,
) -> None:
    """jetstream #1147, simple-salesforce #482: jobs that sit InProgress for hours."""
    hold = 8.0
    night = make_night(faults=f"stuck=0.3,stuck_seconds={hold}", seed=3, rate=400, slots=2)
    night.land(DROP)
    knobs = definitions(max_records_per_job=MAX_RECORDS, job_timeout_seconds=2)
    first = night.run_partition(DROP, "4", knobs)
    assert first.success, first.errors
    assert first.loaded()["jobs_aborted_past_deadline"] >= 1
    assert first.failed_checks() == {}
    night.assert_partition_exact(DROP, "4")
    aborted = {
        job_id: job["records_processed"]
        for job_id, job in night.stats()["jobs"].items()
        if job["state"] == "Aborted"
    }
    assert aborted and set(aborted.values()) == {0}, "stuck before processing anything"

    # The next night changes every row, while the aborted jobs' hold runs out.
    night.land(NEXT, based_on=DROP, changed=1.0, new=0.0, deleted=0.0)
    second = night.run_partition(NEXT, "4", knobs)
    assert second.success, second.errors
    time.sleep(hold + 2.0)

    jobs = night.stats()["jobs"]
    assert {job_id: jobs[job_id]["records_processed"] for job_id in aborted} == aborted
    assert {jobs[job_id]["state"] for job_id in aborted} == {"Aborted"}
    held, expected = descriptions(night, "4"), staged_descriptions(night, NEXT, "4")
    older = [key for key, text in expected.items() if held.get(key) != text]
    assert older == [], "a row holds an older value than the last night sent"
    assert all(text.endswith("(updated)") for text in held.values())
    measured = night.measure(NEXT, "4")
    assert (measured["lost"], measured["duplicates"]) == (0, 0)
    record(
        "production/stuck_jobs_aborted",
        aborted_jobs=len(aborted),
        older_values=len(older),
        **measured,
    )


def test_a_job_aborted_by_an_admin_resends_only_its_unprocessed_rows(
    make_night: NightFactory,
) -> None:
    night = make_night(faults="admin_abort=0.4", seed=3, slots=1)
    night.land(DROP)
    run = night.run_partition(DROP, "6", definitions(max_records_per_job=MAX_RECORDS))
    assert run.success, run.errors
    assert run.failed_checks() == {}
    night.assert_partition_exact(DROP, "6")
    jobs = night.stats()["jobs"].values()
    aborted = [job for job in jobs if job["state"] == "Aborted"]
    assert aborted
    to_send = night.staged(DROP, "6").counts.to_send
    unprocessed = sum(job["records_received"] - job["records_processed"] for job in aborted)
    received = sum(job["records_received"] for job in jobs)
    assert received == to_send + unprocessed, "only the rows the aborted jobs never reached"
    record("production/admin_abort", aborted_jobs=len(aborted), **night.measure(DROP, "6"))


@pytest.mark.parametrize("apex_ms", [0, 25])
def test_api_calls_stay_within_the_estimate_and_polls_do_not_grow_with_processing_time(
    make_night: NightFactory, tmp_path: Path, apex_ms: int
) -> None:
    """Jobs of 60 records at 25 ms of Apex each take 1.5 s, one after another (one slot): the
    polls per job stay within the estimate either way."""
    org = {"opportunity": {"automation": {"apex_ms_per_record": apex_ms}}}
    night = make_night(org=org_file(tmp_path, **org), slots=1)
    night.land(DROP, rows=6_000)
    before = night.stats()["totals"].get("client:sync_assets", 0)
    run = night.run_partition(DROP, "8", definitions(max_records_per_job=MAX_RECORDS))
    assert run.success, run.errors
    loaded = run.loaded()
    jobs = loaded["jobs"]
    assert loaded["api_calls"] <= jobs * (CALLS_PER_JOB + POLL_CALLS_PER_JOB)
    assert loaded["poll_calls"] <= POLL_CALLS_PER_JOB * jobs
    # Salesforce's side: every call of the run, checks and counts included, named sync_assets.
    seen = night.stats()["totals"]["client:sync_assets"] - before
    assert seen >= loaded["api_calls_of_the_run"] >= loaded["api_calls"]
    night.assert_partition_exact(DROP, "8")

    # The next night starts from this one's pace (state/pace/) and measured calls per job.
    pace = json.loads(night.state.read_bytes(pace_path("8")))
    assert pace["polls_per_job"] == round(loaded["poll_calls"] / jobs, 2)
    night.land(NEXT, based_on=DROP, changed=1.0, new=0.0, deleted=0.0)
    following = night.run_partition(NEXT, "8", definitions(max_records_per_job=MAX_RECORDS))
    assert following.success, following.errors
    again = following.loaded()
    assert again["poll_calls"] / again["jobs"] <= max(loaded["poll_calls"] / jobs, 1.0)
    night.assert_partition_exact(NEXT, "8")
    record(
        f"budget/calls_apex_{apex_ms}ms",
        jobs=jobs,
        api_calls=loaded["api_calls"],
        poll_calls=loaded["poll_calls"],
        calls_seen_by_the_org=seen,
        next_night_jobs=again["jobs"],
        next_night_poll_calls=again["poll_calls"],
    )


def burn_api_requests(night: Night, calls: int) -> None:
    """Another integration spends `calls` of the org's daily API requests."""
    connection = night.connection()
    session = verified_session(connection.ca_cert)
    headers = {"Authorization": f"Bearer {connection.access_token.get_secret_value()}"}
    url = f"{connection.instance_url}/services/data/v62.0/limits/"
    for _ in range(calls):
        session.get(url, headers=headers, timeout=30)


def test_the_api_budget_stops_the_night_cleanly_and_a_later_run_finishes(
    make_night: NightFactory,
) -> None:
    """Half of the org's remaining daily requests is the night's; another integration uses it up."""
    night = make_night(daily_api_requests=1_000, rate=20, slots=1)
    night.land(DROP)
    worker = night.start_worker(DROP, "2", max_records=MAX_RECORDS)
    wait_until(
        lambda: any(job["state"] == "InProgress" for job in night.stats()["jobs"].values()),
        120,
        "a Bulk job in progress",
    )
    burn_api_requests(night, 520)
    ended = worker.finish()
    assert ended.code == 0 and ended.run is not None, ended
    assert not ended.run.success
    assert ended.run.step_restarts == 0
    [error] = ended.run.errors
    assert "LoadStoppedError" in error and "API budget is spent" in error
    assert night.failed_keys(DROP, "2") == set()
    held = set(night.external_ids("2"))
    assert held == set(night.ledger_keys("2")), "the ledger records what was confirmed"
    assert len(held) < night.staged(DROP, "2").counts.to_send

    night.restart_sandbox(daily_api_requests=1_000_000)
    resumed = night.run_partition(DROP, "2", definitions(max_records_per_job=MAX_RECORDS))
    assert resumed.success, resumed.errors
    night.assert_partition_exact(DROP, "2")
    record("budget/stopped_then_resumed", error=error, **night.measure(DROP, "2"))


def test_without_view_setup_the_preflight_degrades_with_a_warning(
    make_night: NightFactory, tmp_path: Path
) -> None:
    night = make_night(org=org_file(tmp_path, users={"integration": {"view_setup": False}}))
    night.land(DROP)
    run = night.run_partition(DROP, "5", definitions(max_records_per_job=MAX_RECORDS))
    assert run.success, run.errors
    assert run.loaded()["preflight"].startswith("degraded: /limits is forbidden")
    night.assert_partition_exact(DROP, "5")
    record("budget/limits_forbidden", preflight=run.loaded()["preflight"])


def test_jobs_in_flight_rise_while_the_orgs_throughput_rises(make_night: NightFactory) -> None:
    """Ten slots and one partition: the org has room, so the load takes more of it."""
    night = make_night(rate=200, slots=10)
    night.land(DROP, rows=6_000)
    run = night.run_partition(DROP, "1", definitions(max_records_per_job=MAX_RECORDS))
    assert run.success, run.errors
    loaded = run.loaded()
    assert loaded["peak_jobs_in_flight"] > 4
    night.assert_partition_exact(DROP, "1")
    record("concurrency/rises_on_a_roomy_org", peak=loaded["peak_jobs_in_flight"])


def test_jobs_in_flight_fall_under_wrapped_lock_errors(
    make_night: NightFactory, tmp_path: Path
) -> None:
    """DLRS #1241: a rollup trigger's lock failures fail whole chunks; the load backs off."""
    wrapped = {"opportunity": {"automation": {"lock_errors": "wrapped"}}}
    night = make_night(org=org_file(tmp_path, **wrapped), faults="lock=0.004", seed=2)
    night.land(DROP, rows=6_000)
    run = night.run_partition(DROP, "1", definitions(max_records_per_job=MAX_RECORDS))
    assert run.success, run.errors
    loaded = run.loaded()
    assert loaded["lowest_jobs_in_flight"] < 4 and loaded["retried"] > 0
    night.assert_partition_exact(DROP, "1")
    record(
        "concurrency/falls_under_lock_errors",
        lowest=loaded["lowest_jobs_in_flight"],
        **night.measure(DROP, "1"),
    )
