"""Salesforce client errors, and one table of rules that says which failures are worth retrying."""

import re
from enum import StrEnum
from typing import NamedTuple

import polars as pl


class ErrorClass(StrEnum):
    """What a failure asks of us: send again later, keep it with its reason, or stop the night."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    DAILY_LIMIT = "daily_limit"


class ErrorRule(NamedTuple):
    """A pattern searched in the whole error text, the reason code it reports, and its class."""

    pattern: str
    code: str
    kind: ErrorClass


# Row errors (`sf__Error`), first match wins; the text is kept as Salesforce wrote it. Triggers,
# flows and rollups wrap failures in CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY, with the real cause
# inside ("...; first error: UNABLE_TO_LOCK_ROW, unable to obtain exclusive access..." or
# "System.LimitException: Apex CPU time limit exceeded"), so the whole text is searched, not only
# its leading code (salesforce-facts §2; DLRS issues 1241, 847, 736; salesforce.stackexchange.com
# 96410, 330425, 194022; Apex Developer Guide, "Bulk DML Exception Handling").
ROW_ERROR_RULES: tuple[ErrorRule, ...] = (
    ErrorRule(r"UNABLE_TO_LOCK_ROW", "UNABLE_TO_LOCK_ROW", ErrorClass.TRANSIENT),
    ErrorRule(r"Apex CPU time limit exceeded", "APEX_CPU_LIMIT", ErrorClass.TRANSIENT),
    ErrorRule(
        r"INSERT_UPDATE_DELETE_NOT_ALLOWED_DURING_MAINTENANCE",
        "INSERT_UPDATE_DELETE_NOT_ALLOWED_DURING_MAINTENANCE",
        ErrorClass.TRANSIENT,
    ),
    ErrorRule(
        r"Too many batch retries in the presence of Apex triggers",
        "TOO_MANY_BATCH_RETRIES",
        ErrorClass.TRANSIENT,
    ),
    ErrorRule(
        r"^API_TEMPORARILY_UNAVAILABLE\b", "API_TEMPORARILY_UNAVAILABLE", ErrorClass.TRANSIENT
    ),
)
"""Anything else (validation rules, required fields, bad values, unknown parents) is permanent
under its leading code until the data or the org changes."""

# Job-level `errorMessage`s of Failed jobs (Bulk API 2.0 Developer Guide, Errors). ExceededQuota
# is the rolling 24-hour record or batch allowance: the night stops and the next one resumes.
# Anything not listed (a batch that kept timing out, an internal error) is transient.
JOB_ERROR_RULES: tuple[ErrorRule, ...] = (
    ErrorRule(r"^\s*ExceededQuota\b", "ExceededQuota", ErrorClass.DAILY_LIMIT),
    *(
        ErrorRule(rf"^\s*{code}\b", code, ErrorClass.PERMANENT)
        for code in (
            "InvalidBatch",
            "ClientInputError",
            "InvalidJob",
            "InvalidOperation",
            "FeatureNotEnabled",
            "InvalidUser",
        )
    ),
)

# 403 REQUEST_LIMIT_EXCEEDED carries both of the org's request limits; only the text tells them
# apart. The concurrent long-running request limit passes in seconds to minutes; the rolling daily
# total does not pass tonight (salesforce-facts §3: "ConcurrentPerOrgLongTxn Limit exceeded.",
# Salesforce Help 000389067 "ConcurrentRequests (Concurrent API Requests) Limit exceeded",
# "TotalRequests Limit exceeded.").
REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
REQUEST_LIMIT_RULES: tuple[ErrorRule, ...] = (
    ErrorRule(r"Concurrent", "CONCURRENT_REQUESTS", ErrorClass.TRANSIENT),
    ErrorRule(r"TotalRequests", "DAILY_API_REQUESTS", ErrorClass.DAILY_LIMIT),
)

# HTTP statuses retried at the request level: server errors and throttling.
RETRYABLE_HTTP_STATUSES = frozenset({420, 429, 500, 502, 503, 504})

UNPROCESSED_ERROR_CODE = "UNPROCESSED"
MISSING_RESULT_ERROR_CODE = "NO_RESULT"


class SalesforceError(Exception):
    """Base of every error this client raises; messages never carry a secret."""


class SalesforceConfigError(SalesforceError):
    """The configuration is incomplete or points nowhere."""


class SalesforceAuthError(SalesforceError):
    """Logging in failed, or an expired session cannot be renewed."""


class SalesforceLimitsError(SalesforceError):
    """The org's remaining daily limits cannot take the load; nothing was sent."""


