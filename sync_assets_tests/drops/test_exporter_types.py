"""Drops as ordinary exporters write them (polars, pyarrow, pandas-style CSV), read and validated.

Each case writes a real file, opens it with the reader and runs the validator, so the reader's
choice (cast or text) and the validator's parsing are tested together, for Parquet and CSV.
"""

import datetime as dt
import io
from decimal import Decimal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sync_assets.drops.contract import DropContract, build_contract, default_contract
from sync_assets.drops.mapping import CsvOptions, load_mapping
from sync_assets.drops.reader import DropError, open_drop
from sync_assets.drops.staging import stage_drop
from sync_assets.drops.standard_org import standard_org
from sync_assets.drops.validate import REASON_CODE, ROW_INDEX, RowValidator
from sync_assets.storage import StateStore
from sync_assets_tests.drops.helpers import as_text, valid_rows, write_files

ROWS = 3


@pytest.fixture
def landing(tmp_path) -> StateStore:
    return StateStore(tmp_path / "landing")


def parquet(frame: pl.DataFrame | pa.Table) -> bytes:
    buffer = io.BytesIO()
    if isinstance(frame, pa.Table):
        pq.write_table(frame, buffer)
    else:
        frame.write_parquet(buffer)
    return buffer.getvalue()


def built_in_mapping_with(**changes: object) -> DropContract:
    """The built-in mapping with some settings changed, in an org as Salesforce ships it."""
    return build_contract(load_mapping().model_copy(update=changes), standard_org())


def read_back(
    landing: StateStore, files: dict[str, bytes], contract: DropContract | None = None
) -> pl.DataFrame:
    """The rows of a one-off drop in the contract types, with each row's reason code."""
    contract = contract or default_contract()
    drop_id = f"d{len(landing.list_names())}"
    write_files(landing, drop_id, files, _row_count(files, contract.csv_delimiter))
    scanned = open_drop(landing, drop_id, contract).scan(ROW_INDEX)
    validator = RowValidator(scanned.collect_schema(), contract)
    return scanned.select(
        *validator.typed_columns(), validator.reason_code(pl.Series(ROW_INDEX, [], pl.UInt32))
    ).collect()


def _row_count(files: dict[str, bytes], delimiter: str) -> int:
    return sum(
        pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
        if name.endswith(".parquet")
        else pl.read_csv(io.BytesIO(data), infer_schema=False, separator=delimiter).height
        for name, data in files.items()
    )


def with_column(name: str, values: pl.Series) -> pl.DataFrame:
    return valid_rows(values.len()).with_columns(values.alias(name))


# ---- money and numbers ---------------------------------------------------------------------


def test_float64_amounts_become_their_shortest_decimal_rounded_half_up(
    landing: StateStore,
) -> None:
    amounts = pl.Series([0.1, 2.675, 1234.5, 0.005, 1.5e7, 99.994999], dtype=pl.Float64)
    result = read_back(landing, {"p.parquet": parquet(with_column("amount", amounts))})
    assert result.schema["amount"] == pl.Decimal(38, 2)
    # 2.675 is 2.67499999999999982236431605997495353221893310546875 in binary: its shortest text
    # is "2.675", which rounds half-up to 2.68 (a cast from the binary value would give 2.67).
    assert result["amount"].to_list() == [
        Decimal(text) for text in ("0.10", "2.68", "1234.50", "0.01", "15000000.00", "99.99")
    ]
    assert result[REASON_CODE].null_count() == result.height


def test_float32_amounts_use_their_own_shortest_text(landing: StateStore) -> None:
    amounts = pl.Series([0.1, 3.3, 1.005], dtype=pl.Float32)
    result = read_back(landing, {"p.parquet": parquet(with_column("amount", amounts))})
    assert result["amount"].to_list() == [Decimal("0.10"), Decimal("3.30"), Decimal("1.01")]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (float("nan"), "amount_invalid"),
        (float("inf"), "amount_invalid"),
        (float("-inf"), "amount_invalid"),
        (1e17, "amount_too_many_digits"),
        (1e300, "amount_too_many_digits"),
        (9_999_999_999_999_999.995, "amount_too_many_digits"),  # rounds to 10^16
    ],
)
def test_floats_that_are_no_amount_are_row_rejects(
    landing: StateStore, value: float, code: str
) -> None:
    amounts = pl.Series([1.0, value, 2.0], dtype=pl.Float64)
    result = read_back(landing, {"p.parquet": parquet(with_column("amount", amounts))})
    assert result[REASON_CODE].to_list() == [None, code, None]


