"""Record semantics: upsert matching, 200-row chunk duplicates, parents, validation, derived fields."""

import re

import pytest

from sync_assets.sandbox.ids import to_id18
from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv

UPSERT = {"operation": "upsert", "externalIdFieldName": "External_Id__c"}
HEADER = "External_Id__c,Name,StageName,CloseDate"


def _row(key: str, name: str = "N", stage: str = "Prospecting") -> str:
    return f"{key},{name},{stage},2026-01-01\n"


def test_duplicate_key_inside_one_chunk_fails_every_copy(bulk: BulkClient, prefix: str) -> None:
    data = (
        HEADER
        + "\n"
        + _row(f"{prefix}A", "first")
        + _row(f"{prefix}B")
        + _row(f"{prefix}A", "second")
    )
    info = bulk.load(data, **UPSERT)
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (3, 2)
    failed = bulk.results(info["id"], "failedResults")
    assert {r["sf__Error"] for r in failed} == {
        f"DUPLICATE_VALUE:Duplicate external id specified: {prefix}A:External_Id__c --"
    }
    assert bulk.count(f"External_Id__c LIKE '{prefix}%'") == 1


def test_duplicate_key_across_chunks_last_one_wins(bulk: BulkClient, prefix: str) -> None:
    filler = "".join(_row(f"{prefix}F{n}") for n in range(250))
    data = HEADER + "\n" + _row(f"{prefix}K", "first") + filler + _row(f"{prefix}K", "last")
    info = bulk.load(data, **UPSERT)
    assert info["numberRecordsFailed"] == 0
    ok = {
        (r["External_Id__c"], r["Name"]): r for r in bulk.results(info["id"], "successfulResults")
    }
    assert ok[(f"{prefix}K", "first")]["sf__Created"] == "true"
    assert ok[(f"{prefix}K", "last")]["sf__Created"] == "false"
    assert ok[(f"{prefix}K", "first")]["sf__Id"] == ok[(f"{prefix}K", "last")]["sf__Id"]
    [record] = bulk.records(f"SELECT Name FROM Opportunity WHERE External_Id__c = '{prefix}K'")
    assert record["Name"] == "last"


def test_external_id_matching_is_case_sensitive(bulk: BulkClient, prefix: str) -> None:
    bulk.load(HEADER + "\n" + _row(f"{prefix}abc"), **UPSERT)
    info = bulk.load(HEADER + "\n" + _row(f"{prefix}ABC"), **UPSERT)
    assert bulk.results(info["id"], "successfulResults")[0]["sf__Created"] == "true"


def test_parent_resolution_and_missing_parent(bulk: BulkClient, prefix: str) -> None:
    data = (
        opportunity_csv(prefix, 1, account="ACC-000007")
        + f"{prefix}9,ACC-999999,X,Prospecting,2026-01-01,1\n"
    )
    info = bulk.load(data, **UPSERT)
    [failed] = bulk.results(info["id"], "failedResults")
    assert failed["sf__Error"] == (
        "INVALID_FIELD:Foreign key external ID: ACC-999999 not found for field External_Id__c in entity Account:--"
    )
    [record] = bulk.records(
        f"SELECT AccountId, Account.External_Id__c FROM Opportunity WHERE External_Id__c = '{prefix}0'"
    )
    assert record["Account"]["External_Id__c"] == "ACC-000007"
    assert record["AccountId"].startswith("001")


@pytest.mark.parametrize(
    ("header", "row", "error"),
    [
        (
            HEADER,
            "{p},,Prospecting,2026-01-01",
            "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --",
        ),
        (
            "External_Id__c,Name",
            "{p},N",
            "REQUIRED_FIELD_MISSING:Required fields are missing: [StageName, CloseDate]:StageName CloseDate --",
        ),
        (
            HEADER,
            "{p},N,Sleeping,2026-01-01",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Stage: bad value for restricted picklist field: Sleeping:StageName --",
        ),
        (
            HEADER,
            "{p},N,Prospecting,2026-02-30",
            "INVALID_TYPE_ON_FIELD_IN_RECORD:Close Date: value not of required type: 2026-02-30:CloseDate --",
        ),
        (
            HEADER,
            "{p},N,Prospecting,28/11/2026",
            "INVALID_TYPE_ON_FIELD_IN_RECORD:Close Date: value not of required type: 28/11/2026:CloseDate --",
        ),
        (
            HEADER + ",Amount",
            "{p},N,Prospecting,2026-01-01,12abc",
            "INVALID_TYPE_ON_FIELD_IN_RECORD:Amount: value not of required type: 12abc:Amount --",
        ),
        (
            HEADER + ",Amount",
            "{p},N,Prospecting,2026-01-01,1e17",
            "NUMBER_OUTSIDE_VALID_RANGE:Amount: value outside of valid range on numeric field: 1e17:Amount --",
        ),
        (
            HEADER + ",Probability",
            "{p},N,Prospecting,2026-01-01,101",
            "NUMBER_OUTSIDE_VALID_RANGE:Probability (%): value outside of valid range on numeric field: 101:Probability --",
        ),
        (
            HEADER + ",IsWon",
            "{p},N,Prospecting,2026-01-01,true",
            "INVALID_FIELD_FOR_INSERT_UPDATE:Unable to create/update fields: IsWon. Please check the security settings of this field and verify that it is read/write for your profile or permission set.:IsWon --",
        ),
    ],
)
def test_row_validation_errors(
    bulk: BulkClient, prefix: str, header: str, row: str, error: str
) -> None:
    info = bulk.load(f"{header}\n{row.format(p=prefix)}\n", **UPSERT)
    [failed] = bulk.results(info["id"], "failedResults")
    assert failed["sf__Error"] == error


