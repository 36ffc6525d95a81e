"""A night's contract: the source record model, generated from the mapping and the org's describe.

One source of truth for the rules: each mapped column becomes a field of a pydantic model whose
type and constraints come from the Opportunity field it writes (type, length, precision and
scale, required, restricted picklist values, the stages of each record type, active
currencies), plus what the mapping adds (ranges, what an empty value does, rounding). The
polars rules (`drops/validate.py`) are read from that model. A mapping the org cannot take (a
field the integration user cannot see or write, an unsupported type, a required field not sent)
refuses the night before anything is read or sent (`ContractError`).
"""

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator

from sync_assets.drops.mapping import Constant, FieldMap, Mapping, load_mapping
from sync_assets.drops.model import (
    EARLIEST_DATE,
    LATEST_DATE,
    NO_RECORD_TYPE,
    FieldSpec,
    Kind,
    Target,
    field_specs,
)
from sync_assets.drops.standard_org import standard_org
from sync_assets.state.org_metadata import (
    FieldMetadata,
    OrgMetadata,
    metadata_for_drop,
    stored_metadata,
)
from sync_assets.storage import StateStore

_STRING_TYPES = frozenset(
    {"string", "textarea", "picklist", "combobox", "email", "phone", "url", "id", "reference"}
)
_NUMBER_TYPES = frozenset({"double", "currency", "percent"})
_DEFAULT_DIGITS = 18  # Help 000386249: a number field holds at most 18 digits.
STAGE_FIELD = "StageName"
CURRENCY_FIELD = "CurrencyIsoCode"
RECORD_TYPE_FIELD = "RecordTypeId"


class ContractError(ValueError):
    """The mapping cannot be synced into this org as it is; nothing was sent. Names every field."""


class _Problems:
    """What is wrong with a mapping for an org, gathered so one error names all of it."""

    def __init__(self, sobject: str) -> None:
        self.sobject = sobject
        self.hidden: list[str] = []
        self.read_only: list[str] = []
        self.other: list[str] = []

    def raise_if_any(self) -> None:
        lines = []
        if self.hidden:
            lines.append(
                f"the integration user cannot see these {self.sobject} fields (hidden by "
                f"field-level security, or not fields of {self.sobject}): " + ", ".join(self.hidden)
            )
        if self.read_only:
            lines.append(
                f"the integration user cannot write these {self.sobject} fields (read-only): "
                + ", ".join(self.read_only)
            )
        lines += self.other
        if lines:
            raise ContractError("The mapping does not fit the org: " + "; ".join(lines) + ".")


@dataclass(frozen=True)
class DropContract:
    """The mapping bound to one org's metadata: the model, its rules, what is sent."""

    mapping: Mapping
    org: OrgMetadata
    model: type[BaseModel]
    specs: list[FieldSpec]
    constants: dict[str, str]
    fingerprint: str

    @property
    def key_column(self) -> str:
        return self.mapping.key.column

    @property
    def parent_column(self) -> str:
        return self.mapping.parent.column

    @property
    def order_column(self) -> str:
        return self.mapping.updated_at

    @property
    def key_field(self) -> str:
        return self.mapping.key.field

    @property
    def partition_field(self) -> str:
        return self.mapping.partition_field

    @property
    def csv_delimiter(self) -> str:
        return self.mapping.csv.delimiter

    @property
    def sent_specs(self) -> list[FieldSpec]:
        return [spec for spec in self.specs if spec.target.field is not None]

    @property
    def salesforce_fields(self) -> list[str]:
        """The columns of a staged file that Salesforce receives, in order."""
        sent = [str(spec.target.field) for spec in self.sent_specs]
        return [*sent, *self.constants, self.partition_field]

    def spec(self, column: str) -> FieldSpec:
        return next(spec for spec in self.specs if spec.name == column)


def _kind_of(meta: FieldMetadata) -> Kind | None:
    if meta.type in _STRING_TYPES:
        return "string"
    if meta.type in _NUMBER_TYPES:
        return "integer" if meta.scale == 0 else "decimal"
    return {"int": "integer", "date": "date", "datetime": "datetime", "boolean": "boolean"}.get(
        meta.type
    )


def _integer_digits(meta: FieldMetadata) -> int:
    if meta.type == "int":
        # Real describes report an integer's size in `digits`; some clients in `precision`.
        return meta.digits or meta.precision or _DEFAULT_DIGITS
    return (meta.precision or _DEFAULT_DIGITS) - meta.scale


