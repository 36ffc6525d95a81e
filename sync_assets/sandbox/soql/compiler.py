"""Compiling a parsed SOQL query against the catalog into parameterised SQLite SQL.

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

from dataclasses import dataclass

from sync_assets.sandbox.ids import to_id18
from sync_assets.sandbox.soql.errors import ErrorCode, SoqlError, illegal_escape_text, located
from sync_assets.sandbox.soql.lexer import Token
from sync_assets.sandbox.soql.parser import (
    Comparison,
    Condition,
    FieldPath,
    Junction,
    Not,
    OrderItem,
    Query,
    parse,
)


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
        return SoqlError(code, located(self.soql, pos, anchor, text))

    def compile(self, query: Query) -> CompiledQuery:
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

    def resolve_object(self, token: Token) -> ObjectSpec:
        spec = self.objects.get(token.text.lower())
        if spec is None:
            raise self.error(
                "INVALID_TYPE", token.pos, None, _NO_SUCH_OBJECT.format(entity=token.text)
            )
        return spec

    def resolve_select_list(self, paths: list[FieldPath]) -> list[_ResolvedField]:
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

    def resolve_field(self, path: FieldPath, anchor: int | None) -> _ResolvedField:
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

    def condition_sql(self, condition: Condition) -> str:
        if isinstance(condition, Junction):
            return (
                "("
                + f" {condition.keyword} ".join(map(self.condition_sql, condition.operands))
                + ")"
            )
        if isinstance(condition, Not):
            # SQL's NULL would make NOT(x) unknown; Salesforce's comparisons are two-valued.
            return f"(NOT COALESCE({self.condition_sql(condition.operand)}, 0))"
        return self.comparison_sql(condition)

    def comparison_sql(self, comparison: Comparison) -> str:
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

    def like_sql(self, resolved: _ResolvedField, comparison: Comparison) -> str:
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

    def literal_value(self, spec: FieldSpec, token: Token, anchor: int) -> object:
        if token.is_keyword("NULL"):
            return None
        self.check_literal_kind(spec, token, anchor)
        if token.like_only_escape is not None:
            raise self.error(
                "MALFORMED_QUERY",
                token.like_only_escape,
                anchor,
                illegal_escape_text(self.soql[token.like_only_escape : token.like_only_escape + 2]),
            )
        if token.kind == "ident":  # TRUE / FALSE
            return int(token.text.upper() == "TRUE")
        if spec.soql_type in ID_TYPES:
            return self.record_id(str(token.value), token, anchor)
        return token.value

    def check_literal_kind(self, spec: FieldSpec, token: Token, anchor: int) -> None:
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

    def record_id(self, value: str, token: Token, anchor: int) -> str:
        canonical = to_id18(value)
        if canonical is None:
            raise self.error(
                "INVALID_QUERY_FILTER_OPERATOR", token.pos, anchor, f"invalid ID field: {value}"
            )
        return canonical

    # -- ORDER BY and assembly -----------------------------------------------------------------

    def order_item_sql(self, item: OrderItem) -> str:
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
        query: Query,
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
    query = parse(soql)
    return _Compiler(soql, catalog, include_deleted).compile(query)
