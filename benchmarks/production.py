"""Scenario 8, a production org: automation that takes minutes per batch, another integration on the
same Accounts, and the API calls a night costs (issue 15)."""

import contextlib
import csv
import datetime as dt
import io
import threading
from collections.abc import Collection
from pathlib import Path

import numpy as np
import requests
import yaml
from pydantic import BaseModel, Field

from benchmarks.fixtures import BASE_DROP, DropSpec, Night, fresh_sandbox, land
from benchmarks.measure import median
from benchmarks.scenarios import Bench, NightFigures, measure_night, sandbox_stats
from sync_assets.salesforce.limits import CALLS_PER_JOB, POLL_CALLS_PER_JOB
from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import SandboxHandle

API_VERSION = "66.0"


class ProductionScale(BaseModel):
    rows: int
    apex_ms_per_record: float = Field(description="Apex time per record: 10,000 take minutes.")
    slots: int = 10
    lock_timeout: float = Field(description="Seconds a record waits for a locked Account.")
    other_job_records: int = Field(description="Records per job of the other integration.")


PRODUCTION_SCALES = {
    "smoke": ProductionScale(
        rows=20_000, apex_ms_per_record=1.0, lock_timeout=0.5, other_job_records=400
    ),
    # A 10,000-record batch takes 120 s of Apex (a heavy rollup/flow org), 300,000 rows 6 minutes
    # of the org's ten slots at the least.
    # The other integration's jobs of 200 records hold their Accounts 2.4 s; Salesforce waits
    # about 10 s for a row lock before UNABLE_TO_LOCK_ROW.
    "full": ProductionScale(
        rows=300_000, apex_ms_per_record=12.0, lock_timeout=10.0, other_job_records=200
    ),
}


class ApiCallFigures(BaseModel):
    """What one night cost in API requests, from our metadata and from the org's own counter."""

    label: str
    sent: int
    jobs: int
    api_calls_load: int = Field(
        description="Calls of the loads (create, upload, close, polls, results)."
    )
    api_calls_runs: int = Field(description="Every call of the partition runs, checks included.")
    poll_calls: int
    calls_seen_by_org: int = Field(description="Requests named client=sync_assets (sandbox count).")
    estimate: int = Field(description="What the pre-flight expected for these jobs.")
    median_job_seconds: float = Field(description="How long the org took per job (automation).")

    @property
    def calls_per_1000_rows(self) -> float:
        return 1_000 * self.calls_seen_by_org / self.sent if self.sent else 0.0

    @property
    def polls_per_job(self) -> float:
        return self.poll_calls / self.jobs if self.jobs else 0.0


class OrgBoundFigures(BaseModel):
    label: str
    night: NightFigures
    api: ApiCallFigures
    minimum_seconds: float = Field(description="All records the org processed / its capacity.")
    org_span_seconds: float | None = Field(
        default=None,
        description="From our first job's creation to the org's last finish of one of our jobs: "
        "the org's own packing of the work, before we notice it (None: measured before it was).",
    )
    other_records: int = Field(description="Records the other integration had processed meanwhile.")
    utilisation: float
    lock_failures: int
    resent: int
    lowest_jobs_in_flight: int
    peak_jobs_in_flight: int


class ProductionFigures(BaseModel):
    scale: ProductionScale
    quick: ApiCallFigures
    automation: OrgBoundFigures
    automation_next: OrgBoundFigures | None = Field(
        default=None,
        description="The automation-heavy org's next night, every row changed: the partitions "
        "know the org's pace from the first (None: measured before it was).",
    )
    contention: OrgBoundFigures


def _org_file(folder: Path, scale: ProductionScale, wrapped: bool) -> Path:
    automation: dict[str, object] = {"apex_ms_per_record": scale.apex_ms_per_record}
    if wrapped:
        automation["lock_errors"] = "wrapped"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "org.yaml"
    path.write_text(yaml.safe_dump({"opportunity": {"automation": automation}}))
    return path


