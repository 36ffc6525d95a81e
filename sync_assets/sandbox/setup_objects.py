"""The setup objects SOQL reads (User, Organization, RecordType, CurrencyType) and their records.

Their rows are written again from the org file and the users at every start, into tables the
SOQL compiler reads like any other, so ``SELECT Id, Username FROM User`` or
``Owner.Name`` on an Opportunity work as on a real org. The API never writes them here.
"""

import sqlite3
from typing import Any

from sync_assets.sandbox.auth import OrgIdentity
from sync_assets.sandbox.jobs import sf_timestamp
from sync_assets.sandbox.objects import (
    ORG_KEY_PREFIX,
    USER_KEY_PREFIX,
    FieldDef,
    FieldType,
    ObjectDef,
    RecordTypeInfo,
    audit_fields,
)
from sync_assets.sandbox.org import Currencies, OrgSpec
from sync_assets.sandbox.store import Database, ensure_table
from sync_assets.sandbox.users import SandboxUser, Users

RECORD_TYPE_KEY_PREFIX = "012"
CURRENCY_TYPE_KEY_PREFIX = "01L"
# Currencies without minor units (CurrencyType.DecimalPlaces 0, as the object reference's JPY).
_NO_DECIMALS = frozenset({"JPY", "KRW"})


def _read(name: str, label: str, type: FieldType, **details: Any) -> FieldDef:
    return FieldDef(name, label, type, createable=False, updateable=False, **details)


def _object(name: str, label: str, key_prefix: str, *fields: FieldDef) -> ObjectDef:
    return ObjectDef(
        name=name,
        label=label,
        label_plural=label + "s",
        key_prefix=key_prefix,
        fields=(
            _read("Id", f"{label} ID", "id", length=18, nillable=False, id_lookup=True),
            *fields,
            *audit_fields(),
        ),
        createable=False,
    )


def _picklist(name: str, label: str, length: int = 40) -> FieldDef:
    return _read(name, label, "picklist", length=length)


_USER_FIELDS = (
    _read("Username", "Username", "string", length=80, nillable=False, id_lookup=True),
    _read("LastName", "Last Name", "string", length=80, nillable=False),
    _read("FirstName", "First Name", "string", length=40),
    _read("Name", "Full Name", "string", length=121, nillable=False),
    _read("Email", "Email", "string", length=128, nillable=False),
    _read("Alias", "Alias", "string", length=8, nillable=False),
    _read("IsActive", "Active", "boolean", nillable=False),
    _picklist("UserType", "User Type"),
    _picklist("TimeZoneSidKey", "Time Zone"),
    _picklist("LocaleSidKey", "Locale"),
    _picklist("LanguageLocaleKey", "Language"),
)
ORGANIZATION = _object(
    "Organization",
    "Organization",
    ORG_KEY_PREFIX,
    _read("Name", "Name", "string", length=80, nillable=False),
    _picklist("OrganizationType", "Edition"),
    _read("InstanceName", "Instance Name", "string", length=5),
    _read("IsSandbox", "Is Sandbox", "boolean", nillable=False),
    _picklist("DefaultCurrencyIsoCode", "Locale Currency", 3),
    _picklist("DefaultLocaleSidKey", "Default Locale"),
    _picklist("LanguageLocaleKey", "Default Language"),
    _picklist("TimeZoneSidKey", "Default Time Zone"),
    _read("NamespacePrefix", "Namespace Prefix", "string", length=15),
)
RECORD_TYPE = _object(
    "RecordType",
    "Record Type",
    RECORD_TYPE_KEY_PREFIX,
    _read("Name", "Name", "string", length=80, nillable=False),
    _read("DeveloperName", "Record Type Name", "string", length=80, nillable=False),
    _read("NamespacePrefix", "Namespace Prefix", "string", length=15),
    _read("Description", "Description", "string", length=255),
    _picklist("SobjectType", "SObject Type Name"),
    _read("IsActive", "Active", "boolean", nillable=False),
)
CURRENCY_TYPE = _object(
    "CurrencyType",
    "Currency Type",
    CURRENCY_TYPE_KEY_PREFIX,
    _picklist("IsoCode", "Currency ISO Code", 3),
    _read("ConversionRate", "Conversion Rate", "double", precision=18, scale=6, nillable=False),
    _read("DecimalPlaces", "Decimal Places", "int", precision=9, nillable=False),
    _read("IsActive", "Active", "boolean", nillable=False),
    _read("IsCorporate", "Corporate Currency", "boolean", nillable=False),
)


