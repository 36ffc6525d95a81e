"""A cache of each partition's row hashes by source row, so that staging converts only rows that changed.

Turning the rows of a drop into Salesforce text and hashing it was half of staging an unchanged
drop, to find the hashes the ledger already holds. A row's hash is a function of its source
cells, the contract (the mapping and the org's metadata) and the code that converts them: each
staging keeps, per partition, every valid row's hash by a hash of its source cells, seeded with
the contract and that code (`source_hashes`). The next staging takes a row's hash from there
without converting it only where it equals the hash the ledger holds for the row's key; any
other row is converted and compared as before.

It is a cache, never a record. A memo that is missing, unreadable, or made under another contract
or version of the conversion only makes staging convert rows again, and an entry whose row hash
is wrong only makes its row converted. A change goes unseen only where a row's new cells hash
like its old ones: 2^-64 a changed row, as for the row hash the ledger compares.
"""

import functools
import hashlib
from pathlib import Path

import polars as pl

from sync_assets.drops import outbound, validate
from sync_assets.drops.contract import DropContract
from sync_assets.state.columns import ROW_HASH
from sync_assets.state.layout import row_hash_memo_path
from sync_assets.storage import StateStore

SOURCE_HASH = "_source_hash"
MEMO_SCHEMA = pl.Schema({SOURCE_HASH: pl.UInt64(), ROW_HASH: pl.UInt64()})


@functools.cache
def _conversion_code() -> bytes:
    """The modules that turn source cells into Salesforce text: a change to them voids memos."""
    return b"".join(Path(str(module.__file__)).read_bytes() for module in (outbound, validate))


def _seed(contract: DropContract) -> int:
    digest = hashlib.blake2b(contract.fingerprint.encode() + _conversion_code(), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


def source_hashes(rows: pl.DataFrame, contract: DropContract) -> pl.Series:
    """Per row, a hash of the source cells its sent fields are made from (UInt64).

    polars' row hash: 0.2 CPU-s for 2M rows, against 0.7 to convert and hash their text; stable
    within a polars version only, which for a cache costs one slower staging after an upgrade.
    """
    columns = [spec.name for spec in contract.sent_specs]
    return rows.select(columns).hash_rows(_seed(contract)).alias(SOURCE_HASH)


def load_memo(state: StateStore, partition: str) -> pl.DataFrame:
    """The partition's memo (`MEMO_SCHEMA`), one row per source hash; empty when there is none.

    Source hashes found twice (a collision) are left out: their rows are converted.
    """
    path = row_hash_memo_path(partition)
    try:
        memo = state.read_parquet(path) if state.exists(path) else None
    except (OSError, pl.exceptions.PolarsError):
        memo = None  # unreadable (a torn copy): staging converts every row
    if memo is None or memo.schema != MEMO_SCHEMA:
        return MEMO_SCHEMA.to_frame()
    return memo.filter(pl.col(SOURCE_HASH).is_unique())


def remembered(memo: pl.DataFrame, sources: pl.Series) -> pl.Series:
    """Per source hash, the row hash the memo holds for it; null where it holds none."""
    if memo.is_empty():
        return pl.repeat(None, sources.len(), dtype=pl.UInt64, eager=True).alias(ROW_HASH)
    return (
        sources.to_frame(SOURCE_HASH)
        .join(memo, on=SOURCE_HASH, how="left", maintain_order="left")
        .get_column(ROW_HASH)
    )


def write_memo(state: StateStore, partition: str, parts: list[pl.DataFrame]) -> None:
    """Replace the partition's memo with `parts` (frames of `MEMO_SCHEMA`), a row group each.

    Written part by part, not concatenated: a copy of a 2M-row partition's memo (32 MB) would
    land on a 20M-row night's largest process at its peak.
    """
    state.write_parquet_parts(
        row_hash_memo_path(partition),
        parts or [MEMO_SCHEMA.to_frame()],
        compression="lz4",
        statistics=False,
    )
