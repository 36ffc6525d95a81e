"""Fixtures of the reliability suite: a night wired to a sandbox started with the test's options."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sync_assets.sandbox.runner import SandboxHandle
from sync_assets_tests.conftest import use_sandbox_org
from sync_assets_tests.reliability.harness import ACCOUNTS, Night, NightFactory


@pytest.fixture
def make_night(
    tmp_path: Path,
    fresh_sandbox: Callable[..., SandboxHandle],
    monkeypatch: pytest.MonkeyPatch,
) -> NightFactory:
    """``make_night(faults=…, rate=…)``: a sandbox with those options and a night pointing at it.

    The sandbox's connection is handed to the sync as ``SALESFORCE_*`` variables (the sync never
    falls back to a sandbox by itself); tests that need other credentials set them afterwards.
    """

    def make(**sandbox_options: Any) -> Night:
        night = Night(tmp_path, fresh_sandbox, {"accounts": ACCOUNTS, **sandbox_options})
        use_sandbox_org(monkeypatch, night.sandbox.data_dir)
        monkeypatch.delenv("SYNC_ALERT_WEBHOOK_URL", raising=False)
        monkeypatch.setenv("SYNC_LANDING_DIR", str(tmp_path / "landing"))
        monkeypatch.setenv("SYNC_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
        (tmp_path / "dagster_home").mkdir(exist_ok=True)
        return night

    return make
