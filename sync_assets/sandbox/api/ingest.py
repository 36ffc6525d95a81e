"""Bulk API 2.0 ingest resources: create, list, get, close or abort, delete, upload, results."""

import email.parser
import email.policy
import threading

from sync_assets.sandbox.api.listing import job_list
from sync_assets.sandbox.api.messages import Request, Response, allow, json_response
from sync_assets.sandbox.errors import ApiError, not_found
from sync_assets.sandbox.jobs import (
    ABORTABLE_STATES,
    DELETABLE_STATES,
    Job,
    JobRequest,
    JobStore,
    not_terminated,
    parse_job_request,
    requested_state,
    state_conflict,
)
from sync_assets.sandbox.metadata import Catalog
from sync_assets.sandbox.processing import Processor
from sync_assets.sandbox.results import FAILED, SUCCESSFUL, UNPROCESSED, stream_rows
from sync_assets.sandbox.store import Database
from sync_assets.sandbox.upload import ParsedUpload

MAX_UPLOAD_BYTES = 100 * 1024 * 1024
_UPLOAD_LOCK_STRIPES = 64
CSV = "text/csv; charset=UTF-8"
_RESULT_KINDS = {k.lower(): k for k in (SUCCESSFUL, FAILED, UNPROCESSED)}


class IngestResources:
    def __init__(
        self, db: Database, jobs: JobStore, processor: Processor, catalog: Catalog
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.processor = processor
        self.catalog = catalog
        # Striped by job: two PUTs to one job are serialised, uploads to different jobs are not.
        self._upload_locks = [threading.Lock() for _ in range(_UPLOAD_LOCK_STRIPES)]

    def handle(self, request: Request, parts: list[str]) -> Response:
        """Answer ``/services/data/vNN.0/jobs/ingest/<parts>``."""
        if not parts:
            allow(request, "POST", "GET")
            if request.method == "GET":
                return job_list(
                    request,
                    "ingest",
                    "V2Ingest",
                    self.jobs.page,
                    lambda job: job.list_info(job.created_by),
                )
            return self._create_job(request)
        job = self.jobs.get(parts[0])
        if job is None:
            raise not_found()
        if len(parts) == 1:
            allow(request, "GET", "PATCH", "DELETE")
            if request.method == "GET":
                return json_response(job.full_info(job.created_by))
            if request.method == "PATCH":
                return self._patch_job(request, job)
            return self._delete_job(job)
        if len(parts) == 2 and parts[1] == "batches":
            allow(request, "PUT")
            return self._upload(request, job)
        kind = _RESULT_KINDS.get(parts[1].lower()) if len(parts) == 2 else None
        if kind is None:
            raise not_found()
        allow(request, "GET")
        return self._results(job, kind)

    def _create_job(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if content_type.lower().startswith("multipart/form-data"):
            return self._create_multipart(request, content_type)
        job = self.jobs.create(
            self._job_request(request, request.body), request.api_version, request.user_id
        )
        return json_response(job.created_info(job.created_by))

    def _job_request(self, request: Request, raw: bytes) -> JobRequest:
        """A create-job body, with the objects the creating user may write as it sees them."""
        job = parse_job_request(raw, self.catalog.for_user(request.user_id).writable)
        user = self.catalog.users[request.user_id]
        if job.operation == "hardDelete" and not user.bulk_api_hard_delete:
            raise hard_delete_not_permitted()
        return job

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
        job = self.jobs.create(
            self._job_request(request, parts["job"]), request.api_version, request.user_id
        )
        self._store_upload(job, parts["content"])
        job = self._transition(job, "UploadComplete")
        self.processor.submit(job)
        return json_response(job.created_info(job.created_by))

    def _patch_job(self, request: Request, job: Job) -> Response:
        state = requested_state(request.body, ("UploadComplete", "Aborted"))
        updated = self._transition(job, state)
        if state == "UploadComplete":
            if updated.uploaded:
                self.processor.submit(updated)
            else:
                self.processor.fail(
                    updated.id, "ClientInputError : No data was uploaded for the job"
                )
        return json_response(updated.short_info(updated.created_by))

    def _transition(self, job: Job, state: str) -> Job:
        allowed = ("Open",) if state == "UploadComplete" else ABORTABLE_STATES
        with self.db.write() as conn:
            current = conn.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()
            if current is None:
                raise not_found()
            if current["state"] not in allowed:
                verb = "Closing" if state == "UploadComplete" else "Aborting"
                raise state_conflict(verb, current["state"])
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
                raise not_terminated()
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
            header = self.processor.header(job) if job.uploaded else []
            body = files.stream_results(
                kind,
                header,
                self.processor.done_batches(job.id),
                job.column_delimiter,
                job.line_ending,
                lambda index: self.processor.rewrite_results(job, index),
            )
        return Response(200, body, CSV)


def _multiple_uploads(job: Job) -> ApiError:
    return ApiError(
        400,
        "BULK_API_ERROR",
        f"Found multipe contents for job: {job.id[:15]}, please 'Close' / 'Abort' / 'Delete' the "
        "current Job then create a new Job and make sure you only do 'PUT' once on a given Job.",
    )


def hard_delete_not_permitted() -> ApiError:
    """A hardDelete job created by a user without the "Bulk API Hard Delete" permission.

    The code is the one the Salesforce CLI maps to that permission when a hardDelete job cannot
    be created (salesforcecli/plugin-data, src/bulkIngest.ts: ``FEATURENOTENABLED``); the
    wording follows Bulk API's FeatureNotEnabled errors ("FeatureNotEnabled: query operation
    requires the org permission BulkApiQuery", forceworkbench/forceworkbench#465).
    """
    return ApiError(
        400,
        "FEATURENOTENABLED",
        "FeatureNotEnabled : hardDelete operation requires the user permission Bulk API Hard Delete",
    )
