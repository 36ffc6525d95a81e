"""Deletes (issue 16): opt-in, guarded, confirmed by a run tag, undone by `sync-assets restore`.

Real sandbox over HTTPS, real Dagster instance; what Salesforce holds is read back with SOQL.
Delete and hardDelete are Bulk API 2.0 ingest jobs whose CSV holds only ``Id`` (Bulk API 2.0
Developer Guide, "Prepare CSV Files"); hardDelete needs the "Bulk API Hard Delete" permission.
"""

import io
from typing import Any

import dagster as dg
import polars as pl
import pytest
from rich.console import Console

from sync_assets.demo import NightVerdict
from sync_assets.night_deletes import CONFIRM_TAG
from sync_assets.partition_deletes import restores_of_drop
from sync_assets.restore_report import run_restore
from sync_assets.run_tags import ALERTED_TAG
from sync_assets.state.layout import DeleteFiles
from sync_assets_tests.drops.helpers import write_drop
from sync_assets_tests.reliability.harness import Night, NightFactory, org_file, rows_of_partition
from sync_assets_tests.webhook import webhook_receiver

pytestmark = pytest.mark.slow

PARTITION = "3"
ROWS = 200
FIELDS = "External_Id__c, Name, StageName, CloseDate, Amount, Description, Sync_Partition__c"


def land(night: Night, drop_id: str, rows: pl.DataFrame) -> None:
    write_drop(night.landing, drop_id, [rows])


def held_values(night: Night, keys: list[str]) -> dict[str, dict[str, Any]]:
    """What Salesforce holds for these external ids, field by field (SOQL)."""
    listed = ", ".join(f"'{key}'" for key in keys)
    records = night.query_all(
        f"SELECT {FIELDS} FROM Opportunity WHERE External_Id__c IN ({listed})"
    )
    return {
        record["External_Id__c"]: {k: v for k, v in record.items() if k != "attributes"}
        for record in records
    }


def first_night(night: Night, monkeypatch: pytest.MonkeyPatch, mode: str) -> pl.DataFrame:
    monkeypatch.setenv("SYNC_DELETE_MODE", mode)
    rows = rows_of_partition(PARTITION, "DEL", ROWS)
    land(night, "night-1", rows)
    run = night.run_partition("night-1", PARTITION)
    assert run.success, run.errors
    return rows


