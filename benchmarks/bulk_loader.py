"""Measure the Bulk loader end to end: a generated drop, staged, loaded into a fresh local sandbox.

    uv run python benchmarks/bulk_loader.py --rows 200000 --partitions 1 --jobs-in-flight 4

Generates and stages a drop (not timed), starts an unthrottled sandbox, then loads the first
``--partitions`` partitions concurrently (one loader each, as the Dagster runs would) and reports
rows/second over the load, per partition and in total, with API calls and the client's CPU time.
"""

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.measure import cpu_seconds_self
from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.drops.staging import stage_drop
from sync_assets.partition_load import PartitionLoader
from sync_assets.salesforce.connection import SalesforceConnection, SalesforceCredentials
from sync_assets.salesforce.loader import BulkLoader, LoaderSettings, LoadResult
from sync_assets.salesforce.planning import PlanLimits
from sync_assets.sandbox.runner import running_sandbox
from sync_assets.storage import StateStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the generated drop")
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=1, help="partitions loaded at once")
    parser.add_argument("--jobs-in-flight", type=int, default=4, help="per partition")
    parser.add_argument("--job-records", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=10, help="sandbox processing slots")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    landing, state = StateStore(work / "landing"), StateStore(work / "state")
    generate_drop(landing, GenerateOptions(drop_id="bench", rows=args.rows, accounts=args.accounts))
    staged = stage_drop(landing, state, "bench")
    partitions = sorted(staged)[: args.partitions]
    to_send = sum(staged[key].counts.to_send for key in partitions)
    print(f"{args.rows:,} rows generated; {to_send:,} to send in partitions {partitions}")

    with running_sandbox(work / "sandbox", accounts=args.accounts, slots=args.slots):
        connection = SalesforceConnection(SalesforceCredentials.from_sandbox(work / "sandbox"))
        settings = LoaderSettings(
            plan=PlanLimits(max_records=args.job_records), jobs_in_flight=args.jobs_in_flight
        )
        cpu_before = cpu_seconds_self()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(partitions)) as pool:
            results: list[LoadResult] = list(
                pool.map(
                    lambda key: PartitionLoader(
                        BulkLoader(connection, settings), state
                    ).load_staged("bench", key),
                    partitions,
                )
            )
        elapsed = time.monotonic() - started
        cpu = cpu_seconds_self() - cpu_before

    for result in results:
        print(
            f"partition {result.partition}: {result.sent:,} sent, {result.succeeded:,} ok, "
            f"{result.failed:,} failed, {len(result.job_ids)} jobs, {result.api_calls} API calls, "
            f"{result.duration_seconds:.1f} s, {result.records_per_second:,.0f} rows/s"
        )
    print(
        f"total: {to_send:,} rows in {elapsed:.1f} s = {to_send / elapsed:,.0f} rows/s; "
        f"client CPU {cpu:.1f} s (the sandbox shares the machine)"
    )


if __name__ == "__main__":
    main()
