"""Bulk API 2.0 query job resources: create, list, get, abort, delete, and results by locator.

Results pages follow "Get Results for a Query Job": ``Sforce-NumberOfRecords`` is the page's
record count and ``Sforce-Locator`` the next page's locator, or the string ``null`` on the last
one (jsforce reads pages until it sees ``null``). Locators are base64 of the next record's
number, as Salesforce's ``MTAwMDA`` (v49+) is of ``10000``; they do not change while the job
exists. Every page repeats the header line.
"""

import base64
import binascii
import re

from sync_assets.sandbox.api.ingest import CSV
from sync_assets.sandbox.api.listing import job_list
from sync_assets.sandbox.api.messages import Request, Response, allow, json_response
from sync_assets.sandbox.errors import ApiError, not_found
from sync_assets.sandbox.jobs import not_terminated, requested_state, state_conflict
from sync_assets.sandbox.metadata import Catalog
from sync_assets.sandbox.query import QueryService
from sync_assets.sandbox.query_jobs import (
    ACTIVE_STATES,
    DELETABLE_STATES,
    QueryJob,
    QueryJobStore,
    parse_query_job_request,
)
from sync_assets.sandbox.query_runner import QueryRunner

# Without maxRecords "the server uses a default value based on the service" (docs); its size
# is not documented. jsforce never sends maxRecords, simple-salesforce sends 50,000.
DEFAULT_PAGE_RECORDS = 1_000_000
_LAST_PAGE = "null"


def _encode_locator(record: int) -> str:
    return base64.b64encode(str(record).encode()).decode().rstrip("=")


def _page_start(locator: str | None, total: int) -> int:
    """The record a locator names; 0 without one."""
    if locator is None:
        return 0
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    if not text.isdigit() or int(text) >= total:
        # The answer to a locator the job never gave is not documented.
        raise ApiError(400, "INVALID_QUERY_LOCATOR", f"Invalid locator: {locator}")
    return int(text)


def _page_size(max_records: str | None) -> int:
    if max_records is None:
        return DEFAULT_PAGE_RECORDS
    if not max_records.isdigit() or int(max_records) == 0:
        raise ApiError(400, "API_ERROR", f"Invalid value for maxRecords: {max_records}")
    return int(max_records)


def _status_name(state: str) -> str:
    """``InProgress`` as the results error spells it: ``IN_PROGRESS``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", state).upper()


class QueryJobResources:
    def __init__(
        self,
        store: QueryJobStore,
        runner: QueryRunner,
        catalog: Catalog,
    ) -> None:
        self.store = store
        self.runner = runner
        self.catalog = catalog

    def handle(self, request: Request, parts: list[str]) -> Response:
        """Answer ``/services/data/vNN.0/jobs/query/<parts>``."""
        if not parts:
            allow(request, "POST", "GET")
            if request.method == "GET":
                return job_list(request, "query", "V2Query", self.store.page, QueryJob.list_info)
            return self._create(request)
        job = self.store.get(parts[0])
        if job is None:
            raise not_found()
        if len(parts) == 1:
            allow(request, "GET", "PATCH", "DELETE")
            if request.method == "GET":
                return json_response(job.full_info())
            if request.method == "PATCH":
                return self._abort(request, job)
            return self._delete(job)
        if parts[1:] == ["results"]:
            allow(request, "GET")
            return self._results(request, job)
        raise not_found()

    def _create(self, request: Request) -> Response:
        """Bad or unsupported SOQL is refused here, with a 400, before any job exists.

        The SOQL is compiled as the requesting user sees the org (field-level security).
        """
        job_request = parse_query_job_request(request.body)
        compiled = QueryService.compile(
            job_request.query,
            job_request.operation == "queryAll",
            self.catalog.for_user(request.user_id),
            rest=False,
        )
        job = self.store.create(
            job_request, compiled.object_name, request.api_version, request.user_id
        )
        self.runner.submit(job.id)
        return json_response(job.short_info())

    def _abort(self, request: Request, job: QueryJob) -> Response:
        requested_state(request.body, ("Aborted",))
        before = self.store.change(job.id, ACTIVE_STATES, state="Aborted")
        if before is None:
            raise not_found()
        if before not in ACTIVE_STATES:
            raise state_conflict("Aborting", before)
        aborted = self.store.get(job.id)
        if aborted is None:
            raise not_found()
        return json_response(aborted.short_info())

    def _delete(self, job: QueryJob) -> Response:
        before = self.store.delete(job.id)
        if before is None:
            raise not_found()
        if before not in DELETABLE_STATES:
            raise not_terminated()
        self.runner.files(job.id).remove()
        return Response(204, content_type=None)

    def _results(self, request: Request, job: QueryJob) -> Response:
        if request.api_version != job.api_version:
            # "Use the same API version … Otherwise, the call returns a 409 error" (docs); the
            # body is not documented.
            raise ApiError(
                409,
                "API_ERROR",
                f"The job was created in API version {job.api_version}; "
                "get its results with the same version",
            )
        if job.state != "JobComplete":
            # The answer documented for API 47.0 (query_get_job_results, Winter '20).
            raise ApiError(
                412,
                "JOB_NOT_COMPLETE",
                "can only download query results of successfully completed bulk job with "
                f"status: JOB_COMPLETE. Current status: {_status_name(job.state)}",
            )
        total = job.number_processed
        first = _page_start(request.query.get("locator"), total)
        count = min(_page_size(request.query.get("maxRecords")), total - first)
        following = first + count
        headers = {
            "Sforce-NumberOfRecords": str(count),
            "Sforce-Locator": _encode_locator(following) if following < total else _LAST_PAGE,
        }
        return Response(200, self.runner.results(job.id).page(first, count), CSV, headers)
