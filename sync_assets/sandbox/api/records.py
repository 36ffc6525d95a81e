"""REST sObject rows: create, get, update and delete by Id; get, upsert and delete by external id.

A write is a batch of one through the Bulk ingest's DML (``Processor.write_records``): the same
validation, derived fields, parent lookups, unique external ids, the org's validation rules and
automation, the maintenance window, row locks and row errors, which REST answers as
``[{"message", "errorCode", "fields"}]`` with status 400. Reads and writes see the object as the
requesting user does (field-level security: a hidden field is no column), and writes carry that
user's id (``LastModifiedById``). The HTTP shapes follow
the REST API Developer Guide (resources_sobject_basic_info / _retrieve / _upsert, dome_*) and
what simple-salesforce 1.12's ``SFType`` sends (``/sobjects/Opportunity/`` with a trailing slash,
``get(id, params={"fields": …})``, upsert values not URL-encoded).
"""

import json
import re
from typing import Any
from urllib.parse import unquote

from sync_assets.sandbox.api.messages import Request, Response, allow, json_response
from sync_assets.sandbox.convert import parse_row_error
from sync_assets.sandbox.dml.commit import BatchOutcome
from sync_assets.sandbox.dml.prepare import JobSpec
from sync_assets.sandbox.errors import ApiError, not_found
from sync_assets.sandbox.ids import to_id18
from sync_assets.sandbox.metadata import Catalog
from sync_assets.sandbox.objects import SET_NULL, ObjectDef
from sync_assets.sandbox.processing import Processor
from sync_assets.sandbox.query import QueryService
from sync_assets.sandbox.store import Database
from sync_assets.sandbox.upload import Column, resolve_column, rows_frame

# Upsert answers an update with 200 and ``"created": false`` from API 46.0 on, 204 before
# (REST API Developer Guide, dome_upsert: "created" appears in API version 46.0 and later).
CREATED_FLAG_VERSION = 46
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
_ROW_METHODS = ("HEAD", "GET", "PATCH", "DELETE")


def _inaccessible_external_id(name: str) -> ApiError:
    # What an org answers for a path segment that is neither a record Id nor an external id
    # field (observed: restforce#182, syndesis-ui#529).
    return ApiError(
        404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {name}"
    )


def _entity_is_deleted() -> ApiError:
    return ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", rest=True, fields=[])


def _read_only_object(spec: JobSpec) -> ApiError:
    """A write to an object the API only reads here (User, RecordType…).

    The form of orgs' answers to an object the user may not create ("entity type cannot be
    inserted: Contact", with the object's label); the update and delete wordings follow it.
    """
    verb = {"insert": "inserted", "delete": "deleted"}.get(spec.operation, "updated")
    return ApiError(
        400,
        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
        f"entity type cannot be {verb}: {spec.sobject.label}",
        rest=True,
        fields=[],
    )


def _json_error(message: str) -> ApiError:
    return ApiError(400, "JSON_PARSER_ERROR", message, rest=True)


def _reject_constant(name: str) -> None:
    """JSON has no NaN or Infinity, though Python's parser would read them."""
    raise _json_error(f"Non-standard token '{name}'")


def _cell(value: Any) -> str:
    """A JSON value as the CSV cell the DML reads: null (or "", stored as null) clears a field."""
    if value is None or value == "":
        return SET_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value
    raise _json_error(f"Cannot deserialize value of an sObject field from {type(value).__name__}")