class _Builder:
    """Builds the model's fields one mapped column at a time, gathering what does not fit."""

    def __init__(self, mapping: Mapping, org: OrgMetadata) -> None:
        self.mapping = mapping
        self.org = org
        self.sobject = org.sobject
        self.problems = _Problems(org.sobject.name)
        self.fields: dict[str, Any] = {}
        self.names: dict[str, str] = {}
        self.constants: dict[str, str] = {}
        self.stage_rule: tuple[str, dict[str, tuple[str, ...]]] | None = None

    # ---- the fields a mapping names --------------------------------------------------------

    def writable(self, name: str) -> FieldMetadata | None:
        """The object's field named `name` if the integration user may write it, else noted."""
        meta = self.sobject.field(name)
        if meta is None:
            self.problems.hidden.append(name)
        elif not (meta.createable and meta.updateable):
            self.problems.read_only.append(meta.name)
        else:
            return meta
        return None

    def target(self, name: str) -> tuple[str, FieldMetadata] | None:
        """The header a mapped field is sent as, and the field whose rules its values follow.

        A relationship (`Owner.Federation_Id__c`) is matched on an indexed field of the parent:
        a custom External ID field, or a standard idLookup field (Bulk API 2.0 Developer Guide,
        "Relationship Fields in a Header Row").
        """
        relationship, dot, parent_field = name.partition(".")
        if not dot:
            meta = self.writable(name)
            return None if meta is None else (meta.name, meta)
        lookup = self.sobject.relationship(relationship)
        if lookup is None:
            self.problems.hidden.append(name)
            return None
        if self.writable(lookup.name) is None:
            return None
        parent = self.org.parents.get(str(lookup.relationship_name))
        meta = parent.field(parent_field) if parent is not None else None
        if parent is None or meta is None:
            self.problems.other.append(
                f"{name}: no field {parent_field} of {'/'.join(lookup.reference_to)} is "
                "visible to the integration user"
            )
            return None
        if not (meta.external_id if meta.custom else meta.id_lookup):
            self.problems.other.append(
                f"{name}: {parent.name}.{meta.name} is not an External ID field, so Salesforce "
                "cannot find parents by it"
            )
            return None
        return f"{lookup.relationship_name}.{meta.name}", meta

    # ---- one column ------------------------------------------------------------------------

    def add_column(
        self, column: str, meta: FieldMetadata, header: str, entry: FieldMap | None = None
    ) -> None:
        kind = _kind_of(meta)
        if kind is None:
            self.problems.other.append(f"{header}: fields of type {meta.type} are not supported")
            return
        required = meta.required_on_create or entry is None
        empty = self._empty(entry, meta, header, required)
        target = Target(
            field=header,
            empty=empty,
            rounding=(entry.rounding if entry else None) or self.mapping.rounding,
            integer_digits=_integer_digits(meta) if kind in ("integer", "decimal") else None,
        )
        annotation = self._annotation(column, meta, kind, required, target, entry)
        if annotation is not None:
            self.add(column, annotation, required)

    def _empty(
        self, entry: FieldMap | None, meta: FieldMetadata, header: str, required: bool
    ) -> Literal["clear", "keep"]:
        if entry is None or entry.empty is None:
            # A field the org fills itself (owner, currency, record type) keeps its value.
            return "keep" if meta.defaulted_on_create or not meta.nillable else "clear"
        if entry.empty == "clear" and not meta.nillable and not required:
            self.problems.other.append(
                f"{header} may not be empty in the org: map it with empty: keep"
            )
        return entry.empty

    def _annotation(
        self,
        column: str,
        meta: FieldMetadata,
        kind: Kind,
        required: bool,
        target: Target,
        entry: FieldMap | None,
    ) -> Any:
        bounds = self._bounds(entry, kind, meta.name)
        if kind == "string":
            return self._string(column, meta, required, target, entry)
        if kind == "decimal":
            return Annotated[
                Decimal,
                Field(max_digits=meta.precision or _DEFAULT_DIGITS, decimal_places=meta.scale),
                *bounds,
                target,
            ]
        if kind == "integer":
            limit = 10 ** _integer_digits(meta)
            return Annotated[int, *bounds, annotated_types.Interval(gt=-limit, lt=limit), target]
        if kind == "date":
            return Annotated[dt.date, Field(ge=EARLIEST_DATE, le=LATEST_DATE), target]
        if kind == "datetime":
            return Annotated[dt.datetime, target]
        return Annotated[bool, target]

    def _bounds(self, entry: FieldMap | None, kind: Kind, name: str) -> list[Any]:
        if entry is None or (entry.min is None and entry.max is None):
            return []
        if kind not in ("decimal", "integer"):
            self.problems.other.append(f"{name}: min and max apply to numbers only")
            return []
        if kind == "integer":
            return [Field(ge=_as_int(entry.min), le=_as_int(entry.max))]
        return [Field(ge=entry.min, le=entry.max)]

    def _string(
        self,
        column: str,
        meta: FieldMetadata,
        required: bool,
        target: Target,
        entry: FieldMap | None,
    ) -> Any:
        if entry is not None and entry.by == "DeveloperName":
            ids = self.record_type_ids()
            if not ids:
                self.problems.other.append(
                    f"{column}: the org has no record type of {self.sobject.name} the "
                    "integration user may use"
                )
                return None
            return Annotated[Literal[tuple(ids)], replace(target, record_type_ids=ids)]
        values = self.picklist(meta)
        if meta.name == STAGE_FIELD:
            return self._stage(column, meta, target)
        if values is not None:
            inactive = self._inactive(meta)
            return Annotated[Literal[tuple(values)], replace(target, **inactive)]
        length = StringConstraints(min_length=1 if required else 0, max_length=meta.length or None)
        return Annotated[str, length, target]

    def picklist(self, meta: FieldMetadata) -> list[str] | None:
        """The values a field may hold, if the org restricts them."""
        if meta.name == STAGE_FIELD:
            return self.org.stages_of(self.sobject.default_record_type.record_type_id)
        if meta.type == "picklist" and meta.restricted_picklist:
            return meta.active_values
        return None

    def _inactive(self, meta: FieldMetadata) -> dict[str, Any]:
        currencies = self.org.currencies
        if meta.name != CURRENCY_FIELD or currencies is None:
            return {}
        return {"inactive": tuple(currencies.inactive)}

    def _stage(self, column: str, meta: FieldMetadata, target: Target) -> Any:
        """StageName: the stages of each row's record type, when the mapping names one.

        The API accepts any active stage whatever the record type (production-org.md), so the
        sync holds each row to its record type's sales process itself; rows that name none get
        the integration user's default record type's stages.
        """
        default = self.sobject.default_record_type.record_type_id
        stages = {NO_RECORD_TYPE: tuple(self.org.stages_of(default))}
        record_type = self.record_type_column()
        if record_type is None:
            return Annotated[Literal[stages[NO_RECORD_TYPE]], target]
        stages |= {
            name: tuple(self.org.stages_of(record_type_id))
            for name, record_type_id in self.record_type_ids().items()
        }
        self.stage_rule = (column, stages)
        offered = {stage for values in stages.values() for stage in values}
        allowed = tuple(value for value in meta.active_values if value in offered)
        return Annotated[
            Literal[allowed],
            replace(target, stages=stages, record_type_column=record_type),
        ]

    def record_type_column(self) -> str | None:
        return next(
            (entry.column for entry in self.mapping.fields if entry.by == "DeveloperName"), None
        )

    def record_type_ids(self) -> dict[str, str]:
        """The record types a row may name (active, available to the user), by DeveloperName."""
        return {
            info.developer_name: info.record_type_id
            for info in self.sobject.record_type_infos
            if info.active and info.available and not info.master
        }

    def add(self, column: str, annotation: Any, required: bool) -> None:
        # Columns may be named anything; the model's own field names are identifiers.
        name = self.names[column] = f"column_{len(self.fields)}"
        if required:
            self.fields[name] = (annotation, Field(alias=column))
        else:
            self.fields[name] = (annotation | None, Field(default=None, alias=column))

    # ---- constants -------------------------------------------------------------------------

    def add_constant(self, header: str, meta: FieldMetadata, entry: FieldMap) -> None:
        """A value sent on every row, checked once against the field's rules."""
        try:
            text = _constant_text(meta, entry.value, self)
        except (ValueError, InvalidOperation) as error:
            self.problems.other.append(f"{header}: the constant {entry.value!r} {error}")
            return
        self.constants[header] = text


