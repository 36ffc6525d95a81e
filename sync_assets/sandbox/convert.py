"""Column-wise conversion and validation of uploaded CSV values into stored field values.

Each converter takes one column of a batch (a tuple of strings) and returns the stored values plus
the row errors, in Salesforce's ``CODE:message:fields --`` form. A stored value is ``None`` when the
cell was empty (no value on insert, "leave unchanged" on update), ``SET_NULL`` for ``#N/A``, and the
typed value otherwise. Columns are processed with comprehensions, not per-cell calls, because the
sandbox must ingest on the order of 100,000 records a second.
"""

import re
from collections.abc import Callable, Sequence
from datetime import date
from functools import lru_cache
from typing import Any

from sync_assets.sandbox.ids import to_id18
from sync_assets.sandbox.objects import SET_NULL, FieldDef

Converted = tuple[list[Any], dict[int, str]]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER_TEXT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER = re.compile(_NUMBER_TEXT)
_NUMBERS = re.compile(rf"{_NUMBER_TEXT}(?:\n{_NUMBER_TEXT})*+")


def row_error(code: str, message: str, fields: Sequence[str] = ()) -> str:
    """A failedResults ``sf__Error`` value: ``CODE:message:field1 field2 --`` or ``CODE:message:--``."""
    tail = " ".join(fields) + " --" if fields else "--"
    return f"{code}:{message}:{tail}"


def parse_row_error(error: str) -> tuple[str, str, list[str]]:
    """The code, message and fields of a :func:`row_error` value (the message may hold colons)."""
    code, _, rest = error.partition(":")
    message, _, tail = rest.rpartition(":")
    return code, message, tail.removesuffix("--").split()


def _type_error(field: FieldDef, value: str) -> str:
    return row_error(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        f"{field.label}: value not of required type: {value}",
        [field.name],
    )


@lru_cache(maxsize=65536)
def _is_date(value: str) -> bool:
    if not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _convert_text(field: FieldDef, column: Sequence[str]) -> Converted:
    values = [v or None for v in column]
    errors: dict[int, str] = {}
    # C-speed screening first: most columns have no bad value at all
    if max(map(len, column), default=0) > field.length:
        errors = {
            i: row_error(
                "STRING_TOO_LONG",
                f"{field.label}: data value too large: {v} (max length={field.length})",
                [field.name],
            )
            for i, v in enumerate(column)
            if len(v) > field.length
        }
    if field.restricted_picklist:
        allowed = {*field.picklist, SET_NULL, ""}
        if not allowed.issuperset(column):
            errors.update(
                (
                    i,
                    row_error(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{field.label}: bad value for restricted picklist field: {v}",
                        [field.name],
                    ),
                )
                for i, v in enumerate(column)
                if v not in allowed and i not in errors
            )
    return values, errors


def _convert_date(field: FieldDef, column: Sequence[str]) -> Converted:
    values = [v or None for v in column]
    distinct = set(column) - {"", SET_NULL}
    if all(map(_is_date, distinct)):
        return values, {}
    errors = {
        i: _type_error(field, v)
        for i, v in enumerate(column)
        if v and v != SET_NULL and not _is_date(v)
    }
    return values, errors


def _convert_number(field: FieldDef, column: Sequence[str]) -> Converted:
    """Numbers as sent: more decimal places than the scale are kept, as the API keeps them.

    Salesforce rounds to the scale only in its UI (Help 000385689, 000387302); only too many
    integer digits (more than precision - scale) are out of range.
    """
    limit = 10.0 ** (field.precision - field.scale)
    low = field.min_value if field.min_value is not None else -limit
    high = field.max_value if field.max_value is not None else limit
    present = [v for v in column if v and v != SET_NULL]
    # One regex pass over the whole column decides whether the per-value checks are needed.
    if not present or _NUMBERS.fullmatch("\n".join(present)):
        numbers = list(map(float, present))
        in_range = not numbers or (
            low <= min(numbers) and max(numbers) <= high and max(map(abs, numbers)) < limit
        )
        if in_range:
            parsed = iter(list(map(round, numbers)) if field.type == "int" else numbers)
            return [None if not v else v if v == SET_NULL else next(parsed) for v in column], {}
    return _convert_number_checked(field, column, low, high, limit)


def _convert_number_checked(
    field: FieldDef, column: Sequence[str], low: float, high: float, limit: float
) -> Converted:
    errors: dict[int, str] = {}
    values: list[Any] = [v or None for v in column]
    for i, v in enumerate(column):
        if not v or v == SET_NULL:
            continue
        if not _NUMBER.fullmatch(v):
            errors[i] = _type_error(field, v)
            continue
        number = float(v)
        if not low <= number <= high or abs(number) >= limit:
            errors[i] = row_error(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{field.label}: value outside of valid range on numeric field: {v}",
                [field.name],
            )
            continue
        values[i] = round(number) if field.type == "int" else number
    return values, errors


# Bulk CSV booleans (case-insensitive); anything else is not of the field's type.
_BOOLEANS = {"true": 1, "false": 0, "1": 1, "0": 0}


def _convert_boolean(field: FieldDef, column: Sequence[str]) -> Converted:
    values: list[Any] = [
        None if not v else v if v == SET_NULL else _BOOLEANS.get(v.lower()) for v in column
    ]
    errors = {
        i: _type_error(field, column[i]) for i, v in enumerate(values) if v is None and column[i]
    }
    return values, errors


def unknown_reference(field: FieldDef, value: str) -> str:
    return row_error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")


def reference_converter(
    key_prefix: str,
    known: Callable[[str], bool],
    refuse: Callable[[FieldDef, str], str] = unknown_reference,
) -> Callable[..., Converted]:
    """A converter for a lookup field whose target has ``key_prefix`` and whose ids ``known`` accepts.

    ``refuse`` gives the row error for a well-formed id that ``known`` does not accept.
    """

    def convert(field: FieldDef, column: Sequence[str]) -> Converted:
        values: list[Any] = [v or None for v in column]
        errors: dict[int, str] = {}
        for i, v in enumerate(column):
            if not v or v == SET_NULL:
                continue
            id18 = to_id18(v)
            if id18 is None or not id18.startswith(key_prefix):
                errors[i] = row_error(
                    "MALFORMED_ID", f"{field.label}: id value of incorrect type: {v}", [field.name]
                )
            elif not known(id18):
                errors[i] = refuse(field, v)
            else:
                values[i] = id18
        return values, errors

    return convert


_CONVERTERS: dict[str, Callable[[FieldDef, Sequence[str]], Converted]] = {
    "string": _convert_text,
    "textarea": _convert_text,
    "picklist": _convert_text,
    "date": _convert_date,
    "currency": _convert_number,
    "percent": _convert_number,
    "double": _convert_number,
    "int": _convert_number,
    "boolean": _convert_boolean,
}


def convert_column(field: FieldDef, column: Sequence[str]) -> Converted:
    """Stored values and row errors of one writable, non-reference field's column."""
    return _CONVERTERS[field.type](field, column)
