"""Rows as Salesforce receives them: Bulk-API-CSV-ready text per mapped field, and their row hash."""

import numpy as np
import polars as pl
import polars_hash  # noqa: F401  (registers the `nchash` expression namespace)

from sync_assets.drops.contract import DropContract
from sync_assets.drops.model import FieldSpec
from sync_assets.state.columns import ROW_HASH

NULL_VALUE = "#N/A"
"""Bulk API 2.0 sets a field to null for `#N/A`; an empty cell would leave it unchanged."""


def _text(spec: FieldSpec) -> pl.Expr:
    """A typed value as Bulk API 2.0 CSV reads it (Developer Guide, "Valid Date Format")."""
    column = pl.col(spec.name)
    if spec.target.record_type_ids:
        return column.replace_strict(spec.target.record_type_ids, default=None)
    if spec.kind == "decimal":
        return column.cast(pl.Decimal(38, spec.decimal_places or 0)).cast(pl.String)
    if spec.kind == "datetime":
        return column.dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ")
    if spec.kind == "boolean":
        return pl.when(column).then(pl.lit("true")).when(~column).then(pl.lit("false"))
    # ISO text of a Date is yyyy-MM-dd for the years the model allows (1700–4000).
    return column.cast(pl.String)


def _bulk_text(spec: FieldSpec) -> pl.Expr:
    """The value sent; an empty optional value clears the field (`#N/A`) or keeps it (empty)."""
    text = _text(spec)
    return text if spec.required or spec.target.empty == "keep" else text.fill_null(NULL_VALUE)


def salesforce_columns(contract: DropContract, partition: pl.Expr) -> list[pl.Expr]:
    """The sent fields of valid, typed rows, the contract's constants, and the partition field.

    Every value is a string, or null where the cell is left empty.
    """
    columns = [_bulk_text(spec).alias(str(spec.target.field)) for spec in contract.sent_specs]
    constants = [pl.lit(value).alias(field) for field, value in contract.constants.items()]
    return [*columns, *constants, partition.cast(pl.String).alias(contract.partition_field)]


def key_text(contract: DropContract) -> pl.Expr:
    """The external id of typed rows as sent: the key of the ledger's rows."""
    return _bulk_text(contract.spec(contract.key_column)).alias(contract.key_field)


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
        pl.col(name).nchash.xxh3_64(seed=field_seed(name)).alias(name) for name in names
    )
    folded = np.full(outbound.height, _FNV_OFFSET, dtype=np.uint64)
    for name in names:
        hashes = field_hashes.get_column(name)
        if hashes.null_count() == 0:
            folded ^= hashes.to_numpy()
            folded *= _FNV_PRIME
        else:
            stepped = (folded ^ hashes.fill_null(0).to_numpy()) * _FNV_PRIME
            folded = np.where(hashes.is_not_null().to_numpy(), stepped, folded)
    return pl.Series(ROW_HASH, folded, dtype=pl.UInt64)
