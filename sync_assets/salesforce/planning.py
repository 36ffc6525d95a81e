"""Cutting staged rows into Bulk jobs: size limits, account-aligned cuts, and lanes of dependent jobs."""

import io
import math
from itertools import pairwise

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from sync_assets.state.columns import ACCOUNT_EXTERNAL_ID_FIELD, INTERNAL_PREFIX

# Salesforce processes a job in internal batches of this many records, in parallel (Bulk API 2.0
# Developer Guide, "How Requests Are Processed").
SALESFORCE_INTERNAL_BATCH = 10_000
# 150 MB base64 ≈ 100 MB raw per upload; keep 1 MiB clear of simple-salesforce's 100 MiB check.
MAX_UPLOAD_BYTES = 100 * 1024 * 1024 - 1024 * 1024


class PlanLimits(BaseModel):
    """How big one Bulk job may get, and whether cuts respect account boundaries.

    With jobs of at most one internal batch (10,000 records) cut between accounts, no two batches
    that run at the same time hold the same parent Account lock. Larger jobs are split by Salesforce
    into batches that run in parallel on arbitrary 10,000-row boundaries, which reintroduces lock
    contention inside the job, so the default stays at one internal batch.
    """

    max_records: int = Field(default=SALESFORCE_INTERNAL_BATCH, ge=1, le=150_000_000)
    max_bytes: int = Field(default=MAX_UPLOAD_BYTES, ge=1024, le=MAX_UPLOAD_BYTES)
    account_aligned: bool = True
    tail_records: int | None = Field(
        default=1_500,
        ge=1,
        description="A plan's last job, when it holds at most half of `max_records` and more "
        "than this, is cut (between accounts) into even pieces of at most about this many "
        "records; None keeps it whole. See `_cut_tail`.",
    )


class JobSlice(BaseModel):
    """Rows ``[start, end)`` of the frame being planned, sent as one Bulk job.

    Slices in the same ``lane`` share a parent Account (one account larger than a job) and must run
    one after another; slices in different lanes may run concurrently.
    """

    start: int
    end: int
    lane: int
    csv_bytes: int

    @property
    def records(self) -> int:
        return self.end - self.start


