"""A partition's load, below Dagster: its rows sent by the Bulk loader, what Salesforce confirmed recorded in the state.

This is the one place a load reaches the ledger: it advances it for the rows Salesforce
confirmed, keeps the rows that failed for good with their errors, and forgets the rows whose
opportunity moved to another partition once Salesforce agrees; and a drift repair marks the
rows the org no longer holds as sent, so the next load resends them.
"""

from collections.abc import Callable
from datetime import UTC, datetime

import polars as pl
from pydantic import BaseModel, Field

from sync_assets.drops.staging import StagedPartition
from sync_assets.salesforce.checkpoint import CheckpointStore
from sync_assets.salesforce.errors import LoadStoppedError
from sync_assets.salesforce.loader import BulkLoader, LoadOutcome, LoadResult
from sync_assets.salesforce.watcher import Pace
from sync_assets.state.columns import (
    EXTERNAL_ID_FIELD,
    FAILED_OPERATION,
    FAILURE_COLUMNS,
    ROW_HASH,
    SALESFORCE_ID_FIELD,
)
from sync_assets.state.layout import (
    ORG_PACE_PATH,
    StagingFiles,
    failed_rows_path,
    pace_path,
    resend_checkpoint_folder,
)
from sync_assets.state.ledger import (
    advance_ledger,
    forget_ledger_rows,
    ledger_keys,
    mark_ledger_rows_stale,
)
from sync_assets.state.org import bind_org
from sync_assets.storage import StateStore

StillTagged = Callable[[str, list[str]], set[str]]
"""Which of these external ids Salesforce still tags with this partition (a SOQL query)."""


def last_pace(state: StateStore, partition: str) -> Pace | None:
    """How the partition's last load went (its pace and calls per job), if it has loaded before."""
    path = pace_path(partition)
    return state.read_json(path, Pace) if state.exists(path) else None


class OrgPace(BaseModel):
    seconds_per_record: float = Field(gt=0)
    measured_by: str = Field(description="The partition whose load measured it.")
    measured_at: datetime


class OrgPaceFile:
    """The org's pace shared through the state by the partitions' loads (a `SharedPace`)."""

    def __init__(self, state: StateStore, partition: str) -> None:
        self.state = state
        self.partition = partition

    def read(self) -> float | None:
        if not self.state.exists(ORG_PACE_PATH):
            return None
        return self.state.read_json(ORG_PACE_PATH, OrgPace).seconds_per_record

    def publish(self, seconds_per_record: float) -> None:
        measured = OrgPace(
            seconds_per_record=seconds_per_record,
            measured_by=self.partition,
            measured_at=datetime.now(UTC),
        )
        self.state.write_json(ORG_PACE_PATH, measured)


