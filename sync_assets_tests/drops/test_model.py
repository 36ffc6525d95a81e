import datetime as dt

import pytest
from pydantic import ValidationError

from sync_assets.drops.model import STAGES, FieldMapping, Manifest, SourceRecord, field_specs


def test_field_specs_come_from_the_model() -> None:
    specs = {spec.name: spec for spec in field_specs()}
    assert list(specs) == list(SourceRecord.model_fields)
    assert (specs["opportunity_key"].max_length, specs["opportunity_key"].required) == (64, True)
    assert (specs["name"].max_length, specs["name"].min_length) == (120, 1)
    assert specs["stage"].allowed == STAGES and len(STAGES) == 10
    assert (specs["close_date"].ge, specs["close_date"].le) == (
        dt.date(1700, 1, 1),
        dt.date(4000, 12, 31),
    )
    assert (specs["amount"].kind, specs["amount"].ge, specs["amount"].required) == (
        "decimal",
        0,
        False,
    )
    assert (specs["amount"].max_digits, specs["amount"].decimal_places) == (18, 2)
    assert (specs["probability"].ge, specs["probability"].le) == (0, 100)
    assert specs["next_step"].max_length == 255
    assert specs["description"].max_length == 32_000
    assert specs["updated_at"].kind == "datetime"


def test_default_mapping_is_the_design_table() -> None:
    mapping = FieldMapping()
    assert mapping.columns["opportunity_key"] == "External_Id__c"
    assert mapping.columns["account_key"] == "Account.External_Id__c"
    assert mapping.columns["stage"] == "StageName"
    assert "updated_at" not in mapping.columns
    assert mapping.salesforce_fields[-1] == "Sync_Partition__c"
    assert mapping.external_id_field == "External_Id__c"


@pytest.mark.parametrize(
    "columns",
    [
        {"opportunity_key": "External_Id__c", "account_key": "X", "nope": "Y"},
        {"opportunity_key": "External_Id__c", "account_key": "External_Id__c"},
        {"opportunity_key": "External_Id__c"},
    ],
)
def test_mapping_refuses_bad_configuration(columns: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        FieldMapping(columns=columns)


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b.parquet", "", ".."])
def test_manifest_refuses_paths_out_of_the_drop(name: str) -> None:
    with pytest.raises(ValidationError):
        Manifest(drop_id="d", row_count=1, files=[name], created_at=dt.datetime.now(dt.UTC))
