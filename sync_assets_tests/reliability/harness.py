"""A night for reliability tests: sandbox, landing and state dirs, a Dagster home, and what to measure.

Partition runs execute the real `opportunity_sync_job` against a real (SQLite) Dagster instance, in
this process (`run_partition`) or in a child process that can be killed (`partition_worker`). What
the tests assert is measured outside the sync's own counters: Salesforce's records (SOQL), the
sandbox's per-job received and processed row counts, and the files under the state dir.
"""

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl
import requests
from dagster._utils.error import SerializableErrorInfo
from pydantic import BaseModel, Field

from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.drops.shards import shard_of
from sync_assets.drops.staging import StagedPartition, load_staged
from sync_assets.resources import BulkLoadResource
from sync_assets.run_tags import DROP_TAG
from sync_assets.salesforce.connection import (
    SalesforceConnection,
    SalesforceCredentials,
)
from sync_assets.salesforce.queries import call_with_retries
from sync_assets.sandbox.runner import SandboxConnection, SandboxHandle
from sync_assets.state.layout import failed_rows_path
from sync_assets.state.ledger import ledger_keys
from sync_assets.storage import StateStore
from sync_assets_tests.drops.helpers import valid_rows

if TYPE_CHECKING:
    from sync_assets_tests.reliability.partition_worker import Worker

ACCOUNTS = 300
SYNC_JOB = "opportunity_sync_job"


def rows_of_partition(partition: str, prefix: str, n: int) -> pl.DataFrame:
    """`n` valid rows (keys `<prefix>-<i>`) of a few sandbox Accounts that shard to `partition`."""
    accounts = [
        key for key in (f"ACC-{i:06d}" for i in range(ACCOUNTS)) if shard_of(key) == partition
    ]
    return valid_rows(n).with_columns(
        pl.Series("opportunity_key", [f"{prefix}-{i}" for i in range(n)]),
        pl.Series("account_key", [accounts[i % 5] for i in range(n)]),
    )


class PartitionRun(BaseModel):
    """One partition run as the tests see it: outcome, messages, metadata, checks, step attempts."""

    run_id: str
    success: bool
    errors: list[str] = Field(default_factory=list)
    materializations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    step_restarts: int = 0

    def loaded(self) -> dict[str, Any]:
        return self.materializations["salesforce_opportunities"]

    def failed_checks(self, warnings: bool = True) -> dict[str, str]:
        """Check name → description of every failed check (only ERROR ones without `warnings`)."""
        return {
            name: check["description"]
            for name, check in self.checks.items()
            if not check["passed"] and (warnings or check["severity"] == "ERROR")
        }


def _plain(value: Any) -> Any:
    raw = getattr(value, "value", value)
    return (
        raw if isinstance(raw, int | float | str | bool | list | dict) or raw is None else str(raw)
    )


def error_chain(error: SerializableErrorInfo | None) -> str:
    """An error's message followed by those of its causes, as the Dagster UI shows them."""
    messages = []
    while error is not None:
        messages.append(error.message.strip())
        error = error.cause or error.context
    return "\n  caused by: ".join(messages)


def summarise(result: dg.ExecuteInProcessResult) -> PartitionRun:
    """The parts of an in-process result the tests read, as plain data."""
    errors = [
        error_chain(event.step_failure_data.error)
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data.error is not None
    ]
    return PartitionRun(
        run_id=result.run_id,
        success=result.success,
        errors=errors,
        materializations={
            event.asset_key.to_user_string(): {
                key: _plain(value)
                for key, value in event.step_materialization_data.materialization.metadata.items()
            }
            for event in result.get_asset_materialization_events()
        },
        checks={
            evaluation.check_name: {
                "passed": evaluation.passed,
                "severity": evaluation.severity.value,
                "description": evaluation.description,
                "metadata": {key: _plain(value) for key, value in evaluation.metadata.items()},
            }
            for evaluation in result.get_asset_check_evaluations()
        },
        step_restarts=sum(1 for event in result.all_events if event.is_step_restarted),
    )


def free_port() -> int:
    """A TCP port free now, so a restarted sandbox can come back at the same address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def definitions(**loader_knobs: Any) -> dg.Definitions:
    """The project's definitions for the environment as it is now; loader knobs may be changed."""
    from sync_assets.definitions import build_defs

    defs = build_defs()
    if not loader_knobs:
        return defs
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        resources={**(defs.resources or {}), "bulk_load": BulkLoadResource(**loader_knobs)},
    )


