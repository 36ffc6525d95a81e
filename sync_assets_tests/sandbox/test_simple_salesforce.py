"""Conformance through simple-salesforce, unmodified: bulk2 operations, result getters, query."""

import csv
import io

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceOperationError

from sync_assets_tests.sandbox.bulk_client import BulkClient

WAIT = 0.1


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _opportunities(prefix: str, count: int, **extra: str) -> list[dict[str, str]]:
    return [
        {
            "External_Id__c": f"{prefix}{n}",
            "Account.External_Id__c": f"ACC-{n % 5:06d}",
            "Name": f"Opportunity {n}",
            "StageName": "Qualification",
            "CloseDate": "2026-12-01",
            **extra,
        }
        for n in range(count)
    ]


def test_upsert_creates_then_updates(sf: Salesforce, bulk: BulkClient, prefix: str) -> None:
    first = sf.bulk2.Opportunity.upsert(
        records=_opportunities(prefix, 30), external_id_field="External_Id__c", wait=WAIT
    )
    assert first[0]["numberRecordsProcessed"] == 30
    assert first[0]["numberRecordsFailed"] == 0
    created = _rows(sf.bulk2.Opportunity.get_successful_records(first[0]["job_id"]))
    assert {r["sf__Created"] for r in created} == {"true"}
    again = sf.bulk2.Opportunity.upsert(
        records=_opportunities(prefix, 30, StageName="Closed Won"),
        external_id_field="External_Id__c",
        wait=WAIT,
    )
    updated = _rows(sf.bulk2.Opportunity.get_successful_records(again[0]["job_id"]))
    assert {r["sf__Created"] for r in updated} == {"false"}
    assert {r["sf__Id"] for r in updated} == {r["sf__Id"] for r in created}
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 30
    won = bulk.count(f"External_Id__c LIKE '{prefix}%' AND IsWon = true AND IsClosed = true")
    assert won == 30


def test_insert_update_delete_cycle(sf: Salesforce, bulk: BulkClient, prefix: str) -> None:
    inserted = sf.bulk2.Opportunity.insert(records=_opportunities(prefix, 12), wait=WAIT)
    ids = [
        r["sf__Id"]
        for r in _rows(sf.bulk2.Opportunity.get_successful_records(inserted[0]["job_id"]))
    ]
    assert len(ids) == 12 and all(i.startswith("006") and len(i) == 18 for i in ids)
    sf.bulk2.Opportunity.update(
        records=[{"Id": i, "NextStep": "Call back"} for i in ids], wait=WAIT
    )
    records = bulk.records(
        f"SELECT NextStep, Name FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'"
    )
    assert {r["NextStep"] for r in records} == {"Call back"}
    assert all(r["Name"].startswith("Opportunity ") for r in records), "empty cells left unchanged"
    deleted = sf.bulk2.Opportunity.delete(records=[{"Id": i} for i in ids[:5]], wait=WAIT)
    assert deleted[0]["numberRecordsProcessed"] == 5
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 7
    everything = bulk.query(
        f"SELECT COUNT() FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'",
        resource="queryAll",
    )
    assert everything["totalSize"] == 12


def test_failed_records_are_reported(sf: Salesforce, prefix: str) -> None:
    rows = _opportunities(prefix, 4)
    rows[1]["StageName"] = "Dreaming"
    rows[2]["Account.External_Id__c"] = "ACC-NOPE"
    result = sf.bulk2.Opportunity.upsert(
        records=rows, external_id_field="External_Id__c", wait=WAIT
    )
    assert result[0]["numberRecordsFailed"] == 2
    failed = {
        r["External_Id__c"]: r
        for r in _rows(sf.bulk2.Opportunity.get_failed_records(result[0]["job_id"]))
    }
    assert failed[f"{prefix}1"]["sf__Error"] == (
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Stage: bad value for restricted picklist field: "
        "Dreaming:StageName --"
    )
    assert failed[f"{prefix}2"]["sf__Error"] == (
        "INVALID_FIELD:Foreign key external ID: ACC-NOPE not found for field External_Id__c "
        "in entity Account:--"
    )
    assert {r["sf__Id"] for r in failed.values()} == {""}


def test_unprocessed_records_of_an_aborted_job(
    sf: Salesforce, bulk: BulkClient, prefix: str
) -> None:
    job = bulk.create(object="Opportunity", operation="insert").json()
    data = "External_Id__c,Name,StageName,CloseDate\n" + "".join(
        f"{prefix}{n},Name {n},Prospecting,2026-01-01\n" for n in range(3)
    )
    assert bulk.upload(job["id"], data).status_code == 201
    assert bulk.patch(job["id"], "Aborted").json()["state"] == "Aborted"
    unprocessed = _rows(sf.bulk2.Opportunity.get_unprocessed_records(job["id"]))
    assert [r["External_Id__c"] for r in unprocessed] == [f"{prefix}{n}" for n in range(3)]
    assert set(unprocessed[0]) == {"External_Id__c", "Name", "StageName", "CloseDate"}


def test_failed_job_raises_in_simple_salesforce(sf: Salesforce, prefix: str) -> None:
    with pytest.raises(SalesforceOperationError, match="Field name not found : Nope__c"):
        sf.bulk2.Opportunity.insert(
            records=[
                {"Name": "x", "StageName": "Prospecting", "CloseDate": "2026-01-01", "Nope__c": "1"}
            ],
            wait=WAIT,
        )


def test_query_count_pages_and_limits(sf: Salesforce, bulk: BulkClient, prefix: str) -> None:
    sf.bulk2.Opportunity.insert(records=_opportunities(prefix, 2_100), wait=WAIT)
    count = sf.query(f"SELECT COUNT() FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'")
    assert count["totalSize"] == 2_100 and count["records"] == []
    first = sf.query(
        f"SELECT Id, Account.External_Id__c FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'"
    )
    assert len(first["records"]) == 2_000 and not first["done"]
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-2000")
    everything = sf.query_all(f"SELECT Id FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'")
    assert len(everything["records"]) == 2_100
    assert first["records"][0]["Account"]["attributes"]["type"] == "Account"
    assert first["records"][0]["Account"]["External_Id__c"].startswith("ACC-")
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] > limits["DailyApiRequests"]["Remaining"]
    assert sf.api_usage["api-usage"].used >= 1
