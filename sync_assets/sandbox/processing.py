"""A model of Salesforce's ingest processing: FIFO internal batches, parallel slots, rate, row locks.

After ``UploadComplete`` a job's rows are split into internal batches of 10,000, queued FIFO
across all jobs. ``slots`` worker threads take batches; each batch holds the row locks of its
records' parent Accounts for its whole duration of ``rows / rate`` seconds, its own parsing and
writing included (the rate is a slot's throughput). A record whose Account is held by another
running batch waits up to ``lock_timeout`` and then fails with ``UNABLE_TO_LOCK_ROW`` (counted in
the job's ``retries``). A batch is written in one SQLite transaction together with its result
files' bookkeeping, so a restart re-runs exactly the batches that were not applied.
"""

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

from sync_assets.sandbox.auth import OrgIdentity
from sync_assets.sandbox.convert import row_error
from sync_assets.sandbox.dml.commit import BatchOutcome, commit_batch
from sync_assets.sandbox.dml.prepare import JobSpec, ParentIndex, PreparedBatch, prepare_batch
from sync_assets.sandbox.faults import FaultInjector
from sync_assets.sandbox.jobs import TERMINAL_STATES, Job, JobStore, sf_timestamp
from sync_assets.sandbox.limits import BULK_BATCHES, INGEST_RECORDS, DailyLimits
from sync_assets.sandbox.objects import ACCOUNT, OBJECTS
from sync_assets.sandbox.results import BatchStatus, JobFiles, UnprocessedRows
from sync_assets.sandbox.store import Database
from sync_assets.sandbox.upload import Column, ParsedUpload, UploadError, parse_upload

BATCH_SIZE = 10_000
_HEADERS_KEPT = 100_000
UNABLE_TO_LOCK_ROW = row_error(
    "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"
)
_ACTIVE_STATES = ("UploadComplete", "InProgress")
_QUOTA_MESSAGES = {
    INGEST_RECORDS: "ExceededQuota : The job exceeds the number of records the org may ingest "
    "in 24 hours",
    BULK_BATCHES: "ExceededQuota : The job exceeds the number of Bulk API batches the org may "
    "process in 24 hours",
}
log = logging.getLogger(__name__)


class ProcessingConfig(BaseModel):
    slots: int = Field(default=10, ge=1)
    rate: float = Field(default=0.0, ge=0, description="records/second per slot; 0 = unthrottled")
    lock_timeout: float = Field(default=10.0, ge=0)


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
    """A validated batch whose parents' row locks are held: rows that missed one already failed."""

    prepared: PreparedBatch
    lock_failures: int
    lock_wait: float


@dataclass
class _Batch:
    job_id: str
    index: int
    first_row: int
    frame: pl.DataFrame
    spec: JobSpec
    upload: ParsedUpload


