"""Measuring tools shared by the benchmarks: clocks, process-tree sampling, measured subprocesses."""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, Field

SAMPLE_SECONDS = 0.1
MB = 1024 * 1024


def cpu_seconds_self() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb_self() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def descendants_cpu_seconds() -> float:
    """CPU seconds of this process and every descendant, living or reaped.

    Reaped children count through ``RUSAGE_CHILDREN`` (ours) or their parent's ``children_*``
    times (a fork server's workers); living ones through their own times.
    """
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = cpu_seconds_self() + children.ru_utime + children.ru_stime
    for process in psutil.Process().children(recursive=True):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


class Clock:
    """Wall and CPU (user + system) seconds of this process inside ``with``."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def __enter__(self) -> "Clock":
        self._wall, self._cpu = time.perf_counter(), cpu_seconds_self()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = cpu_seconds_self() - self._cpu


class ProcessPeak(BaseModel):
    pid: int
    parent: int | None
    role: str
    peak_rss_mb: float
    cpu_seconds: float = Field(
        description="Last sampled user + system seconds (own, not children)."
    )


def _role(process: psutil.Process, root: int, forkservers: set[int]) -> str:
    """Parent, fork server (the parent's child serving forks), run worker (forked by it), the local
    sandbox (when the measured command starts it), other."""
    if process.pid == root:
        return "parent"
    parent = process.ppid()
    if parent in forkservers:
        return "run worker"
    command = " ".join(process.cmdline())
    if parent == root and "forkserver" in command:
        forkservers.add(process.pid)
        return "fork server"
    if "sync_assets.sandbox" in command:
        return "sandbox"
    if "resource_tracker" in command:
        return "resource tracker"
    return "other"


class TreeSampler:
    """Samples RSS and CPU of a process and its descendants in a thread, every ``interval`` s."""

    def __init__(self, root: int, interval: float = SAMPLE_SECONDS) -> None:
        self._root = root
        self._interval = interval
        # By pid and start time: a pid the system hands again to another process is another process.
        self._peaks: dict[tuple[int, float], ProcessPeak] = {}
        self._forkservers: set[int] = set()
        self.peak_total_rss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self._interval):
                return

    def sample(self) -> None:
        try:
            root = psutil.Process(self._root)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0.0
        for process in processes:
            try:
                with process.oneshot():
                    rss = process.memory_info().rss / MB
                    times = process.cpu_times()
                    key = (process.pid, process.create_time())
                    known = self._peaks.get(key)
                    # "other" is asked again: a process seen between its fork and its exec still
                    # shows its parent's command line (the fork server, then its run workers).
                    role = (
                        known.role
                        if known and known.role != "other"
                        else _role(process, self._root, self._forkservers)
                    )
                    parent = process.ppid()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            total += rss
            self._peaks[key] = ProcessPeak(
                pid=process.pid,
                parent=parent,
                role=role,
                peak_rss_mb=max(rss, known.peak_rss_mb if known else 0.0),
                cpu_seconds=times.user + times.system,
            )
        self.peak_total_rss_mb = max(self.peak_total_rss_mb, total)

    def peaks(self, role: str | None = None) -> list[ProcessPeak]:
        return [peak for peak in self._peaks.values() if role is None or peak.role == role]


class Measured(BaseModel):
    """A measured subprocess: what it reported, and what was seen of it from outside."""

    result: dict[str, Any]
    wall_seconds: float
    processes: list[ProcessPeak]
    peak_total_rss_mb: float = Field(
        description="Largest sum of the tree's RSS in one sample (shared pages count once per process)."
    )

    def peak_rss_mb(self, role: str) -> float:
        return max((p.peak_rss_mb for p in self.processes if p.role == role), default=0.0)

    def peak_rss_each(self, role: str) -> list[float]:
        return sorted(p.peak_rss_mb for p in self.processes if p.role == role)


def run_worker(kind: str, arguments: BaseModel, env: dict[str, str] | None = None) -> Measured:
    """Run ``benchmarks.workers <kind>`` in a fresh interpreter, sampling its process tree.

    The worker writes its own figures (JSON) to a file; stdout and stderr go to a log next to it,
    shown only if the worker fails.
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as scratch:
        result_path = Path(scratch) / "result.json"
        log_path = Path(scratch) / "worker.log"
        command = [
            sys.executable,
            "-m",
            "benchmarks.workers",
            kind,
            arguments.model_dump_json(),
            str(result_path),
        ]
        started = time.perf_counter()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=Path(__file__).resolve().parent.parent,
            )
            with TreeSampler(process.pid) as sampler:
                code = process.wait()
        wall = time.perf_counter() - started
        if code != 0 or not result_path.exists():
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"benchmark worker {kind!r} failed (exit {code}):\n{tail}")
        return Measured(
            result=json.loads(result_path.read_text()),
            wall_seconds=wall,
            processes=sampler.peaks(),
            peak_total_rss_mb=sampler.peak_total_rss_mb,
        )


class SandboxCpu:
    """CPU seconds a sandbox process spent inside ``with`` (it is not part of our client)."""

    seconds: float = 0.0

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)

    def _now(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def __enter__(self) -> "SandboxCpu":
        self._before = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = self._now() - self._before


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def machine() -> dict[str, Any]:
    """What the figures were measured on; the load average says how busy the machine was."""
    import dagster
    import polars

    memory = psutil.virtual_memory()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "ram_gb": round(memory.total / 1024**3, 1),
        "available_ram_gb": round(memory.available / 1024**3, 1),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "polars": polars.__version__,
        "dagster": dagster.__version__,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
