"""The code location loads, names match docs/ARCHITECTURE.md, and `dagster definitions validate` passes."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from sync_assets.definitions import build_defs
from sync_assets.state.layout import PARTITION_KEYS

PROJECT = Path(__file__).resolve().parent.parent
defs = build_defs()


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)


def test_names_and_partitions_follow_the_design() -> None:
    repository = defs.get_repository_def()
    assert {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()} == {
        "opportunity_batches",
        "salesforce_opportunities",
        "opportunity_sync_summary",
    }
    for name in ("opportunity_batches", "salesforce_opportunities"):
        partitions = repository.asset_graph.get(dg.AssetKey(name)).partitions_def
        assert partitions is not None
        assert partitions.get_partition_keys() == PARTITION_KEYS
    assert defs.get_schedule_def("nightly_opportunity_sync").cron_schedule
    assert defs.get_sensor_def("opportunity_drop_sensor")
    check_names = {key.name for key in repository.asset_graph.asset_check_keys}
    assert check_names == {
        "rows_accounted_for",
        "reject_rate_below_threshold",
        "no_permanently_failed_rows",
        "ledger_identity_holds",
        "salesforce_count_matches_ledger",
        "salesforce_total_matches_ledger",
        "salesforce_matches_what_was_sent",
    }
    # The drift check has its own job (not the nightly load's); its repair runs per partition.
    assert defs.resolve_job_def("opportunity_drift_job").name == "opportunity_drift_job"
    assert defs.resolve_job_def("opportunity_drift_repair_job").partitions_def is not None


def test_dagster_cli_validates_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        check=False,
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Validation successful" in completed.stdout + completed.stderr