def _api_figures(
    label: str, night: NightFigures, seen: int, job_seconds: list[float]
) -> ApiCallFigures:
    runs = night.partition_runs
    jobs = sum(run.jobs for run in runs)
    return ApiCallFigures(
        label=label,
        sent=night.total("sent"),
        jobs=jobs,
        api_calls_load=sum(run.api_calls for run in runs),
        api_calls_runs=sum(run.api_calls_of_the_run for run in runs),
        poll_calls=sum(run.poll_calls for run in runs),
        calls_seen_by_org=seen,
        estimate=jobs * (CALLS_PER_JOB + POLL_CALLS_PER_JOB) + 2 * len(runs),
        median_job_seconds=median(job_seconds) if job_seconds else 0.0,
    )


class OrgJobTimes(BaseModel):
    """What the org reports of our completed jobs."""

    seconds: list[float] = Field(description="totalProcessingTime per job.")
    span_seconds: float = Field(description="First createdDate to last systemModstamp.")


def _timestamp(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def _session(sandbox: SandboxHandle) -> requests.Session:
    connection = sandbox.connection
    session = verified_session(connection.ca_cert)
    session.headers["Authorization"] = f"Bearer {connection.access_token.get_secret_value()}"
    return session


def _sandbox_jobs(sandbox: SandboxHandle) -> dict[str, dict[str, str]]:
    """Every ingest job the sandbox holds, by id (its own stats, not an API call)."""
    url = f"{sandbox.connection.instance_url}/__sandbox/stats"
    return _session(sandbox).get(url, timeout=60).json()["jobs"]


def _job_times(sandbox: SandboxHandle, others: frozenset[str] = frozenset()) -> OrgJobTimes:
    """Our completed jobs as the org reports them (job info); ``others``' jobs left out."""
    connection = sandbox.connection
    session = _session(sandbox)
    base = f"{connection.instance_url}/services/data/v{API_VERSION}/jobs/ingest"
    seconds: list[float] = []
    created: list[float] = []
    finished: list[float] = []
    for job_id, job in _sandbox_jobs(sandbox).items():
        if (
            job["state"] == "JobComplete"
            and job["object"] == "Opportunity"
            and job_id not in others
        ):
            info = session.get(f"{base}/{job_id}", timeout=60).json()
            seconds.append(info["totalProcessingTime"] / 1_000)
            created.append(_timestamp(info["createdDate"]))
            finished.append(_timestamp(info["systemModstamp"]))
    span = max(finished) - min(created) if created else 0.0
    return OrgJobTimes(seconds=seconds, span_seconds=span)


class OtherIntegration:
    """Another integration writing its own Opportunities on our Accounts, job after job."""

    def __init__(self, sandbox: SandboxHandle, accounts: int, records: int) -> None:
        connection = sandbox.connection
        self._session = _session(sandbox)
        self._base = f"{connection.instance_url}/services/data/v{API_VERSION}/jobs/ingest"
        self._accounts = accounts
        self._records = records
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.jobs: list[str] = []

    def __enter__(self) -> "OtherIntegration":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _csv(self, number: int) -> bytes:
        rng = np.random.default_rng(number)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            ["External_Id__c", "Account.External_Id__c", "Name", "StageName", "CloseDate"]
        )
        for n, account in enumerate(rng.integers(0, self._accounts, self._records)):
            writer.writerow(
                [f"OTHER-{number}-{n}", f"ACC-{account:06d}", "Other", "Prospecting", "2026-12-01"]
            )
        return buffer.getvalue().encode()

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            job = self._session.post(
                self._base,
                json={
                    "object": "Opportunity",
                    "operation": "upsert",
                    "externalIdFieldName": "External_Id__c",
                    "lineEnding": "LF",
                },
                timeout=60,
            ).json()
            self._session.put(
                f"{self._base}/{job['id']}/batches",
                data=self._csv(number),
                headers={"Content-Type": "text/csv"},
                timeout=60,
            )
            self._session.patch(
                f"{self._base}/{job['id']}", json={"state": "UploadComplete"}, timeout=60
            )
            self.jobs.append(job["id"])
            number += 1
            while not self._stop.wait(1.0):
                state = self._session.get(f"{self._base}/{job['id']}", timeout=60).json()["state"]
                if state in ("JobComplete", "Failed", "Aborted"):
                    break


