"""A night's load into the acme org: validation rules and org defaults stay set-based at scale.

``SANDBOX_ORG_ROWS`` sets the size (default 20,000; the nightly volume is 2,000,000). Every
1,000th row breaks the approval-limit rule; every other row lands with the org's defaults.
"""

import csv
import io
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sync_assets.sandbox.runner import SandboxHandle
from sync_assets_tests.sandbox.bulk_client import BulkClient
from sync_assets_tests.sandbox.org_files import acme_org_file

ROWS = int(os.environ.get("SANDBOX_ORG_ROWS", "20000"))
ROWS_PER_JOB = 200_000
ACCOUNTS = 2_000
STAGES = ["Discovery", "Qualification", "Proposal", "Renewal Open", "Closed Won", "Closed Lost"]
CURRENCIES = ["USD", "EUR", "GBP", ""]
REGIONS = ["EMEA", "AMER", "APAC", ""]


def _job_csv(first: int, count: int) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "External_Id__c",
            "Account.External_Id__c",
            "Name",
            "StageName",
            "CloseDate",
            "Amount",
            "CurrencyIsoCode",
            "Region__c",
            "Forecast_Score__c",
            "Sync_Partition__c",
        ]
    )
    writer.writerows(
        [
            f"NIGHT-{n:09d}",
            f"ACC-{(n // 50) % ACCOUNTS:06d}",
            f"Opportunity {n}",
            STAGES[n % len(STAGES)],
            f"2026-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
            "600000000" if n % 1000 == 0 else f"{(n % 100000) * 1.25:.2f}",
            CURRENCIES[n % len(CURRENCIES)],
            REGIONS[n % len(REGIONS)],
            f"{n % 10000 / 1000:.3f}",
            str(n % 10),
        ]
        for n in range(first, first + count)
    )
    return buffer.getvalue().encode()


@pytest.mark.slow
def test_a_night_with_validation_rules_stays_set_based(
    fresh_sandbox: Callable[..., SandboxHandle], tmp_path: Path
) -> None:
    org = acme_org_file(tmp_path / "org")
    bulk = BulkClient(fresh_sandbox(accounts=ACCOUNTS, org=org.path).connection)
    starts = range(0, ROWS, ROWS_PER_JOB)
    started = time.monotonic()

    def load(first: int) -> dict:
        data = _job_csv(first, min(ROWS_PER_JOB, ROWS - first))
        return bulk.load(data, operation="upsert", externalIdFieldName="External_Id__c")

    with ThreadPoolExecutor(max_workers=2) as pool:
        infos = list(pool.map(load, starts))
    elapsed = time.monotonic() - started
    assert {i["state"] for i in infos} == {"JobComplete"}
    breakers = len(range(0, ROWS, 1000))
    assert sum(i["numberRecordsProcessed"] for i in infos) == ROWS
    assert sum(i["numberRecordsFailed"] for i in infos) == breakers
    assert bulk.count("CurrencyIsoCode = 'USD'") == len(
        [n for n in range(ROWS) if n % 4 in (0, 3) and n % 1000]
    )
    print(f"\n{ROWS} rows into the acme org in {elapsed:.1f} s ({ROWS / elapsed:,.0f} rows/s)")
    # Minutes for a 2M-row night, not hours: a per-row Python loop would be far slower.
    assert elapsed < max(60.0, ROWS / 5_000)
