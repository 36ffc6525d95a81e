"""Imported once by the runner's fork server, so that every run forked from it starts with Dagster warm.

A fork server can only import modules, so importing this one does the work on purpose: it imports
the code location, then opens and drops a throw-away local instance through Dagster's public API
(`DagsterInstance.local_temp`), which imports the SQLite storage layer (SQLAlchemy, Alembic,
Dagster's storages) that a run's own instance needs: about a CPU-second per run otherwise. The
DAGSTER_HOME instance is never touched here.
"""

import tempfile
from pathlib import Path

import dagster as dg

import sync_assets.definitions  # noqa: F401  (the code location every run loads)


def _warm_instance_storage() -> None:
    with tempfile.TemporaryDirectory(prefix="sync-assets-preload-") as home:
        # An empty configuration: the defaults are SQLite, and Dagster warns when it finds none.
        (Path(home) / "dagster.yaml").write_text("{}\n")
        with dg.DagsterInstance.local_temp(tempdir=home) as instance:
            instance.get_runs(limit=1)


_warm_instance_storage()