class BulkApiError(SalesforceError):
    """A Bulk API or REST call answered with an error that retrying will not fix."""

    def __init__(self, method: str, path: str, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{method} {path} → HTTP {status} {error_code}: {message}")
        self.method = method
        self.path = path
        self.status = status
        self.error_code = error_code
        self.error_message = message


class DailyApiLimitError(BulkApiError):
    """403 REQUEST_LIMIT_EXCEEDED for the org's rolling daily total: nothing more goes tonight."""


class LoadInvariantError(SalesforceError):
    """The loader's own accounting does not add up (sent ≠ succeeded + failed)."""


class LoadStoppedError(SalesforceError):
    """The load stopped before every row was sent: a daily limit, or the night's API budget.

    Not a failure of the data: what Salesforce confirmed is recorded, and the rows left are sent
    by the next night (or a re-run once the limit has room again). ``confirmed`` holds the rows
    Salesforce confirmed (external id, row hash, Salesforce id), filled in by the loader.
    """

    def __init__(self, message: str, confirmed: pl.DataFrame | None = None) -> None:
        super().__init__(message)
        self.confirmed = confirmed


def _first_rule(rules: tuple[ErrorRule, ...], text: str) -> ErrorRule | None:
    return next((rule for rule in rules if re.search(rule.pattern, text)), None)


def row_error_code(error: pl.Expr) -> pl.Expr:
    """A row error's reason: the code of the first rule it matches, else its leading ``CODE:``."""
    code = error.str.extract(r"^([A-Za-z_]+)\s*:", 1).fill_null(error)
    for rule in reversed(ROW_ERROR_RULES):
        code = pl.when(error.str.contains(rule.pattern)).then(pl.lit(rule.code)).otherwise(code)
    return code


def is_transient_row_error(error: pl.Expr) -> pl.Expr:
    """Whether a row error (the whole ``sf__Error`` text) may succeed when the row is sent again."""
    transient = [
        error.str.contains(rule.pattern)
        for rule in ROW_ERROR_RULES
        if rule.kind is ErrorClass.TRANSIENT
    ]
    return pl.any_horizontal(transient).fill_null(False)


def job_failure_class(error_message: str | None) -> ErrorClass:
    """What a ``Failed`` job's ``errorMessage`` asks of its unprocessed rows."""
    rule = _first_rule(JOB_ERROR_RULES, error_message or "")
    return ErrorClass.TRANSIENT if rule is None else rule.kind


def is_transient_job_failure(error_message: str | None) -> bool:
    """Whether the unprocessed rows of a ``Failed`` job are sent again (tonight or next night)."""
    return job_failure_class(error_message) is not ErrorClass.PERMANENT


def job_failure_code(error_message: str | None) -> str:
    """A short reason for a failed job's rows, e.g. ``InvalidBatch`` or ``UNPROCESSED``."""
    rule = _first_rule(JOB_ERROR_RULES, error_message or "")
    return UNPROCESSED_ERROR_CODE if rule is None else rule.code


def request_limit_class(message: str) -> ErrorClass:
    """Which of the org's request limits a 403 REQUEST_LIMIT_EXCEEDED is about.

    An unknown text counts as the daily limit: retrying it would only hammer an org that is out
    of requests.
    """
    rule = _first_rule(REQUEST_LIMIT_RULES, message)
    return ErrorClass.DAILY_LIMIT if rule is None else rule.kind
