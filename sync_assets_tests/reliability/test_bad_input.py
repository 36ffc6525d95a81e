"""Bad input end to end through Dagster: every malformed drop is refused, every bad row quarantined.

A refused drop fails the partition run at once (no retry) with a message naming the drop, the file
and, where one is at fault, the column; nothing reaches Salesforce. A bad row is rejected with its
reason in the rejects file, or, when only Salesforce can tell (an unknown parent Account), fails
there and is kept with Salesforce's error; either way `source = rejected + unchanged + sent` and
`sent = succeeded + failed`.
"""

import datetime as dt
import io
from collections.abc import Callable
from decimal import Decimal

import polars as pl
import pytest

from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.drops.model import Manifest
from sync_assets.drops.reader import MANIFEST_NAME, open_drop
from sync_assets.drops.shards import shard_expr
from sync_assets.storage import StateStore
from sync_assets_tests.drops.helpers import write_files
from sync_assets_tests.reliability.harness import (
    ACCOUNTS,
    Night,
    NightFactory,
    PartitionRun,
    record,
)

pytestmark = pytest.mark.slow

PARTITION = "0"
PART = "part-00000.parquet"
UNKNOWN_ACCOUNT = "ACC-900010"  # shards to partition 0; the sandbox org has no such Account


def good_rows(scratch: StateStore, rows: int = 600) -> pl.DataFrame:
    """Valid rows, typed as a Parquet drop holds them, of accounts in partition 0 only."""
    generate_drop(scratch, GenerateOptions(drop_id="base", rows=rows, accounts=ACCOUNTS))
    frame = open_drop(scratch, "base").scan().collect()
    return frame.filter(shard_expr("account_key") == int(PARTITION))


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def as_csv_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col(pl.Datetime).dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"),
        pl.exclude(pl.Datetime).cast(pl.String),
    )


def csv_bytes(frame: pl.DataFrame) -> bytes:
    return as_csv_text(frame).write_csv().encode("utf-8")


# drop id → (how to write it from good rows, file named in the message, column named, problem)
RefusedDrop = tuple[Callable[[StateStore, str, pl.DataFrame], None], str, str | None, str]


