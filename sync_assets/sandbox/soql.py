"""Compile the sandbox's SOQL subset into parameterised SQLite SQL, with Salesforce's errors.

Supported: ``SELECT COUNT() FROM X [WHERE …] [LIMIT n]`` and ``SELECT f, Rel.f FROM X [WHERE …]
[ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], …] [LIMIT n]``. Everything else (aggregates other than
``COUNT()``, GROUP BY, OFFSET, sub-queries, date literals such as ``TODAY``, aliases, INCLUDES) is
rejected as ``MALFORMED_QUERY``.

Semantics follow Salesforce rather than SQL:

- ``!=``/``<>`` and ``NOT IN`` also match records whose field is null, and ``NOT`` negates a
  two-valued condition (a comparison with a null field is false, so its negation is true).
- Text comparisons (``=``, ``!=``, ``<``…, ``IN``) are case-insensitive (SQLite ``NOCASE``,
  which folds ASCII letters only), except on fields for which :func:`is_case_sensitive` holds:
  ``id``/``reference`` fields and fields whose name ends in ``External_Id__c``, which the sandbox
  defines as case-sensitive external IDs. ORDER BY on text ignores case for every text field.
- ``LIKE`` is case-insensitive on every text field, as Salesforce documents.
- Id literals are canonicalised to the 18-character form (``ids.to_id18``), so a 15-character
  Id finds its record too; a malformed one is ``INVALID_QUERY_FILTER_OPERATOR`` as in Salesforce.
- ``textarea`` fields are long text areas: they can be selected but not filtered or sorted.
- Nulls sort first unless ``NULLS LAST`` is given, whatever the direction.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from sync_assets.sandbox.ids import to_id18

ErrorCode = Literal[
    "MALFORMED_QUERY", "INVALID_TYPE", "INVALID_FIELD", "INVALID_QUERY_FILTER_OPERATOR"
]


class SoqlError(Exception):
    """A query Salesforce would reject; ``error_code`` and ``message`` form the REST error body."""

    def __init__(self, error_code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code: str = error_code
        self.message: str = message


@dataclass(frozen=True)
class FieldSpec:
    name: str
    soql_type: str


@dataclass(frozen=True)
class ObjectSpec:
    name: str
    fields: dict[str, FieldSpec]
    relationships: dict[str, tuple[str, str]]


@dataclass(frozen=True)
class CompiledQuery:
    object_name: str
    is_count: bool
    columns: list[str]
    sql: str
    params: list
    limit: int | None


TEXT_TYPES = frozenset({"string", "textarea", "picklist"})
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"currency", "percent", "double", "int"})

# The type names Salesforce's messages use (SOAP types), per catalog type.
_SOAP_TYPE = {
    "id": "id",
    "reference": "id",
    "string": "string",
    "textarea": "string",
    "picklist": "string",
    "date": "date",
    "datetime": "dateTime",
    "currency": "double",
    "percent": "double",
    "double": "double",
    "int": "int",
    "boolean": "boolean",
}

# Which literal kind each catalog type accepts (besides null).
_LITERAL_KIND_FOR_TYPE = {
    **dict.fromkeys(TEXT_TYPES | ID_TYPES, "string"),
    **dict.fromkeys(NUMBER_TYPES, "number"),
    "date": "date",
    "datetime": "datetime",
    "boolean": "boolean",
}

_NO_SUCH_COLUMN = (
    "No such column '{field}' on entity '{entity}'. If you are attempting to use a custom field, "
    "be sure to append the '__c' after the custom field name. Please reference your WSDL or the "
    "describe call for the appropriate names."
)
_NO_SUCH_OBJECT = (
    "sObject type '{entity}' is not supported. If you are attempting to use a custom object, be "
    "sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
    "call for the appropriate names."
)
_NO_SUCH_RELATIONSHIP = (
    "Didn't understand relationship '{relationship}' in field path. If you are attempting to use "
    "a custom relationship, be sure to append the '__r' after the custom relationship name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)


def is_case_sensitive(spec: FieldSpec) -> bool:
    """Whether ``=``/``IN``/ordering compare this field's values exactly rather than ignoring case."""
    return spec.soql_type in ID_TYPES or spec.name.lower().endswith("external_id__c")


