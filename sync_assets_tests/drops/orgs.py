"""Org metadata for unit tests: an org shaped like the sandbox's acme org file, and mappings into it."""

import datetime as dt
from typing import Any

from sync_assets.drops.mapping import Mapping, load_mapping
from sync_assets.drops.standard_org import standard_org
from sync_assets.state.org_metadata import (
    Currencies,
    FieldMetadata,
    ObjectMetadata,
    OrgMetadata,
    PicklistValue,
    RecordTypeMetadata,
)

NEW_BUSINESS, RENEWAL = "012Sx0000000001AAA", "012Sx0000000002AAA"
ACME_STAGES = [
    "Discovery",
    "Qualification",
    "Proposal",
    "Renewal Open",
    "Closed Won",
    "Closed Lost",
]


def picklist(name: str, values: list[str], **details: Any) -> FieldMetadata:
    return FieldMetadata(
        name=name,
        type="picklist",
        length=255,
        restricted_picklist=True,
        picklist_values=[PicklistValue(value=value) for value in values],
        custom=name.endswith("__c"),
        **details,
    )


def acme_like_org(
    hidden: tuple[str, ...] = ("NextStep",), read_only: tuple[str, ...] = ("LeadSource",)
) -> OrgMetadata:
    """The acme org file's Opportunity as its limited integration user sees it (see
    sync_assets_tests/sandbox/orgs/acme.yaml and org_files.acme_org_file)."""
    standard = standard_org()
    fields = [
        picklist("StageName", ACME_STAGES, nillable=False)
        if field.name == "StageName"
        else field.model_copy(update={"createable": False, "updateable": False})
        if field.name in read_only
        else field
        for field in standard.sobject.fields
        if field.name not in hidden
    ]
    fields += [
        picklist(
            "CurrencyIsoCode", ["USD", "EUR", "GBP"], nillable=False, defaulted_on_create=True
        ),
        FieldMetadata(
            name="RecordTypeId",
            type="reference",
            length=18,
            defaulted_on_create=True,
            reference_to=["RecordType"],
            relationship_name="RecordType",
        ),
        picklist("Region__c", ["EMEA", "AMER", "APAC"]),
        FieldMetadata(name="Forecast_Score__c", type="double", precision=5, scale=1, custom=True),
    ]
    record_types = [
        RecordTypeMetadata(
            record_type_id=NEW_BUSINESS,
            developer_name="New_Business",
            default_record_type_mapping=True,
        ),
        RecordTypeMetadata(record_type_id=RENEWAL, developer_name="Renewal"),
        RecordTypeMetadata(
            record_type_id="012000000000000AAA",
            developer_name="Master",
            master=True,
            available=False,
        ),
    ]
    return OrgMetadata(
        read_at=dt.datetime(2026, 11, 28, tzinfo=dt.UTC),
        sobject=ObjectMetadata(name="Opportunity", fields=fields, record_type_infos=record_types),
        parents=standard.parents,
        stages={
            NEW_BUSINESS: ["Discovery", "Qualification", "Proposal", "Closed Won", "Closed Lost"],
            RENEWAL: ["Renewal Open", "Closed Won", "Closed Lost"],
            "012000000000000AAA": ACME_STAGES,
        },
        currencies=Currencies(corporate="USD", active=["USD", "EUR", "GBP"], inactive=["CAD"]),
    )


def acme_mapping(**changes: Any) -> Mapping:
    """The built-in mapping without the fields acme hides or locks, plus acme's own fields."""
    built_in = load_mapping()
    fields = [entry for entry in built_in.fields if entry.field not in ("NextStep", "LeadSource")]
    extra = Mapping.model_validate(
        {
            **built_in.model_dump(exclude={"fields"}),
            "fields": [
                {"column": "record_type", "field": "RecordTypeId", "by": "DeveloperName"},
                {"column": "currency", "field": "CurrencyIsoCode"},
                {"column": "region", "field": "Region__c"},
                {"column": "forecast_score", "field": "Forecast_Score__c"},
            ],
        }
    )
    return built_in.model_copy(update={"fields": [*fields, *extra.fields], **changes})
