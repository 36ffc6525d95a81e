"""Bulk API 2.0 query jobs: shapes, CSV results, locator paging, refusals, abort/delete, clients.

Modelled on the Bulk API 2.0 Developer Guide (query_create_job, query_get_one_job,
query_get_job_results, query_get_all_jobs, query_abort_job, query_delete_job) and on what
simple-salesforce 1.12's ``bulk2`` sends.
"""

import base64
import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce import Salesforce

from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv

CREATE_KEYS = [
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
    "lineEnding",
    "columnDelimiter",
]
LIST_KEYS = [*CREATE_KEYS[:10], "jobType", "lineEnding", "columnDelimiter"]
INFO_KEYS = [
    *LIST_KEYS,
    "numberRecordsProcessed",
    "retries",
    "totalProcessingTime",
    "isPkChunkingSupported",
]


def _load(bulk: BulkClient, prefix: str, count: int) -> None:
    info = bulk.load(opportunity_csv(prefix, count), operation="insert")
    assert (info["state"], info["numberRecordsFailed"]) == ("JobComplete", 0), info


def _rows(text: str, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def _locator(record: int) -> str:
    return base64.b64encode(str(record).encode()).decode().rstrip("=")


def test_a_query_job_runs_and_reports_as_documented(bulk: BulkClient, prefix: str) -> None:
    _load(bulk, prefix, 3)
    soql = f"SELECT Id FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'"
    created = bulk.create_query(operation="query", query=soql)
    assert created.status_code == 200
    job = created.json()
    assert list(job) == CREATE_KEYS
    user_id = bulk.session.get(f"{bulk.root}/services/oauth2/userinfo").json()["user_id"]
    assert job["state"] == "UploadComplete"
    assert (job["operation"], job["object"], job["createdById"]) == (
        "query",
        "Opportunity",
        user_id,
    )
    assert (job["lineEnding"], job["columnDelimiter"], job["apiVersion"]) == ("LF", "COMMA", 59.0)
    assert job["id"].startswith("750") and len(job["id"]) == 18

    done = bulk.wait(job["id"], kind="query")
    assert list(done) == INFO_KEYS
    assert done["state"] == "JobComplete" and done["jobType"] == "V2Query"
    assert done["numberRecordsProcessed"] == 3 and done["retries"] == 0
    assert isinstance(done["totalProcessingTime"], int)

    listed = bulk.session.get(f"{bulk.base}/jobs/query").json()
    entry = next(r for r in listed["records"] if r["id"] == job["id"])
    assert list(entry) == LIST_KEYS and listed["done"] is True
    assert bulk.session.get(f"{bulk.base}/jobs/query?jobType=V2Ingest").json()["records"] == []
    ingest = bulk.session.get(f"{bulk.base}/jobs/ingest").json()["records"]
    assert job["id"] not in {r["id"] for r in ingest}


def test_results_are_quoted_csv_in_the_bulk_value_formats(
    sf: Salesforce, bulk: BulkClient, prefix: str
) -> None:
    description = 'She said "yes", then\nleft · Zürich 😀'
    won = sf.Opportunity.create(
        {
            "External_Id__c": f"{prefix}won",
            "Name": "Won, with a comma",
            "StageName": "Closed Won",
            "CloseDate": "2026-11-28",
            "Amount": 1250.5,
            "Description": description,
            "Account": {"External_Id__c": "ACC-000002"},
        }
    )["id"]
    bare = sf.Opportunity.create(
        {
            "External_Id__c": f"{prefix}bare",
            "Name": "Bare",
            "StageName": "Prospecting",
            "CloseDate": "2027-01-31",
        }
    )["id"]
    job = bulk.run_query(
        "SELECT Id, Name, Amount, IsWon, CloseDate, CreatedDate, Description, "
        f"Account.External_Id__c FROM Opportunity WHERE External_Id__c LIKE '{prefix}%' "
        "ORDER BY External_Id__c DESC"
    )
    response = bulk.query_results(job["id"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=UTF-8"
    text = response.content.decode()
    header, first, rest = text.split("\n", 2)
    assert header == (
        '"Id","Name","Amount","IsWon","CloseDate","CreatedDate","Description",'
        '"Account.External_Id__c"'
    )
    created = bulk.records(f"SELECT CreatedDate FROM Opportunity WHERE Id = '{won}'")[0]
    created_z = created["CreatedDate"].removesuffix("+0000") + "Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created_z)
    assert first == (
        f'"{won}","Won, with a comma","1250.5","true","2026-11-28","{created_z}",'
        '"She said ""yes"", then'
    )
    rows = _rows(text)
    assert [r["Id"] for r in rows] == [won, bare]
    assert rows[0]["Description"] == description
    assert rows[1] | {"CreatedDate": ""} == {
        "Id": bare,
        "Name": "Bare",
        "Amount": "",
        "IsWon": "false",
        "CloseDate": "2027-01-31",
        "CreatedDate": "",
        "Description": "",
        "Account.External_Id__c": "",
    }
    assert rest.endswith(',"",""\n')


def test_the_job_delimiter_and_line_ending_shape_the_csv(bulk: BulkClient, prefix: str) -> None:
    _load(bulk, prefix, 2)
    job = bulk.run_query(
        f"SELECT External_Id__c, StageName FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'"
        " ORDER BY External_Id__c",
        columnDelimiter="PIPE",
        lineEnding="CRLF",
    )
    assert bulk.query_results(job["id"]).content.decode() == (
        f'"External_Id__c"|"StageName"\r\n"{prefix}0"|"Prospecting"\r\n'
        f'"{prefix}1"|"Prospecting"\r\n'
    )


def test_max_records_and_locators_page_through_the_results(bulk: BulkClient, prefix: str) -> None:
    _load(bulk, prefix, 25)
    soql = (
        f"SELECT Id, External_Id__c FROM Opportunity WHERE External_Id__c LIKE '{prefix}%' "
        "ORDER BY External_Id__c"
    )
    job_id = bulk.run_query(soql)["id"]
    pages: list[str] = []
    locators: list[str] = []
    counts: list[str] = []
    params: dict[str, Any] = {"maxRecords": 10}
    while True:
        response = bulk.query_results(job_id, **params)
        assert response.status_code == 200
        pages.append(response.content.decode())
        counts.append(response.headers["Sforce-NumberOfRecords"])
        locators.append(response.headers["Sforce-Locator"])
        if locators[-1] == "null":
            break
        params["locator"] = locators[-1]
    assert counts == ["10", "10", "5"]
    # Salesforce's v49+ locators are base64 of the next record: MTAwMDA is 10000.
    assert locators == [_locator(10), _locator(20), "null"]
    assert all(page.startswith('"Id","External_Id__c"\n') for page in pages)
    keys = [row["External_Id__c"] for page in pages for row in _rows(page)]
    assert keys == sorted(f"{prefix}{n}" for n in range(25))
    again = bulk.query_results(job_id, maxRecords=10, locator=_locator(10))
    assert again.content.decode() == pages[1]
    whole = bulk.query_results(job_id)
    assert (whole.headers["Sforce-NumberOfRecords"], whole.headers["Sforce-Locator"]) == (
        "25",
        "null",
    )
    assert len(_rows(whole.content.decode())) == 25
    for bad in ({"locator": "bm9wZQ"}, {"locator": _locator(25)}, {"maxRecords": 0}):
        assert bulk.query_results(job_id, **bad).status_code == 400


def test_query_all_also_returns_deleted_records(
    sf: Salesforce, bulk: BulkClient, prefix: str
) -> None:
    _load(bulk, prefix, 3)
    soql = (
        f"SELECT External_Id__c, IsDeleted FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'"
        " ORDER BY External_Id__c"
    )
    sf.Opportunity.delete(f"External_Id__c/{prefix}1")
    live = bulk.query_results(bulk.run_query(soql)["id"]).content.decode()
    everything = bulk.query_results(bulk.run_query(soql, "queryAll")["id"]).content.decode()
    assert [(r["External_Id__c"], r["IsDeleted"]) for r in _rows(live)] == [
        (f"{prefix}0", "false"),
        (f"{prefix}2", "false"),
    ]
    assert [(r["External_Id__c"], r["IsDeleted"]) for r in _rows(everything)] == [
        (f"{prefix}0", "false"),
        (f"{prefix}1", "true"),
        (f"{prefix}2", "false"),
    ]


@pytest.mark.parametrize(
    ("job", "error_code", "message"),
    [
        (
            {"query": "SELECT Name, (SELECT Id FROM OpportunityLineItems) FROM Opportunity"},
            "API_ERROR",
            # OpenFn/adaptors#395: an org's answer to a subquery.
            "Aggregate Relationships not supported in Bulk V2 Query with CSV content type",
        ),
        (
            {"query": "SELECT COUNT() FROM Opportunity"},
            "API_ERROR",
            "Aggregate functions not supported in Bulk V2 Query",
        ),
        (
            {"query": "SELECT StageName FROM Opportunity GROUP BY StageName"},
            "API_ERROR",
            "GROUP BY not supported in Bulk V2 Query",
        ),
        (
            {"query": "SELECT Id FROM Opportunity LIMIT 5 OFFSET 10"},
            "API_ERROR",
            "OFFSET not supported in Bulk V2 Query",
        ),
        (
            {"query": "SELECT TYPEOF Owner WHEN User THEN Name END FROM Opportunity"},
            "API_ERROR",
            "TYPEOF not supported in Bulk V2 Query",
        ),
        (
            {"query": "SELECT Nope__c FROM Opportunity"},
            "INVALID_FIELD",
            "\nSELECT Nope__c FROM Opportunity\n       ^\nERROR at Row:1:Column:8\n"
            "No such column 'Nope__c' on entity 'Opportunity'. If you are attempting to use a "
            "custom field, be sure to append the '__c' after the custom field name. Please "
            "reference your WSDL or the describe call for the appropriate names.",
        ),
        ({"query": "SELECT Id FROM Nope"}, "INVALID_TYPE", None),
        ({"query": "SELECT Id Opportunity"}, "MALFORMED_QUERY", None),
        ({"query": ""}, "API_ERROR", "Invalid value: '' supplied for property: 'query'"),
        (
            {"query": "SELECT Id FROM Opportunity", "operation": "delete"},
            "API_ERROR",
            "Invalid value: 'delete' supplied for property: 'operation'",
        ),
        (
            {"query": "SELECT Id FROM Opportunity", "contentType": "JSON"},
            "API_ERROR",
            "Invalid value: 'JSON' supplied for property: 'contentType'",
        ),
    ],
)
def test_what_bulk_query_refuses_is_a_400_at_create(
    bulk: BulkClient, job: dict[str, str], error_code: str, message: str | None
) -> None:
    before = len(bulk.session.get(f"{bulk.base}/jobs/query").json()["records"])
    answer = bulk.create_query(**({"operation": "query"} | job))
    assert answer.status_code == 400
    ((error),) = answer.json()
    assert list(error) == ["errorCode", "message"]
    assert error["errorCode"] == error_code
    if message is not None:
        assert error["message"] == message
    assert len(bulk.session.get(f"{bulk.base}/jobs/query").json()["records"]) == before


def test_a_finished_job_cannot_be_aborted_and_is_deleted_once(
    bulk: BulkClient, prefix: str
) -> None:
    job_id = bulk.run_query(f"SELECT Id FROM Opportunity WHERE Name = '{prefix}'")["id"]
    url = f"{bulk.base}/jobs/query/{job_id}"
    aborted = bulk.session.patch(url, json={"state": "Aborted"})
    assert aborted.status_code == 400
    assert aborted.json() == [
        {"errorCode": "INVALIDJOBSTATE", "message": "Aborting already Completed Job not allowed"}
    ]
    other_version = bulk.session.get(url.replace("/v59.0/", "/v58.0/") + "/results")
    assert other_version.status_code == 409
    empty = bulk.query_results(job_id)
    assert (empty.content, empty.headers["Sforce-Locator"]) == (b'"Id"\n', "null")
    assert bulk.session.delete(url).status_code == 204
    assert bulk.session.get(url).status_code == 404
    assert bulk.session.delete(url).status_code == 404


def test_query_jobs_exist_from_api_47(bulk: BulkClient) -> None:
    root = bulk.base.rsplit("/v", 1)[0]
    assert bulk.session.get(f"{root}/v46.0/jobs/query").status_code == 404
    assert bulk.session.get(f"{root}/v47.0/jobs/query").status_code == 200


def test_simple_salesforce_bulk2_query_pages_like_the_rest_query(
    sf: Salesforce, bulk: BulkClient, prefix: str, tmp_path: Path
) -> None:
    _load(bulk, prefix, 23)
    soql = (
        f"SELECT Id, External_Id__c, Amount FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'"
    )
    rest = {r["Id"]: (r["External_Id__c"], r["Amount"]) for r in bulk.records(soql)}
    pages = list(sf.bulk2.Opportunity.query(soql, max_records=7, wait=0.1))
    assert [len(_rows(page)) for page in pages] == [7, 7, 7, 2]
    bulk_rows = {
        r["Id"]: (r["External_Id__c"], float(r["Amount"])) for p in pages for r in _rows(p)
    }
    assert bulk_rows == rest
    every = list(sf.bulk2.Opportunity.query_all(soql, wait=0.1))
    assert len(every) == 1 and len(_rows(every[0])) == 23
    downloaded = sf.bulk2.Opportunity.download(soql, str(tmp_path), max_records=10, wait=0.1)
    assert [d["number_of_records"] for d in downloaded] == [10, 10, 3]
    assert sum(len(_rows(Path(d["file"]).read_text())) for d in downloaded) == 23
