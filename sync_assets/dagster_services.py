"""The `ui` command's services: Dagster's webserver and daemon as two child processes, started and stopped together.

Dagster's own `dagster dev` does the same but is superseded (it warns at every start) and warns
about the project's instance configuration; the two public commands it wraps, `dagster-webserver`
and `dagster-daemon run`, say nothing a user has to act on.
"""

import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

_POLL_SECONDS = 0.5
_STOP_SECONDS = 20.0


class ServiceExitedError(RuntimeError):
    """The webserver or the daemon stopped on its own."""


def _console_script(name: str) -> str:
    """A console script installed beside this interpreter (the project's environment)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise ServiceExitedError(f"{name} is not installed beside {sys.executable}")
    return found


def serve_dagster(workspace: Path, host: str, port: int, daemon_log: Path) -> None:
    """Run the webserver (logging to this terminal) and the daemon (logging to `daemon_log`).

    Returns when interrupted (Ctrl-C); raises `ServiceExitedError` if either stops on its own.
    Each leaves the other stopped.
    """
    webserver_command = [
        _console_script("dagster-webserver"),
        "-w",
        str(workspace),
        "-h",
        host,
        "-p",
        str(port),
    ]
    daemon_command = [_console_script("dagster-daemon"), "run", "-w", str(workspace)]
    daemon_log.parent.mkdir(parents=True, exist_ok=True)
    with daemon_log.open("ab") as log:
        services = {
            "dagster-daemon": subprocess.Popen(
                daemon_command, stdout=log, stderr=subprocess.STDOUT
            ),
            "dagster-webserver": subprocess.Popen(webserver_command),
        }
        try:
            _wait_until_one_exits(services)
        except KeyboardInterrupt:
            return
        finally:
            _stop_all(services.values())


def _wait_until_one_exits(services: dict[str, subprocess.Popen[bytes]]) -> None:
    while True:
        for name, process in services.items():
            if process.poll() is not None:
                raise ServiceExitedError(f"{name} stopped (exit code {process.returncode})")
        time.sleep(_POLL_SECONDS)


def _stop_all(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + _STOP_SECONDS
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
