"""Progress when nobody watches a terminal (issue 16, item 6): plain lines in a log, at an interval.

`sync-assets sync` with stdout piped (as under cron or in a Kubernetes pod) against a sandbox slow
enough that a partition's load lasts several intervals.
"""

import re
import shutil
import subprocess
import time

import pytest

from sync_assets_tests.reliability.harness import NightFactory

pytestmark = pytest.mark.slow

PROGRESS = re.compile(
    r"partition 3: (?P<confirmed>[\d,]+) of (?P<total>[\d,]+) rows confirmed \(\d+%\), "
    r"(?P<sent>[\d,]+) sent, (?P<in_flight>\d+) jobs in flight, (?P<failed>[\d,]+) failed, "
    r"(?P<resent>[\d,]+) to resend \((?P<seconds>\d+) s\)"
)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_a_piped_sync_prints_a_progress_line_per_partition_at_the_interval(
    make_night: NightFactory,
) -> None:
    # 20 records/s per slot: a 200-record internal batch takes ~10 s, several 1 s intervals.
    night = make_night(rate=20)
    night.land("2026-11-27", rows=3_000)
    to_send = night.staged_keys  # staged by the run below; read after it
    command = shutil.which("sync-assets")
    assert command, "the sync-assets entry point is not installed (uv sync)"

    started = time.monotonic()
    completed = subprocess.run(
        [command, "sync", "--partition", "3", "--parallel", "1", "--progress-interval", "1"],
        cwd=night.root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    took = time.monotonic() - started

    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    progress = [match for line in lines if (match := PROGRESS.search(line))]
    total = to_send("2026-11-27", "3").len()
    # At least a line a second while loading (the load alone takes ≥ 10 s), never one per poll.
    assert 5 <= len(progress) <= took + 1, completed.stdout
    for match in progress:
        assert number(match["total"]) == total
        assert 0 <= number(match["confirmed"]) <= total
        assert number(match["sent"]) <= total
        assert 0 <= int(match["in_flight"]) <= 8
        assert number(match["failed"]) == number(match["resent"]) == 0
    assert any(int(match["in_flight"]) >= 1 for match in progress), completed.stdout
    confirmed = [number(match["confirmed"]) for match in progress]
    assert confirmed == sorted(confirmed)
    seconds = [int(match["seconds"]) for match in progress]
    assert seconds == sorted(seconds)
    # The partition's end is a line of its own, before the final table.
    done = next(i for i, line in enumerate(lines) if line.startswith("partition 3: done"))
    assert f"{total:,} sent, 0 failed" in lines[done]
    assert done < next(i for i, line in enumerate(lines) if "Reconciliation" in line)
    # No terminal: no bar drawing (carriage returns, cursor movement) in the log.
    assert "\r" not in completed.stdout and "\x1b[" not in completed.stdout
