"""Parsing the SOQL subset into a syntax tree, with Salesforce's errors for malformed queries.

Supported: ``SELECT COUNT() FROM X [WHERE …] [LIMIT n]`` and ``SELECT f, Rel.f FROM X [WHERE …]
[ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], …] [LIMIT n]``. Everything else (aggregates other than
``COUNT()``, GROUP BY, OFFSET, sub-queries, date literals such as ``TODAY``, aliases, INCLUDES) is
rejected as ``MALFORMED_QUERY``.
"""

from dataclasses import dataclass

from sync_assets.sandbox.soql.errors import SoqlError, located
from sync_assets.sandbox.soql.lexer import Lexer, LexError, Token


@dataclass(frozen=True)
class FieldPath:
    parts: tuple[str, ...]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Comparison:
    path: FieldPath
    operator: str  # = != < <= > >= LIKE IN NOT IN
    values: tuple[Token, ...]
    anchor: int


@dataclass(frozen=True)
class Not:
    operand: "Condition"


@dataclass(frozen=True)
class Junction:
    keyword: str  # AND / OR
    operands: tuple["Condition", ...]


Condition = Comparison | Not | Junction


@dataclass(frozen=True)
class OrderItem:
    path: FieldPath
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class Query:
    is_count: bool
    paths: list[FieldPath]
    object_token: Token
    where: Condition | None
    order_by: list[OrderItem]
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


class _Parser:
    """Recursive descent over the token list; remembers where the current condition began."""

    def __init__(self, soql: str) -> None:
        self.soql = soql
        self.lexer = Lexer(soql)
        self.tokens: list[Token] = []
        self.index = 0
        self.anchor: int | None = None

    def peek(self, ahead: int = 0) -> Token:
        while len(self.tokens) <= self.index + ahead:
            last = self.tokens[-1] if self.tokens else None
            if last is not None and last.kind == "eof":
                return last
            after = 0 if last is None else last.pos + len(last.text)
            try:
                self.tokens.append(self.lexer.token_after(after))
            except LexError as error:
                raise SoqlError(
                    "MALFORMED_QUERY", located(self.soql, error.pos, self.anchor, error.text)
                ) from None
        return self.tokens[self.index + ahead]

    @property
    def current(self) -> Token:
        return self.peek()

    def advance(self) -> Token:
        token = self.current
        self.index += 1
        return token

    def unexpected(self) -> SoqlError:
        token = self.current
        shown = token.text if token.kind == "eof" else f"'{token.text}'"
        return SoqlError(
            "MALFORMED_QUERY",
            located(self.soql, token.pos, self.anchor, f"unexpected token: {shown}"),
        )

    def expect_keyword(self, word: str) -> Token:
        if not self.current.is_keyword(word):
            raise self.unexpected()
        return self.advance()

    def expect_name(self) -> Token:
        if self.current.kind != "ident" or self.current.text.upper() in _RESERVED:
            raise self.unexpected()
        return self.advance()

    def expect(self, kind: str) -> Token:
        if self.current.kind != kind:
            raise self.unexpected()
        return self.advance()

    def parse(self) -> Query:
        self.expect_keyword("SELECT")
        is_count, paths = self.parse_select_list()
        self.expect_keyword("FROM")
        object_token = self.expect_name()
        where = None
        if self.current.is_keyword("WHERE"):
            self.advance()
            where = self.parse_condition()
            self.anchor = None
        order_by: list[OrderItem] = []
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
        return Query(is_count, paths, object_token, where, order_by, limit)

    def parse_select_list(self) -> tuple[bool, list[FieldPath]]:
        """Return whether the list is ``COUNT()`` (which must stand alone) and its field paths."""
        paths: list[FieldPath] = []
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
                located(
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
                located(
                    self.soql,
                    name.pos,
                    None,
                    "The sandbox supports no SOQL function other than COUNT()",
                ),
            )
        self.advance()

    def parse_path(self) -> FieldPath:
        first = self.expect_name()
        parts = [first.text]
        while self.current.kind == ".":
            self.advance()
            parts.append(self.expect_name().text)
        return FieldPath(tuple(parts), first.pos)

    def parse_condition(self) -> Condition:
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
        return Junction(keyword, tuple(operands))

    def parse_unary(self) -> Condition:
        self.anchor = self.current.pos
        if self.current.is_keyword("NOT"):
            self.advance()
            return Not(self.parse_unary())
        if self.current.kind == "(":
            self.advance()
            inner = self.parse_condition()
            self.expect(")")
            return inner
        return self.parse_comparison()

    def parse_comparison(self) -> Comparison:
        anchor = self.current.pos
        path = self.parse_path()
        operator_token = self.current
        if operator_token.kind == "op":
            self.advance()
            operator = "!=" if operator_token.text == "<>" else operator_token.text
            return Comparison(path, operator, (self.parse_value(),), anchor)
        if operator_token.is_keyword("LIKE"):
            self.advance()
            if self.current.kind != "string":
                raise self.unexpected()
            return Comparison(path, "LIKE", (self.advance(),), anchor)
        negated = operator_token.is_keyword("NOT")
        if negated:
            self.advance()
        self.expect_keyword("IN")
        return Comparison(path, "NOT IN" if negated else "IN", self.parse_value_list(), anchor)

    def parse_value(self) -> Token:
        token = self.current
        if token.kind in _VALUE_KINDS or token.is_keyword("NULL", "TRUE", "FALSE"):
            return self.advance()
        raise self.unexpected()

    def parse_value_list(self) -> tuple[Token, ...]:
        self.expect("(")
        values = [self.parse_value()]
        while self.current.kind == ",":
            self.advance()
            values.append(self.parse_value())
        self.expect(")")
        return tuple(values)

    def parse_order_by(self) -> list[OrderItem]:
        items: list[OrderItem] = []
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
            items.append(OrderItem(path, descending, nulls_last))
            if self.current.kind != ",":
                return items
            self.advance()

    def parse_limit(self) -> int:
        token = self.current
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
            raise self.unexpected()
        self.advance()
        return token.value


def parse(soql: str) -> Query:
    """Parse one SOQL query; raise :class:`SoqlError` (``MALFORMED_QUERY``) as Salesforce would."""
    return _Parser(soql).parse()
