"""Every environment variable the sync reads, with its default: read when asked, never at import.

`SYNC_*` configure the sync itself (`SyncSettings`), `SALESFORCE_*` say which org and how to log
in (`SalesforceCredentials`, named in `salesforce/connection.py`), and `DAGSTER_HOME` says where
Dagster keeps its instance. Nothing else in the package reads the environment.
"""

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sync_assets.salesforce.connection import ENV_VARIABLES, SalesforceCredentials

DEMO_DAGSTER_HOME = Path(".dagster_home")
"""The Dagster home of the commands when DAGSTER_HOME is not set: runs stay in the project."""

UPLOAD_COMPRESSION_VARIABLE = "SYNC_UPLOAD_COMPRESSION"

# The variables that configure a run; a run in another process must see exactly these.
_CONFIGURATION_PREFIXES = ("SYNC_", "SALESFORCE_", "DAGSTER_HOME")


class SyncSettings(BaseSettings):
    """The `SYNC_*` variables (empty means unset) and `DAGSTER_HOME`.

    Paths may be local or object-store URLs (``s3://…``).
    """

    model_config = SettingsConfigDict(
        env_prefix="SYNC_", env_ignore_empty=True, frozen=True, extra="ignore"
    )

    landing_dir: str = Field(default="./data/landing", description="Where drops land.")
    state_dir: str = Field(
        default="./data/state",
        description="Ledger, staging, rejects, failed rows, checkpoints, locks.",
    )
    sandbox_dir: str = Field(
        default="./data/sandbox",
        description="The local sandbox's data (SQLite, CA, connection.json); `demo` and `ui` only.",
    )
    api_budget_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of the org's remaining daily API requests one night may use; the "
        "night stops cleanly before passing it.",
    )
    mapping_file: str | None = Field(
        default=None,
        description="The mapping file (YAML); unset: the built-in sync_assets/mapping.yaml.",
    )
    alert_webhook_url: str | None = Field(
        default=None, description="Failed checks and runs are POSTed here (may embed a token)."
    )
    delete_mode: Literal["none", "delete", "hard_delete", "archive"] = Field(
        default="none",
        description="Rows in the ledger and absent from a complete drop: none (reported only), "
        "delete, hard_delete or archive (upsert SYNC_DELETE_ARCHIVE_VALUES).",
    )
    delete_max_share: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="The mass-delete guard: a partition deleting more of its ledger than this "
        "deletes nothing until confirmed.",
    )
    delete_max_rows: int = Field(
        default=10_000, ge=0, description="The mass-delete guard: most rows a partition deletes."
    )
    delete_archive_values: dict[str, str] = Field(
        default_factory=dict,
        description='Archive mode: JSON of field → value, e.g. {"StageName": "Closed Lost"}.',
    )
    upload_compression: Literal["auto", "gzip", "none"] = Field(
        default="auto",
        description="Bulk job CSVs uploaded gzipped (Content-Encoding: gzip) or plain (none); "
        "auto: gzip, except into the local sandbox `demo` and `ui` start (loopback, where "
        "compression only costs CPU). An org that refuses gzip gets plain uploads.",
    )
    schedule_cron: str = Field(default="0 2 * * *", description="The nightly schedule.")
    schedule_timezone: str = Field(default="UTC", description="The schedule's time zone.")
    dagster_home: str | None = Field(
        default=None,
        validation_alias="DAGSTER_HOME",
        description="Dagster's own variable; the commands default it to ./.dagster_home.",
    )

    def salesforce(self) -> SalesforceCredentials:
        """The `SALESFORCE_*` variables as credentials (none set: not configured)."""
        return SalesforceCredentials.from_env(os.environ)

    def salesforce_variables_set(self) -> dict[str, str]:
        """Each credential field whose `SALESFORCE_*` variable is set now, with that name."""
        return {field: name for field, name in ENV_VARIABLES.items() if os.environ.get(name)}

    def resolved_upload_compression(self) -> Literal["gzip", "none"]:
        """How the runs upload: `auto` is gzip here (the commands pin their sandbox's choice)."""
        return upload_compression_for(self.upload_compression, local_sandbox=False)

    def commands_dagster_home(self) -> Path:
        """Where `demo`, `sync` and `ui` keep run history: DAGSTER_HOME, else ./.dagster_home."""
        return Path(self.dagster_home) if self.dagster_home else DEMO_DAGSTER_HOME


def upload_compression_for(
    choice: Literal["auto", "gzip", "none"], *, local_sandbox: bool
) -> Literal["gzip", "none"]:
    """`SYNC_UPLOAD_COMPRESSION` resolved: `auto` is plain into the commands' own sandbox."""
    if choice == "auto":
        return "none" if local_sandbox else "gzip"
    return choice


@contextlib.contextmanager
def local_sandbox_env(variables: Mapping[str, str]) -> Iterator[None]:
    """`salesforce_env` for the local sandbox a command started, with its upload compression.

    The runs see the sandbox as any org (`SALESFORCE_*`); `SYNC_UPLOAD_COMPRESSION` resolved for
    it is what tells them it is on loopback, where gzip only costs CPU.
    """
    compression = upload_compression_for(SyncSettings().upload_compression, local_sandbox=True)
    before = os.environ.get(UPLOAD_COMPRESSION_VARIABLE)
    os.environ[UPLOAD_COMPRESSION_VARIABLE] = compression
    try:
        with salesforce_env(variables):
            yield
    finally:
        if before is None:
            del os.environ[UPLOAD_COMPRESSION_VARIABLE]
        else:
            os.environ[UPLOAD_COMPRESSION_VARIABLE] = before


@contextlib.contextmanager
def salesforce_env(variables: Mapping[str, str]) -> Iterator[None]:
    """Within the block, these `SALESFORCE_*` variables name the org.

    For this process and the runs it starts; the variables set before are restored after.
    """
    before = {name: value for name, value in os.environ.items() if name.startswith("SALESFORCE_")}
    for name in before:
        del os.environ[name]
    os.environ.update(variables)
    try:
        yield
    finally:
        for name in [name for name in os.environ if name.startswith("SALESFORCE_")]:
            del os.environ[name]
        os.environ.update(before)


def use_dagster_home(home: Path) -> None:
    """Make `home` this process's DAGSTER_HOME (and its children's)."""
    os.environ["DAGSTER_HOME"] = str(home.resolve())


def configuration_env() -> dict[str, str]:
    """The variables that configure a run (paths, org, alerts, Dagster home), as set now."""
    return {
        name: value
        for name, value in os.environ.items()
        if name.startswith(_CONFIGURATION_PREFIXES)
    }


def adopt_configuration_env(env: Mapping[str, str]) -> None:
    """Make this process's configuration exactly `env` (a worker forked from an older server)."""
    for name in [name for name in os.environ if name.startswith(_CONFIGURATION_PREFIXES)]:
        del os.environ[name]
    os.environ.update(env)
