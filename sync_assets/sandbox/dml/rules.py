"""What an org adds to the DML of an object: the ids its lookups may name and its validation rules.

Validation rules are SOQL WHERE conditions compiled once by the sandbox's SOQL compiler. They are
checked set-based, one query per rule and batch, on the records as written inside the batch's
transaction: as on a real org, a rule sees the whole record being saved, the values a row left
unchanged as much as those it set, cleared or had derived.
"""

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync_assets.sandbox.convert import row_error
from sync_assets.sandbox.objects import FieldDef
from sync_assets.sandbox.org import ValidationRuleSpec
from sync_assets.sandbox.soql.compiler import ObjectSpec, compile_soql
from sync_assets.sandbox.soql.errors import SoqlError

# A lookup's converter: stored values and row errors of one column (convert.reference_converter).
LookupConverter = Callable[[FieldDef, Sequence[str]], tuple[list[Any], dict[int, str]]]


@dataclass(frozen=True)
class ValidationRule:
    """An active rule as a query: which of the given record ids have values that break it."""

    name: str
    sql: str
    params: tuple[Any, ...]
    error: str

    def breakers(self, conn: sqlite3.Connection, ids: list[str]) -> list[str]:
        rows = conn.execute(self.sql, (*self.params, json.dumps(ids)))
        return [str(r[0]) for r in rows]


@dataclass(frozen=True)
class RecordRules:
    """The org's rules for writes of one object.

    ``lookups`` maps a lookup's target object (``User``, ``RecordType``) to the converter that
    checks the ids a row names.
    """

    lookups: dict[str, LookupConverter] = field(default_factory=dict)
    validation_rules: tuple[ValidationRule, ...] = ()

    def broken(self, conn: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
        """Record id → the error of the first rule (in the org file's order) its values break."""
        errors: dict[str, str] = {}
        if not ids:
            return errors
        for rule in self.validation_rules:
            for record_id in rule.breakers(conn, ids):
                errors.setdefault(record_id, rule.error)
        return errors


def compile_validation_rule(
    object_name: str, rule: ValidationRuleSpec, catalog: dict[str, ObjectSpec]
) -> ValidationRule:
    """Compile ``rule.when`` with the SOQL compiler; a bad condition names the rule.

    The error is ``FIELD_CUSTOM_VALIDATION_EXCEPTION:<message>:<field> --`` when the rule shows
    its message at a field, else ``…:<message>:--`` (facts §2; NPSP #6780).
    """
    try:
        compiled = compile_soql(f"SELECT Id FROM {object_name} WHERE {rule.when}", catalog)
    except SoqlError as error:
        raise ValueError(
            f"validation rule {rule.name}: `{rule.when}` is not a SOQL condition on "
            f"{object_name}: {error.error_code}: {error.message}"
        ) from None
    return ValidationRule(
        name=rule.name,
        # The compiled query selects "Id" first; restricting it to the batch's ids lets SQLite
        # look each of them up by primary key instead of scanning the table.
        sql=f'SELECT "Id" FROM ({compiled.sql}) WHERE "Id" IN (SELECT value FROM json_each(?))',
        params=tuple(compiled.params),
        error=row_error(
            "FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, [rule.field] if rule.field else []
        ),
    )
