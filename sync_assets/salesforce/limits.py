"""The pre-flight check: can the org's remaining daily limits take this load? (read from `/limits`)."""

import math
from typing import Any

from pydantic import BaseModel

from sync_assets.salesforce.errors import SalesforceLimitsError
from sync_assets.salesforce.planning import SALESFORCE_INTERNAL_BATCH, JobSlice

# Calls one job costs: create, upload, close, three result downloads, and polls. Polling backs off to
# one call per 5 s, so a dozen polls cover a minute of processing per job; the estimate is generous
# on purpose, because running out of API calls halfway is worse than refusing at the start.
CALLS_PER_JOB = 6 + 12
# Real orgs also enforce 150M ingested records a day, but /limits does not list it (the REST API
# reference's Limits resource; no public client reads such a key): a job that passes it fails while
# processing with `ExceededQuota`, so the pre-flight cannot see it coming.


class LimitNeed(BaseModel):
    """What one load needs against what the org has left, for one limit."""

    limit: str
    needed: int
    remaining: int

    @property
    def fits(self) -> bool:
        return self.needed <= self.remaining


class LimitsReport(BaseModel):
    """Every limit the load touches; :meth:`raise_if_short` refuses a load that does not fit."""

    records: int
    jobs: int
    needs: list[LimitNeed]

    def raise_if_short(self) -> None:
        short = [need for need in self.needs if not need.fits]
        if short:
            detail = "; ".join(
                f"{need.limit}: needs {need.needed:,}, {need.remaining:,} remaining"
                for need in short
            )
            raise SalesforceLimitsError(
                f"Refusing to load {self.records:,} records in {self.jobs:,} Bulk jobs: the org's "
                f"daily limits cannot take it ({detail}). Nothing was sent."
            )


def batches_needed(jobs: list[JobSlice]) -> int:
    """Salesforce counts one batch per started 10,000 records of each job (Bulk API 2.0 Developer Guide, 'Bulk API 2.0 Limits and Allocations')."""
    return sum(math.ceil(job.records / SALESFORCE_INTERNAL_BATCH) for job in jobs)


def api_calls_needed(jobs: list[JobSlice]) -> int:
    return len(jobs) * CALLS_PER_JOB


def assess_limits(limits: dict[str, Any], jobs: list[JobSlice]) -> LimitsReport:
    """Compare the planned jobs with the remaining ``DailyBulkApiBatches``, API requests and records."""
    records = sum(job.records for job in jobs)
    needs = [
        LimitNeed(
            limit="DailyBulkApiBatches",
            needed=batches_needed(jobs),
            remaining=_remaining(limits, "DailyBulkApiBatches"),
        ),
        LimitNeed(
            limit="DailyApiRequests",
            needed=api_calls_needed(jobs),
            remaining=_remaining(limits, "DailyApiRequests"),
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
