"""The acme org file's metadata through the API: describe, UI API, SOQL, and rows it accepts or fails.

Modelled on: describe recordTypeInfos (a v37 capture, facts §8), the UI API Developer Guide's
Picklist Values bodies, the CurrencyType object reference, Help 000385689/000387302 (decimals
kept as sent), and the row errors of facts §2 and §9.
"""

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sync_assets.sandbox.ids import mint_ids
from sync_assets.sandbox.runner import SandboxHandle
from sync_assets_tests.sandbox.bulk_client import BulkClient, unique_prefix
from sync_assets_tests.sandbox.conftest import AcmeSandbox
from sync_assets_tests.sandbox.org_files import acme_org_file

UPSERT = {"operation": "upsert", "externalIdFieldName": "External_Id__c"}
ACME_STAGES = [
    "Discovery",
    "Qualification",
    "Proposal",
    "Renewal Open",
    "Closed Won",
    "Closed Lost",
]
MASTER = "012000000000000AAA"
READ_ONLY = (
    "INVALID_FIELD_FOR_INSERT_UPDATE:Unable to create/update fields: LeadSource. Please check the "
    "security settings of this field and verify that it is read/write for your profile or "
    "permission set.:LeadSource --"
)


def _csv(rows: list[dict[str, str]]) -> str:
    """Rows as CSV; the header is every column any row names, an absent cell empty."""
    header = list(dict.fromkeys(name for row in rows for name in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, header, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _row(key: str, **values: str) -> dict[str, str]:
    return {
        "External_Id__c": key,
        "Name": f"Opportunity {key}",
        "StageName": "Discovery",
        "CloseDate": "2026-11-28",
        **values,
    }


def _record_type_ids(bulk: BulkClient) -> dict[str, str]:
    rows = bulk.records(
        "SELECT Id, DeveloperName FROM RecordType WHERE SobjectType = 'Opportunity'"
    )
    return {r["DeveloperName"]: r["Id"] for r in rows}


def _user_id(bulk: BulkClient, username: str) -> str:
    [user] = bulk.records(f"SELECT Id FROM User WHERE Username = '{username}'")
    return str(user["Id"])


def _by_key(bulk: BulkClient, prefix: str, fields: str) -> dict[str, dict[str, Any]]:
    rows = bulk.records(
        f"SELECT External_Id__c, {fields} FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'"
    )
    return {r["External_Id__c"].removeprefix(prefix): r for r in rows}


def test_describe_follows_the_org_file(acme: AcmeSandbox) -> None:
    bulk = BulkClient(acme.connection)
    describe = bulk.session.get(f"{bulk.base}/sobjects/Opportunity/describe").json()
    fields = {f["name"]: f for f in describe["fields"]}
    assert [p["value"] for p in fields["StageName"]["picklistValues"]] == ACME_STAGES
    currency = fields["CurrencyIsoCode"]
    assert (currency["type"], currency["length"], currency["restrictedPicklist"]) == (
        "picklist",
        3,
        True,
    )
    assert currency["defaultedOnCreate"] and not currency["nillable"]
    assert [p["value"] for p in currency["picklistValues"]] == ["USD", "EUR", "GBP"]
    record_type = fields["RecordTypeId"]
    assert record_type["referenceTo"] == ["RecordType"] and record_type["defaultedOnCreate"]
    region, score = fields["Region__c"], fields["Forecast_Score__c"]
    assert region["custom"] and region["restrictedPicklist"]
    assert [p["value"] for p in region["picklistValues"]] == ["EMEA", "AMER", "APAC"]
    assert (score["type"], score["precision"], score["scale"], score["custom"]) == (
        "double",
        5,
        1,
        True,
    )
    # Field-level security of the integration user: NextStep hidden, LeadSource read-only.
    assert "NextStep" not in fields
    assert (fields["LeadSource"]["createable"], fields["LeadSource"]["updateable"]) == (
        False,
        False,
    )
    infos = {r["developerName"]: r for r in describe["recordTypeInfos"]}
    assert list(infos) == ["New_Business", "Renewal", "Master"]
    assert {k: v for k, v in infos["Master"].items() if k != "urls"} == {
        "active": True,
        "available": False,
        "defaultRecordTypeMapping": False,
        "developerName": "Master",
        "master": True,
        "name": "Master",
        "recordTypeId": MASTER,
    }
    assert infos["New_Business"]["defaultRecordTypeMapping"]
    assert not infos["Renewal"]["defaultRecordTypeMapping"] and infos["Renewal"]["available"]
    people = {
        f["name"]: f
        for f in acme.person()
        .session.get(f"{bulk.base}/sobjects/Opportunity/describe")
        .json()["fields"]
    }
    assert "NextStep" in people and people["LeadSource"]["createable"]


def test_the_empty_org_has_the_master_record_type_only(bulk: BulkClient) -> None:
    describe = bulk.session.get(f"{bulk.base}/sobjects/Opportunity/describe").json()
    [master] = describe["recordTypeInfos"]
    assert (master["recordTypeId"], master["master"], master["defaultRecordTypeMapping"]) == (
        MASTER,
        True,
        True,
    )
    names = {f["name"] for f in describe["fields"]}
    assert not {"CurrencyIsoCode", "RecordTypeId"} & names and "NextStep" in names
    [organization] = bulk.records("SELECT Id, Name, DefaultCurrencyIsoCode FROM Organization")
    assert organization["Id"].startswith("00D") and organization["DefaultCurrencyIsoCode"] == "USD"
    [user] = bulk.records("SELECT Username, IsActive FROM User")
    assert user == {**user, "Username": bulk.connection.username, "IsActive": True}


def test_ui_api_picklist_values_follow_each_record_type(acme: AcmeSandbox) -> None:
    bulk = BulkClient(acme.connection)
    ids = _record_type_ids(bulk)
    base = f"{bulk.base}/ui-api/object-info/Opportunity/picklist-values"
    stage_lists = {
        developer_name: [
            v["value"]
            for v in bulk.session.get(f"{base}/{record_type_id}").json()["picklistFieldValues"][
                "StageName"
            ]["values"]
        ]
        for developer_name, record_type_id in {**ids, "Master": MASTER}.items()
    }
    assert stage_lists == {
        "New_Business": ["Discovery", "Qualification", "Proposal", "Closed Won", "Closed Lost"],
        "Renewal": ["Renewal Open", "Closed Won", "Closed Lost"],
        "Master": ACME_STAGES,
    }
    one = bulk.session.get(f"{base}/{ids['Renewal']}/StageName").json()
    assert one["controllerValues"] == {} and one["defaultValue"] is None
    assert one["url"] == (
        f"/services/data/v59.0/ui-api/object-info/Opportunity/picklist-values/{ids['Renewal']}"
        "/StageName"
    )
    assert one["values"][1] == {
        "attributes": {
            "closed": True,
            "defaultProbability": 100.0,
            "forecastCategoryName": "Closed",
            "picklistAtrributesValueType": "OpportunityStage",
            "won": True,
        },
        "label": "Closed Won",
        "validFor": [],
        "value": "Closed Won",
    }
    region = bulk.session.get(f"{base}/{ids['Renewal']}/Region__c").json()
    assert [v["value"] for v in region["values"]] == ["EMEA", "AMER", "APAC"]
    assert region["values"][0]["attributes"] is None
    assert bulk.session.get(f"{base}/{mint_ids('012', 999, 1)[0]}").status_code == 404
    assert bulk.session.get(f"{base}/{ids['Renewal']}/NextStep").status_code == 404


def test_setup_objects_are_queryable(acme: AcmeSandbox) -> None:
    bulk = BulkClient(acme.connection)
    [organization] = bulk.records(
        "SELECT Id, Name, DefaultCurrencyIsoCode, IsSandbox FROM Organization"
    )
    assert {k: v for k, v in organization.items() if k != "attributes"} == {
        "Id": "00DSx0000001AbcAAA",
        "Name": "Acme Corporation",
        "DefaultCurrencyIsoCode": "USD",
        "IsSandbox": False,
    }
    users = bulk.records("SELECT Id, Username, Name, IsActive FROM User ORDER BY Username")
    assert [(u["Username"], u["Name"], u["IsActive"]) for u in users] == [
        ("integration@sandbox.local", "Integration User", True),
        ("rep@acme.example", "Rita Rep", True),
    ]
    assert all(u["Id"].startswith("005") for u in users)
    record_types = bulk.records(
        "SELECT DeveloperName, Name, SobjectType, IsActive FROM RecordType ORDER BY DeveloperName"
    )
    assert [
        (r["DeveloperName"], r["Name"], r["SobjectType"], r["IsActive"]) for r in record_types
    ] == [
        ("New_Business", "New Business", "Opportunity", True),
        ("Renewal", "Renewal", "Opportunity", True),
    ]
    currencies = bulk.records(
        "SELECT IsoCode, IsActive, IsCorporate FROM CurrencyType ORDER BY IsoCode"
    )
    assert [(c["IsoCode"], c["IsActive"], c["IsCorporate"]) for c in currencies] == [
        ("CAD", False, False),
        ("EUR", True, False),
        ("GBP", True, False),
        ("USD", True, True),
    ]


def test_rows_valid_for_the_org_land_with_its_defaults(acme: AcmeSandbox) -> None:
    bulk, prefix = BulkClient(acme.connection), unique_prefix()
    ids = _record_type_ids(bulk)
    rows = [
        _row(f"{prefix}0", Amount="100", Region__c="EMEA"),
        # The API does not hold a record to its record type's sales process (production-org.md).
        _row(
            f"{prefix}1",
            StageName="Renewal Open",
            CurrencyIsoCode="EUR",
            RecordTypeId=ids["New_Business"],
        ),
        _row(f"{prefix}2", StageName="Closed Won", Amount="5", RecordTypeId=ids["Renewal"]),
    ]
    info = bulk.load(_csv(rows), **UPSERT)
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (3, 0)
    found = _by_key(
        bulk,
        prefix,
        "CurrencyIsoCode, RecordType.DeveloperName, IsClosed, IsWon, Probability, "
        "ForecastCategoryName, Region__c, CreatedById",
    )
    shown = {
        key: (
            r["CurrencyIsoCode"],
            r["RecordType"]["DeveloperName"],
            r["IsClosed"],
            r["IsWon"],
            r["Probability"],
            r["ForecastCategoryName"],
        )
        for key, r in found.items()
    }
    assert shown == {
        "0": ("USD", "New_Business", False, False, 10, "Pipeline"),
        "1": ("EUR", "New_Business", False, False, 90, "Pipeline"),
        "2": ("USD", "Renewal", True, True, 100, "Closed"),
    }
    integration = _user_id(bulk, acme.connection.username)
    assert {r["CreatedById"] for r in found.values()} == {integration}


def test_rows_invalid_for_the_org_fail_with_its_reason(acme: AcmeSandbox) -> None:
    bulk, prefix = BulkClient(acme.connection), unique_prefix()
    cases = {
        "ok": ({"Region__c": "APAC"}, None),
        "region": (
            {"Region__c": "LATAM"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Region: bad value for restricted picklist "
            "field: LATAM:Region__c --",
        ),
        "inactive": (
            {"CurrencyIsoCode": "CAD"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Opportunity Currency: bad value for "
            "restricted picklist field: CAD:CurrencyIsoCode --",
        ),
        "unknown": (
            {"CurrencyIsoCode": "JPY"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Opportunity Currency: bad value for "
            "restricted picklist field: JPY:CurrencyIsoCode --",
        ),
        "stage": (
            {"StageName": "Prospecting"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Stage: bad value for restricted picklist "
            "field: Prospecting:StageName --",
        ),
        "rule": (
            {"Amount": "600000000"},
            "FIELD_CUSTOM_VALIDATION_EXCEPTION:Amount above the approval limit:Amount --",
        ),
        "digits": (
            {"Forecast_Score__c": "12345.6"},
            "NUMBER_OUTSIDE_VALID_RANGE:Forecast Score: value outside of valid range on numeric "
            "field: 12345.6:Forecast_Score__c --",
        ),
        "master": (
            {"RecordTypeId": MASTER},
            "INVALID_CROSS_REFERENCE_KEY:Record Type ID: this ID value isn't valid for the user: "
            f"{MASTER}:RecordTypeId --",
        ),
        "read_only": ({"LeadSource": "Web"}, READ_ONLY),
    }
    rows = [_row(f"{prefix}{name}", **values) for name, (values, _) in cases.items()]
    info = bulk.load(_csv(rows), **UPSERT)
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (9, 8)
    failed = {
        r["External_Id__c"].removeprefix(prefix): r["sf__Error"]
        for r in bulk.results(info["id"], "failedResults")
    }
    assert failed == {name: error for name, (_, error) in cases.items() if error is not None}
    assert list(_by_key(bulk, prefix, "Region__c")) == ["ok"]


def test_validation_rules_see_the_whole_new_record(acme: AcmeSandbox) -> None:
    bulk, prefix = BulkClient(acme.connection), unique_prefix()
    assert bulk.load(_csv([_row(f"{prefix}0")]), **UPSERT)["numberRecordsFailed"] == 0
    # The update names neither Amount nor IsWon: the rule sees the stored Amount (null) and the
    # IsWon that the new stage derives.
    won = {"External_Id__c": f"{prefix}0", "StageName": "Closed Won"}
    info = bulk.load(_csv([won]), **UPSERT)
    [failed] = bulk.results(info["id"], "failedResults")
    assert (
        failed["sf__Error"]
        == "FIELD_CUSTOM_VALIDATION_EXCEPTION:A won opportunity needs an amount:--"
    )
    assert _by_key(bulk, prefix, "StageName")["0"]["StageName"] == "Discovery"
    info = bulk.load(_csv([{**won, "Amount": "10"}]), **UPSERT)
    assert info["numberRecordsFailed"] == 0
    assert _by_key(bulk, prefix, "StageName")["0"]["StageName"] == "Closed Won"


def test_extra_decimal_places_are_stored_as_sent(acme: AcmeSandbox) -> None:
    bulk, prefix = BulkClient(acme.connection), unique_prefix()
    row = _row(f"{prefix}0", Amount="1250.505", Forecast_Score__c="4.56789")
    assert bulk.load(_csv([row]), **UPSERT)["numberRecordsFailed"] == 0
    record = _by_key(bulk, prefix, "Amount, Forecast_Score__c")["0"]
    assert (record["Amount"], record["Forecast_Score__c"]) == (1250.505, 4.56789)


def test_a_hidden_field_fails_the_job_and_is_unknown_to_soql(acme: AcmeSandbox) -> None:
    bulk, prefix = BulkClient(acme.connection), unique_prefix()
    data = _csv([_row(f"{prefix}0", NextStep="Call")])
    info = bulk.load(data, **UPSERT)
    assert (info["state"], info["errorMessage"]) == (
        "Failed",
        "InvalidBatch : Field name not found : NextStep",
    )
    answer = bulk.session.get(
        f"{bulk.base}/query", params={"q": "SELECT NextStep FROM Opportunity"}
    )
    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == "INVALID_FIELD"
    # People are not restricted.
    person = acme.person()
    assert person.load(data, **UPSERT)["numberRecordsFailed"] == 0
    assert _by_key(person, prefix, "NextStep")["0"]["NextStep"] == "Call"


def test_limits_are_forbidden_without_view_setup(acme: AcmeSandbox) -> None:
    bulk = BulkClient(acme.connection)
    answer = bulk.session.get(f"{bulk.base}/limits")
    assert answer.status_code == 403
    assert answer.json() == [
        {
            "message": "You do not have the level of access necessary to perform the operation "
            "you requested. Please contact the owner of the record or your administrator if "
            "access is necessary.",
            "errorCode": "INSUFFICIENT_ACCESS",
        }
    ]
    person = acme.person()
    assert person.session.get(f"{bulk.base}/limits").status_code == 200


def test_a_person_writes_as_itself(acme: AcmeSandbox) -> None:
    person, prefix = acme.person(), unique_prefix()
    rep = person.session.get(f"{person.root}/services/oauth2/userinfo").json()
    assert rep["preferred_username"] == "rep@acme.example"
    info = person.load(_csv([_row(f"{prefix}0")]), **UPSERT)
    assert info["createdById"] == rep["user_id"]
    fields = "CreatedById, LastModifiedById, OwnerId, Owner.Username"
    record = _by_key(person, prefix, fields)["0"]
    assert (record["CreatedById"], record["LastModifiedById"], record["OwnerId"]) == (
        rep["user_id"],
        rep["user_id"],
        rep["user_id"],
    )
    assert record["Owner"]["Username"] == "rep@acme.example"
    integration = BulkClient(acme.connection)
    integration.load(_csv([{"External_Id__c": f"{prefix}0", "Amount": "7"}]), **UPSERT)
    record = _by_key(integration, prefix, fields)["0"]
    assert (record["CreatedById"], record["LastModifiedById"]) == (
        rep["user_id"],
        _user_id(integration, acme.connection.username),
    )


def test_owner_may_be_any_user_of_the_org(acme: AcmeSandbox) -> None:
    bulk, prefix = BulkClient(acme.connection), unique_prefix()
    rep = _user_id(bulk, "rep@acme.example")
    rows = [_row(f"{prefix}0", OwnerId=rep), _row(f"{prefix}1", OwnerId=mint_ids("005", 999, 1)[0])]
    info = bulk.load(_csv(rows), **UPSERT)
    [failed] = bulk.results(info["id"], "failedResults")
    assert failed["sf__Error"] == "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--"
    assert _by_key(bulk, prefix, "OwnerId")["0"]["OwnerId"] == rep


def test_ids_survive_restarts_and_old_records_take_the_corporate_currency(
    fresh_sandbox: Callable[..., SandboxHandle], tmp_path: Path
) -> None:
    data_dir = tmp_path / "org-data"
    plain = fresh_sandbox(data_dir=data_dir, accounts=5)
    prefix = unique_prefix()
    old = _csv([_row(f"{prefix}0", StageName="Prospecting")])
    assert BulkClient(plain.connection).load(old, **UPSERT)["numberRecordsFailed"] == 0
    plain.stop()
    org = acme_org_file(tmp_path / "org")
    first = fresh_sandbox(data_dir=data_dir, accounts=5, org=org.path)
    bulk = BulkClient(first.connection)
    ids = (_record_type_ids(bulk), _user_id(bulk, "rep@acme.example"))
    # Enabling multi-currency gives existing records the corporate currency; record types
    # created later leave them on the master (RecordTypeId null).
    record = _by_key(bulk, prefix, "CurrencyIsoCode, RecordTypeId")["0"]
    assert (record["CurrencyIsoCode"], record["RecordTypeId"]) == ("USD", None)
    first.stop()
    again = BulkClient(fresh_sandbox(data_dir=data_dir, accounts=5, org=org.path).connection)
    assert (_record_type_ids(again), _user_id(again, "rep@acme.example")) == ids
