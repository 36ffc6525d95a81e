"""Seeded fault injection: error statuses, dropped connections, and what a production org does to jobs.

Where each fault fires (a faulted request is applied completely or not at all):

- ``http_500``, ``http_503``, ``http_429``, ``http_403_concurrent``, ``reset``: **before** the
  request is handled; nothing is applied, so a client may simply retry.
- ``http_500_after``, ``http_503_after``, ``reset_after``: **after** the request was handled and
  before the answer is sent (the change is applied, the client does not learn it): the lost-answer
  case idempotent clients must survive (e.g. a retried PUT then gets "multipe contents").
- ``job_fail``: per job, at UploadComplete; the job fails when it reaches a random batch: earlier
  batches are applied, that one and the rest are unprocessed, the job ends ``Failed``.
- ``admin_abort``: per job, at UploadComplete; someone else aborts the job when it reaches a random
  batch: earlier batches are applied and their results kept, the rest are unprocessed, the job
  ends ``Aborted`` (Bulk 1.0 guide: "If changes to data have been committed, they aren't rolled
  back"; the Salesforce CLI reads all three result sets of an Aborted job).
- ``stuck``: per job, at UploadComplete; the job stops at a random batch and stays ``InProgress``
  for ``stuck_seconds`` (default four hours) before going on, unless aborted (jetstream #1147,
  simple-salesforce #482: jobs that sit InProgress for hours).
- ``batch_timeout``: per attempt of an internal batch; the attempt stalls after a random number of
  its 200-record chunks and runs out of the batch time limit. The org keeps the chunks done and
  puts the rest back in the queue; see ``processing.py``.
- ``maintenance``: the org is read-only (planned maintenance), so writes fail. ``maintenance=30s``
  (or any number above 1) is a window of that many seconds from the sandbox's start;
  ``maintenance=0.1`` puts each internal batch in a maintenance window with that probability.
  Each record of a batch processed in the window fails with
  ``INSERT_UPDATE_DELETE_NOT_ALLOWED_DURING_MAINTENANCE`` (salesforce.stackexchange.com 194022);
  reads go on. Creating, uploading and closing jobs is still accepted: Salesforce Help says only
  that "API write or edit actions" are refused in read-only mode, and no capture shows what a job
  request gets then (salesforce-facts §2 leaves its HTTP status unknown).
- ``lock``: per record, ``UNABLE_TO_LOCK_ROW`` as if another transaction held its parent.
"""

import random
import threading
import time
from dataclasses import dataclass

from pydantic import BaseModel, Field, field_validator

# The real service answers its concurrency limit with 403 (``http_403_concurrent``); ``http_429``
# stays a separate fault for clients that must also survive a generic throttling status.
REQUEST_FAULTS = (
    "http_500",
    "http_503",
    "http_429",
    "http_403_concurrent",
    "reset",
    "http_500_after",
    "http_503_after",
    "reset_after",
)
# Per-job faults, and the field of ``JobFaults`` that says where each one strikes.
JOB_FAULTS = {
    "job_fail": "fail_at_batch",
    "admin_abort": "abort_at_batch",
    "stuck": "stuck_at_batch",
}
FAULT_NAMES = (*REQUEST_FAULTS, *JOB_FAULTS, "lock", "batch_timeout", "maintenance")
_SETTINGS = ("stuck_seconds",)
# Both texts come with 403 REQUEST_LIMIT_EXCEEDED: the first in captured fixtures, the second in
# Salesforce Help 000389067 (salesforce-facts §3).
CONCURRENCY_MESSAGES = (
    "ConcurrentPerOrgLongTxn Limit exceeded.",
    "ConcurrentRequests (Concurrent API Requests) Limit exceeded",
)


