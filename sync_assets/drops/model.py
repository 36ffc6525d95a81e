"""The drop contract (docs/ARCHITECTURE.md, "The drop"): the source record model, its mapping, the manifest."""

import datetime as dt
import types
import typing
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from sync_assets.state.columns import ACCOUNT_EXTERNAL_ID_FIELD, EXTERNAL_ID_FIELD, PARTITION_FIELD

StageName = Literal[
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
]
"""The standard Opportunity stage picklist of a Salesforce org."""

STAGES: tuple[str, ...] = typing.get_args(StageName)

OPPORTUNITY_KEY = "opportunity_key"
"""The source column that identifies an opportunity (unique within a drop)."""
ACCOUNT_KEY = "account_key"
"""The source column naming the parent Account: it decides the partition."""
UPDATED_AT = "updated_at"
"""The source column that decides which of two rows of one opportunity wins (the latest)."""

# Salesforce accepts dates from 1700-01-01 to 4000-12-31.
EARLIEST_DATE = dt.date(1700, 1, 1)
LATEST_DATE = dt.date(4000, 12, 31)


def _text(max_length: int, *, required: bool) -> Any:
    return Annotated[str, StringConstraints(min_length=1 if required else 0, max_length=max_length)]


class SourceRecord(BaseModel):
    """One row of a drop. Every validation rule of the pipeline is generated from these fields.

    Required fields must be present and non-empty; an optional string that is empty counts as
    absent (it clears the field in Salesforce). `updated_at` is not sent: among rows with the
    same `opportunity_key` the latest wins.
    """

    model_config = ConfigDict(frozen=True)

    opportunity_key: _text(64, required=True) = Field(
        description="Unique id of the opportunity in the source; Salesforce External_Id__c."
    )
    account_key: _text(64, required=True) = Field(
        description="External id of the parent Account; decides the partition."
    )
    name: _text(120, required=True) = Field(description="Opportunity name.")
    stage: StageName = Field(description="One of the org's stage picklist values.")
    close_date: dt.date = Field(ge=EARLIEST_DATE, le=LATEST_DATE, description="yyyy-MM-dd.")
    amount: Decimal | None = Field(
        default=None, ge=0, max_digits=18, decimal_places=2, description="Currency, 2 decimals."
    )
    probability: int | None = Field(default=None, ge=0, le=100, description="Percent, 0–100.")
    lead_source: _text(255, required=False) | None = Field(default=None)
    type: _text(255, required=False) | None = Field(default=None)
    next_step: _text(255, required=False) | None = Field(default=None)
    description: _text(32_000, required=False) | None = Field(
        default=None, description="Any Unicode, commas, quotes, newlines."
    )
    updated_at: dt.datetime = Field(description="Last change in the source; the latest wins.")


class FieldSpec(BaseModel):
    """What the model says about one source column, in the form the validators need."""

    name: str
    kind: Literal["string", "date", "decimal", "integer", "datetime"]
    required: bool
    min_length: int | None = None
    max_length: int | None = None
    ge: Any = None
    le: Any = None
    allowed: tuple[str, ...] | None = None
    max_digits: int | None = None
    decimal_places: int | None = None

    @property
    def dtype(self) -> pl.DataType:
        """The polars type a typed drop (Parquet) carries for this column."""
        return {
            "string": pl.String(),
            "date": pl.Date(),
            "decimal": pl.Decimal(38, self.decimal_places or 0),
            "integer": pl.Int64(),
            "datetime": pl.Datetime("us", "UTC"),
        }[self.kind]


_KINDS: dict[type, str] = {
    str: "string",
    dt.datetime: "datetime",
    dt.date: "date",
    Decimal: "decimal",
    int: "integer",
}


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _spec_of(name: str, info: Any) -> FieldSpec:
    annotation = _strip_optional(info.annotation)
    metadata = list(info.metadata)
    allowed: tuple[str, ...] | None = None
    if typing.get_origin(annotation) is Literal:
        allowed = typing.get_args(annotation)
        kind = "string"
    else:
        if typing.get_origin(annotation) is Annotated:
            base, *extra = typing.get_args(annotation)
            metadata.extend(extra)
            annotation = base
        kind = _KINDS[annotation]
    spec: dict[str, Any] = {"name": name, "kind": kind, "required": info.is_required()}
    for item in metadata:
        for attribute in ("min_length", "max_length", "ge", "le", "max_digits", "decimal_places"):
            value = getattr(item, attribute, None)
            if value is not None:
                spec[attribute] = value
    return FieldSpec(**spec, allowed=allowed)


def field_specs() -> list[FieldSpec]:
    """The source columns in contract order, with the constraints the model declares."""
    return [_spec_of(name, info) for name, info in SourceRecord.model_fields.items()]


SOURCE_COLUMNS: tuple[str, ...] = tuple(SourceRecord.model_fields)

DEFAULT_COLUMNS: dict[str, str] = {
    OPPORTUNITY_KEY: EXTERNAL_ID_FIELD,
    ACCOUNT_KEY: ACCOUNT_EXTERNAL_ID_FIELD,
    "name": "Name",
    "stage": "StageName",
    "close_date": "CloseDate",
    "amount": "Amount",
    "probability": "Probability",
    "lead_source": "LeadSource",
    "type": "Type",
    "next_step": "NextStep",
    "description": "Description",
}


class FieldMapping(BaseModel):
    """Source column → Salesforce Opportunity field; configuration, defaults per docs/ARCHITECTURE.md."""

    model_config = ConfigDict(frozen=True)

    columns: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    partition_field: str = Field(
        default=PARTITION_FIELD, description="Text field the loader fills with the partition."
    )

    @field_validator("columns")
    @classmethod
    def _known_columns_and_unique_targets(cls, columns: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(columns) - set(SOURCE_COLUMNS))
        if unknown:
            raise ValueError(f"unknown source columns in the mapping: {unknown}")
        for key in (OPPORTUNITY_KEY, ACCOUNT_KEY):
            if key not in columns:
                raise ValueError(f"the mapping must send {key}")
        if len(set(columns.values())) != len(columns):
            raise ValueError("two source columns map to the same Salesforce field")
        return columns

    @property
    def external_id_field(self) -> str:
        return self.columns[OPPORTUNITY_KEY]

    @property
    def salesforce_fields(self) -> list[str]:
        """The columns of a staged file that Salesforce receives, in order."""
        return [*self.columns.values(), self.partition_field]


class Manifest(BaseModel):
    """`_manifest.json`, written last: its presence means the drop is complete."""

    drop_id: str = Field(min_length=1)
    row_count: int = Field(ge=0)
    files: list[str]
    created_at: dt.datetime

    @field_validator("files")
    @classmethod
    def _plain_file_names(cls, files: list[str]) -> list[str]:
        # The manifest comes from outside: never let it point out of the drop's folder.
        for name in files:
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                raise ValueError(f"manifest file name {name!r} is not a plain file name")
        return files
