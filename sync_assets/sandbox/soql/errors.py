"""SOQL errors as Salesforce reports them: a code, and a message pointing at the offence."""

from typing import Literal

ErrorCode = Literal[
    "MALFORMED_QUERY", "INVALID_TYPE", "INVALID_FIELD", "INVALID_QUERY_FILTER_OPERATOR"
]


class SoqlError(Exception):
    """A query Salesforce would reject; ``error_code`` and ``message`` form the REST error body."""

    def __init__(self, error_code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code: str = error_code
        self.message: str = message


# Error locations, as Salesforce prints them: the offending line (from the start of the condition
# being read, when there is one), a caret under the offending character, then Row:Column.


def row_of(soql: str, pos: int) -> int:
    return soql.count("\n", 0, pos) + 1


def column_of(soql: str, pos: int) -> int:
    return pos - (soql.rfind("\n", 0, pos) + 1) + 1


def located(soql: str, pos: int, anchor: int | None, text: str) -> str:
    if pos == len(soql) and pos > 0:
        pos -= 1  # Salesforce puts the caret for <EOF> under the last character
    line_start = soql.rfind("\n", 0, pos) + 1
    line_end = soql.find("\n", pos)
    start = anchor if anchor is not None and line_start <= anchor <= pos else line_start
    snippet = soql[start : len(soql) if line_end < 0 else line_end]
    caret = " " * (pos - start) + "^"
    where = f"ERROR at Row:{row_of(soql, pos)}:Column:{column_of(soql, pos)}"
    return f"\n{snippet}\n{caret}\n{where}\n{text}"


def illegal_escape_text(sequence: str) -> str:
    return (
        f"Invalid string literal '{sequence}'. "
        f"Illegal character sequence '{sequence}' in string literal."
    )
