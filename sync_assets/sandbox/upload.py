"""Parsing an ingest job's uploaded CSV, with the job-level failures of Bulk API 2.0 (reference §1.13).

A well-formed upload (every record has the header's width, the job's line ending, proper quoting)
is recognised by one pass of polars' linear-time regex engine (outside the GIL) and parsed by
polars; anything else takes the strict ``csv`` module path, which finds the exact job-level error.
"""

import csv
import io
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from sync_assets.sandbox.objects import OBJECTS, FieldDef, ObjectDef

DELIMITERS: dict[str, str] = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
LINE_ENDINGS: dict[str, str] = {"LF": "\n", "CRLF": "\r\n"}
MAX_HEADER_CHARS = 32_000
UNESCAPED_QUOTE = (
    "InvalidBatch : Failed to parse CSV. Found unescaped quote. "
    "A value with quote should be within a quote"
)

# Salesforce limits a field to 131,072 characters with a row error (STRING_TOO_LONG), not a parse
# failure, so the csv module must not stop earlier.
csv.field_size_limit(sys.maxsize)


class UploadError(Exception):
    """The upload cannot be processed: the job fails with this ``errorMessage``, nothing applied."""

    def __init__(
        self,
        error_message: str,
        header: list[str] | None = None,
        rows: list[list[str]] | None = None,
    ) -> None:
        super().__init__(error_message)
        self.error_message = error_message
        # the parsed data when the CSV itself was readable (served as unprocessed records)
        self.header = header or []
        self.rows = rows or []


@dataclass(frozen=True)
class Column:
    """One CSV column: its header as uploaded and the field it writes.

    For a relationship column (``Account.External_Id__c``) ``field`` is the lookup (``AccountId``)
    and ``via`` the parent's field the value is matched on.
    """

    index: int
    header: str
    field: FieldDef
    via: FieldDef | None = None


@dataclass(frozen=True)
class ParsedUpload:
    """The header, its fields, and the rows: one String column per CSV column, named by position."""

    header: list[str]
    columns: list[Column]
    frame: pl.DataFrame

    @property
    def count(self) -> int:
        return self.frame.height

    def batch(self, first_row: int, row_count: int) -> pl.DataFrame:
        return self.frame.slice(first_row, row_count)


def column_names(width: int) -> list[str]:
    """Names of a parsed frame's columns: the CSV column positions."""
    return [str(i) for i in range(width)]


def rows_frame(rows: list[list[str]], width: int) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=dict.fromkeys(column_names(width), pl.String), orient="row")


def _cell(delimiter: str) -> str:
    d = re.escape(delimiter)
    return rf'(?:"[^"]*+(?:""[^"]*+)*+"|[^{d}"\r\n]*+)'


def _structure_pattern(delimiter: str, terminator: str) -> re.Pattern[str]:
    """A whole-file CSV grammar: quoted fields may hold anything, unquoted ones no quote or newline."""
    d, cell = re.escape(delimiter), _cell(delimiter)
    return re.compile(rf"(?:{cell}(?:{d}{cell})*+(?:{terminator}|\Z))*+")


def _exact_pattern(delimiter: str, line_ending: str, width: int) -> str:
    """The grammar of a clean upload in polars' (Rust) regex syntax.

    ``width`` cells a record, each record ended by the job's terminator (the last one may end the
    text instead).
    """
    d = f"\\x{{{ord(delimiter):X}}}"
    cell = rf'(?:"(?:[^"]|"")*"|[^{d}"\r\n]*)'
    terminator = {"LF": r"\n", "CRLF": r"\r\n"}[line_ending]
    return rf"\A(?:{cell}(?:{d}{cell}){{{width - 1}}}(?:{terminator}|\z))*\z"


def _is_clean(text: str, delimiter: str, line_ending: str, width: int) -> bool:
    try:
        matched = pl.Series([text]).str.contains(_exact_pattern(delimiter, line_ending, width))
    except pl.exceptions.ComputeError:
        # A pattern too large for the regex engine (a very wide header): the strict path decides.
        return False
    return bool(matched[0])


def _check_structure(text: str, delimiter: str, line_ending: str) -> None:
    """Raise for stray quotes (BOM included) and for record terminators that differ from the job's.

    Only terminators outside quotes count: a quoted value may hold CR and LF. The regex pass is
    skipped when the text has no quote, where simple counts decide.
    """
    expected = LINE_ENDINGS[line_ending]
    mismatch = UploadError(
        "ClientInputError : LineEnding is invalid on user data. "
        f"Current LineEnding setting is {line_ending}"
    )
    if '"' not in text:
        if line_ending == "LF" and "\r" in text:
            raise mismatch
        if line_ending == "CRLF" and not (
            text.count("\n") == text.count("\r\n") == text.count("\r")
        ):
            raise mismatch
        return
    if _structure_pattern(delimiter, re.escape(expected)).fullmatch(text):
        return
    if _structure_pattern(delimiter, r"\r\n|\n|\r").fullmatch(text):
        raise mismatch
    raise UploadError(UNESCAPED_QUOTE)


