import gzip
import random
import re
from pathlib import Path

import pytest
import requests

from sync_assets.salesforce.bulk_api import BulkApi, BulkApiUnavailableError
from sync_assets.salesforce.connection import (
    DEFAULT_API_VERSION,
    SalesforceConnection,
    SalesforceCredentials,
)
from sync_assets.salesforce.errors import BulkApiError, DailyApiLimitError, SalesforceAuthError
from sync_assets.salesforce.retry import RetryPolicy
from sync_assets.salesforce.upload_compression import UploadCompression
from sync_assets_tests.salesforce.http_fakes import FakeAnswer, FakeTransport, mounted

JOB = "7505f000000ABCDAAA"
INGEST = f"https://org.example.com/services/data/v{DEFAULT_API_VERSION}/jobs/ingest"


def bulk_api(
    handler,
    credentials: SalesforceCredentials | None = None,
    upload_compression: UploadCompression = "none",
) -> tuple[BulkApi, FakeTransport]:
    http = requests.Session()
    transport = mounted(http, handler)
    connection = SalesforceConnection(
        credentials
        or SalesforceCredentials(instance_url="https://org.example.com", access_token="00Dx!one"),
        http=http,
    )
    api = BulkApi(
        connection,
        RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02),
        rng=random.Random(0),
        upload_compression=upload_compression,
    )
    return api, transport


def scripted(*answers: FakeAnswer | Exception):
    queue = list(answers)
    return lambda request: queue.pop(0)


def test_server_errors_and_resets_are_retried_until_an_answer() -> None:
    api, transport = bulk_api(
        scripted(
            FakeAnswer(503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "x"}]),
            requests.ConnectionError("reset by peer"),
            FakeAnswer(429, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "slow"}]),
            FakeAnswer(200, {"id": JOB, "state": "InProgress"}),
        )
    )
    assert api.job_info(JOB).state == "InProgress"
    assert len(transport.requests) == 4
    assert api.api_calls == 4 and api.http_retries == 3
    assert all(
        request.headers["Authorization"] == "Bearer 00Dx!one" for request in transport.requests
    )


def test_retries_are_bounded() -> None:
    api, transport = bulk_api(
        lambda request: FakeAnswer(500, [{"errorCode": "X", "message": "boom"}])
    )
    with pytest.raises(BulkApiUnavailableError, match="gave up after 4 tries"):
        api.job_info(JOB)
    assert len(transport.requests) == 4


def test_a_client_error_is_not_retried_and_carries_the_salesforce_code() -> None:
    api, transport = bulk_api(
        scripted(
            FakeAnswer(
                400,
                [
                    {
                        "errorCode": "INVALIDJOB",
                        "message": "InvalidJob : Unable to find object: Nope",
                    }
                ],
            )
        )
    )
    with pytest.raises(BulkApiError, match="INVALIDJOB") as raised:
        api.create_upsert_job("Nope", "External_Id__c")
    assert raised.value.status == 400
    assert len(transport.requests) == 1
    assert not api.ambiguous_creates


def test_a_lost_upload_answer_followed_by_multipe_contents_counts_as_uploaded() -> None:
    api, transport = bulk_api(
        scripted(
            requests.ConnectionError("connection reset"),
            FakeAnswer(
                400,
                [
                    {
                        "errorCode": "BULK_API_ERROR",
                        "message": f"Found multipe contents for job: {JOB[:15]}, please 'Close' / 'Abort' / 'Delete' the current Job",
                    }
                ],
            ),
        )
    )
    api.upload(JOB, b"External_Id__c\nK1\n")
    assert [request.method for request in transport.requests] == ["PUT", "PUT"]
    assert transport.requests[0].headers["Content-Type"] == "text/csv"


def test_multipe_contents_on_a_first_try_is_a_real_error() -> None:
    api, _ = bulk_api(
        scripted(
            FakeAnswer(
                400, [{"errorCode": "BULK_API_ERROR", "message": "Found multipe contents for job"}]
            )
        )
    )
    with pytest.raises(BulkApiError, match="BULK_API_ERROR"):
        api.upload(JOB, b"x\n")


def test_close_whose_answer_was_lost_is_accepted_when_the_job_moved_on() -> None:
    api, transport = bulk_api(
        scripted(
            FakeAnswer(502, "bad gateway"),
            FakeAnswer(
                400, [{"errorCode": "INVALIDJOBSTATE", "message": "already UploadComplete"}]
            ),
            FakeAnswer(200, {"id": JOB, "state": "UploadComplete"}),
        )
    )
    api.close(JOB)
    assert [request.method for request in transport.requests] == ["PATCH", "PATCH", "GET"]


def test_an_unanswered_create_is_remembered_for_orphan_cleanup() -> None:
    orphan_listing = {
        "done": True,
        "nextRecordsUrl": None,
        "records": [
            {
                "id": "750ORPHAN000000AAA",
                "state": "Open",
                "object": "Opportunity",
                "createdDate": "2099-01-01T00:00:00.000+0000",
            },
        ],
    }
    api, transport = bulk_api(
        scripted(
            requests.ConnectionError("reset"),
            FakeAnswer(200, {"id": JOB, "state": "Open"}),
        )
    )
    assert api.create_upsert_job("Opportunity", "External_Id__c").id == JOB
    assert len(api.ambiguous_creates) == 1
    start, _end = api.ambiguous_creates[0]
    created = start.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    orphan_listing["records"][0]["createdDate"] = created
    orphan_listing["records"].append(
        {"id": JOB, "state": "Open", "object": "Opportunity", "createdDate": created}
    )
    transport.handler = scripted(
        FakeAnswer(200, orphan_listing),
        FakeAnswer(200, {"id": "750ORPHAN000000AAA", "state": "Aborted"}),
    )
    assert api.abort_orphans("Opportunity", {JOB}) == ["750ORPHAN000000AAA"]
    assert transport.requests[-1].method == "PATCH"
    assert b'"Aborted"' in (transport.requests[-1].body or b"")


