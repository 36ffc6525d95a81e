"""The mapping file and the contract it makes with an org's metadata (issue 14, items 2 and 3)."""

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from sync_assets.drops.contract import ContractError, build_contract
from sync_assets.drops.mapping import BUILTIN_MAPPING_FILE, Mapping, MappingError, load_mapping
from sync_assets.drops.staging import StagedPartition, stage_drop
from sync_assets.drops.standard_org import standard_org
from sync_assets.drops.validate import REASON, REASON_CODE, ROW_INDEX, RowValidator
from sync_assets.resources import SyncStorage
from sync_assets.settings import SyncSettings
from sync_assets.state.ledger import advance_ledger
from sync_assets.state.org_metadata import FieldMetadata, ObjectMetadata
from sync_assets.storage import StateStore
from sync_assets_tests.drops.helpers import valid_rows, write_drop
from sync_assets_tests.drops.orgs import (
    ACME_STAGES,
    NEW_BUSINESS,
    RENEWAL,
    acme_like_org,
    acme_mapping,
)


def mapping_with(fields: list[dict[str, object]], **settings: object) -> Mapping:
    """The built-in mapping's key, parent and settings with these fields."""
    document = load_mapping().model_dump(exclude={"fields"}, exclude_none=True)
    return Mapping.model_validate({**document, **settings, "fields": fields})


def built_in_fields(**changes: dict[str, object]) -> list[dict[str, object]]:
    """The built-in mapping's fields as documents, some entries changed (by column)."""
    return [
        {**entry.model_dump(exclude_none=True), **changes.get(str(entry.column), {})}
        for entry in load_mapping().fields
    ]


# ---- the file --------------------------------------------------------------------------------


