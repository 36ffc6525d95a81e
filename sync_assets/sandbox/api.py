"""The sandbox's resources: OAuth, versions, limits, sobjects, query and Bulk API 2.0 ingest.

Transport-free: :meth:`SandboxApp.handle` turns a :class:`Request` into a :class:`Response`; the
HTTP server (``server.py``) does sockets, TLS, chunked bodies, gzip and fault injection.
"""

import base64
import email.parser
import email.policy
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sync_assets.sandbox.auth import OAuthError, OrgIdentity, TokenStore
from sync_assets.sandbox.errors import ApiError, invalid_session, not_found
from sync_assets.sandbox.jobs import (
    ABORTABLE_STATES,
    DELETABLE_STATES,
    Job,
    JobStore,
    parse_job_request,
)
from sync_assets.sandbox.limits import API_REQUESTS, DailyLimits
from sync_assets.sandbox.objects import OBJECTS, find_object
from sync_assets.sandbox.processing import Processor
from sync_assets.sandbox.query import QueryService
from sync_assets.sandbox.results import FAILED, SUCCESSFUL, UNPROCESSED, stream_rows
from sync_assets.sandbox.store import Database
from sync_assets.sandbox.upload import ParsedUpload

OLDEST_VERSION, NEWEST_VERSION = 31, 66
FIRST_INGEST_VERSION = 41
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
JOBS_PER_PAGE = 1_000
_UPLOAD_LOCK_STRIPES = 64
JSON = "application/json;charset=UTF-8"
CSV = "text/csv; charset=UTF-8"
_SEASONS = ("Winter", "Spring", "Summer")
_VERSIONED = re.compile(r"^/services/data/v(\d+)\.(\d)(/.*)?$")
_RESULT_KINDS = {k.lower(): k for k in (SUCCESSFUL, FAILED, UNPROCESSED)}
log = logging.getLogger(__name__)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    api_version: str = ""


@dataclass
class Response:
    status: int
    body: bytes | Iterator[bytes] = b""
    content_type: str | None = JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode())


def release_label(version: int) -> str:
    """The release a version shipped in: 59.0 was Winter '24, one release every third of a year."""
    offset = version - 59
    return f"{_SEASONS[offset % 3]} '{24 + offset // 3:02d}"


