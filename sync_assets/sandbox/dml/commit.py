"""Phase two of a batch's DML: matching keys, deciding and writing rows in the write transaction."""

import json
import marshal
import sqlite3
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sync_assets.sandbox.convert import row_error
from sync_assets.sandbox.dml.prepare import JobSpec, PreparedBatch
from sync_assets.sandbox.dml.rules import RecordRules
from sync_assets.sandbox.ids import mint_ids, to_id18
from sync_assets.sandbox.objects import SET_NULL, ObjectDef

_AUDIT_DATES = ("CreatedDate", "LastModifiedDate", "SystemModstamp")
_AUDIT_USERS = ("CreatedById", "LastModifiedById")


@dataclass
class BatchOutcome:
    """Per-row results of a batch, compact enough to be stored with it (``to_bytes``).

    The result CSV rows are built from it and the uploaded batch outside the write transaction.
    """

    record_ids: list[str]
    errors: list[str | None]
    created: list[bool]

    def to_bytes(self) -> bytes:
        return marshal.dumps((self.record_ids, self.errors, self.created))

    @classmethod
    def from_bytes(cls, data: bytes) -> "BatchOutcome":
        record_ids, errors, created = marshal.loads(data)
        return cls(record_ids, errors, created)

    @property
    def failed(self) -> int:
        return len(self.errors) - self.errors.count(None)


def _pick(values: list[Any], rows: list[int]) -> list[Any]:
    """``[values[i] for i in rows]`` at C speed."""
    if len(rows) == 1:
        return [values[rows[0]]]
    return list(itemgetter(*rows)(values))


class _Plan:
    """Per-row decisions of one batch inside the write transaction."""

    def __init__(self) -> None:
        self.inserts: list[int] = []
        # row -> target id, or the row index of an insert earlier in this batch (same key)
        self.updates: dict[int, str | int] = {}
        self.deletes: dict[int, str] = {}
        self.errors: dict[int, str] = {}
        self.ids: dict[int, str] = {}


def _json_lookup(conn: sqlite3.Connection, sql: str, values: list[str]) -> dict[str, Any]:
    """Run a lookup that aggregates its matches into one JSON object.

    One row comes back instead of thousands: the whole lookup runs in SQLite without taking the
    GIL back per row.
    """
    if not values:
        return {}
    found = conn.execute(sql, (json.dumps(values),)).fetchone()[0]
    return json.loads(found) if found else {}


def _live_ids_by(
    conn: sqlite3.Connection, sobject: ObjectDef, field_name: str, values: list[str]
) -> dict[str, str]:
    return _json_lookup(
        conn,
        f'SELECT json_group_object("{field_name}", "Id") FROM "{sobject.name}" '
        f'WHERE "{field_name}" IN (SELECT value FROM json_each(?)) AND "IsDeleted" = 0',
        values,
    )


def _deleted_flags(conn: sqlite3.Connection, sobject: ObjectDef, ids: list[str]) -> dict[str, int]:
    return _json_lookup(
        conn,
        f'SELECT json_group_object("Id", "IsDeleted") FROM "{sobject.name}" '
        'WHERE "Id" IN (SELECT value FROM json_each(?))',
        ids,
    )


def _missing_required(
    sobject: ObjectDef, provided: dict[str, list[Any]], rows: list[int], on_insert: bool
) -> dict[int, str]:
    """``REQUIRED_FIELD_MISSING`` for rows that leave a required field empty (insert) or null it."""
    missing: dict[int, list[str]] = {}
    for f in sobject.fields:
        if f.nillable or not (f.createable if on_insert else f.updateable):
            continue
        if on_insert and f.defaulted_on_create:
            continue
        values = provided.get(f.name)
        if values is None:
            if on_insert:
                for i in rows:
                    missing.setdefault(i, []).append(f.name)
            continue
        # C-speed screening: most batches have no empty required value at all
        if SET_NULL not in values and (not on_insert or None not in values):
            continue
        for i in rows:
            value = values[i]
            if value == SET_NULL or (on_insert and value is None):
                missing.setdefault(i, []).append(f.name)
    return {
        i: row_error(
            "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(names)}]", names
        )
        for i, names in missing.items()
    }


