"""Running query jobs in the background: ``UploadComplete`` → ``InProgress`` → ``JobComplete``.

Each job runs its compiled SOQL once, on its worker's own SQLite connection, and writes the
records' CSV lines to its results files chunk by chunk (``query_results``): memory stays bounded
by one chunk however many records the job finds. An abort (the job's state leaving ``InProgress``) stops it between
chunks. Jobs that were active when the sandbox stopped run again from the start.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator

from sync_assets.sandbox.metadata import Catalog
from sync_assets.sandbox.query import QueryService
from sync_assets.sandbox.query_jobs import ACTIVE_STATES, QueryJobStore
from sync_assets.sandbox.query_results import QueryResults, lines_sql
from sync_assets.sandbox.results import JobFiles
from sync_assets.sandbox.store import Database

FETCH_ROWS = 50_000
_WORKERS = 2
# A job reads its pages once, in order: a page cache bigger than a few MiB, or a memory map, would
# only hold pages no one reads again (and count towards the process's memory as the job goes on).
_CACHE_KIB = 16 * 1024
log = logging.getLogger(__name__)


class QueryRunner:
    def __init__(
        self,
        db: Database,
        store: QueryJobStore,
        catalog: Catalog,
        files: Callable[[str], JobFiles],
    ) -> None:
        self._db = db
        self._store = store
        self._catalog = catalog
        self.files = files
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._workers_lock = threading.Lock()
        for job in store.in_states(ACTIVE_STATES):
            self.submit(job.id)

    def results(self, job_id: str) -> QueryResults:
        return QueryResults(self.files(job_id).dir)

    def submit(self, job_id: str) -> None:
        """Queue a job; the workers start with the first one (they are daemons, like the server's)."""
        with self._workers_lock:
            while len(self._workers) < _WORKERS:
                worker = threading.Thread(
                    target=self._work, name=f"query-{len(self._workers)}", daemon=True
                )
                worker.start()
                self._workers.append(worker)
        self._queue.put(job_id)

    def _work(self) -> None:
        self._db.connection().execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        self._db.connection().execute("PRAGMA mmap_size=0")
        while True:
            job_id = self._queue.get()
            try:
                self._run(job_id)
            except Exception:
                log.exception("query job %s failed inside the sandbox", job_id)
                self._store.change(
                    job_id,
                    ACTIVE_STATES,
                    state="Failed",
                    error_message="Unknown : internal error of the sandbox while processing",
                )

    def _run(self, job_id: str) -> None:
        started = time.time()
        before = self._store.change(job_id, ACTIVE_STATES, state="InProgress", started=started)
        if before not in ACTIVE_STATES:
            return
        job = self._store.get(job_id)
        assert job is not None
        # As its creator sees the org: a field hidden from them is not there (create checked it).
        catalog = self._catalog.for_user(job.created_by_id)
        compiled = QueryService.compile(job.query, job.include_deleted, catalog, rest=False)
        sql, columns = lines_sql(compiled, catalog, job.column_delimiter, job.line_ending)
        rows = self._rows(sql, compiled.params)
        try:
            count = self.results(job_id).write(
                rows,
                columns,
                job.column_delimiter,
                job.line_ending,
                lambda: self._still_running(job_id),
            )
        finally:
            # Ends the read transaction even when the job stopped halfway.
            rows.close()
        if count is None:
            return
        self._store.change(
            job_id,
            ("InProgress",),
            state="JobComplete",
            number_processed=count,
            total_ms=int((time.time() - started) * 1000),
        )

    def _rows(self, sql: str, params: list[object]) -> Generator[list[tuple[str]]]:
        """The records' CSV lines in chunks, read on this worker's connection as plain tuples."""
        cursor = self._db.connection().cursor()
        cursor.row_factory = None
        try:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(FETCH_ROWS):
                yield rows
        finally:
            cursor.close()

    def _still_running(self, job_id: str) -> bool:
        job = self._store.get(job_id)
        return job is not None and job.state == "InProgress"
