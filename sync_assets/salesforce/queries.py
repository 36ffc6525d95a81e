"""SOQL through simple-salesforce (counts per partition), with the loader's retry and re-auth rules."""

import random
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote_plus

import numpy as np
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)

from sync_assets.salesforce.bulk_api import BulkApiUnavailableError
from sync_assets.salesforce.connection import SalesforceConnection
from sync_assets.salesforce.errors import (
    REQUEST_LIMIT_EXCEEDED,
    RETRYABLE_HTTP_STATUSES,
    DailyApiLimitError,
    ErrorClass,
    request_limit_class,
)
from sync_assets.salesforce.retry import RetryPolicy
from sync_assets.state.columns import EXTERNAL_ID_FIELD, PARTITION_FIELD

ResultT = TypeVar("ResultT")
_TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout)


def call_with_retries(
    connection: SalesforceConnection,
    call: Callable[[Salesforce], ResultT],
    retry: RetryPolicy | None = None,
    rng: random.Random | None = None,
) -> ResultT:
    """Run ``call`` on the current client; log in again on expiry, back off on 5xx/429/resets."""
    policy = retry or RetryPolicy()
    jitter = rng or random.Random()
    renewed = False
    for attempt in range(policy.max_attempts):
        token = connection.access_token
        try:
            return call(connection.client)
        except SalesforceExpiredSession:
            if renewed:
                raise
            renewed = True
            connection.reauthenticate(token)
            continue
        except SalesforceGeneralError as error:
            if error.status not in RETRYABLE_HTTP_STATUSES:
                raise
        except SalesforceRefusedRequest as error:
            if _request_limit(error) is not ErrorClass.TRANSIENT:
                raise
        except _TRANSPORT_ERRORS:
            pass
        if attempt + 1 < policy.max_attempts:
            time.sleep(policy.delay(attempt, jitter))
    # The same error as a Bulk call that gave up: transient, so a step retry may try again.
    raise BulkApiUnavailableError(
        "GET", "query", 0, "UNAVAILABLE", f"gave up after {policy.max_attempts} tries"
    )


def _request_limit(error: SalesforceRefusedRequest) -> ErrorClass | None:
    """Which request limit a 403 names (the daily one raised as such), or None for another 403."""
    body = error.content
    first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
    if first.get("errorCode") != REQUEST_LIMIT_EXCEEDED:
        return None
    message = str(first.get("message", ""))
    kind = request_limit_class(message)
    if kind is ErrorClass.DAILY_LIMIT:
        raise DailyApiLimitError("GET", "query", 403, REQUEST_LIMIT_EXCEEDED, message) from None
    return kind


def soql_literal(value: str) -> str:
    """A quoted SOQL string literal with backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def count_partition(
    connection: SalesforceConnection,
    partition: str,
    sobject: str = "Opportunity",
    partition_field: str = PARTITION_FIELD,
    retry: RetryPolicy | None = None,
) -> int:
    """``SELECT COUNT() … WHERE Sync_Partition__c = 'k'``, read from ``totalSize``.

    ``query()``, not ``query_all()``: simple-salesforce's ``query_all()`` reports the length of
    ``records``, which is always 0 for ``COUNT()``.
    """
    where = f"{partition_field} = {soql_literal(partition)}"
    return _count(connection, f"SELECT COUNT() FROM {sobject} WHERE {where}", retry)


def count_synced(
    connection: SalesforceConnection,
    sobject: str = "Opportunity",
    partition_field: str = PARTITION_FIELD,
    retry: RetryPolicy | None = None,
) -> int:
    """``SELECT COUNT() … WHERE Sync_Partition__c != null``: every record the sync wrote."""
    return _count(
        connection, f"SELECT COUNT() FROM {sobject} WHERE {partition_field} != null", retry
    )


def _count(connection: SalesforceConnection, soql: str, retry: RetryPolicy | None) -> int:
    answer = call_with_retries(connection, lambda client: client.query(soql), retry)
    return int(answer["totalSize"])


# A GET's request line may hold 16,384 bytes (REST API status codes: 414 "The length of the URI
# exceeds the 16,384 byte limit"). The query travels URL-encoded in `?q=`, so the budget is counted
# in encoded bytes, leaving room for the method, host-relative path and protocol.
MAX_ENCODED_QUERY_BYTES = 16_384 - 512


def encoded_bytes(text: str) -> int:
    """Bytes ``text`` takes in a query string, as ``requests`` encodes it (``quote_plus``)."""
    return len(quote_plus(text))


def chunk_by_encoded_bytes(items: list[str], budget: int) -> list[list[str]]:
    """``items`` cut into runs whose encoded sizes (each item plus ``, ``) fit ``budget``."""
    if not items:
        return []
    separator = encoded_bytes(", ")
    sizes = np.fromiter((encoded_bytes(item) + separator for item in items), dtype=np.int64)
    if int(sizes.max()) > budget:
        raise ValueError("One key alone does not fit in a query's request line.")
    ends = np.cumsum(sizes)
    chunks: list[list[str]] = []
    start = 0
    while start < len(items):
        offset = int(ends[start - 1]) if start else 0
        end = int(np.searchsorted(ends, offset + budget, side="right"))
        chunks.append(items[start:end])
        start = end
    return chunks


def keys_tagged_with_partition(
    connection: SalesforceConnection,
    partition: str,
    external_ids: list[str],
    sobject: str = "Opportunity",
    partition_field: str = PARTITION_FIELD,
    external_id_field: str = EXTERNAL_ID_FIELD,
    retry: RetryPolicy | None = None,
) -> set[str]:
    """Which of ``external_ids`` Salesforce still tags with ``partition``.

    The keys are cut by the encoded size of the query, not by their count: 500 keys of 64
    characters already pass the request-line limit.
    """
    head = (
        f"SELECT {external_id_field} FROM {sobject} "
        f"WHERE {partition_field} = {soql_literal(partition)} AND {external_id_field} IN ("
    )
    budget = MAX_ENCODED_QUERY_BYTES - encoded_bytes(head + ")")
    literals = [soql_literal(key) for key in external_ids]
    tagged: set[str] = set()
    for chunk in chunk_by_encoded_bytes(literals, budget):
        soql = head + ", ".join(chunk) + ")"
        answer = call_with_retries(connection, lambda client, q=soql: client.query_all(q), retry)
        tagged.update(record[external_id_field] for record in answer["records"])
    return tagged


def usernames(
    connection: SalesforceConnection, user_ids: list[str], retry: RetryPolicy | None = None
) -> dict[str, str]:
    """Username by User Id, for the ids given (``SELECT Id, Username FROM User WHERE Id IN …``).

    Ids come back in their 18-character form; both forms of each asked id are answered.
    """
    head = "SELECT Id, Username FROM User WHERE Id IN ("
    budget = MAX_ENCODED_QUERY_BYTES - encoded_bytes(head + ")")
    names: dict[str, str] = {}
    for chunk in chunk_by_encoded_bytes([soql_literal(key) for key in user_ids], budget):
        soql = head + ", ".join(chunk) + ")"
        answer = call_with_retries(connection, lambda client, q=soql: client.query_all(q), retry)
        for record in answer["records"]:
            names[record["Id"]] = names[record["Id"][:15]] = record["Username"]
    return names
