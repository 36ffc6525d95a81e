"""A partition's load, below Dagster: its rows sent by the Bulk loader, what Salesforce confirmed recorded in the state.

This is the one place a load reaches the ledger: it advances it for the rows Salesforce
confirmed, keeps the rows that failed for good with their errors, and forgets the rows whose
opportunity moved to another partition once Salesforce agrees; and a drift repair marks the
rows the org no longer holds as sent, so the next load resends them.
"""

from collections.abc import Callable

import polars as pl

from sync_assets.drops.staging import StagedPartition
from sync_assets.salesforce.checkpoint import CheckpointStore
from sync_assets.salesforce.errors import LoadStoppedError
from sync_assets.salesforce.loader import BulkLoader, LoadOutcome, LoadResult
from sync_assets.salesforce.watcher import Pace
from sync_assets.state.columns import EXTERNAL_ID_FIELD, ROW_HASH
from sync_assets.state.layout import StagingFiles, failed_rows_path, pace_path
from sync_assets.state.ledger import advance_ledger, forget_ledger_rows, mark_ledger_rows_stale
from sync_assets.state.org import bind_org
from sync_assets.storage import StateStore

StillTagged = Callable[[str, list[str]], set[str]]
"""Which of these external ids Salesforce still tags with this partition (a SOQL query)."""


def last_pace(state: StateStore, partition: str) -> Pace | None:
    """How the partition's last load went (its pace and calls per job), if it has loaded before."""
    path = pace_path(partition)
    return state.read_json(path, Pace) if state.exists(path) else None


class PartitionLoader:
    """Loads rows of one partition with a `BulkLoader` and records the outcome in the state."""

    def __init__(self, loader: BulkLoader, state: StateStore) -> None:
        self.loader = loader
        self.state = state

    def load_staged(self, drop_id: str, partition: str) -> LoadResult:
        """Send a staged partition's rows to send (each job reads its rows from the file)."""
        rows = self.state.scan_parquet([StagingFiles.of(drop_id, partition).to_send])
        return self.load(rows, drop_id, partition)

    def load(self, rows: pl.DataFrame | pl.LazyFrame, drop_id: str, partition: str) -> LoadResult:
        """Send ``rows`` (Salesforce columns plus ``_row_hash``, sorted by account); record it."""
        connection = self.loader.connection
        bind_org(self.state, connection.org_id, connection.instance_url)
        checkpoint = CheckpointStore(self.state, drop_id, partition)
        try:
            outcome = self.loader.load(rows.lazy(), checkpoint, self._last_pace(partition))
        except LoadStoppedError as stopped:
            # A daily limit or the API budget: what Salesforce confirmed is kept, so the next
            # night does not send it again; nothing is recorded as failed.
            if stopped.confirmed is not None:
                self._advance(partition, stopped.confirmed, drop_id)
            raise
        return self._record(outcome)

    def _record(self, outcome: LoadOutcome) -> LoadResult:
        result = outcome.result
        path = failed_rows_path(result.drop_id, result.partition)
        self.state.write_parquet(path, outcome.failed)
        self._advance(result.partition, outcome.confirmed, result.drop_id)
        if result.pace is not None:
            self.state.write_json(pace_path(result.partition), result.pace)
        return result.model_copy(update={"failed_file": self.state.url(path)})

    def _last_pace(self, partition: str) -> Pace | None:
        return last_pace(self.state, partition)

    def _advance(self, partition: str, confirmed: pl.DataFrame, drop_id: str) -> None:
        renamed = confirmed.rename({EXTERNAL_ID_FIELD: "external_id", ROW_HASH: "row_hash"})
        advance_ledger(self.state, partition, renamed, drop_id)

    def forget_moved_rows(
        self, staged: StagedPartition, still_tagged: StillTagged
    ) -> tuple[int, int]:
        """Forget ledger rows whose opportunity moved to another partition, once Salesforce agrees.

        Returns (rows that moved out, rows forgotten now). A row Salesforce still tags with this
        partition (its new partition has not sent it yet) stays until a later load sees it
        re-tagged.
        """
        partition = staged.counts.partition
        moved, retagged = retagged_moved_rows(self.state, staged, still_tagged)
        return moved, forget_ledger_rows(self.state, partition, retagged)


def retagged_moved_rows(
    state: StateStore, staged: StagedPartition, still_tagged: StillTagged
) -> tuple[int, pl.Series]:
    """Rows of the partition's ledger that moved out (per the staging), and those re-tagged.

    Returns how many moved to another partition, and the external ids of those Salesforce
    already tags with another partition.
    """
    if not state.exists(staged.moved_out):
        return 0, pl.Series("external_id", [], dtype=pl.String)
    moved = state.read_parquet(staged.moved_out, columns=["external_id"]).get_column("external_id")
    if moved.is_empty():
        return 0, moved
    still_here = still_tagged(staged.counts.partition, moved.to_list())
    return moved.len(), moved.filter(~moved.is_in(sorted(still_here)))


def resend_on_next_load(state: StateStore, partition: str, external_ids: pl.Series) -> int:
    """Drift repair: the next load of the partition resends these rows (the ledger's hash marked)."""
    return mark_ledger_rows_stale(state, partition, external_ids)
