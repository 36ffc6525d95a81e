"""Deletes in a partition run: the policy as a resource, the mass-delete guard, its confirmation and alert."""

from typing import Any

import dagster as dg
import polars as pl
from pydantic import BaseModel, Field

from sync_assets.alerts import Alert, AlertResource
from sync_assets.drops.staging import StagedPartition
from sync_assets.partition_deletes import (
    DeleteGuard,
    DeleteMode,
    DeletePolicy,
    DeleteResult,
    PartitionDeleter,
    delete_guard,
    hold_deletes,
)
from sync_assets.resources import BulkLoadResource, SalesforceResource
from sync_assets.run_tags import ALERTED_TAG
from sync_assets.storage import StateStore

CONFIRM_TAG = "sync/confirm_deletes"
"""A run tag confirming a guarded night's deletes: the count the guard reported."""
LAUNCHED_BY_TAG = "sync/launched_by"


class DeletesResource(dg.ConfigurableResource):
    """What a night does with rows a complete drop no longer has (`SYNC_DELETE_*`)."""

    mode: str = DeletePolicy.model_fields["mode"].default
    max_share: float = DeletePolicy.model_fields["max_share"].default
    max_rows: int = DeletePolicy.model_fields["max_rows"].default
    archive_values: dict[str, str] = Field(default_factory=dict)

    def policy(self) -> DeletePolicy:
        return DeletePolicy(
            mode=self.mode,  # type: ignore[arg-type]  # validated by the model
            max_share=self.max_share,
            max_rows=self.max_rows,
            archive_values=self.archive_values,
        )


class LoadConfig(dg.Config):
    """A partition run's load: the confirmation of a night the mass-delete guard held back."""

    confirm_deletes: int | None = Field(
        default=None,
        description="Delete anyway: the number of rows the mass-delete guard reported for this "
        "drop and partition (the run tag sync/confirm_deletes=<count> does the same).",
    )


class Confirmation(BaseModel):
    """Who confirmed a guarded night's deletes, and how."""

    count: int
    source: str
    launched_by: str


def confirmation(context: dg.AssetExecutionContext, config: LoadConfig) -> Confirmation | None:
    """The run's confirmation of guarded deletes (run config first, then the run tag), if any."""
    tags = context.run.tags
    launched_by = tags.get(LAUNCHED_BY_TAG, "the Dagster UI or API")
    if config.confirm_deletes is not None:
        return Confirmation(
            count=config.confirm_deletes,
            source="run config confirm_deletes",
            launched_by=launched_by,
        )
    raw = tags.get(CONFIRM_TAG)
    if raw is None:
        return None
    try:
        count = int(raw.replace(",", "").strip())
    except ValueError as error:
        raise dg.Failure(
            description=f"Run tag {CONFIRM_TAG}={raw!r} is not a row count; give the number the "
            "mass-delete guard reported.",
            allow_retries=False,
        ) from error
    return Confirmation(count=count, source=f"run tag {CONFIRM_TAG}={raw}", launched_by=launched_by)


def delete_absent_rows(
    context: dg.AssetExecutionContext,
    state: StateStore,
    salesforce: SalesforceResource,
    bulk_load: BulkLoadResource,
    deletes: DeletesResource,
    alerts: AlertResource,
    staged: StagedPartition,
    confirmed: Confirmation | None,
) -> tuple[int, dict[str, Any]]:
    """Delete the partition's rows absent from the drop, unless the guard holds.

    Returns the rows the ledger forgot and the metadata.

    A held night deletes nothing, writes the rows it would delete, alerts once and fails the
    run with the count and the reason; the upserts before it are recorded already.
    """
    policy = deletes.policy()
    counts = staged.counts
    if policy.mode == "none" or counts.deleted == 0:
        return 0, {
            "delete_mode": policy.mode,
            "deleted": dg.MetadataValue.int(0),
            "absent_from_drop": dg.MetadataValue.int(counts.deleted),
        }
    guard = delete_guard(state, staged, policy, confirmed.count if confirmed else None)
    if guard.holds:
        raise _held(context, state, alerts, staged, guard)
    loader = bulk_load.loader(salesforce)
    result = PartitionDeleter(loader, state).delete(staged, policy)
    context.log.info(
        "Drop %s partition %s: %s %d of %d rows absent from the drop, %d failed",
        counts.drop_id,
        counts.partition,
        policy.mode,
        result.deleted,
        result.to_delete,
        result.failed,
    )
    return result.forgotten, delete_metadata(result, confirmed)


def _held(
    context: dg.AssetExecutionContext,
    state: StateStore,
    alerts: AlertResource,
    staged: StagedPartition,
    guard: DeleteGuard,
) -> dg.Failure:
    """Write the held rows, alert once, and the failure that ends the run."""
    listed = hold_deletes(state, staged)
    description = (
        f"Mass-delete guard: {guard.reason()}; nothing was deleted. The rows are listed in "
        f"{listed}. If they really left the source, run the partition again with the run tag "
        f"{CONFIRM_TAG}={guard.to_delete} (or run config confirm_deletes: {guard.to_delete})."
    )
    numbers = {
        "to_delete": guard.to_delete,
        "ledger_rows": guard.ledger_rows,
        "share": round(guard.share, 6),
        "max_share": guard.max_share,
        "max_rows": guard.max_rows,
    }
    context.instance.add_run_tags(context.run.run_id, {ALERTED_TAG: "deletes_held"})
    alerts.send(
        Alert(
            kind="deletes_held",
            severity="ERROR",
            asset=context.asset_key.to_user_string(),
            partition=guard.partition,
            drop_id=guard.drop_id,
            run_id=context.run.run_id,
            description=description,
            numbers=numbers,
        )
    )
    return dg.Failure(
        description=description,
        metadata={**numbers, "held_file": dg.MetadataValue.path(listed)},
        allow_retries=False,
    )


def delete_metadata(result: DeleteResult, confirmed: Confirmation | None) -> dict[str, Any]:
    mode: DeleteMode = result.mode
    confirmation_record: dict[str, Any] = (
        {
            "deletes_confirmed": dg.MetadataValue.json(
                {
                    "count": confirmed.count,
                    "how": confirmed.source,
                    "launched_by": confirmed.launched_by,
                    "drop_id": result.drop_id,
                }
            )
        }
        if confirmed is not None
        else {}
    )
    return {
        "delete_mode": mode,
        "deleted": dg.MetadataValue.int(result.deleted),
        "delete_failed": dg.MetadataValue.int(result.failed),
        "already_absent": dg.MetadataValue.int(result.already_absent),
        "deleted_without_values": dg.MetadataValue.int(result.without_values),
        "delete_jobs": dg.MetadataValue.json(result.job_ids),
        "delete_failures_by_reason": dg.MetadataValue.json(result.failed_by_reason),
        "deleted_file": dg.MetadataValue.path(result.deleted_file),
        **confirmation_record,
    }


def ledger_identity(
    before: pl.Series, after_upserts: pl.Series, moved_forgotten: int, deleted: int, now: int
) -> dict[str, Any]:
    """Yesterday's ledger + new − moved out − deleted = today's ledger, as metadata."""
    added = int((~after_upserts.is_in(before.implode())).sum())
    return {
        "ledger_before": dg.MetadataValue.int(before.len()),
        "ledger_added": dg.MetadataValue.int(added),
        "ledger_deleted": dg.MetadataValue.int(deleted),
        "ledger_moved_out": dg.MetadataValue.int(moved_forgotten),
        "ledger_rows": dg.MetadataValue.int(now),
    }
