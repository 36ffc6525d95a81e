"""Rows as Salesforce receives them: Bulk-API-CSV-ready text per mapped field, and their row hash."""

import numpy as np
import polars as pl
import polars_hash  # noqa: F401  (registers the `nchash` expression namespace)

from sync_assets.drops.model import FieldMapping, FieldSpec, field_specs
from sync_assets.state.columns import ROW_HASH

NULL_VALUE = "#N/A"
"""Bulk API 2.0 sets a field to null for `#N/A`; an empty cell would leave it unchanged."""


def _bulk_text(spec: FieldSpec) -> pl.Expr:
    column = pl.col(spec.name)
    if spec.kind == "date":
        # ISO text of a Date is yyyy-MM-dd for the years the model allows (1700–4000).
        text = column.cast(pl.String)
    elif spec.kind == "decimal":
        text = column.cast(pl.Decimal(38, spec.decimal_places or 0)).cast(pl.String)
    else:
        text = column.cast(pl.String)
    return text if spec.required else text.fill_null(NULL_VALUE)


def salesforce_columns(mapping: FieldMapping, partition: pl.Expr) -> list[pl.Expr]:
    """The mapped fields of valid, typed rows, every value a string; plus the partition field."""
    specs = {spec.name: spec for spec in field_specs()}
    columns = [
        _bulk_text(specs[source]).alias(target) for source, target in mapping.columns.items()
    ]
    return [*columns, partition.cast(pl.String).alias(mapping.partition_field)]


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def field_seed(field: str) -> int:
    """The XXH3 seed of a field: XXH3-64 of its name, so renaming a field changes every hash."""
    return int(pl.select(pl.lit(field).nchash.xxh3_64()).item())


def row_hash(outbound: pl.DataFrame, fields: list[str]) -> pl.Series:
    """A stable 64-bit fingerprint (UInt64) of what Salesforce receives for each row.

    Each field's text is hashed alone with XXH3-64 (seeded with `field_seed`), so no value can
    imitate a field boundary; the field hashes, in field-name order, are folded FNV-1a style
    (h = (h xor field_hash) × FNV prime, mod 2^64). XXH3 and FNV are fixed published
    algorithms: the same answer in every process, machine and library version (unlike
    `polars.Expr.hash`). A change of any one field always changes the fold.
    """
    names = sorted(fields)
    field_hashes = outbound.select(
        pl.col(name).nchash.xxh3_64(seed=field_seed(name)).fill_null(0).alias(name)
        for name in names
    )
    folded = np.full(outbound.height, _FNV_OFFSET, dtype=np.uint64)
    for name in names:
        folded ^= field_hashes.get_column(name).to_numpy()
        folded *= _FNV_PRIME
    return pl.Series(ROW_HASH, folded, dtype=pl.UInt64)
