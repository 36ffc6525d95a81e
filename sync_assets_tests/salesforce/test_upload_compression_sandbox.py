"""Gzip uploads against the local HTTPS sandbox: the same rows for a fraction of the bytes, and the fallback to plain."""

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.drops.staging import stage_partition
from sync_assets.partition_load import PartitionLoader
from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.connection import SalesforceConnection, SalesforceCredentials
from sync_assets.salesforce.loader import BulkLoader, LoaderSettings, LoadResult
from sync_assets.salesforce.planning import PlanLimits
from sync_assets.salesforce.queries import count_partition
from sync_assets.salesforce.retry import RetryPolicy
from sync_assets.salesforce.watcher import WatchSettings
from sync_assets.sandbox.runner import SandboxHandle
from sync_assets.state.ledger import load_ledger
from sync_assets.storage import StateStore

pytestmark = pytest.mark.slow

ACCOUNTS = 300
DROP = "night"
PARTITION = "3"
FAST = {
    "watch": WatchSettings(first=0.05, cap=0.5),
    "retry": RetryPolicy(max_attempts=10, base_delay=0.05, max_delay=0.5),
}


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> StateStore:
    """A demo drop of 30,000 rows (partition 3 holds about 3,000 of them)."""
    landing = StateStore(tmp_path_factory.mktemp("landing"))
    generate_drop(landing, GenerateOptions(drop_id=DROP, rows=30_000, accounts=ACCOUNTS))
    return landing


def night(
    sandbox: SandboxHandle, landing: StateStore, state: Path, **settings: Any
) -> tuple[LoadResult, dict[str, Any]]:
    """Partition 3 of the drop staged and loaded into `sandbox`; the sandbox's totals after."""
    stage_partition(landing, StateStore(state), DROP, PARTITION)
    connection = SalesforceConnection(SalesforceCredentials.from_sandbox(sandbox.data_dir))
    loader = BulkLoader(connection, LoaderSettings(**(FAST | settings)))
    result = PartitionLoader(loader, StateStore(state)).load_staged(DROP, PARTITION)
    stats = connection.http.get(
        f"{connection.instance_url}/__sandbox/stats",
        headers={"Authorization": f"Bearer {connection.access_token}"},
    )
    return result, stats.json()["totals"]


def landed(sandbox: SandboxHandle, state: Path) -> tuple[int, int]:
    """Opportunities the org holds for the partition (SOQL COUNT()) and the ledger's rows."""
    connection = SalesforceConnection(SalesforceCredentials.from_sandbox(sandbox.data_dir))
    return count_partition(connection, PARTITION), load_ledger(StateStore(state), PARTITION).height


def test_a_gzip_night_lands_the_same_rows_for_under_30_percent_of_the_bytes(
    fresh_sandbox: Callable[..., SandboxHandle], landing: StateStore, tmp_path: Path
) -> None:
    plain_org, gzip_org = fresh_sandbox(accounts=ACCOUNTS), fresh_sandbox(accounts=ACCOUNTS)

    plain, plain_totals = night(plain_org, landing, tmp_path / "plain", upload_compression="none")
    zipped, gzip_totals = night(gzip_org, landing, tmp_path / "gzip", upload_compression="gzip")

    assert plain.sent > 2_000 and zipped.sent == plain.sent
    assert (zipped.succeeded, zipped.failed) == (plain.succeeded, plain.failed)
    assert (plain.upload_compression, zipped.upload_compression) == ("none", "gzip")
    assert landed(gzip_org, tmp_path / "gzip") == landed(plain_org, tmp_path / "plain")
    assert landed(gzip_org, tmp_path / "gzip")[0] == plain.succeeded
    # Every request body of the night as sent (logins, job JSON, uploads): the done-when bound.
    ratio = gzip_totals["request_body_bytes"] / plain_totals["request_body_bytes"]
    assert ratio <= 0.30, f"gzip night sent {ratio:.1%} of the plain night's bytes"


def test_an_org_refusing_gzip_gets_the_same_upload_plain_and_the_rest_of_the_load_plain(
    fresh_sandbox: Callable[..., SandboxHandle],
    landing: StateStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    org = fresh_sandbox(accounts=ACCOUNTS, refuse_compressed_uploads=True)
    connection = SalesforceConnection(SalesforceCredentials.from_sandbox(org.data_dir))
    before = BulkApi(connection).limits()["DailyApiRequests"]["Remaining"]

    with caplog.at_level(logging.WARNING, logger="sync_assets.salesforce.bulk_api"):
        result, totals = night(
            org,
            landing,
            tmp_path / "state",
            upload_compression="gzip",
            plan=PlanLimits(max_records=700),
            jobs_in_flight=1,
            max_jobs_in_flight=1,
        )

    after = BulkApi(connection).limits()["DailyApiRequests"]["Remaining"]
    assert (result.failed, result.succeeded) == (0, result.sent)
    assert len(result.job_ids) >= 4 and result.upload_compression == "none"
    assert landed(org, tmp_path / "state") == (result.sent, result.sent)
    # One gzip upload refused, then plain for that job and every later one.
    assert totals["request_body_refused:415"] == 1
    [warning] = [
        r.getMessage() for r in caplog.records if "refused a gzip upload" in r.getMessage()
    ]
    assert "HTTP 415 UNSUPPORTED_MEDIA_TYPE" in warning
    # The refused call counted on both sides: the org's API usage (less this check's own
    # /limits call) is what the load says it spent.
    assert before - after - 1 == result.api_calls
