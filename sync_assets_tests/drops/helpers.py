"""Small drops for the tests: valid rows from the generator, written as Parquet or CSV."""

import datetime as dt
import io

import numpy as np
import polars as pl

from sync_assets.drops.generate import fresh_rows
from sync_assets.drops.model import Manifest
from sync_assets.drops.reader import MANIFEST_NAME
from sync_assets.storage import StateStore


def valid_rows(n: int = 50, accounts: int = 10, seed: int = 0) -> pl.DataFrame:
    return fresh_rows(np.random.default_rng(seed), n, accounts, first_key=0)


def as_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col(pl.Date).cast(pl.String),
        pl.col(pl.Datetime).dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"),
        pl.exclude(pl.String, pl.Date, pl.Datetime).cast(pl.String),
    )


def write_drop(
    landing: StateStore,
    drop_id: str,
    parts: list[pl.DataFrame],
    file_format: str = "parquet",
    row_count: int | None = None,
) -> None:
    files = []
    for number, part in enumerate(parts):
        name = f"part-{number:05d}.{file_format}"
        if file_format == "parquet":
            landing.write_parquet(f"{drop_id}/{name}", part)
        else:
            buffer = io.BytesIO()
            part.write_csv(buffer)
            landing.write_bytes(f"{drop_id}/{name}", buffer.getvalue())
        files.append(name)
    manifest = Manifest(
        drop_id=drop_id,
        row_count=sum(p.height for p in parts) if row_count is None else row_count,
        files=files,
        created_at=dt.datetime(2026, 11, 28, tzinfo=dt.UTC),
    )
    landing.write_json(f"{drop_id}/{MANIFEST_NAME}", manifest)


def write_files(
    landing: StateStore,
    drop_id: str,
    files: dict[str, bytes],
    row_count: int,
    manifest: bytes | None = None,
) -> None:
    """Part files as given (any writer's bytes), then the manifest (the given bytes; none if b"")."""
    for name, data in files.items():
        landing.write_bytes(f"{drop_id}/{name}", data)
    if manifest is None:
        manifest = (
            Manifest(
                drop_id=drop_id,
                row_count=row_count,
                files=list(files),
                created_at=dt.datetime(2026, 11, 28, tzinfo=dt.UTC),
            )
            .model_dump_json()
            .encode()
        )
    if manifest:
        landing.write_bytes(f"{drop_id}/{MANIFEST_NAME}", manifest)