def test_results_stream_to_disk(tmp_path: Path) -> None:
    body = '"sf__Id","sf__Created",External_Id__c\n"006A","true","K1"\n'
    api, transport = bulk_api(
        scripted(
            requests.ConnectionError("reset mid-body"),
            FakeAnswer(200, body, {"Content-Type": "text/csv; charset=UTF-8"}),
        )
    )
    path = api.download_results(JOB, "successfulResults", tmp_path / "ok.csv")
    assert path.read_text() == body
    assert transport.requests[-1].url == f"{INGEST}/{JOB}/successfulResults"
    assert not list(tmp_path.glob("*.partial"))


def test_an_expired_token_is_renewed_and_the_call_repeated() -> None:
    tokens = iter(["00Dx!first", "00Dx!second"])

    def handler(request: requests.PreparedRequest) -> FakeAnswer:
        if request.url and request.url.endswith("/services/oauth2/token"):
            return FakeAnswer(
                200, {"access_token": next(tokens), "instance_url": "https://org.example.com"}
            )
        if request.headers["Authorization"] == "Bearer 00Dx!first":
            return FakeAnswer(
                401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
            )
        return FakeAnswer(200, {"id": JOB, "state": "JobComplete"})

    credentials = SalesforceCredentials(
        client_id="cid", client_secret="s3cr3t", login_url="https://org.example.com"
    )
    api, transport = bulk_api(handler, credentials)
    assert api.job_info(JOB).state == "JobComplete"
    assert api.connection.logins == 2
    assert [
        re.sub(r"\?.*", "", request.url or "").rsplit("/", 1)[-1] for request in transport.requests
    ] == [
        "token",
        JOB,
        "token",
        JOB,
    ]


def test_an_expired_bare_session_is_a_clear_error() -> None:
    api, _ = bulk_api(
        lambda request: FakeAnswer(
            401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        )
    )
    with pytest.raises(SalesforceAuthError, match="bare session token") as raised:
        api.job_info(JOB)
    assert "00Dx!one" not in str(raised.value)


def test_the_concurrent_request_limit_backs_off_and_retries() -> None:
    """403 REQUEST_LIMIT_EXCEEDED "ConcurrentPerOrgLongTxn…" passes: nothing was applied, retry."""
    api, transport = bulk_api(
        scripted(
            FakeAnswer(
                403,
                [
                    {
                        "errorCode": "REQUEST_LIMIT_EXCEEDED",
                        "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                    }
                ],
            ),
            FakeAnswer(200, {"id": JOB, "state": "InProgress"}),
        )
    )
    throttled: list[bool] = []
    api.on_throttled = lambda: throttled.append(True)
    assert api.job_info(JOB).state == "InProgress"
    assert len(transport.requests) == 2 and api.throttles == 1 and throttled == [True]


def test_the_daily_request_limit_stops_without_a_retry() -> None:
    api, transport = bulk_api(
        lambda request: FakeAnswer(
            403,
            [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}],
        )
    )
    with pytest.raises(DailyApiLimitError, match="TotalRequests Limit exceeded"):
        api.job_info(JOB)
    assert len(transport.requests) == 1 and api.throttles == 0


BAD_BODY = FakeAnswer(400, [{"errorCode": "INVALID_REQUEST", "message": "not gzip"}])
WRONG_STATE = FakeAnswer(400, [{"errorCode": "INVALIDJOBSTATE", "message": "Job is Closed"}])


def test_a_gzip_upload_goes_with_its_header_and_is_the_csv_when_decompressed() -> None:
    api, transport = bulk_api(scripted(FakeAnswer(201)), upload_compression="gzip")
    api.upload(JOB, b"External_Id__c\nA\n" * 100)
    [put] = transport.requests
    assert put.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(put.body) == b"External_Id__c\nA\n" * 100


def test_a_gzip_upload_refused_as_a_bad_body_goes_plain_and_so_does_the_next() -> None:
    api, transport = bulk_api(
        scripted(BAD_BODY, FakeAnswer(201), FakeAnswer(201)), upload_compression="gzip"
    )
    api.upload(JOB, b"a,b\n1,2\n")
    api.upload(JOB, b"a,b\n3,4\n")
    assert [request.headers.get("Content-Encoding") for request in transport.requests] == [
        "gzip",
        None,
        None,
    ]
    assert transport.requests[1].body == b"a,b\n1,2\n"
    assert api.upload_compression == "none" and api.api_calls == 3


def test_a_400_the_plain_upload_gets_too_is_raised_and_gzip_stays_on() -> None:
    api, _ = bulk_api(scripted(WRONG_STATE, WRONG_STATE), upload_compression="gzip")
    with pytest.raises(BulkApiError, match="INVALIDJOBSTATE"):
        api.upload(JOB, b"a,b\n1,2\n")
    assert api.upload_compression == "gzip" and api.api_calls == 2