class FaultSpec(BaseModel):
    """Fault probabilities and settings, from a spec such as ``"http_500=0.02,job_fail=0.05"``."""

    rates: dict[str, float] = Field(default_factory=dict)
    maintenance_seconds: float | None = Field(
        default=None, gt=0, description="A maintenance window from the sandbox's start."
    )
    stuck_seconds: float = Field(default=4 * 3600.0, gt=0)

    @field_validator("rates")
    @classmethod
    def _known_and_probabilities(cls, rates: dict[str, float]) -> dict[str, float]:
        for name, rate in rates.items():
            if name not in FAULT_NAMES:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault {name} rate {rate} is not a probability")
        if sum(rates.get(n, 0.0) for n in REQUEST_FAULTS) > 1.0:
            raise ValueError("request fault rates add up to more than 1")
        return rates

    @classmethod
    def parse(cls, spec: str) -> "FaultSpec":
        rates: dict[str, float] = {}
        settings: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, equals, value = (text.strip() for text in item.partition("="))
            if not equals:
                raise ValueError(f"fault {item!r} must look like name=rate")
            if name in _SETTINGS:
                settings[name] = float(value)
            elif name == "maintenance" and (value.endswith("s") or float(value) > 1):
                settings["maintenance_seconds"] = float(value.removesuffix("s"))
            else:
                rates[name] = float(value)
        return cls(rates=rates, **settings)


@dataclass(frozen=True)
class JobFaults:
    """Where a job's faults strike: the index of the batch each one waits for, or None."""

    fail_at_batch: int | None = None
    abort_at_batch: int | None = None
    stuck_at_batch: int | None = None


class FaultInjector:
    """Draws faults from one seeded generator (reproducible for a client that calls in sequence)."""

    def __init__(self, spec: FaultSpec, seed: int) -> None:
        self._rates = spec.rates
        self.stuck_seconds = spec.stuck_seconds
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._maintenance_ends = (
            None
            if spec.maintenance_seconds is None
            else time.monotonic() + spec.maintenance_seconds
        )

    @property
    def active(self) -> bool:
        return any(rate > 0 for rate in self._rates.values())

    def _draw(self, name: str) -> bool:
        rate = self._rates.get(name, 0.0)
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def _index(self, count: int) -> int:
        with self._lock:
            return self._random.randrange(count)

    def request_fault(self) -> str | None:
        """The fault for the next request, or None."""
        if not any(self._rates.get(n, 0.0) for n in REQUEST_FAULTS):
            return None
        with self._lock:
            draw = self._random.random()
        threshold = 0.0
        for name in REQUEST_FAULTS:
            threshold += self._rates.get(name, 0.0)
            if draw < threshold:
                return name
        return None

    def concurrency_message(self) -> str:
        """One of the two texts Salesforce sends with its concurrent-request limit."""
        return CONCURRENCY_MESSAGES[self._index(len(CONCURRENCY_MESSAGES))]

    def job_faults(self, batch_count: int) -> JobFaults:
        """Draw a job's faults when it is queued; each one strikes at a random batch."""
        if batch_count == 0:
            return JobFaults()
        drawn = {
            field: self._index(batch_count)
            for name, field in JOB_FAULTS.items()
            if self._draw(name)
        }
        return JobFaults(**drawn)

    def stalled_chunk(self, chunk_count: int) -> int | None:
        """The chunk at which this attempt of a batch stalls until its time limit, or None."""
        if chunk_count == 0 or not self._draw("batch_timeout"):
            return None
        return self._index(chunk_count)

    def in_maintenance(self) -> bool:
        """Whether the batch processed now meets the org in a maintenance window."""
        if self._maintenance_ends is not None and time.monotonic() < self._maintenance_ends:
            return True
        return self._draw("maintenance")

    def locked_rows(self, row_count: int) -> list[int]:
        """Rows of a batch that fail with an injected ``UNABLE_TO_LOCK_ROW``."""
        rate = self._rates.get("lock", 0.0)
        if rate <= 0:
            return []
        with self._lock:
            return [i for i in range(row_count) if self._random.random() < rate]
