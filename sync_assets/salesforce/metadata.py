"""Read the org's metadata a night is validated against: describe, record-type stages, currencies.

All reads, none writes: the object's describe (fields and record types as the integration user
sees them: field-level security hides fields from it), the describe of each parent the mapping
reaches by external id, the DeveloperName of each record type (SOQL on RecordType), the stages
each record type's sales process offers (UI API picklist values per record type: describe lists
every stage of the object), and the active and inactive currencies (SOQL on CurrencyType, in a
multi-currency org). Retried and re-authenticated like every other read (`call_with_retries`).
"""

import datetime as dt
from typing import Any

from sync_assets.salesforce.connection import SalesforceConnection
from sync_assets.salesforce.queries import call_with_retries, soql_literal
from sync_assets.state.org_metadata import (
    MASTER_RECORD_TYPE_ID,
    Currencies,
    ObjectMetadata,
    OrgMetadata,
)

STAGE_FIELD = "StageName"
CURRENCY_FIELD = "CurrencyIsoCode"


def _get(connection: SalesforceConnection, path: str) -> Any:
    return call_with_retries(connection, lambda client: client.restful(path))


def _records(connection: SalesforceConnection, soql: str) -> list[dict[str, Any]]:
    answer = call_with_retries(connection, lambda client: client.query_all(soql))
    return list(answer["records"])


def describe(connection: SalesforceConnection, sobject: str) -> ObjectMetadata:
    """``GET /sobjects/{sobject}/describe``, as the integration user sees the object."""
    return ObjectMetadata.model_validate(_get(connection, f"sobjects/{sobject}/describe"))


def _with_developer_names(
    connection: SalesforceConnection, described: ObjectMetadata
) -> ObjectMetadata:
    """Record types named by their DeveloperName from SOQL (describe names them since v43 only)."""
    if all(info.master for info in described.record_type_infos):
        return described
    rows = _records(
        connection,
        "SELECT Id, DeveloperName FROM RecordType "
        f"WHERE SobjectType = {soql_literal(described.name)}",
    )
    names = {row["Id"]: row["DeveloperName"] for row in rows}
    infos = [
        info.model_copy(
            update={"developer_name": names.get(info.record_type_id, info.developer_name)}
        )
        for info in described.record_type_infos
    ]
    return described.model_copy(update={"record_type_infos": infos})


def _stages(connection: SalesforceConnection, described: ObjectMetadata) -> dict[str, list[str]]:
    """Each usable record type's stages (UI API, "Picklist Values"); the master's from describe."""
    stage = described.field(STAGE_FIELD)
    if stage is None:
        return {}
    stages = {MASTER_RECORD_TYPE_ID: stage.active_values}
    for info in described.record_type_infos:
        if info.master or not (info.available and info.active):
            continue
        path = (
            f"ui-api/object-info/{described.name}/picklist-values/"
            f"{info.record_type_id}/{STAGE_FIELD}"
        )
        stages[info.record_type_id] = [entry["value"] for entry in _get(connection, path)["values"]]
    return stages


def _currencies(connection: SalesforceConnection, described: ObjectMetadata) -> Currencies | None:
    """Active and inactive currencies (CurrencyType); None in a single-currency org."""
    if described.field(CURRENCY_FIELD) is None:
        return None
    rows = _records(connection, "SELECT IsoCode, IsActive, IsCorporate FROM CurrencyType")
    return Currencies(
        corporate=next(row["IsoCode"] for row in rows if row["IsCorporate"]),
        active=[row["IsoCode"] for row in rows if row["IsActive"]],
        inactive=[row["IsoCode"] for row in rows if not row["IsActive"]],
    )


def read_org_metadata(
    connection: SalesforceConnection, sobject: str, relationships: list[str]
) -> OrgMetadata:
    """The org's metadata for `sobject`, and the parents it reaches through `relationships`."""
    described = _with_developer_names(connection, describe(connection, sobject))
    parents: dict[str, ObjectMetadata] = {}
    for name in relationships:
        lookup = described.relationship(name)
        if lookup is not None and lookup.reference_to:
            parents[str(lookup.relationship_name)] = describe(connection, lookup.reference_to[0])
    return OrgMetadata(
        read_at=dt.datetime.now(dt.UTC),
        sobject=described,
        parents=parents,
        stages=_stages(connection, described),
        currencies=_currencies(connection, described),
    )