def _plan_rows(
    conn: sqlite3.Connection, spec: JobSpec, prepared: PreparedBatch, active: list[int]
) -> _Plan:
    plan = _Plan()
    sobject, keys = spec.sobject, prepared.keys
    if spec.operation == "insert":
        plan.errors = _missing_required(sobject, prepared.provided, active, on_insert=True)
        plan.inserts = [i for i in active if i not in plan.errors]
        return plan
    if spec.key_field != "Id":
        key_name = str(spec.key_field)
        for i in active:
            if keys[i] is None or keys[i] == SET_NULL:
                plan.errors[i] = row_error("MISSING_ARGUMENT", f"{key_name} not specified")
        wanted = [k for i in active if i not in plan.errors and (k := keys[i]) is not None]
        existing: dict[str, str | int] = dict(_live_ids_by(conn, sobject, key_name, wanted))
        cannot_insert = _missing_required(sobject, prepared.provided, active, on_insert=True)
        candidates = [i for i in active if i not in plan.errors]
        if len(set(wanted)) == len(wanted):
            # No key repeats in this batch: every row is independent of the others.
            targets = [existing.get(str(keys[i])) for i in candidates]
            plan.updates = {i: t for i, t in zip(candidates, targets, strict=True) if t is not None}
            plan.errors.update(
                (i, cannot_insert[i])
                for i in candidates
                if i in cannot_insert and i not in plan.updates
            )
            plan.inserts = [
                i
                for i, t in zip(candidates, targets, strict=True)
                if t is None and i not in cannot_insert
            ]
            return plan
        for i in active:
            if i in plan.errors:
                continue
            key = str(keys[i])
            target = existing.get(key)
            if target is not None:
                plan.updates[i] = target
            elif i in cannot_insert:
                plan.errors[i] = cannot_insert[i]
            else:
                plan.inserts.append(i)
                existing[key] = i
        return plan
    given = [k for i in active if (k := keys[i]) is not None]
    flags = _deleted_flags(conn, sobject, given)
    for i in active:
        key = keys[i]
        if key is None:
            if spec.operation == "upsert":
                plan.inserts.append(i)
            elif spec.operation == "update":
                plan.errors[i] = row_error("MISSING_ARGUMENT", "Id not specified in an update call")
            else:
                plan.errors[i] = row_error("MISSING_ARGUMENT", "Id not specified in a delete call")
        elif key not in flags:
            plan.errors[i] = row_error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        elif flags[key] and spec.operation != "hardDelete":
            plan.errors[i] = row_error("ENTITY_IS_DELETED", "entity is deleted")
        elif spec.operation in ("delete", "hardDelete"):
            plan.deletes[i] = key
        else:
            plan.updates[i] = key
    if spec.operation == "upsert":
        plan.errors.update(
            _missing_required(sobject, prepared.provided, plan.inserts, on_insert=True)
        )
        plan.inserts = [i for i in plan.inserts if i not in plan.errors]
    return plan


def _check_unique_fields(
    conn: sqlite3.Connection, spec: JobSpec, prepared: PreparedBatch, plan: _Plan
) -> None:
    """``DUPLICATE_VALUE`` for rows that would give a unique field a value another record holds."""
    for f in spec.sobject.fields:
        values = prepared.provided.get(f.name)
        if not f.unique or values is None or f.name == spec.key_field:
            continue
        writers = [i for i in (*plan.inserts, *plan.updates) if values[i] not in (None, SET_NULL)]
        owners: dict[str, str] = _live_ids_by(
            conn, spec.sobject, f.name, [values[i] for i in writers]
        )
        rejected: set[int] = set()
        for i in writers:
            owner = owners.get(values[i])
            if owner is not None and owner != plan.ids[i]:
                plan.errors[i] = row_error(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {f.name} duplicates value on record with id: {owner}",
                )
                rejected.add(i)
            else:
                owners[values[i]] = plan.ids[i]
        plan.inserts = [i for i in plan.inserts if i not in rejected]
        plan.updates = {i: t for i, t in plan.updates.items() if i not in rejected}


