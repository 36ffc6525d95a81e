"""A query job's results on disk: one CSV file and the byte offset of every record in it.

SQLite formats each record's CSV line as it runs the compiled query (set-based: Python handles
a chunk of finished lines, never a value), and the lines are written once, chunk by chunk, while
the job runs. A page of results is then a byte range of the file behind the header line, so
serving any page by locator takes the same small memory however many records the job found.

Values are written as Salesforce's Bulk query CSV shows them (query walkthrough and "Get Results
for a Query Job" examples): every header name and value double-quoted, ``true``/``false``, dates
``yyyy-MM-dd``, datetimes ``yyyy-MM-ddTHH:mm:ss.SSSZ``, null as ``""`` (Bulk CSV cannot tell null
from empty, jsforce#640).
"""

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

import numpy as np

from sync_assets.sandbox.metadata import Catalog
from sync_assets.sandbox.objects import FieldDef
from sync_assets.sandbox.soql.compiler import CompiledQuery
from sync_assets.sandbox.upload import DELIMITERS, LINE_ENDINGS

_OFFSET = np.dtype("<i8")
_READ_CHUNK = 1 << 20
_LINE = itemgetter(0)


@dataclass(frozen=True)
class ResultColumn:
    """A selected column: its header (``Name``, ``Account.External_Id__c``) and its field."""

    label: str
    field: FieldDef

    def value_sql(self, column: str) -> str:
        """SQL for the stored value as the CSV shows it, unquoted; ``printf`` writes null as ``""``."""
        if self.field.type == "boolean":
            return f"iif({column}, 'true', 'false')"
        if self.field.type == "datetime":
            return f"replace({column}, '+0000', 'Z')"
        if self.field.type in ("string", "textarea", "picklist"):
            return f"""replace({column}, '"', '""')"""
        if self.field.type in ("double", "currency", "percent"):
            return _round_trip_sql(column)
        return column


def _round_trip_sql(column: str) -> str:
    """SQL for a stored number as the shortest text (15, 16 or 17 digits) that reads back as it.

    Numbers are stored as sent, more decimal places than the field's scale included (the API
    keeps them, ``convert``); SQLite's own text of a REAL has 15 significant digits, which would
    show ``0.35000000000000003`` as ``0.35``. Most values need no more than 15 and cost one check.
    """
    digits = [f"printf('%!.{n}g', {column})" for n in (15, 16, 17)]
    return (
        f"CASE WHEN typeof({column}) <> 'real' OR CAST({digits[0]} AS REAL) = {column} "
        f"THEN {column} WHEN CAST({digits[1]} AS REAL) = {column} THEN {digits[1]} "
        f"ELSE {digits[2]} END"
    )


def result_columns(compiled: CompiledQuery, catalog: Catalog) -> list[ResultColumn]:
    """The fields behind a compiled query's columns (relationship columns: the parent's field).

    ``catalog`` is the one the query was compiled with.
    """
    columns = []
    for label in compiled.columns:
        relationship, dot, name = label.rpartition(".")
        sobject = catalog.objects[compiled.object_name]
        if dot:
            lookup = sobject.relationship(relationship)
            assert lookup is not None and lookup.reference_to is not None
            sobject = catalog.objects[lookup.reference_to]
        field = sobject.field(name)
        assert field is not None
        columns.append(ResultColumn(label, field))
    return columns


def lines_sql(
    compiled: CompiledQuery, catalog: Catalog, column_delimiter: str, line_ending: str
) -> tuple[str, list[ResultColumn]]:
    """SQL giving each record's CSV line, its terminator included, with one ``printf`` a record.

    The compiled query becomes a CTE whose column list names its columns by position, as a
    relationship field and a field of the root object may share a name.
    """
    columns = result_columns(compiled, catalog)
    names = [f"c{i}" for i in range(len(columns))]
    template = DELIMITERS[column_delimiter].join('"%s"' for _ in columns)
    terminator = ", ".join(str(ord(c)) for c in LINE_ENDINGS[line_ending])
    values = ", ".join(c.value_sql(n) for c, n in zip(columns, names, strict=True))
    sql = (
        f"WITH result({', '.join(names)}) AS ({compiled.sql}) "
        f"SELECT printf('{template}' || char({terminator}), {values}) FROM result"
    )
    return sql, columns


class QueryResults:
    """``results.csv`` (header line, then the records) and ``offsets.bin`` in a job's directory.

    ``offsets.bin`` holds little-endian int64s: where record ``i`` starts, for every record, then
    the file's length; the first one is also the header line's length.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.csv = directory / "results.csv"
        self.offsets = directory / "offsets.bin"

    def write(
        self,
        chunks: Iterable[list[tuple[str]]],
        columns: list[ResultColumn],
        column_delimiter: str,
        line_ending: str,
        keep_going: Callable[[], bool],
    ) -> int | None:
        """Write chunks of 1-tuples of lines; the number of records, or None if told to stop.

        Files are written under temporary names and renamed at the end, so a crash or an abort
        never leaves a results file that looks complete.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        delimiter = DELIMITERS[column_delimiter]
        header = (
            delimiter.join(f'"{c.label}"' for c in columns) + LINE_ENDINGS[line_ending]
        ).encode()
        partial_csv = self.csv.with_suffix(".part")
        partial_offsets = self.offsets.with_suffix(".part")
        end, count, stopped = len(header), 0, False
        with partial_csv.open("wb") as data, partial_offsets.open("wb") as offsets:
            data.write(header)
            offsets.write(np.array([end], dtype=_OFFSET).tobytes())
            for rows in chunks:
                if not keep_going():
                    stopped = True
                    break
                # C-level iteration: no Python code runs per record.
                lines = list(map(str.encode, map(_LINE, rows)))
                data.write(b"".join(lines))
                ends = np.fromiter(map(len, lines), dtype=_OFFSET, count=len(lines)).cumsum()
                ends += end
                offsets.write(ends.tobytes())
                end = int(ends[-1])
                count += len(rows)
        if stopped:
            partial_csv.unlink()
            partial_offsets.unlink()
            return None
        os.replace(partial_csv, self.csv)
        os.replace(partial_offsets, self.offsets)
        return count

    def page(self, first: int, count: int) -> Iterator[bytes]:
        """The header line, then records ``first`` to ``first + count``, a MiB at a time."""
        descriptor = os.open(self.offsets, os.O_RDONLY)
        try:
            header_end, start, stop = (
                _offset(descriptor, index) for index in (0, first, first + count)
            )
        finally:
            os.close(descriptor)
        with self.csv.open("rb") as source:
            yield source.read(header_end)
            source.seek(start)
            remaining = stop - start
            while remaining > 0:
                chunk = source.read(min(_READ_CHUNK, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk


def _offset(descriptor: int, index: int) -> int:
    raw = os.pread(descriptor, _OFFSET.itemsize, index * _OFFSET.itemsize)
    return int(np.frombuffer(raw, dtype=_OFFSET)[0])
