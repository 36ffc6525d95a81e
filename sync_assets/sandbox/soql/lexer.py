"""Tokens of the SOQL subset, read one at a time with Salesforce's lexical errors."""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sync_assets.sandbox.soql.errors import column_of, illegal_escape_text, row_of


@dataclass(frozen=True)
class Token:
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


class LexError(Exception):
    """A character sequence no token starts with; the parser adds the location to the message."""

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(text)
        self.pos = pos
        self.text = text


class Lexer:
    """Reads one token at a time, so that a lexical error is reported within its condition."""

    def __init__(self, soql: str) -> None:
        self.soql = soql

    def token_after(self, pos: int) -> Token:
        while pos < len(self.soql) and self.soql[pos].isspace():
            pos += 1
        if pos == len(self.soql):
            return Token("eof", "<EOF>", pos)
        return self._token_at(pos)

    def _token_at(self, pos: int) -> Token:
        char = self.soql[pos]
        if char in "(),.":
            return Token(char, char, pos)
        if char == "'":
            return self._string_at(pos)
        if operator := _OPERATOR_RE.match(self.soql, pos):
            return Token("op", operator.group(), pos)
        if char.isdigit() or (char in "+-" and self.soql[pos + 1 : pos + 2].isdigit()):
            return self._number_or_date_at(pos)
        if identifier := _IDENT_RE.match(self.soql, pos):
            return Token("ident", identifier.group(), pos)
        raise self._no_viable_alternative(pos)

    def _number_or_date_at(self, pos: int) -> Token:
        if found := _DATETIME_RE.match(self.soql, pos):
            return Token("datetime", found.group(), pos, _utc_datetime(found))
        if partial := _DATETIME_PREFIX_RE.match(self.soql, pos):
            raise self._no_viable_alternative(partial.end())
        if found := _DATE_RE.match(self.soql, pos):
            return Token("date", found.group(), pos, _checked_date(found))
        if found := _NUMBER_RE.match(self.soql, pos):
            text = found.group()
            number: int | float = float(text) if "." in text else int(text)
            return Token("number", text, pos, number)
        raise self._no_viable_alternative(pos)

    def _string_at(self, start: int) -> Token:
        value: list[str] = []
        like: list[str] = []
        like_only_escape: int | None = None
        pos = start + 1
        while pos < len(self.soql):
            char = self.soql[pos]
            if char == "'":
                text = self.soql[start : pos + 1]
                return Token("string", text, start, "".join(value), "".join(like), like_only_escape)
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
                raise LexError(pos, illegal_escape_text(self.soql[pos : pos + 2]))
        end = len(self.soql)
        raise LexError(
            end,
            f"line {row_of(self.soql, end)}:{column_of(self.soql, end) - 1} "
            "mismatched character '<EOF>' expecting '''",
        )

    def _no_viable_alternative(self, pos: int) -> LexError:
        shown = self.soql[pos] if pos < len(self.soql) else "<EOF>"
        return LexError(
            pos,
            f"line {row_of(self.soql, pos)}:{column_of(self.soql, pos) - 1} "
            f"no viable alternative at character '{shown}'",
        )


def _checked_date(found: re.Match[str]) -> str:
    try:
        return date.fromisoformat(found.group()).isoformat()
    except ValueError:
        raise LexError(found.start(), f"invalid date: {found.group()}") from None


def _utc_datetime(found: re.Match[str]) -> str:
    """Normalise a datetime literal to the sandbox's stored form, ``yyyy-MM-ddTHH:mm:ss.SSS+0000``."""
    text = found.group()
    zone = found.group(5)
    millis = (found.group(4) or "").ljust(3, "0")[:3]
    try:
        moment = datetime.fromisoformat(text[:19] + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        raise LexError(found.start(), f"invalid dateTime: {text}") from None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis}+0000"
