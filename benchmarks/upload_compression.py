"""Measure gzip libraries and levels on one Bulk upload body: CPU seconds per MB and bytes kept.

    uv run python -m benchmarks.upload_compression --rows 100000

Generates and stages a demo drop (not timed), builds the upload body of the first job of
partition 0 as the loader does (`build_csv`, up to 10,000 rows), then compresses it with zlib and with
ISA-L (python-isal, what the loader uses) at each level `--repeat` times and reports the fastest
CPU time (this process only, `Clock`).
"""

import argparse
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

from isal import isal_zlib

from benchmarks.measure import MB, Clock
from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.drops.staging import stage_drop
from sync_assets.salesforce.planning import build_csv
from sync_assets.storage import StateStore

GZIP_WBITS = 31
Compress = Callable[[bytes, int, int], bytes]
LIBRARIES: dict[str, tuple[Compress, tuple[int, ...]]] = {
    "zlib": (zlib.compress, (1, 3, 6, 9)),
    "isal": (isal_zlib.compress, (0, 1, 2, 3)),
}


def job_body(rows: int, job_records: int) -> tuple[bytes, int]:
    """The upload body of partition 0's first job of a generated, staged drop, and its rows."""
    work = Path(tempfile.mkdtemp(prefix="bench-gzip-"))
    landing, state = StateStore(work / "landing"), StateStore(work / "state")
    generate_drop(landing, GenerateOptions(drop_id="bench", rows=rows))
    staged = stage_drop(landing, state, "bench")["0"]
    to_send = state.read_parquet(staged.to_send).head(job_records)
    return build_csv(to_send), to_send.height


def gzip_seconds(compress: Compress, body: bytes, level: int, repeat: int) -> tuple[float, int]:
    """The fastest CPU seconds of `repeat` compressions at `level`, and the compressed size."""
    fastest, size = float("inf"), 0
    for _ in range(repeat):
        with Clock() as clock:
            size = len(compress(body, level, GZIP_WBITS))
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
    print("| library | level | CPU s per MB | MB/s | compressed bytes | share of the CSV |")
    print("|---|---|---|---|---|---|")
    for library, (compress, levels) in LIBRARIES.items():
        for level in levels:
            seconds, size = gzip_seconds(compress, body, level, args.repeat)
            print(
                f"| {library} | {level} | {seconds / megabytes:.4f} | {megabytes / seconds:.0f} | {size:,} "
                f"| {size / len(body):.1%} |"
            )


if __name__ == "__main__":
    main()