class SandboxApp:
    def __init__(
        self,
        db: Database,
        identity: OrgIdentity,
        tokens: TokenStore,
        limits: DailyLimits,
        jobs: JobStore,
        processor: Processor,
        instance_url: Callable[[], str],
    ) -> None:
        self.db = db
        self.identity = identity
        self.tokens = tokens
        self.limits = limits
        self.jobs = jobs
        self.processor = processor
        self.instance_url = instance_url
        self.queries = QueryService()
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        # Striped by job: two PUTs to one job are serialised, uploads to different jobs are not.
        self._upload_locks = [threading.Lock() for _ in range(_UPLOAD_LOCK_STRIPES)]

    def count(self, name: str, amount: int = 1) -> None:
        with self._counts_lock:
            self.counts[name] += amount

    # -- entry -----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        self.count("requests")
        try:
            return self._route(request)
        except ApiError as error:
            return json_response(error.body(), error.status)
        except OAuthError as error:
            return json_response(
                {"error": error.error, "error_description": error.description}, error.status
            )

    def _route(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path == "/services/oauth2/token":
            self._allow(request, "POST")
            return self._token(request)
        if path == "/services/oauth2/userinfo":
            self._authenticate(request)
            return json_response(self._userinfo())
        if path == "/services/data":
            return json_response(self._versions())
        if path == "/__sandbox/stats":
            self._authenticate(request)
            return json_response(self._stats())
        matched = _VERSIONED.match(path)
        if matched is None:
            raise not_found()
        major = int(matched.group(1))
        request.api_version = f"{major}.{matched.group(2)}"
        if major < OLDEST_VERSION:
            raise ApiError(
                410,
                "GONE",
                f"API version {request.api_version} has been retired; supported versions are "
                f"{OLDEST_VERSION}.0 to {NEWEST_VERSION}.0",
            )
        if major > NEWEST_VERSION or matched.group(2) != "0":
            raise not_found()
        self._authenticate(request)
        if not self.limits.try_consume(API_REQUESTS):
            raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        response = self._versioned(request, matched.group(3) or "")
        used, maximum = self.limits.usage(API_REQUESTS)
        response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{maximum}"
        return response

    @staticmethod
    def _allow(request: Request, *methods: str) -> None:
        if request.method not in methods:
            raise ApiError(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{request.method}' not allowed. Allowed are {','.join(methods)}",
            )

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not self.tokens.valid(token.strip()):
            raise invalid_session()

    # -- OAuth and identity ----------------------------------------------------------------

    def _token(self, request: Request) -> Response:
        token = self.tokens.grant(request.body)
        issued_ms = str(int(self._now_ms()))
        identity_url = self._identity_url()
        signature = hmac.new(
            self.identity.client_secret.get_secret_value().encode(),
            (identity_url + issued_ms).encode(),
            hashlib.sha256,
        ).digest()
        return json_response(
            {
                "access_token": token,
                "signature": base64.b64encode(signature).decode(),
                "scope": "api",
                "instance_url": self.instance_url(),
                "id": identity_url,
                "token_type": "Bearer",
                "issued_at": issued_ms,
            }
        )

    @staticmethod
    def _now_ms() -> float:
        return time.time() * 1000

    def _identity_url(self) -> str:
        return f"{self.instance_url()}/id/{self.identity.org_id}/{self.identity.user_id}"

    def _userinfo(self) -> dict[str, Any]:
        return {
            "sub": self._identity_url(),
            "user_id": self.identity.user_id,
            "organization_id": self.identity.org_id,
            "preferred_username": self.identity.username,
            "nickname": "integration",
            "name": "Integration User",
            "email": self.identity.username,
            "email_verified": True,
            "zoneinfo": "GMT",
            "locale": "en_US",
            "language": "en_US",
            "user_type": "STANDARD",
            "active": True,
        }

    @staticmethod
    def _versions() -> list[dict[str, str]]:
        return [
            {"label": release_label(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
            for v in range(OLDEST_VERSION, NEWEST_VERSION + 1)
        ]

    # -- versioned resources ---------------------------------------------------------------

    def _versioned(self, request: Request, rest: str) -> Response:
        parts = [p for p in rest.split("/") if p]
        base = f"/services/data/v{request.api_version}"
        if not parts:
            self._allow(request, "GET")
            return json_response(
                {
                    name: f"{base}/{name}"
                    for name in ("jobs", "limits", "query", "queryAll", "sobjects")
                }
            )
        head = parts[0]
        if head == "limits" and len(parts) == 1:
            self._allow(request, "GET")
            return json_response(self._limits())
        if head == "sobjects":
            self._allow(request, "GET")
            return self._sobjects(request, parts[1:])
        if head in ("query", "queryAll") and len(parts) <= 2:
            self._allow(request, "GET")
            return self._query(request, head == "queryAll", parts[1] if len(parts) == 2 else None)
        if head == "jobs" and len(parts) >= 2 and parts[1] == "ingest":
            if int(request.api_version.split(".")[0]) < FIRST_INGEST_VERSION:
                raise not_found()
            return self._ingest(request, parts[2:])
        raise not_found()

    def _limits(self) -> dict[str, Any]:
        counted = self.limits.snapshot()
        return {
            "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
            **{name: counted[name] for name in sorted(counted)},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            "FileStorageMB": {"Max": 1024, "Remaining": 1024},
        }

    def _sobjects(self, request: Request, parts: list[str]) -> Response:
        version = request.api_version
        if not parts:
            return json_response(
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [o.summary(version) for o in OBJECTS.values()],
                }
            )
        if parts[0] == "User" and len(parts) == 2 and parts[1] == self.identity.user_id:
            return json_response(
                {
                    "attributes": {
                        "type": "User",
                        "url": f"/services/data/v{version}/sobjects/User/{parts[1]}",
                    },
                    "Id": parts[1],
                    "Username": self.identity.username,
                }
            )
        sobject = find_object(parts[0])
        if sobject is None:
            raise ApiError(
                404, "NOT_FOUND", f"The requested resource does not exist: {parts[0]}", rest=True
            )
        if len(parts) == 1:
            return json_response({"objectDescribe": sobject.summary(version), "recentItems": []})
        if len(parts) == 2 and parts[1] == "describe":
            return json_response(sobject.describe(version))
        raise not_found()

    def _query(self, request: Request, include_deleted: bool, locator: str | None) -> Response:
        conn = self.db.connection()
        if locator is not None:
            page = self.queries.next_page(conn, locator, include_deleted, request.api_version)
        else:
            page = self.queries.first_page(
                conn, request.query.get("q"), include_deleted, request.api_version
            )
        return json_response(page)

    # -- Bulk API 2.0 ingest ---------------------------------------------------------------

    def _ingest(self, request: Request, parts: list[str]) -> Response:
        if not parts:
            self._allow(request, "POST", "GET")
            if request.method == "GET":
                return self._list_jobs(request)
            return self._create_job(request)
        job = self.jobs.get(parts[0])
        if job is None:
            raise not_found()
        if len(parts) == 1:
            self._allow(request, "GET", "PATCH", "DELETE")
            if request.method == "GET":
                return json_response(job.full_info(self.identity.user_id))
            if request.method == "PATCH":
                return self._patch_job(request, job)
            return self._delete_job(job)
        if len(parts) == 2 and parts[1] == "batches":
            self._allow(request, "PUT")
            return self._upload(request, job)
        kind = _RESULT_KINDS.get(parts[1].lower()) if len(parts) == 2 else None
        if kind is None:
            raise not_found()
        self._allow(request, "GET")
        return self._results(job, kind)

    def _create_job(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if content_type.lower().startswith("multipart/form-data"):
            return self._create_multipart(request, content_type)
        job = self.jobs.create(parse_job_request(request.body), request.api_version)
        return json_response(job.created_info(self.identity.user_id))

    def _create_multipart(self, request: Request, content_type: str) -> Response:
        """Create and upload in one request (parts ``job`` and ``content``): starts UploadComplete."""
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
        )
        parts = {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()
        }
        if not isinstance(parts.get("job"), bytes) or not isinstance(parts.get("content"), bytes):
            raise ApiError(
                400, "INVALIDJOB", "InvalidJob : A multipart request needs a job and a content part"
            )
        job = self.jobs.create(parse_job_request(parts["job"]), request.api_version)
        self._store_upload(job, parts["content"])
        job = self._transition(job, "UploadComplete")
        self.processor.submit(job)
        return json_response(job.created_info(self.identity.user_id))

    def _list_jobs(self, request: Request) -> Response:
        locator = request.query.get("queryLocator", "")
        offset = int(locator.rpartition("-")[2]) if locator.rpartition("-")[2].isdigit() else 0
        wanted_type = request.query.get("jobType")
        jobs = (
            []
            if wanted_type not in (None, "V2Ingest")
            else self.jobs.page(offset, JOBS_PER_PAGE + 1)
        )
        done = len(jobs) <= JOBS_PER_PAGE
        next_url = None
        if not done:
            next_url = (
                f"/services/data/v{request.api_version}/jobs/ingest"
                f"?queryLocator=01gSx0000000000AAA-{offset + JOBS_PER_PAGE}"
            )
        return json_response(
            {
                "done": done,
                "records": [j.list_info(self.identity.user_id) for j in jobs[:JOBS_PER_PAGE]],
                "nextRecordsUrl": next_url,
            }
        )

    def _patch_job(self, request: Request, job: Job) -> Response:
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from None
        state = body.get("state") if isinstance(body, dict) else None
        if state not in ("UploadComplete", "Aborted"):
            raise ApiError(
                400, "INVALIDJOBSTATE", f"Invalid state: '{state}'. Use UploadComplete or Aborted"
            )
        updated = self._transition(job, state)
        if state == "UploadComplete":
            if updated.uploaded:
                self.processor.submit(updated)
            else:
                self.processor.fail(
                    updated.id, "ClientInputError : No data was uploaded for the job"
                )
        return json_response(updated.short_info(self.identity.user_id))

    def _transition(self, job: Job, state: str) -> Job:
        allowed = ("Open",) if state == "UploadComplete" else ABORTABLE_STATES
        with self.db.write() as conn:
            current = conn.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()
            if current is None:
                raise not_found()
            if current["state"] not in allowed:
                verb = "Closing" if state == "UploadComplete" else "Aborting"
                shown = "Completed" if current["state"] == "JobComplete" else current["state"]
                raise ApiError(400, "INVALIDJOBSTATE", f"{verb} already {shown} Job not allowed")
            JobStore.update(conn, job.id, state=state)
        updated = self.jobs.get(job.id)
        if updated is None:
            raise not_found()
        return updated

    def _delete_job(self, job: Job) -> Response:
        with self.db.write() as conn:
            current = conn.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()
            if current is None:
                raise not_found()
            if current["state"] not in DELETABLE_STATES:
                raise ApiError(
                    400,
                    "API_ERROR",
                    "Error encountered when deleting the job because the job is not terminated",
                )
            JobStore.delete(conn, job.id)
        self.processor.forget(job.id)
        self.processor.files(job.id).remove()
        return Response(204, content_type=None)

    def _upload(self, request: Request, job: Job) -> Response:
        content_type = request.headers.get("content-type", "text/csv")
        if not content_type.lower().startswith("text/csv"):
            raise ApiError(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"Content type {content_type} is not supported for job data; use text/csv",
            )
        self._store_upload(job, request.body)
        return Response(201, content_type=None)

    def _store_upload(self, job: Job, data: bytes) -> None:
        """Keep the one upload a job may have; a second one fails as on a real org."""
        if job.uploaded:
            raise _multiple_uploads(job)
        if job.state != "Open":
            raise ApiError(
                400, "INVALIDJOBSTATE", f"Job data can not be uploaded in state {job.state}"
            )
        parsed = self.processor.parse(job, data)
        received = parsed.count if isinstance(parsed, ParsedUpload) else 0
        with self._upload_locks[hash(job.id) % _UPLOAD_LOCK_STRIPES]:
            # Serialises check-and-mark so two PUTs to one job cannot both pass the check.
            current = self.jobs.get(job.id)
            if current is None:
                raise not_found()
            if current.uploaded:
                raise _multiple_uploads(job)
            self.processor.files(job.id).save_upload(data)
            with self.db.write() as conn:
                JobStore.update(
                    conn, job.id, uploaded=1, upload_bytes=len(data), records_received=received
                )

    def _results(self, job: Job, kind: str) -> Response:
        files = self.processor.files(job.id)
        if kind == UNPROCESSED:
            header, rows = self.processor.unprocessed_rows(job)
            body = stream_rows(kind, header, rows, job.column_delimiter, job.line_ending)
        else:
            header = self._header(job)
            body = files.stream_results(
                kind,
                header,
                self.processor.done_batches(job.id),
                job.column_delimiter,
                job.line_ending,
                lambda index: self.processor.rewrite_results(job, index),
            )
        return Response(200, body, CSV)

    def _header(self, job: Job) -> list[str]:
        return self.processor.header(job) if job.uploaded else []

    # -- admin -----------------------------------------------------------------------------

    def _stats(self) -> dict[str, Any]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT id, object, operation, state, records_received, upload_bytes, "
                "number_processed, number_failed, lock_failures, retries FROM jobs ORDER BY seq"
            )
            .fetchall()
        )
        jobs = {
            r["id"]: {
                "object": r["object"],
                "operation": r["operation"],
                "state": r["state"],
                "records_received": r["records_received"],
                "upload_bytes": r["upload_bytes"],
                "records_processed": r["number_processed"],
                "records_failed": r["number_failed"],
                "lock_failures": r["lock_failures"],
                "retries": r["retries"],
            }
            for r in rows
        }
        with self._counts_lock:
            counts = dict(self.counts)
        return {
            "jobs": jobs,
            "totals": {
                "jobs": len(jobs),
                "records_received": sum(j["records_received"] for j in jobs.values()),
                "records_processed": sum(j["records_processed"] for j in jobs.values()),
                "lock_failures": sum(j["lock_failures"] for j in jobs.values()),
                **counts,
            },
            "queued_batches": self.processor.queued_batches(),
        }


def _multiple_uploads(job: Job) -> ApiError:
    return ApiError(
        400,
        "BULK_API_ERROR",
        f"Found multipe contents for job: {job.id[:15]}, please 'Close' / 'Abort' / 'Delete' the "
        "current Job then create a new Job and make sure you only do 'PUT' once on a given Job.",
    )