def _as_int(value: Decimal | None) -> int | None:
    return None if value is None else int(value)


def _constant_text(meta: FieldMetadata, value: Constant | None, builder: _Builder) -> str:
    """The Bulk CSV text of a constant, or ValueError saying why the field cannot take it."""
    kind = _kind_of(meta)
    if meta.name == RECORD_TYPE_FIELD and str(value) in builder.record_type_ids():
        return builder.record_type_ids()[str(value)]
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("is not true or false")
        return "true" if value else "false"
    if kind in ("decimal", "integer"):
        number = Decimal(str(value))
        places = 0 if kind == "integer" else meta.scale
        if number != round(number, places):
            raise ValueError(f"has more than {places} decimal places")
        if abs(number) >= 10 ** _integer_digits(meta):
            raise ValueError("has too many digits")
        return str(round(number, places))
    if kind == "date":
        return dt.date.fromisoformat(str(value)).isoformat()
    text = str(value)
    allowed = builder.picklist(meta)
    if allowed is not None and text not in allowed:
        raise ValueError("is not a value of the picklist")
    if meta.length and len(text) > meta.length:
        raise ValueError(f"is longer than {meta.length} characters")
    return text


def _stage_check(stage: str, record_type: str, stages: dict[str, tuple[str, ...]]) -> Any:
    """The model's check that a row's stage is one its record type offers."""

    def check(record: Any) -> Any:
        values = record.__dict__
        named = values.get(record_type) or NO_RECORD_TYPE
        value = values.get(stage)
        if value is not None and named in stages and value not in stages[named]:
            raise ValueError(f"stage {value!r} is not a stage of record type {named}")
        return record

    return model_validator(mode="after")(check)


