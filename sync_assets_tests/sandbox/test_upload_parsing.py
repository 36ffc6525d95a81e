"""The upload parser's two paths agree: polars for clean uploads, the csv module for the rest."""

import csv
import io
import random

import pytest

from sync_assets.sandbox import upload
from sync_assets.sandbox.objects import OPPORTUNITY
from sync_assets.sandbox.upload import DELIMITERS, LINE_ENDINGS, UploadError, parse_upload

HEADER = ["External_Id__c", "Name", "Description", "NextStep"]
PIECES = [
    "a",
    "Zürich 東京 😀",
    " ",
    '"',
    '""',
    ",",
    ";",
    "\t",
    "|",
    "^",
    "`",
    "\n",
    "\r\n",
    "\r",
    "#N/A",
]


def _random_rows(rng: random.Random, count: int) -> list[list[str]]:
    return [
        ["".join(rng.choices(PIECES, k=rng.randint(0, 4))) for _ in HEADER] for _ in range(count)
    ]


def _reference(text: str, delimiter: str) -> list[list[str]]:
    """The records the csv module reads, blank lines skipped (what the strict path keeps)."""
    return [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if r]


def _csv_text(rows: list[list[str]], delimiter: str, terminator: str, quote_all: bool) -> str:
    """CSV as clients write it: quoted when needed (a delimiter, quote, CR or LF inside) or always."""

    def cell(value: str) -> str:
        if quote_all or any(c in value for c in (delimiter, '"', "\r", "\n")):
            return '"' + value.replace('"', '""') + '"'
        return value

    return "".join(delimiter.join(map(cell, row)) + terminator for row in rows)


@pytest.mark.parametrize("line_ending", sorted(LINE_ENDINGS))
@pytest.mark.parametrize("column_delimiter", sorted(DELIMITERS))
def test_parsed_rows_match_the_csv_module(
    column_delimiter: str, line_ending: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Clean uploads must take the polars path; the csv module path is the reference here.
    monkeypatch.setattr(upload, "_parse_strictly", None)
    rng = random.Random(f"{column_delimiter}-{line_ending}")
    delimiter, terminator = DELIMITERS[column_delimiter], LINE_ENDINGS[line_ending]
    for quote_all in (False, True):
        rows = _random_rows(rng, 300)
        text = _csv_text([HEADER, *rows], delimiter, terminator, quote_all)
        parsed = parse_upload(text.encode(), OPPORTUNITY, column_delimiter, line_ending)
        assert parsed.header == HEADER
        assert [list(r) for r in parsed.frame.rows()] == rows == _reference(text, delimiter)[1:]


@pytest.mark.parametrize(
    ("data", "rows"),
    [
        ("Name,StageName\nA,B", [["A", "B"]]),
        ("Name,StageName\n,\n", [["", ""]]),
        ('Name,StageName\n"",""\n', [["", ""]]),
        ("Name,StageName\n\nA,B\n\n", [["A", "B"]]),
        ("Name\nA\n\nB\n", [["A"], ["B"]]),
    ],
    ids=["no-final-newline", "empty-cells", "quoted-empty-cells", "blank-lines", "one-column"],
)
def test_edge_shapes_parse_like_the_csv_module(data: str, rows: list[list[str]]) -> None:
    parsed = parse_upload(data.encode(), OPPORTUNITY, "COMMA", "LF")
    assert [list(r) for r in parsed.frame.rows()] == rows == _reference(data, ",")[1:]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("Name,StageName\nA,B\r\n", "ClientInputError : LineEnding is invalid on user data."),
        ('Name,StageName\nA,B"c\n', "InvalidBatch : Failed to parse CSV. Found unescaped quote."),
        ("Name,StageName\nA,B,C\n", "ClientInputError : Row 2 has 3 columns; the header has 2"),
        ("Name,Bogus\nA,B\n", "InvalidBatch : Field name not found : Bogus"),
    ],
    ids=["line-ending", "stray-quote", "too-wide", "unknown-field"],
)
def test_unclean_uploads_still_fail_the_job(data: str, message: str) -> None:
    with pytest.raises(UploadError) as raised:
        parse_upload(data.encode(), OPPORTUNITY, "COMMA", "LF")
    assert raised.value.error_message.startswith(message)
