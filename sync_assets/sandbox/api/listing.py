"""The job lists of Bulk API 2.0 (``GET /jobs/ingest``, ``GET /jobs/query``): pages behind a locator."""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sync_assets.sandbox.api.messages import Request, Response, json_response

JOBS_PER_PAGE = 1_000
Job = TypeVar("Job")


def job_list(
    request: Request,
    resource: str,
    job_type: str,
    page: Callable[[int, int], Sequence[Job]],
    info: Callable[[Job], dict[str, Any]],
) -> Response:
    """One page of jobs (reference §1.7): up to 1,000, then ``nextRecordsUrl`` with a locator.

    ``page(offset, limit)`` reads the jobs; a ``jobType`` filter naming another kind lists none.
    """
    locator = request.query.get("queryLocator", "")
    offset = int(locator.rpartition("-")[2]) if locator.rpartition("-")[2].isdigit() else 0
    wanted_type = request.query.get("jobType")
    jobs = [] if wanted_type not in (None, job_type) else page(offset, JOBS_PER_PAGE + 1)
    done = len(jobs) <= JOBS_PER_PAGE
    next_url = None
    if not done:
        next_url = (
            f"/services/data/v{request.api_version}/jobs/{resource}"
            f"?queryLocator=01gSx0000000000AAA-{offset + JOBS_PER_PAGE}"
        )
    return json_response(
        {
            "done": done,
            "records": [info(job) for job in jobs[:JOBS_PER_PAGE]],
            "nextRecordsUrl": next_url,
        }
    )
