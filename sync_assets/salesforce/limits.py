"""The pre-flight check and the night's API budget: what the org's daily limits can take (`/limits`)."""

import math
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from sync_assets.salesforce.errors import BulkApiError, SalesforceLimitsError
from sync_assets.salesforce.planning import SALESFORCE_INTERNAL_BATCH, JobSlice

if TYPE_CHECKING:
    from sync_assets.salesforce.bulk_api import BulkApi

# Calls one job costs, counted: create, upload, close and its successes; a job with failed rows
# also fetches failedResults, a Failed or Aborted one unprocessedrecords too.
CALLS_PER_JOB = 6
# Polls: one call asks for every job of the load (`JobWatcher`), timed by when jobs finish, so a
# load spends about one or two per job however long the org takes (measured: docs/BENCHMARKS.md).
POLL_CALLS_PER_JOB = 2
# Per load: /limits, and the SOQL that forgets rows moved to another partition.
CALLS_PER_LOAD = 2
# Real orgs also enforce 150M ingested records a day, but /limits does not list it (the REST API
# reference's Limits resource; no public client reads such a key): a job that passes it fails while
# processing with `ExceededQuota`, so the pre-flight cannot see it coming.


class LimitNeed(BaseModel):
    """What one load needs against what the org has left, for one limit."""

    limit: str
    needed: int
    remaining: int
    share: float = 1.0

    @property
    def available(self) -> int:
        """What this load may use of it: the night's share of what remains."""
        return int(self.share * self.remaining)

    @property
    def fits(self) -> bool:
        return self.needed <= self.available

    def shortfall(self) -> str:
        if self.share < 1:
            return (
                f"{self.limit}: needs {self.needed:,}, the night may use {self.available:,} "
                f"({self.share:.0%} of {self.remaining:,} remaining)"
            )
        return f"{self.limit}: needs {self.needed:,}, {self.remaining:,} remaining"


class LimitsReport(BaseModel):
    """Every limit the load touches; :meth:`raise_if_short` refuses a load that does not fit."""

    records: int
    jobs: int
    needs: list[LimitNeed]

    def raise_if_short(self) -> None:
        short = [need for need in self.needs if not need.fits]
        if short:
            detail = "; ".join(need.shortfall() for need in short)
            raise SalesforceLimitsError(
                f"Refusing to load {self.records:,} records in {self.jobs:,} Bulk jobs: the org's "
                f"daily limits cannot take it ({detail}). Nothing was sent."
            )


def batches_needed(jobs: list[JobSlice]) -> int:
    """Salesforce counts one batch per started 10,000 records of each job (Bulk API 2.0 Developer Guide, 'Bulk API 2.0 Limits and Allocations')."""
    return sum(math.ceil(job.records / SALESFORCE_INTERNAL_BATCH) for job in jobs)


def api_calls_needed(jobs: list[JobSlice], calls_per_job: float | None = None) -> int:
    """The API requests a load of ``jobs`` is expected to make.

    ``calls_per_job`` (polls included) is what the partition's last load measured, when known;
    else the figures above.
    """
    per_job = CALLS_PER_JOB + POLL_CALLS_PER_JOB if calls_per_job is None else calls_per_job
    return math.ceil(len(jobs) * per_job) + CALLS_PER_LOAD


def limits_or_none(api: "BulkApi") -> dict[str, Any] | None:
    """The org's `/limits`, or None when the user may not read them.

    Reading them needs View Setup and Configuration; without it: 403 INSUFFICIENT_ACCESS (REST
    API reference, "Limits").
    """
    try:
        return api.limits()
    except BulkApiError as error:
        if error.status == 403 and error.error_code == "INSUFFICIENT_ACCESS":
            return None
        raise


class ApiBudget(BaseModel):
    """The night's share of the org's daily API requests, watched in every answer.

    Each answer's ``Sforce-Limit-Info: api-usage=used/max`` counts every integration's calls in
    the rolling 24 hours (REST API Developer Guide, "Limit Info Header"); the budget ends at
    ``share`` of what remained when the load started, so the org keeps the rest for everyone
    else (Fivetran pauses at 90% of the org's quota for the same reason).
    """

    used_at_start: int
    maximum: int
    share: float

    @classmethod
    def start(
        cls, limits: dict[str, Any] | None, usage: tuple[int, int] | None, share: float
    ) -> "ApiBudget | None":
        """From `/limits` if readable, else from the last `Sforce-Limit-Info`; None if neither."""
        entry = (limits or {}).get("DailyApiRequests")
        if isinstance(entry, dict) and {"Max", "Remaining"} <= entry.keys():
            maximum = int(entry["Max"])
            return cls(
                used_at_start=maximum - int(entry["Remaining"]), maximum=maximum, share=share
            )
        if usage is None:
            return None
        return cls(used_at_start=usage[0], maximum=usage[1], share=share)

    @property
    def calls(self) -> int:
        """How many API requests the night may make."""
        return int(self.share * max(0, self.maximum - self.used_at_start))

    def exhausted(self, usage: tuple[int, int] | None, reserve: int) -> bool:
        """Whether ``reserve`` more calls would pass the budget, by the org's latest usage."""
        return usage is not None and usage[0] + reserve >= self.used_at_start + self.calls

    def describe(self, usage: tuple[int, int] | None) -> str:
        used = (usage[0] if usage else self.used_at_start) - self.used_at_start
        return (
            f"{used:,} of {self.calls:,} API requests used since the load started; the org has "
            f"{self.maximum:,} a day"
        )


def assess_limits(
    limits: dict[str, Any],
    jobs: list[JobSlice],
    api_calls: int,
    api_budget_share: float = 1.0,
) -> LimitsReport:
    """Compare the planned jobs with what the org has left.

    Batches against ``DailyBulkApiBatches``; the ``api_calls`` they are expected to make
    (`api_calls_needed`, per load) against the night's share of the remaining ``DailyApiRequests``.
    """
    records = sum(job.records for job in jobs)
    needs = [
        LimitNeed(
            limit="DailyBulkApiBatches",
            needed=batches_needed(jobs),
            remaining=_remaining(limits, "DailyBulkApiBatches"),
        ),
        LimitNeed(
            limit="DailyApiRequests",
            needed=api_calls,
            remaining=_remaining(limits, "DailyApiRequests"),
            share=api_budget_share,
        ),
    ]
    return LimitsReport(records=records, jobs=len(jobs), needs=needs)


def _remaining(limits: dict[str, Any], key: str) -> int:
    entry = limits.get(key)
    if not isinstance(entry, dict) or "Remaining" not in entry:
        raise SalesforceLimitsError(
            f"The org's /limits answer has no {key}; cannot check the load."
        )
    return int(entry["Remaining"])
