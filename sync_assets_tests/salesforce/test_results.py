from pathlib import Path

import polars as pl

from sync_assets.salesforce.checkpoint import RowStatus
from sync_assets.salesforce.results import (
    failed_outcomes,
    job_outcome,
    successful_outcomes,
    unprocessed_outcomes,
)

# As Salesforce writes them: sf__ headers quoted, original headers as uploaded, every value quoted.
SUCCESS = (
    '"sf__Id","sf__Created",External_Id__c,Account.External_Id__c,Description\n'
    '"006000000000001AAA","true","K1","ACC-1","multi\nline, ""quoted"""\n'
    '"006000000000002AAA","false","K2","ACC-1","plain"\n'
)
FAILED = (
    '"sf__Id","sf__Error",External_Id__c,Account.External_Id__c,Description\n'
    '"","REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --","K3","ACC-2",""\n'
    '"","UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--","K4","ACC-2",""\n'
)
UNPROCESSED = "External_Id__c,Account.External_Id__c,Description\nK5,ACC-3,x\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def keys(*external_ids: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"External_Id__c": list(external_ids), "_row_hash": [int(key[1:]) for key in external_ids]}
    )


def test_every_carried_row_gets_one_outcome(tmp_path: Path) -> None:
    results = [
        successful_outcomes(write(tmp_path, "ok.csv", SUCCESS)),
        failed_outcomes(write(tmp_path, "failed.csv", FAILED)),
        unprocessed_outcomes(write(tmp_path, "unprocessed.csv", UNPROCESSED), "Internal error"),
    ]
    outcome = job_outcome(keys("K1", "K2", "K3", "K4", "K5", "K6"), results, "750X", 7)
    by_key = {row["External_Id__c"]: row for row in outcome.iter_rows(named=True)}
    assert (
        by_key["K1"]["status"] == RowStatus.CREATED
        and by_key["K1"]["salesforce_id"] == "006000000000001AAA"
    )
    assert by_key["K2"]["status"] == RowStatus.UPDATED
    assert by_key["K3"]["status"] == RowStatus.PERMANENT
    assert by_key["K3"]["error_code"] == "REQUIRED_FIELD_MISSING"
    assert by_key["K3"]["error"].startswith("REQUIRED_FIELD_MISSING:Required fields are missing")
    assert (
        by_key["K4"]["status"] == RowStatus.TRANSIENT
        and by_key["K4"]["error_code"] == "UNABLE_TO_LOCK_ROW"
    )
    assert (
        by_key["K5"]["status"] == RowStatus.TRANSIENT
        and by_key["K5"]["error_code"] == "UNPROCESSED"
    )
    assert (
        by_key["K6"]["status"] == RowStatus.TRANSIENT and by_key["K6"]["error_code"] == "NO_RESULT"
    )
    assert outcome["_row_hash"].to_list() == list(range(1, 7))
    assert set(outcome["job_id"]) == {"750X"} and set(outcome["sequence"]) == {7}


def test_rows_of_a_job_that_failed_on_its_data_are_permanent(tmp_path: Path) -> None:
    outcome = unprocessed_outcomes(
        write(tmp_path, "unprocessed.csv", UNPROCESSED),
        "InvalidBatch : Field name not found : Foo__c",
    )
    assert outcome["status"].to_list() == [RowStatus.PERMANENT]
    assert outcome["error_code"].to_list() == ["InvalidBatch"]


def test_header_only_and_missing_results_mean_no_rows(tmp_path: Path) -> None:
    assert successful_outcomes(
        write(tmp_path, "ok.csv", '"sf__Id","sf__Created",External_Id__c\n')
    ).is_empty()
    assert failed_outcomes(None).is_empty()
    assert unprocessed_outcomes(write(tmp_path, "empty.csv", ""), None).is_empty()
