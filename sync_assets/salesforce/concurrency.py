"""How many of a load's Bulk jobs are in flight: more while the org keeps up, fewer when it pushes back."""

import math
import threading
import time

from pydantic import BaseModel, Field, model_validator


class ConcurrencySettings(BaseModel):
    """Bounds and start of the jobs in flight of one load."""

    start: int = Field(default=4, ge=1)
    low: int = Field(default=1, ge=1)
    high: int = Field(default=8, ge=1)
    rise_margin: float = Field(
        default=0.05, ge=0, description="Throughput must rise by this share to go one higher."
    )

    @model_validator(mode="after")
    def _ordered(self) -> "ConcurrencySettings":
        if not self.low <= self.start <= self.high:
            raise ValueError(f"need low ≤ start ≤ high, got {self.low}, {self.start}, {self.high}")
        return self


class ConcurrencyGate:
    """A semaphore whose size follows the org: additive increase, multiplicative decrease.

    A window is as many finished jobs as the gate allows in flight. After a window without
    trouble the gate lets one more job in if the records confirmed per second rose over the
    window before (the org had room), and takes one back if they fell after a rise. Lock and
    CPU-limit row errors (other work on the same Accounts, heavy triggers) and the concurrent-
    request limit halve it at once, at most once per window.
    """

    def __init__(self, settings: ConcurrencySettings) -> None:
        self.settings = settings
        self._limit = settings.start
        self._active = 0
        self._cond = threading.Condition()
        self._window_started = time.monotonic()
        self._window_jobs = 0
        self._window_records = 0
        self._last_rate: float | None = None
        self._rose = False
        self._cut_in_window = False
        self.peak = settings.start
        self.lowest = settings.start
        self.changes: list[tuple[float, int]] = [(0.0, settings.start)]
        self._started = time.monotonic()

    @property
    def limit(self) -> int:
        with self._cond:
            return self._limit

    @property
    def in_flight(self) -> int:
        """Jobs holding the gate now: uploading, or waiting for Salesforce to process them."""
        with self._cond:
            return self._active

    def acquire(self) -> None:
        with self._cond:
            while self._active >= self._limit:
                self._cond.wait()
            self._active += 1

    def release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def job_finished(self, confirmed: int, pushed_back: int) -> None:
        """One job collected: rows Salesforce confirmed, rows failed for a lock or CPU limit."""
        with self._cond:
            if pushed_back:
                self._cut()
            self._window_jobs += 1
            self._window_records += confirmed
            if self._window_jobs >= self._limit:
                self._close_window()

    def throttled(self) -> None:
        """Salesforce refused a call for its concurrent-request limit."""
        with self._cond:
            self._cut()

    def _cut(self) -> None:
        if self._cut_in_window:
            return
        self._cut_in_window = True
        self._set(max(self.settings.low, math.ceil(self._limit / 2)))
        self._rose = False

    def _close_window(self) -> None:
        now = time.monotonic()
        rate = self._window_records / max(now - self._window_started, 1e-6)
        if not self._cut_in_window and self._last_rate is not None:
            if rate >= self._last_rate * (1 + self.settings.rise_margin):
                self._set(min(self.settings.high, self._limit + 1))
                self._rose = True
            elif self._rose and rate < self._last_rate * (1 - self.settings.rise_margin):
                self._set(max(self.settings.low, self._limit - 1))
                self._rose = False
        elif self._last_rate is None and not self._cut_in_window:
            # The first window has nothing to compare with: probe one higher.
            self._set(min(self.settings.high, self._limit + 1))
            self._rose = True
        self._last_rate = rate
        self._window_started = now
        self._window_jobs = 0
        self._window_records = 0
        self._cut_in_window = False

    def _set(self, limit: int) -> None:
        if limit != self._limit:
            self._limit = limit
            self.peak = max(self.peak, limit)
            self.lowest = min(self.lowest, limit)
            self.changes.append((round(time.monotonic() - self._started, 1), limit))
            self._cond.notify_all()
