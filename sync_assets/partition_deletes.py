"""A partition's deletes: ledger rows a complete drop no longer has, removed (or archived), guarded, kept for restore.

Opt-in (`DeletePolicy.mode`, default `none`). The rows come from the staging (`deleted.parquet`:
in the ledger, absent from the whole drop; a row that moved to another partition is not among
them). Before anything leaves Salesforce, each row's last sent values (the staged row of the drop
that last sent it) are written to the drop's `deleted.parquet` under `deletes/`, so `restore` can
upsert them back. Deletes are Bulk API 2.0 `delete`/`hardDelete` jobs by the Id of the live
record holding each key (looked up when deleting: a key no live record holds is already gone),
through the loader (account-aligned jobs, resends, checkpoint, accounting); archive is an upsert
of constants.
"""

from typing import Literal

import polars as pl
from pydantic import BaseModel, Field, model_validator

from sync_assets.drops.staging import StagedPartition
from sync_assets.partition_load import PartitionLoader
from sync_assets.salesforce.bulk_api import BulkApiError, IngestOperation
from sync_assets.salesforce.checkpoint import CheckpointStore
from sync_assets.salesforce.loader import BulkLoader, LoadResult
from sync_assets.salesforce.lookups import IdQuery, ids_by_key
from sync_assets.state.columns import (
    ACCOUNT_EXTERNAL_ID_FIELD,
    EXTERNAL_ID_FIELD,
    FAILED_OPERATION,
    INTERNAL_PREFIX,
    PARTITION_FIELD,
    ROW_HASH,
    SALESFORCE_ID_FIELD,
)
from sync_assets.state.layout import DeleteFiles, StagingFiles, failed_rows_path
from sync_assets.state.ledger import load_ledger
from sync_assets.storage import StateStore

DeleteMode = Literal["none", "delete", "hard_delete", "archive"]
OPERATIONS: dict[str, IngestOperation] = {
    "delete": "delete",
    "hard_delete": "hardDelete",
    "archive": "upsert",
}
LAST_SENT_DROP = "_last_sent_drop"
VALUES_KEPT = "_values_kept"
# Bulk API 2.0: "#N/A" empties a field. An archived record leaves the sync's partition, so the
# COUNT() checks and the moved-row logic stop counting it (the ledger forgets it too).
CLEAR = "#N/A"
KEY_FIELDS = {EXTERNAL_ID_FIELD, ACCOUNT_EXTERNAL_ID_FIELD, PARTITION_FIELD, SALESFORCE_ID_FIELD}


class DeletePolicy(BaseModel):
    """What the sync does with ledger rows a complete drop no longer has, and when it holds back."""

    mode: DeleteMode = Field(
        default="none",
        description="none: report only; delete (Recycle Bin, 15 days); hard_delete (needs the "
        "Bulk API Hard Delete permission); archive: upsert `archive_values` instead.",
    )
    max_share: float = Field(
        default=0.02, ge=0, le=1, description="Most of a partition's ledger one night deletes."
    )
    max_rows: int = Field(default=10_000, ge=0, description="Most rows one partition deletes.")
    archive_values: dict[str, str] = Field(
        default_factory=dict,
        description="Archive: field → value as Bulk CSV text (e.g. StageName: Closed Lost, "
        "Archived__c: true), like the mapping file's constants.",
    )

    @model_validator(mode="after")
    def _archive_needs_values(self) -> "DeletePolicy":
        if self.mode == "archive" and not self.archive_values:
            raise ValueError("delete mode archive needs archive values (field: value)")
        reserved = sorted(KEY_FIELDS & set(self.archive_values))
        if reserved:
            raise ValueError(f"archive values may not set the sync's key fields {reserved}")
        return self


