"""The loader's checkpoint per drop and partition: which Bulk jobs exist, what they carried, how they ended."""

import threading
from datetime import UTC, datetime
from enum import StrEnum

import polars as pl
from pydantic import BaseModel, Field

from sync_assets.state.columns import EXTERNAL_ID_FIELD, ROW_HASH
from sync_assets.state.layout import checkpoint_folder
from sync_assets.storage import StateStore


class JobStatus(StrEnum):
    """``created``: may be running, collect it. ``collected``/``abandoned``: its outcome is recorded.

    ``abort_failed``: abandoned (its rows resent), but the org did not take the abort, so the job
    may still be Open: the next load aborts it.
    """

    CREATED = "created"
    COLLECTED = "collected"
    ABANDONED = "abandoned"
    ABORT_FAILED = "abort_failed"


class RowStatus(StrEnum):
    """How a row sent in a job ended.

    ``applied``: Salesforce saved the row (an upsert job that did not fail it, whose successes
    were not downloaded); how many of the load's applied rows created a record is counted once at
    the end of the load (`CreatedCount`), not row by row, and their Ids are not asked for.
    """

    CREATED = "created"
    UPDATED = "updated"
    APPLIED = "applied"
    PERMANENT = "permanent"
    TRANSIENT = "transient"


# The row hash keeps whatever type staging gives it (the drops pipeline decides); the empty
# schema's String is only a placeholder, cast to the staged type where outcomes meet rows.
OUTCOME_SCHEMA: dict[str, type[pl.DataType]] = {
    EXTERNAL_ID_FIELD: pl.String,
    ROW_HASH: pl.String,
    "status": pl.String,
    "salesforce_id": pl.String,
    "error_code": pl.String,
    "error": pl.String,
    "job_id": pl.String,
    "sequence": pl.Int64,
}


class CheckpointedJob(BaseModel):
    sequence: int
    job_id: str
    records: int
    created_at: datetime
    server_created: datetime | None = Field(
        default=None,
        description="The job's createdDate by Salesforce's clock: no record it saved is older.",
    )
    status: JobStatus = JobStatus.CREATED


class CreatedCount(BaseModel):
    """The load's records Salesforce counted as created, and how many applied rows it covered."""

    records: int = Field(ge=0)
    applied_rows: int = Field(ge=0)


class LoadCheckpoint(BaseModel):
    drop_id: str
    partition: str
    jobs: list[CheckpointedJob] = Field(default_factory=list)
    created: CreatedCount | None = Field(
        default=None,
        description="Kept so that a re-run does not count again: by then later loads may have "
        "created records too.",
    )


class CheckpointStore:
    """Checkpoint files in the drop's partition's `checkpoint_folder` of the state store.

    * ``jobs.json``: every job created, rewritten atomically the moment a job id is known;
    * ``rows/<sequence>.parquet``: the keys a job carries, written *before* the job is created,
      so a checkpointed job id always has its rows on record;
    * ``outcomes/<sequence>.parquet``: one row per carried row and how it ended, written before the
      job is marked collected, so a crash never loses a result Salesforce already produced;
    * ``jobs.json`` also keeps how many records the load created (`CreatedCount`), so a re-run
      neither asks again nor counts differently.
    """

    def __init__(
        self, store: StateStore, drop_id: str, partition: str, folder: str | None = None
    ) -> None:
        """The drop's partition's checkpoint, or the one in ``folder`` (a resend's, the deletes')."""
        self.store = store
        self.drop_id = drop_id
        self.partition = partition
        self.prefix = folder or checkpoint_folder(drop_id, partition)
        self._lock = threading.Lock()
        self._state = self._read()
        self._next_sequence = max((job.sequence for job in self._state.jobs), default=-1) + 1
        self._next_sequence = max(self._next_sequence, self._highest_rows_file() + 1)

    @property
    def next_sequence(self) -> int:
        """The sequence the next job will get: outcomes from here on belong to later sends."""
        with self._lock:
            return self._next_sequence

    @property
    def jobs(self) -> list[CheckpointedJob]:
        with self._lock:
            return [job.model_copy() for job in self._state.jobs]

    def reserve_sequence(self, keys: pl.DataFrame) -> int:
        """Record the keys a job is about to carry; returns the number that names its files.

        The keys are the external id and row hash, and for a delete the Salesforce Id its
        results name the rows by.
        """
        with self._lock:
            sequence = self._next_sequence
            self._next_sequence += 1
        self.store.write_parquet(self._rows_file(sequence), keys)
        return sequence

    def record_created(
        self, sequence: int, job_id: str, records: int, server_created: datetime | None = None
    ) -> None:
        with self._lock:
            self._state.jobs.append(
                CheckpointedJob(
                    sequence=sequence,
                    job_id=job_id,
                    records=records,
                    created_at=datetime.now(UTC),
                    server_created=server_created,
                )
            )
            self._write()

    @property
    def created_count(self) -> CreatedCount | None:
        with self._lock:
            return self._state.created

    def record_created_count(self, count: CreatedCount) -> None:
        with self._lock:
            self._state.created = count
            self._write()

    def record_outcome(self, sequence: int, outcome: pl.DataFrame, status: JobStatus) -> None:
        """Persist how every row of job ``sequence`` ended; mark the job done if it has an id."""
        self.store.write_parquet(self._outcome_file(sequence), outcome.select(list(OUTCOME_SCHEMA)))
        with self._lock:
            for job in self._state.jobs:
                if job.sequence == sequence:
                    job.status = status
            self._write()

    def job_rows(self, sequence: int) -> pl.DataFrame:
        return self.store.read_parquet(self._rows_file(sequence))

    def outcomes(self) -> pl.LazyFrame:
        """Every recorded row outcome, oldest job first (a scan: read only the columns you need)."""
        # One file per job, scanned in sequence order: no sort needed (it would copy every column).
        sequences = sorted(int(name.removesuffix(".parquet")) for name in self._outcome_names())
        if not sequences:
            return pl.LazyFrame(schema=OUTCOME_SCHEMA)
        return self.store.scan_parquet([self._outcome_file(sequence) for sequence in sequences])

    def _outcome_names(self) -> list[str]:
        return [
            name
            for name in self.store.list_names(f"{self.prefix}/outcomes")
            if name.endswith(".parquet")
        ]

    def _highest_rows_file(self) -> int:
        names = self.store.list_names(f"{self.prefix}/rows")
        return max(
            (int(name.removesuffix(".parquet")) for name in names if name.endswith(".parquet")),
            default=-1,
        )

    def _rows_file(self, sequence: int) -> str:
        return f"{self.prefix}/rows/{sequence:06d}.parquet"

    def _outcome_file(self, sequence: int) -> str:
        return f"{self.prefix}/outcomes/{sequence:06d}.parquet"

    def _read(self) -> LoadCheckpoint:
        path = f"{self.prefix}/jobs.json"
        if self.store.exists(path):
            return self.store.read_json(path, LoadCheckpoint)
        return LoadCheckpoint(drop_id=self.drop_id, partition=self.partition)

    def _write(self) -> None:
        self.store.write_json(f"{self.prefix}/jobs.json", self._state)


def empty_outcome() -> pl.DataFrame:
    return pl.DataFrame(schema=OUTCOME_SCHEMA)
