"""Bulk API 2.0 ingest over raw HTTP: endpoints, exact JSON shapes, states and their errors."""

import gzip
import re
import socket
import ssl

import pytest

from sync_assets.sandbox.runner import SandboxHandle
from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv, unique_prefix

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")
JOB_ID = re.compile(r"^750[0-9A-Za-z]{15}$")


def test_create_answer_has_the_documented_shape(bulk: BulkClient) -> None:
    response = bulk.create(
        object="Opportunity", operation="upsert", externalIdFieldName="External_Id__c"
    )
    assert response.status_code == 200
    info = response.json()
    assert list(info) == [
        "id",
        "operation",
        "object",
        "createdById",
        "createdDate",
        "systemModstamp",
        "state",
        "externalIdFieldName",
        "concurrencyMode",
        "contentType",
        "apiVersion",
        "contentUrl",
        "lineEnding",
        "columnDelimiter",
    ]
    assert JOB_ID.match(info["id"]) and TIMESTAMP.match(info["createdDate"])
    assert info["state"] == "Open" and info["apiVersion"] == 59.0
    assert info["createdById"].startswith("005")
    assert info["contentUrl"] == f"services/data/v59.0/jobs/ingest/{info['id']}/batches"
    assert (info["lineEnding"], info["columnDelimiter"], info["concurrencyMode"]) == (
        "LF",
        "COMMA",
        "Parallel",
    )


def test_full_lifecycle_shapes(bulk: BulkClient, prefix: str) -> None:
    job = bulk.create(object="Opportunity", operation="insert").json()
    put = bulk.upload(job["id"], opportunity_csv(prefix, 3))
    assert (put.status_code, put.content) == (201, b"")
    open_info = bulk.info(job["id"])
    assert open_info["contentUrl"] and open_info["jobType"] == "V2Ingest"
    closed = bulk.patch(job["id"], "UploadComplete").json()
    assert list(closed) == [
        "id",
        "operation",
        "object",
        "createdById",
        "createdDate",
        "systemModstamp",
        "state",
        "concurrencyMode",
        "contentType",
        "apiVersion",
    ]
    assert closed["state"] == "UploadComplete"
    done = bulk.wait(job["id"])
    assert list(done) == [
        "id",
        "operation",
        "object",
        "createdById",
        "createdDate",
        "systemModstamp",
        "state",
        "concurrencyMode",
        "contentType",
        "apiVersion",
        "jobType",
        "lineEnding",
        "columnDelimiter",
        "numberRecordsProcessed",
        "numberRecordsFailed",
        "retries",
        "totalProcessingTime",
        "apiActiveProcessingTime",
        "apexProcessingTime",
    ]
    assert (done["state"], done["numberRecordsProcessed"], done["numberRecordsFailed"]) == (
        "JobComplete",
        3,
        0,
    )


def test_result_csvs_quote_values_and_keep_the_header(bulk: BulkClient, prefix: str) -> None:
    info = bulk.load(opportunity_csv(prefix, 2), operation="insert")
    ok = bulk.results_text(info["id"], "successfulResults")
    assert ok.headers["Content-Type"] == "text/csv; charset=UTF-8"
    lines = ok.text.splitlines()
    assert (
        lines[0]
        == '"sf__Id","sf__Created",External_Id__c,Account.External_Id__c,Name,StageName,CloseDate,Amount'
    )
    assert re.match(rf'^"006\w{{15}}","true","{prefix}0","ACC-000001",', lines[1])
    failed = bulk.results_text(info["id"], "failedResults")
    assert (
        failed.text
        == '"sf__Id","sf__Error",External_Id__c,Account.External_Id__c,Name,StageName,CloseDate,Amount\n'
    )
    unprocessed = bulk.results_text(info["id"], "unprocessedrecords")
    assert (
        unprocessed.text
        == "External_Id__c,Account.External_Id__c,Name,StageName,CloseDate,Amount\n"
    )


