"""Imported once by the runner's fork server, so that every run forked from it starts with Dagster warm.

A fork server can only import modules, so importing this one does the work on purpose: it imports
the code location, then opens and drops a throw-away local instance through Dagster's public API
(`DagsterInstance.local_temp`), which imports the SQLite storage layer (SQLAlchemy, Alembic,
Dagster's storages) that a run's own instance needs: about a CPU-second per run otherwise. The
DAGSTER_HOME instance is never touched here. It also loads the CAs a run's Salesforce connection
trusts, once (see `_warm_tls_context`).

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


def _warm_instance_storage() -> None:
    import dagster as dg

    with tempfile.TemporaryDirectory(prefix="sync-assets-preload-") as home:
        # An empty configuration: the defaults are SQLite, and Dagster warns when it finds none.
        (Path(home) / "dagster.yaml").write_text("{}\n")
        with dg.DagsterInstance.local_temp(tempdir=home) as instance:
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
    # Imported here, not at the top, so that the collector is paused while they import.
    import sync_assets.definitions  # noqa: F401  (the code location every run loads)

    _warm_instance_storage()
    _warm_tls_context()


with _without_collections_then_frozen():
    _preload()