def test_the_built_in_mapping_is_the_file_shipped_in_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert BUILTIN_MAPPING_FILE.name == "mapping.yaml" and BUILTIN_MAPPING_FILE.exists()
    assert load_mapping() == load_mapping(BUILTIN_MAPPING_FILE)
    copy = tmp_path / "mine.yaml"
    copy.write_text(BUILTIN_MAPPING_FILE.read_text().replace("rounding: round", "rounding: reject"))
    monkeypatch.setenv("SYNC_MAPPING_FILE", str(copy))
    settings = SyncSettings()
    assert settings.mapping_file == str(copy)
    assert SyncStorage(mapping_file=settings.mapping_file).mapping().rounding == "reject"
    assert SyncStorage().mapping() == load_mapping()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"fields": [{"column": "a", "field": "Name", "value": "x"}]}, "either a column or"),
        ({"fields": [{"field": "Name"}]}, "either a column or"),
        ({"fields": [{"column": "a", "field": "Name", "by": "DeveloperName"}]}, "RecordTypeId"),
        ({"fields": [{"column": "a", "field": "Name", "empty": "wipe"}]}, "empty"),
        (
            {"fields": [{"column": "NAME", "field": "Name"}, {"column": "name", "field": "Type"}]},
            "appears twice",
        ),
        (
            {"fields": [{"column": "a", "field": "Name"}, {"column": "b", "field": "name"}]},
            "appears twice",
        ),
        ({"key": {"column": "k", "field": "Other_Id__c"}}, "key.field must be External_Id__c"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_mapping_file_names_the_file_and_the_problem(
    tmp_path: Path, change: dict[str, object], problem: str
) -> None:
    import yaml

    document = {**load_mapping().model_dump(mode="json", exclude_none=True), **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(MappingError, match=problem) as caught:
        load_mapping(path)
    assert str(path) in str(caught.value)


def test_an_unreadable_mapping_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"nowhere\.yaml"):
        load_mapping(tmp_path / "nowhere.yaml")


def test_the_drift_policy_is_overwrite_unless_the_mapping_says_report() -> None:
    builtin = load_mapping()
    document = builtin.model_dump(mode="json")
    document["fields"][-1]["drift"] = "report"
    reported = Mapping.model_validate(document)
    assert {builtin.drift_policy(field) for field in ("Name", "Description", "External_Id__c")} == {
        "overwrite"
    }
    assert reported.drift_policy("Description") == "report"
    document["fields"][-1]["drift"] = "ignore"
    with pytest.raises(ValidationError, match="drift"):
        Mapping.model_validate(document)
    # The policy changes nothing sent: a staging made before stays valid.
    org = standard_org()
    assert build_contract(reported, org).fingerprint == build_contract(builtin, org).fingerprint


# ---- the contract with an org ----------------------------------------------------------------


def test_the_contract_takes_types_and_values_from_the_org() -> None:
    contract = build_contract(acme_mapping(), acme_like_org())
    specs = {spec.name: spec for spec in contract.specs}
    score = specs["forecast_score"]
    assert (score.kind, score.max_digits, score.decimal_places) == ("decimal", 5, 1)
    assert specs["currency"].allowed == ("USD", "EUR", "GBP")
    assert specs["currency"].target.inactive == ("CAD",)
    assert specs["currency"].target.empty == "keep"  # CurrencyIsoCode may not be empty
    assert specs["region"].allowed == ("EMEA", "AMER", "APAC")
    assert specs["record_type"].allowed == ("New_Business", "Renewal")
    assert specs["record_type"].target.record_type_ids == {
        "New_Business": NEW_BUSINESS,
        "Renewal": RENEWAL,
    }
    stage = specs["stage"]
    assert stage.allowed == tuple(ACME_STAGES)
    assert stage.target.stages == {
        "": ("Discovery", "Qualification", "Proposal", "Closed Won", "Closed Lost"),
        "New_Business": ("Discovery", "Qualification", "Proposal", "Closed Won", "Closed Lost"),
        "Renewal": ("Renewal Open", "Closed Won", "Closed Lost"),
    }
    assert contract.salesforce_fields[-5:] == [
        "RecordTypeId",
        "CurrencyIsoCode",
        "Region__c",
        "Forecast_Score__c",
        "Sync_Partition__c",
    ]


def acme_rows(n: int = 8) -> pl.DataFrame:
    return valid_rows(n).with_columns(
        pl.lit("Discovery").alias("stage"),
        pl.lit("New_Business").alias("record_type"),
        pl.lit("EUR").alias("currency"),
        pl.lit("EMEA").alias("region"),
        pl.lit(Decimal("4.5")).cast(pl.Decimal(10, 2)).alias("forecast_score"),
    )


# (column, value, expected reason code, words the reason holds)
ACME_REJECTS = [
    ("stage", "Prospecting", "stage_not_in_picklist", "not a value of the picklist"),
    ("stage", "Renewal Open", "stage_not_in_picklist", "not a stage of record type (the default)"),
    ("record_type", "Master", "record_type_not_in_picklist", "'Master'"),
    ("currency", "CAD", "currency_inactive", "'CAD' is inactive in the org"),
    ("currency", "JPY", "currency_not_in_picklist", "'JPY'"),
    ("region", "LATAM", "region_not_in_picklist", "'LATAM'"),
    ("forecast_score", Decimal("12345.6"), "forecast_score_too_many_digits", "4 digits"),
]


def test_rows_are_checked_against_the_org_and_the_model_agrees() -> None:
    contract = build_contract(acme_mapping(), acme_like_org())
    rows = acme_rows(len(ACME_REJECTS) + 2)
    for number, (column, value, _, _) in enumerate(ACME_REJECTS):
        rows = rows.with_columns(rows[column].scatter(number, value))
    # A row without a record type takes the default's stages; a Renewal row Renewal's.
    renewal = rows.height - 1
    rows = rows.with_columns(
        rows["record_type"].scatter(1, None).scatter(renewal, "Renewal"),
        rows["stage"].scatter(renewal, "Renewal Open"),
    )
    validator = RowValidator(rows.schema, contract)
    frame = rows.lazy().with_row_index(ROW_INDEX)
    none = pl.Series(ROW_INDEX, [], pl.UInt32)
    result = frame.with_columns(validator.reason_code(none), validator.reason(none)).collect()
    for number, (_, _, code, words) in enumerate(ACME_REJECTS):
        assert result[REASON_CODE][number] == code, (number, result[REASON][number])
        assert words in result[REASON][number]
    assert result[REASON_CODE][len(ACME_REJECTS) :].to_list() == [None, None]
    for row, code in zip(rows.to_dicts(), result[REASON_CODE], strict=True):
        try:
            contract.model.model_validate(row)
            valid = True
        except ValidationError:
            valid = False
        assert valid == (code is None), (row, code)


def staged_rows(state: StateStore, staged: dict[str, StagedPartition]) -> pl.DataFrame:
    return pl.concat(state.read_parquet(part.to_send) for part in staged.values())


def test_record_types_go_as_ids_constants_on_every_row(tmp_path: Path) -> None:
    landing, state = StateStore(tmp_path / "landing"), StateStore(tmp_path / "state")
    mapping = acme_mapping()
    mapping = mapping.model_copy(
        update={
            "fields": [
                *(entry for entry in mapping.fields if entry.field != "Region__c"),
                *mapping_with([{"value": "APAC", "field": "Region__c"}]).fields,
            ]
        }
    )
    contract = build_contract(mapping, acme_like_org())
    rows = (
        acme_rows(4)
        .drop("region")
        .with_columns(
            pl.Series("record_type", ["New_Business", "Renewal", None, "New_Business"]),
            pl.Series("stage", ["Proposal", "Closed Won", "Discovery", "Discovery"]),
        )
    )
    write_drop(landing, "d", [rows])
    sent = staged_rows(state, stage_drop(landing, state, "d", contract))
    by_key = dict(zip(sent["External_Id__c"], sent["RecordTypeId"], strict=True))
    assert [by_key[key] for key in rows["opportunity_key"]] == [
        NEW_BUSINESS,
        RENEWAL,
        None,  # keep (the field may not be empty): the org gives a new record its default
        NEW_BUSINESS,
    ]
    assert sent["Region__c"].to_list() == ["APAC"] * 4
    assert "region" not in contract.model.model_fields


def test_clear_sends_na_and_keep_sends_an_empty_cell(tmp_path: Path) -> None:
    landing, state = StateStore(tmp_path / "landing"), StateStore(tmp_path / "state")
    rows = valid_rows(4).with_columns(pl.Series("description", ["a", None, "", "b"]))
    write_drop(landing, "d", [rows])
    for empty, expected in (("clear", "#N/A"), ("keep", None)):
        mapping = mapping_with(built_in_fields(description={"empty": empty}))
        contract = build_contract(mapping, standard_org())
        sent = staged_rows(state, stage_drop(landing, state, "d", contract))
        values = dict(zip(sent["External_Id__c"], sent["Description"], strict=True))
        assert [values[key] for key in rows["opportunity_key"]] == ["a", expected, expected, "b"]


def org_with_user(*fields: FieldMetadata) -> object:
    org = standard_org()
    user = ObjectMetadata(name="User", fields=list(fields))
    return org.model_copy(update={"parents": {**org.parents, "Owner": user}})


def test_owner_by_an_external_id_of_the_user() -> None:
    # The sandbox's User has no external id field, so this is checked against metadata only.
    org = org_with_user(
        FieldMetadata(
            name="Federation_Id__c", type="string", length=40, custom=True, external_id=True
        ),
        FieldMetadata(name="Username", type="string", length=80, id_lookup=True),
        FieldMetadata(name="Title", type="string", length=80),
    )
    base = built_in_fields()
    for field, length in (("Owner.Federation_Id__c", 40), ("owner.username", 80)):
        contract = build_contract(mapping_with([*base, {"column": "owner", "field": field}]), org)
        spec = contract.spec("owner")
        assert spec.max_length == length
        assert spec.target.field in ("Owner.Federation_Id__c", "Owner.Username")
    with pytest.raises(ContractError, match=r"Owner\.Title: User\.Title is not an External ID"):
        build_contract(mapping_with([*base, {"column": "owner", "field": "Owner.Title"}]), org)


def test_fields_the_integration_user_cannot_see_or_write_refuse_the_night() -> None:
    with pytest.raises(ContractError) as caught:
        build_contract(load_mapping(), acme_like_org())
    message = str(caught.value)
    assert "cannot see these Opportunity fields" in message and "NextStep" in message
    assert "cannot write these Opportunity fields (read-only): LeadSource" in message


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (built_in_fields()[:1] + built_in_fields()[3:], "does not send: StageName, CloseDate"),
        ([*built_in_fields(), {"value": "LATAM", "field": "Type"}], "appears twice"),
        ([*built_in_fields(), {"column": "x", "field": "Nope__c"}], "Nope__c"),
        ([*built_in_fields(), {"value": "soon", "field": "Sync_Partition__c"}], "appears twice"),
        ([*built_in_fields(stage={"min": 1})], "min and max apply to numbers"),
        (
            [
                *(entry for entry in built_in_fields() if entry["field"] != "Amount"),
                {"value": 1.234, "field": "Amount"},
            ],
            "Amount: the constant 1.234 has more than 2 decimal places",
        ),
    ],
)
def test_a_mapping_the_org_cannot_take_is_refused(
    fields: list[dict[str, object]], problem: str
) -> None:
    with pytest.raises((ContractError, ValidationError), match=problem):
        build_contract(mapping_with(fields), standard_org())


