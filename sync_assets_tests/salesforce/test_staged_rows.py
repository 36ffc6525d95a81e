from pathlib import Path

import polars as pl
import pytest

from sync_assets.salesforce.planning import csv_header_bytes, csv_row_bytes, send_columns
from sync_assets.salesforce.staged_rows import CSV_BYTES, StagedRows
from sync_assets.state.columns import POSITION

ACCOUNT = "Account.External_Id__c"


@pytest.fixture
def frame() -> pl.DataFrame:
    count = 1_000
    return pl.DataFrame(
        {
            "External_Id__c": [f"OPP-{n:05d}" for n in range(count)],
            ACCOUNT: [f"ACC-{n // 7:04d}" for n in range(count)],
            "Name": [
                f'Deal "{n}", with a comma' if n % 3 == 0 else f"Deal {n}" for n in range(count)
            ],
            "_row_hash": pl.Series(range(count), dtype=pl.UInt64),
        }
    )


@pytest.fixture
def staged(frame: pl.DataFrame, tmp_path: Path) -> StagedRows:
    path = tmp_path / "to_send.parquet"
    frame.write_parquet(path, row_group_size=128)  # jobs cross row groups
    return StagedRows(pl.scan_parquet(path), ACCOUNT)


def test_keys_and_sizes_are_held_not_the_fields(staged: StagedRows, frame: pl.DataFrame) -> None:
    assert staged.height == frame.height
    assert staged.keys.columns == [POSITION, "External_Id__c", "_row_hash", ACCOUNT, CSV_BYTES]
    assert staged.keys[POSITION].to_list() == list(range(frame.height))
    assert staged.keys[CSV_BYTES].to_list() == csv_row_bytes(frame).to_list()
    assert staged.header_bytes == csv_header_bytes(send_columns(frame))


def test_a_job_reads_exactly_its_rows(staged: StagedRows, frame: pl.DataFrame) -> None:
    contiguous = pl.Series(range(100, 400), dtype=pl.UInt32)
    assert staged.fields(contiguous).equals(frame.slice(100, 300))
    scattered = pl.Series([3, 4, 250, 251, 600, 999], dtype=pl.UInt32)
    assert staged.fields(scattered).equals(frame[scattered.to_list()])


def test_failed_rows_are_found_with_their_errors(staged: StagedRows, frame: pl.DataFrame) -> None:
    failures = (
        frame[[900, 5]]
        .select("External_Id__c", "_row_hash")
        .with_columns(pl.lit("FIELD_CUSTOM_VALIDATION_EXCEPTION").alias("error_code"))
    )
    found = staged.matching(failures)
    assert found["External_Id__c"].to_list() == ["OPP-00005", "OPP-00900"]  # staged order
    assert found.columns == [*frame.columns, "error_code"]
    none = staged.matching(failures.clear())
    assert none.is_empty() and none.columns == found.columns


def test_rows_without_their_keys_are_refused(frame: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="_row_hash"):
        StagedRows(frame.drop("_row_hash").lazy(), ACCOUNT)