def _truncated_parquet(landing: StateStore, drop_id: str, rows: pl.DataFrame) -> None:
    data = parquet_bytes(rows)
    write_files(landing, drop_id, {PART: data[: len(data) // 2]}, rows.height)


def _stray_quote(landing: StateStore, drop_id: str, rows: pl.DataFrame) -> None:
    lines = csv_bytes(rows).split(b"\n")
    lines[3] = b'"' + lines[3]
    write_files(landing, drop_id, {"part-00000.csv": b"\n".join(lines)}, rows.height)


def _latin1(landing: StateStore, drop_id: str, rows: pl.DataFrame) -> None:
    text = as_csv_text(rows.with_columns(pl.lit("Müller GmbH – Pilot").alias("name")))
    data = text.select(pl.all().str.replace_all(r"[^\x00-\xff]", "?")).write_csv()
    write_files(landing, drop_id, {"part-00000.csv": data.encode("latin-1")}, rows.height)


def _empty(landing: StateStore, drop_id: str, rows: pl.DataFrame) -> None:
    write_files(landing, drop_id, {}, 0)


def _no_manifest(landing: StateStore, drop_id: str, rows: pl.DataFrame) -> None:
    write_files(landing, drop_id, {PART: parquet_bytes(rows)}, rows.height, manifest=b"")


def _count_lies(landing: StateStore, drop_id: str, rows: pl.DataFrame) -> None:
    write_files(landing, drop_id, {PART: parquet_bytes(rows)}, rows.height + 5)


def _wrong_type(landing: StateStore, drop_id: str, rows: pl.DataFrame) -> None:
    wrong = rows.with_columns(pl.col("amount").cast(pl.String))
    write_files(landing, drop_id, {PART: parquet_bytes(wrong)}, rows.height)


def _missing_column(landing: StateStore, drop_id: str, rows: pl.DataFrame) -> None:
    write_files(landing, drop_id, {PART: parquet_bytes(rows.drop("stage"))}, rows.height)


def _listed_file_missing(landing: StateStore, drop_id: str, rows: pl.DataFrame) -> None:
    landing.write_bytes(f"{drop_id}/{PART}", parquet_bytes(rows))
    manifest = Manifest(
        drop_id=drop_id,
        row_count=rows.height * 2,
        files=[PART, "part-00001.parquet"],
        created_at=dt.datetime(2026, 11, 28, tzinfo=dt.UTC),
    )
    landing.write_json(f"{drop_id}/{MANIFEST_NAME}", manifest)


def _manifest_not_json(landing: StateStore, drop_id: str, rows: pl.DataFrame) -> None:
    write_files(landing, drop_id, {PART: parquet_bytes(rows)}, rows.height, manifest=b"{not json")


def _manifest_escapes(landing: StateStore, drop_id: str, rows: pl.DataFrame) -> None:
    body = (
        f'{{"drop_id": "{drop_id}", "row_count": {rows.height}, '
        '"files": ["../other-drop/part-00000.parquet"], "created_at": "2026-11-28T00:00:00Z"}'
    )
    write_files(landing, drop_id, {PART: parquet_bytes(rows)}, rows.height, body.encode())


REFUSED_DROPS: dict[str, RefusedDrop] = {
    "truncated-parquet": (_truncated_parquet, PART, None, "unreadable Parquet file"),
    "csv-stray-quote": (_stray_quote, "part-00000.csv", None, "unreadable CSV file"),
    "csv-latin-1": (_latin1, "part-00000.csv", None, "unreadable CSV file"),
    "empty-drop": (_empty, "", None, "the drop is empty (no rows)"),
    "no-manifest": (_no_manifest, MANIFEST_NAME, None, "the drop is incomplete"),
    "count-lies": (_count_lies, MANIFEST_NAME, None, "but the manifest says"),
    "wrong-type": (_wrong_type, PART, "amount", "wrong type String, expected a number"),
    "missing-column": (_missing_column, PART, "stage", "missing column"),
    "listed-file-missing": (
        _listed_file_missing,
        "part-00001.parquet",
        None,
        "listed in the manifest but missing",
    ),
    "manifest-not-json": (_manifest_not_json, MANIFEST_NAME, None, "invalid manifest"),
    "manifest-escapes-the-drop": (
        _manifest_escapes,
        MANIFEST_NAME,
        None,
        "is not a plain file name",
    ),
}


def test_every_malformed_drop_is_refused_naming_drop_file_and_column(
    make_night: NightFactory,
) -> None:
    night = make_night()
    rows = good_rows(StateStore(night.root / "scratch"), rows=400)
    outcomes: dict[str, PartitionRun] = {}
    for drop_id, (write, _, _, _) in REFUSED_DROPS.items():
        write(night.landing, drop_id, rows)
        outcomes[drop_id] = night.run_partition(drop_id, PARTITION)

    for drop_id, (_, file, column, problem) in REFUSED_DROPS.items():
        run = outcomes[drop_id]
        assert not run.success, drop_id
        assert run.step_restarts == 0, drop_id
        [error] = run.errors
        assert f"drop {drop_id!r}" in error, error
        assert problem in error, error
        if file:
            assert f"file {file!r}" in error, error
        if column:
            assert f"column {column!r}" in error, error
        assert not night.state.exists(f"staging/{drop_id}"), drop_id
        record(f"bad_input/refused/{drop_id}", error=error)
    # Nothing reached Salesforce, nothing was recorded as synced.
    assert night.stats()["jobs"] == {}
    assert night.ledger_keys(PARTITION).is_empty()


def bad_rows(good: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """One row per broken rule (copies of a good row with fresh keys); key → expected code."""
    template = good.head(1)
    oldest = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    breaks: list[tuple[str, dict[str, object]]] = [
        ("opportunity_key_too_long", {"opportunity_key": "K" * 65}),
        ("account_key_missing", {"account_key": None}),
        ("name_missing", {"name": ""}),
        ("name_too_long", {"name": "N" * 121}),
        ("stage_not_in_picklist", {"stage": "Closed Maybe"}),
        ("close_date_missing", {"close_date": None}),
        ("close_date_too_small", {"close_date": dt.date(1600, 1, 1)}),
        ("amount_too_small", {"amount": Decimal("-0.01")}),
        ("amount_too_many_digits", {"amount": Decimal("10000000000000000.00")}),
        ("probability_too_small", {"probability": -1}),
        ("probability_too_large", {"probability": 101}),
        ("next_step_too_long", {"next_step": "S" * 256}),
        ("description_too_long", {"description": "huge text field " * 2_500}),
        ("duplicate_key", {"opportunity_key": good["opportunity_key"][1], "updated_at": oldest}),
    ]
    frames, expected = [], {}
    for number, (code, changes) in enumerate(breaks):
        key = str(changes.get("opportunity_key", f"BAD-{number:04d}"))
        row = template.with_columns(
            pl.lit(key).alias("opportunity_key"),
            *[
                pl.lit(value, dtype=None if value is not None else template.schema[column]).alias(
                    column
                )
                for column, value in changes.items()
                if column != "opportunity_key"
            ],
        )
        frames.append(row.select(good.columns).cast(wide_schema(good)))
        expected[key] = code
    return pl.concat(frames, how="vertical"), expected


def wide_schema(good: pl.DataFrame) -> pl.Schema:
    """The drop's schema with room for an amount too large for Salesforce (the reader allows it)."""
    return pl.Schema({**good.schema, "amount": pl.Decimal(38, 2)})


def unknown_account_row(good: pl.DataFrame) -> pl.DataFrame:
    """A row every rule of ours accepts but Salesforce fails: its parent Account does not exist."""
    return good.head(1).with_columns(
        pl.lit("SF-REJECTS-0000").alias("opportunity_key"),
        pl.lit(UNKNOWN_ACCOUNT).alias("account_key"),
    )


def assert_quarantined_and_accounted(
    night: Night, drop_id: str, run: PartitionRun, expected: dict[str, str], good_keys: set[str]
) -> None:
    staged = night.staged(drop_id, PARTITION)
    rejects = night.state.read_parquet(staged.rejects)
    by_code = dict(rejects.group_by("reason_code").len().iter_rows())
    assert by_code == {code: 1 for code in expected.values()}
    assert rejects["reason"].null_count() == 0
    huge = rejects.filter(pl.col("reason_code") == "description_too_long")["reason"].item()
    assert "description is 40000 characters long, at most 32000 allowed" in huge
    for key, code in expected.items():
        assert rejects.filter(pl.col("opportunity_key") == key)["reason_code"].item() == code

    loaded = run.loaded()
    counts = staged.counts
    assert counts.source == counts.rejected + counts.unchanged + counts.to_send
    assert loaded["source"] == loaded["rejected"] + loaded["unchanged"] + loaded["sent"]
    assert loaded["sent"] == loaded["succeeded"] + loaded["failed"]
    assert (loaded["failed"], loaded["succeeded"]) == (1, len(good_keys))
    # The row only Salesforce could refuse is kept with Salesforce's own error, and blocks.
    failed = night.state.read_parquet(f"failed/{drop_id}/partition={PARTITION}/failed.parquet")
    assert failed["External_Id__c"].to_list() == ["SF-REJECTS-0000"]
    assert (
        failed["error"]
        .item()
        .startswith(f"INVALID_FIELD:Foreign key external ID: {UNKNOWN_ACCOUNT} not found")
    )
    assert not run.success
    # The blocking check fails the run; the reject rate (a fifth of this drop) is flagged too.
    assert set(run.failed_checks()) == {"no_permanently_failed_rows", "reject_rate_below_threshold"}
    assert set(night.external_ids(PARTITION)) == good_keys == set(night.ledger_keys(PARTITION))
    record(
        f"bad_input/rows/{drop_id}",
        rejected_by_reason=by_code,
        source=loaded["source"],
        rejected=loaded["rejected"],
        sent=loaded["sent"],
        succeeded=loaded["succeeded"],
        failed=loaded["failed"],
        salesforce_error=failed["error"].item(),
        **night.measure(drop_id, PARTITION),
    )


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_bad_rows_are_quarantined_with_their_reason_and_every_row_is_accounted_for(
    make_night: NightFactory, file_format: str
) -> None:
    night = make_night()
    good = good_rows(StateStore(night.root / "scratch"))
    broken, expected = bad_rows(good)
    frame = pl.concat([good, unknown_account_row(good)]).cast(broken.schema)
    frame = pl.concat([frame, broken])
    extra: dict[str, str] = {}
    if file_format == "csv":
        frame = as_csv_text(frame)
        unparsable = {
            "close_date": ("2026-13-45", "close_date_invalid"),
            "amount": ("1,000", "amount_invalid"),
            "probability": ("12.5", "probability_invalid"),
            "updated_at": ("yesterday", "updated_at_invalid"),
        }
        for number, (column, (text, code)) in enumerate(unparsable.items()):
            key = f"CSV-BAD-{number}"
            frame = pl.concat(
                [
                    frame,
                    frame.head(1).with_columns(
                        pl.lit(key).alias("opportunity_key"), pl.lit(text).alias(column)
                    ),
                ]
            )
            extra[key] = code
        files = {"part-00000.csv": frame.write_csv().encode("utf-8")}
    else:
        files = {PART: parquet_bytes(frame)}
    drop_id = f"bad-rows-{file_format}"
    write_files(night.landing, drop_id, files, frame.height)

    run = night.run_partition(drop_id, PARTITION)

    good_keys = set(good["opportunity_key"])
    assert_quarantined_and_accounted(night, drop_id, run, expected | extra, good_keys)
