"""End to end: drops → real Dagster instance (one run per partition) → the HTTPS sandbox → checks.

Counts are checked against Salesforce itself (SOQL COUNT() per partition), not the loader's counters.
"""

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from simple_salesforce import Salesforce

from sync_assets.checks import (
    LEDGER_IDENTITY_HOLDS,
    NO_PERMANENTLY_FAILED_ROWS,
    ROWS_ACCOUNTED_FOR,
    SALESFORCE_COUNT_MATCHES_LEDGER,
    DropCensus,
)
from sync_assets.definitions import build_defs
from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.drops.reader import open_drop
from sync_assets.drops.shards import shard_of
from sync_assets.drops.staging import load_staged
from sync_assets.run_tags import DROP_TAG
from sync_assets.runner import RunOutcome, run_drop
from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import SandboxHandle
from sync_assets.staging_ahead import HeadStart
from sync_assets.state.layout import PARTITION_KEYS, drop_census_path, failed_rows_path, ledger_path
from sync_assets.state.ledger import advance_ledger, load_ledger
from sync_assets.state.locks import drop_staging_lock, partition_lock
from sync_assets.storage import StateStore
from sync_assets_tests.conftest import use_sandbox_org
from sync_assets_tests.drops.helpers import write_drop
from sync_assets_tests.webhook import WebhookReceiver, webhook_receiver

pytestmark = pytest.mark.slow

ACCOUNTS = 300


class Night:
    """A landing dir, a state dir, a Dagster home and a sandbox, wired through the environment."""

    def __init__(self, root: Path, sandbox: SandboxHandle, hook: WebhookReceiver) -> None:
        self.root = root
        self.landing = root / "landing"
        self.state = StateStore(root / "state")
        self.sandbox = sandbox
        self.hook = hook
        self.head_starts: list[HeadStart] = []
        connection = sandbox.connection
        self.sf = Salesforce(
            instance_url=connection.instance_url,
            session_id=connection.access_token.get_secret_value(),
            session=verified_session(connection.ca_cert),
        )

    def land(self, drop_id: str, **options: object) -> None:
        generate_drop(self.landing, GenerateOptions(drop_id=drop_id, accounts=ACCOUNTS, **options))

    def sync(self, drop_id: str, partitions: list[str] = PARTITION_KEYS) -> dict[str, RunOutcome]:
        outcomes = run_drop(
            drop_id,
            partitions,
            parallel=5,
            launched_by="pytest",
            on_head_start=self.head_starts.append,
        )
        return {outcome.partition or "summary": outcome for outcome in outcomes}

    def count(self, where: str = "") -> int:
        return int(self.sf.query(f"SELECT COUNT() FROM Opportunity {where}")["totalSize"])

    def loaded(self, outcome: RunOutcome) -> dict[str, object]:
        return outcome.materializations["salesforce_opportunities"]


