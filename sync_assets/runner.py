"""Run a drop's partition runs side by side through a real Dagster instance, from the command line.

Each partition is its own Dagster run (as when the schedule or sensor launches it), recorded in the
instance so the UI shows the history. Runs execute in worker processes forked from a server that
imported the code location once: a fresh interpreter per run would spend more CPU importing
Dagster than a partition spends syncing.
"""

import fcntl
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from sync_assets.run_tags import DROP_TAG, LAUNCHED_BY_TAG
from sync_assets.run_threads import offer_to_fork_server
from sync_assets.settings import adopt_configuration_env, configuration_env, use_dagster_home
from sync_assets.staging_ahead import HeadStart, stage_ahead
from sync_assets.state.layout import PARTITION_KEYS

# The local instance's configuration, copied into DAGSTER_HOME: Dagster reads it only there.
LOCAL_INSTANCE_YAML = Path(__file__).with_name("local_instance.yaml")
LOAD_ASSET = "salesforce_opportunities"
"""The load asset, by name: its materializations hold a partition's counts."""
SYNC_JOB = "opportunity_sync_job"
RESEND_JOB = "opportunity_resend_job"
"""Jobs by name: what a worker process is handed."""
# What the fork server imports once for all workers (see `fork_preload`).
FORK_SERVER_PRELOAD = ["sync_assets.fork_preload"]
INSTANCE_LOCK = ".sync-assets-instance.lock"
"""In DAGSTER_HOME: held by a worker while it opens the instance (`_opened_instance`)."""

if TYPE_CHECKING:
    import dagster as dg


class CheckOutcome(BaseModel):
    name: str
    passed: bool
    severity: str
    description: str | None
    metadata: dict[str, Any] = Field(default_factory=dict)


class RunOutcome(BaseModel):
    """What one partition run did, reduced to what the command line shows."""

    partition: str
    run_id: str
    success: bool
    error: str | None = None
    duration_seconds: float
    materializations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    checks: list[CheckOutcome] = Field(default_factory=list)


