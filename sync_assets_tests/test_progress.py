"""A load's progress reporter: the lines it adds to the run's event log and the file it writes."""

import logging
from pathlib import Path

import pytest

from sync_assets.state.progress import ProgressReporter, read_progress
from sync_assets.storage import StateStore


def test_a_load_of_nothing_logs_no_progress_but_still_says_where_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unchanged partition's load has no progress to tell (its summary line says it sent 0);
    the progress file still tells the command's bars that it got there."""
    state = StateStore(tmp_path)
    log = logging.getLogger("sync_assets_tests.progress")
    with caplog.at_level(logging.INFO, logger=log.name):
        ProgressReporter(state, "d1", "3", log).loading(confirmed=0, total=0)
        ProgressReporter(state, "d1", "4", log).loading(confirmed=50, total=100)
    assert [record.getMessage() for record in caplog.records] == [
        "Partition 4: 50 of 100 rows confirmed (50%)"
    ]
    nothing = read_progress(state, "d1", "3")
    assert nothing is not None
    assert (nothing.confirmed, nothing.total) == (0, 0)
