"""The org's objects as its org file shapes them, and each user's view of them.

Opportunity takes the file's stages and picklist values, record types (``RecordTypeId``), the
multi-currency ``CurrencyIsoCode``, custom fields and validation rules; the setup objects (User,
Organization, RecordType, CurrencyType) come from ``setup_objects``. A restricted user sees the
objects through field-level security: hidden fields are not there at all (describe, SOQL and
Bulk headers do not know them) and read-only fields cannot be written.
"""

from dataclasses import replace
from functools import partial

from sync_assets.sandbox.auth import OrgIdentity, load_identity
from sync_assets.sandbox.convert import reference_converter, row_error
from sync_assets.sandbox.dml.rules import LookupConverter, RecordRules, compile_validation_rule
from sync_assets.sandbox.objects import (
    ACCOUNT,
    MASTER_RECORD_TYPE,
    MASTER_RECORD_TYPE_ID,
    OPPORTUNITY,
    STAGES,
    USER_KEY_PREFIX,
    FieldDef,
    ObjectDef,
    RecordTypeInfo,
    StageInfo,
    derive_stages,
)
from sync_assets.sandbox.org import (
    Currencies,
    CustomFieldSpec,
    OpportunitySpec,
    OrgSpec,
    RecordTypeSpec,
)
from sync_assets.sandbox.setup_objects import (
    RECORD_TYPE_KEY_PREFIX,
    install_setup_records,
    setup_objects,
)
from sync_assets.sandbox.soql.compiler import ObjectSpec
from sync_assets.sandbox.store import Database
from sync_assets.sandbox.users import NamedIds, SandboxUser, Users, load_users


class Catalog:
    """The org's objects by name (matched case-insensitively), its users and its sales processes.

    ``sales_processes`` maps each Opportunity record type id, the master's included, to the
    stages its sales process offers.
    """

    def __init__(
        self,
        objects: dict[str, ObjectDef],
        users: Users,
        stages: dict[str, StageInfo],
        sales_processes: dict[str, tuple[str, ...]],
    ) -> None:
        self.objects = objects
        self.users = users
        self.stages = stages
        self.sales_processes = sales_processes
        self._by_lower_name = {name.lower(): o for name, o in objects.items()}
        self._soql = {name: o.soql_spec(objects) for name, o in objects.items()}
        self._views: dict[str, Catalog] = {}

    def find(self, name: str) -> ObjectDef | None:
        return self._by_lower_name.get(name.lower())

    def writable(self, name: str) -> ObjectDef | None:
        """The object named ``name`` if the Bulk API may write it."""
        found = self.find(name)
        return found if found is not None and found.createable else None

    def soql(self) -> dict[str, ObjectSpec]:
        """The SOQL compiler's catalog of these objects."""
        return self._soql

    def for_user(self, user_id: str) -> "Catalog":
        """The objects as ``user_id`` sees them through field-level security."""
        user = self.users.get(user_id)
        if user is None or not user.restricted:
            return self
        view = self._views.get(user_id)
        if view is None:
            opportunity = _restricted(self.objects[OPPORTUNITY.name], user)
            objects = {**self.objects, OPPORTUNITY.name: opportunity}
            view = self._views[user_id] = Catalog(
                objects, self.users, self.stages, self.sales_processes
            )
        return view


def open_org(db: Database, org: OrgSpec) -> tuple[OrgIdentity, Catalog]:
    """The org's identity and catalog, its tables and setup records installed in ``db``."""
    identity = load_identity(db, org.org_id)
    users = load_users(identity, org.users, db.named_ids)
    catalog = build_catalog(org, users, db.named_ids)
    install_setup_records(db, catalog.objects, org, identity, users)
    return identity, catalog


