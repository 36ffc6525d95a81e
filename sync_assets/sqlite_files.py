"""Hold a run's SQLite files open for the run, so Dagster's connections never close last.

Dagster's SQLite storages open a new connection for every read or write and close it after. In
WAL mode the last connection to close a file checkpoints it and deletes its WAL, which the next
connection creates again: a run of an unchanged partition opens ~170 connections, and each cost
~1.8 ms of wall and ~1.4 ms of CPU that way against ~1.25 and ~0.95 with one more connection
holding the file (a probe of 300 insert-and-close cycles through SQLAlchemy, 2026-12-06). While
a run lasts, the worker holds one such connection per WAL file its instance opens; SQLite still
checkpoints a growing WAL as it commits, and the file is checkpointed once when the run ends.

The held connection reads the journal mode once, which is what takes part in the WAL (a
connection that has never read does not); it holds no lock and no transaction, so other
processes (the webserver, the daemon) read, write and checkpoint as before. A file not in WAL
mode yet (a run's new event file, before Dagster sets it up) is held from its next connection.
Postgres connections are left alone: Dagster pools those.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextmanager
def sqlite_files_held_open() -> Iterator[None]:
    """Within the block, every WAL file a SQLAlchemy engine of this process connects to is held."""
    held: dict[str, sqlite3.Connection] = {}

    def hold(connection: Any, _record: Any) -> None:
        if not isinstance(connection, sqlite3.Connection):
            return
        with closing(connection.cursor()) as cursor:
            path = next((row[2] for row in cursor.execute("PRAGMA database_list")), "")
        if not path or path in held:
            return  # an in-memory database, or one held already
        holder = sqlite3.connect(path, check_same_thread=False)
        in_wal = holder.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        if not in_wal or held.setdefault(path, holder) is not holder:
            holder.close()

    event.listen(Engine, "connect", hold)
    try:
        yield
    finally:
        event.remove(Engine, "connect", hold)
        for holder in held.values():
            holder.close()
