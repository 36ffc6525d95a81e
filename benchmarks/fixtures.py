"""What the benchmarks run on: cached generated drops, landing copies, sandboxes wired by env."""

import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel

from sync_assets.drops.generate import GenerateOptions, fresh_rows, generate_drop, inject_bad_rows
from sync_assets.drops.model import Manifest
from sync_assets.drops.reader import MANIFEST_NAME, open_drop, read_manifest
from sync_assets.drops.staging import load_staged, stage_drop
from sync_assets.salesforce.planning import send_columns
from sync_assets.sandbox.runner import SandboxHandle, running_sandbox
from sync_assets.state.layout import PARTITION_KEYS
from sync_assets.storage import StateStore

BASE_DROP = "base"
BAD_FRACTION = 0.001
# Drops larger than this are generated in chunks of this many rows, so generation stays in memory.
GENERATION_CHUNK = 2_000_000
ROWS_PER_FILE = 500_000
_CONFIGURATION_PREFIXES = ("SALESFORCE_", "SYNC_", "DAGSTER_HOME")
NO_BYTECODE_VARIABLE = "PYTHONDONTWRITEBYTECODE"
PYCACHE_VARIABLE = "PYTHONPYCACHEPREFIX"


def use_bytecode_cache(directory: Path) -> bool:
    """Let the processes started from now on cache compiled modules in ``directory``.

    An installed deployment has its bytecode compiled; an environment with
    PYTHONDONTWRITEBYTECODE=1 and no .pyc files compiles Dagster from source in every process.
    Returns whether that variable was set.
    """
    was_set = bool(os.environ.pop(NO_BYTECODE_VARIABLE, None))
    os.environ[PYCACHE_VARIABLE] = str(directory)
    return was_set


class DropSpec(BaseModel):
    rows: int
    accounts: int
    seed: int = 0

    @property
    def key(self) -> str:
        return f"rows{self.rows}-accounts{self.accounts}-seed{self.seed}"


class DropCache:
    """Generated drops kept between benchmark runs (generation is not what is measured)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def landing(self, spec: DropSpec) -> Path:
        """A landing dir holding drop ``base`` of ``spec``, generated on first use."""
        landing = self.root / spec.key
        if not (landing / BASE_DROP / MANIFEST_NAME).exists():
            shutil.rmtree(landing / BASE_DROP, ignore_errors=True)
            if spec.rows > GENERATION_CHUNK:
                _generate_in_chunks(landing, spec)
            else:
                generate_drop(
                    landing,
                    GenerateOptions(
                        drop_id=BASE_DROP,
                        rows=spec.rows,
                        accounts=spec.accounts,
                        seed=spec.seed,
                        bad_fraction=BAD_FRACTION,
                        rows_per_file=ROWS_PER_FILE,
                    ),
                )
        return landing

    def changed(self, spec: DropSpec, fraction: float) -> str:
        """The id of the next night's drop with ``fraction`` of the rows changed (nothing new or gone)."""
        landing = self.landing(spec)
        drop_id = f"changed-{round(fraction * 100)}pct"
        if not (landing / drop_id / MANIFEST_NAME).exists():
            shutil.rmtree(landing / drop_id, ignore_errors=True)
            generate_drop(
                landing,
                GenerateOptions(
                    drop_id=drop_id,
                    accounts=spec.accounts,
                    seed=spec.seed + 1,
                    based_on=BASE_DROP,
                    changed=fraction,
                    new=0.0,
                    deleted=0.0,
                    rows_per_file=ROWS_PER_FILE,
                ),
            )
        return drop_id


def _generate_in_chunks(landing: Path, spec: DropSpec) -> None:
    """A big drop written chunk by chunk with the project's row generator.

    Each chunk draws its own account permutation, so the heaviest accounts differ between chunks:
    the skew per account is flatter than one `generate_drop` of the same size would make.
    """
    store = StateStore(landing)
    files: list[str] = []
    for chunk, first in enumerate(range(0, spec.rows, GENERATION_CHUNK)):
        count = min(GENERATION_CHUNK, spec.rows - first)
        rng = np.random.default_rng([spec.seed, chunk])
        rows = inject_bad_rows(fresh_rows(rng, count, spec.accounts, first), rng, BAD_FRACTION)
        rows = rows[rng.permutation(rows.height)]
        for start in range(0, rows.height, ROWS_PER_FILE):
            name = f"part-{len(files):05d}.parquet"
            store.write_parquet(f"{BASE_DROP}/{name}", rows.slice(start, ROWS_PER_FILE))
            files.append(name)
        del rows
    manifest = Manifest(
        drop_id=BASE_DROP,
        row_count=spec.rows,
        files=files,
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
    )
    store.write_json(f"{BASE_DROP}/{MANIFEST_NAME}", manifest)