class DeleteGuard(BaseModel):
    """The mass-delete guard's verdict on one partition's night."""

    drop_id: str
    partition: str
    to_delete: int
    ledger_rows: int
    max_share: float
    max_rows: int
    confirmed: int | None = Field(
        default=None, description="The count a person confirmed (run tag or config)."
    )

    @property
    def share(self) -> float:
        return self.to_delete / self.ledger_rows if self.ledger_rows else 0.0

    @property
    def over_limits(self) -> bool:
        return self.to_delete > self.max_rows or self.share > self.max_share

    @property
    def holds(self) -> bool:
        """Over the limits and not confirmed with exactly this count: nothing is deleted."""
        return self.over_limits and self.confirmed != self.to_delete

    def reason(self) -> str:
        why = (
            f"drop {self.drop_id} would delete {self.to_delete:,} of the {self.ledger_rows:,} "
            f"rows in partition {self.partition}'s ledger ({self.share:.1%}), over the limit of "
            f"{self.max_share:.1%} or {self.max_rows:,} rows"
        )
        if self.confirmed is not None:
            why += (
                f"; the confirmation ({self.confirmed:,}) does not match the {self.to_delete:,} "
                "rows found now"
            )
        return why


class DeleteResult(BaseModel):
    """What one night's deletes did in one partition; ``to_delete = deleted + failed + already_absent``."""

    drop_id: str
    partition: str
    mode: DeleteMode
    to_delete: int
    deleted: int
    failed: int
    already_absent: int = Field(
        default=0,
        description="Rows no live record holds any more (deleted in Salesforce by someone else): "
        "nothing to delete, the ledger forgets them.",
    )
    without_values: int = Field(
        description="Deleted rows whose last sent values were not found (restore cannot bring "
        "them back): the staging of the drop that last sent them is gone."
    )
    forgotten: int = Field(description="Rows the ledger forgot (Salesforce confirmed them).")
    job_ids: list[str] = Field(default_factory=list)
    api_calls: int = 0
    failed_by_reason: dict[str, int] = Field(default_factory=dict)
    deleted_file: str = ""

    @model_validator(mode="after")
    def _every_row_accounted_for(self) -> "DeleteResult":
        if self.to_delete != self.deleted + self.failed + self.already_absent:
            raise ValueError(
                f"to delete {self.to_delete} != deleted {self.deleted} + failed {self.failed} "
                f"+ already absent {self.already_absent}"
            )
        return self


class HardDeleteNotPermittedError(RuntimeError):
    """hard_delete was configured, and the org refused the user a hardDelete job."""


def rows_to_delete(state: StateStore, staged: StagedPartition) -> pl.DataFrame:
    """The partition's ledger rows absent from the drop, with the values they were last sent with.

    Columns: the Salesforce fields as staged (null where the last sending drop's staging no longer
    holds the row), ``_row_hash``, ``Id`` (the ledger's Salesforce id), the drop that last sent it
    and whether its values were found; sorted by account, as the loader cuts jobs. A delete
    replaces the ledger's Id with the live record's (`PartitionDeleter`).
    """
    gone = (
        state.read_parquet(staged.deleted)
        if state.exists(staged.deleted)
        else load_ledger(state, staged.counts.partition).head(0)
    )
    keys = gone.select(
        pl.col("external_id").alias(EXTERNAL_ID_FIELD),
        pl.col("row_hash").alias(ROW_HASH),
        pl.col("salesforce_id").alias(SALESFORCE_ID_FIELD),
        pl.col("drop_id").alias(LAST_SENT_DROP),
    )
    values = _last_sent_values(state, keys, staged.counts.partition)
    rows = keys.join(values, on=[EXTERNAL_ID_FIELD, ROW_HASH], how="left", coalesce=True)
    if ACCOUNT_EXTERNAL_ID_FIELD not in rows.columns:
        rows = rows.with_columns(pl.lit(None, pl.String).alias(ACCOUNT_EXTERNAL_ID_FIELD))
    return rows.with_columns(pl.col(VALUES_KEPT).fill_null(False)).sort(
        ACCOUNT_EXTERNAL_ID_FIELD, nulls_last=True, maintain_order=True
    )


