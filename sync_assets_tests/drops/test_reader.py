import polars as pl
import pytest

from sync_assets.drops.reader import MANIFEST_NAME, DropError, list_complete_drops, open_drop
from sync_assets.storage import StateStore
from sync_assets_tests.drops.helpers import as_text, valid_rows, write_drop


@pytest.fixture
def landing(tmp_path) -> StateStore:
    return StateStore(tmp_path / "landing")


def refusal(landing: StateStore, drop_id: str = "d") -> DropError:
    with pytest.raises(DropError) as caught:
        open_drop(landing, drop_id)
    assert caught.value.drop_id == drop_id
    assert f"drop {drop_id!r}" in str(caught.value)
    return caught.value


def test_parquet_drop_reads_in_contract_order(landing: StateStore) -> None:
    rows = valid_rows(30)
    write_drop(landing, "d", [rows[:10], rows[10:]])
    drop = open_drop(landing, "d")
    assert drop.file_format == "parquet"
    assert drop.scan().collect().equals(rows)


def test_csv_drop_reads_as_text(landing: StateStore) -> None:
    rows = as_text(valid_rows(30))
    write_drop(landing, "d", [rows[:10], rows[10:]], file_format="csv")
    drop = open_drop(landing, "d")
    assert drop.file_format == "csv"
    assert drop.scan().collect().equals(rows)


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_a_row_index_numbers_the_rows_across_files(landing: StateStore, file_format: str) -> None:
    rows = valid_rows(30)
    parts = [rows[:7], rows[7:8], rows[8:]]
    write_drop(
        landing,
        "d",
        parts if file_format == "parquet" else [as_text(p) for p in parts],
        file_format=file_format,
    )
    frame = open_drop(landing, "d").scan(row_index="_row").collect()
    assert frame.columns[0] == "_row"
    assert frame["_row"].to_list() == list(range(30))
    assert frame["opportunity_key"].equals(rows["opportunity_key"])
    # Filtering before collecting keeps each row's position in the drop.
    late = open_drop(landing, "d").scan(row_index="_row").filter(pl.col("_row") >= 25).collect()
    assert late["opportunity_key"].equals(rows["opportunity_key"][25:])


def test_compatible_parquet_types_are_accepted(landing: StateStore) -> None:
    rows = valid_rows(5).with_columns(
        pl.col("amount").cast(pl.Decimal(10, 1)).cast(pl.Decimal(10, 1)),
        pl.col("probability").cast(pl.Int8),
        pl.col("stage").cast(pl.Categorical),
        pl.col("updated_at").dt.replace_time_zone(None).dt.cast_time_unit("ms"),
        extra=pl.lit("ignored"),
    )
    write_drop(landing, "d", [rows])
    frame = open_drop(landing, "d").scan().collect()
    assert frame.schema["amount"] == pl.Decimal(38, 2)
    assert frame.schema["updated_at"] == pl.Datetime("us", "UTC")
    assert "extra" not in frame.columns


def test_no_manifest_means_incomplete(landing: StateStore) -> None:
    landing.write_parquet("d/part-00000.parquet", valid_rows(3))
    error = refusal(landing)
    assert error.file == MANIFEST_NAME and "incomplete" in error.problem
    assert list_complete_drops(landing) == []


def test_list_complete_drops(landing: StateStore) -> None:
    write_drop(landing, "2026-11-27", [valid_rows(3)])
    write_drop(landing, "2026-11-28", [valid_rows(3)])
    landing.write_parquet("2026-11-29/part-00000.parquet", valid_rows(3))
    assert list_complete_drops(landing) == ["2026-11-27", "2026-11-28"]


def test_row_count_mismatch(landing: StateStore) -> None:
    write_drop(landing, "d", [valid_rows(5)], row_count=6)
    error = refusal(landing)
    assert "5 rows" in error.problem and "6" in error.problem


def test_manifest_of_another_drop(landing: StateStore) -> None:
    write_drop(landing, "other", [valid_rows(3)])
    landing.write_bytes(f"d/{MANIFEST_NAME}", landing.read_bytes(f"other/{MANIFEST_NAME}"))
    assert "names drop 'other'" in refusal(landing).problem


def test_manifest_that_is_not_json(landing: StateStore) -> None:
    landing.write_bytes(f"d/{MANIFEST_NAME}", b"{not json")
    assert "invalid manifest" in refusal(landing).problem


