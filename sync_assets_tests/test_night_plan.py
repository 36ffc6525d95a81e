"""A night's plan without an org: counts as staging makes them, nothing written, /limits optional."""

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sync_assets.cli import app
from sync_assets.drops.contract import default_contract
from sync_assets.drops.staging import stage_drop
from sync_assets.night_plan import plan_night
from sync_assets.salesforce.errors import BulkApiError
from sync_assets.salesforce.planning import PlanLimits
from sync_assets.state.layout import PARTITION_KEYS
from sync_assets.storage import StateStore
from sync_assets_tests.drops.helpers import valid_rows, write_drop

LIMITS = {
    "DailyApiRequests": {"Max": 1_000_000, "Remaining": 150},
    "DailyBulkApiBatches": {"Max": 15_000, "Remaining": 15_000},
}


def forbidden() -> dict[str, Any]:
    raise BulkApiError("GET", "limits/", 403, "INSUFFICIENT_ACCESS", "no View Setup")


@pytest.fixture
def landing(tmp_path: Path) -> StateStore:
    landing = StateStore(tmp_path / "landing")
    write_drop(landing, "d", [valid_rows(400, accounts=40)])
    return landing


def test_the_plan_counts_what_staging_stages_and_writes_nothing(
    landing: StateStore, tmp_path: Path
) -> None:
    state = StateStore(tmp_path / "state")
    plan = plan_night(
        landing,
        state,
        "d",
        default_contract(),
        PARTITION_KEYS,
        PlanLimits(max_records=7),
        lambda: LIMITS,
    )
    assert state.list_names() == []
    staged = stage_drop(landing, StateStore(tmp_path / "staged"), "d")
    for part in plan.partitions:
        counts = staged[part.partition].counts
        assert (part.source, part.create, part.rejected, part.records) == (
            counts.source,
            counts.new,
            counts.rejected,
            counts.to_send,
        )
        assert part.jobs >= -(-part.records // 7)  # at most 7 records a job
    assert plan.totals["records"] == 400 and plan.totals["jobs"] > 10
    [batches, requests] = plan.limits
    assert (requests.limit, requests.needed, requests.fits) == (
        "DailyApiRequests",
        plan.totals["api_calls"],
        False,
    )
    assert batches.fits and plan.fits is False


def test_a_forbidden_limits_resource_leaves_the_plan_whole(
    landing: StateStore, tmp_path: Path
) -> None:
    plan = plan_night(
        landing,
        StateStore(tmp_path / "state"),
        "d",
        default_contract(),
        ["3"],
        PlanLimits(),
        forbidden,
    )
    assert [part.partition for part in plan.partitions] == ["3"]
    assert plan.fits is None and plan.limits == []
    assert "INSUFFICIENT_ACCESS" in str(plan.limits_unavailable)


def test_plan_without_salesforce_variables_refuses_like_sync(
    landing: StateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like `sync`, `plan` never plans against a sandbox in place of the org it was not given."""
    for name in [name for name in os.environ if name.startswith("SALESFORCE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SYNC_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("SYNC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SYNC_SANDBOX_DIR", str(tmp_path / "sandbox"))

    result = CliRunner().invoke(app, ["plan", "--drop-id", "d"])

    assert result.exit_code == 2, result.output
    assert "No Salesforce credentials" in " ".join(result.output.split())
    assert not (tmp_path / "state").exists() and not (tmp_path / "sandbox").exists()