def send_columns(frame: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """The Salesforce columns of staged rows; ``_row_hash``/``_change`` are ours, never sent."""
    names = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    return [name for name in names if not name.startswith(INTERNAL_PREFIX)]


def build_csv(rows: pl.DataFrame) -> bytes:
    """The upload body: header plus rows, comma-separated, LF line endings, UTF-8.

    Written as bytes: as a `str`, text with any non-ASCII character (accented names) is decoded
    into Python's wide form and encoded back, 2.5x the CPU of the writing itself.
    """
    body = io.BytesIO()
    rows.select(send_columns(rows)).write_csv(body, line_terminator="\n")
    return body.getvalue()


def csv_header_bytes(columns: list[str]) -> int:
    return len(pl.DataFrame(schema=dict.fromkeys(columns, pl.String)).write_csv().encode("utf-8"))


def csv_row_bytes(rows: pl.DataFrame) -> pl.Series:
    """Exact size of each row as :func:`build_csv` writes it (polars' "necessary" quoting)."""
    return rows.select(csv_row_bytes_expr(send_columns(rows))).to_series()


def csv_row_bytes_expr(columns: list[str]) -> pl.Expr:
    """:func:`csv_row_bytes` as an expression over the Salesforce `columns` (e.g. for a scan)."""
    field_bytes = [_field_bytes(pl.col(name)) for name in columns]
    separators_and_newline = len(columns)
    return (pl.sum_horizontal(field_bytes) + separators_and_newline).alias("csv_bytes")


def _field_bytes(value: pl.Expr) -> pl.Expr:
    text = value.cast(pl.String)
    needs_quotes = text.str.contains(r'[,"\n\r]') | (text == "")
    escaped_quotes = text.str.count_matches('"', literal=True)
    return (text.str.len_bytes() + needs_quotes.cast(pl.Int64) * 2 + escaped_quotes).fill_null(0)


def plan_jobs(
    rows: pl.DataFrame,
    limits: PlanLimits,
    account_column: str = ACCOUNT_EXTERNAL_ID_FIELD,
    *,
    sizes: pl.Series | None = None,
    header_bytes: int | None = None,
) -> list[JobSlice]:
    """Cut ``rows`` (sorted by account) into jobs within ``limits``.

    Account-aligned cuts fall only where the account changes, as late as the limits allow. An
    account bigger than one job is cut inside itself, and its pieces share one lane. ``sizes``
    (each row's CSV bytes) and ``header_bytes`` are measured from ``rows`` unless given, so
    ``rows`` may then hold only the account column.
    """
    total = rows.height
    if total == 0:
        return []
    if header_bytes is None:
        header_bytes = csv_header_bytes(send_columns(rows))
    budget = limits.max_bytes - header_bytes
    row_bytes = (csv_row_bytes(rows) if sizes is None else sizes).to_numpy().astype(np.int64)
    if int(row_bytes.max()) > budget:
        raise ValueError(
            f"A staged row is larger than one Bulk upload ({limits.max_bytes:,} bytes)."
        )
    prefix_bytes = np.concatenate(([0], np.cumsum(row_bytes)))
    run_ends = (
        _run_ends(rows, account_column) if limits.account_aligned else np.arange(1, total + 1)
    )
    run_end_bytes = prefix_bytes[run_ends]

    slices: list[JobSlice] = []
    start, lane = 0, -1
    while start < total:
        record_limit = start + limits.max_records
        byte_limit = prefix_bytes[start] + budget
        fitting_runs = min(
            int(np.searchsorted(run_ends, record_limit, side="right")),
            int(np.searchsorted(run_end_bytes, byte_limit, side="right")),
        )
        starts_new_run = start == 0 or _is_run_end(run_ends, start)
        if fitting_runs > 0 and run_ends[fitting_runs - 1] > start:
            end = int(run_ends[fitting_runs - 1])
        else:
            # One account alone exceeds a job: cut inside it, at the record or byte limit.
            current_run_end = int(run_ends[np.searchsorted(run_ends, start, side="right")])
            byte_cut = int(np.searchsorted(prefix_bytes, byte_limit, side="right")) - 1
            end = min(record_limit, byte_cut, current_run_end)
        if starts_new_run:
            lane += 1
        slices.append(
            JobSlice(
                start=start,
                end=end,
                lane=lane,
                csv_bytes=int(prefix_bytes[end] - prefix_bytes[start])
                + (limits.max_bytes - budget),
            )
        )
        start = end
    return _cut_tail(slices, limits, run_ends, prefix_bytes)


def _cut_tail(
    slices: list[JobSlice], limits: PlanLimits, run_ends: np.ndarray, prefix_bytes: np.ndarray
) -> list[JobSlice]:
    """The plan with its last job cut into pieces of about `PlanLimits.tail_records` records.

    The org takes jobs first come first served: a partition's last job, a remainder, reaches its
    queue after every full job, and while it runs the slots that finished theirs stand idle. Cut
    into pieces, it runs on several slots at once. Measured with a model of the org's queue on
    section 8's drop (`uv run python -m benchmarks.packing`, 500 arrival orders): two more jobs
    than 34 took the median org span from 403 s to 379 s (the minimum: 360 s); each job costs
    three or four API calls. A job cut inside one account (its lane goes on) stays whole: its
    pieces would run one after another.
    """
    if limits.tail_records is None or len(slices) < 2:
        return slices
    last = slices[-1]
    if (
        2 * last.records > limits.max_records
        or last.records <= limits.tail_records
        or last.lane == slices[-2].lane
    ):
        return slices
    inner_ends = run_ends if limits.account_aligned else np.arange(last.start + 1, last.end)
    inner_ends = inner_ends[(inner_ends > last.start) & (inner_ends < last.end)]
    if len(inner_ends) == 0:
        return slices
    pieces = math.ceil(last.records / limits.tail_records)
    targets = [last.start + last.records * k / pieces for k in range(1, pieces)]
    cuts = sorted({int(inner_ends[np.abs(inner_ends - target).argmin()]) for target in targets})
    header_bytes = last.csv_bytes - int(prefix_bytes[last.end] - prefix_bytes[last.start])
    bounds = [last.start, *cuts, last.end]
    return slices[:-1] + [
        JobSlice(
            start=start,
            end=end,
            lane=last.lane + number,
            csv_bytes=int(prefix_bytes[end] - prefix_bytes[start]) + header_bytes,
        )
        for number, (start, end) in enumerate(pairwise(bounds))
    ]


def _is_run_end(run_ends: np.ndarray, position: int) -> bool:
    """Whether an account's run of rows ends exactly at ``position``."""
    index = int(np.searchsorted(run_ends, position, side="left"))
    return index < len(run_ends) and int(run_ends[index]) == position


def _run_ends(rows: pl.DataFrame, account_column: str) -> np.ndarray:
    """Exclusive end positions of each run of equal account keys."""
    account = pl.col(account_column)
    last_of_run = (account != account.shift(-1)).fill_null(True)
    return (rows.select(last_of_run.arg_true()).to_series().to_numpy().astype(np.int64)) + 1


def group_lanes(slices: list[JobSlice]) -> list[list[JobSlice]]:
    """Slices grouped by lane, in plan order; each inner list runs sequentially."""
    lanes: dict[int, list[JobSlice]] = {}
    for job in slices:
        lanes.setdefault(job.lane, []).append(job)
    return list(lanes.values())