def test_high_scale_decimals_round_half_up_to_the_field(landing: StateStore) -> None:
    amounts = pa.array(
        [
            Decimal("12.344999999999999999"),
            Decimal("12.345000000000000000"),
            Decimal("99999999999999.995"),
            Decimal("12345678901234567890.5"),
        ],
        type=pa.decimal128(38, 18),
    )
    table = valid_rows(4).to_arrow()
    table = table.set_column(table.schema.get_field_index("amount"), "amount", amounts)
    result = read_back(landing, {"p.parquet": parquet(table)})
    assert result["amount"].to_list()[:3] == [
        Decimal("12.34"),
        Decimal("12.35"),
        Decimal("100000000000000.00"),
    ]
    assert result[REASON_CODE].to_list() == [None, None, None, "amount_too_many_digits"]


def test_decimals_that_fit_are_cast_exactly(landing: StateStore) -> None:
    amounts = pl.Series([Decimal("1.5"), None, Decimal("-0.0")], dtype=pl.Decimal(10, 1))
    frame = with_column("amount", amounts.abs())
    result = read_back(landing, {"p.parquet": parquet(frame)})
    assert result["amount"].to_list() == [Decimal("1.50"), None, Decimal("0.00")]


@pytest.mark.parametrize("dtype", [pl.Int8, pl.UInt16, pl.Int64, pl.UInt64])
def test_integers_of_any_width_are_amounts_and_probabilities(
    landing: StateStore, dtype: pl.DataType
) -> None:
    frame = valid_rows(2).with_columns(
        pl.Series("amount", [7, 100], dtype=dtype), pl.Series("probability", [0, 100], dtype=dtype)
    )
    result = read_back(landing, {"p.parquet": parquet(frame)})
    assert result["amount"].to_list() == [Decimal("7.00"), Decimal("100.00")]
    assert result["probability"].to_list() == [0, 100]


def test_rounding_can_be_refused(landing: StateStore) -> None:
    amounts = pl.Series([0.1, 2.675, 1234.5], dtype=pl.Float64)
    result = read_back(
        landing,
        {"p.parquet": parquet(with_column("amount", amounts))},
        built_in_mapping_with(rounding="reject"),
    )
    assert result[REASON_CODE].to_list() == [None, "amount_too_many_decimals", None]


def test_probabilities_from_floats_and_decimals_must_be_integral(landing: StateStore) -> None:
    frame = valid_rows(4).with_columns(
        pl.Series("probability", [50.0, 50.5, None, 1e3], dtype=pl.Float64)
    )
    result = read_back(landing, {"p.parquet": parquet(frame)})
    assert result["probability"].to_list()[:3] == [50, None, None]
    assert result[REASON_CODE].to_list() == [
        None,
        "probability_invalid",
        None,
        "probability_too_large",
    ]
    decimals = valid_rows(2).with_columns(
        pl.Series("probability", [Decimal("75.000"), Decimal("75.250")], dtype=pl.Decimal(9, 3))
    )
    result = read_back(landing, {"p.parquet": parquet(decimals)})
    assert result["probability"].to_list() == [75, None]
    assert result[REASON_CODE].to_list() == [None, "probability_invalid"]


# ---- dates and timestamps ------------------------------------------------------------------


