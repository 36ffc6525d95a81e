"""Seeded fault injection: error statuses, dropped connections, jobs failing midway, lock errors.

Where each fault fires (a faulted request is applied completely or not at all):

- ``http_500``, ``http_503``, ``http_429``, ``reset``: **before** the request is handled; nothing
  is applied, so a client may simply retry.
- ``http_500_after``, ``http_503_after``, ``reset_after``: **after** the request was handled and
  before the answer is sent (the change is applied, the client does not learn it): the lost-answer
  case idempotent clients must survive (e.g. a retried PUT then gets "multipe contents").
- ``job_fail``: per job, at UploadComplete; the job fails when it reaches a random batch: earlier
  batches are applied, that one and the rest are unprocessed, the job ends ``Failed``.
- ``lock``: per record, ``UNABLE_TO_LOCK_ROW`` as if another transaction held its parent.
"""

import random
import threading

from pydantic import BaseModel, Field, field_validator

REQUEST_FAULTS = (
    "http_500",
    "http_503",
    "http_429",
    "reset",
    "http_500_after",
    "http_503_after",
    "reset_after",
)
FAULT_NAMES = (*REQUEST_FAULTS, "job_fail", "lock")


class FaultSpec(BaseModel):
    """Fault probabilities, from a spec such as ``"http_500=0.02,reset=0.01,job_fail=0.05"``."""

    rates: dict[str, float] = Field(default_factory=dict)

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
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, equals, value = item.partition("=")
            if not equals:
                raise ValueError(f"fault {item!r} must look like name=rate")
            rates[name.strip()] = float(value)
        return cls(rates=rates)


class FaultInjector:
    """Draws faults from one seeded generator (reproducible for a client that calls in sequence)."""

    def __init__(self, spec: FaultSpec, seed: int) -> None:
        self._rates = spec.rates
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return any(rate > 0 for rate in self._rates.values())

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

    def job_failure_batch(self, batch_count: int) -> int | None:
        """The batch at which a job fails, or None if it does not."""
        rate = self._rates.get("job_fail", 0.0)
        if rate <= 0 or batch_count == 0:
            return None
        with self._lock:
            if self._random.random() >= rate:
                return None
            return self._random.randrange(batch_count)

    def locked_rows(self, row_count: int) -> list[int]:
        """Rows of a batch that fail with an injected ``UNABLE_TO_LOCK_ROW``."""
        rate = self._rates.get("lock", 0.0)
        if rate <= 0:
            return []
        with self._lock:
            return [i for i in range(row_count) if self._random.random() < rate]
