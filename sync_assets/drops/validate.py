"""Row validation generated from the night's source record model: valid rows, and rejects with reasons.

Every rule is a vectorised polars expression built from the model's field metadata (required,
lengths, picklists and each record type's stages, inactive values, ge/le, digits, places); the
model is generated from the mapping and the org's describe (`drops/contract.py`). A row that breaks several rules keeps them all in `reason`
(messages joined by "; "), and its `reason_code` is the first broken rule in the model's field
order, so every rejected row counts under exactly one code.

Duplicates of the key column (`opportunity_key`) are resolved over the whole drop, before any other rule: the row
with the latest `updated_at` wins (on a tie, the row that comes later in the drop), the others
are rejected as `duplicate_key`. The winner is then validated like any row; if it is invalid it is
rejected for its own reason and no older version is sent in its place.
"""

from datetime import date
from decimal import Decimal
from typing import Any, Literal

import polars as pl
import polars_hash  # noqa: F401  (registers the `nchash` expression namespace)
from pydantic import BaseModel, ConfigDict

from sync_assets.drops.contract import DropContract, default_contract
from sync_assets.drops.model import NO_RECORD_TYPE, FieldSpec

Engine = Literal["auto", "in-memory", "streaming"]
"""Which polars engine collects a query (`LazyFrame.collect(engine=…)`)."""

ROW_INDEX = "_row"
REASON_CODE = "reason_code"
REASON = "reason"
DUPLICATE_KEY = "duplicate_key"
_KEY_HASH = "_key_hash"

_SHOWN_CHARACTERS = 40

# How a text cell must look before it is converted; polars' parsers alone are too lenient
# ("26-1-1" would be a date in year 26).
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
"""Plain or scientific notation ("1.5E7", as exporters write large floats)."""
_DATE = r"^\d{4}-\d{2}-\d{2}(?:[T ]00:00(?::00(?:\.0+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$"
"""yyyy-MM-dd, or a timestamp at midnight (in its own zone) whose date is taken as written."""
_TIMESTAMP_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f",
)
_KIND_WORDS = {
    "date": "a date (yyyy-MM-dd, or a timestamp at midnight)",
    "decimal": "a number",
    "integer": "an integer",
    "datetime": "a timestamp",
    "boolean": "true or false",
}
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
# Polars' decimals hold 38 digits; Salesforce's numbers at most 18 (Help 000386249).
_DECIMAL_DIGITS = 38
_INTEGER_DIGITS = 18

_PAIR = "\x1f"
"""Joins a record type and a stage into one value (a character no name holds)."""