# ----------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class _Token:
    kind: str  # ident, string, number, date, datetime, op, "(", ")", ",", ".", eof
    text: str
    pos: int
    value: object = None
    like_pattern: str | None = None
    like_only_escape: int | None = None  # offset of a \% or \_ escape, legal only in LIKE

    def is_keyword(self, *words: str) -> bool:
        return self.kind == "ident" and self.text.upper() in words


_DATE = r"\d{4}-\d{2}-\d{2}"
_DATETIME_RE = re.compile(
    _DATE + r"T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})", re.ASCII
)
_DATE_RE = re.compile(_DATE + r"(?![\dA-Za-z_:])", re.ASCII)
_DATETIME_PREFIX_RE = re.compile(_DATE + r"T[\dT:.+\-Z]*", re.ASCII)
_NUMBER_RE = re.compile(r"[+-]?\d+(?:\.\d+)?(?![\dA-Za-z_])", re.ASCII)
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_OPERATOR_RE = re.compile(r"!=|<>|<=|>=|=|<|>")
_SIMPLE_ESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    '"': '"',
    "'": "'",
}


class _LexError(Exception):
    """A character sequence no token starts with; the parser adds the location to the message."""

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(text)
        self.pos = pos
        self.text = text


class _Lexer:
    """Reads one token at a time, so that a lexical error is reported within its condition."""

    def __init__(self, soql: str) -> None:
        self.soql = soql

    def token_after(self, pos: int) -> _Token:
        while pos < len(self.soql) and self.soql[pos].isspace():
            pos += 1
        if pos == len(self.soql):
            return _Token("eof", "<EOF>", pos)
        return self._token_at(pos)

    def _token_at(self, pos: int) -> _Token:
        char = self.soql[pos]
        if char in "(),.":
            return _Token(char, char, pos)
        if char == "'":
            return self._string_at(pos)
        if operator := _OPERATOR_RE.match(self.soql, pos):
            return _Token("op", operator.group(), pos)
        if char.isdigit() or (char in "+-" and self.soql[pos + 1 : pos + 2].isdigit()):
            return self._number_or_date_at(pos)
        if identifier := _IDENT_RE.match(self.soql, pos):
            return _Token("ident", identifier.group(), pos)
        raise self._no_viable_alternative(pos)

    def _number_or_date_at(self, pos: int) -> _Token:
        if found := _DATETIME_RE.match(self.soql, pos):
            return _Token("datetime", found.group(), pos, _utc_datetime(found))
        if partial := _DATETIME_PREFIX_RE.match(self.soql, pos):
            raise self._no_viable_alternative(partial.end())
        if found := _DATE_RE.match(self.soql, pos):
            return _Token("date", found.group(), pos, _checked_date(found))
        if found := _NUMBER_RE.match(self.soql, pos):
            text = found.group()
            number: int | float = float(text) if "." in text else int(text)
            return _Token("number", text, pos, number)
        raise self._no_viable_alternative(pos)

    def _string_at(self, start: int) -> _Token:
        value: list[str] = []
        like: list[str] = []
        like_only_escape: int | None = None
        pos = start + 1
        while pos < len(self.soql):
            char = self.soql[pos]
            if char == "'":
                text = self.soql[start : pos + 1]
                return _Token(
                    "string", text, start, "".join(value), "".join(like), like_only_escape
                )
            if char != "\\":
                value.append(char)
                like.append(char)
                pos += 1
                continue
            escaped = self.soql[pos + 1 : pos + 2]
            if escaped.lower() in _SIMPLE_ESCAPES:
                decoded = _SIMPLE_ESCAPES[escaped.lower()]
                value.append(decoded)
                like.append(decoded)
                pos += 2
            elif escaped == "\\":
                value.append("\\")
                like.append("\\\\")
                pos += 2
            elif escaped in ("%", "_"):
                like_only_escape = pos if like_only_escape is None else like_only_escape
                value.append(escaped)
                like.append("\\" + escaped)
                pos += 2
            elif escaped == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", self.soql[pos + 2 : pos + 6]):
                decoded = chr(int(self.soql[pos + 2 : pos + 6], 16))
                value.append(decoded)
                # A wildcard written as \u0025 stays a literal character in LIKE.
                like.append("\\" + decoded if decoded in "%_\\" else decoded)
                pos += 6
            else:
                raise _LexError(pos, _illegal_escape_text(self.soql[pos : pos + 2]))
        end = len(self.soql)
        raise _LexError(
            end,
            f"line {_row(self.soql, end)}:{_column(self.soql, end) - 1} "
            "mismatched character '<EOF>' expecting '''",
        )

    def _no_viable_alternative(self, pos: int) -> _LexError:
        shown = self.soql[pos] if pos < len(self.soql) else "<EOF>"
        return _LexError(
            pos,
            f"line {_row(self.soql, pos)}:{_column(self.soql, pos) - 1} "
            f"no viable alternative at character '{shown}'",
        )