def build_catalog(org: OrgSpec, users: Users, named_ids: NamedIds) -> Catalog:
    """The objects of the org ``org`` describes; raises ``ValueError`` for an inconsistent file."""
    spec = org.opportunity
    stage_names = spec.picklists.get("StageName") or list(STAGES)
    stages = stage_infos(stage_names)
    record_types = _record_types(spec.record_types, named_ids)
    user_lookup = {"User": reference_converter(USER_KEY_PREFIX, users.__contains__)}
    lookups = {**user_lookup, **_record_type_lookup(record_types)}
    opportunity = replace(
        OPPORTUNITY,
        fields=_opportunity_fields(spec, org.currencies, record_types),
        derive=partial(derive_stages, stages),
        record_types=record_types,
        rules=RecordRules(lookups),
    )
    _check_field_names(opportunity, users.integration)
    account = replace(
        ACCOUNT,
        fields=_with_currency(ACCOUNT, org.currencies, "Account Currency"),
        rules=RecordRules(user_lookup),
    )
    objects = {o.name: o for o in (opportunity, account, *setup_objects(org.currencies))}
    processes = _sales_processes(stage_names, spec, record_types)
    catalog = Catalog(objects, users, stages, processes)
    compiled = [
        compile_validation_rule(opportunity.name, rule, catalog.soql())
        for rule in spec.validation_rules
    ]
    active = tuple(
        c for c, rule in zip(compiled, spec.validation_rules, strict=True) if rule.active
    )
    if not active:
        return catalog
    validated = replace(opportunity, rules=RecordRules(lookups, active))
    return Catalog({**objects, opportunity.name: validated}, users, stages, processes)


def stage_infos(names: list[str]) -> dict[str, StageInfo]:
    """What each stage implies (IsClosed, IsWon, Probability, ForecastCategoryName).

    Salesforce's default stages keep their OpportunityStage values. Another stage whose name
    starts with "Closed Won" is closed and won (100 %, Closed), one starting with "Closed" is
    closed and lost (0 %, Omitted); the other stages are open (Pipeline), their probabilities
    rising evenly from 10 to 90 % in the order the org file lists them.
    """
    infos: dict[str, StageInfo] = {}
    custom_open = [n for n in names if n not in STAGES and not n.lower().startswith("closed")]
    step = 80 / max(1, len(custom_open) - 1)
    for name in names:
        if name in STAGES:
            infos[name] = STAGES[name]
        elif name.lower().startswith("closed won"):
            infos[name] = StageInfo(100, "Closed", True, True)
        elif name.lower().startswith("closed"):
            infos[name] = StageInfo(0, "Omitted", True, False)
        else:
            infos[name] = StageInfo(
                round(10 + step * custom_open.index(name)), "Pipeline", False, False
            )
    return infos


def _opportunity_fields(
    spec: OpportunitySpec, currencies: Currencies | None, record_types: tuple[RecordTypeInfo, ...]
) -> tuple[FieldDef, ...]:
    fields = _with_picklists(_with_currency(OPPORTUNITY, currencies, "Opportunity Currency"), spec)
    default = next((r for r in record_types if r.default), MASTER_RECORD_TYPE)
    if not default.master:
        record_type = FieldDef(
            "RecordTypeId",
            "Record Type ID",
            "reference",
            length=18,
            defaulted_on_create=True,
            reference_to="RecordType",
            relationship_name="RecordType",
            default=default.record_type_id,
        )
        fields = _after(fields, "AccountId", record_type)
    custom = tuple(custom_field(f) for f in spec.custom_fields)
    taken = {f.name.lower() for f in fields}
    clashing = sorted(f.name for f in custom if f.name.lower() in taken)
    if clashing or len({f.name.lower() for f in custom}) != len(custom):
        raise ValueError(f"opportunity.custom_fields: names must be new and unique: {clashing}")
    return (*fields, *custom)


def _after(fields: tuple[FieldDef, ...], name: str, new: FieldDef) -> tuple[FieldDef, ...]:
    position = next(i for i, f in enumerate(fields) if f.name == name) + 1
    return (*fields[:position], new, *fields[position:])


def _with_currency(
    sobject: ObjectDef, currencies: Currencies | None, label: str
) -> tuple[FieldDef, ...]:
    """``CurrencyIsoCode`` in a multi-currency org: a picklist of the active currencies.

    A new record without one takes its creator's default currency, the corporate one (Help
    000004023); an inactive or unknown code is refused as a restricted picklist value
    (the API's exact answer is unconfirmed, facts §8).
    """
    if currencies is None:
        return sobject.fields
    currency = FieldDef(
        "CurrencyIsoCode",
        label,
        "picklist",
        length=3,
        nillable=False,
        defaulted_on_create=True,
        picklist=tuple(currencies.active),
        restricted_picklist=True,
        default=currencies.corporate,
    )
    return _after(sobject.fields, "IsDeleted", currency)