def job_spec(job: Job) -> JobSpec:
    return JobSpec(
        sobject=OBJECTS[job.object],
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
        identity: OrgIdentity,
        config: ProcessingConfig,
    ) -> None:
        self._db = db
        self._jobs = jobs
        self._jobs_root = jobs_root
        self._parents = parents
        self._limits = limits
        self._faults = faults
        self._identity = identity
        self._config = config
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
                    "SELECT idx, first_row, row_count, state FROM batches WHERE job_id = ? ORDER BY idx",
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
            spec = job_spec(job)
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
                    )
                    for b in waiting
                )
                self._work.notify_all()
            if not waiting:
                self._complete(job.id)

    # -- uploads ---------------------------------------------------------------------------

    def parse(self, job: Job, data: bytes) -> ParsedUpload | UploadError:
        """Parse an upload for ``job`` and keep the outcome until the job is processed."""
        try:
            outcome: ParsedUpload | UploadError = parse_upload(
                data, OBJECTS[job.object], job.column_delimiter, job.line_ending
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
        exceeded = self._limits.try_consume_all(
            {INGEST_RECORDS: upload.count, BULK_BATCHES: batch_count}
        )
        if exceeded is not None:
            self.fail(job.id, _QUOTA_MESSAGES[exceeded])
            return
        fail_at = self._faults.job_failure_batch(batch_count)
        spec = job_spec(job)
        batches = [
            _Batch(
                job.id,
                i,
                i * BATCH_SIZE,
                upload.batch(i * BATCH_SIZE, BATCH_SIZE),
                spec,
                upload,
            )
            for i in range(batch_count)
        ]
        with self._db.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO batches (job_id, idx, first_row, row_count, state) "
                "VALUES (?, ?, ?, ?, 'queued')",
                [(job.id, b.index, b.first_row, b.frame.height) for b in batches],
            )
            JobStore.update(conn, job.id, fail_at_batch=fail_at)
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
            self.fail(
                job.id,
                f"Timeout : Internal batch {batch.index + 1} exceeded the maximum number of "
                "retries; the remaining records were not processed",
            )
            self._batch_finished(batch.job_id)
            return
        if job.state == "UploadComplete":
            self._start_job(job.id)
        if self._process(batch):
            self._batch_finished(batch.job_id)

    def _start_job(self, job_id: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE jobs SET state = 'InProgress', started = ?, system_modstamp = ? "
                "WHERE id = ? AND state = 'UploadComplete'",
                (time.time(), sf_timestamp(), job_id),
            )

    def _lock_failures(self, prepared: PreparedBatch) -> tuple[set[str], int]:
        """Take the parent locks; mark rows that could not get theirs. Returns (held, failures)."""
        errors = prepared.errors
        failures = 0
        for i in self._faults.locked_rows(len(errors)):
            if errors[i] is None:
                errors[i] = UNABLE_TO_LOCK_ROW
                failures += 1
        wanted = {p for p, e in zip(prepared.parents, errors, strict=True) if p and e is None}
        missed = self._locks.acquire(id(prepared), wanted, self._config.lock_timeout)
        if missed:
            for i, parent in enumerate(prepared.parents):
                if parent in missed and errors[i] is None:
                    errors[i] = UNABLE_TO_LOCK_ROW
                    failures += 1
        return wanted - missed, failures

    @contextmanager
    def _locked(
        self, spec: JobSpec, columns: list[Column], frame: pl.DataFrame, user_id: str
    ) -> Iterator[_Locked]:
        """Validate rows, then hold their parent Accounts' row locks until the block ends."""
        with self._cpu:
            prepared = prepare_batch(spec, columns, frame, self._parents, user_id)
        lock_started = time.monotonic()
        held, lock_failures = self._lock_failures(prepared)
        try:
            yield _Locked(prepared, lock_failures, time.monotonic() - lock_started)
        finally:
            self._locks.release(id(prepared), held)

    def _apply(
        self, conn: sqlite3.Connection, spec: JobSpec, prepared: PreparedBatch, user_id: str
    ) -> BatchOutcome:
        """Write the rows that passed validation, inside the caller's write transaction."""
        first = self._db.allocate(conn, f"counter:{spec.sobject.key_prefix}", prepared.count)
        outcome = commit_batch(conn, spec, prepared, first, user_id, sf_timestamp())
        if spec.sobject is ACCOUNT:
            self._parents.load(conn)
        return outcome

    def write_records(
        self, spec: JobSpec, columns: list[Column], frame: pl.DataFrame, user_id: str
    ) -> BatchOutcome:
        """Apply rows outside any job (REST record calls): a batch's validation, locks and DML."""
        with self._locked(spec, columns, frame, user_id) as locked, self._db.write() as conn:
            return self._apply(conn, spec, locked.prepared, user_id)

    def _process(self, batch: _Batch) -> bool:
        """Run one batch in ``rows / rate`` seconds at least; False if the sandbox stopped meanwhile."""
        started = time.monotonic()
        user_id = self._identity.user_id
        with self._locked(batch.spec, batch.upload.columns, batch.frame, user_id) as locked:
            # The rate is the slot's whole throughput: its own parsing and writing count towards
            # the batch's rows / rate, as an org's do, instead of adding to it.
            duration = batch.frame.height / self._config.rate if self._config.rate > 0 else 0.0
            self._commit(batch, locked.prepared, locked.lock_failures, started, duration)
            busy = time.monotonic() - started - locked.lock_wait
            # Stopped meanwhile: the batch is applied, and the restart completes its job (`_resume`).
            return not self._stop.wait(max(0.0, duration - busy))

    def _commit(
        self,
        batch: _Batch,
        prepared: PreparedBatch,
        lock_failures: int,
        started: float,
        duration: float,
    ) -> None:
        spec = batch.spec
        job = self._jobs.get(batch.job_id)
        if job is None:
            return
        with self._db.write(bulk=True) as conn:
            count = batch.frame.height
            outcome = self._apply(conn, spec, prepared, self._identity.user_id)
            conn.execute(
                "UPDATE batches SET state = 'done', processed = ?, failed = ?, outcome = ? "
                "WHERE job_id = ? AND idx = ?",
                (count, outcome.failed, outcome.to_bytes(), job.id, batch.index),
            )
            elapsed_ms = int(max(time.monotonic() - started, duration) * 1000)
            conn.execute(
                "UPDATE jobs SET number_processed = number_processed + ?, "
                "number_failed = number_failed + ?, retries = retries + ?, "
                "lock_failures = lock_failures + ?, api_active_ms = api_active_ms + ?, "
                "system_modstamp = ? WHERE id = ?",
                (
                    count,
                    outcome.failed,
                    lock_failures,
                    lock_failures,
                    elapsed_ms,
                    sf_timestamp(),
                    job.id,
                ),
            )
        # Outside the write lock: the outcome is already stored with the batch.
        self._write_results(job, batch.index, batch.frame, outcome)

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
