"""One small storage layer over fsspec for the state and landing dirs (local path or object-store URL)."""

import io
import os
import uuid
from collections.abc import Callable, Iterable
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

import fsspec
import polars as pl
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel

ModelT = TypeVar("ModelT", bound=BaseModel)
ParquetCompression = Literal["zstd", "lz4", "snappy", "uncompressed"]


class StateStore:
    """A directory tree addressed by relative paths ("ledger/partition=3.parquet").

    Every write is atomic: on a local disk the bytes go to a temporary name in the same folder
    and are renamed over the target (readers see the old file or the new one, never half of
    one); on an object store a single PUT is atomic by itself.
    """

    def __init__(self, root: str | os.PathLike[str], **storage_options: Any) -> None:
        fs, path = fsspec.core.url_to_fs(str(root), **storage_options)
        self._fs: fsspec.AbstractFileSystem = fs
        self._root = path.rstrip("/")
        self._display_root = str(root)

    def __repr__(self) -> str:
        # storage_options may carry credentials: show only where the store points.
        return f"StateStore({self._display_root!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self._fs, LocalFileSystem)

    def _full(self, rel: str) -> str:
        rel = rel.strip("/")
        return f"{self._root}/{rel}" if rel else self._root

    def url(self, rel: str = "") -> str:
        """The full address of `rel` (a local path, or a URL with the store's protocol)."""
        full = self._full(rel)
        return full if self.is_local else self._fs.unstrip_protocol(full)

    def exists(self, rel: str) -> bool:
        return bool(self._fs.exists(self._full(rel)))

    def list_names(self, rel: str = "") -> list[str]:
        """Names of the entries directly under `rel` (files and folders), sorted; [] if none."""
        full = self._full(rel)
        if not self._fs.isdir(full):
            return []
        return sorted(
            Path(str(entry).rstrip("/")).name for entry in self._fs.ls(full, detail=False)
        )

    def delete(self, rel: str) -> None:
        """Remove a file or a whole folder; nothing happens when it does not exist."""
        full = self._full(rel)
        if self._fs.exists(full):
            self._fs.rm(full, recursive=True)

    def version(self, rel: str) -> str:
        """A key that changes whenever the file at `rel` is replaced; "" when there is none.

        fsspec's `ukey`: a hash of the file's info (local: inode, size, mtime; object stores:
        ETag and modification time). An atomic replace always changes it.
        """
        full = self._full(rel)
        return str(self._fs.ukey(full)) if self._fs.exists(full) else ""

    def size(self, rel: str) -> int:
        return int(self._fs.size(self._full(rel)))

    def open_read(self, rel: str) -> BinaryIO:
        """A binary file object for reading `rel` (for readers that seek, e.g. Parquet footers)."""
        return self._fs.open(self._full(rel), "rb")

    def read_bytes(self, rel: str) -> bytes:
        return bytes(self._fs.cat_file(self._full(rel)))

    def write_bytes(self, rel: str, data: bytes) -> None:
        full = self._full(rel)
        if not self.is_local:
            self._fs.pipe_file(full, data)
            return
        self._replace_atomically(full, lambda tmp: Path(tmp).write_bytes(data))

    def read_parquet(self, rel: str, columns: list[str] | None = None) -> pl.DataFrame:
        if self.is_local:
            return pl.read_parquet(self._full(rel), columns=columns)
        with self._fs.open(self._full(rel), "rb") as handle:
            return pl.read_parquet(handle, columns=columns)

    def parquet_rows(self, rel: str) -> int:
        """The rows of a Parquet file, from its footer (no column is read)."""
        with self._fs.open(self._full(rel), "rb") as handle:
            return int(pq.read_metadata(handle).num_rows)

    def scan_parquet(
        self, rels: list[str], *, row_index: str | None = None, row_index_offset: int = 0
    ) -> pl.LazyFrame:
        """A lazy scan over one or more Parquet files (read eagerly when not on a local disk).

        `row_index` names a leading column numbering the rows from `row_index_offset`.
        """
        if self.is_local:
            return pl.scan_parquet(
                [self._full(rel) for rel in rels],
                row_index_name=row_index,
                row_index_offset=row_index_offset,
            )
        rows = pl.concat([self.read_parquet(rel) for rel in rels], how="vertical").lazy()
        return rows if row_index is None else rows.with_row_index(row_index, row_index_offset)

    def write_parquet(
        self,
        rel: str,
        frame: pl.DataFrame,
        *,
        compression: ParquetCompression = "zstd",
        statistics: bool = True,
    ) -> None:
        """Write a frame as Parquet; "lz4" without statistics suits intermediate files."""

        def write(target: str | io.BytesIO) -> None:
            frame.write_parquet(target, compression=compression, statistics=statistics)

        self._write_with(rel, write)

    def write_parquet_parts(
        self,
        rel: str,
        parts: Iterable[pl.DataFrame],
        *,
        compression: ParquetCompression = "zstd",
        statistics: bool = True,
    ) -> None:
        """Write frames of one schema (at least one) as one Parquet file, a row group or more each.

        The parts are made while the file is written: at most two are held at a time.
        """

        def write(target: str | io.BytesIO) -> None:
            remaining = iter(parts)
            first = next(remaining, None)
            if first is None:
                raise ValueError(f"no rows to write to {rel}, not even an empty frame")
            second = next(remaining, None)
            if second is None:
                # One part: polars' own writer is the faster one.
                first.write_parquet(target, compression=compression, statistics=statistics)
                return
            # String views as they are: converting them to Arrow's large strings copies the text.
            as_arrow = partial(pl.DataFrame.to_arrow, compat_level=pl.CompatLevel.newest())
            tables = map(as_arrow, chain([first, second], remaining))
            head = next(tables)
            with pq.ParquetWriter(
                target, head.schema, compression=compression, write_statistics=statistics
            ) as writer:
                for table in chain([head], tables):
                    writer.write_table(table)

        self._write_with(rel, write)

    def _write_with(self, rel: str, write: Callable[[str | io.BytesIO], None]) -> None:
        full = self._full(rel)
        if not self.is_local:
            buffer = io.BytesIO()
            write(buffer)
            self._fs.pipe_file(full, buffer.getvalue())
            return
        self._replace_atomically(full, write)

    def read_json(self, rel: str, model: type[ModelT]) -> ModelT:
        return model.model_validate_json(self.read_bytes(rel))

    def write_json(self, rel: str, value: BaseModel) -> None:
        self.write_bytes(rel, value.model_dump_json(indent=2).encode())

    def local_path(self, rel: str) -> Path:
        """The path of `rel` on the local disk; only for local stores (e.g. for a CSV reader)."""
        if not self.is_local:
            raise ValueError(f"{self!r} is not on the local disk")
        return Path(self._full(rel))

    def _replace_atomically(self, full: str, write: Callable[[str], object]) -> None:
        target = Path(full)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            write(str(temporary))
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
