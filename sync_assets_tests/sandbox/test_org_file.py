"""The org file's shape: the example org loads, mistakes are refused with their place named."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from sync_assets.sandbox.org import OrgSpec, load_org

ORGS = Path(__file__).parent / "orgs"


def test_no_file_is_the_empty_org() -> None:
    org = load_org(None)
    assert org == OrgSpec()
    assert org.currencies is None and not org.opportunity.record_types
    assert org.users.integration.view_setup and not org.users.people


def test_the_example_org_loads() -> None:
    org = load_org(ORGS / "acme.yaml")
    assert org.my_domain == "acme"
    assert [rt.developer_name for rt in org.opportunity.record_types] == ["New_Business", "Renewal"]
    assert org.opportunity.automation.lock_errors == "wrapped"
    assert org.users.integration.hidden_fields == ["NextStep"]
    assert "rep-password-1" not in repr(org)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"opportunity": {"colour": "red"}}, "colour"),
        ({"currencies": {"corporate": "USD", "active": ["EUR"]}}, "corporate currency USD"),
        (
            {"currencies": {"corporate": "USD", "active": ["USD"], "inactive": ["USD"]}},
            "both active and inactive",
        ),
        (
            {
                "opportunity": {
                    "picklists": {"StageName": ["A"]},
                    "record_types": [{"developer_name": "X", "stages": ["B"]}],
                }
            },
            "not StageName values",
        ),
        (
            {"opportunity": {"custom_fields": [{"name": "Region", "type": "picklist"}]}},
            "custom_fields",
        ),
        ({"org_id": "not-an-id"}, "org_id"),
    ],
)
def test_mistakes_are_refused_with_their_place(document: dict, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        OrgSpec.model_validate(document)
