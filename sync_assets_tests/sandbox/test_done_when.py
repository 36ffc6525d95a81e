"""The issue's "done when": simple-salesforce upserts 100,000 opportunities, twice, into a fresh sandbox."""

import csv
import io

import pytest
from simple_salesforce import Salesforce

from sync_assets.salesforce.transport import verified_session

ROWS = 100_000
STAGES = ("Prospecting", "Qualification", "Negotiation/Review", "Closed Won", "Closed Lost")


def _opportunities() -> list[dict[str, str]]:
    return [
        {
            "External_Id__c": f"OPP-{n:08d}",
            "Account.External_Id__c": f"ACC-{n % 1_000:06d}",
            "Name": f"Opportunity {n}",
            "StageName": STAGES[n % len(STAGES)],
            "CloseDate": f"2026-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
            "Amount": f"{n % 50_000}.{n % 100:02d}",
            "Description": f'Row {n}, with "quotes"\nand a second line'
            if n % 7 == 0
            else f"Row {n}",
            "Sync_Partition__c": str(n % 10),
        }
        for n in range(ROWS)
    ]


@pytest.mark.slow
def test_upserting_100000_opportunities_twice_creates_them_once(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    connection = fresh_sandbox(accounts=1_000).connection
    sf = Salesforce(
        instance_url=connection.instance_url,
        session_id=connection.access_token.get_secret_value(),
        session=verified_session(connection.ca_cert),
    )
    records = _opportunities()
    first = sf.bulk2.Opportunity.upsert(
        records=records, external_id_field="External_Id__c", wait=0.5
    )
    assert sum(job["numberRecordsProcessed"] for job in first) == ROWS
    assert sum(job["numberRecordsFailed"] for job in first) == 0
    assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == ROWS

    second = sf.bulk2.Opportunity.upsert(
        records=records, external_id_field="External_Id__c", wait=0.5
    )
    assert sum(job["numberRecordsFailed"] for job in second) == 0
    assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == ROWS
    created = [
        row["sf__Created"]
        for job in second
        for row in csv.DictReader(
            io.StringIO(sf.bulk2.Opportunity.get_successful_records(job["job_id"]))
        )
    ]
    assert len(created) == ROWS and set(created) == {"false"}
    partition = sf.query("SELECT COUNT() FROM Opportunity WHERE Sync_Partition__c = '3'")
    assert partition["totalSize"] == ROWS // 10
