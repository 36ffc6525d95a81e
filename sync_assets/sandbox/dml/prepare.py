"""Phase one of a batch's DML: validating and converting its rows, outside the write transaction."""

import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from sync_assets.sandbox.convert import convert_column, reference_converter, row_error
from sync_assets.sandbox.dml.rules import LookupConverter
from sync_assets.sandbox.ids import to_id18
from sync_assets.sandbox.objects import ACCOUNT, SET_NULL, USER_KEY_PREFIX, FieldDef, ObjectDef
from sync_assets.sandbox.upload import Column

DML_CHUNK = 200


@dataclass(frozen=True)
class JobSpec:
    """What a batch needs to know about its job."""

    sobject: ObjectDef
    operation: str
    external_id_field: str | None

    @property
    def key_field(self) -> str | None:
        """The column that identifies the target record: ``Id`` or the upsert's external id."""
        if self.operation == "insert":
            return None
        if self.operation == "upsert":
            return self.external_id_field
        return "Id"


class ParentIndex:
    """External id → Id of live Accounts: resolves relationship columns and names lock keys."""

    def __init__(self) -> None:
        self._by_key: dict[str, str] = {}
        self._ids: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def load(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(
            'SELECT "External_Id__c", "Id" FROM "Account" WHERE "IsDeleted" = 0'
        ).fetchall()
        by_key = {str(r[0]): str(r[1]) for r in rows if r[0] is not None}
        ids = frozenset(str(r[1]) for r in rows)
        with self._lock:
            self._by_key, self._ids = by_key, ids

    def get(self, key: str) -> str | None:
        return self._by_key.get(key)

    def known(self, account_id: str) -> bool:
        return account_id in self._ids


@dataclass
class PreparedBatch:
    """A batch after validation: per-row first error, stored values per field, key and parent ids."""

    count: int
    errors: list[str | None]
    provided: dict[str, list[Any]]
    keys: list[str | None]
    parents: list[str | None]
    derived: dict[str, list[Any]]

    def head(self, rows: int) -> "PreparedBatch":
        """The first ``rows`` rows: the part of a batch an attempt got done before its time ran out."""
        return PreparedBatch(
            count=rows,
            errors=self.errors[:rows],
            provided={name: values[:rows] for name, values in self.provided.items()},
            keys=self.keys[:rows],
            parents=self.parents[:rows],
            derived={name: values[:rows] for name, values in self.derived.items()},
        )


def _first_errors(errors: list[str | None], new: dict[int, str]) -> None:
    for i, message in new.items():
        if errors[i] is None:
            errors[i] = message


def _not_writable(name: str) -> str:
    return row_error(
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        f"Unable to create/update fields: {name}. Please check the security settings of this "
        "field and verify that it is read/write for your profile or permission set.",
        [name],
    )


def _relationship_values(
    column: Column, values: Sequence[str], parents: ParentIndex
) -> tuple[list[Any], dict[int, str]]:
    assert column.via is not None
    resolved: list[Any] = [
        None if not v else SET_NULL if v == SET_NULL else parents.get(v) for v in values
    ]
    parent_object = column.field.reference_to
    errors = {
        i: row_error(
            "INVALID_FIELD",
            f"Foreign key external ID: {values[i]} not found for field {column.via.name} "
            f"in entity {parent_object}",
        )
        for i, r in enumerate(resolved)
        if r is None and values[i]
    }
    return resolved, errors


def _key_values(
    spec: JobSpec, columns: list[Column], data: list[list[str]], count: int
) -> list[Any]:
    key_field = spec.key_field
    column = next((c for c in columns if c.via is None and c.field.name == key_field), None)
    if column is None:
        return [None] * count
    return [v or None for v in data[column.index]]


def _duplicate_key_errors(spec: JobSpec, keys: list[str | None]) -> dict[int, str]:
    """Rows sharing a key inside one 200-row DML chunk all fail; across chunks the last one wins."""
    errors: dict[int, str] = {}
    for start in range(0, len(keys), DML_CHUNK):
        chunk = keys[start : start + DML_CHUNK]
        repeated = {k for k, n in Counter(chunk).items() if n > 1 and k is not None}
        for offset, key in enumerate(chunk):
            if key in repeated:
                if spec.key_field == "Id":
                    errors[start + offset] = row_error(
                        "DUPLICATE_VALUE", f"Duplicate id in list: {key}"
                    )
                else:
                    errors[start + offset] = row_error(
                        "DUPLICATE_VALUE",
                        f"Duplicate external id specified: {key}",
                        [str(spec.key_field)],
                    )
    return errors


def prepare_batch(
    spec: JobSpec,
    columns: list[Column],
    frame: pl.DataFrame,
    parents: ParentIndex,
    user_id: str,
) -> PreparedBatch:
    """Validate and convert a batch column by column; nothing is written."""
    count = frame.height
    data = [series.to_list() for series in frame.get_columns()]
    errors: list[str | None] = [None] * count
    provided: dict[str, list[Any]] = {}
    is_delete = spec.operation in ("delete", "hardDelete")
    for column in columns:
        values = data[column.index]
        target = column.field
        if target.name == "Id":
            if spec.operation == "insert":
                _first_errors(
                    errors,
                    {
                        i: row_error(
                            "INVALID_FIELD_FOR_INSERT_UPDATE",
                            "cannot specify Id in an insert call",
                            ["Id"],
                        )
                        for i, v in enumerate(values)
                        if v
                    },
                )
            continue
        if is_delete:
            continue
        if not target.writable:
            _first_errors(
                errors, {i: _not_writable(target.name) for i, v in enumerate(values) if v}
            )
            continue
        if column.via is not None:
            converted, column_errors = _relationship_values(column, values, parents)
        elif target.type == "reference":
            converted, column_errors = _lookup(spec.sobject, target, parents, user_id)(
                target, values
            )
        else:
            converted, column_errors = convert_column(target, values)
        provided[target.name] = converted
        _first_errors(errors, column_errors)
    keys = _key_values(spec, columns, data, count)
    if spec.key_field == "Id":
        keys, id_errors = _normalised_ids(spec.sobject, keys)
        _first_errors(errors, id_errors)
    _first_errors(errors, _duplicate_key_errors(spec, keys))
    account_ids = provided.get("AccountId") or [None] * count
    parent_ids = [a if a is not None and a != SET_NULL else None for a in account_ids]
    return PreparedBatch(
        count=count,
        errors=errors,
        provided=provided,
        keys=keys,
        parents=parent_ids,
        derived=spec.sobject.derive(provided),
    )


def _lookup(
    sobject: ObjectDef, target: FieldDef, parents: ParentIndex, user_id: str
) -> LookupConverter:
    """The converter of a lookup column: Accounts by the parent index, others by the org's rules.

    Without an org's rules, a User lookup may name only the writing user.
    """
    if target.reference_to == ACCOUNT.name:
        return reference_converter(ACCOUNT.key_prefix, parents.known)
    rules = sobject.rules
    org_lookup = rules.lookups.get(str(target.reference_to)) if rules is not None else None
    if org_lookup is not None:
        return org_lookup
    return reference_converter(USER_KEY_PREFIX, lambda value: value == user_id)


def _normalised_ids(
    sobject: ObjectDef, keys: list[str | None]
) -> tuple[list[str | None], dict[int, str]]:
    normalised: list[str | None] = []
    errors: dict[int, str] = {}
    for i, key in enumerate(keys):
        if key is None:
            normalised.append(None)
            continue
        id18 = to_id18(key)
        if id18 is None or not id18.startswith(sobject.key_prefix):
            errors[i] = row_error(
                "MALFORMED_ID", f"{sobject.label} ID: id value of incorrect type: {key}", ["Id"]
            )
            normalised.append(key)
        else:
            normalised.append(id18)
    return normalised, errors