def _literal(value: str) -> str:
    """A SQL string literal, for values that are the same in every row of a statement.

    Written into the statement, they spare ``executemany`` binding (and converting) them per row.
    """
    return "'" + value.replace("'", "''") + "'"


def _insert(
    conn: sqlite3.Connection,
    sobject: ObjectDef,
    rows: list[int],
    ids: dict[int, str],
    values_by_field: dict[str, list[Any]],
    user_id: str,
    now: str,
) -> None:
    if not rows:
        return
    constants = {"IsDeleted": "0"}
    constants.update(dict.fromkeys(_AUDIT_DATES, _literal(now)))
    constants.update(dict.fromkeys(_AUDIT_USERS, _literal(user_id)))
    names: list[str] = []
    expressions: list[str] = []
    columns: list[list[Any]] = []
    for f in sobject.fields:
        names.append(f'"{f.name}"')
        default = user_id if f.name == "OwnerId" else f.default
        source = values_by_field.get(f.name)
        if f.name == "Id":
            columns.append([ids[i] for i in rows])
        elif f.name in constants:
            expressions.append(constants[f.name])
            continue
        elif source is None:
            expressions.append("NULL" if default is None else _literal(default))
            continue
        else:
            picked = _pick(source, rows)
            if default is not None or SET_NULL in picked:
                picked = [default if v is None or v == SET_NULL else v for v in picked]
            columns.append(picked)
        expressions.append("?")
    conn.executemany(
        f'INSERT INTO "{sobject.name}" ({", ".join(names)}) VALUES ({", ".join(expressions)})',
        zip(*columns, strict=True),
    )


def _update(
    conn: sqlite3.Connection,
    sobject: ObjectDef,
    targets: dict[int, str],
    values_by_field: dict[str, list[Any]],
    derived: set[str],
    key_field: str | None,
    user_id: str,
    now: str,
) -> None:
    if not targets:
        return
    rows = list(targets)
    # The matched key is unchanged by definition; leaving it out spares an index update per row.
    fields = [
        f
        for f in sobject.fields
        if f.name in values_by_field and (f.updateable or f.name in derived) and f.name != key_field
    ]
    columns = [_pick(values_by_field[f.name], rows) for f in fields]
    # A column left empty in every row changes nothing: no need to bind or assign it.
    kept = [(f, c) for f, c in zip(fields, columns, strict=True) if c.count(None) < len(c)]
    # An empty cell (None) leaves the field as it is; SET_NULL clears it.
    assignments = [
        f'"{f.name}" = iif(?{n} IS NULL, "{f.name}", nullif(?{n}, {_literal(SET_NULL)}))'
        for n, (f, _) in enumerate(kept, start=1)
    ]
    assignments += [
        f'"LastModifiedDate" = {_literal(now)}',
        f'"SystemModstamp" = {_literal(now)}',
        f'"LastModifiedById" = {_literal(user_id)}',
    ]
    bound = [c for _, c in kept] + [[targets[i] for i in rows]]
    conn.executemany(
        f'UPDATE "{sobject.name}" SET {", ".join(assignments)} WHERE "Id" = ?{len(kept) + 1}',
        zip(*bound, strict=True),
    )


def _delete(
    conn: sqlite3.Connection,
    sobject: ObjectDef,
    targets: dict[int, str],
    hard: bool,
    user_id: str,
    now: str,
) -> None:
    if not targets:
        return
    if hard:
        conn.executemany(
            f'DELETE FROM "{sobject.name}" WHERE "Id" = ?', [(t,) for t in targets.values()]
        )
        return
    conn.executemany(
        f'UPDATE "{sobject.name}" SET "IsDeleted" = 1, "LastModifiedDate" = ?, '
        '"SystemModstamp" = ?, "LastModifiedById" = ? WHERE "Id" = ?',
        [(now, now, user_id, t) for t in targets.values()],
    )


