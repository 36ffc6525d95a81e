"""Staging all 10 partitions of a drop, against the floor: polars reading the drop and writing it once.

    uv run python benchmarks/staging.py [--rows 2000000] [--runs 5]

Each measurement runs in a fresh process (so its peak memory is its own); floor and staging runs
alternate, so a noisy machine slows both alike, and the ratio is taken per pair. Writes
benchmarks/out/staging.md and staging.json, and prints the report.
"""

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from benchmarks.measure import Clock, peak_rss_mb_self

OUT = Path(__file__).parent / "out"
DROP_ID = "bench"


def _measure_floor(work: Path) -> dict[str, float]:
    files = sorted((work / "landing" / DROP_ID).glob("part-*.parquet"))
    with Clock() as clock:
        frame = pl.read_parquet(files)
        frame.write_parquet(work / "floor.parquet")
    return {"seconds": clock.seconds, "cpu_seconds": clock.cpu_seconds, "rows": frame.height}


def _measure_staging(work: Path, unchanged_night: bool) -> dict[str, float]:
    from sync_assets.drops.staging import stage_drop
    from sync_assets.state.ledger import advance_ledger
    from sync_assets.storage import StateStore

    state_dir = work / "state"
    shutil.rmtree(state_dir, ignore_errors=True)
    landing, state = StateStore(work / "landing"), StateStore(state_dir)
    if unchanged_night:
        for key, part in stage_drop(landing, state, DROP_ID).items():
            rows = state.read_parquet(part.to_send)
            confirmed = rows.select(
                external_id="External_Id__c", row_hash="_row_hash", salesforce_id="External_Id__c"
            )
            advance_ledger(state, key, confirmed, DROP_ID)
    with Clock() as clock:
        staged = stage_drop(landing, state, DROP_ID)
    counts = [part.counts for part in staged.values()]
    return {
        "seconds": clock.seconds,
        "cpu_seconds": clock.cpu_seconds,
        "rows": sum(c.source for c in counts),
        "sent": sum(c.to_send for c in counts),
        "unchanged": sum(c.unchanged for c in counts),
        "rejected": sum(c.rejected for c in counts),
    }


def _worker(kind: str, work: Path) -> None:
    if kind == "floor":
        result = _measure_floor(work)
    else:
        result = _measure_staging(work, unchanged_night=kind == "unchanged")
    result["peak_rss_mb"] = peak_rss_mb_self()
    print(json.dumps(result))


def _run(kind: str, work: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--work", str(work)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def _generate(work: Path, rows: int) -> float:
    from sync_assets.drops.generate import GenerateOptions, generate_drop

    if (work / "landing" / DROP_ID / "_manifest.json").exists():
        manifest = json.loads((work / "landing" / DROP_ID / "_manifest.json").read_text())
        if manifest["row_count"] == rows:
            return float("nan")
    shutil.rmtree(work / "landing", ignore_errors=True)
    started = time.perf_counter()
    generate_drop(work / "landing", GenerateOptions(drop_id=DROP_ID, rows=rows, bad_fraction=0.001))
    return time.perf_counter() - started


def _report(rows: int, runs: int, generate_seconds: float, pairs: list, unchanged: dict) -> str:
    floor = [f["seconds"] for f, _ in pairs]
    stage = [s["seconds"] for _, s in pairs]
    ratios = [s / f for f, s in zip(floor, stage, strict=True)]
    cpu_ratios = [s["cpu_seconds"] / f["cpu_seconds"] for f, s in pairs]
    lines = [
        "# Staging benchmark",
        "",
        f"- machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"python {platform.python_version()}, polars {pl.__version__}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores",
        f"- drop: {rows:,} rows, 4 Parquet part files, 0.1% bad rows; generated in "
        f"{generate_seconds:.1f} s"
        if generate_seconds == generate_seconds
        else f"- drop: {rows:,} rows (generated earlier)",
        f"- command: `uv run python benchmarks/staging.py --rows {rows} --runs {runs}`",
        "- floor: `pl.read_parquet(part files)` + `write_parquet(one file)` (defaults)",
        "- staging: `stage_drop` of all 10 partitions, empty ledger (first night: every row "
        "is sent), from a fresh process; runs alternate with the floor, ratio per pair",
        "",
        "| run | floor s | staging s | ratio | floor CPU s | staging CPU s | CPU ratio "
        "| floor peak MB | staging peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for number, ((f, s), ratio, cpu_ratio) in enumerate(
        zip(pairs, ratios, cpu_ratios, strict=True), start=1
    ):
        lines.append(
            f"| {number} | {f['seconds']:.2f} | {s['seconds']:.2f} | {ratio:.2f} | "
            f"{f['cpu_seconds']:.2f} | {s['cpu_seconds']:.2f} | {cpu_ratio:.2f} | "
            f"{f['peak_rss_mb']:.0f} | {s['peak_rss_mb']:.0f} |"
        )
    lines += [
        f"| **median** | **{statistics.median(floor):.2f}** | **{statistics.median(stage):.2f}** "
        f"| **{statistics.median(ratios):.2f}** | "
        f"{statistics.median(f['cpu_seconds'] for f, _ in pairs):.2f} | "
        f"{statistics.median(s['cpu_seconds'] for _, s in pairs):.2f} | "
        f"**{statistics.median(cpu_ratios):.2f}** | "
        f"{statistics.median(f['peak_rss_mb'] for f, _ in pairs):.0f} | "
        f"**{statistics.median(s['peak_rss_mb'] for _, s in pairs):.0f}** |",
        "",
        f"Target: staging ≤ 2× the floor — median ratio {statistics.median(ratios):.2f}: "
        f"{'met' if statistics.median(ratios) <= 2 else 'NOT met'}.",
        "",
        f"Unchanged night (ledger holds every row): staging {unchanged['seconds']:.2f} s, "
        f"{unchanged['sent']:,} rows to send, {unchanged['unchanged']:,} unchanged, "
        f"peak {unchanged['peak_rss_mb']:.0f} MB.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=OUT / "staging-data")
    parser.add_argument("--worker", choices=["floor", "stage", "unchanged"])
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.work)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    generate_seconds = _generate(args.work, args.rows)
    pairs = [(_run("floor", args.work), _run("stage", args.work)) for _ in range(args.runs)]
    unchanged = _run("unchanged", args.work)
    report = _report(args.rows, args.runs, generate_seconds, pairs, unchanged)
    (OUT / "staging.md").write_text(report)
    (OUT / "staging.json").write_text(
        json.dumps({"rows": args.rows, "pairs": pairs, "unchanged": unchanged}, indent=2)
    )
    print(report)


if __name__ == "__main__":
    main()