@pytest.fixture
def night(
    tmp_path: Path,
    fresh_sandbox: Callable[..., SandboxHandle],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Night]:
    sandbox = fresh_sandbox(accounts=ACCOUNTS)
    with webhook_receiver() as hook:
        use_sandbox_org(monkeypatch, sandbox.data_dir)
        monkeypatch.setenv("SYNC_LANDING_DIR", str(tmp_path / "landing"))
        monkeypatch.setenv("SYNC_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("SYNC_ALERT_WEBHOOK_URL", hook.url)
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
        (tmp_path / "dagster_home").mkdir()
        yield Night(tmp_path, sandbox, hook)


def started_steps(run_id: str) -> list[str]:
    """The run's step keys in the order they started, from the instance's event log."""
    events = dg.DagsterInstance.get().all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    return [event.step_key for event in events if event.step_key]


def run_pid(run_id: str) -> int:
    """The process a run ran in (the pid its event log records)."""
    (start,) = dg.DagsterInstance.get().all_logs(run_id, of_type=dg.DagsterEventType.RUN_START)
    assert start.dagster_event is not None and start.dagster_event.pid is not None
    return start.dagster_event.pid


def assert_partition_counts_match_ledger(night: Night) -> None:
    for partition in PARTITION_KEYS:
        in_salesforce = night.count(f"WHERE Sync_Partition__c = '{partition}'")
        assert in_salesforce == load_ledger(night.state, partition).height, partition


def test_first_night_then_unchanged_then_next_night(night: Night) -> None:
    night.land("2026-11-27", rows=6_000, bad_fraction=0.003)
    first = night.sync("2026-11-27")

    assert all(outcome.success for outcome in first.values()), {
        key: outcome.error for key, outcome in first.items() if not outcome.success
    }
    failed_checks = [
        (key, check.name, check.description)
        for key, outcome in first.items()
        for check in outcome.checks
        if not check.passed
    ]
    assert failed_checks == []
    assert {check.name for check in first["summary"].checks} == {"salesforce_total_matches_ledger"}
    summary = first["summary"].materializations["opportunity_sync_summary"]
    # Deletes are off by default: none counted, none confirmed, nothing restored.
    assert (summary["deleted"], summary["deletes_confirmed"], summary["restores"]) == (0, [], [])
    assert night.hook.posts == []
    # The drop was read and staged once for the night, by the command while its fork server
    # started: every run found its partition staged.
    [head_start] = night.head_starts
    assert (head_start.partitions, head_start.left_to_runs) == (PARTITION_KEYS, None)
    assert head_start.quiet == []  # every partition had rows to load
    staged_by = {
        str(first[key].materializations["opportunity_batches"]["staged_partitions"])
        for key in PARTITION_KEYS
    }
    assert staged_by == {"none (reused)"}
    # The staging checks do not hold up the load: it starts right after staging.
    steps = started_steps(first["0"].run_id)
    assert steps[:2] == ["opportunity_batches", "salesforce_opportunities"]
    assert steps[2:] == ["opportunity_batches_checks", "salesforce_opportunities_checks"]

    rejected = 0
    for partition in PARTITION_KEYS:
        loaded = night.loaded(first[partition])
        staged = load_staged(night.state, "2026-11-27", partition)
        assert staged is not None
        assert loaded["source"] == staged.counts.source
        assert loaded["sent"] == staged.counts.to_send == loaded["succeeded"]
        assert loaded["failed"] == 0
        rejects = night.state.read_parquet(staged.rejects)
        assert rejects.height == staged.counts.rejected
        assert rejects.get_column("reason").null_count() == 0
        rejected += rejects.height
    assert rejected > 0
    sources = sum(int(night.loaded(first[p])["source"]) for p in PARTITION_KEYS)
    assert sources == 6_000
    assert night.count() == 6_000 - rejected
    assert_partition_counts_match_ledger(night)

    # The same drop again: nothing changed, so nothing is sent.
    again = night.sync("2026-11-27")
    assert all(outcome.success for outcome in again.values())
    assert sum(int(night.loaded(again[p])["sent"]) for p in PARTITION_KEYS) == 0
    assert night.count() == 6_000 - rejected

    # The next night: exactly the changed and new rows are sent.
    night.land("2026-11-28", based_on="2026-11-27", changed=0.05, new=0.02, deleted=0.01, seed=1)
    before = {p: load_ledger(night.state, p) for p in PARTITION_KEYS}
    second = night.sync("2026-11-28")
    assert all(outcome.success for outcome in second.values())
    assert night.head_starts[-1].partitions == PARTITION_KEYS
    for partition in PARTITION_KEYS:
        staged = load_staged(night.state, "2026-11-28", partition)
        assert staged is not None
        sent = night.state.read_parquet(staged.to_send)
        known = before[partition].select("external_id", "row_hash")
        expected_new = sent.join(
            known, left_on="External_Id__c", right_on="external_id", how="anti"
        ).height
        assert night.loaded(second[partition])["sent"] == sent.height
        assert staged.counts.new == expected_new
        assert staged.counts.changed == sent.height - expected_new
        assert night.loaded(second[partition])["failed"] == 0
    total_sent = sum(int(night.loaded(second[p])["sent"]) for p in PARTITION_KEYS)
    assert 0 < total_sent < 0.15 * 6_000
    # One opportunity moves (from 3 to 1: a duplicate key row that became the newest): its old
    # partition forgets it when it loads, if its new one sent it first, else the summary does.
    moved = {p: int(night.loaded(second[p])["moved_out"]) for p in PARTITION_KEYS}
    assert sum(moved.values()) == 1
    forgotten = sum(int(night.loaded(second[p])["moved_out_forgotten"]) for p in PARTITION_KEYS)
    settled = second["summary"].materializations["opportunity_sync_summary"]["moved_out_settled"]
    assert forgotten + int(settled) == 1
    assert_partition_counts_match_ledger(night)

    # The same rows as the next drop: the head start finds nothing to load anywhere, and the
    # runs (none started before it said so) ran a core's worth at a time on workers that had run
    # one already (a fresh worker's first run costs more).
    night.land("2026-11-29", based_on="2026-11-28", changed=0.0, new=0.0, deleted=0.0, seed=2)
    unchanged = night.sync("2026-11-29")
    assert all(outcome.success for outcome in unchanged.values())
    assert sum(int(night.loaded(unchanged[p])["sent"]) for p in PARTITION_KEYS) == 0
    assert night.head_starts[-1].quiet == PARTITION_KEYS
    cores = os.cpu_count() or 1
    assert len({run_pid(unchanged[p].run_id) for p in PARTITION_KEYS}) <= cores < 10


def test_rerun_after_losing_the_ledger_creates_no_duplicates(night: Night) -> None:
    night.land("2026-11-27", rows=3_000)
    assert all(outcome.success for outcome in night.sync("2026-11-27").values())
    total = night.count()
    in_partition = night.count("WHERE Sync_Partition__c = '3'")

    # Lose everything the sync knew about partition 3: Salesforce still holds its rows.
    night.state.delete(ledger_path("3"))
    night.state.delete("checkpoints/2026-11-27/partition=3")
    [rerun] = night.sync("2026-11-27", ["3"]).values()

    assert rerun.success
    loaded = night.loaded(rerun)
    assert loaded["uploaded"] == in_partition
    assert loaded["sent"] == in_partition
    assert loaded["created"] == 0
    assert loaded["updated"] == in_partition
    assert night.count() == total
    assert night.count("WHERE Sync_Partition__c = '3'") == in_partition


def test_failing_check_posts_an_alert(night: Night) -> None:
    night.land("2026-11-27", rows=2_000, bad_fraction=0.2)
    outcomes = night.sync("2026-11-27", ["0"])
    check = next(c for c in outcomes["0"].checks if c.name == "reject_rate_below_threshold")
    assert not check.passed
    assert check.severity == "ERROR"
    posted = [post for post in night.hook.posts if post["check"] == "reject_rate_below_threshold"]
    assert len(posted) == 1
    assert posted[0]["partition"] == "0"
    assert posted[0]["drop_id"] == "2026-11-27"
    assert posted[0]["numbers"]["rejected"] == check.metadata["rejected"]
    assert posted[0]["numbers"]["reject_rate"] > 0.05


def checks_alone(
    checks: set[dg.AssetCheckKey], partition: str, drop_id: str, *, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    """Run only some of the partition's checks, as a person re-running them from the UI would.

    The instance is entered so that loading the definitions reads state through it, not through
    whichever instance an earlier test left current (Dagster holds that one by a weak reference).
    """
    with dg.DagsterInstance.get() as instance:
        return (
            build_defs()
            .resolve_job_def("opportunity_sync_job")
            .get_subset(asset_check_selection=checks)
            .execute_in_process(
                instance=instance,
                partition_key=partition,
                tags={DROP_TAG: drop_id},
                raise_on_error=raise_on_error,
            )
        )


def check_alone(check: dg.AssetCheckKey, partition: str, drop_id: str) -> dg.AssetCheckEvaluation:
    [evaluation] = checks_alone({check}, partition, drop_id).get_asset_check_evaluations()
    return evaluation


def count_check_alone(partition: str, drop_id: str) -> dg.AssetCheckEvaluation:
    return check_alone(SALESFORCE_COUNT_MATCHES_LEDGER.key, partition, drop_id)


def summary_alone(drop_id: str) -> dict[str, object]:
    """Run the night's summary by itself (as `opportunity_summary_job`); its metadata."""
    with dg.DagsterInstance.get() as instance:
        result = (
            build_defs()
            .resolve_job_def("opportunity_summary_job")
            .execute_in_process(instance=instance, tags={DROP_TAG: drop_id})
        )
    [materialization] = result.asset_materializations_for_node("opportunity_sync_summary")
    return {key: value.value for key, value in materialization.metadata.items()}


def logged_by_newest_run(text: str) -> bool:
    instance = dg.DagsterInstance.get()
    runs = instance.get_runs(limit=1)
    return bool(runs) and any(
        text in entry.user_message for entry in instance.all_logs(runs[0].run_id)
    )


def wait_until_waiting(check: Future[dg.AssetCheckEvaluation], logged: str) -> None:
    """Until the check's run logs that it waits for a lock (or the check ends without waiting)."""
    deadline = time.monotonic() + 60
    while not check.done() and not logged_by_newest_run(logged):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_rows_accounted_for_never_reads_half_of_a_staging(night: Night) -> None:
    """Another run of the partition re-staging it (its ledger moved on) is waited for, not read."""
    night.land("d1", rows=1_000)
    [synced] = night.sync("d1", ["0"]).values()
    assert synced.success
    staged = load_staged(night.state, "d1", "0")
    assert staged is not None and staged.counts.to_send > 0
    restaged = staged.counts.model_copy(
        update={"to_send": 0, "new": 0, "unchanged": staged.counts.to_send}
    )
    empty = night.state.read_parquet(staged.to_send).clear()

    with ThreadPoolExecutor(max_workers=1) as pool:
        with drop_staging_lock(night.state, "d1", timeout=1):
            # Half way through another run's staging: its rows are written, its counts not yet.
            night.state.write_parquet(staged.to_send, empty)
            check = pool.submit(check_alone, ROWS_ACCOUNTED_FOR.key, "0", "d1")
            wait_until_waiting(check, "being staged by another run")
            night.state.write_json(staged.counts_file, restaged)
        evaluation = check.result()
    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["unchanged"].value == staged.counts.to_send


def test_rows_accounted_for_fails_when_a_staged_row_is_missing(night: Night) -> None:
    """The check recounts the drop itself: a row lost from the staged files is an ERROR."""
    night.land("d1", rows=1_000)
    [synced] = night.sync("d1", ["0"]).values()
    assert synced.success
    staged = load_staged(night.state, "d1", "0")
    assert staged is not None and staged.counts.to_send > 0
    night.state.write_parquet(staged.to_send, night.state.read_parquet(staged.to_send).slice(1))

    evaluation = check_alone(ROWS_ACCOUNTED_FOR.key, "0", "d1")
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["rows_in_drop"].value == staged.counts.source
    assert evaluation.metadata["to_send"].value == staged.counts.to_send - 1


def test_a_check_that_cannot_run_leaves_its_steps_other_checks_recorded(night: Night) -> None:
    """The load's three checks share a step: one raising fails the step, the others still count."""
    night.land("d1", rows=1_000)
    [synced] = night.sync("d1", ["0"]).values()
    assert synced.success
    # An unreadable failed-rows file: the failed-rows check raises instead of answering.
    night.state.write_bytes(failed_rows_path("d1", "0"), b"not parquet")
    checks = {
        NO_PERMANENTLY_FAILED_ROWS.key,
        SALESFORCE_COUNT_MATCHES_LEDGER.key,
        LEDGER_IDENTITY_HOLDS.key,
    }
    result = checks_alone(checks, "0", "d1", raise_on_error=False)
    assert not result.success
    recorded = {
        evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()
    }
    assert set(recorded) == {"salesforce_count_matches_ledger", "ledger_identity_holds"}
    assert all(evaluation.passed for evaluation in recorded.values())
    # Still one evaluation per partition, as the UI's partitioned check view reads them.
    assert {evaluation.partition for evaluation in recorded.values()} == {"0"}
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert failure.step_key == "salesforce_opportunities_checks"


def test_the_drop_is_recounted_once_for_the_nights_checks(night: Night) -> None:
    """One count of the drop per partition, from the drop's own account keys, serves every check."""
    night.land("d1", rows=2_000)
    outcomes = night.sync("d1", ["0", "1"])
    assert all(outcome.success for outcome in outcomes.values())
    census = night.state.read_json(drop_census_path("d1"), DropCensus)
    drop = open_drop(StateStore(night.landing), "d1").scan().collect()
    expected = drop.group_by(
        pl.col("account_key").map_elements(shard_of, return_dtype=pl.String)
    ).len()
    assert census.rows == dict(expected.iter_rows())
    assert sum(census.rows.values()) == 2_000
    # A check of another partition reads the same count: the file is not written again.
    written = night.state.local_path(drop_census_path("d1")).stat().st_mtime_ns
    assert check_alone(ROWS_ACCOUNTED_FOR.key, "2", "d1").passed
    assert night.state.local_path(drop_census_path("d1")).stat().st_mtime_ns == written


def test_the_count_check_waits_for_another_runs_load(night: Night) -> None:
    """A second run of the partition loading while the count check runs is waited for, not read."""
    night.land("d1", rows=1_000)
    [synced] = night.sync("d1", ["0"]).values()
    assert synced.success
    staged = load_staged(night.state, "d1", "0")
    assert staged is not None
    partition_row = night.state.read_parquet(staged.to_send).row(0, named=True)
    in_flight = {
        "External_Id__c": "OPP-IN-FLIGHT",
        "Account.External_Id__c": partition_row["Account.External_Id__c"],
        "Name": "Sent by the other run",
        "StageName": "Qualification",
        "CloseDate": "2026-12-01",
        "Sync_Partition__c": "0",
    }
    before = load_ledger(night.state, "0").height

    with ThreadPoolExecutor(max_workers=1) as pool:
        with partition_lock(night.state, "0", timeout=1):
            # Half way through another run's load: Salesforce holds its row, its ledger not yet.
            [job] = night.sf.bulk2.Opportunity.upsert(
                records=[in_flight], external_id_field="External_Id__c", wait=0.1
            )
            assert job["numberRecordsFailed"] == 0
            check = pool.submit(count_check_alone, "0", "d1")
            wait_until_waiting(check, "being synced by another run")
            confirmed = pl.DataFrame(
                {"external_id": ["OPP-IN-FLIGHT"], "row_hash": [1], "salesforce_id": [None]},
                schema_overrides={"row_hash": pl.UInt64, "salesforce_id": pl.String},
            )
            advance_ledger(night.state, "0", confirmed, "d1")
        evaluation = check.result()
    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["ledger_count"].value == before + 1


def test_an_opportunity_moving_to_another_partition_is_in_transit_not_missing(
    night: Night,
) -> None:
    night.land("d1", rows=3_000)
    assert all(outcome.success for outcome in night.sync("d1").values())
    rows = open_drop(StateStore(night.landing), "d1").scan().collect()
    mover = rows.row(0, named=True)
    old = shard_of(mover["account_key"])
    new_account = next(key for key in rows["account_key"] if shard_of(key) != old)
    new = shard_of(new_account)
    moved = rows.with_columns(
        pl.when(pl.col("opportunity_key") == mover["opportunity_key"])
        .then(pl.lit(new_account))
        .otherwise(pl.col("account_key"))
        .alias("account_key")
    )
    write_drop(StateStore(night.landing), "d2", [moved])

    # The old partition loads first: Salesforce still tags the opportunity with it, so it stays.
    [first] = night.sync("d2", [old]).values()
    assert first.success and all(check.passed for check in first.checks)
    assert mover["opportunity_key"] in load_ledger(night.state, old)["external_id"]
    # Then the new partition sends it: until the old one loads again, it is in transit.
    [second] = night.sync("d2", [new]).values()
    assert second.success and all(check.passed for check in second.checks)
    in_transit = count_check_alone(old, "d2")
    assert in_transit.passed, in_transit.description
    assert in_transit.metadata["moved_in_transit"].value == 1
    # Once every partition has loaded, the night's summary forgets it from the old ledger.
    rest = [key for key in PARTITION_KEYS if key not in {old, new}]
    assert all(outcome.success for outcome in night.sync("d2", rest).values())
    summary = summary_alone("d2")
    assert summary["moved_out_settled"] == 1
    assert mover["opportunity_key"] not in load_ledger(night.state, old)["external_id"]
    assert count_check_alone(old, "d2").metadata["moved_in_transit"].value == 0
    assert_partition_counts_match_ledger(night)
    # The old partition's load still adds up: its ledger lost the row after the load.
    identity = check_alone(LEDGER_IDENTITY_HOLDS.key, old, "d2")
    assert identity.passed, identity.description
    assert identity.metadata["ledger_moved_out_settled"].value == 1
    # Its next load has nothing left to forget.
    [third] = night.sync("d2", [old]).values()
    assert third.success and all(check.passed for check in third.checks)
    assert night.loaded(third)["moved_out_forgotten"] == 0


def sync_command(night: Night, *arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`sync-assets sync …` in a fresh process, against the night's sandbox as a configured org."""
    connection = night.sandbox.connection
    command = shutil.which("sync-assets")
    assert command, "the sync-assets entry point is not installed (uv sync)"
    return subprocess.run(
        [command, "sync", *arguments],
        env={
            **os.environ,
            "SALESFORCE_INSTANCE_URL": connection.instance_url,
            "SALESFORCE_ACCESS_TOKEN": connection.access_token.get_secret_value(),
            "SALESFORCE_CA_BUNDLE": str(connection.ca_cert),
            **env,
        },
        cwd=night.root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_sync_records_its_runs_in_the_dagster_home_the_user_set(night: Night) -> None:
    """`DAGSTER_HOME=/x sync-assets sync` keeps its runs in /x, as every Dagster tool does."""
    night.land("2026-11-27", rows=300)
    home = night.root / "elsewhere"
    completed = sync_command(night, "--partition", "3", "--parallel", "1", DAGSTER_HOME=str(home))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert not (night.root / ".dagster_home").exists()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
    assert {run.tags.get("dagster/partition") for run in runs} == {"3"}


def test_exit_codes_tell_a_night_with_warnings_from_a_failed_one(night: Night) -> None:
    """0 with WARN checks printed, 3 for the same under --strict, 1 for a failed run, 4 without a drop."""
    night.land("2026-11-27", rows=4_000, bad_fraction=0.025)
    warned = sync_command(night, "--partition", "3", "--parallel", "1")
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert "WARN reject_rate_below_threshold (partition 3)" in warned.stdout
    strict = sync_command(night, "--partition", "3", "--parallel", "1", "--strict")
    assert strict.returncode == 3, strict.stdout + strict.stderr
    missing = sync_command(night, "--drop-id", "2026-11-26", "--partition", "3", "--parallel", "1")
    assert missing.returncode == 1, missing.stdout + missing.stderr
    empty = sync_command(night, SYNC_LANDING_DIR=str(night.root / "empty"))
    assert empty.returncode == 4, empty.stdout + empty.stderr
