"""The worker's hold on its SQLite files (`sqlite_files`): real files, through SQLAlchemy."""

import sqlite3
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from sync_assets.sqlite_files import sqlite_files_held_open


def in_wal_mode(path: Path) -> Path:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE IF NOT EXISTS events (body TEXT)")
    connection.close()
    return path


def write_as_dagster_does(path: Path) -> None:
    """A new engine, one connection, one insert, closed: Dagster's SQLite storages, per write."""
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=NullPool)
    with engine.connect() as connection, connection.begin():
        connection.execute(sa.text("INSERT INTO events VALUES ('x')"))
    engine.dispose()


def wal_of(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def test_sqlites_last_connection_to_close_checkpoints_and_deletes_the_wal(tmp_path: Path) -> None:
    """What the hold saves (sqlite.org/wal.html: "normally removed when the last connection to the
    database closes"; SQLite's own test/nockpt.test 1.3–1.4)."""
    database = in_wal_mode(tmp_path / "runs.db")
    write_as_dagster_does(database)
    assert not wal_of(database).exists()


def test_a_wal_file_is_held_while_the_block_lasts_and_released_after(tmp_path: Path) -> None:
    database = in_wal_mode(tmp_path / "runs.db")
    with sqlite_files_held_open():
        for _ in range(3):
            write_as_dagster_does(database)
            assert wal_of(database).exists()  # Dagster's connection did not close last
    assert not wal_of(database).exists()  # the hold closed last, and checkpointed
    write_as_dagster_does(database)  # the listener is gone: closing last again
    assert not wal_of(database).exists()
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM events").fetchone() == (4,)
    connection.close()


def test_a_new_file_is_held_once_it_is_in_wal_mode(tmp_path: Path) -> None:
    """A run's new event file: Dagster creates it, then switches it to WAL; the hold waits."""
    database = tmp_path / "run.db"
    with sqlite_files_held_open():
        engine = sa.create_engine(f"sqlite:///{database}", poolclass=NullPool)
        with engine.connect() as connection, connection.begin():
            connection.execute(sa.text("PRAGMA journal_mode=WAL"))
            connection.execute(sa.text("CREATE TABLE events (body TEXT)"))
        engine.dispose()
        assert not wal_of(database).exists()  # not held: it was not in WAL mode when opened
        write_as_dagster_does(database)
        assert wal_of(database).exists()


def test_held_files_are_still_written_and_checkpointed_by_other_processes(tmp_path: Path) -> None:
    """The hold takes no lock: the webserver or daemon writes and checkpoints as before."""
    database = in_wal_mode(tmp_path / "runs.db")
    with sqlite_files_held_open():
        write_as_dagster_does(database)
        other = sqlite3.connect(database, timeout=0)
        other.execute("INSERT INTO events VALUES ('y')")
        other.commit()
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        other.close()
        assert busy == 0