def _with_picklists(fields: tuple[FieldDef, ...], spec: OpportunitySpec) -> tuple[FieldDef, ...]:
    picklists = {f.name for f in fields if f.type == "picklist"}
    unknown = sorted(set(spec.picklists) - picklists)
    if unknown:
        raise ValueError(f"opportunity.picklists: not picklists of Opportunity: {unknown}")
    return tuple(
        replace(f, picklist=tuple(spec.picklists[f.name])) if f.name in spec.picklists else f
        for f in fields
    )


def custom_field(spec: CustomFieldSpec) -> FieldDef:
    """The field an org file's custom field describes (Salesforce's defaults where it is silent)."""
    label = spec.label or spec.name.removesuffix("__c").replace("_", " ")
    common = FieldDef(
        spec.name,
        label,
        spec.type,
        nillable=not spec.required,
        external_id=spec.external_id,
        unique=spec.unique,
        id_lookup=spec.external_id,
    )
    if spec.type in ("string", "textarea", "picklist"):
        default_length = 32_768 if spec.type == "textarea" else 255
        return replace(
            common,
            length=spec.length or default_length,
            picklist=tuple(spec.values or ()),
            restricted_picklist=spec.restricted,
        )
    if spec.type in ("double", "currency", "percent", "int"):
        default_scale = 2 if spec.type == "currency" else 0
        scale = 0 if spec.type == "int" else spec.scale
        return replace(
            common,
            precision=spec.precision or (9 if spec.type == "int" else 18),
            scale=default_scale if scale is None else scale,
        )
    if spec.type == "boolean":
        # A checkbox is never null: false unless set (describe: defaultedOnCreate, not nillable).
        return replace(common, nillable=False, defaulted_on_create=True, default="0")
    return common


def _record_types(specs: list[RecordTypeSpec], named_ids: NamedIds) -> tuple[RecordTypeInfo, ...]:
    """The record types, then the master, which is the default only when there are none.

    With record types the master is not available to users (a profile's record types replace
    it); the first active record type is the profile's default.
    """
    if not specs:
        return (MASTER_RECORD_TYPE,)
    names = [s.developer_name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"opportunity.record_types: developer names must be unique: {names}")
    ids = named_ids(RECORD_TYPE_KEY_PREFIX, [f"Opportunity.{n}" for n in names])
    default = next((s for s in specs if s.active), None)
    infos = tuple(
        RecordTypeInfo(
            ids[f"Opportunity.{s.developer_name}"],
            s.developer_name,
            s.label or s.developer_name.replace("_", " "),
            default=s is default,
            available=s.active,
            active=s.active,
        )
        for s in specs
    )
    return (*infos, replace(MASTER_RECORD_TYPE, default=default is None, available=False))


def _record_type_lookup(record_types: tuple[RecordTypeInfo, ...]) -> dict[str, LookupConverter]:
    """RecordTypeId may name an active record type of the object (not the master)."""
    usable = frozenset(r.record_type_id for r in record_types if r.active and not r.master)
    if not usable:
        return {}

    def refuse(field: FieldDef, value: str) -> str:
        return row_error(
            "INVALID_CROSS_REFERENCE_KEY",
            f"{field.label}: this ID value isn't valid for the user: {value}",
            [field.name],
        )

    return {"RecordType": reference_converter(RECORD_TYPE_KEY_PREFIX, usable.__contains__, refuse)}


def _sales_processes(
    stage_names: list[str], spec: OpportunitySpec, record_types: tuple[RecordTypeInfo, ...]
) -> dict[str, tuple[str, ...]]:
    by_name = {s.developer_name: tuple(s.stages) for s in spec.record_types}
    processes = {MASTER_RECORD_TYPE_ID: tuple(stage_names)}
    processes.update(
        (r.record_type_id, by_name[r.developer_name]) for r in record_types if not r.master
    )
    return processes


def _check_field_names(opportunity: ObjectDef, user: SandboxUser) -> None:
    named = user.hidden_fields | user.read_only_fields
    unknown = sorted(n for n in named if opportunity.field(n) is None)
    if unknown:
        raise ValueError(f"users.integration: not fields of Opportunity: {unknown}")


def _restricted(sobject: ObjectDef, user: SandboxUser) -> ObjectDef:
    """``sobject`` without the fields ``user`` may not see, and with those it may only read."""
    hidden = {n.lower() for n in user.hidden_fields}
    read_only = {n.lower() for n in user.read_only_fields}
    fields = tuple(
        replace(f, createable=False, updateable=False) if f.name.lower() in read_only else f
        for f in sobject.fields
        if f.name.lower() not in hidden
    )
    return replace(sobject, fields=fields)
