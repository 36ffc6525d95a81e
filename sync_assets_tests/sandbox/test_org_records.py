"""REST records and Bulk query jobs in the acme org: its rules, fields and users apply to them.

A REST write goes through the org's DML as a Bulk row does (validation rules: facts §2, in
REST's error form ``message``/``errorCode``/``fields``); every read and write sees the object as
the requesting user does (field-level security hides ``NextStep`` from the integration user,
facts §9) and is done as that user (``LastModifiedById``).
"""

import csv
import io
from typing import Any

import requests

from sync_assets_tests.sandbox.bulk_client import BulkClient, unique_prefix
from sync_assets_tests.sandbox.conftest import AcmeSandbox

NEXT_STEP = "Call the buyer"


def _create(client: BulkClient, **fields: Any) -> requests.Response:
    key = unique_prefix()
    record = {
        "External_Id__c": key,
        "Name": f"Opportunity {key}",
        "StageName": "Discovery",
        "CloseDate": "2026-11-28",
        "Account": {"External_Id__c": "ACC-000001"},
        **fields,
    }
    return client.session.post(f"{client.base}/sobjects/Opportunity/", json=record)


def _created_id(client: BulkClient, **fields: Any) -> str:
    answer = _create(client, **fields)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _record_url(client: BulkClient, record_id: str) -> str:
    return f"{client.base}/sobjects/Opportunity/{record_id}"


def _query_job_rows(client: BulkClient, soql: str) -> list[dict[str, str]]:
    info = client.run_query(soql)
    assert info["state"] == "JobComplete", info
    return list(csv.DictReader(io.StringIO(client.query_results(info["id"]).text)))


def _user_id(client: BulkClient, username: str) -> str:
    [user] = client.records(f"SELECT Id FROM User WHERE Username = '{username}'")
    return str(user["Id"])


def test_a_rest_create_or_update_that_breaks_a_validation_rule_is_a_400(acme: AcmeSandbox) -> None:
    bulk = BulkClient(acme.connection)
    refused = _create(bulk, Amount=600_000_000)
    assert (refused.status_code, refused.json()) == (
        400,
        [
            {
                "message": "Amount above the approval limit",
                "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                "fields": ["Amount"],
            }
        ],
    )
    record_id = _created_id(bulk, Amount=500_000_000)
    # The rule sees the whole record: the stage sent and the amount the update clears.
    updated = bulk.session.patch(
        _record_url(bulk, record_id), json={"StageName": "Closed Won", "Amount": None}
    )
    assert (updated.status_code, updated.json()) == (
        400,
        [
            {
                "message": "A won opportunity needs an amount",
                "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                "fields": [],
            }
        ],
    )
    [record] = bulk.records(f"SELECT StageName, Amount FROM Opportunity WHERE Id = '{record_id}'")
    assert (record["StageName"], record["Amount"]) == ("Discovery", 500_000_000)


def test_a_rest_update_by_a_person_is_last_modified_by_that_person(acme: AcmeSandbox) -> None:
    bulk, person = BulkClient(acme.connection), acme.person()
    integration_id = _user_id(bulk, acme.connection.username)
    rep_id = _user_id(bulk, acme.org.document["users"]["people"][0]["username"])
    record_id = _created_id(bulk)
    updated = person.session.patch(
        _record_url(person, record_id), json={"StageName": "Qualification"}
    )
    assert updated.status_code == 204, updated.text
    soql = (
        "SELECT CreatedById, LastModifiedById, LastModifiedBy.Username, StageName "
        f"FROM Opportunity WHERE Id = '{record_id}'"
    )
    [record] = bulk.records(soql)
    assert (record["CreatedById"], record["LastModifiedById"]) == (integration_id, rep_id)
    assert record["LastModifiedBy"]["Username"] == "rep@acme.example"
    assert _query_job_rows(bulk, soql) == [
        {
            "CreatedById": integration_id,
            "LastModifiedById": rep_id,
            "LastModifiedBy.Username": "rep@acme.example",
            "StageName": "Qualification",
        }
    ]


def test_a_hidden_field_exists_only_for_the_users_who_see_it(acme: AcmeSandbox) -> None:
    """REST reads and writes, and Bulk query jobs, as each user sees Opportunity."""
    bulk, person = BulkClient(acme.connection), acme.person()
    soql = "SELECT Id, NextStep FROM Opportunity WHERE NextStep != null"
    refused = bulk.create_query(operation="query", query=soql)
    assert refused.status_code == 400
    [error] = refused.json()
    assert error["errorCode"] == "INVALID_FIELD"
    assert "No such column 'NextStep' on entity 'Opportunity'" in error["message"]
    written = _create(bulk, NextStep=NEXT_STEP)
    assert (written.status_code, written.json()[0]["errorCode"]) == (400, "INVALID_FIELD")

    record_id = _created_id(person, NextStep=NEXT_STEP)
    assert {"Id": record_id, "NextStep": NEXT_STEP} in _query_job_rows(person, soql)
    assert person.session.get(_record_url(person, record_id)).json()["NextStep"] == NEXT_STEP
    read = bulk.session.get(_record_url(bulk, record_id)).json()
    assert read["Id"] == record_id and "NextStep" not in read


def test_a_bulk_query_job_reads_the_org_s_own_fields(acme: AcmeSandbox) -> None:
    """Custom fields, CurrencyIsoCode and RecordType, numbers with the decimals they were sent."""
    bulk = BulkClient(acme.connection)
    [renewal] = bulk.records("SELECT Id FROM RecordType WHERE DeveloperName = 'Renewal'")
    record_id = _created_id(
        bulk,
        StageName="Renewal Open",
        RecordTypeId=renewal["Id"],
        CurrencyIsoCode="EUR",
        Region__c="EMEA",
        Forecast_Score__c=12.25,
    )
    soql = (
        "SELECT RecordType.DeveloperName, CurrencyIsoCode, Region__c, Forecast_Score__c "
        f"FROM Opportunity WHERE Id = '{record_id}'"
    )
    assert _query_job_rows(bulk, soql) == [
        {
            "RecordType.DeveloperName": "Renewal",
            "CurrencyIsoCode": "EUR",
            "Region__c": "EMEA",
            "Forecast_Score__c": "12.25",
        }
    ]


def test_setup_objects_are_read_only_through_rest(acme: AcmeSandbox) -> None:
    bulk = BulkClient(acme.connection)
    answer = bulk.session.post(f"{bulk.base}/sobjects/RecordType/", json={"Name": "Other"})
    assert (answer.status_code, answer.json()) == (
        400,
        [
            {
                "message": "entity type cannot be inserted: Record Type",
                "errorCode": "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                "fields": [],
            }
        ],
    )
