"""Protocol limits (414 and 431 before any handling) and what the job list carries."""

from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv, unique_prefix

LIMIT = 16_384


def _path_for_request_line(bulk: BulkClient, length: int) -> str:
    """A /limits URL whose request line ``GET <path> HTTP/1.1`` is ``length`` bytes long."""
    path = "/services/data/v59.0/limits?pad="
    return path + "a" * (length - len(f"GET {path} HTTP/1.1"))


def _get(bulk: BulkClient, path: str, pad: int = 0) -> int:
    """The status of a GET with a header of ``pad`` bytes of value."""
    headers = {"X-Pad": "b" * pad} if pad else {}
    return bulk.session.get(bulk.root + path, headers=headers).status_code


def test_a_request_line_over_16384_bytes_gets_414(bulk: BulkClient) -> None:
    """REST API status codes: 414 "The length of the URI exceeds the 16,384 byte limit"."""
    assert _get(bulk, _path_for_request_line(bulk, LIMIT - 1_000)) == 200
    assert _get(bulk, _path_for_request_line(bulk, LIMIT + 1)) == 414
    before = bulk.session.get(f"{bulk.base}/limits").headers["Sforce-Limit-Info"]
    assert _get(bulk, _path_for_request_line(bulk, 40_000)) == 414
    after = bulk.session.get(f"{bulk.base}/limits").headers["Sforce-Limit-Info"]
    used = [int(value.split("=")[1].split("/")[0]) for value in (before, after)]
    assert used[1] - used[0] == 1, "the refused request was not handled (not counted)"


def test_uri_and_headers_over_16384_bytes_get_431(bulk: BulkClient) -> None:
    """431 "The combined length of the URI and headers exceeds the 16,384 byte limit"."""
    assert _get(bulk, "/services/data/v59.0/limits", pad=9_000) == 200
    assert _get(bulk, "/services/data/v59.0/limits", pad=LIMIT) == 431
    assert _get(bulk, _path_for_request_line(bulk, 9_000), pad=8_000) == 431


def test_the_job_list_carries_each_jobs_state(bulk: BulkClient) -> None:
    """Get All Jobs lists each job's state (not its counters, which need Get Job Info)."""
    opened = bulk.create(object="Opportunity", operation="insert").json()["id"]
    aborted = bulk.create(object="Opportunity", operation="insert").json()["id"]
    bulk.patch(aborted, "Aborted")
    completed = bulk.load(opportunity_csv(unique_prefix(), 3), operation="insert")["id"]
    listed: dict[str, dict[str, object]] = {}
    url: str | None = f"{bulk.base}/jobs/ingest"
    while url:
        page = bulk.session.get(url).json()
        listed.update((job["id"], job) for job in page["records"])
        url = None if page["done"] else bulk.root + page["nextRecordsUrl"]
    states = {job_id: listed[job_id]["state"] for job_id in (opened, aborted, completed)}
    assert states == {opened: "Open", aborted: "Aborted", completed: "JobComplete"}
    assert "numberRecordsProcessed" not in listed[completed]
