"""The per-partition ledger: what Salesforce confirmed holding, as a Parquet file under the state dir."""

import polars as pl

from sync_assets.drops.shards import PARTITION_KEYS, partition_label
from sync_assets.storage import StateStore

LEDGER_SCHEMA = pl.Schema(
    {
        "external_id": pl.String(),
        "row_hash": pl.UInt64(),
        "salesforce_id": pl.String(),
        "drop_id": pl.String(),
    }
)
CONFIRMED_COLUMNS = ("external_id", "row_hash", "salesforce_id")


def ledger_path(partition: str) -> str:
    """Where a partition's ledger lives, relative to the state dir."""
    return f"ledger/partition={partition_label(partition)}.parquet"


def ledger_version(store: StateStore, partition: str) -> str:
    """A key that changes whenever the partition's ledger is rewritten ("" while there is none)."""
    return store.version(ledger_path(partition))


def load_ledger(store: StateStore, partition: str) -> pl.DataFrame:
    """The partition's ledger; an empty frame with the ledger schema when nothing was synced yet."""
    path = ledger_path(partition)
    if not store.exists(path):
        return LEDGER_SCHEMA.to_frame()
    return store.read_parquet(path).select(
        pl.col(name).cast(dtype) for name, dtype in LEDGER_SCHEMA.items()
    )


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
    updates = (
        confirmed.select(pl.col(name).cast(LEDGER_SCHEMA[name]) for name in CONFIRMED_COLUMNS)
        .filter(pl.col("external_id").is_not_null())
        .unique("external_id", keep="last", maintain_order=True)
    )
    if updates.is_empty():
        return 0
    ledger = load_ledger(store, partition)
    advanced = updates.join(
        ledger.select("external_id", pl.col("salesforce_id").alias("known_id")),
        on="external_id",
        how="left",
    ).select(
        "external_id",
        "row_hash",
        pl.coalesce("salesforce_id", "known_id").alias("salesforce_id"),
        pl.lit(drop_id, dtype=pl.String).alias("drop_id"),
    )
    kept = ledger.join(updates.select("external_id"), on="external_id", how="anti")
    store.write_parquet(ledger_path(partition), pl.concat([kept, advanced]).sort("external_id"))
    return advanced.height


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
    load confirms that Salesforce re-tagged it; it is still one record in Salesforce.
    """
    keys = [load_ledger(store, key).get_column("external_id") for key in PARTITION_KEYS]
    return pl.concat(keys).n_unique()
