"""Drops written by ordinary exporters sync with exact values (issue 14, "Done when").

A Parquet drop written by polars with Float64 amounts, one written by pyarrow with
`decimal(38,18)` amounts and float probabilities, and a CSV drop with a BOM and CRLF line endings
each run through the real partition job into the sandbox; the values are read back over REST.
The sandbox keeps a number's extra places as sent, as Salesforce's API does (Help 000385689), so
any rounding seen here is the sync's. Values stay within 15 significant digits: REST answers
with JSON numbers (doubles), as Salesforce does.
"""

import io
from decimal import Decimal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sync_assets_tests.drops.helpers import as_text, write_files
from sync_assets_tests.reliability.harness import Night, NightFactory, rows_of_partition

pytestmark = pytest.mark.slow

PARTITION = "0"


def synced(night: Night, drop_id: str, files: dict[str, bytes], rows: int, prefix: str) -> dict:
    write_files(night.landing, drop_id, files, rows)
    run = night.run_partition(drop_id, PARTITION)
    assert run.success, run.errors
    assert run.loaded()["rejected"] == 0 and run.loaded()["failed"] == 0
    records = night.query_all(
        "SELECT External_Id__c, Amount, Probability FROM Opportunity "
        f"WHERE External_Id__c LIKE '{prefix}-%'"
    )
    return {record["External_Id__c"]: record for record in records}


def amounts_of(records: dict, prefix: str) -> list[Decimal | None]:
    return [
        None if records[key]["Amount"] is None else Decimal(str(records[key]["Amount"]))
        for key in sorted(records, key=lambda key: int(key.removeprefix(f"{prefix}-")))
    ]


def test_float64_amounts_written_by_polars(make_night: NightFactory) -> None:
    night = make_night()
    floats = [0.1, 2.675, 1234.5, 0.005, 1.5e7, 19.99, None]
    frame = rows_of_partition(PARTITION, "F64", len(floats)).with_columns(
        pl.Series("amount", floats, dtype=pl.Float64)
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    records = synced(night, "float64", {"part-0.parquet": buffer.getvalue()}, frame.height, "F64")
    assert amounts_of(records, "F64") == [
        Decimal(text) if text else None
        for text in ("0.1", "2.68", "1234.5", "0.01", "15000000", "19.99", None)
    ]


def test_high_scale_decimals_and_float_probabilities_written_by_pyarrow(
    make_night: NightFactory,
) -> None:
    night = make_night()
    amounts = [
        Decimal("12.344999999999999999"),
        Decimal("12.345000000000000000"),
        Decimal("0.000000000000000001"),
        Decimal("987654321098.125"),
    ]
    table = rows_of_partition(PARTITION, "D38", len(amounts)).to_arrow()
    for name, array in {
        "amount": pa.array(amounts, type=pa.decimal128(38, 18)),
        "probability": pa.array([10.0, 50.0, 100.0, None], type=pa.float64()),
    }.items():
        table = table.set_column(table.schema.get_field_index(name), name, array)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    records = synced(night, "decimal38", {"part-0.parquet": buffer.getvalue()}, 4, "D38")
    assert amounts_of(records, "D38") == [
        Decimal("12.34"),
        Decimal("12.35"),
        Decimal("0"),
        Decimal("987654321098.13"),
    ]
    assert [records[f"D38-{i}"]["Probability"] for i in range(4)] == [10, 50, 100, None]


def test_csv_with_bom_and_crlf(make_night: NightFactory) -> None:
    night = make_night()
    texts = ["1.5E7", "12.345", "0.1", "", "7"]
    frame = as_text(rows_of_partition(PARTITION, "CSV", len(texts))).with_columns(
        pl.Series("amount", texts),
        pl.Series("description", ["line one\r\nline two", "x", "", "é", '"q"']),
    )
    data = ("\ufeff" + frame.write_csv(line_terminator="\r\n")).encode("utf-8")
    records = synced(night, "csv-bom-crlf", {"part-0.csv": data}, frame.height, "CSV")
    assert amounts_of(records, "CSV") == [
        Decimal("15000000"),
        Decimal("12.35"),
        Decimal("0.1"),
        None,
        Decimal("7"),
    ]
    descriptions = night.query_all(
        "SELECT Description FROM Opportunity WHERE External_Id__c = 'CSV-0'"
    )
    assert descriptions[0]["Description"] == "line one\r\nline two"
