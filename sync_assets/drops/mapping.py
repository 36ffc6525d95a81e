"""The mapping file (`SYNC_MAPPING_FILE`): which drop column writes which Opportunity field, and how.

The file says where values go and what the org cannot know (constants, what an empty value does,
extra ranges, how record types are named); the org's describe says everything else (types,
lengths, required fields, picklists), see `drops/contract.py`. The built-in mapping ships as
`sync_assets/mapping.yaml`.
"""

from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sync_assets.state.columns import ACCOUNT_EXTERNAL_ID_FIELD, EXTERNAL_ID_FIELD, PARTITION_FIELD

BUILTIN_MAPPING_FILE = Path(__file__).resolve().parent.parent / "mapping.yaml"

EmptyValue = Literal["clear", "keep"]
"""`clear`: an empty value sends `#N/A`, which empties the field; `keep`: an empty cell, which
leaves the org's value (Bulk API 2.0: "empty values are ignored" on update)."""
Rounding = Literal["round", "reject"]
"""More decimal places than a field's scale: rounded half-up by us, or the row is rejected.

Salesforce's API stores extra places as sent and rounds only in its UI (Help 000385689,
000387302), so a value must be rounded before it is sent.
"""
Constant = str | int | float | bool
DriftPolicy = Literal["overwrite", "report"]
"""What the drift check does when the org holds another value than the sync sent: `overwrite`
(the row is resent by the next load) or `report` (listed, left as the org has it)."""


class MappingError(ValueError):
    """The mapping file cannot be read or says something impossible; names the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnField(_Strict):
    """A column and the field it writes (the key and the parent)."""

    column: str = Field(min_length=1)
    field: str = Field(min_length=1)


class FieldMap(_Strict):
    """One Opportunity field the sync writes: from a column, or a constant on every row."""

    field: str = Field(min_length=1, description="API name, or Relationship.ExternalIdField.")
    column: str | None = Field(default=None, min_length=1)
    value: Constant | None = Field(default=None, description="A constant instead of a column.")
    empty: EmptyValue | None = Field(
        default=None,
        description="None: clear, or keep for a field the org fills itself (not nillable, or "
        "defaulted on create).",
    )
    by: Literal["DeveloperName"] | None = Field(
        default=None, description="RecordTypeId given as the record type's DeveloperName."
    )
    min: Decimal | None = None
    max: Decimal | None = None
    rounding: Rounding | None = Field(default=None, description="None: the file's rounding.")
    drift: DriftPolicy = Field(
        default="overwrite",
        description="A value edited in the org: overwrite (the source owns the field) or report.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> "FieldMap":
        if (self.column is None) == (self.value is None):
            raise ValueError(f"{self.field}: give either a column or a constant value")
        if self.by is not None and self.field.lower() != "recordtypeid":
            raise ValueError(f"{self.field}: 'by' applies to RecordTypeId only")
        return self


class CsvOptions(_Strict):
    delimiter: str = Field(default=",", min_length=1, max_length=1)


class Mapping(_Strict):
    """A mapping file."""

    object: Literal["Opportunity"] = "Opportunity"
    key: ColumnField
    parent: ColumnField
    updated_at: str = Field(min_length=1)
    partition_field: str = PARTITION_FIELD
    rounding: Rounding = "round"
    csv: CsvOptions = Field(default_factory=CsvOptions)
    fields: list[FieldMap]

    @model_validator(mode="after")
    def _consistent(self) -> "Mapping":
        # The loader, its checkpoints, the ledger and the count checks key on these fields.
        fixed = {
            "key.field": (self.key.field, EXTERNAL_ID_FIELD),
            "parent.field": (self.parent.field, ACCOUNT_EXTERNAL_ID_FIELD),
            "partition_field": (self.partition_field, PARTITION_FIELD),
        }
        for where, (given, supported) in fixed.items():
            if given != supported:
                raise ValueError(
                    f"{where} must be {supported} (the loader keys on it), not {given}"
                )
        columns = [self.key.column, self.parent.column, self.updated_at]
        columns += [entry.column for entry in self.fields if entry.column is not None]
        _unique("column", columns)
        targets = [self.key.field, self.parent.field, self.partition_field]
        _unique("field", [*targets, *(entry.field for entry in self.fields)])
        return self

    def drift_policy(self, field: str) -> DriftPolicy:
        """The drift policy of a sent field; the key, parent and partition field are overwritten."""
        return next((entry.drift for entry in self.fields if entry.field == field), "overwrite")


def _unique(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            raise ValueError(f"{what} {name!r} appears twice (names match whatever their case)")
        seen.add(name.lower())


def load_mapping(path: str | Path | None = None) -> Mapping:
    """The mapping in the YAML file at ``path``, or the built-in one."""
    source = Path(path) if path else BUILTIN_MAPPING_FILE
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
        return Mapping.model_validate(document)
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise MappingError(f"mapping file {source}: {error}") from error
