"""Read a landed drop (Parquet or CSV) and refuse a whole drop that is incomplete or malformed."""

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Literal

import polars as pl
import pyarrow.parquet as pq
from pydantic import ValidationError

from sync_assets.drops.contract import DropContract, default_contract
from sync_assets.drops.model import FieldSpec, Manifest
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


ColumnMode = Literal["typed", "text"]
"""How a column reaches the validator: in its contract type, or as text it parses (see validate)."""


def _fits_decimal(spec: FieldSpec, dtype: pl.Decimal) -> bool:
    """A decimal that casts to the contract's decimal exactly: no more places, no overflow."""
    places = spec.decimal_places or 0
    scale = dtype.scale or 0
    return scale <= places and (dtype.precision or 38) - scale + places <= 38


def _mode(spec: FieldSpec, dtype: pl.DataType) -> ColumnMode | None:
    """How a Parquet column of `dtype` is read for `spec`, or None if it is the wrong type.

    Types that hold the value exactly as the contract wants it are cast ("typed"); types that
    need rounding, a look at their digits or a rule (floats, decimals with more places than the
    field, timestamps for a date) are turned into exact text for the validator ("text").
    """
    if dtype == pl.Null:
        return "typed"
    if spec.kind == "string":
        return "typed" if isinstance(dtype, pl.String | pl.Categorical | pl.Enum) else None
    if spec.kind == "date":
        return "typed" if dtype == pl.Date else "text" if isinstance(dtype, pl.Datetime) else None
    if spec.kind == "datetime":
        return "typed" if isinstance(dtype, pl.Datetime) else None
    if spec.kind == "boolean":
        return "typed" if dtype == pl.Boolean else None
    if not dtype.is_numeric():
        return None
    if spec.kind == "integer":
        # Floats and decimals are integers only when their value is integral; UInt64 may not fit.
        return "typed" if dtype.is_integer() and dtype != pl.UInt64 else "text"
    if dtype.is_integer() or (isinstance(dtype, pl.Decimal) and _fits_decimal(spec, dtype)):
        return "typed"
    return "text"