def _last_sent_values(state: StateStore, keys: pl.DataFrame, partition: str) -> pl.DataFrame:
    """The staged rows (of the drops that last sent them) matching these keys and hashes."""
    drops = keys.get_column(LAST_SENT_DROP).drop_nulls().unique().sort().to_list()
    files = [StagingFiles.of(drop, partition).to_send for drop in drops]
    present = [path for path in files if state.exists(path)]
    if keys.is_empty() or not present:
        return (
            keys.select(EXTERNAL_ID_FIELD, ROW_HASH)
            .head(0)
            .with_columns(pl.lit(True).alias(VALUES_KEPT))
        )
    wanted = keys.select(EXTERNAL_ID_FIELD, ROW_HASH).lazy()
    scans = [
        state.scan_parquet([path]).join(wanted, on=[EXTERNAL_ID_FIELD, ROW_HASH], how="semi")
        for path in present
    ]
    found = pl.concat(scans, how="diagonal_relaxed").collect(engine="streaming")
    internal = [name for name in found.columns if name.startswith(INTERNAL_PREFIX)]
    return (
        found.drop([name for name in internal if name != ROW_HASH])
        .unique(subset=[EXTERNAL_ID_FIELD, ROW_HASH], keep="last", maintain_order=True)
        .with_columns(pl.lit(True).alias(VALUES_KEPT))
    )


def delete_guard(
    state: StateStore,
    staged: StagedPartition,
    policy: DeletePolicy,
    confirmed: int | None,
) -> DeleteGuard:
    """The guard's verdict: the rows to delete against the partition's ledger and the limits."""
    partition = staged.counts.partition
    return DeleteGuard(
        drop_id=staged.counts.drop_id,
        partition=partition,
        to_delete=staged.counts.deleted,
        ledger_rows=load_ledger(state, partition).height,
        max_share=policy.max_share,
        max_rows=policy.max_rows,
        confirmed=confirmed,
    )


def hold_deletes(state: StateStore, staged: StagedPartition) -> str:
    """Write the rows the guard holds back (with their last sent values); returns the file's URL."""
    path = DeleteFiles.of(staged.counts.drop_id, staged.counts.partition).held
    state.write_parquet(path, rows_to_delete(state, staged))
    return state.url(path)


class PartitionDeleter:
    """Deletes (or archives) a partition's absent rows through the loader; the ledger forgets them."""

    def __init__(self, loader: BulkLoader, state: StateStore) -> None:
        self.loader = loader
        self.state = state

    def delete(self, staged: StagedPartition, policy: DeletePolicy) -> DeleteResult:
        """Keep the rows' last sent values, then delete them; record what Salesforce confirmed."""
        drop_id, partition = staged.counts.drop_id, staged.counts.partition
        files = DeleteFiles.of(drop_id, partition)
        rows = rows_to_delete(self.state, staged)
        if policy.mode != "archive":
            rows = self._with_live_ids(rows, partition)
        # Kept before anything leaves Salesforce: a crash mid-delete still leaves the undo.
        self.state.write_parquet(files.deleted, rows)
        if policy.mode == "archive":
            sent, absent = archive_rows(rows, policy), rows.head(0)
        else:
            live = pl.col(SALESFORCE_ID_FIELD).is_not_null()
            sent, absent = rows.filter(live), rows.filter(~live)
        operation = OPERATIONS[policy.mode]
        loader = BulkLoader(
            self.loader.connection,
            self.loader.settings.model_copy(update={"operation": operation}),
            api=self.loader.api,
        )
        checkpoint = CheckpointStore(self.state, drop_id, partition, files.checkpoint)
        try:
            outcome = loader.load(sent.lazy(), checkpoint)
        except BulkApiError as error:
            if operation == "hardDelete" and error.error_code == "FEATURENOTENABLED":
                raise HardDeleteNotPermittedError(
                    "Salesforce refused the hardDelete job: the integration user lacks the "
                    "'Bulk API Hard Delete' permission (off by default; a profile or permission "
                    "set grants it). Grant it, or set the delete mode to delete (Recycle Bin). "
                    f"Salesforce said: {error.error_message}"
                ) from error
            raise
        gone = pl.concat(
            [outcome.confirmed.get_column(EXTERNAL_ID_FIELD), absent.get_column(EXTERNAL_ID_FIELD)]
        )
        forgotten = PartitionLoader(loader, self.state).forget_deleted_rows(partition, gone)
        self._keep_failures(drop_id, partition, outcome.failed, policy.mode)
        return _delete_result(
            outcome.result,
            policy.mode,
            rows,
            absent.height,
            forgotten,
            self.state.url(files.deleted),
        )

    def _with_live_ids(self, rows: pl.DataFrame, partition: str) -> pl.DataFrame:
        """The rows with the Id of the live record holding each key (null where none does)."""
        settings = self.loader.settings
        query = IdQuery(settings.sobject, partition, settings.external_id_field)
        live = ids_by_key(self.loader.api, query, rows.get_column(EXTERNAL_ID_FIELD))
        return (
            rows.drop(SALESFORCE_ID_FIELD)
            .join(
                live.rename({"Id": SALESFORCE_ID_FIELD}),
                on=EXTERNAL_ID_FIELD,
                how="left",
                maintain_order="left",
            )
            .select(rows.columns)
        )

    def _keep_failures(
        self, drop_id: str, partition: str, failed: pl.DataFrame, mode: DeleteMode
    ) -> None:
        """Add the rows Salesforce refused to delete to the partition's failed-rows file."""
        if failed.is_empty():
            return
        path = failed_rows_path(drop_id, partition)
        labelled = failed.with_columns(pl.lit(mode).alias(FAILED_OPERATION))
        earlier = self.state.read_parquet(path) if self.state.exists(path) else None
        kept = (
            labelled if earlier is None else pl.concat([earlier, labelled], how="diagonal_relaxed")
        )
        self.state.write_parquet(path, kept)