@pytest.mark.parametrize(
    "kind", ["unprocessedrecords", "unprocessedRecords", "unprocessedrecords/"]
)
def test_both_unprocessed_spellings_and_trailing_slash(bulk: BulkClient, kind: str) -> None:
    job = bulk.create(object="Opportunity", operation="insert").json()
    bulk.upload(job["id"], "Name,StageName,CloseDate\nA,Prospecting,2026-01-01\n")
    bulk.patch(job["id"], "Aborted")
    response = bulk.results_text(job["id"], kind)
    assert response.status_code == 200
    assert response.text == 'Name,StageName,CloseDate\n"A","Prospecting","2026-01-01"\n'


def test_trailing_slashes_are_accepted(bulk: BulkClient, prefix: str) -> None:
    created = bulk.session.post(
        f"{bulk.base}/jobs/ingest/", json={"object": "Opportunity", "operation": "insert"}
    )
    job_id = created.json()["id"]
    put = bulk.session.put(
        f"{bulk.base}/jobs/ingest/{job_id}/batches/",
        data=opportunity_csv(prefix, 1).encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert put.status_code == 201
    closed = bulk.session.patch(
        f"{bulk.base}/jobs/ingest/{job_id}/", json={"state": "UploadComplete"}
    )
    assert closed.status_code == 200
    bulk.wait(job_id)
    ok = bulk.session.get(f"{bulk.base}/jobs/ingest/{job_id}/successfulResults/")
    assert len(ok.text.splitlines()) == 2


def test_second_upload_is_refused(bulk: BulkClient, prefix: str) -> None:
    job = bulk.create(object="Opportunity", operation="insert").json()
    assert bulk.upload(job["id"], opportunity_csv(prefix, 1)).status_code == 201
    second = bulk.upload(job["id"], opportunity_csv(prefix, 1))
    assert second.status_code == 400
    assert second.json() == [
        {
            "errorCode": "BULK_API_ERROR",
            "message": f"Found multipe contents for job: {job['id'][:15]}, please 'Close' / 'Abort' / "
            "'Delete' the current Job then create a new Job and make sure you only do 'PUT' once on a "
            "given Job.",
        }
    ]


def test_chunked_upload_and_gzip_results(bulk: BulkClient, prefix: str) -> None:
    data = opportunity_csv(prefix, 300).encode()
    job = bulk.create(object="Opportunity", operation="insert").json()
    chunks = (data[i : i + 997] for i in range(0, len(data), 997))
    put = bulk.session.put(
        f"{bulk.base}/jobs/ingest/{job['id']}/batches",
        data=chunks,
        headers={"Content-Type": "text/csv"},
    )
    assert put.status_code == 201 and "chunked" in put.request.headers["Transfer-Encoding"]
    bulk.patch(job["id"], "UploadComplete")
    assert bulk.wait(job["id"])["numberRecordsProcessed"] == 300
    raw = bulk.session.get(
        f"{bulk.base}/jobs/ingest/{job['id']}/successfulResults",
        headers={"Accept-Encoding": "gzip"},
        stream=True,
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(raw.raw.read())
    assert len(body.decode().splitlines()) == 301


def test_unknown_job_is_not_found(bulk: BulkClient) -> None:
    for response in (
        bulk.session.get(f"{bulk.base}/jobs/ingest/750Sx0000zzzzzzAAA"),
        bulk.patch("750Sx0000zzzzzzAAA", "Aborted"),
        bulk.results_text("nonsense", "failedResults"),
    ):
        assert response.status_code == 404
        assert response.json() == [
            {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}
        ]


def test_state_rules_for_abort_close_and_delete(bulk: BulkClient, prefix: str) -> None:
    info = bulk.load(opportunity_csv(prefix, 1), operation="insert")
    abort = bulk.patch(info["id"], "Aborted")
    assert abort.status_code == 400
    assert abort.json() == [
        {"errorCode": "INVALIDJOBSTATE", "message": "Aborting already Completed Job not allowed"}
    ]
    assert bulk.patch(info["id"], "UploadComplete").status_code == 400
    open_job = bulk.create(object="Opportunity", operation="insert").json()
    refused = bulk.session.delete(f"{bulk.base}/jobs/ingest/{open_job['id']}")
    assert refused.status_code == 400
    assert refused.json()[0]["errorCode"] == "API_ERROR"
    deleted = bulk.session.delete(f"{bulk.base}/jobs/ingest/{info['id']}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert bulk.session.get(f"{bulk.base}/jobs/ingest/{info['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"object": "Widget__c", "operation": "insert"},
            "INVALIDJOB",
            "InvalidJob : Unable to find object: Widget__c",
        ),
        (
            {"object": "Opportunity", "operation": "INSERT"},
            "API_ERROR",
            "Invalid value: 'INSERT' supplied for property: 'operation'",
        ),
        (
            {"object": "Opportunity"},
            "API_ERROR",
            "Invalid value: '' supplied for property: 'operation'",
        ),
        (
            {"object": "Opportunity", "operation": "upsert", "externalIdFieldName": "Name"},
            "INVALIDJOB",
            "InvalidJob : Field name provided, Name does not match an External ID for Opportunity",
        ),
        (
            {"object": "Opportunity", "operation": "insert", "columnDelimiter": "DOT"},
            "API_ERROR",
            "Invalid value: 'DOT' supplied for property: 'columnDelimiter'",
        ),
    ],
)
def test_create_errors(bulk: BulkClient, body: dict[str, str], code: str, message: str) -> None:
    response = bulk.create(**body)
    assert response.status_code == 400
    assert response.json() == [{"errorCode": code, "message": message}]


def test_multipart_create_starts_upload_complete(bulk: BulkClient, prefix: str) -> None:
    files = {
        "job": (None, '{"object":"Opportunity","operation":"insert"}', "application/json"),
        "content": ("content", opportunity_csv(prefix, 2), "text/csv"),
    }
    response = bulk.session.post(f"{bulk.base}/jobs/ingest", files=files)
    assert response.status_code == 200
    assert response.json()["state"] == "UploadComplete"
    assert bulk.wait(response.json()["id"])["numberRecordsProcessed"] == 2


def test_list_jobs_paginates(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    handle: SandboxHandle = fresh_sandbox(accounts=0)
    client = BulkClient(handle.connection)
    created = [
        client.create(object="Account", operation="insert").json()["id"] for _ in range(1_005)
    ]
    first = client.session.get(f"{client.base}/jobs/ingest").json()
    assert first["done"] is False and len(first["records"]) == 1_000
    assert first["records"][0]["jobType"] == "V2Ingest"
    second = client.session.get(client.root + first["nextRecordsUrl"]).json()
    assert second["done"] is True and second["nextRecordsUrl"] is None
    assert [r["id"] for r in first["records"] + second["records"]] == created


def test_upload_size_limit(bulk: BulkClient) -> None:
    job = bulk.create(object="Opportunity", operation="insert").json()
    host, port = bulk.root.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(bulk.connection.ca_cert))
    with (
        socket.create_connection((host, int(port))) as plain,
        context.wrap_socket(plain, server_hostname=host) as tls,
    ):
        request = (
            f"PUT /services/data/v59.0/jobs/ingest/{job['id']}/batches HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {bulk.connection.access_token.get_secret_value()}\r\n"
            f"Content-Type: text/csv\r\nContent-Length: {150 * 1024 * 1024}\r\n\r\n"
        )
        tls.sendall(request.encode())
        answer = ""
        while "exceeds" not in answer and (chunk := tls.recv(65536)):
            answer += chunk.decode()
    assert answer.startswith("HTTP/1.1 400")
    assert "exceeds the maximum" in answer
    assert bulk.info(job["id"])["state"] == "Open"


def test_unprefixed_prefix_helper_is_unique() -> None:
    assert unique_prefix() != unique_prefix()
