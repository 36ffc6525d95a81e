"""SOQL through simple-salesforce (counts per partition), with the loader's retry and re-auth rules."""

import random
import time
from collections.abc import Callable
from typing import TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceGeneralError

from sync_assets.salesforce.bulk_api import BulkApiUnavailableError
from sync_assets.salesforce.connection import SalesforceConnection
from sync_assets.salesforce.errors import RETRYABLE_HTTP_STATUSES
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
        except _TRANSPORT_ERRORS:
            pass
        if attempt + 1 < policy.max_attempts:
            time.sleep(policy.delay(attempt, jitter))
    # The same error as a Bulk call that gave up: transient, so a step retry may try again.
    raise BulkApiUnavailableError(
        "GET", "query", 0, "UNAVAILABLE", f"gave up after {policy.max_attempts} tries"
    )


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


# A SOQL statement may be 100,000 characters long; 500 quoted keys of ≤ 64 characters fit.
_KEYS_PER_QUERY = 500


def keys_tagged_with_partition(
    connection: SalesforceConnection,
    partition: str,
    external_ids: list[str],
    sobject: str = "Opportunity",
    partition_field: str = PARTITION_FIELD,
    external_id_field: str = EXTERNAL_ID_FIELD,
    retry: RetryPolicy | None = None,
) -> set[str]:
    """Which of ``external_ids`` Salesforce still tags with ``partition``."""
    tagged: set[str] = set()
    for start in range(0, len(external_ids), _KEYS_PER_QUERY):
        chunk = external_ids[start : start + _KEYS_PER_QUERY]
        soql = (
            f"SELECT {external_id_field} FROM {sobject} "
            f"WHERE {partition_field} = {soql_literal(partition)} "
            f"AND {external_id_field} IN ({', '.join(soql_literal(key) for key in chunk)})"
        )
        answer = call_with_retries(connection, lambda client, q=soql: client.query_all(q), retry)
        tagged.update(record[external_id_field] for record in answer["records"])
    return tagged
