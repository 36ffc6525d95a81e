"""REST sObject rows through simple-salesforce (unmodified) and raw HTTP: writes share the Bulk DML.

Shapes: REST API Developer Guide (dome_sobject_create, dome_update_fields, dome_upsert,
resources_sobject_retrieve) and what simple-salesforce 1.12's ``SFType`` sends.
"""

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.ids import to_id18
from sync_assets.sandbox.runner import SandboxHandle
from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv

NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
IS_DELETED = [{"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}]


def _opportunity(key: str, **fields: Any) -> dict[str, Any]:
    return {
        "External_Id__c": key,
        "Name": f"Opportunity {key}",
        "StageName": "Prospecting",
        "CloseDate": "2026-11-28",
        "Account": {"External_Id__c": "ACC-000003"},
        **fields,
    }


def _salesforce(sandbox: SandboxHandle, version: str) -> Salesforce:
    connection = sandbox.connection
    return Salesforce(
        instance_url=connection.instance_url,
        session_id=connection.access_token.get_secret_value(),
        session=verified_session(connection.ca_cert),
        version=version,
    )


def _user_id(bulk: BulkClient) -> str:
    return str(bulk.session.get(f"{bulk.root}/services/oauth2/userinfo").json()["user_id"])


def _content(error: SalesforceError) -> Any:
    return error.content


def test_create_get_update_delete_through_simple_salesforce(
    sf: Salesforce, bulk: BulkClient, prefix: str
) -> None:
    created = sf.Opportunity.create(_opportunity(f"{prefix}1", Amount=1250.5))
    assert set(created) == {"id", "success", "errors"}
    assert created["success"] is True and created["errors"] == []
    record_id = created["id"]
    assert record_id.startswith("006") and len(record_id) == 18

    record = sf.Opportunity.get(record_id)
    assert next(iter(record)) == "attributes"
    assert record["attributes"] == {
        "type": "Opportunity",
        "url": f"/services/data/v{sf.sf_version}/sobjects/Opportunity/{record_id}",
    }
    account = bulk.records("SELECT Id FROM Account WHERE External_Id__c = 'ACC-000003'")[0]
    user_id = _user_id(bulk)
    assert record["AccountId"] == account["Id"]
    assert (record["Amount"], record["IsWon"], record["Probability"]) == (1250.5, False, 10)
    assert record["CreatedById"] == record["LastModifiedById"] == record["OwnerId"] == user_id
    assert record["CreatedDate"] == record["LastModifiedDate"] == record["SystemModstamp"]

    time.sleep(0.01)
    assert sf.Opportunity.update(record_id, {"StageName": "Closed Won", "Amount": None}) == 204
    updated = sf.Opportunity.get(record_id)
    assert (updated["IsWon"], updated["IsClosed"], updated["Amount"]) == (True, True, None)
    assert updated["Name"] == record["Name"]
    assert updated["CreatedDate"] == record["CreatedDate"]
    assert updated["LastModifiedDate"] > record["LastModifiedDate"]
    assert updated["SystemModstamp"] == updated["LastModifiedDate"]
    assert updated["LastModifiedById"] == user_id

    assert sf.Opportunity.delete(record_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as deleted:
        sf.Opportunity.get(record_id)
    assert _content(deleted.value) == IS_DELETED
    soql = f"SELECT Id, IsDeleted FROM Opportunity WHERE Id = '{record_id}'"
    assert bulk.query(soql)["records"] == []
    assert bulk.query(soql, "queryAll")["records"][0]["IsDeleted"] is True


def test_get_returns_only_the_fields_asked_for(sf: Salesforce, prefix: str) -> None:
    record_id = sf.Opportunity.create(_opportunity(f"{prefix}1"))["id"]
    record = sf.Opportunity.get(record_id, params={"fields": "Name,Account.External_Id__c"})
    assert list(record) == ["attributes", "Name", "Account"]
    assert record["Account"]["External_Id__c"] == "ACC-000003"
    by_key = sf.Opportunity.get_by_custom_id("External_Id__c", f"{prefix}1")
    assert by_key["Id"] == record_id


@pytest.mark.parametrize(
    ("version", "created_flag", "update_status"),
    [
        ("59.0", {"created": True}, 200),
        # Before API 46.0 no answer says "created" and an update is a 204 (dome_upsert).
        ("45.0", {}, 204),
    ],
)
def test_upsert_by_external_id_creates_then_updates(
    sandbox: SandboxHandle,
    bulk: BulkClient,
    prefix: str,
    version: str,
    created_flag: dict[str, bool],
    update_status: int,
) -> None:
    sf = _salesforce(sandbox, version)
    key = f"{prefix}up"
    body = {k: v for k, v in _opportunity(key).items() if k != "External_Id__c"}
    created = sf.Opportunity.upsert(f"External_Id__c/{key}", body, raw_response=True)
    assert created.status_code == 201
    answer = created.json()
    record_id = answer.pop("id")
    assert answer == {"success": True, "errors": []} | created_flag

    again = sf.Opportunity.upsert(
        f"External_Id__c/{key}", {"StageName": "Closed Lost"}, raw_response=True
    )
    assert again.status_code == update_status
    if update_status == 204:
        assert again.content == b""
    else:
        assert again.json() == {"id": record_id, "success": True, "errors": [], "created": False}
    rows = bulk.records(
        f"SELECT Id, StageName, Name FROM Opportunity WHERE External_Id__c = '{key}'"
    )
    assert [(r["Id"], r["StageName"], r["Name"]) for r in rows] == [
        (record_id, "Closed Lost", f"Opportunity {key}")
    ]


def test_delete_by_external_id(sf: Salesforce, bulk: BulkClient, prefix: str) -> None:
    sf.Opportunity.create(_opportunity(f"{prefix}gone"))
    assert sf.Opportunity.delete(f"External_Id__c/{prefix}gone") == 204
    assert bulk.count(f"External_Id__c = '{prefix}gone'") == 0


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (
            {"StageName": None, "CloseDate": ""},
            {
                "message": "Required fields are missing: [StageName, CloseDate]",
                "errorCode": "REQUIRED_FIELD_MISSING",
                "fields": ["StageName", "CloseDate"],
            },
        ),
        (
            {"StageName": "Not A Stage"},
            {
                "message": "Stage: bad value for restricted picklist field: Not A Stage",
                "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                "fields": ["StageName"],
            },
        ),
        (
            {"Account": {"External_Id__c": "ACC-NOPE"}},
            {
                "message": "Foreign key external ID: ACC-NOPE not found for field "
                "External_Id__c in entity Account",
                "errorCode": "INVALID_FIELD",
                "fields": [],
            },
        ),
        (
            {"IsWon": True},
            {
                "message": "Unable to create/update fields: IsWon. Please check the security "
                "settings of this field and verify that it is read/write for your profile or "
                "permission set.",
                "errorCode": "INVALID_FIELD_FOR_INSERT_UPDATE",
                "fields": ["IsWon"],
            },
        ),
        (
            {"Amount": "a lot"},
            {
                "message": "Amount: value not of required type: a lot",
                "errorCode": "INVALID_TYPE_ON_FIELD_IN_RECORD",
                "fields": ["Amount"],
            },
        ),
        (
            {"Nonexistent__c": "x"},
            {
                "message": "No such column 'Nonexistent__c' on sobject of type Opportunity",
                "errorCode": "INVALID_FIELD",
            },
        ),
    ],
)
def test_a_bad_record_is_a_400_with_the_bulk_row_error(
    sf: Salesforce, prefix: str, fields: dict[str, Any], error: dict[str, Any]
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Opportunity.create(_opportunity(f"{prefix}bad") | fields)
    assert _content(refused.value) == [error]


def test_unique_external_id_and_update_rules(sf: Salesforce, prefix: str) -> None:
    first = sf.Opportunity.create(_opportunity(f"{prefix}1"))["id"]
    with pytest.raises(SalesforceMalformedRequest) as duplicate:
        sf.Opportunity.create(_opportunity(f"{prefix}1"))
    assert _content(duplicate.value) == [
        {
            "message": f"duplicate value found: External_Id__c duplicates value on record with "
            f"id: {first}",
            "errorCode": "DUPLICATE_VALUE",
            "fields": [],
        }
    ]
    with pytest.raises(SalesforceMalformedRequest) as with_id:
        sf.Opportunity.update(first, {"Id": first, "Name": "renamed"})
    # jesperfj/force-rest-api#69: an org's answer to an Id in the body of an update.
    assert _content(with_id.value) == [
        {
            "message": "The Id field should not be specified in the sobject data.",
            "errorCode": "INVALID_FIELD",
        }
    ]


def test_ids_that_name_nothing_are_404(sf: Salesforce, sandbox: SandboxHandle) -> None:
    unknown = to_id18("006Sx00000ZZZZZ")
    assert unknown is not None
    for call in (
        lambda: sf.Opportunity.get(unknown),
        lambda: sf.Opportunity.update(unknown, {"Name": "x"}),
        lambda: sf.Opportunity.delete(unknown),
        lambda: sf.Opportunity.get_by_custom_id("External_Id__c", "no-such-key"),
    ):
        with pytest.raises(SalesforceResourceNotFound) as missing:
            call()
        assert _content(missing.value) == NOT_FOUND
    # restforce#182, syndesis-ui#529: a segment that is no Id is taken for an external id field.
    for call, name in (
        (lambda: sf.Opportunity.get("not-an-id"), "not-an-id"),
        (lambda: sf.Opportunity.upsert("Name/x", {"StageName": "Prospecting"}), "Name"),
    ):
        with pytest.raises(SalesforceResourceNotFound) as inaccessible:
            call()
        assert _content(inaccessible.value) == [
            {
                "errorCode": "NOT_FOUND",
                "message": f"Provided external ID field does not exist or is not accessible: {name}",
            }
        ]


def test_malformed_json_and_methods(bulk: BulkClient) -> None:
    url = f"{bulk.base}/sobjects/Opportunity/"
    for body in (b'{"Name": ', b'{"Name": "\xff"}', b'{"Amount": NaN}', b"[]"):
        broken = bulk.session.post(url, data=body, headers={"Content-Type": "application/json"})
        assert broken.status_code == 400
        assert broken.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    patch = bulk.session.patch(url, json={"Name": "x"})
    assert patch.status_code == 405
    assert patch.json() == [
        {
            "errorCode": "METHOD_NOT_ALLOWED",
            "message": "HTTP Method 'PATCH' not allowed. Allowed are HEAD,GET,POST",
        }
    ]


def _api_usage(response: requests.Response) -> int:
    return int(response.headers["Sforce-Limit-Info"].removeprefix("api-usage=").split("/")[0])


def test_record_calls_count_as_api_requests(bulk: BulkClient, prefix: str) -> None:
    url = f"{bulk.base}/sobjects/Opportunity/"
    first = bulk.session.post(url, json=_opportunity(f"{prefix}1"))
    second = bulk.session.get(f"{url}{first.json()['id']}")
    assert first.status_code == 201 and second.status_code == 200
    assert _api_usage(second) == _api_usage(first) + 1


def test_a_rest_write_waits_for_the_row_lock_a_bulk_batch_holds(
    fresh_sandbox: Callable[..., SandboxHandle], prefix: str
) -> None:
    """The REST write goes through the ingest's row locks: a running batch holds ACC-000001."""
    sandbox = fresh_sandbox(accounts=5, rate=400, lock_timeout=0.3)
    bulk = BulkClient(sandbox.connection)
    created = bulk.create(object="Opportunity", operation="insert").json()["id"]
    assert bulk.upload(created, opportunity_csv(prefix, 1_600, account="ACC-000001")).ok
    assert bulk.patch(created, "UploadComplete").ok
    while bulk.info(created)["state"] != "InProgress":
        time.sleep(0.01)
    # The batch validates its rows, then takes the locks for its 4 s (1,600 rows at 400/s).
    time.sleep(0.5)
    url = f"{bulk.base}/sobjects/Opportunity/"
    locked_parent = _opportunity(f"{prefix}rest") | {"Account": {"External_Id__c": "ACC-000001"}}
    refused = bulk.session.post(url, json=locked_parent)
    assert refused.status_code == 400
    assert refused.json() == [
        {
            "message": "unable to obtain exclusive access to this record",
            "errorCode": "UNABLE_TO_LOCK_ROW",
            "fields": [],
        }
    ]
    other_parent = bulk.session.post(url, json=_opportunity(f"{prefix}other"))
    assert other_parent.status_code == 201
    assert bulk.wait(created)["numberRecordsFailed"] == 0
    assert bulk.session.post(url, json=locked_parent).status_code == 201