class Rule(BaseModel):
    """One check on one column: `broken` is true on the rows that break it."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    code: str
    broken: pl.Expr
    message: pl.Expr


def integer_digits(spec: FieldSpec) -> int:
    """Digits a number of the field may have before its decimal point."""
    digits = spec.max_digits or _INTEGER_DIGITS
    return digits if spec.kind == "integer" else digits - (spec.decimal_places or 0)


def _parse_scale(spec: FieldSpec) -> int:
    """Places a number's text is parsed to.

    Every place that can decide a half-up rounding, and room for one integer digit more than the
    field holds (so a value too large for the field is "too many digits", not "not a number").
    """
    return _DECIMAL_DIGITS - integer_digits(spec) - 1


def _exact_number(text: pl.Expr, scale: int) -> pl.Expr:
    """The decimal a number's text denotes (plain or scientific), at `scale` places.

    Null if the text is not a number or the value does not fit. Places beyond `scale` are cut,
    not rounded: a half-up rounding to fewer places depends only on the first place it drops.
    """
    plain = text.str.replace(r"[eE]\+", "e").str.replace(rf"^([+-]?\d*\.\d{{{scale}}})\d+$", "${1}")
    return pl.when(text.str.contains(_NUMBER)).then(plain.str.to_decimal(scale=scale))


def _half_up(exact: pl.Expr, places: int) -> pl.Expr:
    return exact.round(places, mode="half_away_from_zero")


def _shown(expr: pl.Expr) -> pl.Expr:
    """A value as it appears in a message: quoted and cut to a readable length."""
    text = expr.cast(pl.String)
    cut = (
        pl.when(text.str.len_chars() > _SHOWN_CHARACTERS)
        .then(pl.concat_str(text.str.slice(0, _SHOWN_CHARACTERS), pl.lit("…")))
        .otherwise(text)
    )
    return pl.concat_str(pl.lit("'"), cut, pl.lit("'"))


def _literal(value: Any, spec: FieldSpec) -> pl.Expr:
    if isinstance(value, date):
        return pl.lit(value, dtype=pl.Date)
    if spec.kind == "decimal":
        return pl.lit(Decimal(value)).cast(pl.Decimal(38, spec.decimal_places or 0))
    return pl.lit(value)


class RowValidator:
    """The rules of the model, bound to the raw schema of one drop (typed columns, or text)."""

    def __init__(self, raw_schema: pl.Schema, contract: DropContract | None = None) -> None:
        self.contract = contract or default_contract()
        self._specs = self.contract.specs
        self._textual = {
            spec.name
            for spec in self._specs
            if spec.kind != "string" and raw_schema.get(spec.name) == pl.String
        }

    def _is_text(self, spec: FieldSpec) -> bool:
        return spec.kind == "string" or spec.name in self._textual

    def _raw(self, spec: FieldSpec) -> pl.Expr:
        """The source cell, with an empty string read as absent."""
        column = pl.col(spec.name)
        if self._is_text(spec):
            return pl.when(column.str.len_bytes() == 0).then(None).otherwise(column)
        return column

    def _absent(self, spec: FieldSpec) -> pl.Expr:
        """True where the cell is null or (text) empty; cheaper than rebuilding it with `_raw`."""
        column = pl.col(spec.name)
        if self._is_text(spec):
            return column.is_null() | (column.str.len_bytes() == 0)
        return column.is_null()

    def _is_number_text(self, spec: FieldSpec) -> bool:
        return spec.kind in ("decimal", "integer") and spec.name in self._textual

    def _exact(self, spec: FieldSpec) -> pl.Expr:
        """A number column's text as an exact decimal (see `_exact_number`)."""
        return _exact_number(self._raw(spec), _parse_scale(spec))

    def typed(self, spec: FieldSpec) -> pl.Expr:
        """The value in the contract type; null where absent or (text) not parseable.

        Numbers are rounded half-up to the field's scale; an integer must be integral.
        """
        raw = self._raw(spec)
        if spec.name not in self._textual:
            return raw
        if spec.kind == "datetime":
            return pl.coalesce(
                [
                    raw.str.to_datetime(fmt, time_unit="us", time_zone="UTC", strict=False)
                    for fmt in _TIMESTAMP_FORMATS
                ]
            )
        if spec.kind == "date":
            parsed = raw.str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d", strict=False)
            return pl.when(raw.str.contains(_DATE)).then(parsed)
        if spec.kind == "boolean":
            return raw.str.to_lowercase().replace_strict(
                _BOOLEANS, default=None, return_dtype=pl.Boolean
            )
        exact = self._exact(spec)
        if spec.kind == "integer":
            return pl.when(_half_up(exact, 0) == exact).then(exact.cast(pl.Int64, strict=False))
        places = spec.decimal_places or 0
        return _half_up(exact, places).cast(pl.Decimal(_DECIMAL_DIGITS, places))

    def typed_columns(self, without_empty: frozenset[str] = frozenset()) -> list[pl.Expr]:
        """All columns in the contract types.

        `without_empty` names columns known to hold no empty string: string columns among them
        are passed through as they are instead of being rebuilt (a saving on millions of rows);
        text that holds another type is always parsed.
        """
        return [
            (
                pl.col(spec.name)
                if spec.kind == "string" and spec.name in without_empty
                else self.typed(spec)
            ).alias(spec.name)
            for spec in self._specs
        ]

    def rules(self, duplicate_rows: pl.Series | None) -> list[Rule]:
        """All rules, in the model's field order, then the duplicate rule (rows that lost).

        Without `duplicate_rows` the duplicate rule is left out (see `with_duplicates`).
        """
        rules = [rule for spec in self._specs for rule in self._rules_of(spec)]
        if duplicate_rows is None:
            return rules
        rules.append(
            Rule(
                code=DUPLICATE_KEY,
                broken=pl.col(ROW_INDEX).is_in(duplicate_rows.implode()),
                message=pl.concat_str(
                    pl.lit(f"{self.contract.key_column} "),
                    _shown(pl.col(self.contract.key_column)),
                    pl.lit(" appears again with a later updated_at, which wins"),
                ),
            )
        )
        return rules

    def _rules_of(self, spec: FieldSpec) -> list[Rule]:
        name = spec.name
        # Length and picklist rules read the cell as it is (an empty string breaks neither);
        # messages show the cell as it came.
        column, absent, value = pl.col(name), self._absent(spec), self.typed(spec)
        shown = _shown(column)
        rules: list[Rule] = []
        if spec.required:
            rules.append(
                Rule(
                    code=f"{name}_missing",
                    broken=absent,
                    message=pl.lit(f"{name} is required"),
                )
            )
        if name in self._textual:
            rules.append(self._invalid_rule(spec, absent, value, shown))
        if spec.max_length is not None:
            length = column.str.len_chars()
            rules.append(
                Rule(
                    code=f"{name}_too_long",
                    broken=length > spec.max_length,
                    message=pl.format(
                        f"{name} is {{}} characters long, at most {spec.max_length} allowed", length
                    ),
                )
            )
        if spec.allowed is not None:
            rules.extend(self._picklist_rules(spec, absent, shown))
        if spec.ge is not None:
            rules.append(
                Rule(
                    code=f"{name}_too_small",
                    broken=value < _literal(spec.ge, spec),
                    message=pl.concat_str(
                        pl.lit(f"{name} "), shown, pl.lit(f" is below the minimum {spec.ge}")
                    ),
                )
            )
        if spec.le is not None:
            rules.append(
                Rule(
                    code=f"{name}_too_large",
                    broken=value > _literal(spec.le, spec),
                    message=pl.concat_str(
                        pl.lit(f"{name} "), shown, pl.lit(f" is above the maximum {spec.le}")
                    ),
                )
            )
        if spec.kind in ("decimal", "integer"):
            rules.extend(self._digit_rules(spec, value, shown))
        return rules

    def _picklist_rules(self, spec: FieldSpec, absent: pl.Expr, shown: pl.Expr) -> list[Rule]:
        """A value the org does not offer: inactive, unknown, or not its record type's stage."""
        name, column = spec.name, pl.col(spec.name)
        inactive = list(spec.target.inactive)
        rules = []
        if inactive:
            rules.append(
                Rule(
                    code=f"{name}_inactive",
                    broken=column.is_in(inactive),
                    message=pl.concat_str(
                        pl.lit(f"{name} "), shown, pl.lit(" is inactive in the org")
                    ),
                )
            )
        unknown = ~absent & ~column.is_in(list(spec.allowed or ()))
        if inactive:
            unknown = unknown & ~column.is_in(inactive)
        rules.append(
            Rule(
                code=f"{name}_not_in_picklist",
                broken=unknown,
                message=pl.concat_str(
                    pl.lit(f"{name} "), shown, pl.lit(" is not a value of the picklist")
                ),
            )
        )
        if spec.target.stages is not None and spec.target.record_type_column is not None:
            rules.append(self._stage_rule(spec, absent, shown))
        return rules

    def _stage_rule(self, spec: FieldSpec, absent: pl.Expr, shown: pl.Expr) -> Rule:
        """A stage of the org that the row's record type (its sales process) does not offer.

        The same code as a value outside the picklist; a row whose record type is unknown breaks
        that column's own rule instead.
        """
        stages = spec.target.stages or {}
        record_type = self._raw(self.contract.spec(str(spec.target.record_type_column)))
        named = record_type.fill_null(pl.lit(NO_RECORD_TYPE))
        pairs = [f"{kind}{_PAIR}{stage}" for kind, values in stages.items() for stage in values]
        pair = pl.concat_str(named, pl.lit(_PAIR), pl.col(spec.name))
        return Rule(
            code=f"{spec.name}_not_in_picklist",
            broken=~absent
            & pl.col(spec.name).is_in(list(spec.allowed or ()))
            & named.is_in(list(stages))
            & ~pair.is_in(pairs),
            message=pl.concat_str(
                pl.lit(f"{spec.name} "),
                shown,
                pl.lit(" is not a stage of record type "),
                pl.when(record_type.is_null()).then(pl.lit("(the default)")).otherwise(record_type),
            ),
        )

    def _invalid_rule(
        self, spec: FieldSpec, absent: pl.Expr, value: pl.Expr, shown: pl.Expr
    ) -> Rule:
        """A text cell that does not parse; a number too large to parse breaks the digits rule."""
        unparsed = ~absent & value.is_null()
        if self._is_number_text(spec):
            unparsed = unparsed & ~self._too_large_to_parse(spec)
        return Rule(
            code=f"{spec.name}_invalid",
            broken=unparsed,
            message=pl.concat_str(
                pl.lit(f"{spec.name} "), shown, pl.lit(f" is not {_KIND_WORDS[spec.kind]}")
            ),
        )

    def _too_large_to_parse(self, spec: FieldSpec) -> pl.Expr:
        return self._raw(spec).str.contains(_NUMBER) & self._exact(spec).is_null()

    def _digit_rules(self, spec: FieldSpec, value: pl.Expr, shown: pl.Expr) -> list[Rule]:
        """Too many digits before the point, and more places than the scale if rounding is refused.

        Salesforce fails a value with too many integer digits (NUMBER_OUTSIDE_VALID_RANGE).
        """
        name, digits, places = spec.name, integer_digits(spec), spec.decimal_places or 0
        too_large = value.abs() >= _literal(10**digits, spec)
        if self._is_number_text(spec):
            too_large = too_large | self._too_large_to_parse(spec)
        rules = [
            Rule(
                code=f"{name}_too_many_digits",
                broken=too_large,
                message=pl.concat_str(
                    pl.lit(f"{name} "),
                    shown,
                    pl.lit(f" has more than {digits} digits before the decimal point"),
                ),
            )
        ]
        if (
            spec.target.rounding == "reject"
            and spec.kind == "decimal"
            and self._is_number_text(spec)
        ):
            exact = self._exact(spec)
            rules.append(
                Rule(
                    code=f"{name}_too_many_decimals",
                    broken=exact != _half_up(exact, places),
                    message=pl.concat_str(
                        pl.lit(f"{name} "), shown, pl.lit(f" has more than {places} decimal places")
                    ),
                )
            )
        return rules

    def _broken(self, duplicate_rows: pl.Series | None) -> list[tuple[Rule, pl.Expr]]:
        # A null `broken` (a rule on an absent optional value) means the rule does not apply.
        return [(rule, rule.broken.fill_null(False)) for rule in self.rules(duplicate_rows)]

    def reason_code(self, duplicate_rows: pl.Series | None) -> pl.Expr:
        """The first rule each row breaks (model field order, then duplicates); null if valid.

        With `duplicate_rows` None, duplicates are not coded here but by `with_duplicates`.
        """
        broken = self._broken(duplicate_rows)
        # The number of the first broken rule, then its code: much cheaper on millions of rows
        # than a chain of when/then that builds a string column per rule.
        first = pl.min_horizontal(
            pl.when(is_broken).then(pl.lit(number, pl.UInt8))
            for number, (_, is_broken) in enumerate(broken)
        )
        codes = pl.Series([rule.code for rule, _ in broken], dtype=pl.String)
        return pl.lit(codes).gather(first).alias(REASON_CODE)

    def with_duplicates(self, duplicate_rows: pl.Series) -> pl.Expr:
        """REASON_CODE from `reason_code(None)` completed with the duplicate rule.

        The duplicate rule comes last, so it only codes rows every other rule passed: the other
        rules can run while the duplicates are still being found.
        """
        is_duplicate = pl.col(ROW_INDEX).is_in(duplicate_rows.implode())
        return (
            pl.col(REASON_CODE)
            .fill_null(pl.when(is_duplicate).then(pl.lit(DUPLICATE_KEY)))
            .alias(REASON_CODE)
        )

    def reason(self, duplicate_rows: pl.Series) -> pl.Expr:
        """Every rule a row breaks, as messages joined by "; " (computed for rejected rows only)."""
        messages = [
            pl.when(is_broken).then(rule.message)
            for rule, is_broken in self._broken(duplicate_rows)
        ]
        return pl.concat_str(messages, separator="; ", ignore_nulls=True).alias(REASON)

    def duplicate_rows(self, frame: pl.LazyFrame, engine: Engine = "auto") -> pl.Series:
        """ROW_INDEX of every row that loses to a later version of its opportunity_key."""
        key, order = self.contract.key_column, self.contract.order_column
        key_spec, order_spec = self.contract.spec(key), self.contract.spec(order)
        # A first pass holds only a 64-bit hash per key (the whole drop's keys would not fit a
        # streamed pass's memory); the exact check runs on the few rows whose hash repeats.
        hashes = (
            frame.filter(~self._absent(key_spec))
            .select(ROW_INDEX, pl.col(key).nchash.xxh3_64().alias(_KEY_HASH))
            .collect(engine=engine)
        )
        # Equal neighbours once sorted: a fraction of the memory of `is_duplicated`'s hash table.
        repeated = (
            hashes.lazy()
            .select(pl.col(_KEY_HASH).sort())
            .filter(pl.col(_KEY_HASH) == pl.col(_KEY_HASH).shift(1))
            .unique()
            .collect()
            .to_series()
        )
        candidates = hashes.filter(pl.col(_KEY_HASH).is_in(repeated.implode()))[ROW_INDEX]
        keyed = (
            frame.filter(pl.col(ROW_INDEX).is_in(candidates.implode()))
            .select(
                pl.col(ROW_INDEX),
                pl.col(key),
                self.typed(order_spec).alias(order),
            )
            .filter(pl.col(key).is_duplicated())
        )
        # A row with no valid updated_at is the oldest version of its key.
        winners = (
            keyed.sort([order, ROW_INDEX], nulls_last=False)
            .group_by(key)
            .agg(pl.col(ROW_INDEX).last())
        )
        losers = keyed.join(winners, on=ROW_INDEX, how="anti").select(ROW_INDEX)
        return losers.collect(engine=engine).to_series()

    def rejects(self, coded: pl.LazyFrame, duplicate_rows: pl.Series) -> pl.LazyFrame:
        """Rows with a reason code: every source column as text (as it came), code and reason."""
        return coded.filter(pl.col(REASON_CODE).is_not_null()).select(
            *[self._as_text(spec) for spec in self._specs],
            pl.col(REASON_CODE),
            self.reason(duplicate_rows),
        )

    def _as_text(self, spec: FieldSpec) -> pl.Expr:
        column = pl.col(spec.name)
        if spec.kind == "datetime" and spec.name not in self._textual:
            return column.dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ").alias(spec.name)
        return column.cast(pl.String).alias(spec.name)
