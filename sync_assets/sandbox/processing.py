"""A model of Salesforce's ingest processing: FIFO internal batches, parallel slots, rate, row locks.

After ``UploadComplete`` a job's rows are split into internal batches of 10,000, queued FIFO
across all jobs. ``slots`` worker threads take batches; each batch holds the row locks of its
records' parent Accounts for its whole duration of ``rows / rate`` seconds plus the Apex time of
the org's automation (``automation.py``), its own parsing and writing included (the rate is a
slot's throughput). A record whose Account is held by another running batch waits up to
``lock_timeout`` and then fails with ``UNABLE_TO_LOCK_ROW`` (counted in the job's ``retries``). A
batch is written in one SQLite transaction together with its result files' bookkeeping, so a
restart re-runs exactly the batches that were not applied.
REST record writes (``write_records``) take
the same path as a batch of their own: validation, automation, row locks and DML.

Each batch counts against the org's daily records and batches when it is processed: "If the limit
is exceeded while processing your job data, the remaining data isn't processed. The ingest job is
marked as having failed." A batch that does not finish within ``batch_time_limit`` (5 minutes)
keeps the 200-record chunks it got done and puts the rest back in the queue, up to
``batch_retries`` (20) times; then the job fails (Bulk API 2.0 Developer Guide, "Understanding
Bulk API 2.0 Ingest"; Limits cheat sheet, "Batch processing time": "the Bulk API places the
remainder of the batch back in the queue for later processing").
"""

import bisect
import enum
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from pydantic import BaseModel, Field

from sync_assets.sandbox.automation import Automation, fail_active_rows
from sync_assets.sandbox.convert import row_error
from sync_assets.sandbox.dml.commit import BatchOutcome, commit_batch
from sync_assets.sandbox.dml.prepare import (
    DML_CHUNK,
    JobSpec,
    ParentIndex,
    PreparedBatch,
    prepare_batch,
)
from sync_assets.sandbox.faults import FaultInjector
from sync_assets.sandbox.jobs import TERMINAL_STATES, Job, JobStore, sf_timestamp
from sync_assets.sandbox.limits import BULK_BATCHES, INGEST_RECORDS, DailyLimits
from sync_assets.sandbox.metadata import Catalog
from sync_assets.sandbox.objects import ACCOUNT, OPPORTUNITY
from sync_assets.sandbox.org import OrgSpec
from sync_assets.sandbox.results import BatchStatus, JobFiles, UnprocessedRows
from sync_assets.sandbox.store import Database
from sync_assets.sandbox.upload import Column, ParsedUpload, UploadError, parse_upload

BATCH_SIZE = 10_000
_HEADERS_KEPT = 100_000
UNABLE_TO_LOCK_ROW = row_error(
    "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"
)
# The message of SOAP's and Apex's answer during read-only maintenance (salesforce.stackexchange.com
# 194022), in the Bulk row-error form.
IN_MAINTENANCE = row_error(
    "INSERT_UPDATE_DELETE_NOT_ALLOWED_DURING_MAINTENANCE",
    "Updates can't be made during maintenance. Try again when maintenance is complete.",
)
_ACTIVE_STATES = ("UploadComplete", "InProgress")
# Best guesses: no capture of these errorMessages was found. ``ExceededQuota`` is the Bulk error
# code "The job or batch you tried to create exceeds the allowed number for the past 24-hour
# period" (Bulk API Developer Guide, Errors).
_QUOTA_MESSAGES = {
    INGEST_RECORDS: "ExceededQuota : The job exceeds the number of records the org may ingest "
    "in a rolling 24-hour period; the remaining records were not processed",
    BULK_BATCHES: "ExceededQuota : The job exceeds the number of Bulk API batches the org may "
    "process in a rolling 24-hour period; the remaining records were not processed",
}
log = logging.getLogger(__name__)


def retries_exhausted(retries: int) -> str:
    """The errorMessage of a job whose batch kept timing out.

    A best guess: ``Timeout`` is the Bulk error code "thrown if Salesforce takes too long to
    process a batch", and the limits cheat sheet speaks of "a message that the API retried more
    than 20 times" (Bulk API 2.0).
    """
    return (
        f"Timeout : An internal batch was retried more than {retries} times; the remaining "
        "records were not processed"
    )


