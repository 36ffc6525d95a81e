"""Bulk API 2.0 ingest jobs: the stored record, the create request's rules and the JobInfo shapes."""

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sync_assets.sandbox.errors import ApiError
from sync_assets.sandbox.ids import mint_ids, to_id18
from sync_assets.sandbox.objects import JOB_KEY_PREFIX, ObjectDef, find_object
from sync_assets.sandbox.store import Database
from sync_assets.sandbox.upload import DELIMITERS, LINE_ENDINGS

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
TERMINAL_STATES = ("JobComplete", "Failed", "Aborted")
DELETABLE_STATES = ("UploadComplete", "JobComplete", "Aborted", "Failed")
ABORTABLE_STATES = ("Open", "UploadComplete", "InProgress")
StoredJob = TypeVar("StoredJob", bound="DataclassInstance")


def sf_timestamp(moment: datetime | None = None) -> str:
    """``2022-01-02T21:33:43.000+0000``: the timestamp form of job JSON and datetime fields."""
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


@dataclass
class Job:
    """One row of the ``jobs`` table."""

    id: str
    seq: int
    object: str
    operation: str
    external_id_field: str | None
    assignment_rule_id: str | None
    line_ending: str
    column_delimiter: str
    api_version: str
    state: str
    created_date: str
    system_modstamp: str
    error_message: str | None
    uploaded: int
    upload_bytes: int
    records_received: int
    number_processed: int
    number_failed: int
    retries: int
    lock_failures: int
    total_ms: int
    api_active_ms: int
    started: float | None
    fail_at_batch: int | None
    created_by: str
    abort_at_batch: int | None
    stuck_at_batch: int | None
    stuck_until: float | None
    apex_ms: int

    @property
    def content_url(self) -> str:
        return f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"

    def _head(self) -> dict[str, Any]:
        head: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": "",
            "createdDate": self.created_date,
            "systemModstamp": self.system_modstamp,
            "state": self.state,
        }
        if self.external_id_field is not None:
            head["externalIdFieldName"] = self.external_id_field
        if self.assignment_rule_id is not None:
            head["assignmentRuleId"] = self.assignment_rule_id
        head.update(
            concurrencyMode="Parallel", contentType="CSV", apiVersion=float(self.api_version)
        )
        return head

    def created_info(self, user_id: str) -> dict[str, Any]:
        """The create answer (reference §1.4): no jobType, no counters."""
        info = self._head() | {"createdById": user_id}
        info.update(
            contentUrl=self.content_url,
            lineEnding=self.line_ending,
            columnDelimiter=self.column_delimiter,
        )
        return info

    def short_info(self, user_id: str) -> dict[str, Any]:
        """The PATCH answer (reference §1.5)."""
        return self._head() | {"createdById": user_id}

    def full_info(self, user_id: str) -> dict[str, Any]:
        """The GET answer (reference §1.6); both counters are always present."""
        info = self._head() | {"createdById": user_id}
        info["jobType"] = "V2Ingest"
        if self.state == "Open":
            info["contentUrl"] = self.content_url
        info.update(
            lineEnding=self.line_ending,
            columnDelimiter=self.column_delimiter,
            numberRecordsProcessed=self.number_processed,
            numberRecordsFailed=self.number_failed,
            retries=self.retries,
            totalProcessingTime=self.total_ms,
            apiActiveProcessingTime=self.api_active_ms,
            apexProcessingTime=self.apex_ms,
        )
        if self.error_message is not None:
            info["errorMessage"] = self.error_message
        return info

    def list_info(self, user_id: str) -> dict[str, Any]:
        """An entry of GET /jobs/ingest (reference §1.7)."""
        info = self._head() | {"createdById": user_id}
        info.update(
            jobType="V2Ingest", lineEnding=self.line_ending, columnDelimiter=self.column_delimiter
        )
        info.pop("externalIdFieldName", None)
        info.pop("assignmentRuleId", None)
        return info


@dataclass(frozen=True)
class JobRequest:
    sobject: ObjectDef
    operation: str
    external_id_field: str | None
    assignment_rule_id: str | None
    line_ending: str
    column_delimiter: str


def enum_property(
    body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str | None
) -> str:
    """A create-job body property with one of ``allowed`` values (or its default)."""
    value = body.get(name, default)
    if not isinstance(value, str) or value not in allowed:
        shown = "" if value is None else value
        raise ApiError(
            400, "API_ERROR", f"Invalid value: '{shown}' supplied for property: '{name}'"
        )
    return value


def json_body(raw: bytes) -> dict[str, Any]:
    """A create-job request body: a JSON object."""
    try:
        body = json.loads(raw or b"null")
    except ValueError as error:
        # Bytes that are not UTF-8 raise UnicodeDecodeError, which has no ``msg``.
        detail = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {detail}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body


def requested_state(raw: bytes, allowed: tuple[str, ...]) -> str:
    """The state a PATCH of a job asks for, one of ``allowed``."""
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from None
    state = body.get("state") if isinstance(body, dict) else None
    if state not in allowed:
        raise ApiError(
            400, "INVALIDJOBSTATE", f"Invalid state: '{state}'. Use {' or '.join(allowed)}"
        )
    return str(state)


def state_conflict(verb: str, state: str) -> ApiError:
    """A state change the job's current state does not allow (reference §1.5, query abort docs)."""
    shown = "Completed" if state == "JobComplete" else state
    return ApiError(400, "INVALIDJOBSTATE", f"{verb} already {shown} Job not allowed")


