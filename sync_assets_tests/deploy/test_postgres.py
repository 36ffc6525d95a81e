"""A night on the production instance: Postgres storage, the daemon's run queue and the pool.

The Dagster home holds deploy/dagster-postgres.yaml unchanged, pointed at a throwaway database on
the PostgreSQL server named by ``SYNC_TEST_POSTGRES_URL`` (CI starts one from Debian's packages).
`dagster-daemon` runs the workspace; a drop lands, the sensor submits the 10 partition runs at once,
the queue runs them side by side within the `salesforce_bulk_api` pool, the summary sensor follows.
Every run must succeed, every check pass, and no storage error may appear.
"""

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg2
import pytest
import yaml
from psycopg2 import sql

from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.sandbox.runner import SandboxHandle
from sync_assets_tests.conftest import sandbox_org_env
from sync_assets_tests.ui.services import ServiceProcess, clean_env, require, wait_for

# Eleven Dagster runs through the real daemon and queue: minutes, not seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PROJECT = Path(__file__).resolve().parents[2]
POSTGRES_INSTANCE = PROJECT / "deploy" / "dagster-postgres.yaml"
DROP_ID = "2026-11-27"
ROWS = 3_000
ACCOUNTS = 200
NIGHT_TIMEOUT = 480.0
STORAGE_ERRORS = re.compile(
    r"OperationalError|InterfaceError|psycopg2|database is locked|could not serialize|deadlock",
    re.IGNORECASE,
)


@pytest.fixture
def postgres_env() -> Iterator[dict[str, str]]:
    """DAGSTER_PG_* for a database created for this test and dropped after it."""
    admin_url = os.environ.get("SYNC_TEST_POSTGRES_URL", "")
    require(bool(admin_url), "SYNC_TEST_POSTGRES_URL is not set (a role that may CREATE DATABASE)")
    url = urlsplit(admin_url)
    database = f"sync_assets_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        yield {
            "DAGSTER_PG_HOST": url.hostname or "127.0.0.1",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_USER": url.username or "",
            "DAGSTER_PG_PASSWORD": url.password or "",
            "DAGSTER_PG_DB": database,
        }
    finally:
        with admin.cursor() as cursor:
            cursor.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
        admin.close()


def pool_limit() -> int:
    return int(
        yaml.safe_load(POSTGRES_INSTANCE.read_text())["concurrency"]["pools"]["default_limit"]
    )


def max_overlap(records: list[dg.RunRecord]) -> int:
    """The most runs that were executing at the same moment."""
    edges = sorted(
        [(record.start_time, 1) for record in records]
        + [(record.end_time, -1) for record in records],
        key=lambda edge: (edge[0], edge[1]),
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def finished_runs(
    instance: dg.DagsterInstance, job_name: str, expected: int, daemon: ServiceProcess
) -> list[dg.RunRecord] | None:
    daemon.assert_running()
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=job_name))
    failed = [r.dagster_run.run_id for r in records if r.dagster_run.status.name == "FAILURE"]
    assert not failed, f"{job_name} runs failed: {failed}\n{daemon.log_tail()}"
    done = [r for r in records if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS]
    return done if len(done) >= expected else None


def check_evaluations(
    instance: dg.DagsterInstance, run_ids: list[str]
) -> list[dg.AssetCheckEvaluation]:
    return [
        event.dagster_event.asset_check_evaluation_data
        for run_id in run_ids
        for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if event.dagster_event is not None
    ]


def test_a_night_on_postgres_with_the_run_queue(
    tmp_path: Path,
    postgres_env: dict[str, str],
    fresh_sandbox: Callable[..., SandboxHandle],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = fresh_sandbox(accounts=ACCOUNTS)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(POSTGRES_INSTANCE, home / "dagster.yaml")
    landing = tmp_path / "landing"
    env = clean_env(
        DAGSTER_HOME=str(home),
        SYNC_LANDING_DIR=str(landing),
        SYNC_STATE_DIR=str(tmp_path / "state"),
        **sandbox_org_env(sandbox.data_dir),
        **postgres_env,
    )
    for name, value in postgres_env.items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    # The drop is complete before the daemon starts: the sensor's first tick asks for all 10 runs.
    generate_drop(
        landing, GenerateOptions(drop_id=DROP_ID, rows=ROWS, accounts=ACCOUNTS, bad_fraction=0.003)
    )
    daemon_command = shutil.which("dagster-daemon")
    assert daemon_command, "dagster-daemon is not installed"
    daemon = ServiceProcess(
        [daemon_command, "run", "-w", str(PROJECT / "workspace.yaml")],
        env,
        PROJECT,
        tmp_path / "daemon.log",
    )
    try:
        partition_runs = wait_for(
            "the 10 partition runs",
            lambda: finished_runs(instance, "opportunity_sync_job", 10, daemon),
            timeout=NIGHT_TIMEOUT,
            interval=2.0,
        )
        [summary_run] = wait_for(
            "the night's summary run",
            lambda: finished_runs(instance, "opportunity_summary_job", 1, daemon),
            timeout=NIGHT_TIMEOUT,
            interval=2.0,
        )
    finally:
        daemon.stop()
        log = daemon.log_path.read_text(errors="replace")

    runs = [record.dagster_run for record in partition_runs]
    assert sorted(run.tags["dagster/partition"] for run in runs) == [str(k) for k in range(10)]
    assert {run.tags["sync/drop_id"] for run in runs} == {DROP_ID}
    assert {run.tags.get("dagster/sensor_name") for run in runs} == {"opportunity_drop_sensor"}
    # Submitted together, run side by side, never more than the pool lets through.
    overlap = max_overlap(partition_runs)
    assert 2 <= overlap <= pool_limit(), overlap

    evaluations = check_evaluations(instance, [run.run_id for run in runs])
    # Per partition the nightly job's five checks: rows accounted for, reject rate, no failed
    # rows, the ledger identity, COUNT() = ledger (the drift check has its own job).
    assert len(evaluations) == 10 * 5
    assert [e for e in evaluations if not e.passed] == []
    [total] = check_evaluations(instance, [summary_run.dagster_run.run_id])
    assert total.check_name == "salesforce_total_matches_ledger" and total.passed

    summary = instance.fetch_materializations(dg.AssetKey("opportunity_sync_summary"), limit=1)
    [record] = summary.records
    metadata = {key: value.value for key, value in record.asset_materialization.metadata.items()}
    assert metadata["source"] == ROWS
    assert metadata["failed"] == 0
    assert metadata["source"] == metadata["rejected"] + metadata["unchanged"] + metadata["sent"]
    assert STORAGE_ERRORS.search(log) is None, log[-4000:]
