"""SQLite storage of the sandbox: records, jobs, batches, tokens, counters; one writer at a time.

WAL checkpoints are taken by a background caller of :meth:`Database.checkpoint` rather than by
the committing writer, so that copying pages back into the database file (which grows with the
table) never happens while the write lock is held. They are taken seldom: batches with random
external ids dirty pages all over the unique index, and a page changed by many batches between
two checkpoints is copied back once instead of once per batch.
"""

import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sync_assets.sandbox.ids import mint_ids
from sync_assets.sandbox.objects import OBJECTS, ObjectDef

# Only a backstop for a database used without periodic checkpoints (pages of 4 KiB: 1 GiB).
_AUTOCHECKPOINT_PAGES = 262_144
_CHECKPOINT_SECONDS = 10.0
# A WAL longer than this (pages) is reset by a blocking checkpoint under the write lock.
_WAL_RESET_PAGES = 262_144
# What a reset WAL file is cut back to.
_WAL_KEPT_BYTES = 64 * 1024 * 1024
# Page caches. The writer's holds the tables' and indexes' hot pages across batches. Every other
# thread (an HTTP connection, a slot, a query worker) has its own reading connection, dozens at
# once: each reads a few pages per request, and a cache that grew to the writer's size in each of
# them is what took a 20M-row night's sandbox to 3.5 GB.
_WRITER_CACHE_KIB = 128 * 1024
_READER_CACHE_KIB = 8 * 1024
# Memory-mapped I/O, bounded: each connection maps the file on its own, and the pages it touches
# count in the process's resident memory once per connection. A connection touches only what it
# reads (a reader, a few pages of the jobs), so the bound matters for the writer and for full-table
# scans (query jobs map nothing: see `query_runner`). Without any map, requests were slow enough on
# a busy machine to change what a timed test saw (test_the_api_budget_stops_the_night_cleanly…).
_MMAP_BYTES = 256 * 1024 * 1024

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS tokens (
        hash TEXT PRIMARY KEY, issued REAL NOT NULL, expires REAL, user_id TEXT)""",
    """CREATE TABLE IF NOT EXISTS usage (
        minute INTEGER NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
        PRIMARY KEY (minute, name))""",
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        object TEXT NOT NULL,
        operation TEXT NOT NULL,
        external_id_field TEXT,
        assignment_rule_id TEXT,
        line_ending TEXT NOT NULL,
        column_delimiter TEXT NOT NULL,
        api_version TEXT NOT NULL,
        state TEXT NOT NULL,
        created_date TEXT NOT NULL,
        system_modstamp TEXT NOT NULL,
        error_message TEXT,
        uploaded INTEGER NOT NULL DEFAULT 0,
        upload_bytes INTEGER NOT NULL DEFAULT 0,
        records_received INTEGER NOT NULL DEFAULT 0,
        number_processed INTEGER NOT NULL DEFAULT 0,
        number_failed INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        lock_failures INTEGER NOT NULL DEFAULT 0,
        total_ms INTEGER NOT NULL DEFAULT 0,
        api_active_ms INTEGER NOT NULL DEFAULT 0,
        started REAL,
        fail_at_batch INTEGER,
        created_by TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS batches (
        job_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        first_row INTEGER NOT NULL,
        row_count INTEGER NOT NULL,
        state TEXT NOT NULL,
        processed INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        outcome BLOB,
        PRIMARY KEY (job_id, idx)
    ) WITHOUT ROWID""",
]
# Columns added since the tables were first made: a data dir from before gets them on start.
_ADDED_COLUMNS = [
    ("tokens", "user_id", "TEXT"),
    ("jobs", "created_by", "TEXT"),
    ("jobs", "abort_at_batch", "INTEGER"),
    ("jobs", "stuck_at_batch", "INTEGER"),
    ("jobs", "stuck_until", "REAL"),
    ("jobs", "apex_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("batches", "attempts", "INTEGER NOT NULL DEFAULT 0"),
]


class WriteLock:
    """The write lock: granted in request order, short writes before batch commits.

    ``threading.Lock`` lets a thread that releases and asks again win over threads that have been
    waiting. Job requests (create, upload, close, state changes) make short writes; each batch
    commit holds the lock for the whole batch. Putting the short ones first keeps the API
    responsive however many batches are waiting to commit, and batches still commit in order.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._held = False
        self._waiting: dict[bool, deque[object]] = {True: deque(), False: deque()}

    @contextmanager
    def hold(self, bulk: bool) -> Iterator[None]:
        ticket = object()
        with self._changed:
            queue = self._waiting[bulk]
            queue.append(ticket)
            while self._held or queue[0] is not ticket or (bulk and self._waiting[False]):
                self._changed.wait()
            queue.popleft()
            self._held = True
        try:
            yield
        finally:
            with self._changed:
                self._held = False
                self._changed.notify_all()


class Database:
    """One SQLite file in WAL mode: a reading connection per thread, one writing connection.

    SQLite allows one writer anyway; taking a Python lock before ``BEGIN IMMEDIATE`` makes writers
    queue without SQLite's sleep-and-retry busy handler, which would cost throughput. All writes
    go through the same connection because a connection drops its page cache whenever another one
    has written: with one writer, the pages of the tables and indexes stay cached across batches.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = WriteLock()
        self._writer = self._open(_WRITER_CACHE_KIB)
        self._writer.execute(f"PRAGMA journal_size_limit={_WAL_KEPT_BYTES}")
        self._last_checkpoint = time.monotonic()
        with self.write() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            for table, column, sql_type in _ADDED_COLUMNS:
                add_missing_column(conn, table, column, sql_type)
            for sobject in OBJECTS.values():
                ensure_table(conn, sobject)

    def _open(self, cache_kib: int) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute(f"PRAGMA cache_size=-{cache_kib}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
        conn.row_factory = sqlite3.Row
        return conn

    def connection(self) -> sqlite3.Connection:
        """The calling thread's connection, for reads outside write transactions."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open(_READER_CACHE_KIB)
        return conn

    @contextmanager
    def write(self, bulk: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed if the block succeeds, rolled back otherwise.

        ``bulk`` marks a long transaction (a batch of records), which lets short ones go first.
        """
        conn = self._writer
        with self._write_lock.hold(bulk):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def checkpoint(self) -> None:
        """Copy committed pages into the database file without blocking writers.

        Does so at most every ``_CHECKPOINT_SECONDS``, however often it is called. A passive checkpoint cannot rewind a WAL that writers keep appending to; once it is long,
        a truncating checkpoint under the write lock resets it.
        """
        if time.monotonic() - self._last_checkpoint < _CHECKPOINT_SECONDS:
            return
        self._last_checkpoint = time.monotonic()
        conn = self.connection()
        _, wal_pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if wal_pages > _WAL_RESET_PAGES:
            with self._write_lock.hold(bulk=True):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def get_meta(self, key: str) -> str | None:
        row = self.connection().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def named_ids(self, key_prefix: str, names: list[str]) -> dict[str, str]:
        """Ids of named setup records (users, record types), minted once per data dir and kept.

        Numbers start at 2 for each prefix: the integration user took ``005…`` number 1.
        """
        stored = self._named(self.connection(), key_prefix)
        if set(names) - set(stored):
            with self.write() as conn:
                stored = self._named(conn, key_prefix)
                for name in names:
                    if name not in stored:
                        stored[name] = mint_ids(key_prefix, len(stored) + 2, 1)[0]
                        self.set_meta(conn, f"named:{key_prefix}:{name}", stored[name])
        return {name: stored[name] for name in names}

    @staticmethod
    def _named(conn: sqlite3.Connection, key_prefix: str) -> dict[str, str]:
        head = f"named:{key_prefix}:"
        rows = conn.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(head), head)
        )
        return {str(r[0])[len(head) :]: str(r[1]) for r in rows}

    def allocate(self, conn: sqlite3.Connection, counter: str, count: int) -> int:
        """Reserve ``count`` consecutive numbers of a named counter inside a write transaction."""
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (counter,)).fetchone()
        first = int(row[0]) if row else 1
        self.set_meta(conn, counter, str(first + count))
        return first


def add_missing_column(conn: sqlite3.Connection, table: str, column: str, sql_type: str) -> None:
    """``ALTER TABLE … ADD COLUMN`` unless ``table`` has the column already."""
    present = {str(r[1]) for r in conn.execute(f'PRAGMA table_info("{table}")')}
    if column not in present:
        conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {sql_type}')


def ensure_table(conn: sqlite3.Connection, sobject: ObjectDef) -> None:
    """Create ``sobject``'s table, or add to an existing one the columns of fields it lacks.

    A required field's column is added with its default, which the existing rows then hold, as
    on a real org (its corporate currency when multi-currency is enabled, a new checkbox false).
    """
    create, *indexes = sobject.ddl()
    conn.execute(create)
    for f in sobject.fields:
        default = f.default if f.default is not None and not f.nillable else None
        kept = "" if default is None else " DEFAULT '" + default.replace("'", "''") + "'"
        add_missing_column(conn, sobject.name, f.name, f.sql_type + kept)
    for statement in indexes:
        conn.execute(statement)
