"""Raw Bulk API 2.0 ingest (and query job) calls with HTTP-level retries, re-authentication and API-call counting."""

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import quote

import requests
from pydantic import BaseModel, ConfigDict

from sync_assets.salesforce.connection import SalesforceConnection
from sync_assets.salesforce.errors import (
    REQUEST_LIMIT_EXCEEDED,
    RETRYABLE_HTTP_STATUSES,
    BulkApiError,
    DailyApiLimitError,
    ErrorClass,
    request_limit_class,
)
from sync_assets.salesforce.retry import RetryPolicy
from sync_assets.salesforce.upload_compression import (
    REFUSED_CODING_STATUSES,
    UploadCompression,
    gzip_body,
)

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"JobComplete", "Failed", "Aborted"})
ResultKind = Literal["successfulResults", "failedResults", "unprocessedrecords"]
IngestOperation = Literal["upsert", "delete", "hardDelete"]
"""The ingest operations the sync uses: upserts by external id, deletes by Salesforce Id."""
QueryOperation = Literal["query", "queryAll"]
REQUEST_TIMEOUT_SECONDS = 300.0
FIRST_QUERY_VERSION = 47.0
MAX_REAUTHENTICATIONS_PER_CALL = 2
# A lost PUT response may hide an upload that was applied; the retry then hears this (typo is Salesforce's).
_ALREADY_UPLOADED = re.compile(r"found multip?l?e contents for job", re.IGNORECASE)
_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def _http_date(text: str | None) -> datetime | None:
    """An HTTP ``Date`` header (whole seconds), or None where it is missing or unreadable."""
    try:
        return parsedate_to_datetime(text) if text else None
    except (TypeError, ValueError):
        return None


class BulkApiUnavailableError(BulkApiError):
    """A call still failed after every retry (server errors, throttling or dropped connections)."""


class _CallOutcome(NamedTuple):
    response: requests.Response | None
    ambiguous: bool


class JobInfo(BaseModel):
    """The parts of a Bulk ingest JobInfo the loader reads."""

    model_config = ConfigDict(extra="allow")

    id: str
    state: str
    object: str | None = None
    operation: str | None = None
    createdDate: str | None = None
    # When the job last changed: its start while InProgress (one batch), its end once finished.
    systemModstamp: str | None = None
    # None where the answer carries no counters: the job list ("Get All Jobs") has none.
    numberRecordsProcessed: int | None = None
    numberRecordsFailed: int | None = None
    errorMessage: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def processed_all(self, carried: int) -> bool:
        """Whether the job processed every row it carried (failed rows count as processed)."""
        return self.numberRecordsProcessed is not None and self.numberRecordsProcessed >= carried

    @property
    def created_at(self) -> datetime | None:
        return _salesforce_datetime(self.createdDate)

    @property
    def modified_at(self) -> datetime | None:
        return _salesforce_datetime(self.systemModstamp)


def _salesforce_datetime(text: str | None) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z") if text else None


class JobList(NamedTuple):
    """What one listing of the org's jobs showed: the jobs asked for, its pages, the org's clock."""

    found: dict[str, JobInfo]
    pages: int
    server_time: datetime | None


