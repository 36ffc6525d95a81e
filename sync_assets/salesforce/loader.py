"""The Bulk API 2.0 loader: rows to send → upsert jobs in flight → what Salesforce confirmed and what failed."""

import logging
import random
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from pydantic import BaseModel, Field

from sync_assets.salesforce.bulk_api import BulkApi, BulkApiUnavailableError, JobInfo, ResultKind
from sync_assets.salesforce.checkpoint import (
    CheckpointedJob,
    CheckpointStore,
    JobStatus,
    RowStatus,
)
from sync_assets.salesforce.connection import SalesforceConnection
from sync_assets.salesforce.errors import (
    BulkApiError,
    DailyApiLimitError,
    ErrorClass,
    LoadInvariantError,
    LoadStoppedError,
    SalesforceError,
    job_failure_class,
)
from sync_assets.salesforce.limits import assess_limits
from sync_assets.salesforce.planning import (
    JobSlice,
    PlanLimits,
    build_csv,
    group_lanes,
    plan_jobs,
)
from sync_assets.salesforce.results import (
    failed_outcomes,
    job_outcome,
    successful_outcomes,
    uniform_outcome,
    unprocessed_outcomes,
)
from sync_assets.salesforce.retry import PollSchedule, RetryPolicy
from sync_assets.salesforce.staged_rows import CSV_BYTES, StagedRows
from sync_assets.state.columns import (
    ACCOUNT_EXTERNAL_ID_FIELD,
    EXTERNAL_ID_FIELD,
    POSITION,
    ROW_HASH,
)

log = logging.getLogger(__name__)

SUCCESS_STATUSES = (RowStatus.CREATED.value, RowStatus.UPDATED.value)
ProgressCallback = Callable[[int, int], None]
"""Called with (rows confirmed so far, rows to send) after every finished job."""
JobEventHook = Callable[[str, str], None]
"""Called with (event, job id) for "created" and "closed"; a test raises here to simulate a crash."""


