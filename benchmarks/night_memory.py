"""Scenario 11, a whole demo night's memory (issue 17): every process of `sync-assets demo --rows N`.

The command runs as a user runs it, from a fresh directory with no org configured: it generates
the drop, starts the local sandbox, stages and loads all ten partitions through its fork server's
run workers, and checks. Every process of its tree is sampled; each kind's peak is held against
the ceiling a pod of docs/DEPLOYMENT.md must fit.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from pydantic import BaseModel, Field

from benchmarks.measure import TreeSampler, median
from benchmarks.scenarios import Bench
from sync_assets.drops.reader import newest_complete_drop
from sync_assets.drops.staging import load_staged
from sync_assets.state.layout import PARTITION_KEYS, ledger_path
from sync_assets.storage import StateStore

CEILING_MB = 2048.0
"""Every process of a night, the sandbox included, stays at or under 2 GB (issue 17)."""
SAMPLE_SECONDS = 0.5
KINDS = ["command", "sandbox", "fork server", "run worker"]
_KIND_OF_ROLE = {"parent": "command"}


class NightMemoryScale(BaseModel):
    rows: int = Field(description="`sync-assets demo --rows`.")


NIGHT_MEMORY_SCALES = {
    "smoke": NightMemoryScale(rows=20_000),
    "full": NightMemoryScale(rows=20_000_000),
}


class KindPeak(BaseModel):
    kind: str
    processes: int
    peak_rss_mb: float = Field(description="The largest peak of one process of this kind.")
    median_peak_rss_mb: float


class NightMemoryFigures(BaseModel):
    rows: int
    exit_code: int = Field(description="The demo's verdict: 0 = every run and check passed.")
    seconds: float
    source: int
    rejected: int
    ledger_rows: int = Field(description="Rows Salesforce confirmed, summed over the ledgers.")
    kinds: list[KindPeak]
    ceiling_mb: float = CEILING_MB

    @property
    def largest(self) -> KindPeak:
        return max(self.kinds, key=lambda kind: kind.peak_rss_mb)


def _demo_env(root: Path) -> dict[str, str]:
    """This environment without any org or sync configuration, every directory under `root`."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SALESFORCE_", "SYNC_", "DAGSTER_HOME"))
    }
    return kept | {
        "SYNC_LANDING_DIR": str(root / "landing"),
        "SYNC_STATE_DIR": str(root / "state"),
        "SYNC_SANDBOX_DIR": str(root / "sandbox"),
        "DAGSTER_HOME": str(root / "dagster_home"),
    }


def _kinds(sampler: TreeSampler) -> list[KindPeak]:
    peaks: dict[str, list[float]] = {}
    for process in sampler.peaks():
        kind = _KIND_OF_ROLE.get(process.role, process.role)
        peaks.setdefault(kind, []).append(process.peak_rss_mb)
    ordered = [kind for kind in KINDS if kind in peaks] + sorted(set(peaks) - set(KINDS))
    return [
        KindPeak(
            kind=kind,
            processes=len(peaks[kind]),
            peak_rss_mb=max(peaks[kind]),
            median_peak_rss_mb=median(peaks[kind]),
        )
        for kind in ordered
    ]


def _counts(root: Path) -> dict[str, int]:
    """Source and rejected rows as staged, and the rows the ledgers hold, over all partitions."""
    drop_id = newest_complete_drop(StateStore(root / "landing"))
    state = StateStore(root / "state")
    counts = {"source": 0, "rejected": 0, "ledger_rows": 0}
    for partition in PARTITION_KEYS:
        staged = load_staged(state, drop_id, partition) if drop_id else None
        if staged is not None:
            counts["source"] += staged.counts.source
            counts["rejected"] += staged.counts.rejected
        ledger = root / "state" / ledger_path(partition)
        if ledger.exists():
            counts["ledger_rows"] += pl.scan_parquet(ledger).select(pl.len()).collect().item()
    return counts


def measure_night_memory(bench: Bench, rows: int | None = None) -> NightMemoryFigures:
    """The night of `rows` rows (default: the scale's)."""
    scale = NIGHT_MEMORY_SCALES[bench.scale.name]
    if rows is not None:
        scale = NightMemoryScale(rows=rows)
    root = bench.work / "night_memory"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    command = [
        str(Path(sys.executable).with_name("sync-assets")),
        "demo",
        "--rows",
        str(scale.rows),
    ]
    started = time.perf_counter()
    with (root / "demo.log").open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=_demo_env(root), cwd=root
        )
        with TreeSampler(process.pid, interval=SAMPLE_SECONDS) as sampler:
            code = process.wait()
    seconds = time.perf_counter() - started
    if code not in (0, 3):
        tail = (root / "demo.log").read_text(errors="replace")[-4000:]
        raise RuntimeError(f"sync-assets demo --rows {scale.rows} failed (exit {code}):\n{tail}")
    return NightMemoryFigures(
        rows=scale.rows, exit_code=code, seconds=seconds, kinds=_kinds(sampler), **_counts(root)
    )
