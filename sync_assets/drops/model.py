"""The drop contract (docs/ARCHITECTURE.md, "The drop"): the source record model's rules, the manifest.

The source record model is generated for each night from the mapping and the org's describe
(`drops/contract.py`); every validation rule of the pipeline is read from it here, as
`FieldSpec`s. What pydantic's own constraints cannot say (the Salesforce field a column writes,
what an empty value does, rounding, record-type stage lists) travels in the model's field
metadata as a `Target`.
"""

import datetime as dt
import types
import typing
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

import polars as pl
from pydantic import BaseModel, Field, field_validator
from pydantic.fields import FieldInfo

from sync_assets.drops.mapping import EmptyValue, Rounding

# Salesforce accepts dates from 1700-01-01 to 4000-12-31.
EARLIEST_DATE = dt.date(1700, 1, 1)
LATEST_DATE = dt.date(4000, 12, 31)

Kind = Literal["string", "date", "decimal", "integer", "datetime", "boolean"]

NO_RECORD_TYPE = ""
"""The record type key of rows that name none: they get the default record type's stages."""


@dataclass(frozen=True, eq=False)
class Target:
    """Where a source column goes in Salesforce and how, beyond pydantic's constraints.

    A plain dataclass: pydantic keeps it in a field's metadata without acting on it (hashed by
    identity, as type annotations need).
    """

    field: str | None
    """The Bulk CSV header it is sent as; None: not sent."""
    empty: EmptyValue = "clear"
    rounding: Rounding = "round"
    integer_digits: int | None = None
    """Digits before the point (precision − scale)."""
    record_type_ids: dict[str, str] | None = None
    """RecordTypeId by DeveloperName: name → Id."""
    stages: dict[str, tuple[str, ...]] | None = None
    """StageName by record type: DeveloperName (or NO_RECORD_TYPE) → stages."""
    record_type_column: str | None = None
    """The column naming each row's record type, for `stages`."""
    inactive: tuple[str, ...] = ()
    """Values the org knows but has deactivated (currencies)."""


class FieldSpec(BaseModel):
    """What the model says about one source column, in the form the validators need."""

    name: str
    kind: Kind
    required: bool
    min_length: int | None = None
    max_length: int | None = None
    ge: Any = None
    le: Any = None
    allowed: tuple[str, ...] | None = None
    max_digits: int | None = None
    decimal_places: int | None = None
    target: Target = Field(default_factory=lambda: Target(field=None))

    @property
    def dtype(self) -> pl.DataType:
        """The polars type a typed drop (Parquet) carries for this column."""
        return {
            "string": pl.String(),
            "date": pl.Date(),
            "decimal": pl.Decimal(38, self.decimal_places or 0),
            "integer": pl.Int64(),
            "datetime": pl.Datetime("us", "UTC"),
            "boolean": pl.Boolean(),
        }[self.kind]


_KINDS: dict[type, Kind] = {
    str: "string",
    dt.datetime: "datetime",
    dt.date: "date",
    bool: "boolean",
    int: "integer",
    Decimal: "decimal",
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
    if typing.get_origin(annotation) is Annotated:
        annotation, *extra = typing.get_args(annotation)
        metadata.extend(extra)
    allowed: tuple[str, ...] | None = None
    if typing.get_origin(annotation) is Literal:
        allowed = typing.get_args(annotation)
        kind: Kind = "string"
    else:
        kind = _KINDS[annotation]
    spec: dict[str, Any] = {"name": name, "kind": kind, "required": info.is_required()}
    # A Field(...) inside Annotated keeps its constraints in its own metadata.
    metadata += [part for item in metadata if isinstance(item, FieldInfo) for part in item.metadata]
    for item in metadata:
        if isinstance(item, Target):
            spec["target"] = item
            if item.integer_digits is not None and kind == "integer":
                spec["max_digits"] = item.integer_digits
        for attribute in ("min_length", "max_length", "ge", "le", "max_digits", "decimal_places"):
            value = getattr(item, attribute, None)
            if value is not None:
                spec[attribute] = value
    return FieldSpec(**spec, allowed=allowed)


def field_specs(model: type[BaseModel]) -> list[FieldSpec]:
    """The source columns in contract order, with the constraints the model declares."""
    return [_spec_of(info.alias or name, info) for name, info in model.model_fields.items()]


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
