"""Run the benchmark scenarios and write `docs/BENCHMARKS.md` and `docs/benchmarks.json`.

    uv run python -m benchmarks.run_all --scale full     # 2M rows, ~40 minutes; the report
    uv run python -m benchmarks.run_all --scale smoke    # 20k rows, the CI smoke run
    uv run python -m benchmarks.run_all --scale full --only production
        # scenario 8 alone, added to the figures in docs/benchmarks.json of the last full run
    uv run python -m benchmarks.run_all --scale full --only drift     # scenario 9 alone, likewise
    uv run python -m benchmarks.run_all --scale full --only link      # scenario 10 alone, likewise
    uv run python -m benchmarks.run_all --scale full --only night_memory
        # scenario 11 alone: every process of a 20M-row `sync-assets demo` night (~40 minutes)

Generated drops are cached under `benchmarks/out/drops` (generation is not measured); scratch
state, Dagster homes and sandboxes live under `benchmarks/out/work/<scale>`. Each scenario's
figures are saved there as it finishes; `--resume` reuses the saved ones (after a crash) and
measures only the rest.
"""

import argparse
import datetime as dt
import functools
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from benchmarks import drift as drift_scenario
from benchmarks import limited_link, report, scenarios
from benchmarks import night_memory as night_memory_scenario
from benchmarks import production as production_scenario
from benchmarks.fixtures import DropCache, use_bytecode_cache
from benchmarks.measure import machine

REPOSITORY = Path(__file__).resolve().parent.parent
OUT = REPOSITORY / "benchmarks" / "out"
M = TypeVar("M", bound=BaseModel)


def code_version() -> str:
    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], cwd=REPOSITORY, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # The report files themselves do not make the measured code "uncommitted".
    dirty = git(
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "sync_assets",
        "benchmarks/*.py",
        "pyproject.toml",
        "uv.lock",
    )
    return f"{commit} + uncommitted changes" if dirty else commit


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


class Steps:
    """Runs scenarios one by one, saving each one's figures; on resume, reuses saved figures."""

    def __init__(self, folder: Path, resume: bool) -> None:
        self.folder = folder
        self.resume = resume
        self.done: dict[str, report.StepRecord] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def run(self, name: str, model: type[M], measure: Callable[[], M]) -> M:
        saved = self.folder / f"{name.split()[0]}.json"
        if self.resume and saved.exists():
            stored = json.loads(saved.read_text())
            self.done[name] = report.StepRecord.model_validate(stored["record"])
            print(f"[{_now()}] {name}: figures of {self.done[name].started_at} reused", flush=True)
            return model.model_validate(stored["figures"])
        print(f"[{_now()}] {name}…", flush=True)
        started_at, load_before = _now(), os.getloadavg()[0]
        started = time.perf_counter()
        figures = measure()
        record = report.StepRecord(
            started_at=started_at,
            seconds=time.perf_counter() - started,
            load_before=load_before,
            load_after=os.getloadavg()[0],
        )
        self.done[name] = record
        saved.write_text(
            json.dumps(
                {
                    "record": record.model_dump(mode="json"),
                    "figures": figures.model_dump(mode="json"),
                }
            )
        )
        print(f"[{_now()}] {name}: {record.seconds:.0f} s", flush=True)
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(scenarios.SCALES), default="full")
    parser.add_argument("--out-dir", type=Path, default=REPOSITORY / "docs")
    parser.add_argument("--work", type=Path, default=OUT / "work")
    parser.add_argument("--drop-cache", type=Path, default=OUT / "drops")
    parser.add_argument("--resume", action="store_true", help="reuse figures saved by a prior run")
    parser.add_argument(
        "--only",
        choices=sorted(_ALONE),
        help="measure only this scenario and add it to the figures already in --out-dir",
    )
    parser.add_argument(
        "--night-rows",
        type=int,
        help="rows of scenario 10's demo night (default: the scale's; 20M at full scale)",
    )
    args = parser.parse_args()
    if args.only:
        _only(args)
        return

    scale = scenarios.SCALES[args.scale]
    bench = scenarios.Bench(scale, args.work / scale.name, DropCache(args.drop_cache))
    bench.work.mkdir(parents=True, exist_ok=True)
    steps = Steps(bench.work / "figures", args.resume)
    # Measure as an installed deployment runs: with compiled bytecode (see `use_bytecode_cache`).
    bytecode_was_off = use_bytecode_cache(OUT / "pycache")
    started_at, at_start = _now(), machine()

    _generate_drops(bench)
    floor = steps.run("1 floor", scenarios.FloorFigures, lambda: scenarios.measure_floor(bench))
    peer_csv = bench.work / "peer.csv"
    chain = steps.run(
        "2+6 our sync, nights after, fixed cost",
        scenarios.SyncChainFigures,
        lambda: scenarios.measure_sync_and_following_nights(bench, peer_csv),
    )
    peer = steps.run(
        "3 peer",
        scenarios.PeerFigures,
        lambda: scenarios.measure_peer(bench, peer_csv, chain.sync.first.total("sent")),
    )
    bound = steps.run(
        "4 Salesforce-bound",
        scenarios.BoundFigures,
        lambda: scenarios.measure_salesforce_bound(bench),
    )
    locks = steps.run("5 locks", scenarios.LockFigures, lambda: scenarios.measure_locks(bench))
    scaling = steps.run("7 scale", scenarios.ScaleFigures, lambda: scenarios.measure_scale(bench))
    alone, alone_steps = _measured_alone(args.out_dir, scale.name)
    results = report.Results(
        command=f"uv run python -m benchmarks.run_all --scale {scale.name}",
        started_at=min([started_at, *(step.started_at for step in steps.done.values())]),
        finished_at=_now(),
        code_version=code_version(),
        machine_at_start=at_start | {"PYTHONDONTWRITEBYTECODE_was_set": bytecode_was_off},
        machine_at_end=machine(),
        scale=scale,
        steps=steps.done | alone_steps,
        floor=floor,
        sync=chain.sync,
        peer=peer,
        bound=bound,
        locks=locks,
        following=chain.following,
        scale_points=scaling.points,
        **alone,
    )
    written = report.write(results, args.out_dir)
    for target in report.judge(results):
        print(f"{'met   ' if target.met else 'MISSED'} {target.name}: {target.figures}")
    print("wrote " + " and ".join(str(path) for path in written))


