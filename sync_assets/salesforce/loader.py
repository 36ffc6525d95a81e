"""The Bulk API 2.0 loader: rows to send → upsert jobs in flight → what Salesforce confirmed and what failed."""

import logging
import random
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl
from pydantic import BaseModel, Field

from sync_assets.salesforce.bulk_api import (
    BulkApi,
    BulkApiUnavailableError,
    IngestOperation,
    JobInfo,
    ResultKind,
)
from sync_assets.salesforce.checkpoint import (
    CheckpointedJob,
    CheckpointStore,
    CreatedCount,
    JobStatus,
    RowStatus,
)
from sync_assets.salesforce.concurrency import ConcurrencyGate, ConcurrencySettings
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
from sync_assets.salesforce.limits import (
    CALLS_PER_JOB,
    ApiBudget,
    api_calls_needed,
    assess_limits,
    limits_or_none,
)
from sync_assets.salesforce.lookups import IdQuery, count_created, load_started
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
from sync_assets.salesforce.retry import RetryPolicy
from sync_assets.salesforce.staged_rows import CSV_BYTES, StagedRows
from sync_assets.salesforce.upload_compression import UploadCompression
from sync_assets.salesforce.watcher import JobWatcher, Pace, SharedPace, WatchSettings
from sync_assets.state.columns import (
    ACCOUNT_EXTERNAL_ID_FIELD,
    EXTERNAL_ID_FIELD,
    POSITION,
    ROW_HASH,
    SALESFORCE_ID_FIELD,
)

log = logging.getLogger(__name__)

SUCCESS_STATUSES = (RowStatus.CREATED.value, RowStatus.UPDATED.value, RowStatus.APPLIED.value)
# SOQL datetimes have whole seconds (see `count_created`).
CREATED_DATE_RESOLUTION = 1.0
# Row errors that say the org is pushing back (locks, CPU): fewer jobs in flight.
PUSH_BACK_CODES = ("UNABLE_TO_LOCK_ROW", "APEX_CPU_LIMIT")


class LoadProgress(BaseModel):
    """How far a load has got, as a person watching it (bars, a pod's log) wants to know."""

    confirmed: int = Field(description="Rows Salesforce confirmed so far.")
    total: int = Field(description="Rows to send.")
    sent: int = Field(description="Rows uploaded so far by this load (resends count again).")
    jobs_in_flight: int = Field(description="Jobs uploading or being processed now.")
    failed: int = Field(description="Row outcomes that failed for good so far.")
    resent: int = Field(description="Row outcomes that failed transiently so far (to be resent).")


ProgressCallback = Callable[[LoadProgress], None]
"""Called with the load's progress after every uploaded and every finished job."""
JobEventHook = Callable[[str, str], None]
"""Called with (event, job id) for "created" and "closed"; a test raises here to simulate a crash."""


