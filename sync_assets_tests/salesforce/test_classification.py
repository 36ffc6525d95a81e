import polars as pl
import pytest

from sync_assets.salesforce.errors import (
    is_transient_job_failure,
    is_transient_row_error,
    job_failure_code,
    row_error_code,
)


@pytest.mark.parametrize(
    ("error", "code", "transient"),
    [
        (
            "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--",
            "UNABLE_TO_LOCK_ROW",
            True,
        ),
        ("API_TEMPORARILY_UNAVAILABLE:try later:--", "API_TEMPORARILY_UNAVAILABLE", True),
        (
            "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --",
            "REQUIRED_FIELD_MISSING",
            False,
        ),
        (
            "INVALID_FIELD:Foreign key external ID: ACC-9 not found for field External_Id__c in entity Account:--",
            "INVALID_FIELD",
            False,
        ),
        (
            "DUPLICATE_VALUE:Duplicate external id specified: K1:External_Id__c --",
            "DUPLICATE_VALUE",
            False,
        ),
        (
            "STRING_TOO_LONG:Name: data value too large: xxx (max length=120):Name --",
            "STRING_TOO_LONG",
            False,
        ),
    ],
)
def test_row_errors_are_classified_by_their_status_code(
    error: str, code: str, transient: bool
) -> None:
    frame = pl.DataFrame({"error": [error]}).select(row_error_code(pl.col("error")).alias("code"))
    assert frame["code"][0] == code
    assert frame.select(is_transient_row_error(pl.col("code")))[0, 0] is transient


@pytest.mark.parametrize(
    ("message", "transient", "code"),
    [
        ("InvalidBatch : Field name not found : Foo__c", False, "InvalidBatch"),
        (
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF",
            False,
            "ClientInputError",
        ),
        ("ExceededQuota : daily limit", False, "ExceededQuota"),
        ("Internal server error while processing batch", True, "UNPROCESSED"),
        (None, True, "UNPROCESSED"),
    ],
)
def test_failed_jobs_are_resent_only_when_the_failure_was_not_the_data(
    message: str | None, transient: bool, code: str
) -> None:
    assert is_transient_job_failure(message) is transient
    assert job_failure_code(message) == code