def test_deletes_guard_confirmation_and_restore(
    make_night: NightFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = make_night()
    rows = first_night(night, monkeypatch, "delete")
    keys = rows.get_column("opportunity_key").to_list()

    # Night 2 lacks 1% of night 1's rows: exactly those leave Salesforce, every check passes.
    land(night, "night-2", rows.slice(2))
    run = night.run_partition("night-2", PARTITION)
    assert run.success, run.errors
    assert run.failed_checks() == {}
    loaded = run.loaded()
    assert (loaded["deleted"], loaded["delete_failed"]) == (2, 0)
    assert (loaded["ledger_before"], loaded["ledger_deleted"], loaded["ledger_rows"]) == (
        ROWS,
        2,
        ROWS - 2,
    )
    assert run.checks["ledger_identity_holds"]["passed"]
    held = set(night.external_ids(PARTITION))
    assert held == set(keys[2:])

    # Night 3 lacks 40% more: the guard deletes nothing, fails with the count, alerts once.
    gone = keys[2:82]
    before = held_values(night, gone)
    land(night, "night-3", rows.slice(82))
    with webhook_receiver() as hook:
        monkeypatch.setenv("SYNC_ALERT_WEBHOOK_URL", hook.url)
        refused = night.run_partition("night-3", PARTITION)
        wrong = night.run_partition("night-3", PARTITION, tags={CONFIRM_TAG: "79"})
        monkeypatch.delenv("SYNC_ALERT_WEBHOOK_URL")
        held_alerts = [post for post in hook.posts if post["kind"] == "deletes_held"]
    assert not refused.success
    assert "would delete 80 of the 198 rows" in refused.errors[0], refused.errors
    assert f"{CONFIRM_TAG}=80" in refused.errors[0]
    assert not wrong.success and "does not match the 80 rows" in wrong.errors[0]
    assert len(held_alerts) == 2  # one per refusing run: the first night, and the wrong count
    # The run-failure sensor skips runs their step alerted already: one alert per refusal.
    tagged = night.instance().get_runs(filters=dg.RunsFilter(tags={ALERTED_TAG: "deletes_held"}))
    assert len(tagged) == 2
    assert held_alerts[0]["numbers"]["to_delete"] == 80
    assert set(night.external_ids(PARTITION)) == set(keys[2:])
    listed = night.state.read_parquet(DeleteFiles.of("night-3", PARTITION).held)
    assert set(listed.get_column("External_Id__c")) == set(gone)

    # Confirmed with the count: deleted, and the confirmation is in the metadata.
    confirmed = night.run_partition("night-3", PARTITION, tags={CONFIRM_TAG: "80"})
    assert confirmed.success, confirmed.errors
    assert confirmed.loaded()["deleted"] == 80
    record = confirmed.loaded()["deletes_confirmed"]
    assert (record["count"], record["drop_id"]) == (80, "night-3")
    assert CONFIRM_TAG in record["how"]
    assert set(night.external_ids(PARTITION)) == set(keys[82:])
    assert confirmed.failed_checks() == {}

    # Restore brings them back with the values they had.
    output = io.StringIO()
    assert run_restore("night-3", [PARTITION], Console(file=output)) == NightVerdict.PASSED
    after = held_values(night, gone)
    assert after == before, output.getvalue()
    assert set(night.ledger_keys(PARTITION)) == set(keys[2:])
    assert set(night.external_ids(PARTITION)) == set(keys[2:])
    [restored] = restores_of_drop(night.state, "night-3", [PARTITION])
    assert (restored.kept, restored.restored, restored.failed) == (80, 80, 0)
    # A drop that deleted nothing in the partition is refused, nothing restored.
    assert run_restore("night-1", [PARTITION], Console(file=io.StringIO())) == (
        NightVerdict.BAD_USAGE
    )


def test_default_mode_deletes_nothing(
    make_night: NightFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = make_night()
    monkeypatch.delenv("SYNC_DELETE_MODE", raising=False)
    rows = rows_of_partition(PARTITION, "KEEP", 50)
    land(night, "night-1", rows)
    assert night.run_partition("night-1", PARTITION).success
    land(night, "night-2", rows.slice(10))
    run = night.run_partition("night-2", PARTITION)
    assert run.success, run.errors
    assert (run.loaded()["delete_mode"], run.loaded()["deleted"]) == ("none", 0)
    assert run.loaded()["absent_from_drop"] == 10
    assert set(night.external_ids(PARTITION)) == set(rows.get_column("opportunity_key"))


def test_a_row_moved_to_another_partition_is_not_deleted(
    make_night: NightFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = make_night()
    rows = first_night(night, monkeypatch, "delete")
    elsewhere = rows_of_partition("5", "OTHER", 1).get_column("account_key")[0]
    moved_key = rows.get_column("opportunity_key")[0]
    moved = rows.with_columns(
        pl.when(pl.col("opportunity_key") == moved_key)
        .then(pl.lit(elsewhere))
        .otherwise(pl.col("account_key"))
        .alias("account_key")
    )
    land(night, "night-2", moved)
    for partition in (PARTITION, "5", PARTITION):
        run = night.run_partition("night-2", partition)
        assert run.success, run.errors
        assert run.loaded()["deleted"] == 0
    assert moved_key in set(night.external_ids("5"))
    assert moved_key not in set(night.ledger_keys(PARTITION))


def test_hard_delete_without_the_permission_fails_clearly(
    make_night: NightFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    night = make_night(
        org=org_file(tmp_path / "org", users={"integration": {"bulk_api_hard_delete": False}})
    )
    rows = first_night(night, monkeypatch, "hard_delete")
    land(night, "night-2", rows.slice(1))
    run = night.run_partition("night-2", PARTITION)
    assert not run.success
    assert "Bulk API Hard Delete" in run.errors[0] and "FeatureNotEnabled" in run.errors[0]
    assert set(night.external_ids(PARTITION)) == set(rows.get_column("opportunity_key"))


def test_deletes_use_the_live_records_id_and_forget_rows_someone_already_deleted(
    make_night: NightFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids are looked up by key when deleting (issue 17: no load downloads them): a record a
    person deleted is already gone, one a restore created again is deleted by its new Id."""
    night = make_night()
    rows = first_night(night, monkeypatch, "delete")
    keys = rows.get_column("opportunity_key").to_list()
    [by_hand] = night.query_all(f"SELECT Id FROM Opportunity WHERE External_Id__c = '{keys[0]}'")
    night.login().client.Opportunity.delete(by_hand["Id"])

    land(night, "night-2", rows.slice(2))
    run = night.run_partition("night-2", PARTITION)
    assert run.success, run.errors
    loaded = run.loaded()
    assert (loaded["deleted"], loaded["already_absent"], loaded["delete_failed"]) == (1, 1, 0)
    assert loaded["ledger_deleted"] == 2
    assert run.failed_checks() == {}
    assert set(night.external_ids(PARTITION)) == set(night.ledger_keys(PARTITION)) == set(keys[2:])

    # Restored, both are new records with new Ids; the next night without them deletes both.
    assert run_restore("night-2", [PARTITION], Console(file=io.StringIO())) == NightVerdict.PASSED
    assert set(night.external_ids(PARTITION)) == set(keys)
    land(night, "night-3", rows.slice(2))
    again = night.run_partition("night-3", PARTITION)
    assert again.success, again.errors
    loaded = again.loaded()
    assert (loaded["deleted"], loaded["already_absent"], loaded["delete_failed"]) == (2, 0, 0)
    assert set(night.external_ids(PARTITION)) == set(keys[2:])
