"""The org's metadata as one night reads it (describe, record types, stages, currencies), kept per drop.

Read once a night from the org (`salesforce/metadata.py`) and stored in the state dir
(`state/layout.py: org_metadata_path`), so every partition of a drop, staged now or again later,
is validated against the same snapshot. Field names follow describe's JSON (camelCase aliases),
keeping only what the sync's rules read.
"""

import datetime as dt
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from sync_assets.state.layout import org_metadata_path
from sync_assets.storage import StateStore

MASTER_RECORD_TYPE_ID = "012000000000000AAA"
"""Every object's master record type (LWC docs: the default when an org defines none)."""


class _Described(BaseModel):
    """Read from describe's camelCase JSON, written back with the same names."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class PicklistValue(_Described):
    value: str
    active: bool = True


class FieldMetadata(_Described):
    """One field as describe reports it to the integration user (`DescribeFieldResult`)."""

    name: str
    label: str = ""
    type: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    external_id: bool = False
    id_lookup: bool = False
    custom: bool = False
    restricted_picklist: bool = False
    picklist_values: list[PicklistValue] = Field(default_factory=list)
    reference_to: list[str] = Field(default_factory=list)
    relationship_name: str | None = None

    @property
    def active_values(self) -> list[str]:
        return [entry.value for entry in self.picklist_values if entry.active]

    @property
    def required_on_create(self) -> bool:
        """A new record cannot be saved without it (describe: createable, not nillable or defaulted)."""
        return self.createable and not self.nillable and not self.defaulted_on_create


class RecordTypeMetadata(_Described):
    """A record type as describe's `recordTypeInfos` shows it to the integration user."""

    record_type_id: str
    developer_name: str
    name: str = ""
    master: bool = False
    available: bool = True
    active: bool = True
    default_record_type_mapping: bool = False


class ObjectMetadata(_Described):
    """An object's fields and record types, as the integration user sees them."""

    name: str
    fields: list[FieldMetadata]
    record_type_infos: list[RecordTypeMetadata] = Field(default_factory=list)

    def field(self, name: str) -> FieldMetadata | None:
        """The field whose API name matches ``name`` case-insensitively, as Salesforce matches."""
        lowered = name.lower()
        return next((entry for entry in self.fields if entry.name.lower() == lowered), None)

    def relationship(self, name: str) -> FieldMetadata | None:
        """The lookup field whose relationship name matches ``name`` (e.g. ``Account``)."""
        lowered = name.lower()
        return next(
            (
                entry
                for entry in self.fields
                if entry.relationship_name and entry.relationship_name.lower() == lowered
            ),
            None,
        )

    @property
    def default_record_type(self) -> RecordTypeMetadata:
        """The integration user's default record type: the master when the object has no other."""
        return next(
            (info for info in self.record_type_infos if info.default_record_type_mapping),
            RecordTypeMetadata(
                record_type_id=MASTER_RECORD_TYPE_ID, developer_name="Master", master=True
            ),
        )


class Currencies(_Described):
    """A multi-currency org's currencies (CurrencyType): the active ones, the inactive ones."""

    corporate: str
    active: list[str]
    inactive: list[str] = Field(default_factory=list)


class OrgMetadata(_Described):
    """What the night's rules need to know of the org, read once and kept for the drop."""

    read_at: dt.datetime
    sobject: ObjectMetadata = Field(description="The object the sync writes (Opportunity).")
    parents: dict[str, ObjectMetadata] = Field(
        default_factory=dict,
        description="Objects the mapping's relationships point to, by relationship name.",
    )
    stages: dict[str, list[str]] = Field(
        default_factory=dict,
        description="StageName values each record type's sales process offers, by record type id.",
    )
    currencies: Currencies | None = Field(default=None, description="None: single currency.")

    def stages_of(self, record_type_id: str) -> list[str]:
        """The stages a record type offers; the object's active StageName values if unknown."""
        if record_type_id in self.stages:
            return self.stages[record_type_id]
        stage = self.sobject.field("StageName")
        return stage.active_values if stage is not None else []


def stored_metadata(state: StateStore, drop_id: str) -> OrgMetadata | None:
    """The org's metadata read for the drop, if a night of it has read it yet."""
    path = org_metadata_path(drop_id)
    return state.read_json(path, OrgMetadata) if state.exists(path) else None


def metadata_for_drop(
    state: StateStore, drop_id: str, read: Callable[[], OrgMetadata]
) -> OrgMetadata:
    """The org's metadata for the drop: read (`read()`) and kept the first time, then reused.

    The caller holds the drop's staging lock, so the ten partition runs of a night read it once.
    """
    stored = stored_metadata(state, drop_id)
    if stored is not None:
        return stored
    metadata = read()
    state.write_json(org_metadata_path(drop_id), metadata)
    return metadata