class RecordResources:
    """The rows of the objects ``RestResources`` finds, as the requesting user sees them."""

    def __init__(
        self, db: Database, queries: QueryService, processor: Processor, catalog: Catalog
    ) -> None:
        self.db = db
        self.queries = queries
        self.processor = processor
        self.catalog = catalog

    def create(self, request: Request, sobject: ObjectDef) -> Response:
        """``POST /sobjects/<Object>/``: 201 ``{"id", "success", "errors"}``."""
        outcome = self._write(request, JobSpec(sobject, "insert", None), self._body(request))
        return json_response({"id": outcome.record_ids[0], "success": True, "errors": []}, 201)

    def handle(self, request: Request, sobject: ObjectDef, parts: list[str]) -> Response:
        """``/sobjects/<Object>/<id>`` and ``/sobjects/<Object>/<externalIdField>/<value>``."""
        if len(parts) not in (1, 2):
            raise not_found()
        allow(request, *_ROW_METHODS)
        if len(parts) == 2:
            key_field, value = self._key_field(sobject, parts[0]), unquote(parts[1])
            if request.method == "PATCH":
                return self._upsert(request, sobject, key_field, value)
            record_id = self._matching_id(sobject, key_field, value)
        else:
            record_id = self._record_id(sobject, parts[0])
            if request.method == "PATCH":
                return self._update(request, sobject, record_id)
        if request.method == "GET":
            return self._get(request, sobject, record_id)
        return self._delete(request, sobject, record_id)

    # -- reads -----------------------------------------------------------------------------

    def _get(self, request: Request, sobject: ObjectDef, record_id: str) -> Response:
        """The record with every field, or the ``fields`` asked for, ``attributes`` first."""
        wanted = request.query.get("fields")
        fields = [f.name for f in sobject.fields] if not wanted else _field_paths(wanted)
        conn = self.db.connection()
        catalog = self.catalog.for_user(request.user_id)
        record = self.queries.record(
            conn, sobject.name, record_id, fields, request.api_version, catalog
        )
        if record is None:
            raise not_found()
        return json_response(record)

    def _record_id(self, sobject: ObjectDef, segment: str) -> str:
        """The live record a path segment names by Id; 404 for anything else, as an org answers."""
        record_id = to_id18(segment)
        if record_id is None or not record_id.startswith(sobject.key_prefix):
            raise _inaccessible_external_id(segment)
        row = (
            self.db.connection()
            .execute(f'SELECT "IsDeleted" FROM "{sobject.name}" WHERE "Id" = ?', (record_id,))
            .fetchone()
        )
        if row is None:
            raise not_found()
        if row[0]:
            raise _entity_is_deleted()
        return record_id

    @staticmethod
    def _key_field(sobject: ObjectDef, name: str) -> str:
        field = sobject.field(name)
        if field is None or not (field.external_id or field.name == "Id"):
            raise _inaccessible_external_id(name)
        return field.name

    def _matching_id(self, sobject: ObjectDef, key_field: str, value: str) -> str:
        if key_field == "Id":
            return self._record_id(sobject, value)
        row = (
            self.db.connection()
            .execute(
                f'SELECT "Id" FROM "{sobject.name}" WHERE "{key_field}" = ? AND "IsDeleted" = 0',
                (value,),
            )
            .fetchone()
        )
        if row is None:
            raise not_found()
        return str(row[0])

    # -- writes ----------------------------------------------------------------------------

    def _update(self, request: Request, sobject: ObjectDef, record_id: str) -> Response:
        """``PATCH /sobjects/<Object>/<id>``: 204; an ``Id`` in the body is refused."""
        body = self._body(request)
        if any(name.lower() == "id" for name in body):
            # Observed answer (jesperfj/force-rest-api#69).
            raise ApiError(
                400,
                "INVALID_FIELD",
                "The Id field should not be specified in the sobject data.",
                rest=True,
            )
        self._write(request, JobSpec(sobject, "update", None), {"Id": record_id, **body})
        return Response(204, content_type=None)

    def _delete(self, request: Request, sobject: ObjectDef, record_id: str) -> Response:
        """``DELETE``: 204; the record goes to the recycle bin (``IsDeleted``, seen by queryAll)."""
        self._write(request, JobSpec(sobject, "delete", None), {"Id": record_id})
        return Response(204, content_type=None)

    def _upsert(self, request: Request, sobject: ObjectDef, key_field: str, value: str) -> Response:
        """``PATCH /sobjects/<Object>/<field>/<value>``: 201 when created, else 200 (204 < v46).

        The key comes from the URL; the body's own value for that field, if any, is not used.
        """
        body = {k: v for k, v in self._body(request).items() if k.lower() != key_field.lower()}
        spec = JobSpec(sobject, "upsert", key_field)
        outcome = self._write(request, spec, {key_field: value, **body})
        created = outcome.created[0]
        answer: dict[str, Any] = {"id": outcome.record_ids[0], "success": True, "errors": []}
        if int(request.api_version.split(".")[0]) < CREATED_FLAG_VERSION:
            return json_response(answer, 201) if created else Response(204, content_type=None)
        return json_response(answer | {"created": created}, 201 if created else 200)

    def _write(self, request: Request, spec: JobSpec, values: dict[str, Any]) -> BatchOutcome:
        """Apply one record through the DML as the requesting user; a row error as REST's 400."""
        if not spec.sobject.createable:
            raise _read_only_object(spec)
        names = list(values)
        columns = [self._column(spec.sobject, i, name) for i, name in enumerate(names)]
        frame = rows_frame([[_cell(values[name]) for name in names]], len(names))
        outcome = self.processor.write_records(spec, columns, frame, request.user_id)
        error = outcome.errors[0]
        if error is not None:
            code, message, fields = parse_row_error(error)
            raise ApiError(400, code, message, rest=True, fields=fields)
        return outcome

    @staticmethod
    def _column(sobject: ObjectDef, index: int, name: str) -> Column:
        column = resolve_column(sobject, index, name)
        if column is None:
            # Observed answer (wadewegner/Force.com-Toolkit-for-NET#90).
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"No such column '{name}' on sobject of type {sobject.name}",
                rest=True,
            )
        return column

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        """The record's fields; a nested object sets a parent by an indexed field (``Account``)."""
        try:
            body = json.loads(request.body or b"null", parse_constant=_reject_constant)
        except json.JSONDecodeError as error:
            raise _json_error(
                f"{error.msg} at [line:{error.lineno}, column:{error.colno}]"
            ) from None
        except UnicodeDecodeError:
            raise _json_error("Invalid UTF-8 in the request body") from None
        if not isinstance(body, dict):
            raise _json_error("Cannot deserialize instance of sObject from a non-object value")
        fields: dict[str, Any] = {}
        for name, value in body.items():
            if name == "attributes":
                continue
            if isinstance(value, dict):
                fields.update(
                    (f"{name}.{parent_field}", parent_value)
                    for parent_field, parent_value in value.items()
                    if parent_field != "attributes"
                )
            else:
                fields[name] = value
        return fields


def _field_paths(wanted: str) -> list[str]:
    """The ``fields`` parameter's names; anything but a field path is refused before any SOQL."""
    names = [name.strip() for name in wanted.split(",")]
    for name in names:
        if not _FIELD_PATH.fullmatch(name):
            raise ApiError(400, "INVALID_FIELD", f"No such column '{name}'", rest=True)
    return names
