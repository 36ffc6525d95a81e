"""Values read back from the org hash exactly as the sent values did (the drift check's equivalence)."""

import polars as pl
import pytest

from sync_assets.drops.contract import default_contract
from sync_assets.drops.inbound import normalised_text, org_rows
from sync_assets.drops.model import FieldSpec, Target
from sync_assets.drops.outbound import NULL_VALUE, row_hash, salesforce_columns
from sync_assets.state.columns import ROW_HASH
from sync_assets_tests.drops.helpers import valid_rows

CONTRACT = default_contract()


def _sent(n: int = 400) -> pl.DataFrame:
    """Typed source rows as the sync sends them (Bulk CSV text), with their row hash."""
    outbound = valid_rows(n).select(salesforce_columns(CONTRACT, pl.lit("3")))
    return outbound.with_columns(row_hash(outbound, CONTRACT.salesforce_fields))


def _as_the_org_shows(sent: pl.DataFrame) -> pl.DataFrame:
    """The same records as a Bulk query CSV gives them back, read as text.

    `#N/A` was stored as null and comes back empty (query results cannot tell null from empty,
    jsforce#640); numbers come back as the org's shortest text of the stored double (50 → 50.0,
    1234.50 → 1234.5), as the sandbox writes them.
    """
    numbers = [
        pl.col(field).cast(pl.Float64, strict=False).cast(pl.String).alias(field)
        for field in ("Amount", "Probability")
    ]
    return (
        sent.drop(ROW_HASH)
        .with_columns(pl.all().replace(NULL_VALUE, None))
        .with_columns(numbers)
        .with_columns(pl.all().fill_null(""))
    )


def test_untouched_records_hash_to_the_ledger_hash() -> None:
    sent = _sent()
    shown = _as_the_org_shows(sent)
    assert shown["Amount"].str.ends_with(".0").any()  # the test must exercise the number form
    assert (shown["Amount"] == "").any() and (shown["Description"] == "").any()
    assert org_rows(shown, CONTRACT)[ROW_HASH].to_list() == sent[ROW_HASH].to_list()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Amount", "999999.5"),
        ("StageName", "Closed Lost"),
        ("CloseDate", "2030-01-01"),
        ("Description", ""),
        ("Sync_Partition__c", "4"),
    ],
)
def test_one_edited_field_changes_the_hash(field: str, value: str) -> None:
    sent = _sent(50).filter(pl.col("Description") != NULL_VALUE).head(1)
    edited = _as_the_org_shows(sent).with_columns(pl.lit(value).alias(field))
    assert org_rows(edited, CONTRACT)[ROW_HASH].item() != sent[ROW_HASH].item()


def test_more_decimal_places_than_the_scale_are_not_rounded_away() -> None:
    # The API stores extra places as sent (Help 000385689): 12.345 is not the 12.34 we sent.
    amount = next(spec for spec in CONTRACT.sent_specs if spec.target.field == "Amount")
    frame = pl.DataFrame({"a": ["12.3", "12.345", "50.0", "1.5E7", None]})
    assert frame.select(normalised_text(amount, pl.col("a")))["a"].to_list() == [
        "12.30",
        "12.345",
        "50.00",
        "15000000.00",
        None,
    ]


def test_datetimes_and_booleans_as_sent() -> None:
    stamp = FieldSpec(name="s", kind="datetime", required=False, target=Target(field="S__c"))
    flag = FieldSpec(name="f", kind="boolean", required=False, target=Target(field="F__c"))
    frame = pl.DataFrame(
        {"s": ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.120Z"], "f": ["True", "false"]}
    )
    assert frame.select(normalised_text(stamp, pl.col("s")))["s"].to_list() == [
        "2026-01-02T03:04:05.000Z",
        "2026-01-02T03:04:05.120Z",
    ]
    assert frame.select(normalised_text(flag, pl.col("f")))["f"].to_list() == ["true", "false"]