class BulkApi:
    """Bulk API 2.0 ingest endpoints, each call retried where retrying is safe.

    * GETs and the close PATCH are idempotent and retried freely.
    * A PUT whose answer was lost may have been applied; a retry that hears "multipe contents"
      counts as success.
    * A create POST whose answer was lost may have created a job nobody knows the id of; the
      window is remembered so :meth:`abort_orphans` can abort such jobs after the load.
    """

    def __init__(
        self,
        connection: SalesforceConnection,
        retry: RetryPolicy | None = None,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        upload_compression: UploadCompression = "none",
    ) -> None:
        self.connection = connection
        self._upload_compression = upload_compression
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._api_calls = 0
        self._http_retries = 0
        self._throttles = 0
        self.on_throttled: Callable[[], None] | None = None
        self.ambiguous_creates: list[tuple[datetime, datetime]] = []

    @property
    def api_calls(self) -> int:
        return self._api_calls

    @property
    def http_retries(self) -> int:
        return self._http_retries

    @property
    def throttles(self) -> int:
        """Calls refused for the org's concurrent-request limit (then retried)."""
        return self._throttles

    def _throttled(self) -> None:
        with self._lock:
            self._throttles += 1
        if self.on_throttled is not None:
            self.on_throttled()

    def ingest_path(self, suffix: str = "") -> str:
        return f"jobs/ingest{suffix}"

    # ---- job lifecycle -------------------------------------------------------------------------

    def create_upsert_job(self, sobject: str, external_id_field: str) -> JobInfo:
        return self.create_job(sobject, "upsert", external_id_field)

    def create_job(
        self, sobject: str, operation: IngestOperation, external_id_field: str | None = None
    ) -> JobInfo:
        """Create an ingest job; ``external_id_field`` is the upsert's key (upserts only)."""
        body = {
            "object": sobject,
            "operation": operation,
            **({"externalIdFieldName": external_id_field} if operation == "upsert" else {}),
            "contentType": "CSV",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        started = datetime.now(UTC)
        outcome = self._call("POST", self.ingest_path(), json_body=body)
        if outcome.ambiguous:
            self._remember_ambiguous_create(started)
        return JobInfo.model_validate(outcome.response.json())

    def upload(self, job_id: str, csv_body: bytes) -> None:
        """PUT the job's CSV, gzipped while the org takes compressed uploads.

        An org that answers a gzip body with 400 or 415 gets the same upload plain at once; if
        that is accepted, the body's coding was the problem and this `BulkApi` sends plain from
        then on (a warning says why). If the plain upload fails too, its error is raised.
        """
        if self._upload_compression == "none":
            self._put_upload(job_id, csv_body)
            return
        try:
            self._put_upload(job_id, gzip_body(csv_body), content_encoding="gzip")
            return
        except BulkApiError as error:
            if error.status not in REFUSED_CODING_STATUSES:
                raise
            refused = error
        self._put_upload(job_id, csv_body)
        self._stop_compressing(refused)

    @property
    def upload_compression(self) -> UploadCompression:
        """How uploads go now: ``none`` once the org refused a gzip one."""
        return self._upload_compression

    def _stop_compressing(self, refused: BulkApiError) -> None:
        with self._lock:
            if self._upload_compression == "none":
                return
            self._upload_compression = "none"
        log.warning(
            "Salesforce refused a gzip upload (HTTP %d %s: %s) and accepted it plain: the "
            "uploads of this load are sent plain (SYNC_UPLOAD_COMPRESSION=none skips the try)",
            refused.status,
            refused.error_code,
            refused.error_message,
        )

    def _put_upload(self, job_id: str, body: bytes, content_encoding: str | None = None) -> None:
        def already_uploaded(error: BulkApiError, ambiguous: bool) -> bool:
            return ambiguous and bool(_ALREADY_UPLOADED.search(error.error_message))

        self._call(
            "PUT",
            self.ingest_path(f"/{job_id}/batches"),
            body=body,
            content_type="text/csv",
            content_encoding=content_encoding,
            expected=(201,),
            tolerate=already_uploaded,
        )

    def close(self, job_id: str) -> None:
        def already_closed(error: BulkApiError, ambiguous: bool) -> bool:
            return ambiguous and self.job_info(job_id).state != "Open"

        self._call(
            "PATCH",
            self.ingest_path(f"/{job_id}"),
            json_body={"state": "UploadComplete"},
            tolerate=already_closed,
        )

    def abort(self, job_id: str) -> None:
        """Abort a job that is not finished; a job already terminal is left as it is."""

        def already_terminal(error: BulkApiError, ambiguous: bool) -> bool:
            return error.status in (400, 404) and (
                error.status == 404 or self.job_info(job_id).is_terminal
            )

        self._call(
            "PATCH",
            self.ingest_path(f"/{job_id}"),
            json_body={"state": "Aborted"},
            tolerate=already_terminal,
        )

    def job_info(self, job_id: str) -> JobInfo:
        outcome = self._call("GET", self.ingest_path(f"/{job_id}"))
        return JobInfo.model_validate(outcome.response.json())

    def job_info_or_none(self, job_id: str) -> JobInfo | None:
        """Job info, or ``None`` for a job Salesforce no longer knows (deleted after 7 days)."""
        outcome = self._call(
            "GET",
            self.ingest_path(f"/{job_id}"),
            tolerate=lambda error, _ambiguous: error.status == 404,
        )
        return None if outcome.response is None else JobInfo.model_validate(outcome.response.json())

    def download_results(self, job_id: str, kind: ResultKind, destination: Path) -> Path:
        """Stream one result CSV to ``destination``, never holding the whole body in memory."""
        self._call(
            "GET",
            self.ingest_path(f"/{job_id}/{kind}"),
            accept="text/csv",
            sink=destination,
        )
        return destination

    # ---- query jobs ------------------------------------------------------------------------------

    def query_path(self, suffix: str = "") -> str:
        """``jobs/query`` at the connection's version, or at 47.0 where it is older.

        Bulk API 2.0 query jobs exist from API 47.0, ingest from 41.0 (Bulk API 2.0 Developer
        Guide): a sync pinned to an older version still has its queries answered.
        """
        if float(self.connection.api_version) >= FIRST_QUERY_VERSION:
            return f"jobs/query{suffix}"
        return f"/services/data/v{FIRST_QUERY_VERSION:.1f}/jobs/query{suffix}"

    def create_query_job(self, soql: str, operation: QueryOperation = "query") -> JobInfo:
        """A Bulk API 2.0 query job (a POST: its SOQL travels in the body, not the URL).

        ``queryAll`` also returns deleted records (``IsDeleted``).
        """
        body = {"operation": operation, "query": soql, "contentType": "CSV", "lineEnding": "LF"}
        answer = self._call("POST", self.query_path(), json_body=body).response
        return JobInfo.model_validate(answer.json())

    def query_job_info(self, job_id: str) -> JobInfo:
        answer = self._call("GET", self.query_path(f"/{job_id}")).response
        return JobInfo.model_validate(answer.json())

    def download_query_page(
        self,
        job_id: str,
        destination: Path,
        locator: str | None = None,
        max_records: int | None = None,
    ) -> str | None:
        """Stream one page of a query job's CSV to ``destination``; the next page's locator.

        Bulk API 2.0 Developer Guide, "Get Results for a Query Job": the ``Sforce-Locator``
        header names the next page, and is the string ``null`` on the last one (None here).
        """
        options = [f"maxRecords={max_records}"] if max_records else []
        options += [f"locator={locator}"] if locator else []
        path = self.query_path(f"/{job_id}/results") + ("?" + "&".join(options) if options else "")
        response = self._call("GET", path, accept="text/csv", sink=destination).response
        following = response.headers.get("Sforce-Locator", "null")
        return None if following in ("", "null") else following

    def list_jobs(self) -> Iterator[JobInfo]:
        """Every ingest job the org lists, following ``nextRecordsUrl`` pages."""
        path: str | None = self.ingest_path()
        while path:
            page = self._call("GET", path).response.json()
            yield from (JobInfo.model_validate(record) for record in page.get("records", []))
            path = None if page.get("done", True) else page.get("nextRecordsUrl")

    def job_states(self, job_ids: set[str]) -> JobList:
        """The listed info of ``job_ids``, the pages read, and the org's clock.

        Paging stops once every job is seen; the clock is the last page's ``Date`` header.
        """
        found: dict[str, JobInfo] = {}
        pages = 0
        server_time: datetime | None = None
        path: str | None = self.ingest_path()
        while path and len(found) < len(job_ids):
            response = self._call("GET", path).response
            page = response.json()
            pages += 1
            server_time = _http_date(response.headers.get("Date"))
            for record in page.get("records", []):
                if record.get("id") in job_ids:
                    found[record["id"]] = JobInfo.model_validate(record)
            path = None if page.get("done", True) else page.get("nextRecordsUrl")
        return JobList(found, pages, server_time)

    def limits(self) -> dict[str, Any]:
        return self._call("GET", "limits/").response.json()

    def count(self, soql: str) -> int:
        """A REST ``SELECT COUNT() …``'s ``totalSize`` (REST API Developer Guide, "Query")."""
        return int(self._call("GET", f"query/?q={quote(soql)}").response.json()["totalSize"])

    def abort_orphans(self, sobject: str, known_job_ids: set[str], grace: float = 2.0) -> list[str]:
        """Abort Open jobs that a lost create answer may have left behind.

        Only jobs still ``Open``, for the same object, created inside a window in which one of our
        creates went unanswered, and not among ``known_job_ids`` qualify. An Open job is never
        processed, so aborting one that belonged to someone else costs that client a resend, not data.
        """
        if not self.ambiguous_creates:
            return []
        windows = list(self.ambiguous_creates)
        aborted = []
        for job in self.list_jobs():
            created = job.created_at
            if (
                job.state == "Open"
                and job.object == sobject
                and job.id not in known_job_ids
                and created is not None
                and any(
                    start.timestamp() - grace <= created.timestamp() <= end.timestamp() + grace
                    for start, end in windows
                )
            ):
                self.abort(job.id)
                aborted.append(job.id)
        return aborted

    # ---- the HTTP core ---------------------------------------------------------------------------

    def _remember_ambiguous_create(self, started: datetime) -> None:
        with self._lock:
            self.ambiguous_creates.append((started, datetime.now(UTC)))

    def _url(self, path: str) -> str:
        if path.startswith("/"):
            return f"{self.connection.instance_url}{path}"
        return f"{self.connection.data_url}{path}"

    def _count_call(self, retried: bool) -> None:
        with self._lock:
            self._api_calls += 1
            self._http_retries += int(retried)

    def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        accept: str = "application/json",
        expected: tuple[int, ...] = (200,),
        sink: Path | None = None,
        tolerate: Callable[[BulkApiError, bool], bool] | None = None,
    ) -> _CallOutcome:
        """One API call, retried on 5xx/429/dropped connections, re-authenticated on a 401.

        ``ambiguous`` in the outcome says an earlier try may have reached the server; ``tolerate``
        decides whether an error answer means the call's effect is already in place.
        """
        ambiguous = False
        reauthentications = 0
        attempt = 0
        last_problem = ""
        last_failure = ""
        while attempt < self.retry.max_attempts:
            if attempt:
                self._sleep(self._retry_delay(attempt - 1, last_problem))
            token = self.connection.access_token
            headers = {"Authorization": f"Bearer {token}", "Accept": accept}
            if content_type:
                headers["Content-Type"] = content_type
            if content_encoding:
                headers["Content-Encoding"] = content_encoding
            self._count_call(retried=attempt > 0)
            try:
                response = self.connection.http.request(
                    method,
                    self._url(path),
                    headers=headers,
                    json=json_body,
                    data=body,
                    timeout=self.timeout,
                    stream=sink is not None,
                )
                if (
                    response.status_code == 401
                    and reauthentications < MAX_REAUTHENTICATIONS_PER_CALL
                ):
                    response.close()
                    reauthentications += 1
                    self.connection.reauthenticate(token)
                    continue
                if response.status_code in RETRYABLE_HTTP_STATUSES:
                    last_problem = _retry_after(response)
                    last_failure = f"HTTP {response.status_code}"
                    ambiguous = ambiguous or response.status_code != 429
                    log.debug("%s %s → HTTP %s, retrying", method, path, response.status_code)
                    response.close()
                    attempt += 1
                    continue
                if response.status_code in expected:
                    if sink is not None:
                        _stream_to_file(response, sink)
                    return _CallOutcome(response=response, ambiguous=ambiguous)
                error = _api_error(method, path, response)
                if _is_concurrency_limit(error):
                    # Nothing was applied: back off (jittered, within the retry budget), retry.
                    last_problem, last_failure = (
                        _retry_after(response),
                        f"HTTP 403 {error.error_message}",
                    )
                    self._throttled()
                    attempt += 1
                    continue
            except _TRANSPORT_ERRORS as transport_error:
                ambiguous = True
                last_problem = ""
                last_failure = type(transport_error).__name__
                log.debug("%s %s → %s, retrying", method, path, type(transport_error).__name__)
                attempt += 1
                continue
            if tolerate is not None and tolerate(error, ambiguous):
                return _CallOutcome(response=None, ambiguous=ambiguous)
            raise _daily_limit_or(error)
        raise BulkApiUnavailableError(
            method,
            path,
            0,
            "UNAVAILABLE",
            f"gave up after {self.retry.max_attempts} tries (last: {last_failure})",
        )

    def _retry_delay(self, retry: int, retry_after: str) -> float:
        backoff = self.retry.delay(retry, self._rng)
        try:
            return max(backoff, min(float(retry_after), self.retry.max_delay))
        except ValueError:
            return backoff


