"""Live progress of a partition's load, logged and written to the state dir for progress bars."""

import logging
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel

from sync_assets.state.layout import progress_path
from sync_assets.storage import StateStore

# Progress files are for humans watching; more than one write a second per partition is noise.
_MIN_WRITE_INTERVAL_SECONDS = 1.0
_LOG_EVERY_FRACTION = 0.1


class PartitionProgress(BaseModel):
    """How far one partition's load of one drop has got."""

    drop_id: str
    partition: str
    phase: Literal["loading", "done"]
    confirmed: int
    total: int
    updated_at: float


def read_progress(state: StateStore, drop_id: str, partition: str) -> PartitionProgress | None:
    path = progress_path(drop_id, partition)
    if not state.exists(path):
        return None
    return state.read_json(path, PartitionProgress)


class ProgressReporter:
    """Receives the loader's (confirmed, total) callbacks; logs every 10% and writes a file."""

    def __init__(
        self,
        state: StateStore,
        drop_id: str,
        partition: str,
        log: logging.Logger | Any,
    ) -> None:
        self._state = state
        self._drop_id = drop_id
        self._partition = partition
        self._log = log
        self._lock = threading.Lock()
        self._last_write = 0.0
        self._last_logged_fraction = 0.0

    def confirmed(self, confirmed: int, total: int) -> None:
        with self._lock:
            fraction = confirmed / total if total else 1.0
            if fraction - self._last_logged_fraction >= _LOG_EVERY_FRACTION:
                self._last_logged_fraction = fraction
                self._log.info(
                    "Partition %s: %d of %d rows confirmed (%.0f%%)",
                    self._partition,
                    confirmed,
                    total,
                    100 * fraction,
                )
            now = time.monotonic()
            if now - self._last_write >= _MIN_WRITE_INTERVAL_SECONDS:
                self._last_write = now
                self._write("loading", confirmed, total)

    def finished(self, confirmed: int, total: int) -> None:
        with self._lock:
            self._write("done", confirmed, total)

    def _write(self, phase: Literal["loading", "done"], confirmed: int, total: int) -> None:
        self._state.write_json(
            progress_path(self._drop_id, self._partition),
            PartitionProgress(
                drop_id=self._drop_id,
                partition=self._partition,
                phase=phase,
                confirmed=confirmed,
                total=total,
                updated_at=time.time(),
            ),
        )
