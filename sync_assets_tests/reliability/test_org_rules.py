"""A night validated against the org's own metadata (issue 14, "Done when").

The sandbox plays the acme org file: custom stages, two record types with their own sales
processes, three active currencies and an inactive one, a restricted custom picklist, a double
with precision and scale, NextStep hidden from the integration user and LeadSource read-only.
Rows valid for the org land; rows invalid for it are rejected before anything is sent, with the
org's reason; a mapping that writes a hidden field refuses the night, naming it.
"""

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import yaml

from sync_assets.state.layout import org_metadata_path
from sync_assets.state.org_metadata import OrgMetadata
from sync_assets_tests.drops.helpers import write_drop
from sync_assets_tests.drops.orgs import acme_mapping
from sync_assets_tests.reliability.harness import Night, NightFactory, rows_of_partition
from sync_assets_tests.sandbox.org_files import acme_org_file

pytestmark = pytest.mark.slow

PARTITION = "0"

# key → (record type, stage, currency, region, forecast score); None: valid
ROWS: dict[str, tuple[str | None, str, str, str, Decimal | None, str | None]] = {
    "ok-new": ("New_Business", "Discovery", "EUR", "EMEA", Decimal("4.56"), None),
    "ok-renewal": ("Renewal", "Renewal Open", "GBP", "AMER", None, None),
    "ok-default": (None, "Proposal", "USD", "APAC", Decimal("12"), None),
    "bad-stage": ("Renewal", "Discovery", "USD", "EMEA", None, "stage_not_in_picklist"),
    "bad-inactive": ("Renewal", "Closed Lost", "CAD", "EMEA", None, "currency_inactive"),
    "bad-currency": ("Renewal", "Closed Lost", "JPY", "EMEA", None, "currency_not_in_picklist"),
    "bad-region": ("New_Business", "Discovery", "USD", "LATAM", None, "region_not_in_picklist"),
    "bad-score": (
        "New_Business",
        "Discovery",
        "USD",
        "EMEA",
        Decimal("12345.6"),
        "forecast_score_too_many_digits",
    ),
    "bad-type": ("Master", "Discovery", "USD", "EMEA", None, "record_type_not_in_picklist"),
}


def acme_night(make_night: NightFactory, root: Path) -> Night:
    """A night against the acme org file, its integration user allowed to read /limits."""
    org = acme_org_file(root / "org")
    document = yaml.safe_load(org.path.read_text())
    document["users"]["integration"]["view_setup"] = True
    org.path.write_text(yaml.safe_dump(document, sort_keys=False))
    return make_night(org=str(org.path))


def acme_night_with_its_mapping(
    make_night: NightFactory, monkeypatch: pytest.MonkeyPatch, root: Path, drop_id: str
) -> Night:
    """The acme night, a mapping file fit for acme (SYNC_MAPPING_FILE), and a drop landed."""
    night = acme_night(make_night, root)
    path = root / "acme-mapping.yaml"
    path.write_text(yaml.safe_dump(acme_mapping().model_dump(mode="json", exclude_none=True)))
    monkeypatch.setenv("SYNC_MAPPING_FILE", str(path))
    acme_drop(night, drop_id)
    return night


def acme_drop(night: Night, drop_id: str) -> None:
    rows = rows_of_partition(PARTITION, "ACME", len(ROWS)).with_columns(
        pl.Series("opportunity_key", list(ROWS)),
        pl.Series("record_type", [row[0] for row in ROWS.values()]),
        pl.Series("stage", [row[1] for row in ROWS.values()]),
        pl.Series("currency", [row[2] for row in ROWS.values()]),
        pl.Series("region", [row[3] for row in ROWS.values()]),
        pl.Series("forecast_score", [row[4] for row in ROWS.values()], dtype=pl.Decimal(10, 2)),
        pl.lit(Decimal("1000.00")).alias("amount"),
    )
    write_drop(night.landing, drop_id, [rows])


def test_rows_valid_for_the_org_land_and_invalid_ones_are_rejected_before_sending(
    make_night: NightFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    night = acme_night_with_its_mapping(make_night, monkeypatch, tmp_path, "acme-1")

    run = night.run_partition("acme-1", PARTITION)

    loaded = run.loaded()
    assert (loaded["rejected"], loaded["sent"], loaded["succeeded"], loaded["failed"]) == (
        6,
        3,
        3,
        0,
    )
    rejects = night.state.read_parquet(night.staged("acme-1", PARTITION).rejects)
    reasons = dict(zip(rejects["opportunity_key"], rejects["reason_code"], strict=True))
    assert reasons == {key: row[5] for key, row in ROWS.items() if row[5] is not None}
    stage_reason = rejects.filter(pl.col("opportunity_key") == "bad-stage")["reason"].item()
    assert stage_reason == "stage 'Discovery' is not a stage of record type Renewal"
    # Only the valid rows reached Salesforce; the sandbox received nothing else.
    received, _ = night.received_and_processed()
    assert received == 3
    records = night.query_all(
        "SELECT External_Id__c, RecordType.DeveloperName, StageName, CurrencyIsoCode, "
        "Region__c, Forecast_Score__c FROM Opportunity"
    )
    held = {
        record["External_Id__c"]: (
            record["RecordType"]["DeveloperName"],
            record["StageName"],
            record["CurrencyIsoCode"],
            record["Region__c"],
            record["Forecast_Score__c"],
        )
        for record in records
    }
    assert held == {
        "ok-new": ("New_Business", "Discovery", "EUR", "EMEA", 4.6),  # rounded to the scale
        "ok-renewal": ("Renewal", "Renewal Open", "GBP", "AMER", None),
        "ok-default": ("New_Business", "Proposal", "USD", "APAC", 12.0),  # the default type
    }
    # The extra columns of the drop (the fields acme's mapping leaves out) are listed.
    staged = run.materializations["opportunity_batches"]
    assert staged["extra_columns"] == ["lead_source", "next_step"]


def test_the_org_is_read_once_for_every_partition_of_a_drop(
    make_night: NightFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    night = acme_night_with_its_mapping(make_night, monkeypatch, tmp_path, "acme-2")
    first = night.run_partition("acme-2", PARTITION)
    snapshot = night.state.read_json(org_metadata_path("acme-2"), OrgMetadata)
    other = night.run_partition("acme-2", "1")
    assert first.materializations and other.success
    assert other.materializations["opportunity_batches"]["staged_partitions"] == "none (reused)"
    assert night.state.read_json(org_metadata_path("acme-2"), OrgMetadata) == snapshot


def test_a_field_hidden_from_the_integration_user_refuses_the_night(
    make_night: NightFactory, tmp_path: Path
) -> None:
    night = acme_night(make_night, tmp_path)
    acme_drop(night, "acme-3")  # the built-in mapping writes NextStep and LeadSource

    run = night.run_partition("acme-3", PARTITION)

    assert not run.success and run.step_restarts == 0
    [error] = run.errors
    assert "cannot see these Opportunity fields" in error and "NextStep" in error
    assert "cannot write these Opportunity fields (read-only): LeadSource" in error
    assert night.stats()["jobs"] == {}
    assert not night.state.exists("staging/acme-3")