def test_unsupported_field_types_are_named() -> None:
    org = standard_org()
    tags = FieldMetadata(name="Tags__c", type="multipicklist", custom=True)
    org = org.model_copy(
        update={"sobject": org.sobject.model_copy(update={"fields": [*org.sobject.fields, tags]})}
    )
    with pytest.raises(ContractError, match="Tags__c: fields of type multipicklist"):
        build_contract(mapping_with([*built_in_fields(), {"column": "t", "field": "Tags__c"}]), org)


# ---- the row hash covers what is sent ---------------------------------------------------------


def confirm(state: StateStore, staged: dict[str, StagedPartition], drop_id: str) -> None:
    """Record every staged row as confirmed by Salesforce, as a load would."""
    for key, part in staged.items():
        rows = state.read_parquet(part.to_send)
        confirmed = rows.select(
            pl.col("External_Id__c").alias("external_id"),
            pl.col("_row_hash").alias("row_hash"),
            pl.lit("006").alias("salesforce_id"),
        )
        advance_ledger(state, key, confirmed, drop_id)


def resent(landing: StateStore, state: StateStore, drop_id: str, mapping: Mapping) -> set[str]:
    """The keys a night with this mapping would send, after confirming them."""
    staged = stage_drop(landing, state, drop_id, build_contract(mapping, standard_org()))
    keys = set(staged_rows(state, staged)["External_Id__c"])
    confirm(state, staged, drop_id)
    return keys


