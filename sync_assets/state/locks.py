"""Exclusive locks under the state dir: two runs of one partition never interleave, nor two stagings of a drop.

The schedule and a manual launch may start the same partition at once. Upserts cannot duplicate a
record, but two loaders sharing one checkpoint and one ledger would overwrite each other's job
records and ledger updates. Staging and loading therefore hold `locks/partition=<k>.lock`; the
second run waits, then finds the first run's work in the checkpoint and ledger and sends nothing.

On a local state dir the lock is `flock(2)` on that file: the kernel releases it when its holder
dies, even by kill -9, so a crash never leaves a stale lock. Object stores have no such primitive:
there the lock is a no-op and Dagster must keep partition runs apart (run keys already give one
sync per drop and partition; for manual launches add a run-queue `tag_concurrency_limits` entry on
`dagster/partition` with `applyLimitPerUniqueValue` and limit 1), see docs/RELIABILITY.md.

A drop is staged for all its partitions at once by whichever run gets there first, holding
`locks/staging-<drop>.lock` (always taken after a partition's lock, so the two never deadlock).
"""

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from sync_assets.state.layout import NOTICES_LOCK_PATH, partition_lock_path, staging_lock_path
from sync_assets.storage import StateStore

# Locks are mostly held for seconds (a drop being staged, a check reading it) while the night's
# other runs queue for them: asked again every 20 ms, a waiter takes one as soon as it is free,
# not up to a poll later each (ten runs took a drop's staging lock one after another). A lock
# still held after half a minute (a partition synced for an hour) is asked every 0.2 s.
_QUICK_POLL_SECONDS = 0.02
_QUICK_FOR_SECONDS = 30.0
_POLL_SECONDS = 0.2


class PartitionBusyError(Exception):
    """Another run held the partition's lock for longer than this run was willing to wait."""


def partition_lock(
    state: StateStore,
    partition: str,
    timeout: float,
    on_wait: Callable[[str], None] | None = None,
) -> AbstractContextManager[None]:
    """Hold the partition's lock for the block, waiting up to `timeout` seconds for it.

    `on_wait` is called once, with the lock's address, if another run holds the lock.
    """
    busy = f"partition {partition} is being synced by another run"
    return _exclusive(state, partition_lock_path(partition), busy, timeout, on_wait)


def drop_staging_lock(
    state: StateStore,
    drop_id: str,
    timeout: float,
    on_wait: Callable[[str], None] | None = None,
) -> AbstractContextManager[None]:
    """Hold the lock on staging `drop_id` for the block (arguments as for `partition_lock`)."""
    busy = f"drop {drop_id} is being staged by another run"
    return _exclusive(state, staging_lock_path(drop_id), busy, timeout, on_wait)


def notices_lock(state: StateStore, timeout: float) -> AbstractContextManager[None]:
    """Hold the lock on the notices already sent (see `state/notices.py`)."""
    return _exclusive(state, NOTICES_LOCK_PATH, "the notices are being updated", timeout, None)


@contextmanager
def _exclusive(
    state: StateStore,
    relative_path: str,
    busy: str,
    timeout: float,
    on_wait: Callable[[str], None] | None,
) -> Iterator[None]:
    if not state.is_local:
        yield
        return
    path = state.local_path(relative_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        asked = time.monotonic()
        deadline = asked + timeout
        waiting = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting and on_wait is not None:
                    on_wait(str(path))
                waiting = True
                if time.monotonic() >= deadline:
                    raise PartitionBusyError(
                        f"{busy}: its lock {path} was held for more than {timeout:,.0f} s"
                    ) from None
                waited = time.monotonic() - asked
                time.sleep(_QUICK_POLL_SECONDS if waited < _QUICK_FOR_SECONDS else _POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
