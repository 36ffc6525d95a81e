"""The sandbox's options: one model, read from the command line of `sync-assets sandbox` or `python -m sync_assets.sandbox`."""

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import CliApp, CliSettingsSource

from sync_assets.sandbox.api.app import LAST_DEPRECATED_VERSION


class SandboxConfig(BaseModel):
    """Run the local Salesforce sandbox (Bulk API 2.0, REST, OAuth over HTTPS on SQLite) in the foreground."""

    data_dir: Path = Field(
        description="SQLite, CA and connection.json live here (`sync-assets sandbox`: by default "
        "$SYNC_SANDBOX_DIR, else ./data/sandbox)."
    )
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8443, ge=0, le=65535, description="HTTPS port (0 picks a free one).")
    org: Path | None = Field(
        default=None,
        description="An org file (YAML) describing the org to play; none: an empty org.",
    )
    accounts: int = Field(
        default=20_000, ge=0, description="Accounts ACC-000000… seeded on first start."
    )
    slots: int = Field(
        default=10, ge=1, description="Parallel processing slots (internal batches)."
    )
    rate: float = Field(
        default=0.0, ge=0, description="Records/second per slot; 0 = as fast as possible."
    )
    lock_timeout: float = Field(
        default=10.0, ge=0, description="Seconds a record waits for a locked parent Account."
    )
    batch_time_limit: float = Field(
        default=300.0,
        gt=0,
        description="Seconds an internal batch may run before the org retries it.",
    )
    batch_retries: int = Field(
        default=20,
        ge=0,
        description="Retries of a batch that runs out of time before its job fails.",
    )
    faults: str = Field(
        default="",
        description='Fault rates, e.g. "http_500=0.02,http_403_concurrent=0.01,maintenance=30s" '
        "(see sync_assets/sandbox/faults.py).",
    )
    seed: int = Field(default=0, description="Seed for fault injection and ids.")
    daily_records: int = Field(
        default=150_000_000, ge=0, description="Daily Bulk ingest record allowance."
    )
    daily_api_requests: int = Field(
        default=1_000_000, ge=0, description="Daily API request allowance (DailyApiRequests)."
    )
    daily_batches: int = Field(
        default=15_000, ge=0, description="Daily Bulk batch allowance (DailyBulkApiBatches)."
    )
    deprecated_through: int = Field(
        default=LAST_DEPRECATED_VERSION,
        ge=0,
        description="API versions up to this one answer with a 299 Warning header.",
    )
    token_ttl: float = Field(
        default=0.0, ge=0, description="Seconds an access token stays valid; 0 = forever."
    )
    refuse_compressed_uploads: bool = Field(
        default=False,
        description="Answer 415 to a request body sent with Content-Encoding (gzip, deflate), as "
        "an org that does not decompress requests would; by default they are decompressed (REST "
        "API 'Compression Headers').",
    )
    verbose: bool = Field(default=False, description="Log every request.")


def parse_command_line(
    arguments: Sequence[str], program: str = "sync-assets sandbox"
) -> SandboxConfig:
    """The options of a command line (`--data-dir D --faults …`); `--help` prints them and exits."""
    source = CliSettingsSource(
        SandboxConfig,
        cli_prog_name=program,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_hide_none_type=True,
        cli_avoid_json=True,
    )
    return CliApp.run(SandboxConfig, cli_args=list(arguments), cli_settings_source=source)
