"""Building the org's objects from an org file: stage meanings, custom fields, refused files."""

from typing import Any

import pytest

from sync_assets.sandbox.auth import OrgIdentity
from sync_assets.sandbox.ids import mint_ids
from sync_assets.sandbox.metadata import build_catalog, custom_field, stage_infos
from sync_assets.sandbox.objects import OPPORTUNITY
from sync_assets.sandbox.org import CustomFieldSpec, OrgSpec
from sync_assets.sandbox.users import load_users

IDENTITY = OrgIdentity(
    org_id=mint_ids("00D", 1, 1)[0],
    user_id=mint_ids("005", 1, 1)[0],
    client_id="client",
    client_secret="secret",
    password="password",
)


def _named_ids(prefix: str, names: list[str]) -> dict[str, str]:
    return {name: mint_ids(prefix, n + 2, 1)[0] for n, name in enumerate(names)}


def _catalog(document: dict[str, Any]):  # type: ignore[no-untyped-def]
    org = OrgSpec.model_validate(document)
    return build_catalog(org, load_users(IDENTITY, org.users, _named_ids), _named_ids)


def test_stage_meanings() -> None:
    infos = stage_infos(
        ["Discovery", "Qualification", "Demo", "Closed Won - Upsell", "Closed Dead"]
    )
    meanings = {
        name: (i.probability, i.forecast, bool(i.closed), bool(i.won)) for name, i in infos.items()
    }
    assert meanings == {
        "Discovery": (10, "Pipeline", False, False),
        # A Salesforce default stage keeps its OpportunityStage values.
        "Qualification": (10, "Pipeline", False, False),
        "Demo": (90, "Pipeline", False, False),
        "Closed Won - Upsell": (100, "Closed", True, True),
        "Closed Dead": (0, "Omitted", True, False),
    }


def test_the_empty_org_keeps_the_standard_opportunity() -> None:
    catalog = _catalog({})
    opportunity = catalog.objects["Opportunity"]
    assert opportunity.fields == OPPORTUNITY.fields
    assert opportunity.rules is not None and not opportunity.rules.validation_rules
    assert set(catalog.objects) == {"Opportunity", "Account", "User", "Organization", "RecordType"}
    assert catalog.for_user(IDENTITY.user_id) is catalog


def test_custom_fields_take_salesforce_defaults() -> None:
    text = custom_field(CustomFieldSpec(name="Segment__c", type="string"))
    money = custom_field(CustomFieldSpec(name="Margin__c", type="currency", precision=16))
    flag = custom_field(CustomFieldSpec(name="Is_Key__c", type="boolean"))
    assert (text.label, text.length, text.nillable) == ("Segment", 255, True)
    assert (money.precision, money.scale) == (16, 2)
    assert (flag.nillable, flag.defaulted_on_create, flag.default) == (False, True, "0")


def test_validation_rules_compile_to_set_based_queries() -> None:
    rule = {"name": "R", "when": "Amount > 5 AND Account.Name LIKE 'A%'", "message": "No"}
    catalog = _catalog({"opportunity": {"validation_rules": [rule]}})
    rules = catalog.objects["Opportunity"].rules
    assert rules is not None
    [compiled] = rules.validation_rules
    assert compiled.error == "FIELD_CUSTOM_VALIDATION_EXCEPTION:No:--"
    assert "json_each" in compiled.sql and compiled.params == (5, "A%")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            {
                "opportunity": {
                    "validation_rules": [{"name": "Bad", "when": "Nope > 1", "message": "x"}]
                }
            },
            "validation rule Bad",
        ),
        ({"opportunity": {"picklists": {"Name": ["A"]}}}, "not picklists of Opportunity"),
        (
            {"opportunity": {"custom_fields": [{"name": "Sync_Partition__c", "type": "string"}]}},
            "names must be new and unique",
        ),
        ({"users": {"integration": {"hidden_fields": ["Colour"]}}}, "not fields of Opportunity"),
        (
            {"users": {"people": [{"username": "integration@sandbox.local", "password": "p"}]}},
            "unique",
        ),
    ],
)
def test_inconsistent_org_files_are_refused(document: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _catalog(document)