def archive_rows(rows: pl.DataFrame, policy: DeletePolicy) -> pl.DataFrame:
    """The archive's upsert: the key, the account (jobs stay aligned), the constants, no partition."""
    return rows.select(
        EXTERNAL_ID_FIELD,
        ACCOUNT_EXTERNAL_ID_FIELD,
        *(pl.lit(value, pl.String).alias(field) for field, value in policy.archive_values.items()),
        pl.lit(CLEAR, pl.String).alias(PARTITION_FIELD),
        ROW_HASH,
    )


def _delete_result(
    load: LoadResult,
    mode: DeleteMode,
    rows: pl.DataFrame,
    absent: int,
    forgotten: int,
    deleted_file: str,
) -> DeleteResult:
    return DeleteResult(
        drop_id=load.drop_id,
        partition=load.partition,
        mode=mode,
        to_delete=rows.height,
        deleted=load.succeeded,
        failed=load.failed,
        already_absent=absent,
        without_values=int((~rows.get_column(VALUES_KEPT)).sum()),
        forgotten=forgotten,
        job_ids=load.job_ids,
        api_calls=load.api_calls,
        failed_by_reason=load.failed_by_reason,
        deleted_file=deleted_file,
    )


class RestoreResult(BaseModel):
    """What a restore upserted back for one partition of a drop."""

    drop_id: str
    partition: str
    kept: int = Field(description="Rows the drop's deletes kept.")
    without_values: int = Field(description="Kept without values: they cannot be restored.")
    sent: int
    restored: int
    failed: int
    failed_file: str = ""


def restores_of_drop(state: StateStore, drop_id: str, partitions: list[str]) -> list[RestoreResult]:
    """Every restore of the drop's deletes that `sync-assets restore` recorded, by partition."""
    folders = [DeleteFiles.of(drop_id, partition) for partition in partitions]
    return [
        state.read_json(path, RestoreResult)
        for files in folders
        for path in files.restore_records(state.list_names(files.folder))
    ]


def restore_partition(
    loader: PartitionLoader, drop_id: str, partition: str, restore_id: str
) -> RestoreResult | None:
    """Upsert back, with their last sent values, the rows a drop's deletes removed; None if none.

    The ledger holds them again (with their new Salesforce ids).
    """
    state = loader.state
    files = DeleteFiles.of(drop_id, partition)
    if not state.exists(files.deleted):
        return None
    kept = state.read_parquet(files.deleted)
    with_values = kept.filter(pl.col(VALUES_KEPT))
    rows = with_values.drop(SALESFORCE_ID_FIELD, LAST_SENT_DROP, VALUES_KEPT)
    result = loader.load(
        rows,
        drop_id,
        partition,
        checkpoint_folder=files.restore_checkpoint(restore_id),
        failed_path=files.restore_failed,
    )
    return RestoreResult(
        drop_id=drop_id,
        partition=partition,
        kept=kept.height,
        without_values=kept.height - with_values.height,
        sent=result.sent,
        restored=result.succeeded,
        failed=result.failed,
        failed_file=result.failed_file or "",
    )
