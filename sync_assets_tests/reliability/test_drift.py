"""Drift found and repaired (issue 16, item 3): a sales rep edits and deletes synced records in the org.

The rep works through the REST API as itself (simple-salesforce, a SOAP login as
rep@acme.example), so every change carries the rep's LastModifiedById, as in a real org. The
drift check, its repair and the next load run as Dagster jobs on a real instance against the
sandbox over HTTPS.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from simple_salesforce import Salesforce, SalesforceLogin

from sync_assets.drift import report_path
from sync_assets.drops.mapping import BUILTIN_MAPPING_FILE
from sync_assets.salesforce.transport import verified_session
from sync_assets_tests.reliability.harness import (
    NightFactory,
    PartitionRun,
    definitions,
    org_file,
    summarise,
)

pytestmark = pytest.mark.slow

PARTITION = "3"
REP = {"username": "rep@acme.example", "password": "rep-password-1", "last_name": "Rep"}
CHECK = "salesforce_matches_what_was_sent"
EDITED_AMOUNT = "123456.78"
EDITED_DESCRIPTION = "Rep's own notes"


def _mapping_with_reported_description(directory: Path) -> Path:
    """The built-in mapping, with Description under `report`: reps may write their own notes."""
    document = yaml.safe_load(BUILTIN_MAPPING_FILE.read_text(encoding="utf-8"))
    for entry in document["fields"]:
        if entry["field"] == "Description":
            entry["drift"] = "report"
    path = directory / "mapping.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _as_rep(night: Any) -> Salesforce:
    connection = night.connection()
    session = verified_session(connection.ca_cert)
    session_id, instance = SalesforceLogin(
        username=REP["username"],
        password=REP["password"],
        security_token="",
        scratch_url=connection.login_url,
        session=session,
    )
    return Salesforce(session_id=session_id, instance=instance, session=session)


def _run(night: Any, job: str, full: bool = False) -> PartitionRun:
    config = {"ops": {f"salesforce_opportunities_{CHECK}": {"config": {"full": full}}}}
    result = (
        definitions()
        .resolve_job_def(job)
        .execute_in_process(
            instance=night.instance(),
            run_config=config if job == "opportunity_drift_job" else None,
            tags={"dagster/partition": PARTITION},
            raise_on_error=False,
        )
    )
    return summarise(result)


def _records(night: Any) -> dict[str, dict[str, Any]]:
    soql = (
        "SELECT Id, External_Id__c, Amount, Description FROM Opportunity "
        f"WHERE Sync_Partition__c = '{PARTITION}'"
    )
    return {record["External_Id__c"]: record for record in night.query_all(soql)}


def test_rep_edits_and_deletes_are_reported_with_the_editor_and_repaired(
    make_night: NightFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = make_night(org=org_file(tmp_path / "org", users={"people": [REP]}))
    monkeypatch.setenv("SYNC_MAPPING_FILE", str(_mapping_with_reported_description(tmp_path)))
    night.land("night-1", rows=3_000)
    assert night.run_partition("night-1", PARTITION).success
    before = _records(night)
    keys = sorted(before)
    amounts = [key for key in keys if before[key]["Amount"] is not None][:40]
    rest = [key for key in keys if key not in amounts]
    notes, deletes = rest[:10], rest[-10:]

    rep = _as_rep(night)
    for key in amounts:
        rep.Opportunity.update(before[key]["Id"], {"Amount": float(EDITED_AMOUNT)})
    for key in notes:
        rep.Opportunity.update(before[key]["Id"], {"Description": EDITED_DESCRIPTION})
    for key in deletes:
        rep.Opportunity.delete(before[key]["Id"])

    found = _run(night, "opportunity_drift_job")
    assert found.success, found.errors
    check = found.checks[CHECK]
    assert (check["passed"], check["severity"]) == (False, "WARN")
    numbers = check["metadata"]
    assert (numbers["changed"], numbers["missing"], numbers["unknown"]) == (50, 10, 0)
    assert (numbers["to_resend"], numbers["left_alone"], numbers["mode"]) == (50, 10, "full")
    report = night.state.read_parquet(report_path(PARTITION))
    assert set(report["external_id"]) == set(amounts + notes + deletes)
    assert set(report["modified_by"]) == {REP["username"]}
    by_key = {row["external_id"]: row for row in report.to_dicts()}
    assert {by_key[key]["field"] for key in amounts} == {"Amount"}
    assert {by_key[key]["theirs"] for key in amounts} == {EDITED_AMOUNT}
    assert all(by_key[key]["ours"] == f"{before[key]['Amount']:.2f}" for key in amounts)
    assert {(by_key[key]["field"], by_key[key]["policy"]) for key in notes} == {
        ("Description", "report")
    }
    assert {(by_key[key]["kind"], by_key[key]["policy"]) for key in deletes} == {
        ("missing", "overwrite")
    }

    repaired = _run(night, "opportunity_drift_repair_job")
    assert repaired.success, repaired.errors
    night.land("night-2", based_on="night-1", changed=0, new=0, deleted=0)
    reload = night.run_partition("night-2", PARTITION)
    assert reload.success, reload.errors
    counts = night.staged("night-2", PARTITION).counts
    assert (counts.changed, counts.new) == (50, 0)

    after = _records(night)
    assert set(after) == set(keys)
    assert all(after[key]["Amount"] == before[key]["Amount"] for key in amounts + deletes)
    assert {after[key]["Description"] for key in notes} == {EDITED_DESCRIPTION}

    for full in (False, True):
        clean = _run(night, "opportunity_drift_job", full=full)
        assert clean.success, clean.errors
        again = clean.checks[CHECK]
        assert again["passed"], again["description"]
        assert again["metadata"]["mode"] == ("full" if full else "incremental")
        assert again["metadata"]["already_reported"] == 10
    assert night.state.read_parquet(report_path(PARTITION)).is_empty()

    # A record the rep creates with our partition tag: unknown to the ledger, reported, not touched.
    rep.Opportunity.create(
        {
            "External_Id__c": "REP-OWN-1",
            "Name": "Rep's own deal",
            "StageName": "Prospecting",
            "CloseDate": "2026-12-31",
            "Sync_Partition__c": PARTITION,
        }
    )
    unknown = _run(night, "opportunity_drift_job")
    numbers = unknown.checks[CHECK]["metadata"]
    assert (numbers["unknown"], numbers["to_resend"], numbers["left_alone"]) == (1, 0, 1)
    [line] = night.state.read_parquet(report_path(PARTITION)).to_dicts()
    assert (line["external_id"], line["kind"], line["modified_by"]) == (
        "REP-OWN-1",
        "unknown",
        REP["username"],
    )
    assert _run(night, "opportunity_drift_repair_job").success
    assert "REP-OWN-1" in _records(night)


def test_the_drift_check_is_not_part_of_the_nightly_load() -> None:
    job = definitions().resolve_job_def("opportunity_sync_job")
    assert f"salesforce_opportunities_{CHECK}" not in {node.name for node in job.nodes}
    assert dg.AssetCheckKey(dg.AssetKey("salesforce_opportunities"), CHECK) in (
        definitions()
        .resolve_job_def("opportunity_drift_job")
        .asset_layer.asset_graph.asset_check_keys
    )
