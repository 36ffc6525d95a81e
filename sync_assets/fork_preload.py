"""Imported once by the runner's fork server, so that every run forked from it starts with Dagster warm.

A fork server can only import modules, so importing this one does the work on purpose: it imports
the code location, then opens and drops a throw-away local instance through Dagster's public API
(`DagsterInstance.local_temp`), which imports the SQLite storage layer (SQLAlchemy, Alembic,
Dagster's storages) that a run's own instance needs: about a CPU-second per run otherwise. The
DAGSTER_HOME instance is never touched here. It also loads the CAs a run's Salesforce connection
trusts, once (see `_warm_tls_context`).
"""

import contextlib
import os
import ssl
import tempfile
from pathlib import Path

import dagster as dg

import sync_assets.definitions  # noqa: F401  (the code location every run loads)
from sync_assets.salesforce.connection import SalesforceCredentials
from sync_assets.salesforce.transport import verified_session


def _warm_instance_storage() -> None:
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
    with contextlib.suppress(OSError, ssl.SSLError, ValueError):
        verified_session(SalesforceCredentials.from_env(os.environ).ca_bundle).close()


_warm_instance_storage()
_warm_tls_context()
