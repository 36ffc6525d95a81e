"""Fixtures of the reliability suite: a night wired to a sandbox started with the test's options."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sync_assets.sandbox.runner import SandboxHandle
from sync_assets_tests.reliability.harness import ACCOUNTS, Night, NightFactory


@pytest.fixture
def make_night(
    tmp_path: Path,
    fresh_sandbox: Callable[..., SandboxHandle],
    monkeypatch: pytest.MonkeyPatch,
) -> NightFactory:
    """``make_night(faults=…, rate=…)``: a sandbox with those options and a night pointing at it.

    No ``SALESFORCE_*`` variable is set, so the sync uses the sandbox (the embedded default);
    tests that need explicit credentials set them afterwards.
    """

    def make(**sandbox_options: Any) -> Night:
        night = Night(tmp_path, fresh_sandbox, {"accounts": ACCOUNTS, **sandbox_options})
        for name in [name for name in os.environ if name.startswith("SALESFORCE_")]:
            monkeypatch.delenv(name)
        monkeypatch.delenv("SYNC_ALERT_WEBHOOK_URL", raising=False)
        monkeypatch.setenv("SYNC_LANDING_DIR", str(tmp_path / "landing"))
        monkeypatch.setenv("SYNC_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("SYNC_SANDBOX_DIR", str(night.sandbox.data_dir))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
        (tmp_path / "dagster_home").mkdir(exist_ok=True)
        return night

    return make