class LoaderSettings(BaseModel):
    """Knobs of the loader; the defaults suit a 2M-row night split over 10 partitions."""

    sobject: str = "Opportunity"
    external_id_field: str = EXTERNAL_ID_FIELD
    operation: IngestOperation = Field(
        default="upsert",
        description="upsert on `external_id_field`; delete or hardDelete by the rows' `Id`, "
        "the only column a delete uploads (Bulk API 2.0 Developer Guide, 'Prepare CSV Files').",
    )
    account_column: str = ACCOUNT_EXTERNAL_ID_FIELD
    plan: PlanLimits = Field(default_factory=PlanLimits)
    # Deep enough that the org always has queued work while finished jobs are being noticed;
    # shallow enough that a job does not queue behind the whole night: an account larger than
    # one job sends its jobs one after another, each through the org's queue. The load starts
    # at `jobs_in_flight` and moves between `min_jobs_in_flight` and `max_jobs_in_flight` with
    # the org (see `ConcurrencyGate`).
    jobs_in_flight: int = Field(default=4, ge=1, le=50)
    min_jobs_in_flight: int = Field(default=1, ge=1, le=50)
    max_jobs_in_flight: int = Field(default=8, ge=1, le=50)
    max_resend_rounds: int = Field(default=3, ge=0, description="Resends of transient failures.")
    resend_pause: float = Field(
        default=1.0,
        ge=0,
        description="Seconds before the first resend round; doubled (jittered) for each later one.",
    )
    job_timeout: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds a job may stay unfinished after it was created; then it is aborted "
        "and its unprocessed rows are sent again.",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    upload_compression: UploadCompression = Field(
        default="gzip",
        description="Upload job CSVs gzipped (`Content-Encoding: gzip`, REST API 'Compression "
        "Headers'), or plain; an org that refuses gzip gets plain uploads for the rest of the load.",
    )
    check_limits: bool = True
    api_budget_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of the org's remaining daily API requests the night may use.",
    )

    @property
    def result_key(self) -> str:
        """The column a job's upload and results name its rows by."""
        return self.external_id_field if self.operation == "upsert" else SALESFORCE_ID_FIELD

    def concurrency(self) -> ConcurrencySettings:
        high = max(self.max_jobs_in_flight, self.jobs_in_flight)
        low = min(self.min_jobs_in_flight, self.jobs_in_flight)
        return ConcurrencySettings(start=self.jobs_in_flight, low=low, high=high)


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
    poll_calls: int = 0
    throttled: int = 0
    jobs_aborted_past_deadline: int = 0
    peak_jobs_in_flight: int = 0
    lowest_jobs_in_flight: int = 0
    preflight: str = "checked against /limits"
    pace: Pace | None = Field(
        default=None, description="How fast the jobs finished: the next load's polling prior."
    )
    http_retries: int
    logins: int
    upload_compression: UploadCompression = Field(
        default="none", description="How the load's last upload went: gzip, or plain (none)."
    )
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
        self.api = api or BulkApi(
            connection, self.settings.retry, upload_compression=self.settings.upload_compression
        )
        self.watcher = JobWatcher(self.api, self.settings.watch)
        self.gate = ConcurrencyGate(self.settings.concurrency())
        self.api.on_throttled = self.gate.throttled
        self._budget: ApiBudget | None = None
        self._preflight = ""
        self._aborted_past_deadline = 0
        self._progress = progress
        self._on_job_event = on_job_event
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._confirmed = 0
        self._uploaded = 0
        self._total = 0
        self._failed = 0
        self._transient = 0
        self._budget_from = 0
        self._stop_reason = ""
        self._jitter = random.Random()

    def load(
        self,
        rows: pl.LazyFrame,
        checkpoint: CheckpointStore,
        pace: Pace | None = None,
        shared_pace: SharedPace | None = None,
    ) -> LoadOutcome:
        """Send ``rows`` (Salesforce columns plus ``_row_hash``, sorted by account).

        ``pace``, how fast the partition's jobs finished last time, times the first polls;
        without it, ``shared_pace``, the org's pace as other partitions' loads measure it.

        Each job reads its own rows from ``rows`` when it is sent, so a scan of a file is never
        held whole. Jobs the checkpoint knows of (a crashed earlier attempt) are collected first.
        """
        started = time.monotonic()
        calls_before = (self.api.api_calls, self.api.http_retries, self.connection.logins)
        polls_before, throttles_before = self.watcher.poll_calls, self.api.throttles
        self.watcher.prior = pace
        self.watcher.shared = shared_pace
        self._aborted_past_deadline = 0
        self._preflight = "not checked"
        self._stop.clear()
        self._stop_reason = ""
        staged = StagedRows(rows, self.settings.account_column)
        keys = staged.keys
        self._total = keys.height
        self._uploaded = 0
        self._failed = 0
        self._transient = 0
        # The resend budget is per load: transient failures of an earlier run (an outage that has
        # since ended) must not stop this run from sending those rows again.
        self._budget_from = checkpoint.next_sequence

        try:
            resumed, latest = self._send_rounds(staged, checkpoint)
        except DailyApiLimitError as error:
            raise self._stopped(str(error), keys, checkpoint) from error
        if self._stop_reason:
            raise self._stopped(self._stop_reason, keys, checkpoint)
        last_finish_seen = time.monotonic()

        self._count_created(latest, checkpoint)
        final = self._final_statuses(latest)
        failures = self._final_outcomes(final, checkpoint.outcomes(), succeeded=False)
        orphans = self.api.abort_orphans(
            self.settings.sobject, {job.job_id for job in checkpoint.jobs}
        )
        result = self._summarise(keys, final, failures, checkpoint, started, calls_before)
        result.orphan_jobs_aborted = orphans
        result.jobs_resumed = resumed
        result.poll_calls = self.watcher.poll_calls - polls_before
        result.throttled = self.api.throttles - throttles_before
        result.jobs_aborted_past_deadline = self._aborted_past_deadline
        result.peak_jobs_in_flight = self.gate.peak
        result.lowest_jobs_in_flight = self.gate.lowest
        result.preflight = self._preflight
        result.upload_compression = self.api.upload_compression
        result.pace = self._measured_pace(result)
        confirmed = self._final_outcomes(final, checkpoint.outcomes(), succeeded=True)
        if self._uploaded and self.settings.operation == "upsert":
            # SOQL compares CreatedDate in whole seconds: ending a second after the last job
            # finished dates every record of the partition's next load after this one's.
            time.sleep(max(0.0, last_finish_seen + CREATED_DATE_RESOLUTION - time.monotonic()))
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
        if not plan:
            # An unchanged partition: one API call a night each, for a budget nothing would use.
            self._preflight = "not needed: nothing to send"
        elif self.settings.check_limits:
            self._check_limits(plan)

        for round_number in range(self.settings.max_resend_rounds + 2):
            if round_number:
                todo, plan = self._resend_plan(staged, latest, round_number)
            if todo.is_empty():
                break
            self._send_round(staged, todo, plan, checkpoint, in_lane=round_number == 0)
            latest = self._latest(keys, checkpoint.outcomes())
            if self._stop_reason:
                break
        return resumed, latest

    def _check_limits(self, plan: list[JobSlice]) -> None:
        """Refuse a load the org cannot take, and fix the night's API budget.

        Without View Setup and Configuration `/limits` answers 403: the load goes on, watching
        the org's usage in every answer's `Sforce-Limit-Info` instead.
        """
        limits = limits_or_none(self.api)
        if limits is None:
            self._preflight = (
                "degraded: /limits is forbidden (the user lacks View Setup and Configuration); "
                "the API budget follows Sforce-Limit-Info"
            )
            log.warning("pre-flight %s", self._preflight)
        else:
            measured = self.watcher.prior
            per_job = measured.api_calls_per_job if measured is not None else None
            needed = api_calls_needed(plan, per_job)
            assess_limits(limits, plan, needed, self.settings.api_budget_share).raise_if_short()
            self._preflight = "checked against /limits"
        self._budget = ApiBudget.start(
            limits, self.connection.api_usage, self.settings.api_budget_share
        )

    def _measured_pace(self, result: LoadResult) -> Pace | None:
        """This load's pace and calls per job, for the next load's polls and estimate."""
        pace = self.watcher.pace()
        jobs = len(result.job_ids) - result.jobs_resumed
        if pace is None or jobs <= 0:
            return pace
        return pace.model_copy(
            update={
                "calls_per_job": round((result.api_calls - result.poll_calls) / jobs, 2),
                "polls_per_job": round(result.poll_calls / jobs, 2),
            }
        )

    def _over_budget(self) -> bool:
        """Whether one more job could pass the night's API budget (the jobs in flight kept)."""
        if self._budget is None:
            return False
        reserve = CALLS_PER_JOB * (self.gate.limit + 1)
        return self._budget.exhausted(self.connection.api_usage, reserve)

    def _stopped(
        self, reason: str, keys: pl.DataFrame, checkpoint: CheckpointStore
    ) -> LoadStoppedError:
        """A clean stop: what Salesforce confirmed so far, for the caller to record.

        The records created are counted if the org still answers (the daily limit does not).
        """
        latest = self._latest(keys, checkpoint.outcomes())
        try:
            self._count_created(latest, checkpoint)
        except SalesforceError as error:
            log.warning("could not count the records created before the stop: %s", error)
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

    def _count_created(self, latest: pl.DataFrame, checkpoint: CheckpointStore) -> None:
        """Count how many records the load created, once its applied rows are known.

        One COUNT() of the partition's records created since the load's first job (an upsert
        that matched a record keeps its CreatedDate), in place of downloading every created
        record's Id. Kept in the checkpoint before the ledger hears of the rows: a re-run reads
        it rather than counting the records later loads created too.
        """
        applied = int((latest["status"] == RowStatus.APPLIED.value).sum())
        counted = checkpoint.created_count
        if applied == 0 or (counted is not None and counted.applied_rows == applied):
            return
        query = IdQuery(
            self.settings.sobject, checkpoint.partition, self.settings.external_id_field
        )
        records = count_created(self.api, query, load_started(checkpoint.jobs))
        checkpoint.record_created_count(CreatedCount(records=records, applied_rows=applied))
        log.info("%d records created by the load (COUNT()), of %d applied rows", records, applied)

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
        self._pause_before_resend(round_number)
        return todo, self._plan(todo, staged.header_bytes, resend=True)

    def _pause_before_resend(self, resend_number: int) -> None:
        if self.settings.resend_pause:
            pause = RetryPolicy(
                base_delay=self.settings.resend_pause,
                max_delay=self.settings.resend_pause * 2**self.settings.max_resend_rounds,
            )
            time.sleep(pause.delay(resend_number - 1, self._jitter))

    def _send_round(
        self,
        staged: StagedRows,
        todo: pl.DataFrame,
        plan: list[JobSlice],
        checkpoint: CheckpointStore,
        *,
        in_lane: bool,
    ) -> None:
        """Send the plan's jobs, lane by lane; ``in_lane``: resend transient failures in the lane.

        A job's rows that failed transiently (a lock held by another integration, a busy org)
        are sent again by its lane, after the resend pause, while the other lanes go on: the
        org works through them among the round's jobs. Resent only after the round, they queued
        behind every partition's jobs and ran alone at the end: the contended night of
        BENCHMARKS section 8 resent 1,800 rows that way and took 443 s for an org span of 406 s.
        Only an account-aligned plan resends in the lane: its lanes own their accounts, so a
        resend can never lock-conflict with another of our jobs.
        """
        # Longest lane first: an account larger than one job is sent job after job, and if its
        # lane started late it would end the load alone while the other threads sat idle.
        lanes = sorted(group_lanes(plan), key=len, reverse=True)
        positions = todo.get_column(POSITION)
        resends = (
            self.settings.max_resend_rounds if in_lane and self.settings.plan.account_aligned else 0
        )
        self._run_concurrently(
            [
                lambda lane=lane: self._run_lane(staged, positions, lane, checkpoint, resends)
                for lane in lanes
            ]
        )

    def _run_concurrently(self, tasks: list[Callable[[], object]]) -> None:
        """Run tasks on as many threads as the gate may allow; stop starting jobs on an error.

        The first error is re-raised once every task has ended.
        """
        with ThreadPoolExecutor(
            max_workers=self.gate.settings.high, thread_name_prefix="bulk-job"
        ) as pool:
            futures: list[Future[object]] = [pool.submit(task) for task in tasks]
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
        resends: int,
    ) -> None:
        for job in lane:
            rows = staged.fields(positions.slice(job.start, job.records))
            for attempt in range(resends + 1):
                if attempt:
                    self._pause_before_resend(attempt)
                self.gate.acquire()
                try:
                    if self._stop.is_set():
                        return
                    if self._over_budget():
                        self._stop_reason = self._budget_reason()
                        self._stop.set()
                        return
                    rows = self._run_job(rows, checkpoint)
                finally:
                    self.gate.release()
                if rows.is_empty():
                    break

    def _budget_reason(self) -> str:
        assert self._budget is not None
        return (
            f"the night's API budget is spent ({self._budget.describe(self.connection.api_usage)}; "
            f"SYNC_API_BUDGET_SHARE={self.settings.api_budget_share:g} of the org's remaining daily "
            "API requests)"
        )

    def _run_job(self, rows: pl.DataFrame, checkpoint: CheckpointStore) -> pl.DataFrame:
        """Send ``rows`` as one job and record how each ended; the rows that failed transiently.

        A job the org never ran (not created, not started) returns none: its rows wait for the
        round's resend, after its pause, rather than press an org that is refusing jobs.
        """
        settings = self.settings
        keys = rows.select(*dict.fromkeys([EXTERNAL_ID_FIELD, ROW_HASH, settings.result_key]))
        sequence = checkpoint.reserve_sequence(keys)
        body = build_csv(
            rows if settings.operation == "upsert" else rows.select(SALESFORCE_ID_FIELD)
        )
        created = time.time()
        try:
            job = self.api.create_job(
                settings.sobject, settings.operation, settings.external_id_field
            )
        except BulkApiUnavailableError as error:
            self._record_not_run(checkpoint, keys, sequence, "", "JOB_NOT_CREATED", str(error))
            return rows.clear()
        checkpoint.record_created(sequence, job.id, rows.height, job.created_at)
        self._notify("created", job.id)
        try:
            self.api.upload(job.id, body)
            self.api.close(job.id)
        except BulkApiError as error:
            self._abandon(checkpoint, keys, sequence, job.id, str(error))
            return rows.clear()
        with self._lock:
            self._uploaded += rows.height
        self._report_progress()
        self._notify("closed", job.id)
        outcome = self._collect(checkpoint, keys, sequence, job.id, created)
        transient = outcome.filter(pl.col("status") == RowStatus.TRANSIENT.value)
        return rows.filter(
            pl.col(EXTERNAL_ID_FIELD).is_in(transient.get_column(EXTERNAL_ID_FIELD).implode())
        )

    def _abandon(
        self, checkpoint: CheckpointStore, keys: pl.DataFrame, sequence: int, job_id: str, why: str
    ) -> None:
        """A job that never started processing: abort it so it never will, resend its rows."""
        status = JobStatus.ABANDONED if self._abort_or_warn(job_id) else JobStatus.ABORT_FAILED
        self._record_not_run(checkpoint, keys, sequence, job_id, "JOB_NOT_STARTED", why, status)

    def _abort_or_warn(self, job_id: str) -> bool:
        """Whether the org took the abort (an Open job is never processed; kept 24 h)."""
        try:
            self.api.abort(job_id)
        except BulkApiError:
            log.warning("could not abort job %s; the next load tries again", job_id)
            return False
        return True

    def _record_not_run(
        self,
        checkpoint: CheckpointStore,
        keys: pl.DataFrame,
        sequence: int,
        job_id: str,
        code: str,
        why: str,
        status: JobStatus = JobStatus.ABANDONED,
    ) -> None:
        outcome = uniform_outcome(keys, RowStatus.TRANSIENT, code, why, job_id, sequence)
        checkpoint.record_outcome(sequence, outcome, status)

    def _collect(
        self,
        checkpoint: CheckpointStore,
        keys: pl.DataFrame,
        sequence: int,
        job_id: str,
        created: float,
    ) -> pl.DataFrame:
        """Wait for the job (aborting it past its deadline), record how each of its rows ended."""
        info = self._wait_for(job_id, created, keys.height)
        results, unmentioned = self._results(info, keys.height)
        outcome = job_outcome(
            keys, results, job_id, sequence, self.settings.result_key, unmentioned
        )
        checkpoint.record_outcome(sequence, outcome, JobStatus.COLLECTED)
        if (
            info.state == "Failed"
            and job_failure_class(info.errorMessage) is ErrorClass.DAILY_LIMIT
        ):
            # The org's rolling 24-hour allowance is spent: start no more jobs tonight.
            self._stop_reason = f"Bulk job {job_id} failed with {info.errorMessage}"
            self._stop.set()
        status = outcome["status"]
        confirmed = int(status.is_in(SUCCESS_STATUSES).sum())
        pushed_back = int(outcome["error_code"].is_in(PUSH_BACK_CODES).sum())
        self.gate.job_finished(confirmed, pushed_back)
        with self._lock:
            self._confirmed += confirmed
            self._failed += int((status == RowStatus.PERMANENT.value).sum())
            self._transient += int((status == RowStatus.TRANSIENT.value).sum())
        self._report_progress()
        return outcome

    def _wait_for(self, job_id: str, created: float, records: int) -> JobInfo:
        """The finished job; past ``job_timeout`` after its creation, the job aborted.

        An aborted job keeps what it applied (Bulk API Developer Guide: changes "aren't rolled
        back") and reports it in its results; its unprocessed rows are sent again in a new job.
        Aborting is what makes that safe: the old job can never apply those rows later, with
        older values, over a newer night's.
        """
        deadline = time.monotonic() + max(0.0, created + self.settings.job_timeout - time.time())
        info = self.watcher.wait(job_id, time.monotonic(), deadline, records)
        if info is not None:
            return info
        log.warning(
            "Bulk job %s unfinished %.0f s after it was created: aborting it",
            job_id,
            self.settings.job_timeout,
        )
        self.api.abort(job_id)
        with self._lock:
            self._aborted_past_deadline += 1
        info = self.api.job_info(job_id)
        if not info.is_terminal:
            raise LoadIncompleteError(
                f"Bulk job {job_id} is still {info.state} after it was aborted; a retried run "
                "collects it from the checkpoint."
            )
        return info

    def _results(self, info: JobInfo, carried: int) -> tuple[list[pl.DataFrame], RowStatus]:
        """The job's reported outcomes, and the status of rows they do not mention.

        An upsert job that completed and processed every row it carried saved each row but its
        ``numberRecordsFailed`` failed ones ("Get Job Info": processed counts failed rows too):
        only failedResults is read, and only when it holds rows. The successes, which repeat
        every field of every row, are not downloaded; whether a row was created, and its Id,
        are learned once per load (`_resolve_applied`). A delete, or a job that failed, was
        aborted or processed fewer rows than it carried, has its successes read as well, and its
        unprocessed rows once any remain ("Get Job Unprocessed Record Results"); rows none of
        its results mention are sent again.
        """
        key = self.settings.result_key
        upsert = self.settings.operation == "upsert"
        if upsert and info.state == "JobComplete" and info.numberRecordsProcessed is None:
            # Seen in the job list, which has no counters: one call for them, in place of the
            # successes' download.
            info = self.api.job_info(info.id)
        with tempfile.TemporaryDirectory(prefix=f"bulk-{info.id}-") as scratch:
            folder = Path(scratch)
            if upsert and info.state == "JobComplete" and info.processed_all(carried):
                if not info.numberRecordsFailed:
                    return [], RowStatus.APPLIED
                failed = self._download(info, "failedResults", folder / "failed.csv")
                return [failed_outcomes(failed, key)], RowStatus.APPLIED
            successes = successful_outcomes(
                self._download(info, "successfulResults", folder / "successful.csv"), key
            )
            if info.state == "JobComplete" and successes.height >= carried:
                return [successes], RowStatus.TRANSIENT
            failures = failed_outcomes(
                self._download(info, "failedResults", folder / "failed.csv"), key
            )
            if info.state == "JobComplete" or info.processed_all(carried):
                return [successes, failures], RowStatus.TRANSIENT
            unprocessed = self._download(info, "unprocessedrecords", folder / "unprocessed.csv")
            reported = [
                successes,
                failures,
                unprocessed_outcomes(unprocessed, _job_error(info), key),
            ]
            return reported, RowStatus.TRANSIENT

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
        """Finish jobs a previous run created but never collected; returns how many.

        Jobs abandoned while the org was down (`ABORT_FAILED`) are aborted now, best effort: one
        may still be Open, holding rows that were resent since.
        """
        unfinished = [job for job in checkpoint.jobs if job.status is JobStatus.CREATED]
        stranded = [job for job in checkpoint.jobs if job.status is JobStatus.ABORT_FAILED]
        if unfinished:
            log.info("resuming: collecting %d Bulk jobs of an earlier run", len(unfinished))
        tasks: list[Callable[[], object]] = [
            partial(self._resume_job, checkpoint, job) for job in unfinished
        ]
        tasks += [partial(self._abort_or_warn, job.job_id) for job in stranded]
        if tasks:
            self._run_concurrently(tasks)
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
            self._collect(checkpoint, keys, job.sequence, job.job_id, job.created_at.timestamp())

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
        succeeded = int(status.is_in(SUCCESS_STATUSES).sum())
        created = _created(status, checkpoint.created_count)
        by_reason = failures.group_by("error_code").len().sort("len", descending=True)
        duration = time.monotonic() - started
        result = LoadResult(
            drop_id=checkpoint.drop_id,
            partition=checkpoint.partition,
            sent=rows.height,
            succeeded=succeeded,
            created=created,
            updated=succeeded - created,
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
        if self._progress is None:
            return
        with self._lock:
            progress = LoadProgress(
                confirmed=self._confirmed,
                total=self._total,
                sent=self._uploaded,
                jobs_in_flight=self.gate.in_flight,
                failed=self._failed,
                resent=self._transient,
            )
        self._progress(progress)


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


def _created(status: pl.Series, counted: CreatedCount | None) -> int:
    """Rows that created a record: those a job's successes said so, and the applied rows' share.

    The count covers every record created since the load began, those whose successes were
    read included; an applied row created at most one record.
    """
    reported = int((status == RowStatus.CREATED.value).sum())
    applied = int((status == RowStatus.APPLIED.value).sum())
    if counted is None or applied == 0:
        return reported
    return reported + min(max(counted.records - reported, 0), applied)


def _last_outcome_of_each_row() -> pl.Expr:
    position = pl.col(POSITION)
    return position.ne_missing(position.shift(-1))


def _job_error(info: JobInfo) -> str | None:
    if info.state == "Aborted":
        return info.errorMessage or "job aborted"
    return info.errorMessage
