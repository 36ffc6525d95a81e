"""A partition run in its own process (a run worker), which can kill itself with SIGKILL on cue.

`start_worker` forks the worker from a fork server that imported Dagster and the code location
once (as `sync_assets.runner` does), so a worker starts in a fraction of a second. It runs
`opportunity_sync_job` for one partition against the instance in DAGSTER_HOME, configured by the
environment it is given, and writes the run's summary as JSON. A test may kill it -9 from outside
at any moment, or arm it (``die_at``) to die as kill -9 would at a point a test cannot hit
reliably from outside:

- ``created:N``: right after the N-th Bulk job was created and checkpointed, before its upload;
- ``uploaded:N``: right after the N-th upload reached Salesforce, before the job was closed;
- ``ledger``: halfway through replacing the ledger (new bytes written, not yet renamed in place).

``fast_retries`` shrinks every wait (HTTP retries, polls, the step's RetryPolicy) so that a test
can exhaust the retry budget in seconds; the number of tries stays the production number.
"""

import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.checkpoint import CheckpointStore
from sync_assets.storage import StateStore
from sync_assets_tests.reliability.harness import (
    SYNC_JOB,
    PartitionRun,
    WorkerExit,
    definitions,
    summarise,
)

_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload(["sync_assets.definitions", __name__])


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _die_on_call(owner: type, name: str, number: int) -> None:
    """Make the `number`-th call of `owner.name` kill the process once it has returned."""
    original: Callable[..., Any] = getattr(owner, name)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        outcome = original(*args, **kwargs)
        calls += 1
        if calls == number:
            _die()
        return outcome

    setattr(owner, name, wrapper)


def _die_while_writing_the_ledger() -> None:
    original = StateStore._replace_atomically

    def wrapper(self: StateStore, full: str, write: Callable[[str], object]) -> None:
        if "/ledger/" not in full:
            original(self, full, write)
            return
        Path(full).parent.mkdir(parents=True, exist_ok=True)
        write(f"{full}.{os.getpid()}.partial")
        _die()

    StateStore._replace_atomically = wrapper  # type: ignore[method-assign]


def shrink_waits() -> None:
    """The same retries with millisecond waits (tests only: production waits are minutes)."""
    import dagster as dg

    from sync_assets.assets import salesforce_opportunities
    from sync_assets.resources import BulkLoadResource
    from sync_assets.salesforce.retry import RetryPolicy
    from sync_assets.salesforce.watcher import WatchSettings

    production = BulkLoadResource.loader_settings

    def quick(self: BulkLoadResource) -> Any:
        return production(self).model_copy(
            update={
                "retry": RetryPolicy(
                    max_attempts=RetryPolicy().max_attempts, base_delay=0.02, max_delay=0.1
                ),
                "watch": WatchSettings(first=0.05, cap=0.2),
                "resend_pause": 0.05,
            }
        )

    BulkLoadResource.loader_settings = quick  # type: ignore[method-assign]
    step_policy = salesforce_opportunities.op.retry_policy
    assert step_policy is not None
    salesforce_opportunities.op._retry_policy = dg.RetryPolicy(
        max_retries=step_policy.max_retries, delay=0.1
    )


def arm(point: str) -> None:
    """Install the self-kill for `point` (see the module docstring)."""
    kind, _, number = point.partition(":")
    if kind == "created":
        _die_on_call(CheckpointStore, "record_created", int(number))
    elif kind == "uploaded":
        _die_on_call(BulkApi, "upload", int(number))
    elif kind == "ledger":
        _die_while_writing_the_ledger()
    else:
        raise ValueError(f"unknown point {point!r}")


class WorkerOptions(BaseModel):
    die_at: str = ""
    max_records: int = 0
    fast_retries: bool = False


def _run_worker(
    drop_id: str, partition: str, options: WorkerOptions, env: dict[str, str], result: str
) -> None:
    """The worker process: the test's environment, the armed points, one partition run."""
    import dagster as dg

    from sync_assets.run_tags import DROP_TAG

    os.environ.clear()
    os.environ.update(env)
    if options.fast_retries:
        shrink_waits()
    if options.die_at:
        arm(options.die_at)
    knobs = {"max_records_per_job": options.max_records} if options.max_records else {}
    job = definitions(**knobs).resolve_job_def(SYNC_JOB)
    outcome = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        partition_key=partition,
        tags={DROP_TAG: drop_id},
        raise_on_error=False,
    )
    Path(result).write_text(summarise(outcome).model_dump_json())


class Worker:
    """A started worker process: kill it, or wait for how it ended."""

    def __init__(self, process: multiprocessing.process.BaseProcess, result: Path) -> None:
        self.process = process
        self.result = result

    def kill(self) -> None:
        """kill -9, as the OOM killer or a lost node would."""
        if self.process.pid is not None and self.process.exitcode is None:
            os.kill(self.process.pid, signal.SIGKILL)

    def finish(self, timeout: float = 180) -> WorkerExit:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.kill()
            self.process.join()
        run = (
            PartitionRun.model_validate_json(self.result.read_text())
            if self.result.exists()
            else None
        )
        return WorkerExit(code=self.process.exitcode or 0, run=run)


def start_worker(drop_id: str, partition: str, options: WorkerOptions, result: Path) -> Worker:
    """Fork a worker that runs the partition with this process's environment as it is now."""
    process = _FORKSERVER.Process(
        target=_run_worker,
        args=(drop_id, partition, options, dict(os.environ), str(result)),
        daemon=True,
    )
    process.start()
    return Worker(process, result)
