"""Read a landed drop (Parquet or CSV) and refuse a whole drop that is incomplete or malformed."""

import io
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

import polars as pl
import pyarrow.parquet as pq
from pydantic import ValidationError

from sync_assets.drops.model import SOURCE_COLUMNS, FieldSpec, Manifest, field_specs
from sync_assets.storage import StateStore

MANIFEST_NAME = "_manifest.json"

FileFormat = Literal["parquet", "csv"]
FORMAT_SUFFIXES: dict[str, FileFormat] = {".parquet": "parquet", ".csv": "csv"}


class DropError(Exception):
    """A drop that cannot be synced at all; says which drop, file and column, and why."""

    def __init__(
        self, drop_id: str, problem: str, *, file: str | None = None, column: str | None = None
    ) -> None:
        self.drop_id = drop_id
        self.file = file
        self.column = column
        self.problem = problem
        where = [f"drop {drop_id!r}"]
        if file is not None:
            where.append(f"file {file!r}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {problem}")


def list_complete_drops(landing: StateStore) -> list[str]:
    """Ids of the drops whose manifest has landed (the manifest is written last), sorted."""
    return [name for name in landing.list_names() if landing.exists(f"{name}/{MANIFEST_NAME}")]


def newest_complete_drop(landing: StateStore) -> str | None:
    """The drop whose manifest was created last (ties broken by id), or None before the first."""
    manifests = [read_manifest(landing, drop_id) for drop_id in list_complete_drops(landing)]
    if not manifests:
        return None
    return max(manifests, key=lambda manifest: (manifest.created_at, manifest.drop_id)).drop_id


def read_manifest(landing: StateStore, drop_id: str) -> Manifest:
    path = f"{drop_id}/{MANIFEST_NAME}"
    if not landing.exists(path):
        raise DropError(drop_id, f"no {MANIFEST_NAME}: the drop is incomplete", file=MANIFEST_NAME)
    try:
        manifest = landing.read_json(path, Manifest)
    except ValidationError as error:
        raise DropError(drop_id, f"invalid manifest: {error}", file=MANIFEST_NAME) from error
    if manifest.drop_id != drop_id:
        raise DropError(
            drop_id, f"the manifest names drop {manifest.drop_id!r}", file=MANIFEST_NAME
        )
    return manifest


def _typed_column(spec: FieldSpec, dtype: pl.DataType) -> pl.Expr | None:
    """The cast that brings a Parquet column to the contract type, or None if it is the wrong type."""
    column = pl.col(spec.name)
    if dtype == pl.Null:
        return column.cast(spec.dtype)
    if spec.kind == "string" and isinstance(dtype, pl.String | pl.Categorical | pl.Enum):
        return column.cast(pl.String)
    if spec.kind == "date" and dtype == pl.Date:
        return column
    if spec.kind == "integer" and dtype.is_integer():
        return column.cast(pl.Int64)
    if spec.kind == "decimal" and (
        dtype.is_integer()
        or (isinstance(dtype, pl.Decimal) and (dtype.scale or 0) <= (spec.decimal_places or 0))
    ):
        # Wider precision is allowed through; the max_digits rule rejects values that do not fit.
        return column.cast(pl.Decimal(38, spec.decimal_places))
    if spec.kind == "datetime" and isinstance(dtype, pl.Datetime):
        # A naive timestamp is taken as UTC; only the order of timestamps matters.
        if dtype.time_zone is None:
            return column.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        return column.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return None


def _expected_type(spec: FieldSpec) -> str:
    return {
        "string": "a string",
        "date": "a date",
        "decimal": f"a decimal with at most {spec.decimal_places} decimal places, or an integer",
        "integer": "an integer",
        "datetime": "a timestamp",
    }[spec.kind]


@dataclass(frozen=True)
class DropFile:
    """One file of a drop: how many rows it holds, and how to scan them in contract order."""

    rows: int
    scan: Callable[[str | None, int], pl.LazyFrame]
    """`scan(row_index, offset)`: the rows, led by a row index numbered from `offset` if named."""


