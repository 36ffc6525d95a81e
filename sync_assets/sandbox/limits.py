"""Daily org limits over a rolling 24 hours (API requests, Bulk batches, ingest records), and /limits.

Salesforce counts its daily allocations over "a rolling 24-hour period" (Bulk API 2.0 limits, for
batches, records and query jobs; the API request allocation likewise), not per calendar day. Usage
is kept per minute: what a limit has left is its maximum minus the usage of the last 1,440
minutes. Counts live in memory and are flushed to SQLite every second and at shutdown, so that a
request does not need a write transaction; a crash loses at most a second of counting.
"""

import math
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from sync_assets.sandbox.store import Database

API_REQUESTS = "DailyApiRequests"
BULK_BATCHES = "DailyBulkApiBatches"
# Enforced (150,000,000 records per rolling 24 hours) but listed nowhere: no real org's /limits
# has an ingest-record entry, so the name is the sandbox's own (salesforce-facts §3).
INGEST_RECORDS = "ingest records"
_UNLISTED = frozenset({INGEST_RECORDS})
WINDOW_MINUTES = 24 * 60
# The other entries of a production org's /limits, as the REST API reference's example lists
# them (List Org Limits, dome_limits): not counted by the sandbox, always at their maximum.
_UNCOUNTED = {
    "ConcurrentAsyncGetReportInstances": 200,
    "ConcurrentSyncReportRuns": 20,
    "DailyAsyncApexExecutions": 250_000,
    "DailyAsyncApexTests": 500,
    "DailyBulkV2QueryFileStorageMB": 976_562,
    "DailyBulkV2QueryJobs": 10_000,
    "DailyDurableGenericStreamingApiEvents": 10_000,
    "DailyDurableStreamingApiEvents": 10_000,
    "DailyGenericStreamingApiEvents": 10_000,
    "DailyStandardVolumePlatformEvents": 10_000,
    "DailyStreamingApiEvents": 10_000,
    "DailyWorkflowEmails": 390,
    "DataStorageMB": 1024,
    "FileStorageMB": 1024,
    "HourlyAsyncReportRuns": 1200,
    "HourlyDashboardRefreshes": 200,
    "HourlyDashboardResults": 5000,
    "HourlyDashboardStatuses": 999_999_999,
    "HourlyODataCallout": 10_000,
    "HourlySyncReportRuns": 500,
    "HourlyTimeBasedWorkflow": 50,
    "MassEmail": 10,
    "SingleEmail": 15,
    "StreamingApiConcurrentClients": 20,
}


def _minute(now: float) -> int:
    return math.floor(now / 60)


class DailyLimits:
    def __init__(
        self, db: Database, maximums: dict[str, int], clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._maximums = maximums
        self._clock = clock
        self._lock = threading.Lock()
        # Per limit: usage by minute, oldest first, and its sum.
        self._minutes: dict[str, dict[int, int]] = {name: {} for name in maximums}
        self._used = dict.fromkeys(maximums, 0)
        self._changed: set[tuple[int, str]] = set()
        self._load()

    def _load(self) -> None:
        rows = self._db.connection().execute(
            "SELECT minute, name, value FROM usage WHERE minute > ? ORDER BY minute",
            (_minute(self._clock()) - WINDOW_MINUTES,),
        )
        for minute, name, value in rows:
            if name in self._minutes:
                self._minutes[name][int(minute)] = int(value)
                self._used[name] += int(value)

    def _expire(self) -> int:
        """Forget the minutes that left the window; the current minute."""
        now = _minute(self._clock())
        oldest = now - WINDOW_MINUTES
        for name, minutes in self._minutes.items():
            while minutes and (first := next(iter(minutes))) <= oldest:
                self._used[name] -= minutes.pop(first)
        return now

    def _add(self, name: str, amount: int, now: int) -> None:
        minutes = self._minutes[name]
        minutes[now] = minutes.get(now, 0) + amount
        self._used[name] += amount
        self._changed.add((now, name))

    def try_consume(self, name: str, amount: int = 1) -> bool:
        """Count ``amount`` against the allowance if it fits; False (nothing counted) if not."""
        return self.try_consume_all({name: amount}) is None

    def try_consume_all(self, amounts: dict[str, int]) -> str | None:
        """Count several allowances together; the name of the first that does not fit, if any."""
        with self._lock:
            now = self._expire()
            for name, amount in amounts.items():
                if self._used[name] + amount > self._maximums[name]:
                    return name
            for name, amount in amounts.items():
                self._add(name, amount, now)
            return None

    def usage(self, name: str) -> tuple[int, int]:
        with self._lock:
            self._expire()
            return self._used[name], self._maximums[name]

    def remaining(self, name: str) -> int:
        used, maximum = self.usage(name)
        return max(0, maximum - used)

    def report(self) -> dict[str, dict[str, Any]]:
        """The /limits answer: the listed limits, by name, each ``{"Max": …, "Remaining": …}``."""
        with self._lock:
            self._expire()
            counted = {
                name: (maximum, max(0, maximum - self._used[name]))
                for name, maximum in self._maximums.items()
                if name not in _UNLISTED
            }
        counted.update((name, (maximum, maximum)) for name, maximum in _UNCOUNTED.items())
        return {
            name: {"Max": maximum, "Remaining": remaining}
            for name, (maximum, remaining) in sorted(counted.items())
        }

    def flush(self) -> None:
        with self._lock:
            if not self._changed:
                return
            oldest = self._expire() - WINDOW_MINUTES
            changed = [
                (m, n, self._minutes[n][m]) for m, n in self._changed if m in self._minutes[n]
            ]
            self._changed.clear()
        with self._db.write() as conn:
            self._store(conn, changed, oldest)

    @staticmethod
    def _store(conn: sqlite3.Connection, changed: list[tuple[int, str, int]], oldest: int) -> None:
        conn.executemany(
            "INSERT INTO usage (minute, name, value) VALUES (?, ?, ?) "
            "ON CONFLICT(minute, name) DO UPDATE SET value = excluded.value",
            changed,
        )
        conn.execute("DELETE FROM usage WHERE minute <= ?", (oldest,))
