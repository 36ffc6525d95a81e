import datetime as dt

import pytest
from pydantic import ValidationError

from sync_assets.drops.contract import default_contract
from sync_assets.drops.model import Manifest, field_specs
from sync_assets.drops.standard_org import STANDARD_STAGES


def test_field_specs_come_from_the_generated_model() -> None:
    contract = default_contract()
    specs = {spec.name: spec for spec in field_specs(contract.model)}
    assert list(specs) == [spec.name for spec in contract.specs]
    assert list(specs) == [
        "opportunity_key",
        "account_key",
        "name",
        "stage",
        "close_date",
        "amount",
        "probability",
        "lead_source",
        "type",
        "next_step",
        "description",
        "updated_at",
    ]
    assert (specs["opportunity_key"].max_length, specs["opportunity_key"].required) == (64, True)
    assert specs["account_key"].max_length == 64  # the parent's External_Id__c
    assert (specs["name"].max_length, specs["name"].min_length) == (120, 1)
    assert specs["stage"].allowed == STANDARD_STAGES and len(STANDARD_STAGES) == 10
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
    assert (specs["probability"].kind, specs["probability"].ge, specs["probability"].le) == (
        "integer",
        0,
        100,
    )
    assert specs["next_step"].max_length == 255
    assert specs["description"].max_length == 32_000
    assert specs["updated_at"].kind == "datetime" and specs["updated_at"].target.field is None


def test_the_built_in_mapping_sends_the_design_table() -> None:
    contract = default_contract()
    targets = {spec.name: spec.target.field for spec in contract.specs}
    assert targets["opportunity_key"] == "External_Id__c"
    assert targets["account_key"] == "Account.External_Id__c"
    assert targets["stage"] == "StageName"
    assert targets["updated_at"] is None
    assert contract.salesforce_fields[-1] == "Sync_Partition__c"
    assert contract.key_field == "External_Id__c"
    # Today's behaviour: an empty optional value clears the field.
    assert {spec.target.empty for spec in contract.specs if not spec.required} == {"clear"}


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b.parquet", "", ".."])
def test_manifest_refuses_paths_out_of_the_drop(name: str) -> None:
    with pytest.raises(ValidationError):
        Manifest(drop_id="d", row_count=1, files=[name], created_at=dt.datetime.now(dt.UTC))
