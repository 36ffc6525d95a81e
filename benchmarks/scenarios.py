"""Benchmark scenarios 1–7 (8 to 10 have modules of their own); each returns its figures as a pydantic model."""

import math
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import requests
from pydantic import BaseModel, Field

from benchmarks.fixtures import (
    BASE_DROP,
    DropCache,
    DropSpec,
    Night,
    fresh_sandbox,
    in_drop_order,
    land,
    stage_everything,
    staged_rows,
    write_peer_csv,
)
from benchmarks.measure import Measured, SandboxCpu, median, run_worker
from benchmarks.workers import FloorArguments, NightArguments, PeerArguments
from sync_assets.partition_load import PartitionLoader
from sync_assets.salesforce.connection import SalesforceConnection, SalesforceCredentials
from sync_assets.salesforce.loader import BulkLoader, LoaderSettings, LoadResult
from sync_assets.salesforce.planning import PlanLimits
from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import SandboxHandle
from sync_assets.staging_ahead import HeadStart
from sync_assets.state.layout import PARTITION_KEYS
from sync_assets.storage import StateStore

SEED_BATCH_RECORDS = 20_000
SEED_INTERVAL_MINUTES = 5


class Scale(BaseModel):
    """Sizes and sandbox settings of one benchmark run."""

    name: Literal["smoke", "full"]
    rows: int = Field(description="Rows of the drop most scenarios sync.")
    accounts: int
    repeats: int = Field(description="Runs of each short measurement; the median is reported.")
    tiny_rows: int = Field(description="Rows of the drop whose night measures the fixed cost.")
    partitions: list[str] = Field(default=PARTITION_KEYS, description="Partitions of a night.")
    uncompiled_night: bool = Field(
        default=True, description="Also measure a tiny night without a bytecode cache (slow)."
    )
    parallel: int = 10
    changed_fraction: float = 0.05
    bound_slots: int
    bound_rate: float = Field(description="Records/second per sandbox slot when Salesforce-bound.")
    lock_rows: int
    lock_rate: float
    lock_timeout: float
    scale_rows: list[int]
    scale_partition: str = "0"
    flat_from_rows: int = Field(description="Memory is compared between this size and the largest.")


SCALES = {
    "smoke": Scale(
        name="smoke",
        rows=20_000,
        accounts=2_000,
        repeats=1,
        tiny_rows=100,
        partitions=["0", "1", "2"],
        uncompiled_night=False,
        bound_slots=10,
        bound_rate=1_000,
        lock_rows=20_000,
        lock_rate=5_000,
        lock_timeout=0.2,
        scale_rows=[5_000, 20_000, 50_000],
        flat_from_rows=20_000,
    ),
    "full": Scale(
        name="full",
        rows=2_000_000,
        accounts=20_000,
        repeats=3,
        tiny_rows=100,
        bound_slots=10,
        bound_rate=1_000,
        lock_rows=500_000,
        lock_rate=1_000,
        lock_timeout=5.0,
        scale_rows=[200_000, 2_000_000, 20_000_000],
        flat_from_rows=2_000_000,
    ),
}


class Bench:
    """One benchmark run: its scale, its scratch space and the drop cache."""

    def __init__(self, scale: Scale, work: Path, cache: DropCache) -> None:
        self.scale = scale
        self.work = work
        self.cache = cache

    def spec(self, rows: int) -> DropSpec:
        return DropSpec(rows=rows, accounts=self.scale.accounts)

    @property
    def base(self) -> DropSpec:
        return self.spec(self.scale.rows)

    def night(self, name: str) -> Night:
        root = self.work / name
        shutil.rmtree(root, ignore_errors=True)
        return Night(root=root)

    def sandbox_dir(self, name: str) -> Path:
        return self.work / "sandboxes" / name


# ---- shared figures ---------------------------------------------------------------------------