def _org_bound(
    bench: Bench, scale: ProductionScale, label: str, contended: bool
) -> tuple[OrgBoundFigures, OrgBoundFigures | None]:
    """The org's first night; without the other integration, also its next night, every row
    changed, when each partition's polls are timed by the pace it measured the night before."""
    name = "production-contention" if contended else "production-automation"
    night = bench.night(name)
    spec = DropSpec(rows=scale.rows, accounts=bench.scale.accounts)
    land(bench.cache.landing(spec), BASE_DROP, night.landing, name)
    org = _org_file(bench.work / name, scale, wrapped=contended)
    with fresh_sandbox(
        bench.sandbox_dir(name),
        accounts=bench.scale.accounts,
        slots=scale.slots,
        lock_timeout=scale.lock_timeout,
        org=org,
    ) as sandbox:
        if contended:
            other = OtherIntegration(sandbox, bench.scale.accounts, scale.other_job_records)
            contended_night = _org_night(
                bench, scale, label, night, sandbox, name, during=other, others=other.jobs
            )
            return contended_night, None
        first = _org_night(bench, scale, label, night, sandbox, name)
        before_next = frozenset(_sandbox_jobs(sandbox))
        next_id = land(
            bench.cache.landing(spec),
            bench.cache.changed(spec, 1.0),
            night.landing,
            f"{name}-next",
        )
        following = _org_night(
            bench, scale, f"{label}, next night", night, sandbox, next_id, others=before_next
        )
    return first, following


def _org_night(
    bench: Bench,
    scale: ProductionScale,
    label: str,
    night: Night,
    sandbox: SandboxHandle,
    drop_id: str,
    *,
    during: contextlib.AbstractContextManager[object] | None = None,
    others: Collection[str] = (),
) -> OrgBoundFigures:
    """One night into the org, with ``during`` running meanwhile (another integration).

    ``others``: jobs that are not this night's, read once ``during`` has ended.
    """
    before = sandbox_stats(sandbox)
    with during or contextlib.nullcontext():
        figures = measure_night(
            night, sandbox, drop_id, bench.scale.partitions, bench.scale.parallel
        )
    after = sandbox_stats(sandbox)
    times = _job_times(sandbox, frozenset(others))
    processed = after["records_processed"] - before["records_processed"]
    ours = figures.total("sent") + figures.total("retried")
    seen = after.get("client:sync_assets", 0) - before.get("client:sync_assets", 0)
    minimum = processed * scale.apex_ms_per_record / 1_000 / scale.slots
    runs = figures.partition_runs
    return OrgBoundFigures(
        label=label,
        night=figures,
        api=_api_figures(label, figures, seen, times.seconds),
        minimum_seconds=minimum,
        org_span_seconds=times.span_seconds,
        other_records=max(0, processed - ours),
        utilisation=minimum / figures.seconds,
        lock_failures=after["lock_failures"] - before["lock_failures"],
        resent=figures.total("retried"),
        lowest_jobs_in_flight=min(run.lowest_jobs_in_flight for run in runs),
        peak_jobs_in_flight=max(run.peak_jobs_in_flight for run in runs),
    )


def _quick_night(bench: Bench, scale: ProductionScale) -> ApiCallFigures:
    """The same rows into an org without automation: the polls a job costs when jobs are quick."""
    night = bench.night("production-quick")
    land(
        bench.cache.landing(DropSpec(rows=scale.rows, accounts=bench.scale.accounts)),
        BASE_DROP,
        night.landing,
        "quick",
    )
    with fresh_sandbox(
        bench.sandbox_dir("production-quick"), accounts=bench.scale.accounts
    ) as sandbox:
        before = sandbox_stats(sandbox)
        figures = measure_night(
            night, sandbox, "quick", bench.scale.partitions, bench.scale.parallel
        )
        after = sandbox_stats(sandbox)
        times = _job_times(sandbox)
    seen = after.get("client:sync_assets", 0) - before.get("client:sync_assets", 0)
    return _api_figures("no automation", figures, seen, times.seconds)


def measure_production_org(bench: Bench) -> ProductionFigures:
    scale = PRODUCTION_SCALES[bench.scale.name]
    automation, automation_next = _org_bound(bench, scale, "automation-heavy org", contended=False)
    contention, _ = _org_bound(bench, scale, "automation + another integration", contended=True)
    return ProductionFigures(
        scale=scale,
        quick=_quick_night(bench, scale),
        automation=automation,
        automation_next=automation_next,
        contention=contention,
    )