def not_terminated() -> ApiError:
    """Deleting a job that is not in a terminal state (reference §1.8)."""
    return ApiError(
        400,
        "API_ERROR",
        "Error encountered when deleting the job because the job is not terminated",
    )


def next_job_id(db: Database, conn: sqlite3.Connection) -> tuple[str, int]:
    """A new job id (``750…``, ingest and query jobs alike) and its sequence number."""
    number = db.allocate(conn, f"counter:{JOB_KEY_PREFIX}", 1)
    return mint_ids(JOB_KEY_PREFIX, number, 1)[0], number


def parse_job_request(
    raw: bytes, find: Callable[[str], ObjectDef | None] = find_object
) -> JobRequest:
    """Validate a create-job body with the errors real orgs give (reference §1.3).

    ``find`` looks objects up as the creating user sees them.
    """
    body = json_body(raw)
    operation = enum_property(body, "operation", OPERATIONS, None)
    object_name = body.get("object")
    sobject = find(object_name) if isinstance(object_name, str) else None
    if sobject is None:
        raise ApiError(
            400, "INVALIDJOB", f"InvalidJob : Unable to find object: {object_name or ''}"
        )
    enum_property(body, "contentType", ("CSV",), "CSV")
    external_id_field = (
        _upsert_key(sobject, body.get("externalIdFieldName")) if operation == "upsert" else None
    )
    return JobRequest(
        sobject=sobject,
        operation=operation,
        external_id_field=external_id_field,
        assignment_rule_id=body.get("assignmentRuleId"),
        line_ending=enum_property(body, "lineEnding", tuple(LINE_ENDINGS), "LF"),
        column_delimiter=enum_property(body, "columnDelimiter", tuple(DELIMITERS), "COMMA"),
    )


def _upsert_key(sobject: ObjectDef, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ApiError(
            400,
            "INVALIDJOB",
            f"InvalidJob : External ID was blank for {sobject.name}. "
            "An External ID must be specified for upsert.",
        )
    found = sobject.field(name)
    if found is None or not (found.external_id or found.name == "Id"):
        raise ApiError(
            400,
            "INVALIDJOB",
            f"InvalidJob : Field name provided, {name} does not match an External ID "
            f"for {sobject.name}",
        )
    return found.name


class JobTable(Generic[StoredJob]):
    """A table of jobs, one dataclass a row: by id, a page in creation order, those in states.

    Reads use the calling thread's connection; writes take the write lock.
    """

    def __init__(self, db: Database, table: str, row_type: type[StoredJob]) -> None:
        self.db = db
        self._table = table
        self._row_type = row_type

    def _from_row(self, row: sqlite3.Row) -> StoredJob:
        return self._row_type(**{f.name: row[f.name] for f in fields(self._row_type)})

    def get(self, job_id: str) -> StoredJob | None:
        id18 = to_id18(job_id)
        if id18 is None:
            return None
        row = (
            self.db.connection()
            .execute(f"SELECT * FROM {self._table} WHERE id = ?", (id18,))
            .fetchone()
        )
        return None if row is None else self._from_row(row)

    def page(self, offset: int, limit: int) -> list[StoredJob]:
        rows = self.db.connection().execute(
            f"SELECT * FROM {self._table} ORDER BY seq LIMIT ? OFFSET ?", (limit, offset)
        )
        return [self._from_row(r) for r in rows]

    def in_states(self, states: tuple[str, ...]) -> list[StoredJob]:
        marks = ", ".join("?" * len(states))
        rows = self.db.connection().execute(
            f"SELECT * FROM {self._table} WHERE state IN ({marks}) ORDER BY seq", states
        )
        return [self._from_row(r) for r in rows]


class JobStore(JobTable[Job]):
    """Ingest jobs in SQLite."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, "jobs", Job)

    def create(self, request: JobRequest, api_version: str, created_by: str) -> Job:
        now = sf_timestamp()
        with self.db.write() as conn:
            job_id, number = next_job_id(self.db, conn)
            conn.execute(
                "INSERT INTO jobs (id, seq, object, operation, external_id_field, "
                "assignment_rule_id, line_ending, column_delimiter, api_version, state, "
                "created_date, system_modstamp, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'Open', ?, ?, ?)",
                (
                    job_id,
                    number,
                    request.sobject.name,
                    request.operation,
                    request.external_id_field,
                    request.assignment_rule_id,
                    request.line_ending,
                    request.column_delimiter,
                    api_version,
                    now,
                    now,
                    created_by,
                ),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def adopt_orphans(self, user_id: str) -> None:
        """Give jobs from before jobs had creators to ``user_id`` (the integration user)."""
        with self.db.write() as conn:
            conn.execute("UPDATE jobs SET created_by = ? WHERE created_by IS NULL", (user_id,))

    @staticmethod
    def update(conn: sqlite3.Connection, job_id: str, **values: Any) -> None:
        """Set columns of a job inside a write transaction; the modstamp moves with every change."""
        values.setdefault("system_modstamp", sf_timestamp())
        assignments = ", ".join(f"{name} = ?" for name in values)
        conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id))

    @staticmethod
    def delete(conn: sqlite3.Connection, job_id: str) -> None:
        conn.execute("DELETE FROM batches WHERE job_id = ?", (job_id,))
        conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
