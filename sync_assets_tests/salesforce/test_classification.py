"""The error rules, tested with the texts real orgs send (salesforce-facts §2 and §3)."""

import polars as pl
import pytest

from sync_assets.salesforce.errors import (
    ErrorClass,
    is_transient_job_failure,
    is_transient_row_error,
    job_failure_class,
    job_failure_code,
    request_limit_class,
    row_error_code,
)

# DLRS #1241/#847/#736: a rollup trigger that cannot lock the parent Account.
WRAPPED_LOCK = (
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY:dlrs_SBQQ_SubscriptionTrigger: execution of AfterUpdate"
    "\n\ncaused by: System.DmlException: Update failed. First exception on row 0 with id "
    "a0N5e00000ABCDEAA4; first error: UNABLE_TO_LOCK_ROW, unable to obtain exclusive access to "
    "this record: []\n\n(dlrs) Trigger.dlrs_SBQQ_SubscriptionTrigger: line 7, column 1:--"
)
# salesforce.stackexchange.com 96410 (a Bulk API load by Informatica).
WRAPPED_CPU = (
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY:EnrollmentrxRx.ContactCustomerPortal: execution of "
    "BeforeUpdate caused by: System.LimitException: Apex CPU time limit exceeded "
    "Class.ApplicationTriggerHandler.applicationAfter: line 116, column 1 "
    "Trigger.ApplicationTrigger: line 13, column 1:--"
)
# A trigger that wraps a validation failure: the inner code decides (salesforce-facts §2).
WRAPPED_VALIDATION = (
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY:OpportunityTrigger: execution of AfterInsert\n\n"
    "caused by: System.DmlException: Update failed. First exception on row 0 with id "
    "0015e00000ABCDEAA4; first error: FIELD_CUSTOM_VALIDATION_EXCEPTION, Region is required: []"
    "\n\nTrigger.OpportunityTrigger: line 12, column 1:--"
)


@pytest.mark.parametrize(
    ("error", "code", "transient"),
    [
        (
            "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--",
            "UNABLE_TO_LOCK_ROW",
            True,
        ),
        (WRAPPED_LOCK, "UNABLE_TO_LOCK_ROW", True),
        (WRAPPED_CPU, "APEX_CPU_LIMIT", True),
        (
            "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY: ContactBeforeInsertBeforeUpdate: "
            "System.LimitException: Apex CPU time limit exceeded",
            "APEX_CPU_LIMIT",
            True,
        ),
        (
            "INSERT_UPDATE_DELETE_NOT_ALLOWED_DURING_MAINTENANCE:Updates can't be made during "
            "maintenance. Try again when maintenance is complete.:--",
            "INSERT_UPDATE_DELETE_NOT_ALLOWED_DURING_MAINTENANCE",
            True,
        ),
        (
            "Too many batch retries in the presence of Apex triggers and partial failures.",
            "TOO_MANY_BATCH_RETRIES",
            True,
        ),
        ("API_TEMPORARILY_UNAVAILABLE:try later:--", "API_TEMPORARILY_UNAVAILABLE", True),
        (WRAPPED_VALIDATION, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", False),
        (
            "FIELD_CUSTOM_VALIDATION_EXCEPTION:Close date cannot be in the past:CloseDate --",
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            False,
        ),
        (
            "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --",
            "REQUIRED_FIELD_MISSING",
            False,
        ),
        (
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Stage: bad value for restricted picklist "
            "field: Foo:StageName --",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
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
def test_row_errors_are_classified_on_their_whole_text(
    error: str, code: str, transient: bool
) -> None:
    frame = pl.DataFrame({"error": [error]}).select(
        row_error_code(pl.col("error")).alias("code"),
        is_transient_row_error(pl.col("error")).alias("transient"),
    )
    assert frame.row(0) == (code, transient)


@pytest.mark.parametrize(
    ("message", "kind", "code"),
    [
        ("InvalidBatch : Field name not found : Foo__c", ErrorClass.PERMANENT, "InvalidBatch"),
        (
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF",
            ErrorClass.PERMANENT,
            "ClientInputError",
        ),
        # The rolling 24-hour allowance: the rows are not wrong, the night stops.
        (
            "ExceededQuota : The job exceeds the number of records the org may ingest in a "
            "rolling 24-hour period; the remaining records were not processed",
            ErrorClass.DAILY_LIMIT,
            "ExceededQuota",
        ),
        (
            "Timeout : An internal batch was retried more than 20 times; the remaining records "
            "were not processed",
            ErrorClass.TRANSIENT,
            "UNPROCESSED",
        ),
        ("Internal server error while processing batch", ErrorClass.TRANSIENT, "UNPROCESSED"),
        (None, ErrorClass.TRANSIENT, "UNPROCESSED"),
    ],
)
def test_failed_jobs_are_resent_unless_the_failure_was_the_data(
    message: str | None, kind: ErrorClass, code: str
) -> None:
    assert job_failure_class(message) is kind
    assert is_transient_job_failure(message) is (kind is not ErrorClass.PERMANENT)
    assert job_failure_code(message) == code


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("ConcurrentPerOrgLongTxn Limit exceeded.", ErrorClass.TRANSIENT),
        ("ConcurrentRequests (Concurrent API Requests) Limit exceeded", ErrorClass.TRANSIENT),
        ("TotalRequests Limit exceeded.", ErrorClass.DAILY_LIMIT),
        ("Some limit we have never seen", ErrorClass.DAILY_LIMIT),
    ],
)
def test_the_two_request_limits_are_told_apart_by_their_text(
    message: str, kind: ErrorClass
) -> None:
    assert request_limit_class(message) is kind
