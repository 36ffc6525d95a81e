"""Imported once by the runner's fork server, so that every run forked from it starts with Dagster warm.

A fork server can only import modules, so importing this one does the work on purpose: it imports
the code location, then opens a local instance of its own through Dagster's public API
(`DagsterInstance.local_temp`), which imports the SQLite storage layer (SQLAlchemy, Alembic,
Dagster's storages) that a run's own instance needs: about a CPU-second per run otherwise (see
`_warm_instance_storage`). The DAGSTER_HOME instance itself is never opened here. It also loads
the CAs a run's Salesforce connection trusts, once (see `_warm_tls_context`), and keeps Dagster's
schema migrations read (see `_dagster_migrations_read_once`), and sizes polars' thread pool for
the runs as the runner offered (see `run_threads`).

All of it runs with the garbage collector paused and ends by freezing what it made (see
`_without_collections_then_frozen`).
"""

import contextlib
import gc
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

_INSTANCE_DIRECTORY = ".fork-server-instance"
"""The fork server's own instance, in DAGSTER_HOME: never the one runs are recorded in."""


@contextlib.contextmanager
def _without_collections_then_frozen() -> Iterator[None]:
    """Python's recipe for a server that forks without exec (the `gc.freeze` documentation).

    Importing Dagster allocates hundreds of thousands of objects that live as long as the
    process; collecting while they pile up is a fifth of the import's CPU, on the path before
    the first run can start. Frozen, they are never traversed again: not by the collections of
    each run forked from here, which would also write to (and so copy) the pages they share.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


# Where Dagster's SQLite storages keep their Alembic migration scripts (its
# ALEMBIC_SCRIPTS_LOCATION). Should an upgrade move them, they are read as Alembic reads them.
_DAGSTER_MIGRATIONS = "dagster:_core/storage/alembic"


def _dagster_migrations_read_once() -> None:
    """Alembic hands back one read of Dagster's migration scripts, in this process and its forks.

    Dagster checks every SQLite file it opens against the newest of its migrations: each of the
    instance's three at a run's start, and the new file of each run's events. For each check
    Alembic builds a `ScriptDirectory` and loads all of Dagster's ~90 migration scripts again to
    find the newest: ~25 ms of CPU a check, ~0.15 of the ~0.8 CPU-s an unchanged partition's run
    costs (a probe alternating five runs of each, 2026-12-06). The scripts are installed files
    that do not change while a process lives, so the directory read first, revision map and all,
    is the answer for Dagster's location from then on; the instance `_warm_instance_storage`
    opens reads it here, before any run is forked. Any other location is read as Alembic would.
    """
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    read = ScriptDirectory.from_config.__func__  # type: ignore[attr-defined]
    read_by_file: dict[str | None, ScriptDirectory] = {}

    def from_config(cls: type[ScriptDirectory], config: Config) -> ScriptDirectory:
        if config.get_main_option("script_location") != _DAGSTER_MIGRATIONS:
            return read(cls, config)
        if config.config_file_name not in read_by_file:
            read_by_file[config.config_file_name] = read(cls, config)
        return read_by_file[config.config_file_name]

    ScriptDirectory.from_config = classmethod(from_config)  # type: ignore[assignment]


def _warm_instance_storage() -> None:
    """Open and close a local instance, for the modules a run's instance imports.

    It is kept beside the runs' history (in DAGSTER_HOME, one per Dagster version): creating its
    SQLite files and stamping their schema takes ~0.25 s, opening them again ~0.03 s, on the path
    before a night's first run. Without DAGSTER_HOME it is a temporary one. Any failure (a
    concurrent command creating it too, a full disk) leaves the imports to the runs, which report
    real problems with their own instance: an error here would stop the fork server, and every
    run with it.
    """
    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    with contextlib.ExitStack() as stack, contextlib.suppress(Exception):
        directory = (
            Path(home) / f"{_INSTANCE_DIRECTORY}-{dg.__version__}"
            if home
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sync-assets-")))
        )
        directory.mkdir(parents=True, exist_ok=True)
        configuration = directory / "dagster.yaml"
        if not configuration.exists():
            # An empty configuration: the defaults are SQLite, and Dagster warns when it finds none.
            configuration.write_text("{}\n")
        with dg.DagsterInstance.local_temp(tempdir=str(directory)) as instance:
            instance.get_runs(limit=1)


def _warm_tls_context() -> None:
    """Build the TLS context of the org's connection once, for every run forked from here.

    `transport` keeps one per process and set of CA files (the system's, certifi's, the org's
    as the fork server's environment names it): each run finds it built instead of spending
    ~50 ms of CPU on it, a tenth of an unchanged partition's run. A run whose environment names
    other CA files builds its own.

    A CA file that cannot be loaded (or variables that do not parse) is left to the runs, which
    say so clearly: an error here would stop the fork server, and every run with it.
    """
    from sync_assets.salesforce.connection import SalesforceCredentials
    from sync_assets.salesforce.transport import verified_session

    with contextlib.suppress(OSError, ssl.SSLError, ValueError):
        verified_session(SalesforceCredentials.from_env(os.environ).ca_bundle).close()


def _preload() -> None:
    from sync_assets.run_threads import adopt_in_fork_server

    # Before polars is imported: it sizes its thread pool then (see `run_threads`).
    adopt_in_fork_server()
    # Imported here, not at the top, so that the collector is paused while they import.
    # The code location every run loads, and what every run holds its SQLite files with.
    from sync_assets import definitions, sqlite_files  # noqa: F401

    _dagster_migrations_read_once()
    _warm_instance_storage()
    _warm_tls_context()


with _without_collections_then_frozen():
    _preload()
