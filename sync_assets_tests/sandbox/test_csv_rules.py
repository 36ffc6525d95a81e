"""CSV rules of Bulk API 2.0 uploads: delimiters, line endings, quoting, job-level failures, #N/A."""

import pytest

from sync_assets_tests.sandbox.bulk_client import DELIMITERS, BulkClient, opportunity_csv

HEADER = "External_Id__c,Name,StageName,CloseDate"


@pytest.mark.parametrize("delimiter", list(DELIMITERS))
def test_every_column_delimiter(bulk: BulkClient, prefix: str, delimiter: str) -> None:
    data = opportunity_csv(prefix, 3, delimiter=DELIMITERS[delimiter], Description="a,b;c|d^e")
    info = bulk.load(data, operation="insert", columnDelimiter=delimiter)
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (3, 0)
    rows = bulk.results(info["id"], "successfulResults", delimiter)
    assert [r["Description"] for r in rows] == ["a,b;c|d^e"] * 3


def test_crlf_job_with_crlf_file_and_newlines_inside_quotes(bulk: BulkClient, prefix: str) -> None:
    data = opportunity_csv(prefix, 2, line_ending="\r\n", Description="line one\nline two\r\nthree")
    info = bulk.load(data, operation="insert", lineEnding="CRLF")
    assert (info["state"], info["numberRecordsFailed"]) == ("JobComplete", 0)
    stored = bulk.records(
        f"SELECT Description FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'"
    )
    assert {r["Description"] for r in stored} == {"line one\nline two\r\nthree"}


@pytest.mark.parametrize(
    ("line_ending", "data"),
    [
        ("LF", f"{HEADER}\r\nX1,A,Prospecting,2026-01-01\r\n"),
        ("CRLF", f"{HEADER}\nX1,A,Prospecting,2026-01-01\n"),
        ("LF", f'{HEADER}\r\nX1,"quoted",Prospecting,2026-01-01\r\n'),
    ],
)
def test_line_ending_mismatch_fails_the_job(bulk: BulkClient, line_ending: str, data: str) -> None:
    info = bulk.load(data, operation="insert", lineEnding=line_ending)
    assert info["state"] == "Failed"
    assert info["errorMessage"] == (
        f"ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {line_ending}"
    )
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (0, 0)


def test_unknown_column_fails_the_job_and_nothing_is_applied(bulk: BulkClient, prefix: str) -> None:
    data = opportunity_csv(prefix, 5, ContactId__c="x")
    info = bulk.load(data, operation="insert")
    assert info["state"] == "Failed"
    assert info["errorMessage"] == "InvalidBatch : Field name not found : ContactId__c"
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 0
    unprocessed = bulk.results(info["id"], "unprocessedrecords")
    assert len(unprocessed) == 5


@pytest.mark.parametrize(
    "data",
    [
        f'{HEADER}\nX1,Na"me,Prospecting,2026-01-01\n',
        f'{HEADER}\nX1,"Name"x,Prospecting,2026-01-01\n',
        '\ufeff"External_Id__c","Name","StageName","CloseDate"\nX1,A,Prospecting,2026-01-01\n',
    ],
    ids=["stray-quote", "text-after-closing-quote", "bom-before-quoted-header"],
)
def test_unparsable_csv_fails_the_job(bulk: BulkClient, data: str) -> None:
    info = bulk.load(data, operation="insert")
    assert info["state"] == "Failed"
    assert info["errorMessage"] == (
        "InvalidBatch : Failed to parse CSV. Found unescaped quote. A value with quote should be "
        "within a quote"
    )


def test_bom_before_unquoted_header_is_an_unknown_field(bulk: BulkClient) -> None:
    info = bulk.load(f"\ufeff{HEADER}\nX1,A,Prospecting,2026-01-01\n", operation="insert")
    assert info["errorMessage"] == "InvalidBatch : Field name not found : \ufeffExternal_Id__c"


def test_na_sets_null_and_empty_leaves_unchanged(bulk: BulkClient, prefix: str) -> None:
    created = bulk.load(
        opportunity_csv(prefix, 1, NextStep="Call", Description="Keep me", Amount="10"),
        operation="upsert",
        externalIdFieldName="External_Id__c",
    )
    assert created["numberRecordsFailed"] == 0
    data = f"External_Id__c,NextStep,Description,Amount\n{prefix}0,#N/A,,#N/A\n"
    updated = bulk.load(data, operation="upsert", externalIdFieldName="External_Id__c")
    assert updated["numberRecordsFailed"] == 0
    [record] = bulk.records(
        f"SELECT NextStep, Description, Amount, Name FROM Opportunity WHERE External_Id__c = '{prefix}0'"
    )
    assert record["NextStep"] is None and record["Amount"] is None
    assert record["Description"] == "Keep me" and record["Name"] == f"Opportunity {prefix}0"


def test_values_are_not_trimmed_and_unicode_survives(bulk: BulkClient, prefix: str) -> None:
    name = "  Zürich · 東京 😀  "
    data = f'External_Id__c,Name,StageName,CloseDate\n{prefix}0,"{name}",Prospecting,2026-01-01\n'
    assert bulk.load(data, operation="insert")["numberRecordsFailed"] == 0
    [record] = bulk.records(f"SELECT Name FROM Opportunity WHERE External_Id__c = '{prefix}0'")
    assert record["Name"] == name


def test_header_only_upload_completes_with_no_records(bulk: BulkClient) -> None:
    info = bulk.load(HEADER + "\n", operation="insert")
    assert (info["state"], info["numberRecordsProcessed"]) == ("JobComplete", 0)


def test_close_without_upload_fails_the_job(bulk: BulkClient) -> None:
    job = bulk.create(object="Opportunity", operation="insert").json()
    assert bulk.patch(job["id"], "UploadComplete").status_code == 200
    info = bulk.wait(job["id"])
    assert info["state"] == "Failed" and info["errorMessage"].startswith("ClientInputError")
