"""Reading a whole Opportunity table back through Bulk query: every record, bounded server memory.

Sized by ``SANDBOX_QUERY_ROWS`` (default 20,000; the nightly volume is 2,000,000). Records are
loaded through the sandbox's Bulk ingest, then a fresh sandbox process serves them through
simple-salesforce's ``bulk2.query``; the count and checksums must equal SQLite's, and the
process's anonymous memory must not grow with the number of records.
"""

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from simple_salesforce import Salesforce

from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import SandboxHandle, running_sandbox
from sync_assets_tests.sandbox.bulk_client import BulkClient

pytestmark = pytest.mark.slow

ROWS = int(os.environ.get("SANDBOX_QUERY_ROWS", "20000"))
# About 45 MB of CSV a job: well under the 100 MB an ingest job may take.
ROWS_PER_JOB = 500_000
ACCOUNTS = 1_000
PAGE_RECORDS = 50_000
# Bytes of memory (besides the memory-mapped database) the read-back may add to the sandbox: a
# results file built in memory would need more than that from about 1M records on.
MEMORY_GROWTH_LIMIT = 128 * 2**20
SOQL = "SELECT Id, External_Id__c, Amount, Account.External_Id__c FROM Opportunity"
SQLITE_SQL = (
    'SELECT o."Id", o."External_Id__c", o."Amount", a."External_Id__c" FROM "Opportunity" o '
    'LEFT JOIN "Account" a ON a."Id" = o."AccountId" AND a."IsDeleted" = 0 WHERE o."IsDeleted" = 0'
)
COLUMNS = ["Id", "External_Id__c", "Amount", "Account.External_Id__c"]


def _upload(start: int, count: int) -> bytes:
    n = pl.int_range(start, start + count, dtype=pl.Int64)
    # One parent per internal batch of 10,000: batches running side by side never wait for
    # each other's row locks (Salesforce's advice: group child records by parent).
    account = n // 10_000 % ACCOUNTS
    return (
        pl.select(
            pl.concat_str(pl.lit("VOL-"), n.cast(pl.String).str.zfill(8)).alias("External_Id__c"),
            pl.concat_str(pl.lit("Opportunity "), n.cast(pl.String)).alias("Name"),
            pl.lit("Prospecting").alias("StageName"),
            pl.lit("2026-11-28").alias("CloseDate"),
            ((n % 100_000) / 100).alias("Amount"),
            pl.concat_str(pl.lit("ACC-"), account.cast(pl.String).str.zfill(6)).alias(
                "Account.External_Id__c"
            ),
        )
        .write_csv()
        .encode()
    )


@dataclass
class Checksum:
    """Records, Amount in cents, and a sum of per-record hashes: equal sums, equal records."""

    records: int = 0
    cents: int = 0
    hashes: int = 0

    def add(self, frame: pl.DataFrame) -> None:
        """Add records given as strings, as the CSV has them (null: empty)."""
        texts = frame.select(pl.all().cast(pl.String).fill_null(""))
        self.records += frame.height
        self.cents += int(
            texts.select(
                (pl.col("Amount").cast(pl.Float64) * 100).round().cast(pl.Int64).sum()
            ).item()
        )
        digest = pl.concat_str(pl.all(), separator="|").hash(seed=13) % 2**32
        self.hashes += int(texts.select(digest.sum()).item())


def _sqlite_checksum(database: Path) -> Checksum:
    checksum = Checksum()
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        cursor = conn.execute(SQLITE_SQL)
        while rows := cursor.fetchmany(PAGE_RECORDS):
            checksum.add(pl.DataFrame(rows, schema=COLUMNS, orient="row"))
    return checksum


def _memory(pid: int) -> dict[str, int]:
    """``RssAnon`` (the process's own memory) and ``VmHWM`` (its peak RSS), in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


class PeakMemory:
    """Samples a process's anonymous memory every 20 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = _memory(pid)["RssAnon"]
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _memory(self.pid)["RssAnon"])

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """A sandbox holding ``ROWS`` opportunities, in a process that has done nothing else yet."""
    data_dir = tmp_path_factory.mktemp("query-volume")
    with running_sandbox(data_dir, accounts=ACCOUNTS) as loader:
        bulk = BulkClient(loader.connection)
        jobs = []
        for start in range(0, ROWS, ROWS_PER_JOB):
            created = bulk.create(object="Opportunity", operation="insert").json()["id"]
            assert bulk.upload(created, _upload(start, min(ROWS_PER_JOB, ROWS - start))).ok
            assert bulk.patch(created, "UploadComplete").ok
            jobs.append(created)
        for job in jobs:
            info = bulk.wait(job, timeout=3_600)
            assert (info["state"], info["numberRecordsFailed"]) == ("JobComplete", 0), info
    with running_sandbox(data_dir, accounts=ACCOUNTS) as handle:
        yield handle


def test_bulk2_query_reads_every_record_back_in_bounded_memory(loaded: SandboxHandle) -> None:
    connection = loaded.connection
    sf = Salesforce(
        instance_url=connection.instance_url,
        session_id=connection.access_token.get_secret_value(),
        session=verified_session(connection.ca_cert),
    )
    read = Checksum()
    started = time.monotonic()
    with PeakMemory(loaded.process.pid) as memory:
        for page in sf.bulk2.Opportunity.query(SOQL, max_records=PAGE_RECORDS, wait=0.5):
            frame = pl.read_csv(page.encode(), infer_schema=False)
            assert frame.columns == COLUMNS
            read.add(frame)
    elapsed = time.monotonic() - started
    peak_rss = _memory(loaded.process.pid)["VmHWM"]
    print(
        f"\nbulk2 query read back {read.records:,} records in {elapsed:.1f} s; sandbox memory "
        f"{memory.start / 2**20:.0f} MiB at start, {memory.peak / 2**20:.0f} MiB at most "
        f"(RssAnon), peak RSS {peak_rss / 2**20:.0f} MiB (with the mapped database)"
    )
    assert read.records == ROWS
    assert read == _sqlite_checksum(loaded.data_dir / "sandbox.db")
    assert memory.peak - memory.start < MEMORY_GROWTH_LIMIT


def test_an_aborted_job_stays_aborted_and_has_no_results(loaded: SandboxHandle) -> None:
    bulk = BulkClient(loaded.connection)
    # Two jobs keep both query workers busy, so the third is still queued when aborted.
    busy = [bulk.create_query(operation="query", query=SOQL).json()["id"] for _ in range(2)]
    queued = bulk.create_query(operation="query", query=SOQL).json()["id"]
    aborted = bulk.session.patch(f"{bulk.base}/jobs/query/{queued}", json={"state": "Aborted"})
    assert aborted.status_code == 200, aborted.text
    assert aborted.json()["state"] == "Aborted" and "jobType" not in aborted.json()
    for job in busy:
        assert bulk.wait(job, timeout=3_600, kind="query")["state"] == "JobComplete"
    assert bulk.info(queued, "query")["state"] == "Aborted"
    results = bulk.query_results(queued)
    # The answer documented for API 47.0 (query_get_job_results, Winter '20).
    assert (results.status_code, results.json()) == (
        412,
        [
            {
                "errorCode": "JOB_NOT_COMPLETE",
                "message": "can only download query results of successfully completed bulk "
                "job with status: JOB_COMPLETE. Current status: ABORTED",
            }
        ],
    )
    assert bulk.session.delete(f"{bulk.base}/jobs/query/{queued}").status_code == 204
