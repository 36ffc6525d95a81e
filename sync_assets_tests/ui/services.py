"""Long-running Dagster processes for end-to-end tests: start, wait for, query and stop them."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

T = TypeVar("T")

CONFIGURATION_PREFIXES = ("SYNC_", "SALESFORCE_", "DAGSTER_HOME")


def require(available: bool, reason: str) -> None:
    """Skip a test whose tool is missing locally; in CI (``CI`` set) a missing tool is a failure."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it: see .ci/run)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any sync or Salesforce configuration, plus ``overrides``.

    With no ``SALESFORCE_*`` variable the sync uses the local sandbox, as a newcomer's machine would.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(CONFIGURATION_PREFIXES)
    }
    return {**env, **overrides}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """Call ``probe`` until it returns something other than None (or False), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class ServiceProcess:
    """A command in its own process group (it starts children: code servers, runs, the sandbox)."""

    def __init__(
        self, command: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(command),
                env=dict(env),
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def assert_running(self) -> None:
        assert self.process.poll() is None, f"service exited:\n{self.log_tail()}"

    def stop(self, timeout: float = 30.0) -> None:
        """Ctrl-C the whole group (graceful shutdown), then kill what is left of it."""
        group = self.process.pid
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(group):
                return
            time.sleep(1.0)
        _kill_group(group)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_group(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        return


class DagsterGraphQL:
    """The webserver's GraphQL endpoint: what the UI itself reads."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.session.post(
            f"{self.base_url}/graphql", json={"query": query, "variables": variables}, timeout=30
        )
        response.raise_for_status()
        payload = response.json()
        assert "errors" not in payload, payload["errors"]
        return payload["data"]

    def serving(self) -> bool:
        try:
            return self.session.get(f"{self.base_url}/server_info", timeout=5).ok
        except requests.ConnectionError:
            return False

    def location_loaded(self, name: str) -> bool:
        data = self(
            """{ workspaceOrError { ... on Workspace { locationEntries {
                 name loadStatus locationOrLoadError { __typename } } } } }"""
        )
        for entry in data["workspaceOrError"]["locationEntries"]:
            if entry["name"] == name and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"]["__typename"]
                assert loaded == "RepositoryLocation", f"code location failed to load: {entry}"
                return True
        return False

    def runs(self, job_name: str | None = None) -> list[dict[str, Any]]:
        """The runs of ``job_name``, or of every job (a run launched from an asset page is
        `__ASSET_JOB`'s)."""
        data = self(
            """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs {
                 results { runId status jobName tags { key value } } } } }""",
            filter={"pipelineName": job_name} if job_name else {},
        )
        return data["runsOrError"]["results"]