class LoaderSettings(BaseModel):
    """Knobs of the loader; the defaults suit a 2M-row night split over 10 partitions."""

    sobject: str = "Opportunity"
    external_id_field: str = EXTERNAL_ID_FIELD
    account_column: str = ACCOUNT_EXTERNAL_ID_FIELD
    plan: PlanLimits = Field(default_factory=PlanLimits)
    # Deep enough that the org always has queued work while finished jobs are being noticed;
    # shallow enough that a job does not queue behind the whole night: an account larger than
    # one job sends its jobs one after another, each through the org's queue.
    jobs_in_flight: int = Field(default=4, ge=1, le=50)
    max_resend_rounds: int = Field(default=3, ge=0, description="Resends of transient failures.")
    resend_pause: float = Field(
        default=1.0,
        ge=0,
        description="Seconds before the first resend round; doubled (jittered) for each later one.",
    )
    job_timeout: float = Field(default=3600.0, gt=0, description="Longest wait for one job.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    poll: PollSchedule = Field(default_factory=PollSchedule)
    check_limits: bool = True


class LoadResult(BaseModel):
    """What one load of one partition of one drop did; ``sent = succeeded + failed`` always."""

    drop_id: str
    partition: str
    sent: int = Field(description="Rows to send for this drop and partition.")
    succeeded: int
    created: int
    updated: int
    failed: int = Field(description="Rows that failed for good (validation, or retries used up).")
    retried: int = Field(description="Row resends after transient failures.")
    uploaded: int = Field(
        description="Rows uploaded by this call (0 for rows collected on resume)."
    )
    job_ids: list[str]
    jobs_resumed: int = 0
    api_calls: int
    http_retries: int
    logins: int
    orphan_jobs_aborted: list[str] = Field(default_factory=list)
    duration_seconds: float
    records_per_second: float
    failed_by_reason: dict[str, int]
    failed_file: str | None = Field(
        default=None, description="Where the failed rows are kept, once recorded in the state."
    )


@dataclass(frozen=True)
class LoadOutcome:
    """A load's counts, the rows Salesforce confirmed, and the rows that failed for good.

    `confirmed`: external id, row hash, Salesforce id. `failed`: every column the row was sent
    with, plus Salesforce's error code, error and job id.
    """

    result: LoadResult
    confirmed: pl.DataFrame
    failed: pl.DataFrame


class LoadIncompleteError(SalesforceError):
    """Jobs were created but could not be collected; a retried run collects them from the checkpoint."""


class BulkLoader:
    """Upserts one partition's rows through Bulk API 2.0, resumably.

    Rows are cut into account-aligned jobs; up to ``jobs_in_flight`` jobs run at once (jobs that
    share an oversized account run one after another). Only the rows' keys are held; each job
    reads its own rows when it is sent (see `StagedRows`). Each job id is checkpointed the moment it
    exists; each job's outcome is checkpointed before it counts. Transient failures are resent in
    new jobs for a bounded number of rounds; everything else is a permanent failure kept with its
    Salesforce error. The loader keeps no state of its own between runs but the checkpoint it is
    given: what the caller records of the outcome (the ledger, the failed rows) is the caller's.
    """

    def __init__(
        self,
        connection: SalesforceConnection,
        settings: LoaderSettings | None = None,
        progress: ProgressCallback | None = None,
        on_job_event: JobEventHook | None = None,
        api: BulkApi | None = None,
    ) -> None:
        self.connection = connection
        self.settings = settings or LoaderSettings()
        self.api = api or BulkApi(connection, self.settings.retry)
        self._progress = progress
        self._on_job_event = on_job_event
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._confirmed = 0
        self._uploaded = 0
        self._total = 0
        self._budget_from = 0
        self._stop_reason = ""
        self._jitter = random.Random()

    def load(self, rows: pl.LazyFrame, checkpoint: CheckpointStore) -> LoadOutcome:
        """Send ``rows`` (Salesforce columns plus ``_row_hash``, sorted by account).

        Each job reads its own rows from ``rows`` when it is sent, so a scan of a file is never
        held whole. Jobs the checkpoint knows of (a crashed earlier attempt) are collected first.
        """
        started = time.monotonic()
        calls_before = (self.api.api_calls, self.api.http_retries, self.connection.logins)
        self._stop.clear()
        self._stop_reason = ""
        staged = StagedRows(rows, self.settings.account_column)
        keys = staged.keys
        self._total = keys.height
        self._uploaded = 0
        # The resend budget is per load: transient failures of an earlier run (an outage that has
        # since ended) must not stop this run from sending those rows again.
        self._budget_from = checkpoint.next_sequence

        try:
            resumed, latest = self._send_rounds(staged, checkpoint)
        except DailyApiLimitError as error:
            raise self._stopped(str(error), keys, checkpoint) from error
        if self._stop_reason:
            raise self._stopped(self._stop_reason, keys, checkpoint)

        final = self._final_statuses(latest)
        failures = self._final_outcomes(final, checkpoint.outcomes(), succeeded=False)
        orphans = self.api.abort_orphans(
            self.settings.sobject, {job.job_id for job in checkpoint.jobs}
        )
        result = self._summarise(keys, final, failures, checkpoint, started, calls_before)
        result.orphan_jobs_aborted = orphans
        result.jobs_resumed = resumed
        confirmed = self._final_outcomes(final, checkpoint.outcomes(), succeeded=True)
        return LoadOutcome(
            result=result,
            confirmed=confirmed.select(EXTERNAL_ID_FIELD, ROW_HASH, "salesforce_id"),
            failed=staged.matching(failures),
        )

    def _send_rounds(
        self, staged: StagedRows, checkpoint: CheckpointStore
    ) -> tuple[int, pl.DataFrame]:
        """Collect an earlier run's jobs, check the limits, send rounds until nothing is left.

        Returns how many jobs were resumed and each row's latest status.
        """
        keys = staged.keys
        resumed = self._collect_unfinished(checkpoint)
        # Each row's latest status (rows × every recorded outcome): once per round, not per use.
        latest = self._latest(keys, checkpoint.outcomes())
        self._confirmed = int(latest["status"].is_in(SUCCESS_STATUSES).sum())
        self._report_progress()
        # The first round's plan is also what the limits are checked against: planned once.
        todo = self._still_to_send(keys, latest)
        plan = self._plan(todo, staged.header_bytes)
        if self.settings.check_limits:
            assess_limits(self.api.limits(), plan).raise_if_short()

        for round_number in range(self.settings.max_resend_rounds + 2):
            if round_number:
                todo, plan = self._resend_plan(staged, latest, round_number)
            if todo.is_empty():
                break
            self._send_round(staged, todo, plan, checkpoint)
            latest = self._latest(keys, checkpoint.outcomes())
            if self._stop_reason:
                break
        return resumed, latest

    def _stopped(
        self, reason: str, keys: pl.DataFrame, checkpoint: CheckpointStore
    ) -> LoadStoppedError:
        """A clean stop: what Salesforce confirmed so far, for the caller to record."""
        latest = self._latest(keys, checkpoint.outcomes())
        confirmed = self._final_outcomes(latest, checkpoint.outcomes(), succeeded=True).select(
            EXTERNAL_ID_FIELD, ROW_HASH, "salesforce_id"
        )
        return LoadStoppedError(
            f"The load stopped: {reason}. Salesforce confirmed {confirmed.height:,} of "
            f"{keys.height:,} rows (recorded in the ledger); the other "
            f"{keys.height - confirmed.height:,} are not failures: the next night sends them, or "
            "a re-run once the limit has room again.",
            confirmed,
        )

    # ---- rounds and jobs -------------------------------------------------------------------

    def _plan(self, todo: pl.DataFrame, header_bytes: int, resend: bool = False) -> list[JobSlice]:
        # Resends are mostly lock failures: always cut them lock-safely, whatever the first round did.
        limits = (
            self.settings.plan.model_copy(update={"account_aligned": True})
            if resend
            else self.settings.plan
        )
        return plan_jobs(
            todo,
            limits,
            self.settings.account_column,
            sizes=todo.get_column(CSV_BYTES),
            header_bytes=header_bytes,
        )

    def _resend_plan(
        self, staged: StagedRows, latest: pl.DataFrame, round_number: int
    ) -> tuple[pl.DataFrame, list[JobSlice]]:
        """The rows a round left without a final outcome, planned for resending after a pause.

        The pause doubles each round (locks held by another integration, a CPU-heavy trigger
        or maintenance pass in seconds to minutes), drawn from its upper half like a retry.
        """
        todo = self._still_to_send(staged.keys, latest)
        if todo.is_empty():
            return todo, []
        if self.settings.resend_pause:
            pause = RetryPolicy(
                base_delay=self.settings.resend_pause,
                max_delay=self.settings.resend_pause * 2**self.settings.max_resend_rounds,
            )
            time.sleep(pause.delay(round_number - 1, self._jitter))
        return todo, self._plan(todo, staged.header_bytes, resend=True)

    def _send_round(
        self,
        staged: StagedRows,
        todo: pl.DataFrame,
        plan: list[JobSlice],
        checkpoint: CheckpointStore,
    ) -> None:
        # Longest lane first: an account larger than one job is sent job after job, and if its
        # lane started late it would end the load alone while the other threads sat idle.
        lanes = sorted(group_lanes(plan), key=len, reverse=True)
        positions = todo.get_column(POSITION)
        self._run_concurrently(
            [
                lambda lane=lane: self._run_lane(staged, positions, lane, checkpoint)
                for lane in lanes
            ]
        )

    def _run_concurrently(self, tasks: list[Callable[[], None]]) -> None:
        """Run tasks on ``jobs_in_flight`` threads; on the first error stop starting jobs, re-raise."""
        with ThreadPoolExecutor(
            max_workers=self.settings.jobs_in_flight, thread_name_prefix="bulk-job"
        ) as pool:
            futures: list[Future[None]] = [pool.submit(task) for task in tasks]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(future.exception() for future in done):
                self._stop.set()
            wait(futures)
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error

    def _run_lane(
        self,
        staged: StagedRows,
        positions: pl.Series,
        lane: list[JobSlice],
        checkpoint: CheckpointStore,
    ) -> None:
        for job in lane:
            if self._stop.is_set():
                return
            self._run_job(staged.fields(positions.slice(job.start, job.records)), checkpoint)

    def _run_job(self, rows: pl.DataFrame, checkpoint: CheckpointStore) -> None:
        keys = rows.select(EXTERNAL_ID_FIELD, ROW_HASH)
        sequence = checkpoint.reserve_sequence(keys)
        body = build_csv(rows)
        try:
            job = self.api.create_upsert_job(self.settings.sobject, self.settings.external_id_field)
        except BulkApiUnavailableError as error:
            self._record_not_run(checkpoint, keys, sequence, "", "JOB_NOT_CREATED", str(error))
            return
        checkpoint.record_created(sequence, job.id, rows.height)
        self._notify("created", job.id)
        try:
            self.api.upload(job.id, body)
            self.api.close(job.id)
        except BulkApiError as error:
            self._abandon(checkpoint, keys, sequence, job.id, str(error))
            return
        with self._lock:
            self._uploaded += rows.height
        self._notify("closed", job.id)
        self._collect(checkpoint, keys, sequence, job.id)

    def _abandon(
        self, checkpoint: CheckpointStore, keys: pl.DataFrame, sequence: int, job_id: str, why: str
    ) -> None:
        """A job that never started processing: abort it so it never will, resend its rows."""
        try:
            self.api.abort(job_id)
        except BulkApiError:
            log.warning("could not abort job %s; Salesforce drops Open jobs after 24 h", job_id)
        self._record_not_run(checkpoint, keys, sequence, job_id, "JOB_NOT_STARTED", why)

    def _record_not_run(
        self,
        checkpoint: CheckpointStore,
        keys: pl.DataFrame,
        sequence: int,
        job_id: str,
        code: str,
        why: str,
    ) -> None:
        outcome = uniform_outcome(keys, RowStatus.TRANSIENT, code, why, job_id, sequence)
        checkpoint.record_outcome(sequence, outcome, JobStatus.ABANDONED)

    def _collect(
        self, checkpoint: CheckpointStore, keys: pl.DataFrame, sequence: int, job_id: str
    ) -> None:
        info = self._wait_for(job_id)
        outcome = job_outcome(keys, self._results(info), job_id, sequence)
        checkpoint.record_outcome(sequence, outcome, JobStatus.COLLECTED)
        if (
            info.state == "Failed"
            and job_failure_class(info.errorMessage) is ErrorClass.DAILY_LIMIT
        ):
            # The org's rolling 24-hour allowance is spent: start no more jobs tonight.
            self._stop_reason = f"Bulk job {job_id} failed with {info.errorMessage}"
            self._stop.set()
        confirmed = int(outcome["status"].is_in(SUCCESS_STATUSES).sum())
        with self._lock:
            self._confirmed += confirmed
        self._report_progress()

    def _wait_for(self, job_id: str) -> JobInfo:
        deadline = time.monotonic() + self.settings.job_timeout
        intervals = self.settings.poll.intervals()
        while True:
            time.sleep(next(intervals))
            info = self.api.job_info(job_id)
            if info.is_terminal:
                return info
            if time.monotonic() > deadline:
                raise LoadIncompleteError(
                    f"Bulk job {job_id} is still {info.state} after {self.settings.job_timeout:.0f} s; "
                    "a retried run collects it from the checkpoint."
                )

    def _results(self, info: JobInfo) -> list[pl.DataFrame]:
        with tempfile.TemporaryDirectory(prefix=f"bulk-{info.id}-") as scratch:
            files = {
                kind: self._download(info, kind, Path(scratch) / f"{kind}.csv")
                for kind in ("successfulResults", "failedResults", "unprocessedrecords")
            }
            return [
                successful_outcomes(files["successfulResults"]),
                failed_outcomes(files["failedResults"]),
                unprocessed_outcomes(files["unprocessedrecords"], _job_error(info)),
            ]

    def _download(self, info: JobInfo, kind: ResultKind, destination: Path) -> Path | None:
        try:
            return self.api.download_results(info.id, kind, destination)
        except BulkApiError as error:
            if info.state == "Aborted" and not isinstance(error, BulkApiUnavailableError):
                # An aborted job may have no results; its rows are then simply resent.
                return None
            raise

    # ---- resume ------------------------------------------------------------------------------

    def _collect_unfinished(self, checkpoint: CheckpointStore) -> int:
        """Finish jobs a previous run created but never collected; returns how many."""
        unfinished = [job for job in checkpoint.jobs if job.status is JobStatus.CREATED]
        if unfinished:
            log.info("resuming: collecting %d Bulk jobs of an earlier run", len(unfinished))
            self._run_concurrently(
                [lambda job=job: self._resume_job(checkpoint, job) for job in unfinished]
            )
        return len(unfinished)

    def _resume_job(self, checkpoint: CheckpointStore, job: CheckpointedJob) -> None:
        keys = checkpoint.job_rows(job.sequence)
        info = self.api.job_info_or_none(job.job_id)
        if info is None:
            self._record_not_run(
                checkpoint, keys, job.sequence, job.job_id, "JOB_NOT_FOUND", "job no longer exists"
            )
        elif info.state == "Open":
            self._abandon(checkpoint, keys, job.sequence, job.job_id, "upload never completed")
        else:
            self._collect(checkpoint, keys, job.sequence, job.job_id)

    # ---- accounting --------------------------------------------------------------------------

    def _latest(self, rows: pl.DataFrame, outcomes: pl.LazyFrame) -> pl.DataFrame:
        """Per row to send: its latest status and how many transient outcomes this load gave it.

        Only the statuses: the rounds need no more (ids and errors are read at the end).
        """
        transient_here = (pl.col("status") == RowStatus.TRANSIENT.value) & (
            pl.col("sequence") >= self._budget_from
        )
        return (
            _with_outcomes(rows, outcomes, ["status", "sequence"])
            .with_columns(
                transient_here.fill_null(False).sum().over(POSITION).alias("transient_outcomes")
            )
            .filter(_last_outcome_of_each_row())
            .drop("sequence")
            .collect()
        )

    def _resendable(self) -> pl.Expr:
        status = pl.col("status")
        return status.is_null() | (
            (status == RowStatus.TRANSIENT.value)
            & (pl.col("transient_outcomes") <= self.settings.max_resend_rounds)
        )

    def _still_to_send(self, keys: pl.DataFrame, latest: pl.DataFrame) -> pl.DataFrame:
        """Rows with no final outcome yet (per `_latest`, row for row), in staged order."""
        return keys.filter(latest.select(self._resendable()).to_series())

    def _final_statuses(self, latest: pl.DataFrame) -> pl.DataFrame:
        unresolved = latest.filter(self._resendable())
        if not unresolved.is_empty():
            raise LoadIncompleteError(
                f"{unresolved.height:,} rows have no final outcome after the last round."
            )
        return latest

    def _final_outcomes(
        self, final: pl.DataFrame, outcomes: pl.LazyFrame, *, succeeded: bool
    ) -> pl.DataFrame:
        """The confirmed rows with their Salesforce ids, or the failed ones with their errors."""
        success = pl.col("status").is_in(SUCCESS_STATUSES)
        side = success if succeeded else ~success
        details = ["salesforce_id"] if succeeded else ["error_code", "error", "job_id"]
        return (
            _with_outcomes(final.filter(side), outcomes.filter(side), details)
            .filter(_last_outcome_of_each_row())
            .drop(POSITION)
            .collect()
        )

    def _summarise(
        self,
        rows: pl.DataFrame,
        final: pl.DataFrame,
        failures: pl.DataFrame,
        checkpoint: CheckpointStore,
        started: float,
        calls_before: tuple[int, int, int],
    ) -> LoadResult:
        status = final["status"]
        created = int((status == RowStatus.CREATED.value).sum())
        updated = int((status == RowStatus.UPDATED.value).sum())
        by_reason = failures.group_by("error_code").len().sort("len", descending=True)
        duration = time.monotonic() - started
        result = LoadResult(
            drop_id=checkpoint.drop_id,
            partition=checkpoint.partition,
            sent=rows.height,
            succeeded=created + updated,
            created=created,
            updated=updated,
            failed=failures.height,
            # A transient outcome led to a resend unless it was the row's last word.
            retried=int(final["transient_outcomes"].sum())
            - int((status == RowStatus.TRANSIENT.value).sum()),
            uploaded=self._uploaded,
            job_ids=[job.job_id for job in checkpoint.jobs],
            api_calls=self.api.api_calls - calls_before[0],
            http_retries=self.api.http_retries - calls_before[1],
            logins=self.connection.logins - calls_before[2],
            duration_seconds=round(duration, 3),
            records_per_second=round(rows.height / duration, 1) if duration > 0 else 0.0,
            failed_by_reason=dict(zip(by_reason["error_code"], by_reason["len"], strict=True)),
        )
        if result.sent != result.succeeded + result.failed:
            raise LoadInvariantError(
                f"sent {result.sent:,} ≠ succeeded {result.succeeded:,} + failed {result.failed:,}"
            )
        return result

    # ---- small helpers -----------------------------------------------------------------------

    def _notify(self, event: str, job_id: str) -> None:
        if self._on_job_event is not None:
            self._on_job_event(event, job_id)

    def _report_progress(self) -> None:
        if self._progress is not None:
            self._progress(self._confirmed, self._total)


def _with_outcomes(rows: pl.DataFrame, outcomes: pl.LazyFrame, columns: list[str]) -> pl.LazyFrame:
    """Each row (by its `_position`) followed by its recorded outcomes in job order, if any.

    Joined lazily and in order, then cut with `_last_outcome_of_each_row`: deduplicating the
    outcomes on their string keys first cost several times the memory of the keys themselves.
    """
    return (
        rows.lazy()
        .select(POSITION, EXTERNAL_ID_FIELD, ROW_HASH)
        .join(
            outcomes.select(
                EXTERNAL_ID_FIELD, pl.col(ROW_HASH).cast(rows.schema[ROW_HASH]), *columns
            ),
            on=[EXTERNAL_ID_FIELD, ROW_HASH],
            how="left",
            maintain_order="left_right",
        )
    )


def _last_outcome_of_each_row() -> pl.Expr:
    position = pl.col(POSITION)
    return position.ne_missing(position.shift(-1))


def _job_error(info: JobInfo) -> str | None:
    if info.state == "Aborted":
        return info.errorMessage or "job aborted"
    return info.errorMessage
