"""A partition run in its own process, which can kill itself with SIGKILL at a chosen point.

``python -m sync_assets_tests.reliability.partition_worker DROP PARTITION [--die-at POINT]
[--max-records N]`` runs `opportunity_sync_job` for one partition against the instance in
DAGSTER_HOME (configured by the environment, like a run worker) and prints the run's summary as
JSON. ``--die-at`` makes the worker die as kill -9 would, at a point a test cannot hit reliably
from outside:

- ``created:N``: right after the N-th Bulk job was created and checkpointed, before its upload;
- ``uploaded:N``: right after the N-th upload reached Salesforce, before the job was closed;
- ``ledger``: halfway through replacing the ledger (new bytes written, not yet renamed in place).

``--fast-retries`` shrinks every wait (HTTP retries, polls, the step's RetryPolicy) so that a test
can exhaust the retry budget in seconds; the number of tries stays the production number.
"""

import argparse
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.checkpoint import CheckpointStore
from sync_assets.storage import StateStore
from sync_assets_tests.reliability.harness import SYNC_JOB, definitions, summarise


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
    from sync_assets.resources import SalesforceResource
    from sync_assets.salesforce.retry import PollSchedule, RetryPolicy

    production = SalesforceResource.loader_settings

    def quick(self: SalesforceResource) -> Any:
        return production(self).model_copy(
            update={
                "retry": RetryPolicy(
                    max_attempts=RetryPolicy().max_attempts, base_delay=0.02, max_delay=0.1
                ),
                "poll": PollSchedule(first=0.05, cap=0.2),
                "resend_pause": 0.05,
            }
        )

    SalesforceResource.loader_settings = quick  # type: ignore[method-assign]
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


def main() -> None:
    import dagster as dg

    from sync_assets.assets import DROP_TAG

    parser = argparse.ArgumentParser()
    parser.add_argument("drop_id")
    parser.add_argument("partition")
    parser.add_argument("--die-at", default="")
    parser.add_argument("--max-records", type=int, default=0)
    parser.add_argument("--fast-retries", action="store_true")
    options = parser.parse_args()
    if options.fast_retries:
        shrink_waits()
    if options.die_at:
        arm(options.die_at)
    knobs = {"max_records_per_job": options.max_records} if options.max_records else {}
    job = definitions(**knobs).resolve_job_def(SYNC_JOB)
    result = job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        partition_key=options.partition,
        tags={DROP_TAG: options.drop_id},
        raise_on_error=False,
    )
    print(summarise(result).model_dump_json())


if __name__ == "__main__":
    main()
