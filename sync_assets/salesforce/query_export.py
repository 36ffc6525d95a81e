"""A Bulk API 2.0 query job read page by page: each page of CSV results streamed to its own file.

A query job is created, polled until it completes, then its results are read by locator
("Get Results for a Query Job": ``Sforce-Locator`` names the next page, ``null`` after the
last), ``max_records`` at a time. Each page goes to disk as it arrives, so however many records
the org holds, only the page being handled is ever in memory.
"""

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sync_assets.salesforce.bulk_api import BulkApi, JobInfo, QueryOperation
from sync_assets.salesforce.errors import BulkApiError

# simple-salesforce reads query results 50,000 records a page; a page of the drift query is a
# few MB of CSV and of polars frame.
PAGE_RECORDS = 50_000
_FIRST_POLL_SECONDS = 0.2
_MAX_POLL_SECONDS = 10.0


class QueryJobFailedError(BulkApiError):
    """The query job ended Failed or Aborted (Salesforce's errorMessage says why)."""


def run_query_job(
    bulk: BulkApi,
    soql: str,
    operation: QueryOperation = "query",
    sleep: Callable[[float], None] = time.sleep,
) -> JobInfo:
    """Create a query job and wait for it to complete; its final JobInfo."""
    job = bulk.create_query_job(soql, operation)
    delay = _FIRST_POLL_SECONDS
    while not job.is_terminal:
        sleep(delay)
        delay = min(delay * 1.5, _MAX_POLL_SECONDS)
        job = bulk.query_job_info(job.id)
    if job.state != "JobComplete":
        raise QueryJobFailedError(
            "GET", f"jobs/query/{job.id}", 200, job.state, job.errorMessage or "no message"
        )
    return job


def result_pages(
    bulk: BulkApi, job_id: str, folder: Path, max_records: int = PAGE_RECORDS
) -> Iterator[Path]:
    """The completed job's results, one CSV file per page (header line included), in order.

    The caller may delete each file once handled; a page is downloaded when the next is asked for.
    """
    locator: str | None = None
    number = 0
    while True:
        page = folder / f"page-{number:05d}.csv"
        locator = bulk.download_query_page(job_id, page, locator, max_records)
        yield page
        number += 1
        if locator is None:
            return
