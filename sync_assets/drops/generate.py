"""Deterministic demo drops: realistic, skewed, nasty and optionally broken nightly exports."""

import datetime as dt
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from sync_assets.drops.model import Manifest
from sync_assets.drops.reader import MANIFEST_NAME, open_drop
from sync_assets.drops.standard_org import STANDARD_STAGES as STAGES
from sync_assets.drops.validate import RowValidator
from sync_assets.storage import StateStore

# Probability Salesforce's standard OpportunityStage implies for each stage.
STAGE_PROBABILITY = dict(zip(STAGES, [10, 10, 20, 50, 60, 70, 75, 90, 100, 0], strict=True))

# A few accounts hold thousands of opportunities, most hold a few: rank r gets weight r^-SKEW.
ACCOUNT_SKEW = 0.7

COMPANIES = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Müller GmbH",
    "O'Brien & Sons",
    'The "Best" Co.',
    "Smith, Jones, and Partners",
    "株式会社サンプル",
    "Компания Север",
    "شركة المثال",
    "Ωmega Ltd",
]
PRODUCTS = ["Renewal", "Upsell", "Platform deal", "Pilot", "Expansion", "Support plan"]
LEAD_SOURCES = ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]
TYPES = [
    "New Customer",
    "Existing Customer - Upgrade",
    "Existing Customer - Replacement",
    "Existing Customer - Downgrade",
]
NEXT_STEPS = [
    "Send proposal",
    "Call back on Monday",
    "Legal review, then signature",
    'Ask for the "final" price',
    "Demo für das Team",
]
DESCRIPTIONS = [
    "Customer asked for a quote, then a revised quote, then another.",
    'He said "ship it" and left',
    "Line one\nLine two\nLine three",
    "Windows lines\r\nsecond line\r\n",
    "Tab\tseparated\tnotes",
    "日本語の説明: 見積もりを送付済み",
    "Описание сделки: клиент доволен",
    "وصف الصفقة: العميل راضٍ",
    "Emoji deal 🚀🔥💰 — done ✅",
    'Mix: "quoted, with comma"\r\nand a newline\tand a tab 🎉 中文',
    "Trailing backslash \\",
    "  leading and trailing spaces  ",
    "Zero\u200bwidth space and combining e\u0301",
    "'single quotes', ;semicolons; and |pipes|",
]
LONG_DESCRIPTION = "A long account history, told in full. " * 100  # ~3,800 characters

BAD_KINDS = (
    "missing_name",
    "missing_account_key",
    "missing_close_date",
    "name_too_long",
    "next_step_too_long",
    "unknown_stage",
    "bad_close_date",
    "negative_amount",
    "probability_out_of_range",
    "duplicate_key",
)

_EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


class GenerateOptions(BaseModel):
    """What `sync-assets generate` makes."""

    drop_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    rows: int = Field(default=2_000_000, ge=1, description="Ignored with based_on.")
    accounts: int = Field(default=20_000, ge=1)
    bad_fraction: float = Field(default=0.0, ge=0, le=0.5)
    seed: int = 0
    based_on: str | None = Field(default=None, description="Make the next night from this drop.")
    changed: float = Field(default=0.05, ge=0, le=1)
    new: float = Field(default=0.01, ge=0)
    deleted: float = Field(default=0.005, ge=0, le=1)
    file_format: Literal["parquet", "csv"] = "parquet"
    rows_per_file: int = Field(default=500_000, ge=1)


def _pick(rng: np.random.Generator, pool: list[str], n: int, null_share: float) -> pl.Series:
    values = pl.Series(pool).gather(rng.integers(0, len(pool), n))
    return values.scatter(np.flatnonzero(rng.random(n) < null_share), None)


class AccountPicker:
    """A drop's skewed accounts: rank r is picked with weight r^-SKEW, at a number drawn once.

    The ranks' numbers are drawn with the first rows picked and kept for the whole drop, so a drop
    made chunk by chunk has the same heavy accounts in every chunk.
    """

    def __init__(self, accounts: int) -> None:
        weights = np.arange(1, accounts + 1, dtype=np.float64) ** -ACCOUNT_SKEW
        self._accounts = accounts
        self._weights = weights / weights.sum()
        self._numbers: np.ndarray | None = None

    def pick(self, rng: np.random.Generator, n: int) -> np.ndarray:
        ranks = rng.choice(self._accounts, size=n, p=self._weights)
        if self._numbers is None:
            # Big accounts get random numbers, so they spread over the shards.
            self._numbers = rng.permutation(self._accounts)
        return self._numbers[ranks]


