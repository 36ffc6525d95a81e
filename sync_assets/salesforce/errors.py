"""Salesforce client errors, and which failures are worth retrying (transient) and which are not."""

import polars as pl

# Row errors that say "try again later", not "this row is wrong" (Bulk API 2.0 Developer Guide,
# "How Requests Are Processed"; SOAP API Developer Guide, StatusCode).
TRANSIENT_ROW_ERROR_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "API_TEMPORARILY_UNAVAILABLE"})

# HTTP statuses retried at the request level: server errors and throttling.
RETRYABLE_HTTP_STATUSES = frozenset({420, 429, 500, 502, 503, 504})

# Job-level failures caused by the data or the job itself; sending the same rows again cannot help.
PERMANENT_JOB_ERROR_PREFIXES = (
    "InvalidBatch",
    "ClientInputError",
    "InvalidJob",
    "InvalidOperation",
    "FeatureNotEnabled",
    "InvalidUser",
    "ExceededQuota",
)

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


class LoadInvariantError(SalesforceError):
    """The loader's own accounting does not add up (sent ≠ succeeded + failed)."""


def row_error_code(error: pl.Expr) -> pl.Expr:
    """The status code in front of a ``CODE:message:fields --`` row error."""
    return error.str.extract(r"^([A-Za-z_]+)\s*:", 1).fill_null(error)


def is_transient_row_error(error_code: pl.Expr) -> pl.Expr:
    return error_code.is_in(sorted(TRANSIENT_ROW_ERROR_CODES))


def is_transient_job_failure(error_message: str | None) -> bool:
    """Whether the unprocessed rows of a ``Failed`` job may succeed when sent again."""
    message = (error_message or "").strip()
    return not message.startswith(PERMANENT_JOB_ERROR_PREFIXES)


def job_failure_code(error_message: str | None) -> str:
    """A short reason for a failed job's rows, e.g. ``InvalidBatch`` or ``UNPROCESSED``."""
    message = (error_message or "").strip()
    head = message.split(":", 1)[0].strip()
    return (
        head
        if head and message.startswith(PERMANENT_JOB_ERROR_PREFIXES)
        else UNPROCESSED_ERROR_CODE
    )
