"""The command's head start: what it leaves to the runs (staging it does is in `test_sync_e2e`)."""

from pathlib import Path

import pytest

from sync_assets import staging_ahead
from sync_assets.drops.staging import load_staged
from sync_assets.staging_ahead import stage_ahead
from sync_assets.state.layout import PARTITION_KEYS
from sync_assets.state.locks import drop_staging_lock
from sync_assets.storage import StateStore
from sync_assets_tests.drops.helpers import valid_rows, write_drop

DROP = "2026-12-04"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateStore:
    """A landed 200-row drop; the state the command would stage it into."""
    monkeypatch.setenv("SYNC_LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("SYNC_STATE_DIR", str(tmp_path / "state"))
    write_drop(StateStore(tmp_path / "landing"), DROP, [valid_rows(200)])
    return StateStore(tmp_path / "state")


def nothing_staged(state: StateStore, drop_id: str) -> bool:
    return all(load_staged(state, drop_id, key) is None for key in PARTITION_KEYS)


def test_a_drop_being_staged_already_is_left_to_that_staging(state: StateStore) -> None:
    """The head start does not wait for the drop's staging lock: whoever holds it is staging."""
    with drop_staging_lock(state, DROP, timeout=1.0):
        head_start = stage_ahead(DROP, "0")
    assert head_start.partitions == []
    assert head_start.left_to_runs is not None
    assert f"drop {DROP} is being staged by another run" in head_start.left_to_runs
    assert nothing_staged(state, DROP)


def test_a_drop_bigger_than_one_staging_pass_is_left_to_the_runs(
    state: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runs stage it pass by pass, each bounded in its own process: the command stays small."""
    monkeypatch.setattr(staging_ahead, "ROWS_PER_PASS", 199)
    head_start = stage_ahead(DROP, "0")
    assert (head_start.partitions, head_start.left_to_runs) == (
        [],
        "200 rows, more than one staging pass",
    )
    assert nothing_staged(state, DROP)


def test_an_incomplete_drop_is_left_to_the_runs(state: StateStore) -> None:
    """The runs meet the same error and report it in their event log."""
    head_start = stage_ahead("2026-12-05", "0")
    assert head_start.partitions == []
    assert head_start.left_to_runs is not None
    assert "no _manifest.json: the drop is incomplete" in head_start.left_to_runs
    assert nothing_staged(state, "2026-12-05")
