"""SOQL key lists against the sandbox, which answers 414 past 16,384 request-line bytes as real
orgs do (REST API status codes)."""

from pathlib import Path

import polars as pl

from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.connection import SalesforceConnection, SalesforceCredentials
from sync_assets.salesforce.queries import (
    MAX_ENCODED_QUERY_BYTES,
    chunk_by_encoded_bytes,
    encoded_bytes,
    keys_tagged_with_partition,
    usernames,
)
from sync_assets.salesforce.query_export import result_pages, run_query_job
from sync_assets.sandbox.runner import SandboxHandle
from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv, unique_prefix

KEYS = 1_200


def test_chunks_fit_the_budget_and_keep_every_key_in_order() -> None:
    keys = [f"'{n:064d}'" for n in range(700)] + ["'ä ö/ü'"] * 3
    chunks = chunk_by_encoded_bytes(keys, 4_000)
    assert [key for chunk in chunks for key in chunk] == keys
    assert all(
        sum(encoded_bytes(key) + encoded_bytes(", ") for key in chunk) <= 4_000 for chunk in chunks
    )
    assert len(chunks) > 1


def test_64_character_keys_are_looked_up_without_a_414(sandbox: SandboxHandle) -> None:
    """500 keys of 64 characters make a ~40 kB request line; chunked by bytes they all come back."""
    prefix = unique_prefix().ljust(60, "x")
    bulk = BulkClient(sandbox.connection)
    info = bulk.load(opportunity_csv(prefix, KEYS, Sync_Partition__c="7"), operation="insert")
    assert info["numberRecordsFailed"] == 0
    keys = [f"{prefix}{n}" for n in range(KEYS)]
    assert max(len(key) for key in keys) == 64
    assert encoded_bytes(", ".join(f"'{key}'" for key in keys[:500])) > 2 * MAX_ENCODED_QUERY_BYTES

    connection = SalesforceConnection(SalesforceCredentials.from_sandbox(sandbox.data_dir))
    found = keys_tagged_with_partition(connection, "7", [*keys, f"{prefix}missing"])
    assert found == set(keys)
    assert keys_tagged_with_partition(connection, "3", keys) == set()


def test_a_query_job_is_read_page_by_page_to_files(sandbox: SandboxHandle, tmp_path: Path) -> None:
    """Pages follow Sforce-Locator until `null`; every record lands in exactly one page file."""
    prefix = unique_prefix()
    bulk = BulkClient(sandbox.connection)
    info = bulk.load(opportunity_csv(prefix, 250, Sync_Partition__c="8"), operation="insert")
    assert info["numberRecordsFailed"] == 0
    api = BulkApi(SalesforceConnection(SalesforceCredentials.from_sandbox(sandbox.data_dir)))
    soql = f"SELECT External_Id__c, Id FROM Opportunity WHERE External_Id__c LIKE '{prefix}%'"
    job = run_query_job(api, soql)
    pages = list(result_pages(api, job.id, tmp_path, max_records=100))
    assert [page.name for page in pages] == ["page-00000.csv", "page-00001.csv", "page-00002.csv"]
    frames = [pl.read_csv(page, infer_schema=False) for page in pages]
    assert [frame.height for frame in frames] == [100, 100, 50]
    keys = pl.concat(frames)["External_Id__c"]
    assert keys.n_unique() == 250 and keys.str.starts_with(prefix).all()


def test_usernames_of_user_ids(sandbox: SandboxHandle) -> None:
    connection = SalesforceConnection(SalesforceCredentials.from_sandbox(sandbox.data_dir))
    [me] = connection.client.query("SELECT Id, Username FROM User LIMIT 1")["records"]
    names = usernames(connection, [me["Id"][:15], "005000000000000AAA"])
    assert names[me["Id"][:15]] == names[me["Id"]] == me["Username"]
    assert "005000000000000AAA" not in names
