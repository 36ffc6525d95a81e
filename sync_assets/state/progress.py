"""Live progress of a partition's load, logged and written to the state dir for progress bars."""

import logging
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel, Field

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
    # Files written before these existed read as zeros.
    sent: int = Field(default=0, description="Rows uploaded so far (resends count again).")
    jobs_in_flight: int = Field(default=0, description="Bulk jobs uploading or processing now.")
    failed: int = Field(default=0, description="Rows failed for good so far.")
    resent: int = Field(default=0, description="Transient row failures so far (sent again).")


def read_progress(state: StateStore, drop_id: str, partition: str) -> PartitionProgress | None:
    path = progress_path(drop_id, partition)
    if not state.exists(path):
        return None
    return state.read_json(path, PartitionProgress)


class ProgressReporter:
    """Receives the loader's progress callbacks; logs every 10% and writes a file."""

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
        # Counts that arrived within the write interval, written when it ends: the last update
        # of a burst (the jobs just uploaded) must not wait for the next job to finish.
        self._pending: dict[str, int] | None = None
        self._flush: threading.Timer | None = None

    def loading(
        self,
        confirmed: int,
        total: int,
        sent: int = 0,
        jobs_in_flight: int = 0,
        failed: int = 0,
        resent: int = 0,
    ) -> None:
        """The load's counts now (the loader's `LoadProgress`, field for field)."""
        with self._lock:
            fraction = confirmed / total if total else 1.0
            # A load with nothing to send has no progress to tell: its summary line says so.
            if total and fraction - self._last_logged_fraction >= _LOG_EVERY_FRACTION:
                self._last_logged_fraction = fraction
                self._log.info(
                    "Partition %s: %d of %d rows confirmed (%.0f%%)",
                    self._partition,
                    confirmed,
                    total,
                    100 * fraction,
                )
            self._pending = {
                "confirmed": confirmed,
                "total": total,
                "sent": sent,
                "jobs_in_flight": jobs_in_flight,
                "failed": failed,
                "resent": resent,
            }
            wait = self._last_write + _MIN_WRITE_INTERVAL_SECONDS - time.monotonic()
            if wait <= 0:
                self._write_pending()
            elif self._flush is None:
                self._flush = threading.Timer(wait, self._flush_pending)
                self._flush.daemon = True
                self._flush.start()

    def finished(self, confirmed: int, total: int, failed: int = 0) -> None:
        with self._lock:
            if self._flush is not None:
                self._flush.cancel()
            self._pending = None
            self._write("done", confirmed=confirmed, total=total, failed=failed)

    def _flush_pending(self) -> None:
        with self._lock:
            self._flush = None
            self._write_pending()

    def _write_pending(self) -> None:
        if self._pending is not None:
            self._last_write = time.monotonic()
            self._write("loading", **self._pending)
            self._pending = None

    def _write(self, phase: Literal["loading", "done"], **counts: int) -> None:
        self._state.write_json(
            progress_path(self._drop_id, self._partition),
            PartitionProgress(
                drop_id=self._drop_id,
                partition=self._partition,
                phase=phase,
                updated_at=time.time(),
                **counts,
            ),
        )