class Night:
    """Landing, state, Dagster home and a sandbox wired through the environment (README, Configuration)."""

    def __init__(
        self,
        root: Path,
        start_sandbox: Callable[..., SandboxHandle],
        sandbox_options: dict[str, Any],
    ) -> None:
        self.root = root
        self.landing = StateStore(root / "landing")
        self.state = StateStore(root / "state")
        self.dagster_home = root / "dagster_home"
        self._start_sandbox = start_sandbox
        self._workers = 0
        # A fixed port: a restarted sandbox answers at the address running clients already use.
        self.sandbox_options = {"port": free_port(), **sandbox_options}
        self.sandbox = start_sandbox(**self.sandbox_options)

    def restart_sandbox(self, **changes: Any) -> None:
        """Kill the sandbox (-9) and start it again on the same data dir and port."""
        self.sandbox.kill()
        self.sandbox_options |= changes
        self.sandbox = self._start_sandbox(data_dir=self.sandbox.data_dir, **self.sandbox_options)

    # ---- drops and runs ------------------------------------------------------------------

    def land(self, drop_id: str, rows: int = 2_000, **options: Any) -> None:
        generate_drop(
            self.landing,
            GenerateOptions(drop_id=drop_id, rows=rows, accounts=ACCOUNTS, **options),
        )

    def run_partition(
        self,
        drop_id: str,
        partition: str,
        defs: dg.Definitions | None = None,
        tags: dict[str, str] | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> PartitionRun:
        """One partition run of the sync job, in this process, recorded in the instance."""
        job = (defs or definitions()).resolve_job_def(SYNC_JOB)
        result = job.execute_in_process(
            instance=self.instance(),
            partition_key=partition,
            tags={DROP_TAG: drop_id, **(tags or {})},
            run_config=run_config,
            raise_on_error=False,
        )
        return summarise(result)

    def start_worker(
        self,
        drop_id: str,
        partition: str,
        *,
        die_at: str = "",
        max_records: int = 0,
        fast_retries: bool = False,
    ) -> "Worker":
        """The same partition run in a worker process that a test may kill -9."""
        # Imported here: the worker module builds on this one.
        from sync_assets_tests.reliability.partition_worker import WorkerOptions, start_worker

        # Create the instance's storage here, before workers race to migrate it.
        self.instance().get_runs(limit=1)
        self._workers += 1
        options = WorkerOptions(die_at=die_at, max_records=max_records, fast_retries=fast_retries)
        return start_worker(drop_id, partition, options, self.root / f"worker-{self._workers}.json")

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.get()

    # ---- what Salesforce and the sandbox hold -------------------------------------------

    def connection(self) -> SandboxConnection:
        return SandboxConnection.read(self.sandbox.data_dir)

    def login(self) -> SalesforceConnection:
        """A fresh session (client credentials): the token in connection.json may have expired."""
        return SalesforceConnection(SalesforceCredentials.from_sandbox(self.sandbox.data_dir))

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        """SOQL with the project's retries: the sandbox may be injecting faults."""
        answer = call_with_retries(self.login(), lambda client: client.query_all(soql))
        return list(answer["records"])

    def external_ids(self, partition: str | None = None) -> pl.Series:
        """Every External_Id__c Salesforce holds (for one partition), duplicates included."""
        where = f" WHERE Sync_Partition__c = '{partition}'" if partition is not None else ""
        records = self.query_all(f"SELECT External_Id__c FROM Opportunity{where}")
        return pl.Series(
            "External_Id__c", [record["External_Id__c"] for record in records], dtype=pl.String
        )

    def stats(self) -> dict[str, Any]:
        session = self.login()
        answer = session.http.get(
            f"{session.instance_url}/__sandbox/stats",
            headers={"Authorization": f"Bearer {session.access_token}"},
            timeout=30,
        )
        answer.raise_for_status()
        return dict(answer.json())

    def received_and_processed(self) -> tuple[int, int]:
        """Rows the sandbox received in uploads and rows it processed, over every job."""
        jobs = self.stats()["jobs"].values()
        return (
            sum(int(job["records_received"]) for job in jobs),
            sum(int(job["records_processed"]) for job in jobs),
        )

    def staged(self, drop_id: str, partition: str) -> StagedPartition:
        staged = load_staged(self.state, drop_id, partition)
        assert staged is not None, f"{drop_id} partition {partition} is not staged"
        return staged

    def staged_keys(self, drop_id: str, partition: str) -> pl.Series:
        return self.state.read_parquet(
            self.staged(drop_id, partition).to_send, columns=["External_Id__c"]
        ).get_column("External_Id__c")

    def ledger_keys(self, partition: str) -> pl.Series:
        return ledger_keys(self.state, partition)

    def checkpoint_jobs(self, drop_id: str, partition: str) -> list[dict[str, Any]]:
        path = f"checkpoints/{drop_id}/partition={partition}/jobs.json"
        if not self.state.exists(path):
            return []
        return list(json.loads(self.state.read_bytes(path))["jobs"])

    # ---- the invariants ------------------------------------------------------------------

    def assert_partition_exact(self, drop_id: str, partition: str) -> None:
        """Salesforce holds every staged row of the partition once, and the ledger agrees."""
        held = self.external_ids(partition)
        assert held.is_duplicated().sum() == 0, "duplicate External_Id__c in Salesforce"
        staged = self.staged_keys(drop_id, partition)
        assert set(held) == set(staged) | set(self.ledger_keys(partition))
        assert set(self.ledger_keys(partition)) == set(held)

    def failed_keys(self, drop_id: str, partition: str) -> set[str]:
        """Rows Salesforce refused for good, kept with its error in the failed-rows file."""
        path = failed_rows_path(drop_id, partition)
        if not self.state.exists(path):
            return set()
        return set(self.state.read_parquet(path, columns=["External_Id__c"])["External_Id__c"])

    def measure(self, drop_id: str, partition: str) -> dict[str, int]:
        """Rows the partition should hold, rows lost (neither in Salesforce nor kept as failed),
        duplicate external ids in Salesforce, and the rows the sandbox received and processed."""
        held = self.external_ids(partition)
        expected = set(self.staged_keys(drop_id, partition)) | set(self.ledger_keys(partition))
        failed = self.failed_keys(drop_id, partition)
        received, processed = self.received_and_processed()
        return {
            "rows": len(expected),
            "failed_with_reason": len(failed),
            "lost": len(expected - set(held) - failed),
            "duplicates": held.len() - held.n_unique(),
            "received": received,
            "processed": processed,
        }

    def assert_every_row_went_through_one_completed_job(self, to_send: int) -> None:
        """Per the sandbox's counters: completed jobs received and processed each row once, and
        every other job was aborted before Salesforce processed any of its rows, or never got any
        (a worker killed between a create's answer and its checkpoint leaves an empty Open job,
        which Salesforce never processes)."""
        jobs = list(self.stats()["jobs"].values())
        completed = [job for job in jobs if job["state"] == "JobComplete"]
        others = [job for job in jobs if job["state"] != "JobComplete"]
        assert sum(job["records_received"] for job in completed) == to_send
        assert sum(job["records_processed"] for job in completed) == to_send
        for job in others:
            assert job["records_processed"] == 0, job
            assert job["state"] == "Aborted" or (
                job["state"] == "Open" and job["records_received"] == 0
            ), job


def record(scenario: str, **measured: object) -> None:
    """Append what a scenario measured to $RELIABILITY_RECORD (JSON lines), for docs/RELIABILITY.md."""
    target = os.environ.get("RELIABILITY_RECORD")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"scenario": scenario, **measured}, default=str) + "\n")


NightFactory = Callable[..., Night]
"""``make_night(**sandbox_options)``, the fixture of conftest.py."""


class WorkerExit(BaseModel):
    """How a partition worker process ended: exit code (-9 when killed) and its run, if it ended."""

    code: int
    run: PartitionRun | None


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail the test with `what` when it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (requests.RequestException, OSError, ValueError, KeyError, AssertionError):
            pass  # the file or the sandbox is not there yet
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def org_file(directory: Path, **document: Any) -> Path:
    """An org file (`sync-assets sandbox --org`) holding `document`, e.g. the org's automation."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "org.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path