def setup_objects(currencies: Currencies | None) -> tuple[ObjectDef, ...]:
    """The setup objects of an org; CurrencyType and the users' currency only in multi-currency."""
    user_fields = _USER_FIELDS
    if currencies is not None:
        currency = _picklist("DefaultCurrencyIsoCode", "User Currency", 3)
        user_fields = (*user_fields, currency)
    objects = (_object("User", "User", USER_KEY_PREFIX, *user_fields), ORGANIZATION, RECORD_TYPE)
    return objects if currencies is None else (*objects, CURRENCY_TYPE)


def install_setup_records(
    db: Database, objects: dict[str, ObjectDef], org: OrgSpec, identity: OrgIdentity, users: Users
) -> None:
    """(Re)write the setup objects' tables and rows, and add the org's columns to the others."""
    now = sf_timestamp()
    audit = {
        "CreatedDate": now,
        "CreatedById": identity.user_id,
        "LastModifiedDate": now,
        "LastModifiedById": identity.user_id,
        "SystemModstamp": now,
    }
    currencies = org.currencies
    corporate = currencies.corporate if currencies is not None else "USD"
    rows = {
        "User": [_user(u, corporate) for u in users.all],
        "Organization": [_organization(org, identity, corporate)],
        "RecordType": _record_types(objects["Opportunity"].record_types),
        "CurrencyType": [] if currencies is None else _currency_types(db, currencies),
    }
    with db.write() as conn:
        for sobject in objects.values():
            ensure_table(conn, sobject)
            if sobject.name in rows:
                _replace_rows(conn, sobject, [{**r, **audit} for r in rows[sobject.name]])


def _replace_rows(conn: sqlite3.Connection, sobject: ObjectDef, rows: list[dict[str, Any]]) -> None:
    names = [f.name for f in sobject.fields]
    columns = ", ".join(f'"{n}"' for n in names)
    conn.execute(f'DELETE FROM "{sobject.name}"')
    conn.executemany(
        f'INSERT INTO "{sobject.name}" ({columns}) VALUES ({", ".join("?" * len(names))})',
        [[row.get(n) for n in names] for row in rows],
    )


def _user(user: SandboxUser, currency: str) -> dict[str, Any]:
    return {
        "Id": user.id,
        "Username": user.username,
        "LastName": user.last_name,
        "FirstName": user.first_name,
        "Name": user.name,
        "Email": user.username,
        "Alias": (user.first_name or "")[:1] + user.last_name[:4],
        "IsActive": 1,
        "UserType": "Standard",
        "TimeZoneSidKey": "GMT",
        "LocaleSidKey": "en_US",
        "LanguageLocaleKey": "en_US",
        "DefaultCurrencyIsoCode": currency,
    }


def _organization(org: OrgSpec, identity: OrgIdentity, corporate: str) -> dict[str, Any]:
    return {
        "Id": identity.org_id,
        "Name": org.name,
        "OrganizationType": "Enterprise Edition",
        "InstanceName": "SX0",
        # The sandbox plays a production org.
        "IsSandbox": 0,
        "DefaultCurrencyIsoCode": corporate,
        "DefaultLocaleSidKey": "en_US",
        "LanguageLocaleKey": "en_US",
        "TimeZoneSidKey": "GMT",
    }


def _record_types(infos: tuple[RecordTypeInfo, ...]) -> list[dict[str, Any]]:
    return [
        {
            "Id": r.record_type_id,
            "Name": r.name,
            "DeveloperName": r.developer_name,
            "SobjectType": "Opportunity",
            "IsActive": int(r.active),
        }
        for r in infos
        if not r.master
    ]


def _currency_types(db: Database, currencies: Currencies) -> list[dict[str, Any]]:
    codes = [*currencies.active, *currencies.inactive]
    ids = db.named_ids(CURRENCY_TYPE_KEY_PREFIX, codes)
    return [
        {
            "Id": ids[code],
            "IsoCode": code,
            "ConversionRate": currencies.rates.get(code, 1.0),
            "DecimalPlaces": 0 if code in _NO_DECIMALS else 2,
            "IsActive": int(code in currencies.active),
            "IsCorporate": int(code == currencies.corporate),
        }
        for code in codes
    ]