def prepare_dagster_home(home: Path) -> Path:
    """Use `home` as DAGSTER_HOME, configured as the local instance if it has no dagster.yaml yet."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(LOCAL_INSTANCE_YAML, target)
    use_dagster_home(home)
    return home


def _plain(value: Any) -> Any:
    """A metadata value as plain JSON-able data."""
    raw = getattr(value, "value", value)
    if isinstance(raw, int | float | str | bool) or raw is None:
        return raw
    if isinstance(raw, list | dict):
        return raw
    return str(raw)


def _execute_job(
    job_name: str,
    partition: str | None,
    tags: dict[str, str],
    env: dict[str, str],
) -> RunOutcome:
    """Runs inside a worker process: one job run, recorded in the instance."""
    from sync_assets.definitions import build_defs
    from sync_assets.sqlite_files import sqlite_files_held_open

    # The fork server may be older than this night's configuration: take the parent's, exactly.
    adopt_configuration_env(env)
    started = time.monotonic()
    # Entered, so that loading the definitions reads Dagster's state through this instance, and
    # closed after the run: a worker runs several jobs.
    with sqlite_files_held_open(), _opened_instance() as instance:
        job = build_defs().resolve_job_def(job_name)
        result = job.execute_in_process(
            # Every event is still stored in the instance (the UI shows it); the terminal shows the
            # progress bars and the table instead of a debug line per step.
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            instance=instance,
            partition_key=partition,
            tags=tags,
            raise_on_error=False,
        )
    error = None
    if not result.success:
        failures = [event for event in result.all_events if event.is_step_failure]
        error = (
            failures[0].step_failure_data.error.message.strip()
            if failures and failures[0].step_failure_data.error
            else "run failed"
        )
    return RunOutcome(
        partition=partition or "",
        run_id=result.run_id,
        success=result.success,
        error=error,
        duration_seconds=round(time.monotonic() - started, 3),
        materializations={
            event.asset_key.to_user_string(): {
                key: _plain(value)
                for key, value in event.step_materialization_data.materialization.metadata.items()
            }
            for event in result.get_asset_materialization_events()
        },
        checks=[
            CheckOutcome(
                name=evaluation.check_name,
                passed=evaluation.passed,
                severity=evaluation.severity.value,
                description=evaluation.description,
                metadata={key: _plain(value) for key, value in evaluation.metadata.items()},
            )
            for evaluation in result.get_asset_check_evaluations()
        ],
    )


@contextmanager
def _opened_instance() -> Iterator["dg.DagsterInstance"]:
    """The DAGSTER_HOME instance, opened by one worker at a time, and closed after the block.

    Opening a new instance creates its storage (SQLite files, or Postgres tables), which ten
    workers starting together must not do at once; an existing one opens in milliseconds. The
    command used to open it before the workers started, importing Dagster's storage layer
    (~0.45 CPU-s) on the core its head start stages the drop on.
    """
    import dagster as dg

    lock = Path(os.environ["DAGSTER_HOME"]) / INSTANCE_LOCK
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or the worker dies
        instance = dg.DagsterInstance.get()
    with instance:
        yield instance


def run_drop(
    drop_id: str,
    partitions: Iterable[str],
    *,
    parallel: int,
    launched_by: str,
    on_done: Callable[[RunOutcome], None] | None = None,
    on_head_start: Callable[[HeadStart], None] | None = None,
) -> list[RunOutcome]:
    """Sync the given partitions of a drop (one Dagster run each), `parallel` at a time.

    The command stages the drop itself while the fork server starts (`staging_ahead`);
    `on_head_start` hears how that went, once the runs are done.
    """
    partitions = list(partitions)
    tags = {DROP_TAG: drop_id, LAUNCHED_BY_TAG: launched_by}
    # The night's summary needs every partition of the drop; a partial re-run leaves it be.
    summarise = set(partitions) == set(PARTITION_KEYS)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="head-start") as beside:
        # On the core the fork server's import leaves idle (see `staging_ahead`).
        ahead = beside.submit(stage_ahead, drop_id, partitions[0])
        outcomes = _run_partitions(
            partitions, tags, parallel, on_done, summarise=summarise, head_start=ahead
        )
    if on_head_start is not None:
        on_head_start(ahead.result())
    return outcomes


def resend_drop(
    drop_id: str,
    partitions: Iterable[str],
    *,
    parallel: int,
    launched_by: str,
    summarise: bool,
    on_done: Callable[[RunOutcome], None] | None = None,
) -> list[RunOutcome]:
    """Resend the failed rows of a drop's partitions (see `resend.py`).

    One run of the load asset and its checks per partition, tagged `sync/resend`; then the
    night's summary again if `summarise`.
    """
    tags = {DROP_TAG: drop_id, LAUNCHED_BY_TAG: launched_by}
    return _run_partitions(
        list(partitions), tags, parallel, on_done, summarise=summarise, job=RESEND_JOB
    )


class Admission(BaseModel):
    """Which waiting partitions' runs start now, and on which pool of workers.

    A run with rows to load spends minutes waiting on Salesforce: up to `parallel` of them side
    by side. A run with nothing to send (`HeadStart.quiet`) is a second of CPU, most of it a
    fresh worker's first run (its copy of the fork server's pages and first calls: ~0.25 CPU-s
    more than a worker's next run): those go a core's worth at a time to workers that ran one
    already. Until the head start says which are which, no run starts: every run would wait for
    its staging anyway, and one started early may fork a worker a quiet night never needed and
    takes a core from the staging every run waits for.
    """

    parallel: int = Field(ge=1)
    cores: int = Field(ge=1)

    @property
    def quiet_slots(self) -> int:
        return min(self.cores, self.parallel)

    def start(
        self, waiting: list[str], loading: int, checking: int, quiet: set[str] | None
    ) -> tuple[list[str], list[str]]:
        """(runs for the loading pool, runs for the quiet pool), given what runs on each now."""
        if quiet is None:
            return [], []
        room = self.parallel - loading - checking
        loads = [partition for partition in waiting if partition not in quiet][: max(0, room)]
        room -= len(loads)
        quiet_room = min(room, self.quiet_slots - checking)
        checks = [partition for partition in waiting if partition in quiet][: max(0, quiet_room)]
        return loads, checks


def _run_partitions(
    partitions: list[str],
    tags: dict[str, str],
    parallel: int,
    on_done: Callable[[RunOutcome], None] | None,
    *,
    summarise: bool,
    job: str = SYNC_JOB,
    head_start: Future[HeadStart] | None = None,
) -> list[RunOutcome]:
    """One run of `job` per partition, at most `parallel` side by side (see `Admission`).

    Then the night's summary, if asked and every run succeeded. Without a `head_start` every
    partition is taken to have rows to load.
    """
    context = multiprocessing.get_context("forkserver")
    # The fork server imports the code location once; every worker is forked from it, clean of any
    # threads the parent started (polars' pool, progress bars), which fork would copy half-alive.
    # Started now, it imports while this process stages the drop (`run_drop`'s head start).
    context.set_forkserver_preload(FORK_SERVER_PRELOAD)
    admission = Admission(parallel=parallel, cores=os.cpu_count() or 1)
    offer_to_fork_server(parallel, admission.cores)
    multiprocessing.forkserver.ensure_running()
    env = configuration_env()
    quiet: set[str] | None = None if head_start is not None else set()
    waiting = list(partitions)
    outcomes: list[RunOutcome] = []
    with (
        ProcessPoolExecutor(max_workers=parallel, mp_context=context) as loading_pool,
        # As many workers as it runs at once, so they are reused: only its first runs fork one.
        ProcessPoolExecutor(max_workers=admission.quiet_slots, mp_context=context) as quiet_pool,
    ):
        loading: set[Future[RunOutcome]] = set()
        checking: set[Future[RunOutcome]] = set()
        while waiting or loading or checking:
            if quiet is None and head_start is not None and head_start.done():
                quiet = set(head_start.result().quiet)
            loads, checks = admission.start(waiting, len(loading), len(checking), quiet)
            for pool, started, runs in (
                (loading_pool, loads, loading),
                (quiet_pool, checks, checking),
            ):
                for partition in started:
                    waiting.remove(partition)
                    runs.add(pool.submit(_execute_job, job, partition, tags, env))
            heard: set[Future[Any]] = {head_start} if quiet is None and head_start else set()
            done, _ = wait(loading | checking | heard, return_when=FIRST_COMPLETED)
            for future in done - heard:
                loading.discard(future)
                checking.discard(future)
                outcome = future.result()
                outcomes.append(outcome)
                if on_done is not None:
                    on_done(outcome)
        if summarise and all(outcome.success for outcome in outcomes):
            summary = quiet_pool.submit(
                _execute_job, "opportunity_summary_job", None, tags, env
            ).result()
            outcomes.append(summary)
    return sorted(outcomes, key=lambda outcome: outcome.partition)
