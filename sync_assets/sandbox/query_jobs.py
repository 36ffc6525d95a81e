"""Bulk API 2.0 query jobs: the stored record, the create request's rules and the JobInfo shapes.

Shapes and states follow the Bulk API 2.0 Developer Guide (query_create_job, query_get_one_job,
query_get_all_jobs, query_abort_job, query_delete_job): a job starts ``UploadComplete``, runs
``InProgress`` and ends ``JobComplete``, ``Failed`` or ``Aborted``.
"""

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sync_assets.sandbox.errors import ApiError
from sync_assets.sandbox.jobs import (
    JobTable,
    enum_property,
    json_body,
    next_job_id,
    sf_timestamp,
)
from sync_assets.sandbox.soql.lexer import Lexer, LexError, Token
from sync_assets.sandbox.store import Database
from sync_assets.sandbox.upload import DELIMITERS, LINE_ENDINGS

QUERY_OPERATIONS = ("query", "queryAll")
ACTIVE_STATES = ("UploadComplete", "InProgress")
DELETABLE_STATES = ("JobComplete", "Aborted", "Failed")
_AGGREGATES = frozenset({"AVG", "COUNT", "COUNT_DISTINCT", "MAX", "MIN", "SUM"})
# Clauses Bulk query refuses (Bulk API 2.0 Developer Guide, "Bulk API 2.0 Query", SOQL
# considerations), each known by its keyword and the token after it. The sandbox's SOQL would
# refuse them anyway (MALFORMED_QUERY); the wording of these messages is not confirmed.
_CLAUSES: dict[str, tuple[Callable[[Token], bool], str]] = {
    "GROUP": (lambda after: after.is_keyword("BY"), "GROUP BY"),
    "OFFSET": (lambda after: after.kind == "number", "OFFSET"),
    "TYPEOF": (lambda after: after.kind == "ident", "TYPEOF"),
}

_DDL = """CREATE TABLE IF NOT EXISTS query_jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    operation TEXT NOT NULL,
    object TEXT NOT NULL,
    query TEXT NOT NULL,
    line_ending TEXT NOT NULL,
    column_delimiter TEXT NOT NULL,
    api_version TEXT NOT NULL,
    state TEXT NOT NULL,
    created_by_id TEXT NOT NULL,
    created_date TEXT NOT NULL,
    system_modstamp TEXT NOT NULL,
    error_message TEXT,
    number_processed INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    total_ms INTEGER NOT NULL DEFAULT 0,
    started REAL
)"""


@dataclass
class QueryJob:
    """One row of the ``query_jobs`` table."""

    id: str
    seq: int
    operation: str
    object: str
    query: str
    line_ending: str
    column_delimiter: str
    api_version: str
    state: str
    created_by_id: str
    created_date: str
    system_modstamp: str
    error_message: str | None
    number_processed: int
    retries: int
    total_ms: int
    started: float | None

    @property
    def include_deleted(self) -> bool:
        return self.operation == "queryAll"

    def _head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by_id,
            "createdDate": self.created_date,
            "systemModstamp": self.system_modstamp,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
        }

    def _format(self) -> dict[str, str]:
        return {"lineEnding": self.line_ending, "columnDelimiter": self.column_delimiter}

    def short_info(self) -> dict[str, Any]:
        """The create and abort answers: no jobType, no counters."""
        return self._head() | self._format()

    def list_info(self) -> dict[str, Any]:
        """An entry of ``GET /jobs/query``."""
        return self._head() | {"jobType": "V2Query"} | self._format()

    def full_info(self) -> dict[str, Any]:
        """``GET /jobs/query/{id}``: counters, times, and ``errorMessage`` once Failed."""
        info = self.list_info() | {
            "numberRecordsProcessed": self.number_processed,
            "retries": self.retries,
            "totalProcessingTime": self.total_ms,
            "isPkChunkingSupported": True,
        }
        if self.error_message is not None:
            info["errorMessage"] = self.error_message
        return info