def _is_concurrency_limit(error: BulkApiError) -> bool:
    return (
        error.status == 403
        and error.error_code == REQUEST_LIMIT_EXCEEDED
        and request_limit_class(error.error_message) is ErrorClass.TRANSIENT
    )


def _daily_limit_or(error: BulkApiError) -> BulkApiError:
    """The org's daily request total as its own error (the night stops), else ``error``."""
    if error.status == 403 and error.error_code == REQUEST_LIMIT_EXCEEDED:
        return DailyApiLimitError(
            error.method, error.path, error.status, error.error_code, error.error_message
        )
    return error


def _retry_after(response: requests.Response) -> str:
    return response.headers.get("Retry-After", "")


def _stream_to_file(response: requests.Response, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(destination.suffix + ".partial")
    # iter_content un-gzips (requests asks for gzip) and turns dropped connections into
    # requests exceptions, which the caller retries by downloading again from the start.
    with response, partial.open("wb") as handle:
        for chunk in response.iter_content(chunk_size=1 << 20):
            handle.write(chunk)
    partial.replace(destination)


def _api_error(method: str, path: str, response: requests.Response) -> BulkApiError:
    """A ``BulkApiError`` from Salesforce's ``[{"errorCode", "message"}]`` error body."""
    error_code, message = "", response.text[:500]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        error_code = str(body[0].get("errorCode", ""))
        message = str(body[0].get("message", ""))
    elif isinstance(body, dict):
        error_code = str(body.get("errorCode") or body.get("error") or "")
        message = str(body.get("message") or body.get("error_description") or "")
    return BulkApiError(method, path, response.status_code, error_code, message)