def test_string_too_long(bulk: BulkClient, prefix: str) -> None:
    info = bulk.load(HEADER + "\n" + _row(f"{prefix}L", "x" * 121), **UPSERT)
    [failed] = bulk.results(info["id"], "failedResults")
    assert (
        failed["sf__Error"]
        == f"STRING_TOO_LONG:Name: data value too large: {'x' * 121} (max length=120):Name --"
    )


def test_derived_fields_follow_the_stage(bulk: BulkClient, prefix: str) -> None:
    data = (
        HEADER
        + ",Probability\n"
        + f"{prefix}W,N,Closed Won,2026-01-01,\n{prefix}L,N,Closed Lost,2026-01-01,\n{prefix}P,N,Prospecting,2026-01-01,35\n"
    )
    bulk.load(data, **UPSERT)
    records = {
        r["External_Id__c"]: r
        for r in bulk.records(
            "SELECT External_Id__c, IsClosed, IsWon, Probability, ForecastCategoryName, CreatedDate, "
            f"SystemModstamp, Id FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'"
        )
    }
    won, lost, open_ = records[f"{prefix}W"], records[f"{prefix}L"], records[f"{prefix}P"]
    assert (won["IsClosed"], won["IsWon"], won["Probability"], won["ForecastCategoryName"]) == (
        True,
        True,
        100,
        "Closed",
    )
    assert (lost["IsClosed"], lost["IsWon"], lost["Probability"]) == (True, False, 0)
    assert (open_["IsClosed"], open_["Probability"]) == (False, 35)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$", won["CreatedDate"])
    assert re.match(r"^006\w{15}$", won["Id"])


def test_update_and_delete_by_id_errors(bulk: BulkClient, prefix: str) -> None:
    created = bulk.load(HEADER + "\n" + _row(f"{prefix}D"), operation="insert")
    [ok] = bulk.results(created["id"], "successfulResults")
    record_id = ok["sf__Id"]
    deleted = bulk.load(f"Id\n{record_id}\n", operation="delete")
    assert deleted["numberRecordsFailed"] == 0
    unknown = to_id18("006Sx00zzzzzzzz")
    again = bulk.load(f"Id\n{record_id}\n{unknown}\nnot-an-id\n", operation="delete")
    errors = [r["sf__Error"] for r in bulk.results(again["id"], "failedResults")]
    assert errors == [
        "ENTITY_IS_DELETED:entity is deleted:--",
        "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--",
        "MALFORMED_ID:Opportunity ID: id value of incorrect type: not-an-id:Id --",
    ]
    update = bulk.load(f"Id,Name\n{record_id[:15]}x,a\n,y\n", operation="update")
    assert [r["sf__Error"] for r in bulk.results(update["id"], "failedResults")] == [
        "MALFORMED_ID:Opportunity ID: id value of incorrect type: " + record_id[:15] + "x:Id --",
        "MISSING_ARGUMENT:Id not specified in an update call:--",
    ]


def test_hard_delete_removes_the_record(bulk: BulkClient, prefix: str) -> None:
    created = bulk.load(HEADER + "\n" + _row(f"{prefix}H"), operation="insert")
    [ok] = bulk.results(created["id"], "successfulResults")
    assert bulk.load(f"Id\n{ok['sf__Id']}\n", operation="hardDelete")["numberRecordsFailed"] == 0
    query_all = bulk.query(
        f"SELECT COUNT() FROM Opportunity WHERE External_Id__c = '{prefix}H'", resource="queryAll"
    )
    assert query_all["totalSize"] == 0


def test_insert_of_an_existing_external_id_is_a_duplicate_value(
    bulk: BulkClient, prefix: str
) -> None:
    first = bulk.load(HEADER + "\n" + _row(f"{prefix}U"), operation="insert")
    [ok] = bulk.results(first["id"], "successfulResults")
    second = bulk.load(HEADER + "\n" + _row(f"{prefix}U"), operation="insert")
    [failed] = bulk.results(second["id"], "failedResults")
    assert failed["sf__Error"] == (
        f"DUPLICATE_VALUE:duplicate value found: External_Id__c duplicates value on record with id: {ok['sf__Id']}:--"
    )


def test_accounts_can_be_loaded_and_referenced(bulk: BulkClient, prefix: str) -> None:
    accounts = bulk.load(
        f"External_Id__c,Name\n{prefix}ACC,New Account\n", object="Account", **UPSERT
    )
    assert accounts["numberRecordsFailed"] == 0
    data = opportunity_csv(prefix, 1, account=f"{prefix}ACC")
    assert bulk.load(data, **UPSERT)["numberRecordsFailed"] == 0
