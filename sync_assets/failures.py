"""A drop's rows that did not reach Salesforce: the staging's rejects and the load's failures, with their reasons."""

import polars as pl

from sync_assets.drops.reader import MANIFEST_NAME, read_manifest
from sync_assets.drops.validate import REASON, REASON_CODE
from sync_assets.state.columns import EXTERNAL_ID_FIELD, FAILED_OPERATION, INTERNAL_PREFIX
from sync_assets.state.layout import (
    FAILED_FOLDER,
    STAGING_FOLDER,
    StagingFiles,
    failed_rows_path,
)
from sync_assets.storage import StateStore

REJECTED = "rejected"
"""Refused by the sync's own rules before sending: fixed in the export, by a new drop."""
FAILED = "failed"
"""Refused by Salesforce: sent again by `resend` once the org or the data is fixed."""

ROW_COLUMNS = ["partition", "kind", "key", "code", "reason"]
"""What every listed row has, whatever its kind; the row's own columns follow."""
GROUP_COLUMNS = ["partition", "kind", "code"]


def drops_with_state(state: StateStore) -> list[str]:
    """The drops the state holds a staging or failed rows of, sorted by id."""
    return sorted(set(state.list_names(STAGING_FOLDER)) | set(state.list_names(FAILED_FOLDER)))


def newest_drop_with_state(state: StateStore, landing: StateStore) -> str | None:
    """The newest of `drops_with_state`.

    By its manifest's creation where the drop is still landed (as `newest_complete_drop` orders
    drops), else by id.
    """

    def age(drop_id: str) -> tuple[float, str]:
        if landing.exists(f"{drop_id}/{MANIFEST_NAME}"):
            return read_manifest(landing, drop_id).created_at.timestamp(), drop_id
        return float("-inf"), drop_id

    return max(drops_with_state(state), key=age, default=None)


def _listed(
    state: StateStore, path: str, partition: str, kind: str, columns: tuple[str, str, str]
) -> pl.LazyFrame:
    """A file's rows under the listing's common columns, then its own (but the sync's bookkeeping).

    `columns` are the file's key, code and reason; no rows if the file does not exist.
    """
    if not state.exists(path):
        return pl.LazyFrame(schema=dict.fromkeys(ROW_COLUMNS, pl.String))
    key, code, reason = columns
    return state.scan_parquet([path]).select(
        pl.lit(partition).alias("partition"),
        pl.lit(kind).alias("kind"),
        pl.col(key).alias("key"),
        pl.col(code).alias("code"),
        pl.col(reason).alias("reason"),
        pl.exclude(key, code, reason, f"^{INTERNAL_PREFIX}.*$"),
    )


def rejected_rows(state: StateStore, drop_id: str, partition: str, key_column: str) -> pl.LazyFrame:
    """The partition's rejects: source columns as text, the rule's code and message."""
    path = StagingFiles.of(drop_id, partition).rejects
    return _listed(state, path, partition, REJECTED, (key_column, REASON_CODE, REASON))


def failed_rows(state: StateStore, drop_id: str, partition: str) -> pl.LazyFrame:
    """The partition's rows Salesforce refused: fields as sent, its error code and message, the job."""
    path = failed_rows_path(drop_id, partition)
    return _listed(state, path, partition, FAILED, (EXTERNAL_ID_FIELD, "error_code", "error"))


def failure_rows(
    state: StateStore, drop_id: str, partitions: list[str], key_column: str
) -> pl.LazyFrame:
    """Every rejected and failed row of the drop's partitions.

    Partition, kind, key, code and reason, then each row's own columns (empty where only the
    other kind has them).
    """
    frames = [
        frame
        for partition in partitions
        for frame in (
            rejected_rows(state, drop_id, partition, key_column),
            failed_rows(state, drop_id, partition),
        )
    ]
    return pl.concat(frames, how="diagonal_relaxed")


def grouped_counts(rows: pl.LazyFrame) -> pl.DataFrame:
    """Rows per partition, kind and code, most frequent first within a partition and kind."""
    return (
        rows.group_by(GROUP_COLUMNS)
        .agg(pl.len().alias("rows"), pl.col("reason").first().alias("example"))
        .sort(["partition", "kind", "rows", "code"], descending=[False, False, True, False])
        .collect()
    )


def failed_count(state: StateStore, drop_id: str, partition: str) -> int:
    """Rows of the drop's partition whose upsert Salesforce refused: what a resend sends.

    0 with no failed-rows file; rows it refused to delete (kept in the same file) are not counted.
    """
    path = failed_rows_path(drop_id, partition)
    if not state.exists(path):
        return 0
    rows = state.scan_parquet([path])
    if FAILED_OPERATION in rows.collect_schema().names():
        rows = rows.filter(pl.col(FAILED_OPERATION).is_null())
    return rows.select(pl.len()).collect().item()


def rejected_count(state: StateStore, drop_id: str, partition: str) -> int:
    """Rows of the drop's partition that the sync's rules rejected (0 if it was never staged)."""
    path = StagingFiles.of(drop_id, partition).rejects
    return state.scan_parquet([path]).select(pl.len()).collect().item() if state.exists(path) else 0