def test_dates_from_timestamps_only_at_midnight_in_their_own_zone(landing: StateStore) -> None:
    # 2026-11-28 00:00 in Paris is 2026-11-27 23:00 UTC: the date is the one written, never the
    # UTC one; a timestamp with a time of day is refused rather than cut to a day.
    paris = pl.Series(
        [dt.datetime(2026, 11, 28), dt.datetime(2026, 11, 28, 13, 0)], dtype=pl.Datetime("ms")
    ).dt.replace_time_zone("Europe/Paris")
    result = read_back(landing, {"p.parquet": parquet(with_column("close_date", paris))})
    assert result["close_date"].to_list() == [dt.date(2026, 11, 28), None]
    assert result[REASON_CODE].to_list() == [None, "close_date_invalid"]
    naive = pl.Series([dt.datetime(2026, 1, 31)], dtype=pl.Datetime("ns"))
    result = read_back(landing, {"p.parquet": parquet(with_column("close_date", naive))})
    assert result["close_date"].to_list() == [dt.date(2026, 1, 31)]


@pytest.mark.parametrize(
    "dtype", [pl.Datetime("ns"), pl.Datetime("ms", "UTC"), pl.Datetime("us", "America/New_York")]
)
def test_timestamps_with_or_without_a_zone_order_the_rows(
    landing: StateStore, dtype: pl.DataType
) -> None:
    stamps = pl.Series([dt.datetime(2026, 11, 1, 12), dt.datetime(2026, 11, 2, 12)]).cast(dtype)
    frame = with_column("updated_at", stamps).with_columns(pl.lit("K1").alias("opportunity_key"))
    result = read_back(landing, {"p.parquet": parquet(frame)})
    assert result.schema["updated_at"] == pl.Datetime("us", "UTC")
    assert result["updated_at"].is_sorted()


# ---- strings and columns -------------------------------------------------------------------


def test_strings_from_categorical_enum_large_and_view_strings(landing: StateStore) -> None:
    rows = valid_rows(2)
    table = rows.to_arrow()
    kinds = {
        "name": pa.array(rows["name"].to_list(), type=pa.large_string()),
        "lead_source": pa.array(rows["lead_source"].to_list(), type=pa.string_view()),
        "type": pa.array(rows["type"].to_list()).dictionary_encode(),
    }
    for column, array in kinds.items():
        table = table.set_column(table.schema.get_field_index(column), column, array)
    enum = pl.Enum(sorted({*rows["stage"].to_list()}))
    table = table.set_column(
        table.schema.get_field_index("stage"), "stage", rows["stage"].cast(enum).to_arrow()
    )
    result = read_back(landing, {"p.parquet": parquet(table)})
    assert result.select(*kinds, "stage").equals(rows.select(*kinds, "stage"))


def test_column_names_match_whatever_their_case_and_extras_are_listed(
    landing: StateStore,
) -> None:
    rows = valid_rows(3)
    shouting = rows.rename({"amount": "AMOUNT", "close_date": "Close_Date"}).with_columns(
        pl.lit("x").alias("exported_by")
    )
    write_files(landing, "d", {"p.parquet": parquet(shouting)}, 3)
    drop = open_drop(landing, "d")
    assert drop.extra_columns == ["exported_by"]
    assert drop.scan().collect().equals(rows)


def test_a_missing_optional_column_is_all_null(landing: StateStore) -> None:
    write_files(landing, "d", {"p.parquet": parquet(valid_rows(3).drop("description"))}, 3)
    drop = open_drop(landing, "d")
    assert drop.missing_columns == ["description"]
    assert drop.scan().collect()["description"].null_count() == 3


def test_a_missing_required_column_refuses_the_drop_naming_it(landing: StateStore) -> None:
    write_files(landing, "d", {"p.parquet": parquet(valid_rows(3).drop("close_date"))}, 3)
    with pytest.raises(DropError, match="column 'close_date': missing column"):
        open_drop(landing, "d")


def test_two_columns_differing_only_in_case_refuse_the_drop(landing: StateStore) -> None:
    rows = valid_rows(3).with_columns(pl.col("name").alias("NAME"))
    write_files(landing, "d", {"p.parquet": parquet(rows)}, 3)
    with pytest.raises(DropError, match="'name' and 'NAME' differ only in case"):
        open_drop(landing, "d")