@dataclass(frozen=True)
class QueryJobRequest:
    operation: str
    query: str
    line_ending: str
    column_delimiter: str


def parse_query_job_request(raw: bytes) -> QueryJobRequest:
    """Validate a create-query-job body (``operation`` and ``query`` required, CSV only)."""
    body = json_body(raw)
    operation = enum_property(body, "operation", QUERY_OPERATIONS, None)
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ApiError(400, "API_ERROR", "Invalid value: '' supplied for property: 'query'")
    enum_property(body, "contentType", ("CSV",), "CSV")
    refusal = bulk_refusal(query)
    if refusal is not None:
        raise ApiError(400, "API_ERROR", refusal)
    return QueryJobRequest(
        operation=operation,
        query=query,
        line_ending=enum_property(body, "lineEnding", tuple(LINE_ENDINGS), "LF"),
        column_delimiter=enum_property(body, "columnDelimiter", tuple(DELIMITERS), "COMMA"),
    )


def bulk_refusal(soql: str) -> str | None:
    """Why Bulk query refuses a SOQL that REST would run: subqueries, aggregates, some clauses.

    The subquery message is an org's (OpenFn/adaptors#395); the others follow its pattern.
    Lexical errors are left to the compiler, which reports them with their location.
    """
    try:
        tokens = _tokens(soql)
    except LexError:
        return None
    for token, after in pairwise(tokens):
        word = token.text.upper() if token.kind == "ident" else ""
        if token.kind == "(" and after.is_keyword("SELECT"):
            return "Aggregate Relationships not supported in Bulk V2 Query with CSV content type"
        if word in _AGGREGATES and after.kind == "(":
            return "Aggregate functions not supported in Bulk V2 Query"
        if word in _CLAUSES and _CLAUSES[word][0](after):
            return f"{_CLAUSES[word][1]} not supported in Bulk V2 Query"
    return None


def _tokens(soql: str) -> list[Token]:
    lexer = Lexer(soql)
    tokens = [lexer.token_after(0)]
    while tokens[-1].kind != "eof":
        tokens.append(lexer.token_after(tokens[-1].pos + len(tokens[-1].text)))
    return tokens


class QueryJobStore(JobTable[QueryJob]):
    """Query jobs in SQLite, in a table of their own."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, "query_jobs", QueryJob)
        with db.write() as conn:
            conn.execute(_DDL)

    def create(
        self, request: QueryJobRequest, object_name: str, api_version: str, user_id: str
    ) -> QueryJob:
        now = sf_timestamp()
        with self.db.write() as conn:
            job_id, number = next_job_id(self.db, conn)
            conn.execute(
                "INSERT INTO query_jobs (id, seq, operation, object, query, line_ending, "
                "column_delimiter, api_version, state, created_by_id, created_date, "
                "system_modstamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'UploadComplete', ?, ?, ?)",
                (
                    job_id,
                    number,
                    request.operation,
                    object_name,
                    request.query,
                    request.line_ending,
                    request.column_delimiter,
                    api_version,
                    user_id,
                    now,
                    now,
                ),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def change(self, job_id: str, allowed: tuple[str, ...], **values: Any) -> str | None:
        """Set columns of a job in one of the ``allowed`` states; the state it was in (None: none).

        The modstamp moves with every change.
        """
        values.setdefault("system_modstamp", sf_timestamp())
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self.db.write() as conn:
            state = self._state(conn, job_id)
            if state in allowed:
                conn.execute(
                    f"UPDATE query_jobs SET {assignments} WHERE id = ?", (*values.values(), job_id)
                )
        return state

    def delete(self, job_id: str) -> str | None:
        """Delete a job in a terminal state; the state it was in (None: no such job)."""
        with self.db.write() as conn:
            state = self._state(conn, job_id)
            if state in DELETABLE_STATES:
                conn.execute("DELETE FROM query_jobs WHERE id = ?", (job_id,))
        return state

    @staticmethod
    def _state(conn: sqlite3.Connection, job_id: str) -> str | None:
        row = conn.execute("SELECT state FROM query_jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else str(row[0])