def _descriptions(rng: np.random.Generator, n: int, serials: pl.Series) -> pl.Series:
    base = pl.Series(DESCRIPTIONS).gather(rng.integers(0, len(DESCRIPTIONS), n))
    base = base.scatter(np.flatnonzero(rng.random(n) < 0.01), LONG_DESCRIPTION)
    text = pl.select(pl.concat_str(pl.lit(base), pl.lit(" #"), pl.lit(serials))).to_series()
    return text.scatter(np.flatnonzero(rng.random(n) < 0.2), None)


def _amounts(cents: np.ndarray) -> pl.Expr:
    whole = pl.lit(pl.Series(cents // 100))
    fraction = pl.lit(pl.Series(cents % 100)).cast(pl.String).str.zfill(2)
    return pl.concat_str(whole, pl.lit("."), fraction).cast(pl.Decimal(18, 2))


def _null_where(column: str, mask: np.ndarray) -> pl.Expr:
    return pl.when(pl.lit(pl.Series(mask))).then(None).otherwise(pl.col(column)).alias(column)


def fresh_rows(
    rng: np.random.Generator,
    n: int,
    accounts: int,
    first_key: int,
    picker: AccountPicker | None = None,
) -> pl.DataFrame:
    """`n` new, valid opportunities with keys OPP-<first_key>… in the contract types.

    ``picker`` carries a drop's accounts from chunk to chunk; without it the rows get their own.
    """
    picker = picker or AccountPicker(accounts)
    serials = pl.Series(np.arange(first_key, first_key + n, dtype=np.int64))
    cents = np.minimum(rng.lognormal(np.log(2_500_000), 1.2, n), 1e13).astype(np.int64)
    frame = pl.DataFrame(
        {
            "serial": serials,
            "account": picker.pick(rng, n),
            "company": pl.Series(COMPANIES).gather(rng.integers(0, len(COMPANIES), n)),
            "product": pl.Series(PRODUCTS).gather(rng.integers(0, len(PRODUCTS), n)),
            "stage": pl.Series(STAGES).gather(rng.integers(0, len(STAGES), n)),
            "close_offset": rng.integers(-180, 365, n),
            "updated_offset": rng.integers(0, 30 * 86_400_000_000, n),
            "lead_source": _pick(rng, LEAD_SOURCES, n, 0.15),
            "type": _pick(rng, TYPES, n, 0.1),
            "next_step": _pick(rng, NEXT_STEPS, n, 0.3),
            "description": _descriptions(rng, n, serials),
        }
    )
    rows = frame.select(
        pl.concat_str(pl.lit("OPP-"), pl.col("serial").cast(pl.String).str.zfill(10)).alias(
            "opportunity_key"
        ),
        pl.concat_str(pl.lit("ACC-"), pl.col("account").cast(pl.String).str.zfill(6)).alias(
            "account_key"
        ),
        pl.concat_str("company", pl.lit(" – "), "product", pl.lit(" "), "serial").alias("name"),
        pl.col("stage"),
        (pl.lit(dt.date(2026, 12, 1)) + pl.duration(days=pl.col("close_offset"))).alias(
            "close_date"
        ),
        _amounts(cents).alias("amount"),
        pl.col("stage")
        .replace_strict(STAGE_PROBABILITY, return_dtype=pl.Int64)
        .alias("probability"),
        "lead_source",
        "type",
        "next_step",
        "description",
        (pl.lit(_EPOCH) + pl.duration(microseconds=pl.col("updated_offset"))).alias("updated_at"),
    )
    return rows.with_columns(
        _null_where("amount", rng.random(n) < 0.08),
        _null_where("probability", rng.random(n) < 0.1),
    )


def _as_csv_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as the text a CSV export holds (ISO dates and timestamps)."""
    return frame.with_columns(
        pl.col(pl.Date).cast(pl.String),
        pl.col(pl.Datetime).dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"),
        pl.exclude(pl.String, pl.Date, pl.Datetime).cast(pl.String),
    )


def _bad_values(textual: bool) -> dict[str, tuple[str, object]]:
    bad_date: object = "2026-02-30" if textual else dt.date(1600, 1, 1)
    negative: object = "-100.00" if textual else Decimal("-100.00")
    too_probable: object = "150" if textual else 150
    return {
        "missing_name": ("name", None),
        "missing_account_key": ("account_key", None),
        "missing_close_date": ("close_date", None),
        "name_too_long": ("name", "N" * 121),
        "next_step_too_long": ("next_step", "S" * 256),
        "unknown_stage": ("stage", "Closed Maybe"),
        "bad_close_date": ("close_date", bad_date),
        "negative_amount": ("amount", negative),
        "probability_out_of_range": ("probability", too_probable),
    }


def inject_bad_rows(frame: pl.DataFrame, rng: np.random.Generator, fraction: float) -> pl.DataFrame:
    """Break round(fraction × rows) rows, each in exactly one way, cycling through BAD_KINDS."""
    return break_rows(frame, rng, round(frame.height * fraction))


def break_rows(
    frame: pl.DataFrame, rng: np.random.Generator, count: int, first_kind: int = 0
) -> pl.DataFrame:
    """Break `count` rows, each in exactly one way, cycling through BAD_KINDS from `first_kind`.

    A `duplicate_key` row takes the key of a good row with an older `updated_at`, so it is the
    one rejected. Each broken row is therefore rejected exactly once.
    """
    if count == 0:
        return frame
    chosen = rng.choice(frame.height, size=count, replace=False)
    kinds = (first_kind + np.arange(count)) % len(BAD_KINDS)
    textual = frame.schema["close_date"] == pl.String
    columns = {name: frame[name].clone() for name in frame.columns}
    for kind, (column, value) in _bad_values(textual).items():
        rows = chosen[kinds == BAD_KINDS.index(kind)]
        columns[column] = columns[column].scatter(rows, value)
    duplicates = chosen[kinds == BAD_KINDS.index("duplicate_key")]
    good = np.setdiff1d(np.arange(frame.height), chosen)
    originals = rng.choice(good, size=len(duplicates), replace=False)
    columns["opportunity_key"] = columns["opportunity_key"].scatter(
        duplicates, frame["opportunity_key"].gather(originals)
    )
    older = frame.select(pl.col("updated_at").gather(originals))
    if not textual:
        older = older.select(pl.col("updated_at") - pl.duration(days=1))
    else:
        older = older.select(
            (
                pl.col("updated_at").str.to_datetime(time_zone="UTC") - pl.duration(days=1)
            ).dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ")
        )
    columns["updated_at"] = columns["updated_at"].scatter(duplicates, older.to_series())
    return pl.DataFrame(columns)


def _max_serial(frame: pl.DataFrame) -> int:
    serials = frame.select(
        pl.col("opportunity_key").str.extract(r"^OPP-(\d+)$").cast(pl.Int64).max()
    ).item()
    return -1 if serials is None else int(serials)


def next_night(
    previous: pl.DataFrame, rng: np.random.Generator, options: GenerateOptions
) -> pl.DataFrame:
    """The following night's export: some rows deleted, some changed, some new."""
    n = previous.height
    keep = np.ones(n, dtype=bool)
    keep[rng.choice(n, size=round(n * options.deleted), replace=False)] = False
    kept = previous.filter(pl.Series(keep))
    changed = np.zeros(kept.height, dtype=bool)
    changed[rng.choice(kept.height, size=round(n * options.changed), replace=False)] = True
    mask = pl.lit(pl.Series(changed))
    latest = kept.select(pl.col("updated_at").max()).item() or _EPOCH
    new_stages = pl.Series(STAGES).gather(rng.integers(0, len(STAGES), kept.height))
    updated = kept.with_columns(
        pl.when(mask).then(pl.lit(new_stages)).otherwise(pl.col("stage")).alias("stage"),
        pl.when(mask)
        .then(pl.concat_str(pl.col("description").fill_null(""), pl.lit(" (updated)")))
        .otherwise(pl.col("description"))
        .alias("description"),
        pl.when(mask)
        .then(pl.lit(latest) + pl.duration(hours=1))
        .otherwise(pl.col("updated_at"))
        .alias("updated_at"),
    )
    added = fresh_rows(rng, round(n * options.new), options.accounts, _max_serial(previous) + 1)
    return pl.concat([updated, added.with_columns(pl.col("updated_at") + (latest - _EPOCH))])


def _as_exported(
    rows: pl.DataFrame, rng: np.random.Generator, options: GenerateOptions, first_row: int
) -> pl.DataFrame:
    """Rows `first_row`… of the drop as the export holds them: its format, broken rows, shuffled.

    The broken rows are counted over the whole drop (rows before `first_row` hold their share), so
    a drop made in chunks has as many of each kind as one made at once.
    """
    if options.file_format == "csv":
        rows = _as_csv_text(rows)
    broken_before = round(first_row * options.bad_fraction)
    broken = round((first_row + rows.height) * options.bad_fraction) - broken_before
    rows = break_rows(rows, rng, broken, first_kind=broken_before)
    # An export comes in no particular order; neither does ours (keys and accounts mixed).
    return rows[rng.permutation(rows.height)]


def _fresh_parts(rng: np.random.Generator, options: GenerateOptions) -> Iterator[pl.DataFrame]:
    """A new drop, one part file's rows at a time: memory holds one part, however many rows."""
    picker = AccountPicker(options.accounts)
    for first in range(0, options.rows, options.rows_per_file):
        count = min(options.rows_per_file, options.rows - first)
        rows = fresh_rows(rng, count, options.accounts, first_key=first, picker=picker)
        yield _as_exported(rows, rng, options, first)


def _next_night_parts(
    landing: StateStore, rng: np.random.Generator, options: GenerateOptions
) -> Iterator[pl.DataFrame]:
    """The night after `options.based_on`, made whole (rows change across it), then cut in parts."""
    assert options.based_on is not None
    previous = open_drop(landing, options.based_on).scan().collect()
    validator = RowValidator(previous.schema)
    rows = next_night(previous.select(validator.typed_columns()), rng, options)
    del previous
    rows = _as_exported(rows, rng, options, 0)
    for start in range(0, rows.height, options.rows_per_file):
        yield rows.slice(start, options.rows_per_file)


def _write_files(
    landing: StateStore, parts: Iterator[pl.DataFrame], options: GenerateOptions
) -> tuple[list[str], int]:
    """Each part as its own file; the names and the rows written."""
    files, rows = [], 0
    for number, part in enumerate(parts):
        name = f"part-{number:05d}.{options.file_format}"
        if options.file_format == "parquet":
            landing.write_parquet(f"{options.drop_id}/{name}", part)
        else:
            buffer = io.BytesIO()
            part.write_csv(buffer)
            landing.write_bytes(f"{options.drop_id}/{name}", buffer.getvalue())
        files.append(name)
        rows += part.height
    return files, rows


def generate_drop(landing_dir: str | Path | StateStore, options: GenerateOptions) -> Manifest:
    """Write a drop into the landing dir: part files first, `_manifest.json` last.

    A new drop is made part file by part file from one random stream (a given seed and size make
    the same drop), so its memory does not grow with its rows.
    """
    landing = landing_dir if isinstance(landing_dir, StateStore) else StateStore(landing_dir)
    if landing.exists(f"{options.drop_id}/{MANIFEST_NAME}"):
        raise FileExistsError(f"drop {options.drop_id!r} already exists in {landing!r}")
    rng = np.random.default_rng(options.seed)
    parts = (
        _fresh_parts(rng, options)
        if options.based_on is None
        else _next_night_parts(landing, rng, options)
    )
    files, row_count = _write_files(landing, parts, options)
    manifest = Manifest(
        drop_id=options.drop_id,
        row_count=row_count,
        files=files,
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
    )
    landing.write_json(f"{options.drop_id}/{MANIFEST_NAME}", manifest)
    return manifest
