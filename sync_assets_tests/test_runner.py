"""The command-line runner: where the commands keep run history."""

import os
from pathlib import Path

import pytest

from sync_assets.runner import prepare_dagster_home
from sync_assets.settings import SyncSettings


def test_commands_keep_history_in_dagster_home_when_it_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "x"))
    assert SyncSettings().commands_dagster_home() == tmp_path / "x"
    monkeypatch.delenv("DAGSTER_HOME")
    assert SyncSettings().commands_dagster_home() == Path(".dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", "")  # restored after the test
    prepare_dagster_home(tmp_path / "y")
    assert os.environ["DAGSTER_HOME"] == str((tmp_path / "y").resolve())
    assert (tmp_path / "y" / "dagster.yaml").exists()
