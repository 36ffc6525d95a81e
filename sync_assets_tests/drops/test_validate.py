import datetime as dt
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from sync_assets.drops.contract import default_contract
from sync_assets.drops.generate import inject_bad_rows
from sync_assets.drops.validate import (
    DUPLICATE_KEY,
    REASON,
    REASON_CODE,
    ROW_INDEX,
    RowValidator,
)
from sync_assets_tests.drops.helpers import as_text, valid_rows


def checked(frame: pl.DataFrame) -> pl.DataFrame:
    validator = RowValidator(frame.schema)
    rows = frame.lazy().with_row_index(ROW_INDEX)
    duplicates = validator.duplicate_rows(rows)
    coded = rows.with_columns(validator.reason_code(duplicates))
    return coded.with_columns(
        pl.when(pl.col(REASON_CODE).is_not_null()).then(validator.reason(duplicates)).alias(REASON)
    ).collect()


def break_row(frame: pl.DataFrame, column: str, value: object) -> pl.DataFrame:
    series = frame[column]
    if isinstance(series.dtype, pl.Decimal):
        series = series.cast(pl.Decimal(38, 2))  # as a drop with a wider decimal would hold
    return frame.with_columns(series.scatter(1, pl.Series([value], dtype=series.dtype)))


# (column, value in a typed Parquet drop, value in a CSV drop, expected reason code)
BROKEN = [
    ("opportunity_key", None, None, "opportunity_key_missing"),
    ("opportunity_key", "", "", "opportunity_key_missing"),
    ("opportunity_key", "K" * 65, "K" * 65, "opportunity_key_too_long"),
    ("account_key", None, None, "account_key_missing"),
    ("account_key", "A" * 65, "A" * 65, "account_key_too_long"),
    ("name", None, None, "name_missing"),
    ("name", "", "", "name_missing"),
    ("name", "N" * 121, "N" * 121, "name_too_long"),
    ("stage", None, None, "stage_missing"),
    ("stage", "Closed Maybe", "Closed Maybe", "stage_not_in_picklist"),
    ("stage", "prospecting", "prospecting", "stage_not_in_picklist"),
    ("close_date", None, None, "close_date_missing"),
    ("close_date", dt.date(1699, 12, 31), "1699-12-31", "close_date_too_small"),
    ("close_date", dt.date(4001, 1, 1), "4001-01-01", "close_date_too_large"),
    ("amount", Decimal("-0.01"), "-0.01", "amount_too_small"),
    ("amount", Decimal("10000000000000000"), "10000000000000000", "amount_too_many_digits"),
    ("probability", -1, "-1", "probability_too_small"),
    ("probability", 101, "101", "probability_too_large"),
    ("lead_source", "L" * 256, "L" * 256, "lead_source_too_long"),
    ("type", "T" * 256, "T" * 256, "type_too_long"),
    ("next_step", "S" * 256, "S" * 256, "next_step_too_long"),
    ("description", "D" * 32_001, "D" * 32_001, "description_too_long"),
    ("updated_at", None, None, "updated_at_missing"),
]

# Cells of a CSV drop that do not parse into the column's type.
UNPARSABLE = [
    ("close_date", "2026-02-30", "close_date_invalid"),
    ("close_date", "26-1-1", "close_date_invalid"),
    ("close_date", "01/02/2026", "close_date_invalid"),
    ("amount", "1e", "amount_invalid"),
    ("amount", "NaN", "amount_invalid"),
    ("amount", "1,000.00", "amount_invalid"),
    ("probability", "ten", "probability_invalid"),
    ("probability", "50.5", "probability_invalid"),
    ("updated_at", "yesterday", "updated_at_invalid"),
]


@pytest.mark.parametrize(("column", "typed", "text", "code"), BROKEN)
def test_each_rule_rejects_in_parquet_drops(
    column: str, typed: object, text: str, code: str
) -> None:
    result = checked(break_row(valid_rows(3), column, typed))
    assert result[REASON_CODE].to_list() == [None, code, None]
    assert column in result[REASON][1]


