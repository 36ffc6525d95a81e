"""An org as Salesforce ships it, with the sync's fields deployed (`salesforce/`): its metadata.

The contract of drops staged without an org to ask (demo drops, unit tests, the staging
benchmark). A real night reads its org instead (`salesforce/metadata.py`); a test checks that
the local sandbox's empty org describes these fields the same way.
"""

import datetime as dt
from typing import Any

from sync_assets.state.org_metadata import (
    FieldMetadata,
    ObjectMetadata,
    OrgMetadata,
    PicklistValue,
    RecordTypeMetadata,
)

STANDARD_STAGES: tuple[str, ...] = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
"""The standard Opportunity stage picklist of a Salesforce org."""


def _field(name: str, type: str, **details: Any) -> FieldMetadata:
    values = details.pop("values", ())
    return FieldMetadata(
        name=name,
        type=type,
        picklist_values=[PicklistValue(value=value) for value in values],
        custom=name.endswith("__c"),
        **details,
    )


_REQUIRED = {"nillable": False}
_READ_ONLY = {"createable": False, "updateable": False}


def _opportunity() -> ObjectMetadata:
    return ObjectMetadata(
        name="Opportunity",
        fields=[
            _field("Id", "id", length=18, nillable=False, defaulted_on_create=True, **_READ_ONLY),
            _field(
                "AccountId",
                "reference",
                length=18,
                reference_to=["Account"],
                relationship_name="Account",
            ),
            _field("Name", "string", length=120, id_lookup=True, **_REQUIRED),
            _field("Description", "textarea", length=32_000),
            _field(
                "StageName",
                "picklist",
                length=255,
                restricted_picklist=True,
                values=STANDARD_STAGES,
                **_REQUIRED,
            ),
            _field("Amount", "currency", precision=18, scale=2),
            _field("Probability", "percent", precision=3, scale=0),
            _field("CloseDate", "date", **_REQUIRED),
            _field("Type", "picklist", length=255),
            _field("NextStep", "string", length=255),
            _field("LeadSource", "picklist", length=255),
            _field(
                "OwnerId",
                "reference",
                length=18,
                nillable=False,
                defaulted_on_create=True,
                reference_to=["User"],
                relationship_name="Owner",
            ),
            _field("External_Id__c", "string", length=64, external_id=True, id_lookup=True),
            _field("Sync_Partition__c", "string", length=8),
        ],
        record_type_infos=[
            RecordTypeMetadata(
                record_type_id="012000000000000AAA",
                developer_name="Master",
                name="Master",
                master=True,
                default_record_type_mapping=True,
            )
        ],
    )


def _account() -> ObjectMetadata:
    return ObjectMetadata(
        name="Account",
        fields=[
            _field("Name", "string", length=255, id_lookup=True, **_REQUIRED),
            _field("External_Id__c", "string", length=64, external_id=True, id_lookup=True),
        ],
    )


def standard_org() -> OrgMetadata:
    """The metadata of an org with Salesforce's standard Opportunity and the sync's fields."""
    return OrgMetadata(
        read_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        sobject=_opportunity(),
        parents={"Account": _account()},
    )
