"""OAuth grants and sessions, versions, limits, describe, userinfo and the REST query errors."""

import time

import pytest
import requests
from pydantic import SecretStr

from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import SandboxConnection, SandboxHandle
from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv, unique_prefix

INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def _token(connection: SandboxConnection, **form: str) -> requests.Response:
    return verified_session(connection.ca_cert).post(connection.token_url, data=form)


def test_client_credentials_and_password_grants(sandbox: SandboxHandle) -> None:
    c = sandbox.connection
    secret = c.client_secret.get_secret_value()
    for form in (
        {"grant_type": "client_credentials", "client_id": c.client_id, "client_secret": secret},
        {
            "grant_type": "password",
            "client_id": c.client_id,
            "client_secret": secret,
            "username": c.username,
            "password": c.password.get_secret_value(),
        },
    ):
        answer = _token(c, **form)
        assert answer.status_code == 200
        body = answer.json()
        assert body["token_type"] == "Bearer" and body["instance_url"] == c.instance_url
        assert body["access_token"].startswith("00D") and "!" in body["access_token"]
        fresh = BulkClient(c.model_copy(update={"access_token": SecretStr(body["access_token"])}))
        assert fresh.session.get(f"{fresh.base}/limits").status_code == 200


@pytest.mark.parametrize(
    ("form", "error"),
    [
        (
            {"grant_type": "client_credentials", "client_id": "nope", "client_secret": "x"},
            "invalid_client_id",
        ),
        ({"grant_type": "client_credentials", "client_secret": "wrong"}, "invalid_client"),
        (
            {
                "grant_type": "password",
                "username": "integration@sandbox.local",
                "password": "wrong",
            },
            "invalid_grant",
        ),
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
    ],
)
def test_oauth_errors(sandbox: SandboxHandle, form: dict[str, str], error: str) -> None:
    c = sandbox.connection
    form = {"client_id": c.client_id, "client_secret": c.client_secret.get_secret_value(), **form}
    answer = _token(c, **form)
    assert answer.status_code == 400
    assert answer.json()["error"] == error and answer.json()["error_description"]
    if error == "invalid_grant":
        assert answer.json()["error_description"] == "authentication failure"


def test_missing_or_wrong_token_is_an_invalid_session(bulk: BulkClient) -> None:
    anonymous = verified_session(bulk.connection.ca_cert)
    for headers in ({}, {"Authorization": "Bearer 00Dnope!nope"}):
        answer = anonymous.get(f"{bulk.base}/jobs/ingest", headers=headers)
        assert answer.status_code == 401 and answer.json() == INVALID_SESSION


def test_tokens_expire_after_the_ttl(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    handle = fresh_sandbox(accounts=0, token_ttl=1.5)
    bulk = BulkClient(handle.connection)
    assert bulk.session.get(f"{bulk.base}/limits").status_code == 200
    time.sleep(1.6)
    expired = bulk.session.get(f"{bulk.base}/limits")
    assert expired.status_code == 401 and expired.json() == INVALID_SESSION
    c = handle.connection
    renewed = _token(
        c,
        grant_type="client_credentials",
        client_id=c.client_id,
        client_secret=c.client_secret.get_secret_value(),
    )
    assert renewed.status_code == 200


def test_versions_and_retired_versions(bulk: BulkClient) -> None:
    versions = bulk.session.get(f"{bulk.root}/services/data").json()
    assert versions[0]["version"] == "31.0" and versions[-1]["version"] == "66.0"
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions
    assert bulk.session.get(f"{bulk.root}/services/data/v30.0/limits").status_code == 410
    assert bulk.session.get(f"{bulk.root}/services/data/v67.0/limits").status_code == 404
    assert bulk.session.get(f"{bulk.root}/services/data/v40.0/jobs/ingest").status_code == 404
    assert bulk.session.get(f"{bulk.root}/services/data/v41.0/jobs/ingest").status_code == 200


def test_limits_and_usage_header(bulk: BulkClient) -> None:
    answer = bulk.session.get(f"{bulk.base}/limits/")
    limits = answer.json()
    for name in ("DailyApiRequests", "DailyBulkApiBatches", "DailyBulkV2QueryJobs"):
        assert set(limits[name]) == {"Max", "Remaining"}
    assert "DailyBulkApiIngestRecords" not in limits, "no real org lists an ingest-record limit"
    assert limits["DailyBulkApiBatches"]["Max"] == 15_000
    used, maximum = answer.headers["Sforce-Limit-Info"].removeprefix("api-usage=").split("/")
    assert int(maximum) == limits["DailyApiRequests"]["Max"] and int(used) >= 1


def test_request_limit_and_ingest_quota_are_enforced(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    handle = fresh_sandbox(accounts=2, daily_api_requests=30, daily_records=100)
    bulk = BulkClient(handle.connection)
    info = bulk.load(opportunity_csv(unique_prefix(), 150), operation="insert")
    assert info["state"] == "Failed" and info["errorMessage"].startswith("ExceededQuota : ")
    assert (
        bulk.load(opportunity_csv(unique_prefix(), 100), operation="insert")["state"]
        == "JobComplete"
    )
    while (answer := bulk.session.get(f"{bulk.base}/limits")).status_code == 200:
        pass
    assert answer.status_code == 403
    assert answer.json() == [
        {"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}
    ]


def test_describe_userinfo_and_user(bulk: BulkClient) -> None:
    describe = bulk.session.get(f"{bulk.base}/sobjects/Opportunity/describe").json()
    fields = {f["name"]: f for f in describe["fields"]}
    assert describe["keyPrefix"] == "006"
    assert (fields["Name"]["length"], fields["Name"]["nillable"], fields["Name"]["createable"]) == (
        120,
        False,
        True,
    )
    assert fields["External_Id__c"]["externalId"] and fields["External_Id__c"]["unique"]
    assert fields["External_Id__c"]["caseSensitive"] and fields["External_Id__c"]["length"] == 64
    assert fields["StageName"]["restrictedPicklist"]
    assert "Closed Won" in [p["value"] for p in fields["StageName"]["picklistValues"]]
    assert (fields["Amount"]["type"], fields["Amount"]["precision"], fields["Amount"]["scale"]) == (
        "currency",
        18,
        2,
    )
    assert fields["IsWon"]["createable"] is False and fields["Sync_Partition__c"]["length"] == 8
    account = bulk.session.get(f"{bulk.base}/sobjects/Account/describe").json()
    assert {"Name", "External_Id__c"} <= {f["name"] for f in account["fields"]}
    info = bulk.session.get(f"{bulk.root}/services/oauth2/userinfo").json()
    assert info["organization_id"].startswith("00D") and info["user_id"].startswith("005")
    user = bulk.session.get(f"{bulk.base}/sobjects/User/{info['user_id']}").json()
    assert user["Username"] == info["preferred_username"]


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELEC Id FROM Opportunity", "MALFORMED_QUERY"),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
        ("SELECT Nope__c FROM Opportunity", "INVALID_FIELD"),
    ],
)
def test_query_errors(bulk: BulkClient, soql: str, code: str) -> None:
    answer = bulk.session.get(f"{bulk.base}/query", params={"q": soql})
    assert answer.status_code == 400
    [error] = answer.json()
    assert list(error) == ["message", "errorCode"] and error["errorCode"] == code
