"""Shared fixtures: one local Salesforce sandbox per test session, fresh ones on demand."""

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from sync_assets.salesforce.connection import SalesforceCredentials
from sync_assets.sandbox.runner import SandboxHandle, running_sandbox

SESSION_ACCOUNTS = 200


def sandbox_org_env(data_dir: Path) -> dict[str, str]:
    """A sandbox's connection as `SALESFORCE_*` variables, as `sync-assets demo` hands it over."""
    return SalesforceCredentials.from_sandbox(data_dir).to_env()


def use_sandbox_org(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """Point the sync at the sandbox in `data_dir` explicitly, and at nothing else.

    The sync never falls back to a sandbox on its own (issue 15): tests name it like an operator
    names an org.
    """
    for name in [name for name in os.environ if name.startswith("SALESFORCE_")]:
        monkeypatch.delenv(name)
    for name, value in sandbox_org_env(data_dir).items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """A sandbox shared by the whole session (default options, Accounts ACC-000000…ACC-000199)."""
    with running_sandbox(tmp_path_factory.mktemp("sandbox"), accounts=SESSION_ACCOUNTS) as handle:
        yield handle


@pytest.fixture
def fresh_sandbox(tmp_path: Path) -> Iterator[Callable[..., SandboxHandle]]:
    """Start sandboxes with specific options (faults, rate, token TTL…); all stop after the test.

    ``fresh_sandbox(accounts=10, rate=500)`` starts one in its own data dir;
    ``fresh_sandbox(data_dir=d)`` restarts on an existing data dir.
    """
    with ExitStack() as stack:
        started = 0

        def start(data_dir: Path | None = None, **options: Any) -> SandboxHandle:
            nonlocal started
            started += 1
            directory = data_dir or tmp_path / f"sandbox-{started}"
            return stack.enter_context(running_sandbox(directory, **options))

        yield start


@pytest.fixture(autouse=True)
def _forget_dagster_state_storage() -> Iterator[None]:
    """Undo a leak: a test instance leaves its state storage in a Dagster context variable.

    A later test that loads definitions without an instance of its own would read that storage
    after its temporary directory is gone ("unable to open database file").
    """
    yield
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