def test_listed_file_missing(landing: StateStore) -> None:
    write_drop(landing, "d", [valid_rows(3), valid_rows(3)])
    landing.delete("d/part-00001.parquet")
    assert refusal(landing).file == "part-00001.parquet"


def test_truncated_parquet(landing: StateStore) -> None:
    write_drop(landing, "d", [valid_rows(20), valid_rows(20)])
    whole = landing.read_bytes("d/part-00001.parquet")
    landing.write_bytes("d/part-00001.parquet", whole[: len(whole) // 2])
    error = refusal(landing)
    assert error.file == "part-00001.parquet" and "unreadable Parquet" in error.problem


def test_missing_column(landing: StateStore) -> None:
    write_drop(landing, "d", [valid_rows(3), valid_rows(3).drop("stage")])
    error = refusal(landing)
    assert (error.file, error.column, error.problem) == (
        "part-00001.parquet",
        "stage",
        "missing column",
    )
    assert str(error) == "drop 'd', file 'part-00001.parquet', column 'stage': missing column"


@pytest.mark.parametrize(
    ("column", "wrong"),
    [
        ("amount", pl.String),
        ("amount", pl.Boolean),
        ("close_date", pl.String),
        ("probability", pl.String),
        ("name", pl.Int64),
        ("updated_at", pl.Date),
    ],
)
def test_wrong_type(landing: StateStore, column: str, wrong: pl.DataType) -> None:
    rows = valid_rows(3)
    if wrong == pl.Int64:
        rows = rows.with_columns(pl.lit(1).alias(column))
    else:
        rows = rows.with_columns(pl.col(column).cast(wrong))
    write_drop(landing, "d", [rows])
    error = refusal(landing)
    assert (error.file, error.column) == ("part-00000.parquet", column)
    assert "wrong type" in error.problem


def test_csv_with_a_stray_quote(landing: StateStore) -> None:
    rows = as_text(valid_rows(10))
    write_drop(landing, "d", [rows], file_format="csv")
    text = landing.read_bytes("d/part-00000.csv").decode()
    lines = text.split("\n")
    lines[3] = lines[3].replace(",", ',"', 1)  # an opening quote that never closes
    landing.write_bytes("d/part-00000.csv", "\n".join(lines).encode())
    error = refusal(landing)
    assert error.file == "part-00000.csv" and "unreadable CSV" in error.problem


def test_csv_in_the_wrong_encoding(landing: StateStore) -> None:
    rows = as_text(valid_rows(3)).with_columns(pl.lit("Müller – Größe").alias("name"))
    write_drop(landing, "d", [rows], file_format="csv")
    text = landing.read_bytes("d/part-00000.csv").decode()
    landing.write_bytes("d/part-00000.csv", text.encode("latin-1", errors="replace"))
    error = refusal(landing)
    assert error.file == "part-00000.csv" and "unreadable CSV" in error.problem


def test_csv_missing_column(landing: StateStore) -> None:
    write_drop(landing, "d", [as_text(valid_rows(3)).drop("close_date")], file_format="csv")
    error = refusal(landing)
    assert (error.file, error.column) == ("part-00000.csv", "close_date")


def test_empty_csv_file(landing: StateStore) -> None:
    write_drop(landing, "d", [as_text(valid_rows(3))], file_format="csv")
    landing.write_bytes("d/part-00000.csv", b"")
    assert refusal(landing).file == "part-00000.csv"


def test_empty_drop(landing: StateStore) -> None:
    write_drop(landing, "d", [valid_rows(3).clear()])
    assert "empty" in refusal(landing).problem


def test_mixed_and_unknown_formats(landing: StateStore) -> None:
    write_drop(landing, "d", [valid_rows(3)])
    landing.write_bytes("d/part-00001.csv", b"")
    manifest = landing.read_bytes(f"d/{MANIFEST_NAME}").replace(
        b'"part-00000.parquet"', b'"part-00000.parquet", "part-00001.csv"'
    )
    landing.write_bytes(f"d/{MANIFEST_NAME}", manifest)
    assert "mixes" in refusal(landing).problem
    landing.write_bytes(f"d/{MANIFEST_NAME}", manifest.replace(b"part-00001.csv", b"notes.txt"))
    assert refusal(landing).file == "notes.txt"
