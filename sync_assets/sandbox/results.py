"""A job's files on disk: its uploaded CSV and per-batch result CSVs, served as the result endpoints.

Result CSVs (reference §1.9): every value double-quoted, the ``sf__`` header names quoted, the
original header names as uploaded, a header line even when there are no rows. They use the job's
column delimiter and line ending. Batch files are written by polars (``quote_style="always"`` quotes
exactly as ``csv.QUOTE_ALL`` does).
"""

import csv
import io
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from sync_assets.sandbox.upload import DELIMITERS, LINE_ENDINGS

SUCCESSFUL = "successfulResults"
FAILED = "failedResults"
UNPROCESSED = "unprocessedrecords"
_PREFIXES = {SUCCESSFUL: ("sf__Id", "sf__Created"), FAILED: ("sf__Id", "sf__Error")}
_FILE_TAGS = {SUCCESSFUL: "ok", FAILED: "err"}
_READ_CHUNK = 1 << 20
# Rows of an unprocessedrecords download: a parsed batch, or the raw rows of an upload whose rows
# could not all be put in a frame (a job-level failure such as a row of the wrong width).
UnprocessedRows = pl.DataFrame | list[list[str]]


@dataclass(frozen=True)
class BatchStatus:
    """Per-row outcome of a batch: ``sf__Id``, the error (None on success) and ``sf__Created``."""

    record_ids: list[str]
    errors: list[str | None]
    created: list[bool]

    def frames(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The successful and the failed result rows of ``rows`` (the batch as uploaded)."""
        status = pl.DataFrame(
            {"sf__Id": self.record_ids, "sf__Error": self.errors, "sf__Created": self.created},
            schema={"sf__Id": pl.String, "sf__Error": pl.String, "sf__Created": pl.Boolean},
        )
        combined = pl.concat([status, rows], how="horizontal")
        failed = pl.col("sf__Error").is_not_null()
        created = pl.when(pl.col("sf__Created")).then(pl.lit("true")).otherwise(pl.lit("false"))
        successes = combined.filter(~failed).select(
            "sf__Id", created.alias("sf__Created"), *rows.columns
        )
        failures = combined.filter(failed).select("sf__Id", "sf__Error", *rows.columns)
        return successes, failures


class JobFiles:
    """The directory of one job under ``<data_dir>/jobs``."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.dir = root / job_id

    @property
    def upload(self) -> Path:
        return self.dir / "upload.csv"

    def batch_file(self, kind: str, index: int) -> Path:
        return self.dir / f"{_FILE_TAGS[kind]}-{index:06d}.csv"

    def save_upload(self, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        partial = self.upload.with_suffix(".part")
        partial.write_bytes(data)
        os.replace(partial, self.upload)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_batch(
        self,
        index: int,
        rows: pl.DataFrame,
        status: BatchStatus,
        column_delimiter: str,
        line_ending: str,
    ) -> None:
        """Write a batch's result rows (no header), each file atomically, empty ones too."""
        self.dir.mkdir(parents=True, exist_ok=True)
        successes, failures = status.frames(rows)
        for kind, frame in ((SUCCESSFUL, successes), (FAILED, failures)):
            target = self.batch_file(kind, index)
            partial = target.with_suffix(f".{threading.get_ident()}.part")
            _write_frame(frame, partial, column_delimiter, line_ending)
            os.replace(partial, target)

    def stream_results(
        self,
        kind: str,
        header: list[str],
        batch_indexes: Iterable[int],
        column_delimiter: str,
        line_ending: str,
        rewrite: Callable[[int], None],
    ) -> Iterator[bytes]:
        """Header, then the rows of each batch; ``rewrite(index)`` rebuilds a batch's missing files.

        A batch's results are committed with its records and written to files right after, so
        a file can be missing for a moment (or after a crash); it is then rebuilt.
        """
        yield header_line(kind, header, column_delimiter, line_ending)
        for index in batch_indexes:
            path = self.batch_file(kind, index)
            if not path.exists():
                rewrite(index)
            with path.open("rb") as source:
                while chunk := source.read(_READ_CHUNK):
                    yield chunk


def header_line(kind: str, header: list[str], column_delimiter: str, line_ending: str) -> bytes:
    delimiter = DELIMITERS[column_delimiter]
    names = [f'"{name}"' for name in _PREFIXES.get(kind, ())] + header
    return (delimiter.join(names) + LINE_ENDINGS[line_ending]).encode("utf-8")


def _write_frame(
    frame: pl.DataFrame, target: Path | io.BytesIO, column_delimiter: str, line_ending: str
) -> None:
    frame.write_csv(
        target,
        include_header=False,
        separator=DELIMITERS[column_delimiter],
        line_terminator=LINE_ENDINGS[line_ending],
        quote_style="always",
    )


def _frame_bytes(frame: pl.DataFrame, column_delimiter: str, line_ending: str) -> bytes:
    buffer = io.BytesIO()
    _write_frame(frame, buffer, column_delimiter, line_ending)
    return buffer.getvalue()


def _csv_bytes(rows: list[list[str]], column_delimiter: str, line_ending: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(
        buffer,
        delimiter=DELIMITERS[column_delimiter],
        lineterminator=LINE_ENDINGS[line_ending],
        quoting=csv.QUOTE_ALL,
    )
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def stream_rows(
    kind: str,
    header: list[str],
    rows: Iterable[UnprocessedRows],
    column_delimiter: str,
    line_ending: str,
) -> Iterator[bytes]:
    """A result CSV built from rows in memory (unprocessed records), one chunk per batch."""
    yield header_line(kind, header, column_delimiter, line_ending)
    for batch in rows:
        if isinstance(batch, pl.DataFrame):
            if batch.height:
                yield _frame_bytes(batch, column_delimiter, line_ending)
        elif batch:
            yield _csv_bytes(batch, column_delimiter, line_ending)
