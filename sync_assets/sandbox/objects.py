"""The sandbox's sObjects (Opportunity, Account): field definitions, describe JSON, DDL and SOQL catalog."""

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from sync_assets.sandbox.soql.compiler import FieldSpec, ObjectSpec

if TYPE_CHECKING:
    from sync_assets.sandbox.dml.rules import RecordRules

FieldType = Literal[
    "id",
    "string",
    "textarea",
    "picklist",
    "date",
    "datetime",
    "currency",
    "percent",
    "double",
    "int",
    "boolean",
    "reference",
]

# The value a CSV cell holds to set a field to null (Bulk API "#N/A"); also used internally as the
# "set null" marker between validation and the UPDATE statement.
SET_NULL = "#N/A"

_SOAP_TYPES: dict[str, str] = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "picklist": "xsd:string",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "double": "xsd:double",
    "int": "xsd:int",
    "boolean": "xsd:boolean",
}
_SQL_TYPES: dict[str, str] = {
    "currency": "REAL",
    "percent": "REAL",
    "double": "REAL",
    "int": "INTEGER",
    "boolean": "INTEGER",
}


@dataclass(frozen=True)
class FieldDef:
    """One field of an sObject as the sandbox models it (a subset of Salesforce's DescribeFieldResult)."""

    name: str
    label: str
    type: FieldType
    length: int = 0
    precision: int = 0
    scale: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    id_lookup: bool = False
    picklist: tuple[str, ...] = ()
    restricted_picklist: bool = False
    reference_to: str | None = None
    relationship_name: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    # What a new record gets when the field is left empty (the writing user stands in for OwnerId).
    default: str | None = None

    @property
    def required_on_create(self) -> bool:
        return self.createable and not self.nillable and not self.defaulted_on_create

    @property
    def writable(self) -> bool:
        return self.createable or self.updateable

    @property
    def sql_type(self) -> str:
        return _SQL_TYPES.get(self.type, "TEXT")

    def describe(self) -> dict[str, Any]:
        picklist_values = [
            {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
            for v in self.picklist
        ]
        return {
            "aggregatable": self.type != "textarea",
            "autoNumber": False,
            "byteLength": self.length * 3,
            "calculated": False,
            "caseSensitive": self.case_sensitive,
            "createable": self.createable,
            "custom": self.name.endswith("__c"),
            "defaultedOnCreate": self.defaulted_on_create,
            "digits": 0,
            "externalId": self.external_id,
            "filterable": self.type != "textarea",
            "groupable": self.type not in ("textarea", "currency", "percent", "double"),
            "idLookup": self.id_lookup,
            "label": self.label,
            "length": self.length,
            "name": self.name,
            "nameField": self.name == "Name",
            "nillable": self.nillable,
            "picklistValues": picklist_values,
            "precision": self.precision,
            "referenceTo": [self.reference_to] if self.reference_to else [],
            "relationshipName": self.relationship_name,
            "restrictedPicklist": self.restricted_picklist,
            "scale": self.scale,
            "soapType": _SOAP_TYPES[self.type],
            "sortable": self.type != "textarea",
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
        }


# Column name -> derived column values, computed from the columns a batch provides.
Deriver = Callable[[dict[str, list[Any]]], dict[str, list[Any]]]

# The master record type every object has, the default when an org defines none (LWC docs).
MASTER_RECORD_TYPE_ID = "012000000000000AAA"


@dataclass(frozen=True)
class RecordTypeInfo:
    """A record type as describe's ``recordTypeInfos`` shows it."""

    record_type_id: str
    developer_name: str
    name: str
    master: bool = False
    default: bool = False
    available: bool = True
    active: bool = True

    def describe(self, describe_url: str) -> dict[str, Any]:
        return {
            "active": self.active,
            "available": self.available,
            "defaultRecordTypeMapping": self.default,
            "developerName": self.developer_name,
            "master": self.master,
            "name": self.name,
            "recordTypeId": self.record_type_id,
            "urls": {"layout": f"{describe_url}/layouts/{self.record_type_id}"},
        }


MASTER_RECORD_TYPE = RecordTypeInfo(MASTER_RECORD_TYPE_ID, "Master", "Master", True, True)


def _no_derived_fields(provided: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {}


@dataclass(frozen=True)
class ObjectDef:
    """An sObject: its fields in describe order and the rule that maintains its derived fields."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[FieldDef, ...]
    derive: Deriver = _no_derived_fields
    indexed: tuple[str, ...] = ()
    record_types: tuple[RecordTypeInfo, ...] = (MASTER_RECORD_TYPE,)
    # What the org adds to writes of this object: lookup targets, validation rules (dml.rules).
    rules: "RecordRules | None" = None
    # False for setup objects (User, RecordType…), which the API only reads here.
    createable: bool = True
    by_lower_name: dict[str, FieldDef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_lower_name", {f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> FieldDef | None:
        """The field whose API name matches ``name`` case-insensitively, as Salesforce matches it."""
        return self.by_lower_name.get(name.lower())

    @property
    def external_id_fields(self) -> list[FieldDef]:
        return [f for f in self.fields if f.external_id]

    def relationship(self, name: str) -> FieldDef | None:
        """The lookup field whose relationship name matches ``name`` (e.g. ``Account``)."""
        return next(
            (
                f
                for f in self.fields
                if f.relationship_name and f.relationship_name.lower() == name.lower()
            ),
            None,
        )

    def describe(self, api_version: str) -> dict[str, Any]:
        base = f"/services/data/v{api_version}/sobjects/{self.name}"
        return {
            "activateable": False,
            "createable": self.createable,
            "custom": False,
            "deletable": self.createable,
            "fields": [f.describe() for f in self.fields],
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "name": self.name,
            "queryable": True,
            "recordTypeInfos": [r.describe(f"{base}/describe") for r in self.record_types],
            "retrieveable": True,
            "searchable": True,
            "updateable": self.createable,
            "urls": {
                "sobject": base,
                "describe": f"{base}/describe",
                "rowTemplate": f"{base}/{{ID}}",
            },
        }

    def summary(self, api_version: str) -> dict[str, Any]:
        described = self.describe(api_version)
        del described["fields"]
        del described["recordTypeInfos"]
        return described

    def ddl(self) -> list[str]:
        """CREATE statements: one column per field named as the field, as the SOQL compiler expects."""
        columns = ", ".join(
            f'"{f.name}" {f.sql_type}'
            + (" PRIMARY KEY" if f.name == "Id" else "")
            + (" NOT NULL DEFAULT 0" if f.name == "IsDeleted" else "")
            for f in self.fields
        )
        if self.field("IsDeleted") is None:
            # SOQL filters every table on IsDeleted, also those of objects that have no such field.
            columns += ', "IsDeleted" INTEGER NOT NULL DEFAULT 0'
        statements = [f'CREATE TABLE IF NOT EXISTS "{self.name}" ({columns}) WITHOUT ROWID']
        # Unique among live records only: a deleted record's key may be reused, as Salesforce allows.
        statements.extend(
            f'CREATE UNIQUE INDEX IF NOT EXISTS "{self.name}_{f.name}" ON "{self.name}" ("{f.name}") '
            'WHERE "IsDeleted" = 0'
            for f in self.fields
            if f.unique
        )
        for name in self.indexed:
            # NOCASE: SOQL compares text case-insensitively, and only a NOCASE index serves that.
            # IsDeleted makes it covering: COUNT() of live rows per value never reads the table.
            statements += [
                f'DROP INDEX IF EXISTS "{self.name}_{name}"',
                f'CREATE INDEX IF NOT EXISTS "{self.name}_{name}_live" ON "{self.name}" '
                f'("{name}" COLLATE NOCASE, "IsDeleted")',
            ]
        return statements

    def soql_spec(self, objects: Collection[str]) -> ObjectSpec:
        """The SOQL compiler's view; relationships only to ``objects`` (the queryable ones)."""
        return ObjectSpec(
            name=self.name,
            fields={f.name: FieldSpec(name=f.name, soql_type=f.type) for f in self.fields},
            relationships={
                f.relationship_name: (f.reference_to, f.name)
                for f in self.fields
                if f.relationship_name and f.reference_to in objects
            },
        )


def audit_fields() -> tuple[FieldDef, ...]:
    readonly = {"nillable": False, "createable": False, "updateable": False}
    return (
        FieldDef("CreatedDate", "Created Date", "datetime", **readonly),
        FieldDef(
            "CreatedById",
            "Created By ID",
            "reference",
            length=18,
            reference_to="User",
            relationship_name="CreatedBy",
            **readonly,
        ),
        FieldDef("LastModifiedDate", "Last Modified Date", "datetime", **readonly),
        FieldDef(
            "LastModifiedById",
            "Last Modified By ID",
            "reference",
            length=18,
            reference_to="User",
            relationship_name="LastModifiedBy",
            **readonly,
        ),
        FieldDef("SystemModstamp", "System Modstamp", "datetime", **readonly),
    )


def _id_fields(label: str) -> tuple[FieldDef, ...]:
    return (
        FieldDef(
            "Id",
            label,
            "id",
            length=18,
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            id_lookup=True,
        ),
        FieldDef(
            "IsDeleted",
            "Deleted",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
        ),
    )


def _owner_field() -> FieldDef:
    return FieldDef(
        "OwnerId",
        "Owner ID",
        "reference",
        length=18,
        nillable=False,
        defaulted_on_create=True,
        reference_to="User",
        relationship_name="Owner",
    )


def _external_id_field() -> FieldDef:
    return FieldDef(
        "External_Id__c",
        "External Id",
        "string",
        length=64,
        external_id=True,
        unique=True,
        case_sensitive=True,
        id_lookup=True,
    )


class StageInfo:
    """What an OpportunityStage implies: probability, forecast category, closed and won flags."""

    def __init__(self, probability: float, forecast: str, closed: bool, won: bool) -> None:
        self.probability = probability
        self.forecast = forecast
        self.closed = int(closed)
        self.won = int(won)


# Salesforce's default OpportunityStage values.
STAGES: dict[str, StageInfo] = {
    "Prospecting": StageInfo(10, "Pipeline", False, False),
    "Qualification": StageInfo(10, "Pipeline", False, False),
    "Needs Analysis": StageInfo(20, "Pipeline", False, False),
    "Value Proposition": StageInfo(50, "Pipeline", False, False),
    "Id. Decision Makers": StageInfo(60, "Pipeline", False, False),
    "Perception Analysis": StageInfo(70, "Pipeline", False, False),
    "Proposal/Price Quote": StageInfo(75, "Pipeline", False, False),
    "Negotiation/Review": StageInfo(90, "Pipeline", False, False),
    "Closed Won": StageInfo(100, "Closed", True, True),
    "Closed Lost": StageInfo(0, "Omitted", True, False),
}


def derive_stages(
    stages: dict[str, StageInfo], provided: dict[str, list[Any]]
) -> dict[str, list[Any]]:
    """IsClosed/IsWon follow the stage; Probability and ForecastCategoryName default from it.

    ``stages`` are the org's; a row that does not set StageName (an update) leaves all four as
    they are (``None``).
    """
    names = provided.get("StageName")
    if names is None:
        return {}
    infos = [stages.get(s) if s is not None else None for s in names]
    derived: dict[str, list[Any]] = {
        "IsClosed": [i.closed if i else None for i in infos],
        "IsWon": [i.won if i else None for i in infos],
    }
    for column, attribute in (("Probability", "probability"), ("ForecastCategoryName", "forecast")):
        given = provided.get(column) or [None] * len(infos)
        derived[column] = [
            g if g is not None else (getattr(i, attribute) if i else None)
            for g, i in zip(given, infos, strict=True)
        ]
    return derived


OPPORTUNITY = ObjectDef(
    name="Opportunity",
    label="Opportunity",
    label_plural="Opportunities",
    key_prefix="006",
    derive=partial(derive_stages, STAGES),
    # per-partition COUNT() checks run every night
    indexed=("Sync_Partition__c",),
    fields=(
        *_id_fields("Opportunity ID"),
        FieldDef(
            "AccountId",
            "Account ID",
            "reference",
            length=18,
            reference_to="Account",
            relationship_name="Account",
        ),
        FieldDef("Name", "Name", "string", length=120, nillable=False, id_lookup=True),
        FieldDef("Description", "Description", "textarea", length=32000),
        FieldDef(
            "StageName",
            "Stage",
            "picklist",
            length=255,
            nillable=False,
            picklist=tuple(STAGES),
            restricted_picklist=True,
        ),
        FieldDef("Amount", "Amount", "currency", precision=18, scale=2),
        FieldDef(
            "Probability",
            "Probability (%)",
            "percent",
            precision=3,
            scale=0,
            min_value=0,
            max_value=100,
        ),
        FieldDef("CloseDate", "Close Date", "date", nillable=False),
        FieldDef(
            "Type",
            "Opportunity Type",
            "picklist",
            length=255,
            picklist=(
                "Existing Customer - Upgrade",
                "Existing Customer - Replacement",
                "Existing Customer - Downgrade",
                "New Customer",
            ),
        ),
        FieldDef("NextStep", "Next Step", "string", length=255),
        FieldDef(
            "LeadSource",
            "Lead Source",
            "picklist",
            length=255,
            picklist=("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"),
        ),
        FieldDef(
            "IsClosed", "Closed", "boolean", nillable=False, createable=False, updateable=False
        ),
        FieldDef("IsWon", "Won", "boolean", nillable=False, createable=False, updateable=False),
        FieldDef(
            "ForecastCategoryName",
            "Forecast Category",
            "picklist",
            length=255,
            defaulted_on_create=True,
            picklist=("Omitted", "Pipeline", "Best Case", "Commit", "Closed"),
            restricted_picklist=True,
        ),
        _owner_field(),
        *audit_fields(),
        _external_id_field(),
        FieldDef("Sync_Partition__c", "Sync Partition", "string", length=8),
    ),
)

ACCOUNT = ObjectDef(
    name="Account",
    label="Account",
    label_plural="Accounts",
    key_prefix="001",
    fields=(
        *_id_fields("Account ID"),
        FieldDef("Name", "Account Name", "string", length=255, nillable=False, id_lookup=True),
        _owner_field(),
        *audit_fields(),
        _external_id_field(),
    ),
)

OBJECTS: dict[str, ObjectDef] = {o.name: o for o in (OPPORTUNITY, ACCOUNT)}
JOB_KEY_PREFIX = "750"
USER_KEY_PREFIX = "005"
ORG_KEY_PREFIX = "00D"


def find_object(name: str) -> ObjectDef | None:
    """The sObject named ``name``, matched case-insensitively as Salesforce does."""
    return next((o for o in OBJECTS.values() if o.name.lower() == name.lower()), None)


def soql_catalog() -> dict[str, ObjectSpec]:
    return {name: o.soql_spec(OBJECTS) for name, o in OBJECTS.items()}
