"""Measure gzip levels on one Bulk upload body: CPU seconds per MB of CSV and bytes kept.

    uv run python -m benchmarks.upload_compression --rows 100000

Generates and stages a demo drop (not timed), builds the upload body of the first job of
partition 0 as the loader does (`build_csv`, up to 10,000 rows), then compresses it at each level
`--repeat` times and reports the fastest CPU time (this process only, `Clock`).
"""

import argparse
import tempfile
import zlib
from pathlib import Path

from benchmarks.measure import MB, Clock
from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.drops.staging import stage_drop
from sync_assets.salesforce.planning import build_csv
from sync_assets.storage import StateStore

LEVELS = (1, 3, 6, 9)
GZIP_WBITS = 31


def job_body(rows: int, job_records: int) -> tuple[bytes, int]:
    """The upload body of partition 0's first job of a generated, staged drop, and its rows."""
    work = Path(tempfile.mkdtemp(prefix="bench-gzip-"))
    landing, state = StateStore(work / "landing"), StateStore(work / "state")
    generate_drop(landing, GenerateOptions(drop_id="bench", rows=rows))
    staged = stage_drop(landing, state, "bench")["0"]
    to_send = state.read_parquet(staged.to_send).head(job_records)
    return build_csv(to_send), to_send.height


def gzip_seconds(body: bytes, level: int, repeat: int) -> tuple[float, int]:
    """The fastest CPU seconds of `repeat` compressions at `level`, and the compressed size."""
    fastest, size = float("inf"), 0
    for _ in range(repeat):
        with Clock() as clock:
            size = len(zlib.compress(body, level, wbits=GZIP_WBITS))
        fastest = min(fastest, clock.cpu_seconds)
    return fastest, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the generated drop")
    parser.add_argument("--job-records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    body, rows = job_body(args.rows, args.job_records)
    megabytes = len(body) / MB
    print(f"one job body: {rows:,} rows, {len(body):,} bytes ({megabytes:.2f} MB)")
    print("| level | CPU s per MB | MB/s | compressed bytes | share of the CSV |")
    print("|---|---|---|---|---|")
    for level in LEVELS:
        seconds, size = gzip_seconds(body, level, args.repeat)
        print(
            f"| {level} | {seconds / megabytes:.4f} | {megabytes / seconds:.0f} | {size:,} "
            f"| {size / len(body):.1%} |"
        )


if __name__ == "__main__":
    main()
