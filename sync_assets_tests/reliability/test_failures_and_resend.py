"""Failures a person can act on (issue 16, item 4): `failures` lists them, `resend` brings them in.

A night against an org whose validation rule refuses large amounts: those rows fail for good in
Salesforce (FIELD_CUSTOM_VALIDATION_EXCEPTION, as a real org's validation rule answers in a Bulk
API 2.0 job's failedResults: Bulk API 2.0 Developer Guide, "Get Job Failed Record Results"),
and rows without a name are rejected by the sync before sending. The rule is then removed (the
sandbox restarted without it, as an admin would deactivate it) and the failed rows resent.
"""

import os
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner, Result

from sync_assets.cli import app
from sync_assets.drop_runs import latest_partition_sync
from sync_assets.state.layout import failed_rows_path
from sync_assets_tests.drops.helpers import write_drop
from sync_assets_tests.reliability.harness import Night, NightFactory, org_file, rows_of_partition

pytestmark = pytest.mark.slow

PARTITION = "0"
ROWS = 40
TOO_LARGE = {f"F-{i}" for i in range(0, ROWS, 5)}  # 8 rows the rule refuses
NAMELESS = {"F-1", "F-2", "F-3"}  # rejected by the sync: Name is required
RULE = {
    "name": "Approval_Limit",
    "when": "Amount > 400000",
    "message": "Amount above the approval limit",
    "field": "Amount",
}


def cli(*arguments: str) -> Result:
    return CliRunner().invoke(app, list(arguments))


def said(result: Result) -> str:
    """The command's output with the console's line wrapping undone."""
    return " ".join(result.output.split())


def land(night: Night, drop_id: str) -> None:
    rows = rows_of_partition(PARTITION, "F", ROWS).with_columns(
        pl.when(pl.col("opportunity_key").is_in(sorted(TOO_LARGE)))
        .then(pl.lit(9_000_000.0))
        .otherwise(pl.lit(1_000.0))
        .alias("amount"),
        pl.when(pl.col("opportunity_key").is_in(sorted(NAMELESS)))
        .then(None)
        .otherwise(pl.col("name"))
        .alias("name"),
    )
    write_drop(night.landing, drop_id, [rows])


def failed_file(night: Night, drop_id: str) -> pl.DataFrame:
    return night.state.read_parquet(failed_rows_path(drop_id, PARTITION))


def last_load(drop_asset: str = "salesforce_opportunities") -> dict[str, object]:
    meta = latest_partition_sync(dg.DagsterInstance.get(), dg.AssetKey(drop_asset), PARTITION)
    assert meta is not None
    return meta