# Scenarios that may be measured alone: step name, figures model, measure, field of the results.
_ALONE: dict[str, tuple[str, type[BaseModel], Callable[[scenarios.Bench], BaseModel], str]] = {
    "production": (
        "8 production org",
        production_scenario.ProductionFigures,
        production_scenario.measure_production_org,
        "production",
    ),
    "drift": ("9 drift", drift_scenario.DriftFigures, drift_scenario.measure_drift, "drift"),
    "link": (
        "10 limited link",
        limited_link.LimitedLinkFigures,
        limited_link.measure_limited_link,
        "link",
    ),
    "night_memory": (
        "11 night memory",
        night_memory_scenario.NightMemoryFigures,
        night_memory_scenario.measure_night_memory,
        "night_memory",
    ),
}


def _measured_alone(out_dir: Path, scale: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scenarios the last report had from their own `--only` runs, with those runs' steps.

    A full run measures sections 1-7; sections 8-11 stay as their own runs measured them (the
    report says when and at which code) instead of vanishing from it.
    """
    path = out_dir / "benchmarks.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    if saved.get("scale", {}).get("name") != scale:
        return {}, {}
    figures = {field: saved.get(field) for _, _, _, field in _ALONE.values()}
    steps = {name: record for name, record in saved.get("steps", {}).items() if "--only" in name}
    return figures, steps


def _only(args: argparse.Namespace) -> None:
    """One scenario measured now; every other section stays as its own run measured it."""
    step, model, measure, field = _ALONE[args.only]
    scale = scenarios.SCALES[args.scale]
    bench = scenarios.Bench(scale, args.work / scale.name, DropCache(args.drop_cache))
    bench.work.mkdir(parents=True, exist_ok=True)
    saved = json.loads((args.out_dir / "benchmarks.json").read_text())
    saved.pop("targets", None)
    results = report.Results.model_validate(saved)
    if results.scale.name != scale.name:
        raise SystemExit(f"the saved figures are of scale {results.scale.name}, not {scale.name}")
    use_bytecode_cache(OUT / "pycache")
    steps = Steps(bench.work / "figures", args.resume)
    if args.only == "night_memory" and args.night_rows:
        measure = functools.partial(measure, rows=args.night_rows)
    setattr(results, field, steps.run(step, model, lambda: measure(bench)))
    results.steps |= {
        f"{name} (code {code_version()}, --only {args.only})": record
        for name, record in steps.done.items()
    }
    written = report.write(results, args.out_dir)
    for target in report.judge(results)[-5:]:
        print(f"{'met   ' if target.met else 'MISSED'} {target.name}: {target.figures}")
    print("wrote " + " and ".join(str(path) for path in written))


def _generate_drops(bench: scenarios.Bench) -> None:
    """Every drop the scenarios need, generated once and cached (generation is not measured)."""
    sizes = {bench.scale.rows, bench.scale.tiny_rows, bench.scale.lock_rows}
    sizes |= set(bench.scale.scale_rows)
    for rows in sorted(sizes):
        bench.cache.landing(bench.spec(rows))
    bench.cache.changed(bench.base, bench.scale.changed_fraction)


if __name__ == "__main__":
    main()
