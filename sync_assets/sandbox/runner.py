"""Start a sandbox in a child process and wait until it serves: for tests, benchmarks and the demo."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from sync_assets.sandbox.server import CONNECTION_FILE

_START_TIMEOUT_SECONDS = 60.0


class SandboxConnection(BaseModel):
    """``<data_dir>/connection.json``: how to reach and log in to a running sandbox."""

    model_config = ConfigDict(frozen=True)

    instance_url: str
    # The generic login URL; it differs from instance_url when the org has a My Domain.
    login_url: str
    access_token: SecretStr = Field(repr=False)
    client_id: str
    client_secret: SecretStr = Field(repr=False)
    username: str
    password: SecretStr = Field(repr=False)
    token_url: str
    ca_cert: Path

    @classmethod
    def read(cls, data_dir: Path) -> "SandboxConnection":
        return cls.model_validate(json.loads((data_dir / CONNECTION_FILE).read_text()))


class SandboxStartError(RuntimeError):
    pass


class SandboxHandle:
    """A sandbox child process; ``connection`` is valid once the constructor returns."""

    def __init__(self, data_dir: Path, options: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.options = options
        self.log_path = data_dir / "sandbox.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / CONNECTION_FILE).unlink(missing_ok=True)
        arguments = [sys.executable, "-m", "sync_assets.sandbox", "--data-dir", str(data_dir)]
        options = {"port": 0, **options}
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                arguments += [flag] if value else []
            else:
                arguments += [flag, str(value)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT)
        self.connection = self._wait_for_connection()

    def _wait_for_connection(self) -> SandboxConnection:
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if (self.data_dir / CONNECTION_FILE).exists():
                return SandboxConnection.read(self.data_dir)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise SandboxStartError(f"the sandbox in {self.data_dir} did not start:\n{tail}")

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully (SIGTERM), killing the process if it does not end in ``timeout``."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextmanager
def running_sandbox(data_dir: Path, **options: Any) -> Iterator[SandboxHandle]:
    """A sandbox on a free port for the duration of the block; options as ``sync-assets sandbox``."""
    handle = SandboxHandle(Path(data_dir), options)
    try:
        yield handle
    finally:
        handle.stop()
