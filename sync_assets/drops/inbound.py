"""Rows as the org holds them, read back by a query job: as the text the sync sends, hashed as the ledger is.

A Bulk query CSV gives every value as text (query job results: numbers as the org stores them,
dates ``yyyy-MM-dd``, datetimes ``yyyy-MM-ddTHH:mm:ss.SSSZ``, ``true``/``false``, null as an
empty value, which CSV cannot tell from an empty string: jsforce#640). Each field is turned
into exactly the text `drops/outbound.py` sends for the same value, so an untouched record
hashes to its ledger's `row_hash` and any edit to another.
"""

import polars as pl

from sync_assets.drops.contract import DropContract
from sync_assets.drops.model import FieldSpec
from sync_assets.drops.outbound import NULL_VALUE, row_hash

# Wide enough for every number field (at most 18 digits, Help 000386249) with any scale.
_WIDE_DECIMAL = pl.Decimal(38, 18)
_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.3fZ"


def _number_text(column: pl.Expr, scale: int) -> pl.Expr:
    """A number at the field's scale, as sent (``50.0`` → ``50``, ``12.3`` → ``12.30``).

    A value with more places than the scale (written by someone else through the API, which
    stores them as sent: Help 000385689) keeps its own text, so it differs from what we sent.
    """
    wide = column.cast(_WIDE_DECIMAL, strict=False)
    at_scale = column.cast(pl.Decimal(38, scale), strict=False)
    exact = at_scale.cast(_WIDE_DECIMAL) == wide
    return pl.when(exact).then(at_scale.cast(pl.String)).otherwise(column)


def normalised_text(spec: FieldSpec, column: pl.Expr) -> pl.Expr:
    """The org's text of one field as `outbound._text` writes the same value."""
    if spec.kind in ("decimal", "integer"):
        return _number_text(column, spec.decimal_places or 0)
    if spec.kind == "datetime":
        parsed = column.str.to_datetime(time_zone="UTC", strict=False)
        return (
            pl.when(parsed.is_null()).then(column).otherwise(parsed.dt.to_string(_DATETIME_FORMAT))
        )
    if spec.kind == "boolean":
        return column.str.to_lowercase()
    return column


def _as_sent(spec: FieldSpec, column: pl.Expr) -> pl.Expr:
    """An empty value as the sync would have sent it: `#N/A` where empty clears the field.

    Where empty means "keep" (or the field is required) nothing was hashed for an empty value,
    so an empty org value stays null.
    """
    text = normalised_text(spec, column)
    return text if spec.required or spec.target.empty == "keep" else text.fill_null(NULL_VALUE)


def org_columns(contract: DropContract) -> list[pl.Expr]:
    """The sent fields of a query page (all text, empty as null) in the form the sync sends them."""
    columns = [
        _as_sent(spec, pl.col(str(spec.target.field))).alias(str(spec.target.field))
        for spec in contract.sent_specs
    ]
    fixed = [*contract.constants, contract.partition_field]
    return [*columns, *(pl.col(field) for field in fixed)]


def org_rows(page: pl.DataFrame, contract: DropContract) -> pl.DataFrame:
    """A query page (all text) with its sent fields normalised and their row hash (``_row_hash``).

    An empty value is null: the CSV quotes both alike, and the org stores no empty text.
    """
    nulls = page.with_columns(pl.all().replace("", None))
    normalised = nulls.with_columns(org_columns(contract))
    return normalised.with_columns(row_hash(normalised, contract.salesforce_fields))