class RunFigures(BaseModel):
    partition: str
    success: bool
    error: str | None
    run_seconds: float
    staging_seconds: float
    loading_seconds: float
    source: int
    to_send: int
    unchanged: int
    sent: int
    failed: int
    retried: int
    jobs: int
    checks_failed: list[str]
    # Measured since issue 15 (0 in figures saved before it).
    api_calls: int = 0
    api_calls_of_the_run: int = 0
    poll_calls: int = 0
    peak_jobs_in_flight: int = 0
    lowest_jobs_in_flight: int = 0

    @property
    def outside_assets_seconds(self) -> float:
        """Run time spent outside staging and loading: Dagster, checks, ledger bookkeeping."""
        return self.run_seconds - self.staging_seconds - self.loading_seconds


class NightFigures(BaseModel):
    """One measured `run_night` in a fresh process (what `sync-assets sync` does)."""

    drop_id: str
    ok: bool
    seconds: float
    cpu_seconds: float = Field(description="Our processes: parent, fork server, run workers.")
    sandbox_cpu_seconds: float
    runs: list[RunFigures]
    peak_rss_mb_run_worker: float = Field(description="Largest peak RSS of one run worker.")
    peak_rss_mb_run_worker_median: float
    peak_rss_mb_parent: float
    peak_rss_mb_fork_server: float
    peak_total_rss_mb: float
    # Measured since the command stages the drop ahead (`staging_ahead`; none in older figures).
    head_start: HeadStart | None = None

    def staging_seconds(self, run: RunFigures) -> float:
        """The run's staging: the command's head start if that staged its partition."""
        if self.head_start is not None and run.partition in self.head_start.partitions:
            return self.head_start.seconds
        return run.staging_seconds

    @property
    def partition_runs(self) -> list[RunFigures]:
        return [run for run in self.runs if run.partition != "summary"]

    def total(self, field: str) -> int:
        return sum(getattr(run, field) for run in self.partition_runs)

    @property
    def run_overhead_seconds(self) -> float:
        return median(run.outside_assets_seconds for run in self.partition_runs)