def _illegal_escape_text(sequence: str) -> str:
    return (
        f"Invalid string literal '{sequence}'. "
        f"Illegal character sequence '{sequence}' in string literal."
    )


def _checked_date(found: re.Match[str]) -> str:
    try:
        return date.fromisoformat(found.group()).isoformat()
    except ValueError:
        raise _LexError(found.start(), f"invalid date: {found.group()}") from None


def _utc_datetime(found: re.Match[str]) -> str:
    """Normalise a datetime literal to the sandbox's stored form, ``yyyy-MM-ddTHH:mm:ss.SSS+0000``."""
    text = found.group()
    zone = found.group(5)
    millis = (found.group(4) or "").ljust(3, "0")[:3]
    try:
        moment = datetime.fromisoformat(text[:19] + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        raise _LexError(found.start(), f"invalid dateTime: {text}") from None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis}+0000"


# ----------------------------------------------------------------------------------------------
# Error locations, as Salesforce prints them: the offending line (from the start of the condition
# being read, when there is one), a caret under the offending character, then Row:Column.


def _row(soql: str, pos: int) -> int:
    return soql.count("\n", 0, pos) + 1


def _column(soql: str, pos: int) -> int:
    return pos - (soql.rfind("\n", 0, pos) + 1) + 1


def _located(soql: str, pos: int, anchor: int | None, text: str) -> str:
    if pos == len(soql) and pos > 0:
        pos -= 1  # Salesforce puts the caret for <EOF> under the last character
    line_start = soql.rfind("\n", 0, pos) + 1
    line_end = soql.find("\n", pos)
    start = anchor if anchor is not None and line_start <= anchor <= pos else line_start
    snippet = soql[start : len(soql) if line_end < 0 else line_end]
    caret = " " * (pos - start) + "^"
    return (
        f"\n{snippet}\n{caret}\nERROR at Row:{_row(soql, pos)}:Column:{_column(soql, pos)}\n{text}"
    )


# ----------------------------------------------------------------------------------------------
# Syntax tree


@dataclass(frozen=True)
class _FieldPath:
    parts: tuple[str, ...]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class _Comparison:
    path: _FieldPath
    operator: str  # = != < <= > >= LIKE IN NOT IN
    values: tuple[_Token, ...]
    anchor: int


@dataclass(frozen=True)
class _Not:
    operand: "_Condition"


@dataclass(frozen=True)
class _Junction:
    keyword: str  # AND / OR
    operands: tuple["_Condition", ...]


_Condition = _Comparison | _Not | _Junction


@dataclass(frozen=True)
class _OrderItem:
    path: _FieldPath
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class _Query:
    is_count: bool
    paths: list[_FieldPath]
    object_token: _Token
    where: _Condition | None
    order_by: list[_OrderItem]
    limit: int | None


# SOQL's reserved words, which can never name an object or a field.
_RESERVED = frozenset(
    [
        "AND",
        "ASC",
        "DESC",
        "EXCLUDES",
        "FIRST",
        "FROM",
        "GROUP",
        "HAVING",
        "IN",
        "INCLUDES",
        "LAST",
        "LIKE",
        "LIMIT",
        "NOT",
        "NULL",
        "NULLS",
        "OR",
        "SELECT",
        "WHERE",
        "WITH",
    ]
)
_VALUE_KINDS = frozenset({"string", "number", "date", "datetime"})
_COMPARISON_OPERATORS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})