def test_failures_are_listed_with_reasons_and_resent_once_the_org_is_fixed(
    make_night: NightFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = org_file(tmp_path / "strict-org", opportunity={"validation_rules": [RULE]})
    night = make_night(org=str(strict))
    land(night, "d1")

    synced = cli("sync", "--drop-id", "d1", "--partition", PARTITION, "--parallel", "1")
    assert synced.exit_code == 1, synced.output
    assert "no_permanently_failed_rows" in said(synced)
    assert set(failed_file(night, "d1")["External_Id__c"]) == TOO_LARGE

    # Grouped counts first, then the rows, for the newest drop by default.
    listed = cli("failures", "--limit", "5")
    assert listed.exit_code == 0, listed.output
    assert "Rows of drop d1 that did not reach Salesforce, by reason" in said(listed)
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in said(listed)
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION:Amount above the approval" in said(listed)
    assert "Rows (5 of 11)" in said(listed) and "6 more rows not shown" in said(listed)
    assert "sync-assets resend --drop-id d1" in said(listed)
    # --csv: every row, its kind, code and reason, and its own columns.
    csv = tmp_path / "failures.csv"
    written = cli("failures", "--drop-id", "d1", "--partition", PARTITION, "--csv", str(csv))
    assert written.exit_code == 0, written.output
    rows = pl.read_csv(csv, infer_schema=False)
    assert rows.height == len(TOO_LARGE) + len(NAMELESS)
    failed = rows.filter(pl.col("kind") == "failed")
    assert set(failed["key"]) == TOO_LARGE
    assert (failed["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION").all()
    assert failed["reason"].str.contains("Amount above the approval limit").all()
    assert (failed["Amount"].cast(pl.Float64) == 9_000_000).all()
    rejected = rows.filter(pl.col("kind") == "rejected")
    assert set(rejected["key"]) == NAMELESS
    staged = night.staged("d1", PARTITION).counts
    assert dict(rejected["code"].value_counts().iter_rows()) == staged.rejected_by_reason
    assert rejected["reason"].is_not_null().all()

    # Bad input: a clear message, exit 2, nothing sent or written.
    for arguments, message in [
        (["failures", "--drop-id", "nope"], "Drop nope has no staging or failed rows"),
        (["failures", "--partition", "11"], "partition '11' is not one of"),
        (["resend", "--drop-id", "nope"], "Drop nope has no staging or failed rows"),
        (["resend", "--drop-id", "d1", "--partition", "x"], "partition 'x' is not one of"),
    ]:
        refused = cli(*arguments)
        assert refused.exit_code == 2, (arguments, refused.output)
        assert message in said(refused), refused.output
    with monkeypatch.context() as unset:
        for name in [name for name in os.environ if name.startswith("SALESFORCE_")]:
            unset.delenv(name)
        unconfigured = cli("resend", "--drop-id", "d1")
    assert unconfigured.exit_code == 2, unconfigured.output
    assert "Nothing was resent or written" in said(unconfigured)
    assert not night.state.exists("checkpoints/d1/resends")

    # Resent while the rule still holds: they fail again, kept with the error; exit 1.
    again = cli("resend", "--drop-id", "d1")
    assert again.exit_code == 1, again.output
    assert "3 rejected rows of drop d1 are not resent" in said(again)
    assert set(failed_file(night, "d1")["External_Id__c"]) == TOO_LARGE
    assert last_load()["failed"] == len(TOO_LARGE)

    # The next night's load sent d1's failures again (they are not in the ledger): d1's can no
    # longer be resent, or its older values would overwrite d2's.
    land(night, "d2")
    assert cli("sync", "--drop-id", "d2", "--partition", PARTITION).exit_code == 1
    superseded = cli("resend", "--drop-id", "d1", "--partition", PARTITION)
    assert superseded.exit_code == 2, superseded.output
    assert "Partition 0 was last loaded from drop d2, not d1" in said(superseded)

    # The admin deactivates the rule; the resend brings the rows in.
    fixed = org_file(tmp_path / "fixed-org", opportunity={"validation_rules": []})
    night.restart_sandbox(org=str(fixed))
    resent = cli("resend", "--drop-id", "d2", "--partition", PARTITION)
    assert resent.exit_code == 0, resent.output
    assert "Resending 8 failed rows of drop d2" in said(resent)
    assert failed_file(night, "d2").height == 0
    assert set(night.external_ids(PARTITION)) == set(night.ledger_keys(PARTITION))
    assert night.ledger_keys(PARTITION).len() == ROWS - len(NAMELESS)
    amounts = night.query_all(
        "SELECT External_Id__c, Amount FROM Opportunity WHERE Amount > 400000"
    )
    assert {record["External_Id__c"] for record in amounts} == TOO_LARGE
    # The load's record of d2 reconciles (d2 sent only what d1 had not got in): source =
    # rejected + unchanged + sent and sent = succeeded + failed, with the resend's successes.
    load = last_load()
    assert (load["sent"], load["succeeded"], load["failed"]) == (len(TOO_LARGE),) * 2 + (0,)
    assert (load["source"], load["rejected"], load["unchanged"]) == (
        ROWS,
        len(NAMELESS),
        ROWS - len(NAMELESS) - len(TOO_LARGE),
    )
    # The UI's metadata links to the same files the commands read, and says what to run.
    assert Path(str(load["failed_file"])) == night.state.local_path(failed_rows_path("d2", "0"))
    assert str(load["rejects_file"]).endswith("staging/d2/partition=0/rejects.parquet")
    assert "sync-assets resend --drop-id d2 --partition 0" in str(load["act_on_failures"])
    # The load's checks: no failed rows, COUNT() = ledger, the ledger identity.
    assert "3 passed" in said(resent)
    runs = dg.DagsterInstance.get().get_runs(filters=dg.RunsFilter(tags={"sync/resend": "failed"}))
    assert len(runs) == 2
    after = cli("failures", "--csv", str(csv))
    assert after.exit_code == 0, after.output
    assert pl.read_csv(csv)["kind"].to_list() == ["rejected"] * len(NAMELESS)