class ProcessingConfig(BaseModel):
    slots: int = Field(default=10, ge=1)
    rate: float = Field(default=0.0, ge=0, description="records/second per slot; 0 = unthrottled")
    lock_timeout: float = Field(default=10.0, ge=0)
    batch_time_limit: float = Field(
        default=300.0, gt=0, description="Seconds a batch may run before it is retried."
    )
    batch_retries: int = Field(default=20, ge=0)


class AccountLocks:
    """Row locks on parent Accounts, held by running batches."""

    def __init__(self) -> None:
        self._holders: dict[str, int] = {}
        self._changed = threading.Condition()

    def acquire(self, owner: int, keys: set[str], timeout: float) -> set[str]:
        """Take every key in ``keys``, waiting up to ``timeout`` for held ones; the keys not taken."""
        deadline = time.monotonic() + timeout
        pending = set(keys)
        with self._changed:
            while True:
                free = {k for k in pending if k not in self._holders}
                self._holders.update(dict.fromkeys(free, owner))
                pending -= free
                remaining = deadline - time.monotonic()
                if not pending or remaining <= 0:
                    return pending
                self._changed.wait(remaining)

    def release(self, owner: int, keys: set[str]) -> None:
        with self._changed:
            for key in keys:
                if self._holders.get(key) == owner:
                    del self._holders[key]
            self._changed.notify_all()


@dataclass(frozen=True)
class _Header:
    names: list[str]
    failed: bool


@dataclass(frozen=True)
class _Locked:
    """Validated rows past the org's automation, their parents' row locks held.

    Rows that failed (validation, the maintenance window, a trigger, a lock) carry their error.
    ``apex_ms`` is the Apex time of each 200-row chunk, ``lock_failed`` the rows failed for a
    lock, in order; ``lock_wait`` is the seconds spent waiting for locks.
    """

    prepared: PreparedBatch
    apex_ms: list[float]
    lock_failed: list[int]
    lock_wait: float


@dataclass
class _Batch:
    job_id: str
    index: int
    first_row: int
    frame: pl.DataFrame
    spec: JobSpec
    upload: ParsedUpload
    user_id: str  # who writes: the job's creator
    attempts: int = 0

    def remainder(self, done: int, index: int) -> "_Batch":
        """The rows after the first ``done``, queued as batch ``index`` for the next attempt."""
        rows = self.frame.height - done
        return _Batch(
            self.job_id,
            index,
            self.first_row + done,
            self.upload.batch(self.first_row + done, rows),
            self.spec,
            self.upload,
            self.user_id,
            self.attempts + 1,
        )


@dataclass(frozen=True)
class _Attempt:
    """What one attempt at a batch got done, before it is committed."""

    done: int
    seconds: float
    apex_ms: float
    lock_failures: int

    def timed_out(self, batch: _Batch) -> bool:
        return self.done < batch.frame.height


class _Ending(enum.Enum):
    """How a batch's attempt ended for the slot that ran it."""

    FINISHED = enum.auto()
    REQUEUED = enum.auto()
    STOPPED = enum.auto()


def job_spec(job: Job, catalog: Catalog) -> JobSpec:
    return JobSpec(
        sobject=catalog.objects[job.object],
        operation=job.operation,
        external_id_field=job.external_id_field,
    )