def plan_columns(sobject: ObjectDef, header: list[str]) -> list[Column]:
    """Resolve header names to fields; unknown names fail the job as Salesforce does."""
    columns: list[Column] = []
    seen: set[str] = set()
    for index, name in enumerate(header):
        column = resolve_column(sobject, index, name)
        if column is None:
            raise UploadError(f"InvalidBatch : Field name not found : {name}")
        key = name.lower()
        if key in seen:
            raise UploadError(f"InvalidBatch : Duplicate field name: {name}")
        seen.add(key)
        columns.append(column)
    return columns


def resolve_column(sobject: ObjectDef, index: int, name: str) -> Column | None:
    """The column a header name writes (``Field`` or ``Relationship.IndexedField``), or None."""
    relationship, dot, parent_field_name = name.partition(".")
    if not dot:
        found = sobject.field(name)
        return None if found is None else Column(index, name, found)
    lookup = sobject.relationship(relationship)
    if lookup is None or lookup.reference_to is None:
        return None
    parent = OBJECTS.get(lookup.reference_to)
    via = parent.field(parent_field_name) if parent else None
    if via is None or not via.id_lookup or via.name == "Name":
        return None
    return Column(index, name, lookup, via)


def parse_upload(
    data: bytes, sobject: ObjectDef, column_delimiter: str, line_ending: str
) -> ParsedUpload:
    """Parse and check a whole upload; raise :class:`UploadError` for anything that fails the job."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UploadError(
            f"InvalidBatch : Failed to parse CSV. Invalid UTF-8 at byte {error.start}"
        ) from None
    delimiter = DELIMITERS[column_delimiter]
    header = _clean_header(text, delimiter, line_ending)
    if header is None:
        return _parse_strictly(text, sobject, delimiter, line_ending)
    frame = pl.read_csv(
        data,
        has_header=True,
        new_columns=column_names(len(header)),
        infer_schema=False,
        separator=delimiter,
        quote_char='"',
        empty_string_is_null=False,
        raise_if_empty=False,
        truncate_ragged_lines=False,
    )
    _check_header_length(header, delimiter)
    try:
        columns = plan_columns(sobject, header)
    except UploadError as error:
        raise UploadError(error.error_message, header, [list(r) for r in frame.rows()]) from None
    return ParsedUpload(header=header, columns=columns, frame=frame)


def _clean_header(text: str, delimiter: str, line_ending: str) -> list[str] | None:
    """The header of an upload that the fast path may parse; None for anything else.

    That is at least two columns, every record that wide, the job's line ending, proper quoting.
    """
    try:
        header = next(csv.reader(_lines(text), delimiter=delimiter, strict=True))
    except (csv.Error, StopIteration):
        return None
    if len(header) < 2 or not _is_clean(text, delimiter, line_ending, len(header)):
        return None
    return header


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their ends, lazily: reading the header must not copy the upload."""
    start = 0
    while start < len(text):
        end = text.find("\n", start) + 1 or len(text)
        yield text[start:end]
        start = end


def _check_header_length(header: list[str], delimiter: str) -> None:
    if len(delimiter.join(header)) > MAX_HEADER_CHARS:
        raise UploadError(f"InvalidBatch : The header is longer than {MAX_HEADER_CHARS} characters")


def _parse_strictly(
    text: str, sobject: ObjectDef, delimiter: str, line_ending: str
) -> ParsedUpload:
    _check_structure(text, delimiter, line_ending)
    try:
        records = [
            r
            for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
            if r
        ]
    except csv.Error:
        raise UploadError(UNESCAPED_QUOTE) from None
    if not records:
        raise UploadError("ClientInputError : No content found in the CSV data")
    header, rows = records[0], records[1:]
    _check_header_length(header, delimiter)
    try:
        columns = plan_columns(sobject, header)
    except UploadError as error:
        raise UploadError(error.error_message, header, rows) from None
    width = len(header)
    if set(map(len, rows)) - {width}:
        number, row = next((n, r) for n, r in enumerate(rows, start=2) if len(r) != width)
        raise UploadError(
            f"ClientInputError : Row {number} has {len(row)} columns; the header has {width}",
            header,
            rows,
        )
    return ParsedUpload(header=header, columns=columns, frame=rows_frame(rows, width))
