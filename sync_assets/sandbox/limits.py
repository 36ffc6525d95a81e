"""Daily org limits (API requests, Bulk batches, ingest records): counted, enforced, persisted.

Counts live in memory and are flushed to SQLite every second and at shutdown, so that a request
does not need a write transaction; a crash loses at most a second of counting. Days are UTC
calendar days (real orgs use a rolling 24 hours).
"""

import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

from sync_assets.sandbox.store import Database

API_REQUESTS = "DailyApiRequests"
BULK_BATCHES = "DailyBulkApiBatches"
# Real orgs do not expose this counter in /limits; the sandbox does so clients can see it.
INGEST_RECORDS = "DailyBulkApiIngestRecords"


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


class DailyLimits:
    def __init__(self, db: Database, maximums: dict[str, int]) -> None:
        self._db = db
        self._maximums = maximums
        self._lock = threading.Lock()
        self._day = _today()
        self._used = self._load(self._day)
        self._dirty = False

    def _load(self, day: str) -> dict[str, int]:
        rows = self._db.connection().execute(
            "SELECT name, value FROM counters WHERE day = ?", (day,)
        )
        used = dict.fromkeys(self._maximums, 0)
        used.update({str(r[0]): int(r[1]) for r in rows})
        return used

    def _roll(self) -> None:
        today = _today()
        if today != self._day:
            self._day, self._used = today, dict.fromkeys(self._maximums, 0)

    def try_consume(self, name: str, amount: int = 1) -> bool:
        """Count ``amount`` against the allowance if it fits; False (nothing counted) if not."""
        with self._lock:
            self._roll()
            if self._used[name] + amount > self._maximums[name]:
                return False
            self._used[name] += amount
            self._dirty = True
            return True

    def try_consume_all(self, amounts: dict[str, int]) -> str | None:
        """Count several allowances together; the name of the first that does not fit, if any."""
        with self._lock:
            self._roll()
            for name, amount in amounts.items():
                if self._used[name] + amount > self._maximums[name]:
                    return name
            for name, amount in amounts.items():
                self._used[name] += amount
            self._dirty = True
            return None

    def usage(self, name: str) -> tuple[int, int]:
        with self._lock:
            self._roll()
            return self._used[name], self._maximums[name]

    def remaining(self, name: str) -> int:
        used, maximum = self.usage(name)
        return max(0, maximum - used)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            self._roll()
            return {
                name: {"Max": maximum, "Remaining": max(0, maximum - self._used[name])}
                for name, maximum in self._maximums.items()
            }

    def flush(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            day, used = self._day, dict(self._used)
            self._dirty = False
        with self._db.write() as conn:
            self._store(conn, day, used)

    @staticmethod
    def _store(conn: sqlite3.Connection, day: str, used: dict[str, int]) -> None:
        conn.executemany(
            "INSERT INTO counters (day, name, value) VALUES (?, ?, ?) "
            "ON CONFLICT(day, name) DO UPDATE SET value = excluded.value",
            [(day, name, value) for name, value in used.items()],
        )
