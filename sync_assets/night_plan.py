"""A night's plan before anything is sent: rows to create, update, leave, reject; jobs and calls.

Per partition: what it would create, update, leave unchanged and reject, and the Bulk jobs, API
calls and records it would use against the org's limits. The plan stages the drop exactly as the night would (the same validation, diff against the
ledgers, job cuts), but into scratch space that is thrown away: it writes nothing to the state,
never moves a ledger, and sends Salesforce nothing but reads (metadata, `/limits`). Its counts
are therefore the following night's, as long as the drop, the mapping, the org and the ledgers
stay as they were.
"""

import datetime as dt
import tempfile
from collections.abc import Callable
from typing import Any

import requests
from pydantic import BaseModel, Field

from sync_assets.drops.contract import DropContract
from sync_assets.drops.staging import StagedPartition, stage_partitions
from sync_assets.partition_load import last_pace
from sync_assets.salesforce.errors import SalesforceError
from sync_assets.salesforce.limits import LimitNeed, api_calls_needed, assess_limits, batches_needed
from sync_assets.salesforce.planning import JobSlice, PlanLimits, plan_jobs
from sync_assets.salesforce.staged_rows import CSV_BYTES, StagedRows
from sync_assets.state.columns import ACCOUNT_EXTERNAL_ID_FIELD
from sync_assets.storage import StateStore

TOP_REASONS = 3


class PartitionPlan(BaseModel):
    """Where one partition's rows would go, and what sending them would use."""

    partition: str
    source: int
    create: int = Field(
        description="Not in the ledger: new to the sync (an update if the org "
        "already holds the record)."
    )
    update: int = Field(description="In the ledger with other values.")
    unchanged: int
    rejected: int
    top_reasons: dict[str, int] = Field(description="The most frequent reject reasons.")
    absent: int = Field(description="In the ledger, absent from the drop (reported, not deleted).")
    moved_out: int = Field(description="In the ledger, now another partition's row.")
    jobs: int = Field(description="Bulk API 2.0 ingest jobs.")
    records: int
    bulk_batches: int = Field(description="Salesforce counts one per started 10,000 records.")
    api_calls: int = Field(
        description="A generous estimate (create, upload, close, polls, results)."
    )

    @classmethod
    def of(
        cls, staged: StagedPartition, jobs: list[JobSlice], calls_per_job: float | None
    ) -> "PartitionPlan":
        """``calls_per_job``: what the partition's last load measured, if it has loaded."""
        counts = staged.counts
        ranked = sorted(counts.rejected_by_reason.items(), key=lambda item: (-item[1], item[0]))
        return cls(
            partition=counts.partition,
            source=counts.source,
            create=counts.new,
            update=counts.changed,
            unchanged=counts.unchanged,
            rejected=counts.rejected,
            top_reasons=dict(ranked[:TOP_REASONS]),
            absent=counts.deleted,
            moved_out=counts.moved_out,
            jobs=len(jobs),
            records=sum(job.records for job in jobs),
            bulk_batches=batches_needed(jobs),
            api_calls=api_calls_needed(jobs, calls_per_job),
        )


SUMMED = (
    "source",
    "create",
    "update",
    "unchanged",
    "rejected",
    "absent",
    "moved_out",
    "jobs",
    "records",
    "bulk_batches",
    "api_calls",
)


class NightPlan(BaseModel):
    """The plan of one drop's night: per partition, what it writes, and the limits it meets."""

    drop_id: str
    planned_at: dt.datetime
    sobject: str
    fields: list[str] = Field(description="The fields the night writes (Bulk CSV headers).")
    extra_columns: list[str] = Field(description="Columns of the drop the mapping does not read.")
    missing_columns: list[str] = Field(description="Optional columns the drop lacks (all-null).")
    partitions: list[PartitionPlan]
    limits: list[LimitNeed] = Field(description="What the night needs of the org's daily limits.")
    limits_unavailable: str | None = Field(
        default=None, description="Why the org's /limits could not be read, if it could not."
    )

    @property
    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(part, name) for part in self.partitions) for name in SUMMED}

    @property
    def fits(self) -> bool | None:
        """Whether the org's remaining limits take the night; None if they could not be read."""
        return None if self.limits_unavailable else all(need.fits for need in self.limits)


def _jobs(output: StateStore, staged: StagedPartition, plan: PlanLimits) -> list[JobSlice]:
    """The Bulk jobs the loader would cut the partition's rows into (its first round)."""
    rows = StagedRows(output.scan_parquet([staged.to_send]), ACCOUNT_EXTERNAL_ID_FIELD)
    return plan_jobs(
        rows.keys,
        plan,
        ACCOUNT_EXTERNAL_ID_FIELD,
        sizes=rows.keys.get_column(CSV_BYTES),
        header_bytes=rows.header_bytes,
    )


def _limits(
    read_limits: Callable[[], dict[str, Any]], jobs: list[JobSlice], api_calls: int
) -> tuple[list[LimitNeed], str | None]:
    try:
        return assess_limits(read_limits(), jobs, api_calls).needs, None
    except (SalesforceError, requests.RequestException) as error:
        # A plan still shows its counts when /limits is forbidden (no View Setup) or down.
        return [], f"{type(error).__name__}: {error}"


def plan_night(
    landing: StateStore,
    state: StateStore,
    drop_id: str,
    contract: DropContract,
    partitions: list[str],
    plan: PlanLimits,
    read_limits: Callable[[], dict[str, Any]],
) -> NightPlan:
    """The plan of `partitions` of a drop; the state is read, never written."""
    with tempfile.TemporaryDirectory(prefix="sync-plan-") as scratch:
        output = StateStore(scratch)
        staged = stage_partitions(landing, state, drop_id, partitions, contract, output)
        jobs = {key: _jobs(output, part, plan) for key, part in staged.items()}
    counts = next(iter(staged.values())).counts
    paces = {key: last_pace(state, key) for key in staged}
    parts = [
        PartitionPlan.of(staged[key], jobs[key], pace.api_calls_per_job if pace else None)
        for key, pace in sorted(paces.items())
    ]
    needs, unavailable = _limits(
        read_limits,
        [job for each in jobs.values() for job in each],
        sum(part.api_calls for part in parts),
    )
    return NightPlan(
        drop_id=drop_id,
        planned_at=dt.datetime.now(dt.UTC),
        sobject=contract.mapping.object,
        fields=contract.salesforce_fields,
        extra_columns=counts.extra_columns,
        missing_columns=counts.missing_columns,
        partitions=parts,
        limits=needs,
        limits_unavailable=unavailable,
    )