def commit_batch(
    conn: sqlite3.Connection,
    spec: JobSpec,
    prepared: PreparedBatch,
    first_id_number: int,
    user_id: str,
    now: str,
) -> BatchOutcome:
    """Apply the rows that passed validation; run inside the write transaction.

    ``first_id_number`` is the counter value from which new record ids are minted (the caller
    reserves ``len(rows)`` numbers).
    """
    sobject = spec.sobject
    errors = prepared.errors
    active = [i for i, e in enumerate(errors) if e is None]
    plan = _plan_rows(conn, spec, prepared, active)
    if spec.operation in ("update", "upsert"):
        plan.errors.update(
            _missing_required(sobject, prepared.provided, list(plan.updates), on_insert=False)
        )
        plan.updates = {i: t for i, t in plan.updates.items() if i not in plan.errors}
    new_ids = mint_ids(sobject.key_prefix, first_id_number, len(plan.inserts))
    plan.ids = dict(zip(plan.inserts, new_ids, strict=True))
    for i, target in plan.updates.items():
        plan.ids[i] = plan.ids[target] if isinstance(target, int) else target
    _check_unique_fields(conn, spec, prepared, plan)
    rules = sobject.rules
    if rules is None or not rules.validation_rules:
        _write(conn, spec, prepared, plan, user_id, now)
    else:
        _write_valid(conn, spec, prepared, plan, rules, user_id, now)
    return _outcome(spec, prepared, plan)


def _write(
    conn: sqlite3.Connection,
    spec: JobSpec,
    prepared: PreparedBatch,
    plan: _Plan,
    user_id: str,
    now: str,
) -> None:
    sobject = spec.sobject
    derived = prepared.derived
    values_by_field = {**prepared.provided, **derived}
    _insert(conn, sobject, plan.inserts, plan.ids, values_by_field, user_id, now)
    targets = {i: plan.ids[i] for i in plan.updates}
    _update(conn, sobject, targets, values_by_field, set(derived), spec.key_field, user_id, now)
    _delete(conn, sobject, plan.deletes, spec.operation == "hardDelete", user_id, now)


def _write_valid(
    conn: sqlite3.Connection,
    spec: JobSpec,
    prepared: PreparedBatch,
    plan: _Plan,
    rules: RecordRules,
    user_id: str,
    now: str,
) -> None:
    """Write, check the validation rules on the records as written, and rewrite without breakers.

    Rows that break a rule fail; the batch is taken back to before it was written and written
    again without them. A rule sees the whole new record (unchanged, new and derived values
    alike), which SQLite computes anyway by writing, so no second model of an update is needed.
    A batch that breaks no rule is written once. Deleted records are not validated.
    """
    conn.execute("SAVEPOINT validation")
    _write(conn, spec, prepared, plan, user_id, now)
    written = [*plan.inserts, *plan.updates]
    broken = rules.broken(conn, list({plan.ids[i] for i in written}))
    if broken:
        conn.execute("ROLLBACK TO validation")
        failed = {i for i in written if plan.ids[i] in broken}
        plan.errors.update((i, broken[plan.ids[i]]) for i in failed)
        plan.inserts = [i for i in plan.inserts if i not in failed]
        plan.updates = {i: t for i, t in plan.updates.items() if i not in failed}
        _write(conn, spec, prepared, plan, user_id, now)
    conn.execute("RELEASE validation")


def _outcome(spec: JobSpec, prepared: PreparedBatch, plan: _Plan) -> BatchOutcome:
    count = prepared.count
    errors = prepared.errors
    if plan.errors:
        errors = [e or plan.errors.get(i) for i, e in enumerate(errors)]
    ids = {**plan.ids, **plan.deletes}
    record_ids = [
        ids[i] if e is None else _failed_row_id(spec, prepared, i) for i, e in enumerate(errors)
    ]
    created = [False] * count
    for i in plan.inserts:
        created[i] = True
    return BatchOutcome(record_ids, errors, created)


def _failed_row_id(spec: JobSpec, prepared: PreparedBatch, i: int) -> str:
    """``sf__Id`` of a failed row: the Id it named (update/delete), empty for inserts."""
    key = prepared.keys[i]
    if spec.key_field != "Id" or key is None:
        return ""
    return key if to_id18(key) is not None else ""
