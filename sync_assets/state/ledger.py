"""The per-partition ledger: what Salesforce confirmed holding, as a Parquet file under the state dir."""

import polars as pl

from sync_assets.state.layout import PARTITION_KEYS, ledger_path
from sync_assets.storage import StateStore

LEDGER_SCHEMA = pl.Schema(
    {
        "external_id": pl.String(),
        "row_hash": pl.UInt64(),
        "salesforce_id": pl.String(),
        "drop_id": pl.String(),
    }
)
# `salesforce_id` is the Id Salesforce last reported for the row (a job whose successes were
# read), for people reading a drift report; null where none did. Deletes do not trust it: they
# look Ids up by key (`lookups.ids_by_key`), as a record may have been deleted and created again.
CONFIRMED_COLUMNS = ("external_id", "row_hash", "salesforce_id")
ADVANCED = "_advanced"


def ledger_version(store: StateStore, partition: str) -> str:
    """A key that changes whenever the partition's ledger is rewritten ("" while there is none)."""
    return store.version(ledger_path(partition))


def ledger_rows(store: StateStore, partition: str) -> int:
    """The rows of the partition's ledger as it is on disk, read from the file's footer."""
    path = ledger_path(partition)
    return store.parquet_rows(path) if store.exists(path) else 0


def load_ledger(store: StateStore, partition: str) -> pl.DataFrame:
    """The partition's ledger; an empty frame with the ledger schema when nothing was synced yet."""
    path = ledger_path(partition)
    if not store.exists(path):
        return LEDGER_SCHEMA.to_frame()
    return store.read_parquet(path).select(
        pl.col(name).cast(dtype) for name, dtype in LEDGER_SCHEMA.items()
    )


def ledger_keys(store: StateStore, partition: str) -> pl.Series:
    """The partition's ledger keys, read alone (the other columns are most of the file)."""
    path = ledger_path(partition)
    if not store.exists(path):
        return pl.Series("external_id", [], LEDGER_SCHEMA["external_id"])
    keys = store.read_parquet(path, columns=["external_id"]).get_column("external_id")
    return keys.cast(LEDGER_SCHEMA["external_id"])


def advance_ledger(store: StateStore, partition: str, confirmed: pl.DataFrame, drop_id: str) -> int:
    """Record rows Salesforce confirmed (columns external_id, row_hash, salesforce_id).

    `row_hash` is the staged `_row_hash` (UInt64; decimal text is accepted and converted).
    Upserts them by external_id, stamped with `drop_id`; every other ledger row is untouched.
    A confirmed row without a Salesforce id keeps the id the ledger already had. The file is
    replaced atomically. Returns the number of distinct rows advanced.
    """
    missing = [name for name in CONFIRMED_COLUMNS if name not in confirmed.columns]
    if missing:
        raise ValueError(f"confirmed rows lack the columns {missing}")
    external_id, salesforce_id = pl.col("external_id"), pl.col("salesforce_id")
    updates = (
        confirmed.select(pl.col(name).cast(LEDGER_SCHEMA[name]) for name in CONFIRMED_COLUMNS)
        .filter(external_id.is_not_null())
        .with_columns(pl.lit(drop_id, dtype=pl.String).alias("drop_id"), **{ADVANCED: pl.lit(True)})
    )
    if updates.is_empty():
        return 0
    ledger = load_ledger(store, partition).with_columns(**{ADVANCED: pl.lit(False)})
    # The ledger's rows, then the updates, stably sorted by key: each key's last row wins. Sorting
    # once costs a fraction of the memory of deduplicating and joining on the string keys.
    stacked = pl.concat([ledger, updates]).sort("external_id", maintain_order=True)
    id_holder = pl.when(salesforce_id.is_not_null()).then(external_id).forward_fill()
    merged = stacked.with_columns(
        pl.when(salesforce_id.is_null() & (id_holder == external_id))
        .then(salesforce_id.forward_fill())
        .otherwise(salesforce_id)
        .alias("salesforce_id")
    ).filter(external_id.ne_missing(external_id.shift(-1)))
    store.write_parquet(ledger_path(partition), merged.drop(ADVANCED))
    return int(merged[ADVANCED].sum())


STALE_ROW_HASH = 0
"""The hash of a ledger row the org no longer holds as sent: the next staging sees it changed."""


def mark_ledger_rows_stale(store: StateStore, partition: str, external_ids: pl.Series) -> int:
    """Give rows a hash no staged row has, so the next load resends them (drift repair).

    The Salesforce id stays (a deleted record's upsert creates a new one, which the load
    records). Returns the number of rows marked.
    """
    if external_ids.is_empty():
        return 0
    ledger = load_ledger(store, partition)
    stale = pl.col("external_id").is_in(external_ids.implode())
    marked = int(ledger.select(stale.sum()).item())
    if marked:
        hashes = pl.when(stale).then(pl.lit(STALE_ROW_HASH, dtype=pl.UInt64))
        store.write_parquet(
            ledger_path(partition),
            ledger.with_columns(hashes.otherwise(pl.col("row_hash")).alias("row_hash")),
        )
    return marked


def forget_ledger_rows(store: StateStore, partition: str, external_ids: pl.Series) -> int:
    """Drop rows from the partition's ledger (opportunities that moved to another partition)."""
    if external_ids.is_empty():
        return 0
    ledger = load_ledger(store, partition)
    kept = ledger.filter(~pl.col("external_id").is_in(external_ids.implode()))
    if kept.height != ledger.height:
        store.write_parquet(ledger_path(partition), kept)
    return ledger.height - kept.height


def distinct_synced_keys(store: StateStore) -> int:
    """Opportunities in any partition's ledger, each counted once.

    An opportunity that moved partitions may sit in its old ledger until that partition's next
    load confirms that Salesforce re-tagged it; it is still one record in Salesforce. Distinct
    64-bit hashes prove distinct keys for a quarter of the CPU of a set of 2M strings; only when
    a hash repeats (a move in transit, or a collision) are the strings counted. The night's
    summary and its check, one after the other in one process, read the same ten ledgers: the
    count is kept for as long as none of them is replaced.
    """
    versions = (store.url(), *(ledger_version(store, key) for key in PARTITION_KEYS))
    if versions not in _DISTINCT_KEYS:
        _DISTINCT_KEYS.clear()
        keys = pl.concat([ledger_keys(store, key) for key in PARTITION_KEYS])
        unique = keys.len() if keys.hash().n_unique() == keys.len() else keys.n_unique()
        _DISTINCT_KEYS[versions] = unique
    return _DISTINCT_KEYS[versions]


# The last count, by the store and its ledgers' versions (`distinct_synced_keys`).
_DISTINCT_KEYS: dict[tuple[str, ...], int] = {}