class PartitionLoader:
    """Loads rows of one partition with a `BulkLoader` and records the outcome in the state."""

    def __init__(self, loader: BulkLoader, state: StateStore) -> None:
        self.loader = loader
        self.state = state

    def load_staged(self, drop_id: str, partition: str) -> LoadResult:
        """Send a staged partition's rows to send (each job reads its rows from the file)."""
        rows = self.state.scan_parquet([StagingFiles.of(drop_id, partition).to_send])
        return self.load(rows, drop_id, partition)

    def resend_failed(self, drop_id: str, partition: str, attempt: str) -> LoadResult:
        """Send the rows of a drop's partition that failed for good again, as they were staged.

        For after the org or the data was fixed (a validation rule, a missing parent): the
        ledger advances for the rows Salesforce now confirms and the failed-rows file keeps only
        the rows that still fail. `attempt` (the run) names the resend's own checkpoint, so a
        retried run resumes its jobs while a later resend sends the rows again.
        """
        path = failed_rows_path(drop_id, partition)
        failed = self.state.read_parquet(path)
        if FAILED_OPERATION not in failed.columns:
            failed = failed.with_columns(pl.lit(None, pl.String).alias(FAILED_OPERATION))
        # Rows Salesforce refused to delete are no upserts: they stay listed, not resent.
        refused_deletes = failed.filter(pl.col(FAILED_OPERATION).is_not_null())
        rows = failed.filter(pl.col(FAILED_OPERATION).is_null()).drop(
            *FAILURE_COLUMNS, FAILED_OPERATION, SALESFORCE_ID_FIELD, strict=False
        )
        folder = resend_checkpoint_folder(drop_id, partition, attempt)
        result = self.load(rows, drop_id, partition, checkpoint_folder=folder)
        if not refused_deletes.is_empty():
            still = self.state.read_parquet(path)
            kept = pl.concat([still, refused_deletes], how="diagonal_relaxed")
            self.state.write_parquet(path, kept)
        return result

    def load(
        self,
        rows: pl.DataFrame | pl.LazyFrame,
        drop_id: str,
        partition: str,
        *,
        checkpoint_folder: str | None = None,
        failed_path: str | None = None,
    ) -> LoadResult:
        """Send ``rows`` (Salesforce columns plus ``_row_hash``, sorted by account); record it.

        The checkpoint is the drop's partition's, and the failed rows go to its failed-rows file,
        unless ``checkpoint_folder`` and ``failed_path`` name others: a resend resumes its own
        jobs, a restore neither resumes nor overwrites the night's.
        """
        connection = self.loader.connection
        bind_org(self.state, connection.org_id, connection.instance_url)
        checkpoint = CheckpointStore(self.state, drop_id, partition, checkpoint_folder)
        try:
            outcome = self.loader.load(
                rows.lazy(),
                checkpoint,
                last_pace(self.state, partition),
                OrgPaceFile(self.state, partition),
            )
        except LoadStoppedError as stopped:
            # A daily limit or the API budget: what Salesforce confirmed is kept, so the next
            # night does not send it again; nothing is recorded as failed.
            if stopped.confirmed is not None:
                self._advance(partition, stopped.confirmed, drop_id)
            raise
        return self._record(outcome, failed_path)

    def _record(self, outcome: LoadOutcome, failed_path: str | None = None) -> LoadResult:
        result = outcome.result
        path = failed_path or failed_rows_path(result.drop_id, result.partition)
        self.state.write_parquet(path, outcome.failed)
        self._advance(result.partition, outcome.confirmed, result.drop_id)
        if result.pace is not None and failed_path is None:
            self.state.write_json(pace_path(result.partition), result.pace)
        return result.model_copy(update={"failed_file": self.state.url(path)})

    def _advance(self, partition: str, confirmed: pl.DataFrame, drop_id: str) -> None:
        renamed = confirmed.rename({EXTERNAL_ID_FIELD: "external_id", ROW_HASH: "row_hash"})
        advance_ledger(self.state, partition, renamed, drop_id)

    def forget_deleted_rows(self, partition: str, external_ids: pl.Series) -> int:
        """Forget ledger rows Salesforce confirmed deleting (or archiving); returns how many."""
        return forget_ledger_rows(self.state, partition, external_ids)


def forget_moved_rows(
    state: StateStore, staged: StagedPartition, still_tagged: StillTagged
) -> tuple[int, int]:
    """Forget ledger rows whose opportunity moved to another partition, once Salesforce agrees.

    Returns (rows that moved out, rows forgotten now). A row Salesforce still tags with this
    partition (its new partition has not sent it yet) stays: the night's summary, after every
    load, or else a later load of this partition forgets it once Salesforce tags it elsewhere.
    """
    moved, retagged = retagged_moved_rows(state, staged, still_tagged)
    return moved, forget_ledger_rows(state, staged.counts.partition, retagged)


def moved_rows_gone(state: StateStore, staged: StagedPartition) -> int:
    """The staging's moved-out rows no longer in the partition's ledger (forgotten since)."""
    moved = _moved_out_keys(state, staged)
    return int((~moved.is_in(ledger_keys(state, staged.counts.partition).implode())).sum())


def _moved_out_keys(state: StateStore, staged: StagedPartition) -> pl.Series:
    """The external ids the staging found moved to another partition (none for older stagings)."""
    if not state.exists(staged.moved_out):
        return pl.Series("external_id", [], dtype=pl.String)
    return state.read_parquet(staged.moved_out, columns=["external_id"]).get_column("external_id")


def retagged_moved_rows(
    state: StateStore, staged: StagedPartition, still_tagged: StillTagged
) -> tuple[int, pl.Series]:
    """Rows of the partition's ledger that moved out (per the staging), and those re-tagged.

    Returns how many moved to another partition, and the external ids of those Salesforce
    already tags with another partition.
    """
    moved = _moved_out_keys(state, staged)
    if moved.is_empty():
        return 0, moved
    still_here = still_tagged(staged.counts.partition, moved.to_list())
    return moved.len(), moved.filter(~moved.is_in(sorted(still_here)))


def resend_on_next_load(state: StateStore, partition: str, external_ids: pl.Series) -> int:
    """Drift repair: the next load of the partition resends these rows (the ledger's hash marked)."""
    return mark_ledger_rows_stale(state, partition, external_ids)