def _typed(spec: FieldSpec, column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """The cast that brings a column `_mode` calls "typed" to the contract type."""
    if spec.kind == "datetime" and isinstance(dtype, pl.Datetime):
        # A naive timestamp is taken as UTC; only the order of timestamps matters.
        if dtype.time_zone is None:
            return column.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        return column.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return column.cast(spec.dtype)


def _text(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """The exact text of a value the validator parses.

    A float's text is its shortest round-trip form (0.1 is "0.1", never 0.1000000000000000055);
    a timestamp's is its wall time in its own zone, so a date is never shifted by a zone.
    """
    if isinstance(dtype, pl.Datetime):
        return column.dt.to_string("%Y-%m-%dT%H:%M:%S%.f")
    return column.cast(pl.String)


def _expected_type(spec: FieldSpec) -> str:
    return {
        "string": "a string",
        "date": "a date, or a timestamp at midnight",
        "decimal": "a number (integer, float or decimal)",
        "integer": "an integer, or a float or decimal holding one",
        "datetime": "a timestamp",
        "boolean": "a boolean",
    }[spec.kind]


@dataclass
class DropColumns:
    """Columns of the drop beyond the contract's, and optional contract columns it lacks."""

    extra: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class DropFile:
    """One file of a drop: how many rows it holds, and how to scan them in contract order."""

    rows: int
    scan: Callable[[str | None, int], pl.LazyFrame]
    """`scan(row_index, offset)`: the rows, led by a row index numbered from `offset` if named."""


class Drop:
    """A drop that passed the whole-drop checks: its manifest, and lazy access to its rows.

    Columns come out in contract order, named as the contract names them: typed per the model,
    or as text the validator parses (every CSV column; Parquet columns that need a rule to
    become the contract type, see `_mode`). A cell that does not parse is a row-level reject.
    """

    def __init__(
        self,
        manifest: Manifest,
        file_format: FileFormat,
        files: list[DropFile],
        columns: DropColumns,
    ) -> None:
        self.manifest = manifest
        self.file_format = file_format
        self._files = files
        self.extra_columns = sorted(columns.extra)
        self.missing_columns = sorted(columns.missing)

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


def _match_columns(
    drop_id: str, file: str, names: list[str], specs: list[FieldSpec], seen: DropColumns
) -> dict[str, str | None]:
    """Each contract column → the file's column of that name, matched case-insensitively.

    A missing required column refuses the drop, naming it; a missing optional one is all-null.
    Columns the contract does not name are ignored (and listed in `seen.extra`).
    """
    by_lower: dict[str, str] = {}
    for name in names:
        other = by_lower.setdefault(name.lower(), name)
        if other != name:
            raise DropError(
                drop_id, f"columns {other!r} and {name!r} differ only in case", file=file
            )
    matched: dict[str, str | None] = {}
    for spec in specs:
        found = by_lower.pop(spec.name.lower(), None)
        if found is None and spec.required:
            raise DropError(drop_id, "missing column", file=file, column=spec.name)
        if found is None:
            seen.missing.add(spec.name)
        matched[spec.name] = found
    seen.extra.update(by_lower.values())
    return matched


def _parquet_schema(landing: StateStore, drop_id: str, name: str) -> tuple[int, pl.Schema]:
    try:
        with landing.open_read(f"{drop_id}/{name}") as handle:
            parquet = pq.ParquetFile(handle)
            return parquet.metadata.num_rows, pl.from_arrow(
                parquet.schema_arrow.empty_table()
            ).schema
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise DropError(drop_id, f"unreadable Parquet file: {error}", file=name) from error


def _parquet_files(
    landing: StateStore, drop_id: str, names: list[str], specs: list[FieldSpec], seen: DropColumns
) -> list[DropFile]:
    """The Parquet files of a drop, each column read the same way in every file (see `_mode`)."""
    schemas = {name: _parquet_schema(landing, drop_id, name) for name in names}
    matched = {
        name: _match_columns(drop_id, name, schema.names(), specs, seen)
        for name, (_, schema) in schemas.items()
    }
    modes: dict[str, ColumnMode] = {}
    for spec in specs:
        found: list[ColumnMode] = []
        for name, (_, schema) in schemas.items():
            column = matched[name][spec.name]
            if column is None:
                continue
            mode = _mode(spec, schema[column])
            if mode is None:
                raise DropError(
                    drop_id,
                    f"wrong type {schema[column]}, expected {_expected_type(spec)}",
                    file=name,
                    column=spec.name,
                )
            found.append(mode)
        # One drop, one type per column: text as soon as one file needs it.
        modes[spec.name] = "text" if "text" in found else "typed"

    def file(name: str) -> DropFile:
        rows, schema = schemas[name]
        casts = []
        for spec in specs:
            column, mode = matched[name][spec.name], modes[spec.name]
            if column is None:
                cast = pl.lit(None, dtype=pl.String if mode == "text" else spec.dtype)
            elif mode == "text":
                cast = _text(pl.col(column), schema[column])
            else:
                cast = _typed(spec, pl.col(column), schema[column])
            casts.append(cast.alias(spec.name))
        path = f"{drop_id}/{name}"

        def scan(row_index: str | None, offset: int) -> pl.LazyFrame:
            scanned = landing.scan_parquet([path], row_index=row_index, row_index_offset=offset)
            return scanned.select(*_leading(row_index), *casts)

        return DropFile(rows, scan)

    return [file(name) for name in names]


def _leading(row_index: str | None) -> list[str]:
    return [] if row_index is None else [row_index]


def _csv_file(
    landing: StateStore,
    drop_id: str,
    name: str,
    specs: list[FieldSpec],
    seen: DropColumns,
    delimiter: str,
) -> DropFile:
    # A CSV file is parsed in full here: a stray quote, a bad encoding or a ragged line must
    # refuse the drop before anything is staged. Every cell stays a string until validation.
    # polars reads UTF-8 with or without a BOM, LF or CRLF, and newlines inside quotes.
    try:
        frame = pl.read_csv(
            io.BytesIO(landing.read_bytes(f"{drop_id}/{name}")),
            infer_schema=False,
            encoding="utf8",
            separator=delimiter,
            truncate_ragged_lines=False,
            raise_if_empty=True,
        )
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as error:
        raise DropError(drop_id, f"unreadable CSV file: {error}", file=name) from error
    matched = _match_columns(drop_id, name, frame.columns, specs, seen)
    frame = frame.select(
        (pl.col(column) if column is not None else pl.lit(None, dtype=pl.String)).alias(spec)
        for spec, column in matched.items()
    )

    def scan(row_index: str | None, offset: int) -> pl.LazyFrame:
        scanned = frame.lazy()
        return scanned if row_index is None else scanned.with_row_index(row_index, offset)

    return DropFile(frame.height, scan)


def open_drop(landing: StateStore, drop_id: str, contract: DropContract | None = None) -> Drop:
    """Check a whole drop against the contract's columns; raise DropError if it is unusable.

    Without a contract: the built-in mapping in an org as Salesforce ships it.
    """
    contract = contract or default_contract()
    manifest = read_manifest(landing, drop_id)
    if manifest.row_count == 0 or not manifest.files:
        raise DropError(drop_id, "the drop is empty (no rows): refusing to treat it as a night")
    file_format = _file_format(drop_id, manifest.files)
    for name in manifest.files:
        if not landing.exists(f"{drop_id}/{name}"):
            raise DropError(drop_id, "listed in the manifest but missing", file=name)
    specs, seen = contract.specs, DropColumns()
    if file_format == "parquet":
        files = _parquet_files(landing, drop_id, manifest.files, specs, seen)
    else:
        files = [
            _csv_file(landing, drop_id, name, specs, seen, contract.csv_delimiter)
            for name in manifest.files
        ]
    total = sum(part.rows for part in files)
    if total != manifest.row_count:
        raise DropError(
            drop_id,
            f"the files hold {total:,} rows but the manifest says {manifest.row_count:,}",
            file=MANIFEST_NAME,
        )
    return Drop(manifest, file_format, files, seen)
