"""Where a load's rows come from: their keys and sizes held in memory, their fields read per job."""

import polars as pl

from sync_assets.salesforce.planning import csv_header_bytes, csv_row_bytes_expr, send_columns
from sync_assets.state.columns import EXTERNAL_ID_FIELD, POSITION, ROW_HASH

CSV_BYTES = "_csv_bytes"


class StagedRows:
    """A partition's staged rows (Salesforce fields as text, `_row_hash`, sorted by account).

    Planning and bookkeeping need only each row's keys, account and CSV size: those are held (a
    few dozen bytes a row). Each job reads its own rows' fields from the scan when it is sent, so
    the memory of a load does not grow with the width of its rows.
    """

    def __init__(self, scan: pl.LazyFrame, account_column: str) -> None:
        names = scan.collect_schema().names()
        missing = {EXTERNAL_ID_FIELD, ROW_HASH, account_column} - set(names)
        if missing:
            raise ValueError(f"Staged rows lack the column(s) {sorted(missing)}.")
        columns = send_columns(scan)
        self._scan = scan
        self.header_bytes = csv_header_bytes(columns)
        self.keys = (
            scan.select(
                EXTERNAL_ID_FIELD,
                ROW_HASH,
                account_column,
                csv_row_bytes_expr(columns).alias(CSV_BYTES),
            )
            .with_row_index(POSITION)
            .collect(engine="streaming")
        )

    @property
    def height(self) -> int:
        return self.keys.height

    def fields(self, positions: pl.Series) -> pl.DataFrame:
        """Every column of the rows at `positions` (ascending, not empty)."""
        first, last = int(positions[0]), int(positions[-1])
        span = self._scan.slice(first, last - first + 1)
        if last - first + 1 == positions.len():
            return span.collect()
        # Resends are scattered: the span is streamed and only their rows are kept.
        return (
            span.with_row_index(POSITION, offset=first)
            .filter(pl.col(POSITION).is_in(positions.implode()))
            .drop(POSITION)
            .collect(engine="streaming")
        )

    def matching(self, keys: pl.DataFrame) -> pl.DataFrame:
        """The staged rows whose (external id, row hash) are in `keys`, with `keys`' other columns."""
        source = self._scan if keys.height else self._scan.head(0)
        return source.join(
            keys.lazy(), on=[EXTERNAL_ID_FIELD, ROW_HASH], how="inner", maintain_order="left"
        ).collect(engine="streaming")