class _Parser:
    """Recursive descent over the token list; remembers where the current condition began."""

    def __init__(self, soql: str) -> None:
        self.soql = soql
        self.lexer = _Lexer(soql)
        self.tokens: list[_Token] = []
        self.index = 0
        self.anchor: int | None = None

    def peek(self, ahead: int = 0) -> _Token:
        while len(self.tokens) <= self.index + ahead:
            last = self.tokens[-1] if self.tokens else None
            if last is not None and last.kind == "eof":
                return last
            after = 0 if last is None else last.pos + len(last.text)
            try:
                self.tokens.append(self.lexer.token_after(after))
            except _LexError as error:
                raise SoqlError(
                    "MALFORMED_QUERY", _located(self.soql, error.pos, self.anchor, error.text)
                ) from None
        return self.tokens[self.index + ahead]

    @property
    def current(self) -> _Token:
        return self.peek()

    def advance(self) -> _Token:
        token = self.current
        self.index += 1
        return token

    def unexpected(self) -> SoqlError:
        token = self.current
        shown = token.text if token.kind == "eof" else f"'{token.text}'"
        return SoqlError(
            "MALFORMED_QUERY",
            _located(self.soql, token.pos, self.anchor, f"unexpected token: {shown}"),
        )

    def expect_keyword(self, word: str) -> _Token:
        if not self.current.is_keyword(word):
            raise self.unexpected()
        return self.advance()

    def expect_name(self) -> _Token:
        if self.current.kind != "ident" or self.current.text.upper() in _RESERVED:
            raise self.unexpected()
        return self.advance()

    def expect(self, kind: str) -> _Token:
        if self.current.kind != kind:
            raise self.unexpected()
        return self.advance()

    def parse(self) -> _Query:
        self.expect_keyword("SELECT")
        is_count, paths = self.parse_select_list()
        self.expect_keyword("FROM")
        object_token = self.expect_name()
        where = None
        if self.current.is_keyword("WHERE"):
            self.advance()
            where = self.parse_condition()
            self.anchor = None
        order_by: list[_OrderItem] = []
        if self.current.is_keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY")
            order_by = self.parse_order_by()
        limit = None
        if self.current.is_keyword("LIMIT"):
            self.advance()
            limit = self.parse_limit()
        if self.current.kind != "eof":
            raise self.unexpected()
        return _Query(is_count, paths, object_token, where, order_by, limit)

    def parse_select_list(self) -> tuple[bool, list[_FieldPath]]:
        """Return whether the list is ``COUNT()`` (which must stand alone) and its field paths."""
        paths: list[_FieldPath] = []
        count_pos: int | None = None
        items = 0
        while True:
            items += 1
            if self.current.kind == "ident" and self.peek(1).kind == "(":
                count_pos = self.current.pos
                self.parse_function()
            else:
                paths.append(self.parse_path())
            if self.current.kind != ",":
                break
            self.advance()
        if count_pos is not None and items > 1:
            raise SoqlError(
                "MALFORMED_QUERY",
                _located(
                    self.soql,
                    count_pos,
                    None,
                    "COUNT() must be the only element in the SELECT list",
                ),
            )
        return count_pos is not None, paths

    def parse_function(self) -> None:
        name = self.expect("ident")
        self.expect("(")
        if not name.is_keyword("COUNT") or self.current.kind != ")":
            raise SoqlError(
                "MALFORMED_QUERY",
                _located(
                    self.soql,
                    name.pos,
                    None,
                    "The sandbox supports no SOQL function other than COUNT()",
                ),
            )
        self.advance()

    def parse_path(self) -> _FieldPath:
        first = self.expect_name()
        parts = [first.text]
        while self.current.kind == ".":
            self.advance()
            parts.append(self.expect_name().text)
        return _FieldPath(tuple(parts), first.pos)

    def parse_condition(self) -> _Condition:
        """SOQL has no precedence between AND and OR: mixing them needs parentheses."""
        operands = [self.parse_unary()]
        keyword: str | None = None
        while self.current.is_keyword("AND", "OR"):
            word = self.current.text.upper()
            if keyword not in (None, word):
                raise self.unexpected()
            keyword = word
            self.advance()
            operands.append(self.parse_unary())
        if keyword is None:
            return operands[0]
        return _Junction(keyword, tuple(operands))

    def parse_unary(self) -> _Condition:
        self.anchor = self.current.pos
        if self.current.is_keyword("NOT"):
            self.advance()
            return _Not(self.parse_unary())
        if self.current.kind == "(":
            self.advance()
            inner = self.parse_condition()
            self.expect(")")
            return inner
        return self.parse_comparison()

    def parse_comparison(self) -> _Comparison:
        anchor = self.current.pos
        path = self.parse_path()
        operator_token = self.current
        if operator_token.kind == "op":
            self.advance()
            operator = "!=" if operator_token.text == "<>" else operator_token.text
            return _Comparison(path, operator, (self.parse_value(),), anchor)
        if operator_token.is_keyword("LIKE"):
            self.advance()
            if self.current.kind != "string":
                raise self.unexpected()
            return _Comparison(path, "LIKE", (self.advance(),), anchor)
        negated = operator_token.is_keyword("NOT")
        if negated:
            self.advance()
        self.expect_keyword("IN")
        return _Comparison(path, "NOT IN" if negated else "IN", self.parse_value_list(), anchor)

    def parse_value(self) -> _Token:
        token = self.current
        if token.kind in _VALUE_KINDS or token.is_keyword("NULL", "TRUE", "FALSE"):
            return self.advance()
        raise self.unexpected()

    def parse_value_list(self) -> tuple[_Token, ...]:
        self.expect("(")
        values = [self.parse_value()]
        while self.current.kind == ",":
            self.advance()
            values.append(self.parse_value())
        self.expect(")")
        return tuple(values)

    def parse_order_by(self) -> list[_OrderItem]:
        items: list[_OrderItem] = []
        while True:
            path = self.parse_path()
            descending = False
            if self.current.is_keyword("ASC", "DESC"):
                descending = self.advance().text.upper() == "DESC"
            nulls_last = False
            if self.current.is_keyword("NULLS"):
                self.advance()
                if not self.current.is_keyword("FIRST", "LAST"):
                    raise self.unexpected()
                nulls_last = self.advance().text.upper() == "LAST"
            items.append(_OrderItem(path, descending, nulls_last))
            if self.current.kind != ",":
                return items
            self.advance()

    def parse_limit(self) -> int:
        token = self.current
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
            raise self.unexpected()
        self.advance()
        return token.value