class Processor:
    def __init__(
        self,
        db: Database,
        jobs: JobStore,
        jobs_root: Path,
        parents: ParentIndex,
        limits: DailyLimits,
        faults: FaultInjector,
        catalog: Catalog,
        config: ProcessingConfig,
        org: OrgSpec,
    ) -> None:
        self._db = db
        self._jobs = jobs
        self._jobs_root = jobs_root
        self._parents = parents
        self._limits = limits
        self._faults = faults
        self._catalog = catalog
        self._config = config
        self._automation = org.opportunity.automation
        self._locks = AccountLocks()
        # Validation is pure Python: running it in one slot at a time avoids GIL thrashing, while
        # another slot's SQLite writes (which release the GIL) use the second core.
        self._cpu = threading.Lock()
        self._queue: deque[_Batch] = deque()
        self._work = threading.Condition()
        self._pending: dict[str, int] = {}
        self._uploads: dict[str, ParsedUpload | UploadError] = {}
        # Result downloads need only the header: kept apart so they never parse an upload again.
        self._headers: dict[str, _Header] = {}
        self._uploads_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def files(self, job_id: str) -> JobFiles:
        return JobFiles(self._jobs_root, job_id)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._resume()
        for slot in range(self._config.slots):
            thread = threading.Thread(target=self._run_slot, name=f"slot-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self._work:
            self._work.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def _resume(self) -> None:
        """Re-queue the batches not yet applied of jobs that were processing when the server stopped."""
        for job in self._jobs.in_states(_ACTIVE_STATES):
            queued = (
                self._db.connection()
                .execute(
                    "SELECT idx, first_row, row_count, state, attempts FROM batches "
                    "WHERE job_id = ? ORDER BY idx",
                    (job.id,),
                )
                .fetchall()
            )
            if not queued:
                self.submit(job)
                continue
            upload = self.parsed(job)
            if isinstance(upload, UploadError):
                self.fail(job.id, upload.error_message)
                continue
            spec = job_spec(job, self._catalog)
            waiting = [b for b in queued if b["state"] == "queued"]
            with self._work:
                self._pending[job.id] = len(waiting)
                self._queue.extend(
                    _Batch(
                        job.id,
                        b["idx"],
                        b["first_row"],
                        upload.batch(b["first_row"], b["row_count"]),
                        spec,
                        upload,
                        job.created_by,
                        b["attempts"],
                    )
                    for b in waiting
                )
                self._work.notify_all()
            if not waiting:
                self._complete(job.id)

    # -- uploads ---------------------------------------------------------------------------

    def parse(self, job: Job, data: bytes) -> ParsedUpload | UploadError:
        """Parse an upload for ``job`` and keep the outcome until the job is processed.

        The header names fields as the job's creator sees them: a field hidden from it fails
        the job as an unknown one (facts §9).
        """
        sobject = self._catalog.for_user(job.created_by).objects[job.object]
        try:
            outcome: ParsedUpload | UploadError = parse_upload(
                data, sobject, job.column_delimiter, job.line_ending
            )
        except UploadError as error:
            outcome = error
        with self._uploads_lock:
            self._uploads[job.id] = outcome
            self._headers[job.id] = _Header(outcome.header, isinstance(outcome, UploadError))
            while len(self._headers) > _HEADERS_KEPT:
                del self._headers[next(iter(self._headers))]
        return outcome

    def header(self, job: Job) -> list[str]:
        """The uploaded header of ``job`` (as much of it as could be read)."""
        with self._uploads_lock:
            cached = self._headers.get(job.id)
        if cached is not None:
            return cached.names
        header = self.parsed(job).header
        if job.state in TERMINAL_STATES:
            self.release(job.id)
        return header

    def parsed(self, job: Job) -> ParsedUpload | UploadError:
        """The parsed upload of ``job`` (read back from disk after a restart)."""
        with self._uploads_lock:
            cached = self._uploads.get(job.id)
        if cached is not None:
            return cached
        upload = self.files(job.id).upload
        data = upload.read_bytes() if upload.exists() else b""
        return self.parse(job, data)

    def forget(self, job_id: str) -> None:
        """Drop a deleted job's queued batches and cached upload."""
        with self._work:
            self._queue = deque(b for b in self._queue if b.job_id != job_id)
            self._pending.pop(job_id, None)
        with self._uploads_lock:
            self._uploads.pop(job_id, None)
            self._headers.pop(job_id, None)

    # -- submission ------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a job that reached UploadComplete, or fail it for a job-level reason."""
        upload = self.parsed(job)
        if isinstance(upload, UploadError):
            self.fail(job.id, upload.error_message)
            return
        batch_count = math.ceil(upload.count / BATCH_SIZE)
        faults = self._faults.job_faults(batch_count)
        spec = job_spec(job, self._catalog)
        batches = [
            _Batch(
                job.id,
                i,
                i * BATCH_SIZE,
                upload.batch(i * BATCH_SIZE, BATCH_SIZE),
                spec,
                upload,
                job.created_by,
            )
            for i in range(batch_count)
        ]
        with self._db.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO batches (job_id, idx, first_row, row_count, state) "
                "VALUES (?, ?, ?, ?, 'queued')",
                [(job.id, b.index, b.first_row, b.frame.height) for b in batches],
            )
            JobStore.update(
                conn,
                job.id,
                fail_at_batch=faults.fail_at_batch,
                abort_at_batch=faults.abort_at_batch,
                stuck_at_batch=faults.stuck_at_batch,
            )
        if not batches:
            self._start_job(job.id)
            self._complete(job.id)
            return
        with self._work:
            self._pending[job.id] = len(batches)
            self._queue.extend(batches)
            self._work.notify_all()

    def fail(self, job_id: str, message: str) -> None:
        """End a job ``Failed`` with ``errorMessage``; its queued batches stay unprocessed."""
        with self._db.write() as conn:
            JobStore.update(conn, job_id, state="Failed", error_message=message)
        with self._uploads_lock:
            self._uploads.pop(job_id, None)

    # -- slots -----------------------------------------------------------------------------

    def _run_slot(self) -> None:
        while not self._stop.is_set():
            with self._work:
                while not self._queue and not self._stop.is_set():
                    self._work.wait()
                if self._stop.is_set():
                    return
                batch = self._queue.popleft()
            try:
                self._run_batch(batch)
            except Exception:
                log.exception("batch %s/%d failed inside the sandbox", batch.job_id, batch.index)
                self.fail(batch.job_id, "Unknown : internal error of the sandbox while processing")
                self._batch_finished(batch.job_id)

    def _run_batch(self, batch: _Batch) -> None:
        job = self._jobs.get(batch.job_id)
        if job is None or job.state not in _ACTIVE_STATES:
            self._batch_finished(batch.job_id)
            return
        if job.fail_at_batch == batch.index:
            self.fail(job.id, retries_exhausted(self._config.batch_retries))
            self._batch_finished(batch.job_id)
            return
        if job.abort_at_batch == batch.index:
            self._abort_by_admin(job.id)
            self._batch_finished(batch.job_id)
            return
        if self._stuck(job, batch):
            return
        if batch.attempts == 0:
            exceeded = self._limits.try_consume_all(
                {INGEST_RECORDS: batch.frame.height, BULK_BATCHES: 1}
            )
            if exceeded is not None:
                self.fail(job.id, _QUOTA_MESSAGES[exceeded])
                self._batch_finished(batch.job_id)
                return
        if job.state == "UploadComplete":
            self._start_job(job.id)
        ending = self._process(batch)
        if ending == _Ending.FINISHED:
            self._batch_finished(batch.job_id)

    def _abort_by_admin(self, job_id: str) -> None:
        """Someone else aborts the job: what was processed stays, the rest is unprocessed."""
        with self._db.write() as conn:
            conn.execute(
                "UPDATE jobs SET state = 'Aborted', system_modstamp = ? "
                "WHERE id = ? AND state IN ('UploadComplete', 'InProgress')",
                (sf_timestamp(), job_id),
            )

    def _stuck(self, job: Job, batch: _Batch) -> bool:
        """Hold a stuck job's batch aside until its time is up; whether it was held."""
        if job.stuck_at_batch != batch.index:
            return False
        until = job.stuck_until
        if until is None:
            until = time.time() + self._faults.stuck_seconds
            with self._db.write() as conn:
                JobStore.update(conn, job.id, stuck_until=until)
        delay = until - time.time()
        if delay <= 0:
            return False
        self._start_job(job.id)
        timer = threading.Timer(delay, self._requeue, (batch,))
        timer.daemon = True
        timer.start()
        return True

    def _requeue(self, batch: _Batch) -> None:
        with self._work:
            self._queue.append(batch)
            self._work.notify()

    def _start_job(self, job_id: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE jobs SET state = 'InProgress', started = ?, system_modstamp = ? "
                "WHERE id = ? AND state = 'UploadComplete'",
                (time.time(), sf_timestamp(), job_id),
            )

    def _lock_failures(
        self, prepared: PreparedBatch, automation: Automation | None
    ) -> tuple[set[str], list[int]]:
        """Take the parent locks; mark rows that could not get theirs. Returns (held, failed rows)."""
        errors = prepared.errors
        failed = [i for i in self._faults.locked_rows(len(errors)) if errors[i] is None]
        for i in failed:
            errors[i] = UNABLE_TO_LOCK_ROW
        wanted = {p for p, e in zip(prepared.parents, errors, strict=True) if p and e is None}
        missed = self._locks.acquire(id(prepared), wanted, self._config.lock_timeout)
        if missed:
            for i, parent in enumerate(prepared.parents):
                if parent in missed and errors[i] is None:
                    errors[i] = UNABLE_TO_LOCK_ROW
                    failed.append(i)
        failed.sort()
        if failed and automation is not None and automation.wraps_lock_errors:
            failed = automation.wrap_lock_failures(errors, failed, prepared.parents)
        return wanted - missed, failed

    def _automation_for(self, spec: JobSpec) -> Automation | None:
        automation = self._automation
        if spec.sobject.name != OPPORTUNITY.name or (
            automation.apex_ms_per_record == 0 and automation.lock_errors == "bare"
        ):
            return None
        return Automation(automation, spec.operation)

    @contextmanager
    def _locked(
        self, spec: JobSpec, columns: list[Column], frame: pl.DataFrame, user_id: str
    ) -> Iterator[_Locked]:
        """Validate rows, run the org's automation, hold the parent Accounts' locks until the end.

        Bulk batches and REST record writes alike. During a maintenance window every row fails
        and nothing runs or locks.
        """
        with self._cpu:
            prepared = prepare_batch(spec, columns, frame, self._parents, user_id)
        held: set[str] = set()
        lock_failed: list[int] = []
        apex_ms: list[float] = []
        lock_wait = 0.0
        if self._faults.in_maintenance():
            fail_active_rows(prepared.errors, 0, prepared.count, IN_MAINTENANCE)
        else:
            automation = self._automation_for(spec)
            if automation is not None:
                apex_ms = automation.run_triggers(prepared.errors)
            lock_started = time.monotonic()
            held, lock_failed = self._lock_failures(prepared, automation)
            lock_wait = time.monotonic() - lock_started
        try:
            yield _Locked(prepared, apex_ms, lock_failed, lock_wait)
        finally:
            self._locks.release(id(prepared), held)

    def _apply(
        self, conn: sqlite3.Connection, spec: JobSpec, prepared: PreparedBatch, user_id: str
    ) -> BatchOutcome:
        """Write the rows that passed validation, inside the caller's write transaction."""
        first = self._db.allocate(conn, f"counter:{spec.sobject.key_prefix}", prepared.count)
        outcome = commit_batch(conn, spec, prepared, first, user_id, sf_timestamp())
        if spec.sobject.name == ACCOUNT.name:
            self._parents.load(conn)
        return outcome

    def write_records(
        self, spec: JobSpec, columns: list[Column], frame: pl.DataFrame, user_id: str
    ) -> BatchOutcome:
        """Apply rows outside any job (REST record calls): a batch's validation, locks and DML.

        A record's triggers run inside its transaction: it is written once their Apex time is up
        (one 200-record chunk, so the CPU limit and wrapped lock errors apply as to a batch). No
        Bulk rate, batch time limit or retry: those are the Bulk queue's.
        """
        with self._locked(spec, columns, frame, user_id) as locked:
            self._stop.wait(sum(locked.apex_ms) / 1000)
            with self._db.write() as conn:
                return self._apply(conn, spec, locked.prepared, user_id)

    def _process(self, batch: _Batch) -> _Ending:
        """Run one attempt at a batch, in ``rows / rate`` seconds plus its Apex time at least."""
        started = time.monotonic()
        with self._locked(batch.spec, batch.upload.columns, batch.frame, batch.user_id) as locked:
            done, seconds = self._attempt_time(batch.frame.height, locked.apex_ms)
            attempt = _Attempt(
                done=done,
                seconds=seconds,
                apex_ms=sum(locked.apex_ms[: math.ceil(done / DML_CHUNK)]),
                lock_failures=bisect.bisect_left(locked.lock_failed, done),
            )
            rest = self._commit(batch, locked.prepared, attempt, started)
            busy = time.monotonic() - started - locked.lock_wait
            # Stopped meanwhile: what was done is applied, and the restart goes on (`_resume`).
            if self._stop.wait(max(0.0, seconds - busy)):
                return _Ending.STOPPED
        return self._after_attempt(batch, attempt, rest)

    def _attempt_time(self, count: int, apex_ms: list[float]) -> tuple[int, float]:
        """Rows an attempt gets done within the batch time limit, and the seconds it takes.

        The rate is the slot's whole throughput: its own parsing and writing count towards the
        batch's rows / rate, as an org's do, instead of adding to it.
        """
        limit = self._config.batch_time_limit
        stalled = self._faults.stalled_chunk(math.ceil(count / DML_CHUNK))
        if stalled is not None:
            return stalled * DML_CHUNK, limit
        rate = self._config.rate
        seconds = (count / rate if rate > 0 else 0.0) + sum(apex_ms) / 1000
        if seconds <= limit:
            return count, seconds
        chunk_apex_ms = apex_ms or [0.0] * math.ceil(count / DML_CHUNK)
        elapsed = 0.0
        for chunk, start in enumerate(range(0, count, DML_CHUNK)):
            rows = min(DML_CHUNK, count - start)
            elapsed += (rows / rate if rate > 0 else 0.0) + chunk_apex_ms[chunk] / 1000
            if elapsed > limit:
                return start, limit
        return count, seconds

    def _after_attempt(self, batch: _Batch, attempt: _Attempt, rest: int | None) -> _Ending:
        """Finish the batch, or put the rest of it (queued as batch ``rest``) back in the queue."""
        if rest is None:
            return _Ending.FINISHED
        if batch.attempts >= self._config.batch_retries:
            self.fail(batch.job_id, retries_exhausted(self._config.batch_retries))
            return _Ending.FINISHED
        self._requeue(batch.remainder(attempt.done, rest))
        return _Ending.REQUEUED

    def _commit(
        self, batch: _Batch, prepared: PreparedBatch, attempt: _Attempt, started: float
    ) -> int | None:
        """Write what an attempt got done; the index under which the rest is queued, if any."""
        spec = batch.spec
        job = self._jobs.get(batch.job_id)
        if job is None:
            return None
        done = attempt.done
        rest: int | None = None
        timed_out = attempt.timed_out(batch)
        outcome: BatchOutcome | None = None
        with self._db.write(bulk=True) as conn:
            if done:
                outcome = self._apply(
                    conn, spec, prepared.head(done) if timed_out else prepared, batch.user_id
                )
                conn.execute(
                    "UPDATE batches SET state = 'done', row_count = ?, processed = ?, "
                    "failed = ?, outcome = ? WHERE job_id = ? AND idx = ?",
                    (done, done, outcome.failed, outcome.to_bytes(), job.id, batch.index),
                )
            if timed_out:
                rest = self._store_remainder(conn, batch, done)
            elapsed_ms = int(max(time.monotonic() - started, attempt.seconds) * 1000)
            conn.execute(
                "UPDATE jobs SET number_processed = number_processed + ?, "
                "number_failed = number_failed + ?, retries = retries + ?, "
                "lock_failures = lock_failures + ?, api_active_ms = api_active_ms + ?, "
                "apex_ms = apex_ms + ?, system_modstamp = ? WHERE id = ?",
                (
                    done,
                    0 if outcome is None else outcome.failed,
                    attempt.lock_failures + int(timed_out),
                    attempt.lock_failures,
                    elapsed_ms,
                    round(attempt.apex_ms),
                    sf_timestamp(),
                    job.id,
                ),
            )
        if outcome is not None:
            # Outside the write lock: the outcome is already stored with the batch.
            frame = batch.frame.head(done) if timed_out else batch.frame
            self._write_results(job, batch.index, frame, outcome)
        return rest

    @staticmethod
    def _store_remainder(conn: sqlite3.Connection, batch: _Batch, done: int) -> int:
        """Queue the rows an attempt did not get to, as a batch of their own if some were done."""
        if not done:
            conn.execute(
                "UPDATE batches SET attempts = attempts + 1 WHERE job_id = ? AND idx = ?",
                (batch.job_id, batch.index),
            )
            return batch.index
        index = int(
            conn.execute(
                "SELECT MAX(idx) + 1 FROM batches WHERE job_id = ?", (batch.job_id,)
            ).fetchone()[0]
        )
        conn.execute(
            "INSERT INTO batches (job_id, idx, first_row, row_count, state, attempts) "
            "VALUES (?, ?, ?, ?, 'queued', ?)",
            (
                batch.job_id,
                index,
                batch.first_row + done,
                batch.frame.height - done,
                batch.attempts + 1,
            ),
        )
        return index

    def _write_results(
        self, job: Job, index: int, frame: pl.DataFrame, outcome: BatchOutcome
    ) -> None:
        self.files(job.id).write_batch(
            index,
            frame,
            BatchStatus(outcome.record_ids, outcome.errors, outcome.created),
            job.column_delimiter,
            job.line_ending,
        )

    def rewrite_results(self, job: Job, index: int) -> None:
        """Rebuild the result files of a processed batch from its stored outcome."""
        row = (
            self._db.connection()
            .execute(
                "SELECT first_row, row_count, outcome FROM batches WHERE job_id = ? AND idx = ?",
                (job.id, index),
            )
            .fetchone()
        )
        upload = self.parsed(job)
        assert row is not None and isinstance(upload, ParsedUpload)
        frame = upload.batch(row["first_row"], row["row_count"])
        self._write_results(job, index, frame, BatchOutcome.from_bytes(row["outcome"]))

    def _batch_finished(self, job_id: str) -> None:
        with self._work:
            if job_id not in self._pending:
                return
            self._pending[job_id] -= 1
            if self._pending[job_id] > 0:
                return
            del self._pending[job_id]
        self._complete(job_id)

    def _complete(self, job_id: str) -> None:
        """All batches of a job are finished: JobComplete unless it was aborted or failed."""
        with self._db.write() as conn:
            row = conn.execute("SELECT state, started FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None and row["state"] == "InProgress":
                total_ms = int((time.time() - (row["started"] or time.time())) * 1000)
                JobStore.update(conn, job_id, state="JobComplete", total_ms=total_ms)
        with self._uploads_lock:
            self._uploads.pop(job_id, None)

    def release(self, job_id: str) -> None:
        """Forget the cached upload of a finished job (it is parsed again from disk if needed)."""
        with self._uploads_lock:
            self._uploads.pop(job_id, None)

    def queued_batches(self) -> int:
        with self._work:
            return len(self._queue)

    # -- results ---------------------------------------------------------------------------

    def done_batches(self, job_id: str) -> list[int]:
        rows = self._db.connection().execute(
            "SELECT idx FROM batches WHERE job_id = ? AND state = 'done' ORDER BY idx", (job_id,)
        )
        return [int(r[0]) for r in rows]

    def unprocessed_rows(self, job: Job) -> tuple[list[str], list[UnprocessedRows]]:
        """Header and rows never processed (for a Failed or Aborted job), one item per batch."""
        if job.state not in ("Failed", "Aborted"):
            with self._uploads_lock:
                cached = self._headers.get(job.id)
            if cached is not None and not cached.failed:
                return cached.names, []
        upload = self.parsed(job)
        if job.state in ("JobComplete", "Failed", "Aborted"):
            self.release(job.id)
        if isinstance(upload, UploadError):
            return upload.header, [upload.rows]
        if job.state not in ("Failed", "Aborted"):
            return upload.header, []
        batches = (
            self._db.connection()
            .execute(
                "SELECT first_row, row_count FROM batches WHERE job_id = ? AND state != 'done' "
                "ORDER BY idx",
                (job.id,),
            )
            .fetchall()
        )
        has_batches = (
            self._db.connection()
            .execute("SELECT 1 FROM batches WHERE job_id = ? LIMIT 1", (job.id,))
            .fetchone()
        )
        if has_batches is None:
            return upload.header, [upload.frame]
        return upload.header, [upload.batch(b["first_row"], b["row_count"]) for b in batches]