def measure_night(
    night: Night,
    sandbox: SandboxHandle,
    drop_id: str,
    partitions: list[str] | None = None,
    parallel: int = 10,
    bytecode_cache: bool = True,
    instance_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> NightFigures:
    """``instance_url`` and ``extra_env``: see `Night.env`."""
    arguments = NightArguments(
        drop_id=drop_id, partitions=partitions or PARTITION_KEYS, parallel=parallel
    )
    env = night.env(sandbox, bytecode_cache, instance_url, extra_env)
    with SandboxCpu(sandbox.process.pid) as sandbox_cpu:
        measured = run_worker("night", arguments, env=env)
    runs = [RunFigures.model_validate(run) for run in measured.result["runs"]]
    broken = [run for run in runs if not run.success]
    if broken:
        raise RuntimeError(
            f"night {drop_id}: partition {broken[0].partition} failed: {broken[0].error}"
        )
    workers = measured.peak_rss_each("run worker")
    return NightFigures(
        drop_id=drop_id,
        ok=measured.result["ok"],
        seconds=measured.result["seconds"],
        cpu_seconds=measured.result["cpu_seconds"],
        sandbox_cpu_seconds=sandbox_cpu.seconds,
        runs=runs,
        peak_rss_mb_run_worker=max(workers, default=0.0),
        peak_rss_mb_run_worker_median=median(workers) if workers else 0.0,
        peak_rss_mb_parent=measured.peak_rss_mb("parent"),
        peak_rss_mb_fork_server=measured.peak_rss_mb("fork server"),
        peak_total_rss_mb=measured.peak_total_rss_mb,
        head_start=measured.result.get("head_start"),
    )


# ---- 1. the floor -----------------------------------------------------------------------------


class FloorFigures(BaseModel):
    rows: int
    runs: list[dict[str, float]]
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    csv_mb: float


def measure_floor(bench: Bench) -> FloorFigures:
    landing = bench.cache.landing(bench.base)
    arguments = FloorArguments(landing=landing, drop_id=BASE_DROP)
    runs = [run_worker("floor", arguments).result for _ in range(bench.scale.repeats)]
    return FloorFigures(
        rows=int(runs[0]["rows"]),
        runs=runs,
        seconds=median(run["seconds"] for run in runs),
        cpu_seconds=median(run["cpu_seconds"] for run in runs),
        peak_rss_mb=median(run["peak_rss_mb"] for run in runs),
        csv_mb=runs[0]["csv_bytes"] / 1e6,
    )


# ---- 2 and 6. our sync, then the nights after -------------------------------------------------


class FixedCostFigures(BaseModel):
    rows: int
    nights: list[NightFigures]
    night_seconds: float
    night_cpu_seconds: float
    run_seconds: float = Field(description="Median duration of one partition run of a tiny drop.")
    uncompiled: NightFigures | None = Field(
        description="The same night with no bytecode cache: every process compiles from source."
    )


class SyncFigures(BaseModel):
    first: NightFigures
    fixed: FixedCostFigures


class FollowingNightsFigures(BaseModel):
    unchanged: list[NightFigures]
    changed: NightFigures
    changed_fraction: float

    @property
    def unchanged_seconds(self) -> float:
        return median(night.seconds for night in self.unchanged)


def measure_fixed_cost(bench: Bench) -> FixedCostFigures:
    """Nights of a tiny drop: what a night costs when there is next to nothing to do."""
    spec = bench.spec(bench.scale.tiny_rows)
    source = bench.cache.landing(spec)
    night = bench.night("fixed-cost")
    nights = []
    with fresh_sandbox(bench.sandbox_dir("fixed-cost"), accounts=bench.scale.accounts) as sandbox:
        for number in range(bench.scale.repeats):
            drop_id = land(source, BASE_DROP, night.landing, f"tiny-{number + 1}")
            nights.append(
                measure_night(night, sandbox, drop_id, bench.scale.partitions, bench.scale.parallel)
            )
        uncompiled = (
            measure_night(
                night,
                sandbox,
                land(source, BASE_DROP, night.landing, "tiny-uncompiled"),
                bench.scale.partitions,
                bench.scale.parallel,
                bytecode_cache=False,
            )
            if bench.scale.uncompiled_night
            else None
        )
    return FixedCostFigures(
        rows=spec.rows,
        nights=nights,
        night_seconds=median(n.seconds for n in nights),
        night_cpu_seconds=median(n.cpu_seconds for n in nights),
        run_seconds=median(run.run_seconds for n in nights for run in n.partition_runs),
        uncompiled=uncompiled,
    )


class SyncChainFigures(BaseModel):
    sync: SyncFigures
    following: FollowingNightsFigures


def measure_sync_and_following_nights(bench: Bench, peer_csv: Path) -> SyncChainFigures:
    """The first night of the base drop, unchanged nights, a changed night (one sandbox, one state).

    Also writes the first night's valid rows, in export order, as the peer's CSV.
    """
    source = bench.cache.landing(bench.base)
    changed_id = bench.cache.changed(bench.base, bench.scale.changed_fraction)
    night = bench.night("sync")
    parallel = bench.scale.parallel
    with fresh_sandbox(bench.sandbox_dir("sync"), accounts=bench.scale.accounts) as sandbox:
        first_id = land(source, BASE_DROP, night.landing, "night-1")
        first = measure_night(night, sandbox, first_id, bench.scale.partitions, parallel)
        write_peer_csv(
            in_drop_order(
                night.landing, first_id, staged_rows(night.state, first_id, bench.scale.partitions)
            ),
            peer_csv,
        )
        unchanged = [
            measure_night(
                night,
                sandbox,
                land(source, BASE_DROP, night.landing, f"night-2-unchanged-{number + 1}"),
                bench.scale.partitions,
                parallel,
            )
            for number in range(bench.scale.repeats)
        ]
        changed = measure_night(
            night,
            sandbox,
            land(source, changed_id, night.landing, "night-3-changed"),
            bench.scale.partitions,
            parallel,
        )
    fixed = measure_fixed_cost(bench)
    return SyncChainFigures(
        sync=SyncFigures(first=first, fixed=fixed),
        following=FollowingNightsFigures(
            unchanged=unchanged, changed=changed, changed_fraction=bench.scale.changed_fraction
        ),
    )


# ---- 3. the peer ------------------------------------------------------------------------------


class PeerRun(BaseModel):
    batch_size: int | None = Field(description="None: simple-salesforce's default.")
    error: str | None
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    sandbox_cpu_seconds: float
    jobs: int
    processed: int
    failed: int


class PeerFigures(BaseModel):
    rows: int
    csv_mb: float
    defaults: PeerRun
    sized: PeerRun | None = Field(
        description="Run again with batch_size set, when the defaults failed."
    )

    @property
    def completed(self) -> PeerRun:
        """The run that loaded every row (the sized one when the defaults failed)."""
        return self.sized if self.defaults.error and self.sized else self.defaults


# simple-salesforce cuts a file by an estimate that ignores CSV quoting; keep well under 100 MB.
_PEER_CHUNK_BYTES = 80_000_000


def peer_upsert(
    sandbox: SandboxHandle, csv_file: Path, batch_size: int | None, instance_url: str | None = None
) -> PeerRun:
    """The peer's upsert of ``csv_file`` in a fresh process, through ``instance_url`` if set."""
    arguments = PeerArguments(
        csv_file=csv_file,
        sandbox_dir=sandbox.data_dir,
        batch_size=batch_size,
        instance_url=instance_url,
    )
    with SandboxCpu(sandbox.process.pid) as sandbox_cpu:
        measured: Measured = run_worker("peer", arguments)
    result = measured.result
    return PeerRun(
        batch_size=batch_size,
        error=result["error"],
        seconds=result["seconds"],
        cpu_seconds=result["cpu_seconds"],
        peak_rss_mb=max(result["peak_rss_mb"], measured.peak_rss_mb("parent")),
        sandbox_cpu_seconds=sandbox_cpu.seconds,
        jobs=result["jobs"],
        processed=result["processed"],
        failed=result["failed"],
    )


def peer_batch_size(rows: int, csv_file: Path) -> int:
    """The batch size a user sets when the peer's defaults fail: about 80 MB of CSV per job."""
    return max(1, rows * _PEER_CHUNK_BYTES // csv_file.stat().st_size)


def _peer_run(bench: Bench, csv_file: Path, batch_size: int | None) -> PeerRun:
    name = "peer" if batch_size is None else "peer-sized"
    with fresh_sandbox(bench.sandbox_dir(name), accounts=bench.scale.accounts) as sandbox:
        return peer_upsert(sandbox, csv_file, batch_size)


def measure_peer(bench: Bench, csv_file: Path, rows: int) -> PeerFigures:
    """The peer with its defaults; if they fail, again with a batch size a user would then pick."""
    defaults = _peer_run(bench, csv_file, None)
    sized = None
    if defaults.error:
        sized = _peer_run(bench, csv_file, peer_batch_size(rows, csv_file))
    return PeerFigures(
        rows=rows, csv_mb=csv_file.stat().st_size / 1e6, defaults=defaults, sized=sized
    )


# ---- 4. Salesforce-bound ----------------------------------------------------------------------


class BoundFigures(BaseModel):
    slots: int
    rate: float
    night: NightFigures
    minimum_seconds: float
    utilisation: float
    seed_schedule_hours: float


def measure_salesforce_bound(bench: Bench) -> BoundFigures:
    scale = bench.scale
    night = bench.night("bound")
    land(bench.cache.landing(bench.base), BASE_DROP, night.landing, "bound")
    with fresh_sandbox(
        bench.sandbox_dir("bound"),
        accounts=scale.accounts,
        slots=scale.bound_slots,
        rate=scale.bound_rate,
    ) as sandbox:
        figures = measure_night(night, sandbox, "bound", scale.partitions, scale.parallel)
    sent = figures.total("sent")
    minimum = sent / (scale.bound_slots * scale.bound_rate)
    return BoundFigures(
        slots=scale.bound_slots,
        rate=scale.bound_rate,
        night=figures,
        minimum_seconds=minimum,
        utilisation=minimum / figures.seconds,
        seed_schedule_hours=seed_schedule_hours(sent),
    )


def seed_schedule_hours(rows: int) -> float:
    """The seed design's pace: one batch of 20,000 records every 5 minutes."""
    return math.ceil(rows / SEED_BATCH_RECORDS) * SEED_INTERVAL_MINUTES / 60


# ---- 5. locks ---------------------------------------------------------------------------------


class LockSchemeFigures(BaseModel):
    scheme: str
    seconds: float
    lock_failures: int = Field(description="UNABLE_TO_LOCK_ROW outcomes counted by the sandbox.")
    resent: int
    failed: int
    jobs: int
    sent: int


class LockFigures(BaseModel):
    rows: int
    slots: int
    rate: float
    lock_timeout: float
    ours: LockSchemeFigures
    offset: LockSchemeFigures


class SandboxCounters(BaseModel):
    """The sandbox's own counters (``/__sandbox/stats``), asked of it directly (no proxy)."""

    totals: dict[str, int]
    answer_bytes: int = Field(
        description="This answer's own body: the sandbox counts it in `response_body_bytes` "
        "after it read the totals, so the next answer's totals include it."
    )


def sandbox_session(sandbox: SandboxHandle) -> requests.Session:
    """A session with the sandbox's token, verifying its certificate (whichever address is asked)."""
    connection = sandbox.connection
    session = verified_session(connection.ca_cert)
    session.headers["Authorization"] = f"Bearer {connection.access_token.get_secret_value()}"
    return session


def sandbox_counters(sandbox: SandboxHandle) -> SandboxCounters:
    session = sandbox_session(sandbox)
    # Uncompressed, so the bytes the sandbox counted for this answer are the bytes received.
    response = session.get(
        f"{sandbox.connection.instance_url}/__sandbox/stats",
        headers={"Accept-Encoding": "identity"},
        timeout=60,
    )
    response.raise_for_status()
    return SandboxCounters(totals=response.json()["totals"], answer_bytes=len(response.content))


def sandbox_stats(sandbox: SandboxHandle) -> dict[str, int]:
    return sandbox_counters(sandbox).totals


def _load_side_by_side(
    sandbox: SandboxHandle,
    state: Path,
    drop_id: str,
    partitions: dict[str, pl.DataFrame],
    account_aligned: bool,
    scheme: str,
) -> LockSchemeFigures:
    """Load each partition's rows with its own loader, all at once, as separate runs would."""
    settings = LoaderSettings(plan=PlanLimits(account_aligned=account_aligned))

    def load(item: tuple[str, pl.DataFrame]) -> LoadResult:
        key, rows = item
        connection = SalesforceConnection(SalesforceCredentials.from_sandbox(sandbox.data_dir))
        return PartitionLoader(BulkLoader(connection, settings), StateStore(state)).load(
            rows, drop_id, key
        )

    before = sandbox_stats(sandbox)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(partitions)) as pool:
        results = list(pool.map(load, partitions.items()))
    seconds = time.perf_counter() - started
    after = sandbox_stats(sandbox)
    return LockSchemeFigures(
        scheme=scheme,
        seconds=seconds,
        lock_failures=after["lock_failures"] - before["lock_failures"],
        resent=sum(result.retried for result in results),
        failed=sum(result.failed for result in results),
        jobs=sum(len(result.job_ids) for result in results),
        sent=sum(result.sent for result in results),
    )


def measure_locks(bench: Bench) -> LockFigures:
    """Account-sharded partitions against offset ranges of the same staged rows, same sandbox model."""
    scale = bench.scale
    landing = bench.cache.landing(bench.spec(scale.lock_rows))
    ours_state = bench.work / "locks" / "ours"
    offset_state = bench.work / "locks" / "offset"
    shutil.rmtree(bench.work / "locks", ignore_errors=True)
    stage_everything(landing, ours_state, BASE_DROP)
    rows = staged_rows(ours_state, BASE_DROP)
    sharded = {key: rows.filter(pl.col("Sync_Partition__c") == key) for key in PARTITION_KEYS}
    in_file_order = in_drop_order(landing, BASE_DROP, rows)
    bounds = np.linspace(0, in_file_order.height, len(PARTITION_KEYS) + 1).astype(int)
    offsets = {
        str(number): in_file_order.slice(int(start), int(end - start))
        for number, (start, end) in enumerate(pairwise(bounds))
    }
    options = {
        "accounts": scale.accounts,
        "slots": scale.bound_slots,
        "rate": scale.lock_rate,
        "lock_timeout": scale.lock_timeout,
    }
    with fresh_sandbox(bench.sandbox_dir("locks-ours"), **options) as sandbox:
        ours = _load_side_by_side(
            sandbox, ours_state, BASE_DROP, sharded, True, "account-sharded (ours)"
        )
    with fresh_sandbox(bench.sandbox_dir("locks-offset"), **options) as sandbox:
        offset = _load_side_by_side(
            sandbox, offset_state, BASE_DROP, offsets, False, "offset ranges (seed)"
        )
    return LockFigures(
        rows=rows.height,
        slots=scale.bound_slots,
        rate=scale.lock_rate,
        lock_timeout=scale.lock_timeout,
        ours=ours,
        offset=offset,
    )


# ---- 7. scale ---------------------------------------------------------------------------------


class ScalePoint(BaseModel):
    drop_rows: int
    partition: str
    partition_rows: int
    sent: int
    run_seconds: float
    staging_seconds: float
    loading_seconds: float
    peak_rss_mb: float
    sandbox_cpu_seconds: float


class ScaleFigures(BaseModel):
    points: list[ScalePoint]


def measure_scale(bench: Bench) -> ScaleFigures:
    """One partition's night (stage + load into an unthrottled sandbox) per drop size."""
    points = []
    key = bench.scale.scale_partition
    for rows in bench.scale.scale_rows:
        source = bench.cache.landing(bench.spec(rows))
        night = bench.night(f"scale-{rows}")
        land(source, BASE_DROP, night.landing, "scale")
        with fresh_sandbox(
            bench.sandbox_dir(f"scale-{rows}"), accounts=bench.scale.accounts
        ) as sandbox:
            figures = measure_night(night, sandbox, "scale", partitions=[key], parallel=1)
        shutil.rmtree(night.root, ignore_errors=True)
        shutil.rmtree(bench.sandbox_dir(f"scale-{rows}"), ignore_errors=True)
        run = figures.partition_runs[0]
        points.append(
            ScalePoint(
                drop_rows=rows,
                partition=key,
                partition_rows=run.source,
                sent=run.sent,
                run_seconds=run.run_seconds,
                staging_seconds=figures.staging_seconds(run),
                loading_seconds=run.loading_seconds,
                # The command stages a drop one pass covers (`staging_ahead`), the run the rest.
                peak_rss_mb=max(figures.peak_rss_mb_run_worker, figures.peak_rss_mb_parent),
                sandbox_cpu_seconds=figures.sandbox_cpu_seconds,
            )
        )
    return ScaleFigures(points=points)