def test_changing_the_mapping_resends_exactly_the_rows_whose_sent_values_change(
    tmp_path: Path,
) -> None:
    landing, state = StateStore(tmp_path / "landing"), StateStore(tmp_path / "state")
    rows = valid_rows(300)
    write_drop(landing, "d", [rows])
    keys = set(rows["opportunity_key"])
    no_description = set(rows.filter(pl.col("description").is_null())["opportunity_key"])
    with_next_step = set(rows.filter(pl.col("next_step").is_not_null())["opportunity_key"])
    assert no_description and with_next_step and no_description != keys

    assert resent(landing, state, "d", load_mapping()) == keys  # the first night
    assert resent(landing, state, "d", load_mapping()) == set()  # nothing changed
    # An empty description now keeps the org's value: only those rows send something new.
    keep = mapping_with(built_in_fields(description={"empty": "keep"}))
    assert resent(landing, state, "d", keep) == no_description
    # next_step kept when empty, then no more mapped, then mapped again (kept when empty): each
    # time only the rows whose sent values change.
    no_next_step = keys - with_next_step
    kept = built_in_fields(description={"empty": "keep"}, next_step={"empty": "keep"})
    assert resent(landing, state, "d", mapping_with(kept)) == no_next_step
    without = [entry for entry in kept if entry["field"] != "NextStep"]
    assert resent(landing, state, "d", mapping_with(without)) == with_next_step
    assert resent(landing, state, "d", mapping_with(kept)) == with_next_step
    # Renaming a column changes nothing that is sent.
    write_drop(landing, "renamed", [rows.rename({"name": "title"})])
    renamed = mapping_with(
        built_in_fields(
            description={"empty": "keep"}, next_step={"empty": "keep"}, name={"column": "title"}
        )
    )
    assert resent(landing, state, "renamed", renamed) == set()
    # A constant on every row changes the rows that did not already send that value.
    fields = renamed.model_dump(mode="json", exclude_none=True)["fields"]
    constant = mapping_with(
        [
            *(entry for entry in fields if entry["field"] != "LeadSource"),
            {"value": "Web", "field": "LeadSource"},
        ]
    )
    not_web = rows.filter(pl.col("lead_source").ne_missing("Web"))["opportunity_key"]
    assert resent(landing, state, "renamed", constant) == set(not_web) != keys


def test_the_built_in_mapping_hashes_rows_as_before(tmp_path: Path) -> None:
    # The built-in mapping sends the same text as the fixed contract before it, so an upgrade
    # resends nothing: these hashes were computed by the code before the mapping file existed.
    landing, state = StateStore(tmp_path / "landing"), StateStore(tmp_path / "state")
    write_drop(landing, "d", [valid_rows(20)])
    sent = staged_rows(state, stage_drop(landing, state, "d")).sort("External_Id__c")
    assert sent.select("External_Id__c", "_row_hash").head(4).rows() == [
        ("OPP-0000000000", 9222883711968342875),
        ("OPP-0000000001", 17399833070640856522),
        ("OPP-0000000002", 5075071568054051788),
        ("OPP-0000000003", 14912210958781502635),
    ]