def land(source: Path, source_drop: str, target: Path, drop_id: str) -> str:
    """Land a copy of a cached drop under a new id (hard links: no bytes copied)."""
    manifest = read_manifest(StateStore(source), source_drop)
    folder = target / drop_id
    folder.mkdir(parents=True, exist_ok=True)
    for name in manifest.files:
        os.link(source / source_drop / name, folder / name)
    renamed = manifest.model_copy(
        update={"drop_id": drop_id, "created_at": dt.datetime.now(dt.UTC).replace(microsecond=0)}
    )
    StateStore(target).write_json(f"{drop_id}/{MANIFEST_NAME}", renamed)
    return drop_id


class Night(BaseModel):
    """Where one series of nights keeps its drops, state and Dagster history."""

    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    def env(
        self,
        sandbox: SandboxHandle,
        bytecode_cache: bool = True,
        instance_url: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """This process's environment, configured for the sandbox as if it were a real org.

        Without ``bytecode_cache`` every interpreter compiles every module it imports from source.
        ``instance_url`` replaces the sandbox's own (a proxy in front of it: the session flow never
        asks the org for its URL, so every call goes there); ``extra`` (`SYNC_*` settings) is
        added last.
        """
        connection = sandbox.connection
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(_CONFIGURATION_PREFIXES)
        }
        if not bytecode_cache:
            env.pop(PYCACHE_VARIABLE, None)
            env[NO_BYTECODE_VARIABLE] = "1"
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        return (
            env
            | {
                "SYNC_LANDING_DIR": str(self.landing),
                "SYNC_STATE_DIR": str(self.state),
                "DAGSTER_HOME": str(self.dagster_home),
                "SALESFORCE_INSTANCE_URL": instance_url or connection.instance_url,
                "SALESFORCE_ACCESS_TOKEN": connection.access_token.get_secret_value(),
                "SALESFORCE_CA_BUNDLE": str(connection.ca_cert),
            }
            | (extra or {})
        )


@contextlib.contextmanager
def fresh_sandbox(data_dir: Path, **options: Any) -> Iterator[SandboxHandle]:
    """A sandbox on an empty data dir (no records from an earlier benchmark)."""
    shutil.rmtree(data_dir, ignore_errors=True)
    with running_sandbox(data_dir, **options) as sandbox:
        yield sandbox


def staged_rows(state: Path, drop_id: str, partitions: list[str] = PARTITION_KEYS) -> pl.DataFrame:
    """The staged rows of a drop's partitions, in send order, with the loader's columns."""
    store = StateStore(state)
    files = []
    for key in partitions:
        staged = load_staged(store, drop_id, key)
        if staged is None:
            raise RuntimeError(f"drop {drop_id} partition {key} is not staged in {state}")
        files.append(staged.to_send)
    return pl.concat([store.read_parquet(path) for path in files])


def in_drop_order(landing: Path, drop_id: str, rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` (staged) in the order their keys appear in the drop's files: the export order."""
    order = (
        open_drop(StateStore(landing), drop_id)
        .scan()
        .select(pl.col("opportunity_key").alias("External_Id__c"))
        .with_row_index("_file_position")
        .unique("External_Id__c", keep="first")
        .collect()
    )
    return (
        rows.join(order, on="External_Id__c", how="left")
        .sort("_file_position")
        .drop("_file_position")
    )


def stage_everything(landing: Path, state: Path, drop_id: str) -> None:
    stage_drop(StateStore(landing), StateStore(state), drop_id)


def write_peer_csv(rows: pl.DataFrame, path: Path) -> None:
    """The rows as one Bulk API CSV (Salesforce columns only), as a user would hand to the peer."""
    rows.select(send_columns(rows)).write_csv(path, line_terminator="\n")
