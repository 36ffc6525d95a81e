"""Run the seven benchmark scenarios and write `docs/BENCHMARKS.md` and `docs/benchmarks.json`.

    uv run python -m benchmarks.run_all --scale full     # 2M rows, ~30 minutes; the report
    uv run python -m benchmarks.run_all --scale smoke    # 20k rows, the CI smoke run

Generated drops are cached under `benchmarks/out/drops` (generation is not measured); scratch
state, Dagster homes and sandboxes live under `benchmarks/out/work` and are replaced per run.
"""

import argparse
import datetime as dt
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from benchmarks import report, scenarios
from benchmarks.fixtures import DropCache, use_bytecode_cache
from benchmarks.measure import machine

REPOSITORY = Path(__file__).resolve().parent.parent
OUT = REPOSITORY / "benchmarks" / "out"
T = TypeVar("T")


def code_version() -> str:
    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], cwd=REPOSITORY, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit} + uncommitted changes" if dirty else commit


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(scenarios.SCALES), default="full")
    parser.add_argument("--out-dir", type=Path, default=REPOSITORY / "docs")
    parser.add_argument("--work", type=Path, default=OUT / "work")
    parser.add_argument("--drop-cache", type=Path, default=OUT / "drops")
    args = parser.parse_args()

    scale = scenarios.SCALES[args.scale]
    bench = scenarios.Bench(scale, args.work / scale.name, DropCache(args.drop_cache))
    bench.work.mkdir(parents=True, exist_ok=True)
    spent: dict[str, float] = {}

    def timed(name: str, measure: Callable[[], T]) -> T:
        print(f"[{_now()}] {name}…", flush=True)
        started = time.perf_counter()
        outcome = measure()
        spent[name] = time.perf_counter() - started
        print(f"[{_now()}] {name}: {spent[name]:.0f} s", flush=True)
        return outcome

    # Measure as an installed deployment runs: with compiled bytecode (see `use_bytecode_cache`).
    bytecode_was_off = use_bytecode_cache(OUT / "pycache")
    started_at, at_start = _now(), machine()
    timed("generate drops (cached)", lambda: _generate_drops(bench))
    floor = timed("1 floor", lambda: scenarios.measure_floor(bench))
    peer_csv = bench.work / "peer.csv"
    sync, following, _ = timed(
        "2+6 our sync, nights after, fixed cost",
        lambda: scenarios.measure_sync_and_following_nights(bench, peer_csv),
    )
    peer = timed(
        "3 peer", lambda: scenarios.measure_peer(bench, peer_csv, sync.first.total("sent"))
    )
    bound = timed("4 Salesforce-bound", lambda: scenarios.measure_salesforce_bound(bench))
    locks = timed("5 locks", lambda: scenarios.measure_locks(bench))
    points = timed("7 scale", lambda: scenarios.measure_scale(bench))
    results = report.Results(
        command=f"uv run python -m benchmarks.run_all --scale {scale.name}",
        started_at=started_at,
        finished_at=_now(),
        code_version=code_version(),
        machine_at_start=at_start | {"PYTHONDONTWRITEBYTECODE_was_set": bytecode_was_off},
        machine_at_end=machine(),
        scale=scale,
        scenario_seconds=spent,
        floor=floor,
        sync=sync,
        peer=peer,
        bound=bound,
        locks=locks,
        following=following,
        scale_points=points,
    )
    written = report.write(results, args.out_dir)
    for target in report.judge(results):
        print(f"{'met   ' if target.met else 'MISSED'} {target.name}: {target.figures}")
    print("wrote " + " and ".join(str(path) for path in written))


def _generate_drops(bench: scenarios.Bench) -> None:
    sizes = {bench.scale.rows, bench.scale.tiny_rows, bench.scale.lock_rows}
    sizes |= set(bench.scale.scale_rows)
    for rows in sorted(sizes):
        bench.cache.landing(bench.spec(rows))
    bench.cache.changed(bench.base, bench.scale.changed_fraction)


if __name__ == "__main__":
    main()
