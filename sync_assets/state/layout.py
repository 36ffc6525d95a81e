"""Where every file of the state dir lives, derived from a partition key and a drop id in one place.

The state dir is laid out per partition: a partition key is normalised here, once, and every
path below is built from the normalised key. The layout is part of the contract (operators read
these files, and a state dir must keep working across versions), so it only ever grows.
"""

from pydantic import BaseModel, ConfigDict

PARTITION_COUNT = 10
PARTITION_KEYS: list[str] = [str(index) for index in range(PARTITION_COUNT)]


def partition_label(partition: str | int) -> str:
    """Normalise a partition given as "3" or 3 to "3", refusing anything outside 0–9."""
    label = str(partition)
    if label not in PARTITION_KEYS:
        raise ValueError(f"partition {partition!r} is not one of {PARTITION_KEYS}")
    return label


ORG_RECORD_PATH = "org.json"
"""Which Salesforce org the ledgers describe, recorded on the first night (`state/org.py`)."""

API_VERSION_NOTICE_PATH = "notices/api-version-warning.json"
"""The retiring-API-version warning already alerted about (alerted once per warning)."""

NOTICES_LOCK_PATH = "locks/notices.lock"
"""Held while a notice is checked and recorded, so ten partition runs alert once."""


STAGING_FOLDER = "staging"
"""Holds a folder per staged drop (`StagingFiles`)."""

FAILED_FOLDER = "failed"
"""Holds a folder per drop whose load recorded failed rows (`failed_rows_path`)."""


def resend_checkpoint_folder(drop_id: str, partition: str | int, attempt: str) -> str:
    """The loader's checkpoint of one resend of a drop's partition's failed rows (`attempt`: the run).

    A resend has its own: the load's checkpoint already holds these rows' failures as final.
    """
    return f"checkpoints/{drop_id}/resends/{attempt}/partition={partition_label(partition)}"


def pace_path(partition: str | int) -> str:
    """How fast a partition's Bulk jobs finished in its last load (times the next load's polls)."""
    return f"pace/partition={partition_label(partition)}.json"


ORG_PACE_PATH = "pace/org.json"
"""The org's seconds per record as the latest load to measure them did: what a partition's first
load times its jobs by once another partition's load has seen a job finish."""


def drift_folder(partition: str | int) -> str:
    """The drift check's files of a partition: its last report, when it ran, rows already reported.

    ``drifted.parquet`` (the last check's drifted rows), ``check.json`` (its counts and the
    SystemModstamp the next incremental check starts from), ``reported.parquet`` (rows whose
    drift is left alone and was reported once).
    """
    return f"drift/partition={partition_label(partition)}"


def ledger_path(partition: str | int) -> str:
    """A partition's ledger: what Salesforce confirmed holding, across drops."""
    return f"ledger/partition={partition_label(partition)}.parquet"


def row_hash_memo_path(partition: str | int) -> str:
    """The row hash each source row of a partition's last staging got, by a hash of its cells.

    A cache (`drops/row_hash_memo.py`): lets the next staging skip turning unchanged rows into
    Salesforce text. Deleting it only makes that staging convert every row.
    """
    return f"memo/partition={partition_label(partition)}.parquet"


def partition_lock_path(partition: str | int) -> str:
    """The lock that keeps two runs of one partition apart."""
    return f"locks/partition={partition_label(partition)}.lock"


def staging_lock_path(drop_id: str) -> str:
    """The lock held while a drop is being staged."""
    return f"locks/staging-{drop_id}.lock"


def drop_census_path(drop_id: str) -> str:
    """How many rows of a drop each partition holds, recounted from the drop by the checks."""
    return f"checks/{drop_id}/rows_per_partition.json"


def failed_rows_path(drop_id: str, partition: str | int) -> str:
    """The rows of a drop's partition that failed for good in Salesforce, with their errors."""
    return f"{FAILED_FOLDER}/{drop_id}/partition={partition_label(partition)}/failed.parquet"


def checkpoint_folder(drop_id: str, partition: str | int) -> str:
    """The loader's record of the Bulk jobs of a drop's partition (see `CheckpointStore`)."""
    return f"checkpoints/{drop_id}/partition={partition_label(partition)}"


def progress_path(drop_id: str, partition: str | int) -> str:
    """How far the load of a drop's partition has got (for progress bars)."""
    return f"progress/{drop_id}/partition={partition_label(partition)}.json"


def org_metadata_path(drop_id: str) -> str:
    """The org's metadata read for a drop: every partition of the drop is validated against it."""
    return f"org/{drop_id}/metadata.json"


def plan_path(drop_id: str) -> str:
    """The last plan made of a drop (`sync-assets plan`), as JSON."""
    return f"plans/{drop_id}.json"


class StagingFiles(BaseModel):
    """The files of one staged partition of a drop, relative to the state dir."""

    model_config = ConfigDict(frozen=True)

    folder: str
    to_send: str
    rejects: str
    deleted: str
    moved_out: str
    counts_file: str

    @classmethod
    def of(cls, drop_id: str, partition: str | int) -> "StagingFiles":
        folder = f"{STAGING_FOLDER}/{drop_id}/partition={partition_label(partition)}"
        return cls(
            folder=folder,
            to_send=f"{folder}/to_send.parquet",
            rejects=f"{folder}/rejects.parquet",
            deleted=f"{folder}/deleted.parquet",
            moved_out=f"{folder}/moved_out.parquet",
            counts_file=f"{folder}/counts.json",
        )


RESTORE_RECORD_PREFIX = "restore-"


class DeleteFiles(BaseModel):
    """The files of one drop's deletes in one partition, relative to the state dir."""

    model_config = ConfigDict(frozen=True)

    deleted: str
    """Every row the night deleted (or archived): its Salesforce Id and the values it was last
    sent with, written before anything is deleted; what `sync-assets restore` upserts back."""
    held: str
    """The rows the mass-delete guard held back, for a person to look at before confirming."""
    restore_failed: str
    """Rows a restore could not upsert back, with Salesforce's error."""
    checkpoint: str
    """The delete jobs' checkpoint (see `CheckpointStore`), apart from the upserts'."""

    @classmethod
    def of(cls, drop_id: str, partition: str | int) -> "DeleteFiles":
        label = partition_label(partition)
        folder = f"deletes/{drop_id}/partition={label}"
        return cls(
            deleted=f"{folder}/deleted.parquet",
            held=f"{folder}/held.parquet",
            restore_failed=f"{folder}/restore_failed.parquet",
            checkpoint=f"checkpoints/{drop_id}/deletes/partition={label}",
        )

    @property
    def folder(self) -> str:
        return self.deleted.rsplit("/", 1)[0]

    def restore_record(self, restore_id: str) -> str:
        """What a restore of these deletes did (`RestoreResult` as JSON)."""
        return f"{self.folder}/{RESTORE_RECORD_PREFIX}{restore_id}.json"

    def restore_records(self, names: list[str]) -> list[str]:
        """The restore records among the names of this folder (`StateStore.list_names`)."""
        return [
            f"{self.folder}/{name}"
            for name in names
            if name.startswith(RESTORE_RECORD_PREFIX) and name.endswith(".json")
        ]

    def restore_checkpoint(self, restore_id: str) -> str:
        """A restore's own checkpoint: a later restore of the same rows sends them again."""
        return self.checkpoint.replace("/deletes/", f"/restore-{restore_id}/")