class Drop:
    """A drop that passed the whole-drop checks: its manifest, and lazy access to its rows.

    Columns come out in contract order: typed per the model for Parquet; as strings for CSV (a
    CSV cell that does not parse is a row-level reject, decided by the validator).
    """

    def __init__(self, manifest: Manifest, file_format: FileFormat, files: list[DropFile]) -> None:
        self.manifest = manifest
        self.file_format = file_format
        self._files = files

    @property
    def drop_id(self) -> str:
        return self.manifest.drop_id

    def scan(self, row_index: str | None = None) -> pl.LazyFrame:
        """All rows of the drop, files in manifest order, contract columns only.

        With `row_index`, each row's position in the drop leads as that column: numbered by each
        file's reader from the file's offset, which keeps a streamed scan streaming (a row index
        added over the concatenation makes polars hold the whole drop).
        """
        offsets = accumulate([0, *(part.rows for part in self._files)])
        return pl.concat(
            [
                part.scan(row_index, offset)
                for part, offset in zip(self._files, offsets, strict=False)
            ],
            how="vertical",
        )


def _file_format(drop_id: str, files: list[str]) -> FileFormat:
    formats = set()
    for name in files:
        suffix = name[name.rfind(".") :].lower() if "." in name else ""
        if suffix not in FORMAT_SUFFIXES:
            raise DropError(drop_id, "not a .parquet or .csv file", file=name)
        formats.add(FORMAT_SUFFIXES[suffix])
    if len(formats) > 1:
        raise DropError(drop_id, "mixes Parquet and CSV files")
    return formats.pop()


def _parquet_file(landing: StateStore, drop_id: str, name: str) -> DropFile:
    path = f"{drop_id}/{name}"
    try:
        with landing.open_read(path) as handle:
            parquet = pq.ParquetFile(handle)
            rows = parquet.metadata.num_rows
            schema = pl.from_arrow(parquet.schema_arrow.empty_table()).schema
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise DropError(drop_id, f"unreadable Parquet file: {error}", file=name) from error
    casts = []
    for spec in field_specs():
        if spec.name not in schema:
            raise DropError(drop_id, "missing column", file=name, column=spec.name)
        cast = _typed_column(spec, schema[spec.name])
        if cast is None:
            raise DropError(
                drop_id,
                f"wrong type {schema[spec.name]}, expected {_expected_type(spec)}",
                file=name,
                column=spec.name,
            )
        casts.append(cast)

    def scan(row_index: str | None, offset: int) -> pl.LazyFrame:
        scanned = landing.scan_parquet([path], row_index=row_index, row_index_offset=offset)
        return scanned.select(*_leading(row_index), *casts)

    return DropFile(rows, scan)


def _leading(row_index: str | None) -> list[str]:
    return [] if row_index is None else [row_index]


def _csv_file(landing: StateStore, drop_id: str, name: str) -> DropFile:
    # A CSV file is parsed in full here: a stray quote, a bad encoding or a ragged line must
    # refuse the drop before anything is staged. Every cell stays a string until validation.
    try:
        frame = pl.read_csv(
            io.BytesIO(landing.read_bytes(f"{drop_id}/{name}")),
            infer_schema=False,
            encoding="utf8",
            truncate_ragged_lines=False,
            raise_if_empty=True,
        )
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as error:
        raise DropError(drop_id, f"unreadable CSV file: {error}", file=name) from error
    for column in SOURCE_COLUMNS:
        if column not in frame.columns:
            raise DropError(drop_id, "missing column", file=name, column=column)
    frame = frame.select(SOURCE_COLUMNS)

    def scan(row_index: str | None, offset: int) -> pl.LazyFrame:
        scanned = frame.lazy()
        return scanned if row_index is None else scanned.with_row_index(row_index, offset)

    return DropFile(frame.height, scan)


def open_drop(landing: StateStore, drop_id: str) -> Drop:
    """Check a whole drop and return it; raise DropError if any part of it is unusable."""
    manifest = read_manifest(landing, drop_id)
    if manifest.row_count == 0 or not manifest.files:
        raise DropError(drop_id, "the drop is empty (no rows): refusing to treat it as a night")
    file_format = _file_format(drop_id, manifest.files)
    read_file = _parquet_file if file_format == "parquet" else _csv_file
    files = []
    for name in manifest.files:
        if not landing.exists(f"{drop_id}/{name}"):
            raise DropError(drop_id, "listed in the manifest but missing", file=name)
        files.append(read_file(landing, drop_id, name))
    total = sum(part.rows for part in files)
    if total != manifest.row_count:
        raise DropError(
            drop_id,
            f"the files hold {total:,} rows but the manifest says {manifest.row_count:,}",
            file=MANIFEST_NAME,
        )
    return Drop(manifest, file_format, files)
