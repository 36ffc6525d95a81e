"""A plan before sending (issue 14, "Done when"): `sync-assets plan` and the Dagster dry run.

The plan prints a table and writes JSON, sends the org nothing that changes data (the sandbox's
own counters: no job, no write request), leaves the state as it was, and its counts are what the
following real night does.
"""

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from typer.testing import CliRunner

from sync_assets.automation import DRY_RUN_CONFIG, partitions_with_runs
from sync_assets.cli import app
from sync_assets.night_plan import NightPlan, PartitionPlan
from sync_assets.run_tags import DROP_TAG
from sync_assets.runner import run_drop
from sync_assets.state.layout import PARTITION_KEYS, plan_path
from sync_assets_tests.reliability.harness import Night, NightFactory, definitions, summarise

pytestmark = pytest.mark.slow


def untouched(night: Night, before: dict[str, Any]) -> None:
    """Nothing that changes data reached the org, and the state holds no trace of a night."""
    after = night.stats()["totals"]
    assert after.get("write_requests", 0) == before.get("write_requests", 0)
    assert (after["jobs"], after["records_received"]) == (
        before["jobs"],
        before["records_received"],
    )
    assert not any(night.state.exists(f"{folder}/") for folder in ("ledger", "staging", "org"))


def plan_by_cli(night: Night, drop_id: str, tmp_path: Path) -> NightPlan:
    json_file = tmp_path / f"{drop_id}-plan.json"
    result = CliRunner().invoke(app, ["plan", "--drop-id", drop_id, "--json", str(json_file)])
    assert result.exit_code == 0, result.output
    assert f"Plan of drop {drop_id} (nothing sent)" in result.output
    assert "Nothing was sent and no ledger moved" in result.output
    return NightPlan.model_validate_json(json_file.read_text())


def assert_the_night_did_as_planned(plan: NightPlan, drop_id: str) -> None:
    outcomes = {
        o.partition: o for o in run_drop(drop_id, PARTITION_KEYS, parallel=5, launched_by="pytest")
    }
    for part in plan.partitions:
        outcome = outcomes[part.partition]
        assert outcome.success, outcome.error
        staged = outcome.materializations["opportunity_batches"]
        loaded = outcome.materializations["salesforce_opportunities"]
        done = {
            "source": loaded["source"],
            "create": loaded["created"],
            "update": loaded["updated"],
            "unchanged": loaded["unchanged"],
            "rejected": loaded["rejected"],
            "absent": staged["deleted_in_source"],
            "jobs": loaded["jobs"],
            "records": loaded["sent"],
        }
        planned = part.model_dump(include=set(done))
        assert planned == done, part.partition


def configure_org(night: Night, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the commands at the night's running sandbox as at a configured org (client
    credentials), so `sync-assets plan` does not start a sandbox of its own."""
    connection = night.connection()
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", connection.client_id)
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", connection.client_secret.get_secret_value())
    monkeypatch.setenv("SALESFORCE_LOGIN_URL", connection.instance_url)
    monkeypatch.setenv("SALESFORCE_CA_BUNDLE", str(connection.ca_cert))


def test_plan_on_the_demo_drop_then_the_nights_that_follow(
    make_night: NightFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    night = make_night()
    configure_org(night, monkeypatch)
    night.land("n1", rows=3_000, bad_fraction=0.003)
    before = night.stats()["totals"]

    plan = plan_by_cli(night, "n1", tmp_path)

    untouched(night, before)
    assert [part.partition for part in plan.partitions] == PARTITION_KEYS
    assert plan.totals["source"] == 3_000 and plan.totals["rejected"] > 0
    assert plan.fields[-1] == "Sync_Partition__c" and plan.fits is True
    assert_the_night_did_as_planned(plan, "n1")
    # The next night: changed, new and deleted rows; by default the JSON lands in the state.
    night.land("n2", based_on="n1", changed=0.05, new=0.02, deleted=0.01)
    result = CliRunner().invoke(app, ["plan"])
    assert result.exit_code == 0, result.output
    following = night.state.read_json(plan_path("n2"), NightPlan)
    assert following.totals["update"] > 0 and following.totals["absent"] > 0
    assert following.totals["unchanged"] > 0
    assert_the_night_did_as_planned(following, "n2")


def observations(result: dg.ExecuteInProcessResult) -> list[dict[str, Any]]:
    return [
        {
            key: getattr(value, "value", value)
            for key, value in event.event_specific_data.asset_observation.metadata.items()
        }
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    ]


def test_a_dry_run_in_dagster_plans_a_partition_and_sends_nothing(
    make_night: NightFactory,
) -> None:
    night = make_night()
    night.land("n1", rows=2_000, bad_fraction=0.005)
    defs = definitions()
    before = night.stats()["totals"]

    result = defs.resolve_job_def("opportunity_plan_job").execute_in_process(
        instance=night.instance(), partition_key="3", tags={DROP_TAG: "n1"}
    )

    assert result.success and not result.get_asset_materialization_events()
    [observed] = observations(result)
    untouched(night, before)
    plan = PartitionPlan.model_validate(json.loads(json.dumps(observed["plan"]))["partitions"][0])
    assert (plan.partition, observed["dry_run"], observed["create"]) == ("3", True, plan.create)
    # The sync job run with dry_run config does the same, and the sensor still syncs partition 3.
    sync_job = defs.resolve_job_def("opportunity_sync_job")
    dry = sync_job.execute_in_process(
        instance=night.instance(),
        partition_key="3",
        tags={DROP_TAG: "n1"},
        run_config=DRY_RUN_CONFIG,
    )
    assert [o["create"] for o in observations(dry)] == [plan.create]
    assert "3" not in partitions_with_runs(night.instance(), "n1")
    untouched(night, before)
    real = summarise(
        sync_job.execute_in_process(
            instance=night.instance(), partition_key="3", tags={DROP_TAG: "n1"}
        )
    )
    loaded = real.loaded()
    assert (loaded["created"], loaded["rejected"], loaded["jobs"]) == (
        plan.create,
        plan.rejected,
        plan.jobs,
    )
    assert "3" in partitions_with_runs(night.instance(), "n1")