# ----------------------------------------------------------------------------------------------
# Resolution against the catalog and SQL generation


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class _ResolvedField:
    sql: str  # qualified column, e.g. "t1"."External_Id__c"
    label: str  # API name as the result's column, e.g. Account.External_Id__c
    spec: FieldSpec


class _Compiler:
    def __init__(self, soql: str, catalog: dict[str, ObjectSpec], include_deleted: bool) -> None:
        self.soql = soql
        self.objects = {name.lower(): spec for name, spec in catalog.items()}
        self.include_deleted = include_deleted
        self.root: ObjectSpec
        self.joins: dict[str, tuple[str, str]] = {}  # relationship -> (alias, JOIN clause)
        self.params: list = []

    def error(self, code: ErrorCode, pos: int, anchor: int | None, text: str) -> SoqlError:
        return SoqlError(code, _located(self.soql, pos, anchor, text))

    def compile(self, query: _Query) -> CompiledQuery:
        self.root = self.resolve_object(query.object_token)
        selected = self.resolve_select_list(query.paths)
        where = self.condition_sql(query.where) if query.where is not None else None
        if query.is_count and query.order_by:
            first = query.order_by[0].path
            raise self.error(
                "MALFORMED_QUERY",
                first.pos,
                None,
                f"Ordered field must be grouped or aggregated: {first.text}",
            )
        order_by = [self.order_item_sql(item) for item in query.order_by]
        sql = self.assemble(query, selected, where, order_by)
        return CompiledQuery(
            object_name=self.root.name,
            is_count=query.is_count,
            columns=[resolved.label for resolved in selected],
            sql=sql,
            params=self.params,
            limit=query.limit,
        )

    def resolve_object(self, token: _Token) -> ObjectSpec:
        spec = self.objects.get(token.text.lower())
        if spec is None:
            raise self.error(
                "INVALID_TYPE", token.pos, None, _NO_SUCH_OBJECT.format(entity=token.text)
            )
        return spec

    def resolve_select_list(self, paths: list[_FieldPath]) -> list[_ResolvedField]:
        selected: list[_ResolvedField] = []
        for path in paths:
            resolved = self.resolve_field(path, None)
            if any(earlier.label == resolved.label for earlier in selected):
                raise self.error(
                    "MALFORMED_QUERY",
                    path.pos,
                    None,
                    f"duplicate field selected: {resolved.label}",
                )
            selected.append(resolved)
        return selected

    def resolve_field(self, path: _FieldPath, anchor: int | None) -> _ResolvedField:
        parts = list(path.parts)
        if len(parts) > 1 and parts[0].lower() == self.root.name.lower():
            parts = parts[1:]  # Opportunity.Name means Name
        if len(parts) == 1:
            spec = self.field_of(self.root, parts[0], path.pos, anchor)
            return _ResolvedField(f'"t0".{_quote(spec.name)}', spec.name, spec)
        relationships = {name.lower(): name for name in self.root.relationships}
        relationship = relationships.get(parts[0].lower())
        if relationship is None or len(parts) > 2:
            unknown = parts[0] if relationship is None else parts[1]
            raise self.error(
                "INVALID_FIELD",
                path.pos,
                anchor,
                _NO_SUCH_RELATIONSHIP.format(relationship=unknown),
            )
        parent_name, foreign_key = self.root.relationships[relationship]
        parent = self.objects[parent_name.lower()]
        spec = self.field_of(parent, parts[1], path.pos, anchor)
        alias = self.join_alias(relationship, parent, foreign_key)
        return _ResolvedField(f"{alias}.{_quote(spec.name)}", f"{relationship}.{spec.name}", spec)

    def field_of(self, entity: ObjectSpec, name: str, pos: int, anchor: int | None) -> FieldSpec:
        for field_name, spec in entity.fields.items():
            if field_name.lower() == name.lower():
                return spec
        raise self.error(
            "INVALID_FIELD", pos, anchor, _NO_SUCH_COLUMN.format(field=name, entity=entity.name)
        )

    def join_alias(self, relationship: str, parent: ObjectSpec, foreign_key: str) -> str:
        """Alias of the parent table, LEFT JOINed once per relationship on first use."""
        if relationship not in self.joins:
            alias = f'"t{len(self.joins) + 1}"'
            live_parent = "" if self.include_deleted else f' AND {alias}."IsDeleted" = 0'
            clause = (
                f"LEFT JOIN {_quote(parent.name)} AS {alias} "
                f'ON {alias}."Id" = "t0".{_quote(foreign_key)}{live_parent}'
            )
            self.joins[relationship] = (alias, clause)
        return self.joins[relationship][0]

    # -- WHERE ---------------------------------------------------------------------------------

    def condition_sql(self, condition: _Condition) -> str:
        if isinstance(condition, _Junction):
            return (
                "("
                + f" {condition.keyword} ".join(map(self.condition_sql, condition.operands))
                + ")"
            )
        if isinstance(condition, _Not):
            # SQL's NULL would make NOT(x) unknown; Salesforce's comparisons are two-valued.
            return f"(NOT COALESCE({self.condition_sql(condition.operand)}, 0))"
        return self.comparison_sql(condition)

    def comparison_sql(self, comparison: _Comparison) -> str:
        resolved = self.resolve_field(comparison.path, comparison.anchor)
        spec = resolved.spec
        if spec.soql_type == "textarea":
            raise self.error(
                "INVALID_FIELD",
                comparison.path.pos,
                comparison.anchor,
                f"field '{spec.name}' can not be filtered in a query call",
            )
        if comparison.operator == "LIKE":
            return self.like_sql(resolved, comparison)
        values = [self.literal_value(spec, token, comparison.anchor) for token in comparison.values]
        collate = (
            "" if is_case_sensitive(spec) or spec.soql_type not in TEXT_TYPES else " COLLATE NOCASE"
        )
        if comparison.operator in ("IN", "NOT IN"):
            return self.membership_sql(resolved.sql, collate, comparison.operator, values)
        return self.binary_sql(resolved.sql, collate, comparison.operator, values[0])

    def binary_sql(self, column: str, collate: str, operator: str, value: object) -> str:
        if value is None and operator == "=":
            return f"{column} IS NULL"
        if value is None and operator == "!=":
            return f"{column} IS NOT NULL"
        self.params.append(value)
        if operator == "!=":
            return f"({column} IS NULL OR {column} <> ?{collate})"
        return f"{column} {operator} ?{collate}"

    def membership_sql(self, column: str, collate: str, operator: str, values: list[object]) -> str:
        present = [value for value in values if value is not None]
        has_null = len(present) < len(values)
        negated = operator == "NOT IN"
        if not present:
            return f"{column} IS NOT NULL" if negated else f"{column} IS NULL"
        self.params.extend(present)
        listed = f"{column}{collate} {operator} ({', '.join('?' * len(present))})"
        if negated:
            # A null field is "not in" a list unless the list names null.
            return (
                f"({column} IS NOT NULL AND {listed})"
                if has_null
                else f"({column} IS NULL OR {listed})"
            )
        return f"({listed} OR {column} IS NULL)" if has_null else listed

    def like_sql(self, resolved: _ResolvedField, comparison: _Comparison) -> str:
        token = comparison.values[0]
        if resolved.spec.soql_type in ID_TYPES:
            raise self.error(
                "INVALID_QUERY_FILTER_OPERATOR",
                comparison.path.pos,
                comparison.anchor,
                "invalid operator on id field",
            )
        self.check_literal_kind(resolved.spec, token, comparison.anchor)
        self.params.append(token.like_pattern)
        return f"{resolved.sql} LIKE ? ESCAPE '\\'"

    def literal_value(self, spec: FieldSpec, token: _Token, anchor: int) -> object:
        if token.is_keyword("NULL"):
            return None
        self.check_literal_kind(spec, token, anchor)
        if token.like_only_escape is not None:
            raise self.error(
                "MALFORMED_QUERY",
                token.like_only_escape,
                anchor,
                _illegal_escape_text(
                    self.soql[token.like_only_escape : token.like_only_escape + 2]
                ),
            )
        if token.kind == "ident":  # TRUE / FALSE
            return int(token.text.upper() == "TRUE")
        if spec.soql_type in ID_TYPES:
            return self.record_id(str(token.value), token, anchor)
        return token.value

    def check_literal_kind(self, spec: FieldSpec, token: _Token, anchor: int) -> None:
        kind = "boolean" if token.is_keyword("TRUE", "FALSE") else token.kind
        expected = _LITERAL_KIND_FOR_TYPE[spec.soql_type]
        if kind == expected:
            return
        quoting = "be" if expected == "string" else "not be"
        raise self.error(
            "INVALID_FIELD",
            token.pos,
            anchor,
            f"value of filter criterion for field '{spec.name}' must be of type "
            f"{_SOAP_TYPE[spec.soql_type]} and should {quoting} enclosed in quotes",
        )

    def record_id(self, value: str, token: _Token, anchor: int) -> str:
        canonical = to_id18(value)
        if canonical is None:
            raise self.error(
                "INVALID_QUERY_FILTER_OPERATOR", token.pos, anchor, f"invalid ID field: {value}"
            )
        return canonical

    # -- ORDER BY and assembly -----------------------------------------------------------------

    def order_item_sql(self, item: _OrderItem) -> str:
        resolved = self.resolve_field(item.path, None)
        spec = resolved.spec
        if spec.soql_type == "textarea":
            raise self.error(
                "INVALID_FIELD",
                item.path.pos,
                None,
                f"field '{spec.name}' can not be sorted in a query call",
            )
        collate = " COLLATE NOCASE" if spec.soql_type in TEXT_TYPES else ""
        direction = " DESC" if item.descending else " ASC"
        nulls = " NULLS LAST" if item.nulls_last else " NULLS FIRST"
        return f"{resolved.sql}{collate}{direction}{nulls}"

    def assemble(
        self,
        query: _Query,
        selected: list[_ResolvedField],
        where: str | None,
        order_by: list[str],
    ) -> str:
        filters = [] if self.include_deleted else ['"t0"."IsDeleted" = 0']
        if where is not None:
            filters.append(where)
        body = " ".join(
            [
                f'FROM {_quote(self.root.name)} AS "t0"',
                *(clause for _, clause in self.joins.values()),
            ]
            + ([f"WHERE {' AND '.join(filters)}"] if filters else [])
        )
        if query.is_count:
            if query.limit is None:
                return f"SELECT COUNT(*) {body}"
            self.params.append(query.limit)
            return f"SELECT COUNT(*) FROM (SELECT 1 {body} LIMIT ?)"
        sql = f"SELECT {', '.join(resolved.sql for resolved in selected)} {body}"
        if order_by:
            sql += f" ORDER BY {', '.join(order_by)}"
        if query.limit is not None:
            self.params.append(query.limit)
            sql += " LIMIT ?"
        return sql


def compile_soql(
    soql: str, catalog: dict[str, ObjectSpec], include_deleted: bool = False
) -> CompiledQuery:
    """Compile one SOQL query against ``catalog``; raise :class:`SoqlError` as Salesforce would.

    ``include_deleted`` gives ``queryAll`` semantics (soft-deleted rows included).
    """
    query = _Parser(soql).parse()
    return _Compiler(soql, catalog, include_deleted).compile(query)