@pytest.mark.parametrize(("column", "typed", "text", "code"), BROKEN)
def test_each_rule_rejects_in_csv_drops(column: str, typed: object, text: str, code: str) -> None:
    result = checked(break_row(as_text(valid_rows(3)), column, text))
    assert result[REASON_CODE].to_list() == [None, code, None]


@pytest.mark.parametrize(("column", "text", "code"), UNPARSABLE)
def test_unparsable_csv_cells_are_rejected(column: str, text: str, code: str) -> None:
    result = checked(break_row(as_text(valid_rows(3)), column, text))
    assert result[REASON_CODE].to_list() == [None, code, None]
    assert repr(text)[1:-1] in result[REASON][1]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("name", "N" * 120),
        ("name", "🎉" * 120),  # length counts characters, not bytes
        ("amount", Decimal("0.00")),
        ("amount", Decimal("9999999999999999.99")),
        ("amount", None),
        ("probability", 0),
        ("probability", 100),
        ("probability", None),
        ("close_date", dt.date(1700, 1, 1)),
        ("description", "D" * 32_000),
        ("description", ""),
        ("lead_source", None),
    ],
)
def test_boundary_values_pass(column: str, value: object) -> None:
    assert checked(break_row(valid_rows(3), column, value))[REASON_CODE].null_count() == 3


def test_all_broken_rules_are_kept_the_first_is_the_code() -> None:
    frame = break_row(break_row(valid_rows(3), "name", None), "stage", "Nope")
    result = checked(frame)
    assert result[REASON_CODE][1] == "name_missing"
    assert result[REASON][1] == "name is required; stage 'Nope' is not a value of the picklist"


def test_duplicates_latest_updated_at_wins() -> None:
    base = valid_rows(4)
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    frame = base.with_columns(
        pl.Series("opportunity_key", ["K1", "K1", "K1", "K2"]),
        pl.Series(
            "updated_at", [t0, t0 + dt.timedelta(days=2), t0 + dt.timedelta(days=1), t0]
        ).dt.cast_time_unit("us"),
    )
    assert checked(frame)[REASON_CODE].to_list() == [DUPLICATE_KEY, None, DUPLICATE_KEY, None]


def test_duplicates_tie_goes_to_the_later_row_and_missing_keys_are_not_duplicates() -> None:
    frame = valid_rows(4).with_columns(
        pl.Series("opportunity_key", ["K1", "K1", None, None]),
        pl.lit(dt.datetime(2026, 11, 1, tzinfo=dt.UTC)).dt.cast_time_unit("us").alias("updated_at"),
    )
    codes = checked(frame)[REASON_CODE].to_list()
    assert codes == [DUPLICATE_KEY, None, "opportunity_key_missing", "opportunity_key_missing"]


def test_invalid_latest_version_is_not_replaced_by_an_older_one() -> None:
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    frame = valid_rows(2).with_columns(
        pl.Series("opportunity_key", ["K1", "K1"]),
        pl.Series("updated_at", [t0, t0 + dt.timedelta(hours=1)]).dt.cast_time_unit("us"),
        pl.Series("stage", ["Prospecting", "Bogus"]),
    )
    assert checked(frame)[REASON_CODE].to_list() == [DUPLICATE_KEY, "stage_not_in_picklist"]


def test_polars_rules_agree_with_the_pydantic_model() -> None:
    frame = inject_bad_rows(valid_rows(600, accounts=20), np.random.default_rng(3), 0.3)
    result = checked(frame)
    assert result[REASON_CODE].null_count() < frame.height
    for row, code in zip(frame.to_dicts(), result[REASON_CODE], strict=True):
        if code == DUPLICATE_KEY:
            continue  # a rule over rows, not over one record
        try:
            default_contract().model.model_validate(row)
            model_says_valid = True
        except ValidationError:
            model_says_valid = False
        assert model_says_valid == (code is None), (row, code)