def test_files_of_one_drop_may_use_different_types(landing: StateStore) -> None:
    exact = valid_rows(2)
    floats = valid_rows(2).with_columns(pl.Series("amount", [0.1, 2.675]))
    result = read_back(landing, {"a.parquet": parquet(exact), "b.parquet": parquet(floats)})
    assert result["amount"].to_list()[2:] == [Decimal("0.10"), Decimal("2.68")]
    assert result["amount"].to_list()[:2] == exact["amount"].to_list()


# ---- CSV -----------------------------------------------------------------------------------


def csv_text(frame: pl.DataFrame, separator: str = ",", crlf: bool = False) -> str:
    return as_text(frame).write_csv(separator=separator, line_terminator="\r\n" if crlf else "\n")


def test_csv_with_bom_crlf_and_quoted_newlines(landing: StateStore) -> None:
    rows = valid_rows(3).with_columns(
        pl.Series("description", ["two\r\nlines", 'a "quoted", comma', None])
    )
    data = ("\ufeff" + csv_text(rows, crlf=True)).encode("utf-8")
    result = read_back(landing, {"p.csv": data})
    assert result[REASON_CODE].null_count() == 3
    assert result.drop(REASON_CODE).equals(rows)


def test_csv_with_another_delimiter(landing: StateStore) -> None:
    rows = valid_rows(3)
    semicolons = built_in_mapping_with(csv=CsvOptions(delimiter=";"))
    result = read_back(landing, {"p.csv": csv_text(rows, ";").encode()}, semicolons)
    assert result.drop(REASON_CODE).equals(rows)


@pytest.mark.parametrize(
    ("column", "text", "expected"),
    [
        ("amount", "1.5E7", Decimal("15000000.00")),
        ("amount", "2.5e-1", Decimal("0.25")),
        ("amount", "1e+2", Decimal("100.00")),
        ("amount", "12.345", Decimal("12.35")),
        ("amount", "0.1249999999999999999999999999", Decimal("0.12")),
        ("amount", ".5", Decimal("0.50")),
        ("probability", "50.0", 50),
        ("probability", "5E1", 50),
        ("close_date", "2026-11-28T00:00:00.000Z", dt.date(2026, 11, 28)),
        ("close_date", "2026-11-28 00:00+01:00", dt.date(2026, 11, 28)),
    ],
)
def test_csv_numbers_in_plain_or_scientific_notation_and_midnight_dates(
    landing: StateStore, column: str, text: str, expected: object
) -> None:
    rows = as_text(valid_rows(1)).with_columns(pl.lit(text).alias(column))
    result = read_back(landing, {"p.csv": rows.write_csv().encode()})
    assert result[REASON_CODE].to_list() == [None]
    assert result[column].to_list() == [expected]


@pytest.mark.parametrize(
    ("column", "text", "code"),
    [
        ("amount", "NaN", "amount_invalid"),
        ("amount", "inf", "amount_invalid"),
        ("amount", "1e17", "amount_too_many_digits"),
        ("amount", "1" * 40, "amount_too_many_digits"),
        ("probability", "50.5", "probability_invalid"),
        ("close_date", "2026-11-28T10:00:00Z", "close_date_invalid"),
    ],
)
def test_csv_cells_that_do_not_fit_are_row_rejects(
    landing: StateStore, column: str, text: str, code: str
) -> None:
    rows = as_text(valid_rows(1)).with_columns(pl.lit(text).alias(column))
    result = read_back(landing, {"p.csv": rows.write_csv().encode()})
    assert result[REASON_CODE].to_list() == [code]


def test_rounded_values_are_what_is_staged_to_send(landing: StateStore, tmp_path) -> None:
    # Staging passes string columns with no empty cell through untouched; a number read as text
    # must still be parsed and rounded there, not cast (a cast rounds half-to-even).
    amounts = pl.Series([0.005, 2.675, 12.345], dtype=pl.Float64)
    write_files(landing, "d", {"p.parquet": parquet(with_column("amount", amounts))}, 3)
    state = StateStore(tmp_path / "state")
    staged = stage_drop(landing, state, "d")
    sent = pl.concat(state.read_parquet(part.to_send) for part in staged.values())
    assert sorted(sent["Amount"].to_list()) == ["0.01", "12.35", "2.68"]
