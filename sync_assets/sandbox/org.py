"""The org the sandbox plays, read from an org file (YAML): metadata, automation, users, identity.

With no file the sandbox is an empty production-like org: the standard Opportunity stages, one
record type (the master), a single currency, no custom fields, no validation rules, no
automation, and one integration user who may do everything. An org file describes a real org's
shape instead; every part is optional and defaults to the empty org's.

The file's shape is this module's models (``OrgSpec``); unknown keys are refused so a typo
cannot silently describe another org.
"""

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


IsoCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Currencies(_Strict):
    """Multi-currency: the corporate currency and the active ones (``CurrencyIsoCode``)."""

    corporate: IsoCode
    active: list[IsoCode] = Field(min_length=1)
    inactive: list[IsoCode] = Field(
        default_factory=list, description="Currencies the org knows but has deactivated."
    )
    rates: dict[IsoCode, float] = Field(
        default_factory=dict,
        description="Conversion rates against the corporate currency (CurrencyType); else 1.",
    )

    @model_validator(mode="after")
    def _corporate_is_active(self) -> "Currencies":
        if self.corporate not in self.active:
            raise ValueError(f"the corporate currency {self.corporate} must be active")
        both = sorted(set(self.active) & set(self.inactive))
        if both:
            raise ValueError(f"currencies both active and inactive: {both}")
        unknown = sorted(set(self.rates) - set(self.active) - set(self.inactive))
        if unknown:
            raise ValueError(f"rates for currencies the org does not have: {unknown}")
        return self


class RecordTypeSpec(_Strict):
    """An Opportunity record type and the stages its sales process offers."""

    developer_name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    label: str | None = None
    stages: list[str] = Field(min_length=1)
    active: bool = True


CustomFieldType = Literal[
    "string", "textarea", "picklist", "double", "currency", "percent", "int", "boolean", "date"
]


class CustomFieldSpec(_Strict):
    """A custom Opportunity field (the name ends in ``__c``)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$")
    type: CustomFieldType
    label: str | None = None
    length: int | None = Field(default=None, ge=1, le=131_072)
    precision: int | None = Field(default=None, ge=1, le=18)
    scale: int | None = Field(default=None, ge=0, le=17)
    values: list[str] | None = None
    restricted: bool = False
    required: bool = False
    external_id: bool = False
    unique: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "CustomFieldSpec":
        if self.type == "picklist" and not self.values:
            raise ValueError(f"picklist field {self.name} needs values")
        if self.type != "picklist" and (self.values or self.restricted):
            raise ValueError(f"only a picklist field has values (field {self.name})")
        if self.scale is not None and self.precision is not None and self.scale > self.precision:
            raise ValueError(f"field {self.name}: scale above precision")
        return self


class ValidationRuleSpec(_Strict):
    """A validation rule: rows whose new values match ``when`` (a SOQL WHERE condition) fail."""

    name: str
    when: str = Field(min_length=1)
    message: str = Field(min_length=1)
    field: str | None = Field(default=None, description="The field the error is shown on.")
    active: bool = True


class AutomationSpec(_Strict):
    """Triggers, flows and rollups, as the cost and failures they add to each write."""

    apex_ms_per_record: float = Field(
        default=0.0, ge=0, description="Apex CPU time each record costs; slows processing."
    )
    lock_errors: Literal["bare", "wrapped"] = Field(
        default="bare",
        description="wrapped: lock failures arrive inside CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY, "
        "as from a trigger's own DML, and fail the record's whole 200-record chunk.",
    )
    cpu_limit_ms: float = Field(
        default=60_000.0,
        gt=0,
        description="Apex CPU time allowed per 200-record chunk. Bulk API transactions get the "
        "higher of the synchronous (10 s) and asynchronous (60 s) limits (Apex Developer Guide, "
        "Execution Governors and Limits).",
    )
    trigger: str = Field(
        default="OpportunityTrigger",
        pattern=r"^[A-Za-z][A-Za-z0-9_.]*$",
        description="The trigger named in wrapped errors.",
    )


class OpportunitySpec(_Strict):
    """The Opportunity object of this org."""

    picklists: dict[str, list[str]] = Field(
        default_factory=dict, description="Values of standard picklists, e.g. StageName."
    )
    record_types: list[RecordTypeSpec] = Field(default_factory=list)
    custom_fields: list[CustomFieldSpec] = Field(default_factory=list)
    validation_rules: list[ValidationRuleSpec] = Field(default_factory=list)
    automation: AutomationSpec = Field(default_factory=AutomationSpec)

    @model_validator(mode="after")
    def _record_type_stages_exist(self) -> "OpportunitySpec":
        stages = self.picklists.get("StageName")
        if stages is None:
            return self
        for record_type in self.record_types:
            unknown = sorted(set(record_type.stages) - set(stages))
            if unknown:
                raise ValueError(
                    f"record type {record_type.developer_name} offers stages that are not "
                    f"StageName values: {unknown}"
                )
        return self


class IntegrationUserSpec(_Strict):
    """The user the sync logs in as, and what its profile and permission sets deny it."""

    view_setup: bool = Field(
        default=True, description="View Setup and Configuration: needed for /limits."
    )
    hidden_fields: list[str] = Field(
        default_factory=list, description="Opportunity fields field-level security hides."
    )
    read_only_fields: list[str] = Field(
        default_factory=list, description="Opportunity fields the user may see but not edit."
    )
    bulk_api_hard_delete: bool = Field(
        default=True,
        description="The Bulk API Hard Delete permission: without it a hardDelete job is refused "
        "at creation (FEATURENOTENABLED). Salesforce ships it off; give it false to play that.",
    )


class PersonSpec(_Strict):
    """Another user of the org (a sales rep who edits records)."""

    username: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    password: SecretStr
    first_name: str | None = None
    last_name: str | None = None


class UsersSpec(_Strict):
    integration: IntegrationUserSpec = Field(default_factory=IntegrationUserSpec)
    people: list[PersonSpec] = Field(default_factory=list)


class ConnectedAppSpec(_Strict):
    """The connected app's certificate for the JWT bearer flow (PEM, or a file next to the org file)."""

    certificate: str | None = Field(default=None, description="PEM text of the X.509 certificate.")
    certificate_file: Path | None = None


class OrgSpec(_Strict):
    """An org file."""

    org_id: str | None = Field(
        default=None,
        pattern=r"^00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$",
        description="Else generated once per data dir and kept.",
    )
    name: str = "Sandbox Org"
    my_domain: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$",
        description="The org's My Domain: OAuth flows that need it answer only on the instance host.",
    )
    currencies: Currencies | None = None
    opportunity: OpportunitySpec = Field(default_factory=OpportunitySpec)
    users: UsersSpec = Field(default_factory=UsersSpec)
    connected_app: ConnectedAppSpec = Field(default_factory=ConnectedAppSpec)


def load_org(path: Path | None) -> OrgSpec:
    """The org an org file describes, or the empty org without one."""
    if path is None:
        return OrgSpec()
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    spec = OrgSpec.model_validate(document)
    certificate = spec.connected_app.certificate_file
    if certificate is not None and not certificate.is_absolute():
        app = spec.connected_app.model_copy(update={"certificate_file": path.parent / certificate})
        spec = spec.model_copy(update={"connected_app": app})
    return spec