def build_contract(mapping: Mapping, org: OrgMetadata) -> DropContract:
    """The contract of `mapping` in the org `org` describes; ContractError if it cannot fit."""
    builder = _Builder(mapping, org)
    key = builder.writable(mapping.key.field)
    if key is not None and not key.external_id:
        builder.problems.other.append(f"{key.name} is not an External ID field")
    elif key is not None:
        builder.add_column(mapping.key.column, key, key.name)
    parent = builder.target(mapping.parent.field)
    if parent is not None:
        builder.add_column(mapping.parent.column, parent[1], parent[0])
    for entry in mapping.fields:
        found = builder.target(entry.field)
        if found is None:
            continue
        header, meta = found
        if entry.column is None:
            builder.add_constant(header, meta, entry)
        else:
            builder.add_column(entry.column, meta, header, entry)
    builder.add(mapping.updated_at, Annotated[dt.datetime, Target(field=None)], required=True)
    builder.writable(mapping.partition_field)
    _required_fields_sent(builder)
    builder.problems.raise_if_any()
    model = _model(builder)
    return DropContract(
        mapping=mapping,
        org=org,
        model=model,
        specs=field_specs(model),
        constants=builder.constants,
        fingerprint=_fingerprint(mapping, org),
    )


def _required_fields_sent(builder: _Builder) -> None:
    headers = [builder.mapping.key.field, builder.mapping.parent.field]
    headers += [entry.field for entry in builder.mapping.fields]
    sent = {header.lower() for header in headers}
    for relationship in relationships(builder.mapping):
        # A parent given by external id fills its lookup field.
        lookup = builder.sobject.relationship(relationship)
        if lookup is not None:
            sent.add(lookup.name.lower())
    missing = [
        meta.name
        for meta in builder.sobject.fields
        if meta.required_on_create and meta.name.lower() not in sent
    ]
    if missing:
        builder.problems.other.append(
            "every new record needs these fields, which the mapping does not send: "
            + ", ".join(missing)
        )


def _model(builder: _Builder) -> type[BaseModel]:
    validators = {}
    record_type = builder.record_type_column()
    if builder.stage_rule is not None and record_type is not None:
        column, stages = builder.stage_rule
        validators["stage_of_record_type"] = _stage_check(
            builder.names[column], builder.names[record_type], stages
        )
    return create_model(
        "SourceRecord",
        __config__=ConfigDict(frozen=True),
        __validators__=validators,
        **builder.fields,
    )


def _fingerprint(mapping: Mapping, org: OrgMetadata) -> str:
    """Changes when the mapping or the org's metadata do: a staging made under others is stale."""
    # The drift policy changes nothing that is sent: changing it must not restage a drop.
    sent = mapping.model_dump_json(exclude={"fields": {"__all__": {"drift"}}})
    digest = hashlib.sha256(sent.encode())
    digest.update(org.model_dump_json(exclude={"read_at"}).encode())
    return digest.hexdigest()[:16]


def relationships(mapping: Mapping) -> list[str]:
    """The relationships the mapping writes by external id (their objects must be described)."""
    headers = [mapping.parent.field, *(entry.field for entry in mapping.fields)]
    return sorted({header.partition(".")[0] for header in headers if "." in header})


@cache
def default_contract() -> DropContract:
    """The built-in mapping in an org as Salesforce ships it (for drops staged without an org)."""
    return build_contract(load_mapping(), standard_org())


def contract_for_drop(
    state: StateStore,
    drop_id: str,
    mapping: Mapping,
    describe: Callable[[str, list[str]], OrgMetadata],
    keep: bool = True,
) -> DropContract:
    """The contract a drop is validated under: the mapping in the org's metadata for the drop.

    `describe` reads the org's metadata of an object and of the relationships the mapping
    writes through. A night reads it once and keeps it (`keep`), so all its partitions share
    it; a plan uses the kept one if there is one (the night's), else reads it now, and keeps
    nothing.
    """

    def read() -> OrgMetadata:
        return describe(mapping.object, relationships(mapping))

    if keep:
        org = metadata_for_drop(state, drop_id, read)
    else:
        org = stored_metadata(state, drop_id) or read()
    return build_contract(mapping, org)
