"""Measure the sandbox's ingest rate: N generated opportunities upserted in K concurrent Bulk jobs.

    uv run python benchmarks/sandbox_ingest.py --rows 1000000 --jobs 10

Starts a fresh sandbox (unthrottled, default slots) in a temporary data dir, uploads the jobs in
parallel through a verified HTTPS session, and reports records/second from the first upload to
the last JobComplete, and the sandbox's CPU time per record (the figure that does not depend
on what else the machine is running).
"""

import argparse
import csv
import io
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import running_sandbox

STAGES = ["Prospecting", "Qualification", "Needs Analysis", "Closed Won", "Closed Lost"]
HEADER = [
    "External_Id__c",
    "Account.External_Id__c",
    "Name",
    "StageName",
    "CloseDate",
    "Amount",
    "Probability",
    "LeadSource",
    "Type",
    "NextStep",
    "Description",
    "Sync_Partition__c",
]


def job_csv(first: int, count: int, accounts: int) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for n in range(first, first + count):
        writer.writerow(
            [
                f"OPP-{n:09d}",
                f"ACC-{(n // 50) % accounts:06d}",
                f"Opportunity {n}",
                STAGES[n % len(STAGES)],
                f"2026-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
                f"{(n % 100000) * 1.25:.2f}",
                "" if n % 3 else "40",
                "Web",
                "New Customer",
                "Call back",
                f'Line one, with "quotes"\nline two {n}' if n % 10 == 0 else f"Plain {n}",
                str(n % 10),
            ]
        )
    return buffer.getvalue().encode()


def run_job(session, base: str, data: bytes) -> tuple[str, float]:
    job = session.post(
        f"{base}/jobs/ingest",
        json={
            "object": "Opportunity",
            "operation": "upsert",
            "externalIdFieldName": "External_Id__c",
        },
    ).json()
    put = session.put(
        f"{base}/jobs/ingest/{job['id']}/batches", data=data, headers={"Content-Type": "text/csv"}
    )
    assert put.status_code == 201, put.text
    session.patch(
        f"{base}/jobs/ingest/{job['id']}", json={"state": "UploadComplete"}
    ).raise_for_status()
    return job["id"], time.perf_counter()


def wait_all(session, base: str, job_ids: list[str]) -> dict[str, dict]:
    infos: dict[str, dict] = {}
    while len(infos) < len(job_ids):
        for job_id in job_ids:
            if job_id in infos:
                continue
            info = session.get(f"{base}/jobs/ingest/{job_id}").json()
            if info["state"] in ("JobComplete", "Failed", "Aborted"):
                infos[job_id] = info | {"seen_done": time.perf_counter()}
        time.sleep(0.05)
    return infos


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="round 2+ update existing records")
    args = parser.parse_args()
    per_job = args.rows // args.jobs
    payloads = [job_csv(j * per_job, per_job, args.accounts) for j in range(args.jobs)]
    megabytes = sum(len(p) for p in payloads) / 1e6
    print(f"{args.rows:,} rows in {args.jobs} jobs, {megabytes:.1f} MB of CSV")
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_sandbox(Path(tmp), accounts=args.accounts, slots=args.slots) as sandbox,
    ):
        conn = sandbox.connection
        session = verified_session(conn.ca_cert)
        session.headers["Authorization"] = f"Bearer {conn.access_token.get_secret_value()}"
        base = f"{conn.instance_url}/services/data/v59.0"
        server = psutil.Process(sandbox.process.pid)
        for round_number in range(1, args.rounds + 1):
            cpu_before = sum(server.cpu_times()[:2])
            started = time.perf_counter()
            with ThreadPoolExecutor(args.jobs) as pool:
                closed = list(pool.map(lambda p: run_job(session, base, p), payloads))
            uploaded = time.perf_counter()
            infos = wait_all(session, base, [job_id for job_id, _ in closed])
            finished = max(i["seen_done"] for i in infos.values())
            processed = sum(i["numberRecordsProcessed"] for i in infos.values())
            failed = sum(i["numberRecordsFailed"] for i in infos.values())
            states = {i["state"] for i in infos.values()}
            print(
                f"round {round_number} ({'insert' if round_number == 1 else 'update'}): "
                f"{processed:,} processed, {failed:,} failed, states {states}; "
                f"upload {uploaded - started:.1f} s, processing after last close "
                f"{finished - uploaded:.1f} s; end to end {processed / (finished - started):,.0f} records/s"
            )
            cpu = sum(server.cpu_times()[:2]) - cpu_before
            print(
                f"  sandbox CPU {cpu:.1f} s = {processed / cpu:,.0f} records per CPU-second "
                f"(machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
            )
            count = session.get(
                f"{base}/query", params={"q": "SELECT COUNT() FROM Opportunity"}
            ).json()
            print(f"  SELECT COUNT() FROM Opportunity = {count['totalSize']:,}")


if __name__ == "__main__":
    main()
