"""Drift, below Dagster: what the org holds for a partition against what the ledger says it confirmed, and the repair.

The partition's records are read back with one Bulk API 2.0 ``queryAll`` job (deleted records
included, so a deletion is seen with who made it), page by page to Parquet, each page's values
normalised to the text the sync sends and hashed as the ledger is (`drops/inbound.py`). Rows
whose hash differs from the ledger's are compared field by field with what was sent (the
staged file of the drop the ledger names), and each drifted field takes the mapping's policy:
`overwrite` (the repair makes the next load resend the row) or `report` (left alone, reported
once). Incremental where it can be: only records whose ``SystemModstamp`` moved since the last
check are read, unless a full check is asked for.
"""

import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel

from sync_assets.drops.contract import DropContract
from sync_assets.drops.inbound import org_rows
from sync_assets.partition_load import resend_on_next_load
from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.queries import soql_literal
from sync_assets.salesforce.query_export import PAGE_RECORDS, result_pages, run_query_job
from sync_assets.state.columns import EXTERNAL_ID_FIELD, ROW_HASH
from sync_assets.state.layout import StagingFiles, drift_folder
from sync_assets.state.ledger import load_ledger
from sync_assets.storage import StateStore

Usernames = Callable[[list[str]], dict[str, str]]
"""Username by User Id, for the ids given (a SOQL query on User)."""

Mode = Literal["full", "incremental"]

REPORT_SCHEMA = pl.Schema(
    {
        "external_id": pl.String(),
        "kind": pl.String(),  # changed | missing (from the org) | unknown (to the ledger)
        "field": pl.String(),  # the drifted field of a changed row; null: the whole row
        "ours": pl.String(),  # what the sync sent, as Bulk CSV text
        "theirs": pl.String(),  # what the org holds, as the sync would send it
        "policy": pl.String(),  # overwrite (resent by the next load) | report (left alone)
        "salesforce_id": pl.String(),
        "modified_by_id": pl.String(),
        "modified_by": pl.String(),  # the User's Username
        "modified_at": pl.String(),  # SystemModstamp
    }
)
_PAGE_AUDIT = {
    "Id": "salesforce_id",
    "SystemModstamp": "modified_at",
    "LastModifiedById": "modified_by_id",
}
_REPORTED_SCHEMA = pl.Schema({"external_id": pl.String(), "modified_at": pl.String()})

# A record saved in a transaction that began before the last check's query job and committed
# after it carries the earlier SystemModstamp: an incremental check reads from this much before.
DEFAULT_OVERLAP = timedelta(minutes=5)
_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"


class DriftCounts(BaseModel):
    """Where the read records went; ``changed + missing + unknown`` rows drifted."""

    read: int
    changed: int
    missing: int
    unknown: int
    fields: int
    """Drifted field values of changed rows."""
    to_resend: int
    """Rows the repair makes the next load resend (an `overwrite` field drifted, or missing)."""
    left_alone: int
    """Rows reported and left alone (only `report` fields drifted, or unknown to the ledger)."""
    already_reported: int
    """Left-alone rows an earlier check reported, unchanged since (not reported again)."""

    @property
    def drifted(self) -> int:
        return self.changed + self.missing + self.unknown


class DriftCheck(BaseModel):
    """One drift check of a partition (``check.json``): the next incremental check starts here."""

    partition: str
    mode: Mode
    since: str | None
    job_id: str
    job_created: str
    counts: DriftCounts
    report_file: str
    query_seconds: float
    compare_seconds: float


def check_path(partition: str) -> str:
    return f"{drift_folder(partition)}/check.json"


def report_path(partition: str) -> str:
    return f"{drift_folder(partition)}/drifted.parquet"


def _reported_path(partition: str) -> str:
    return f"{drift_folder(partition)}/reported.parquet"


def last_check(state: StateStore, partition: str) -> DriftCheck | None:
    path = check_path(partition)
    return state.read_json(path, DriftCheck) if state.exists(path) else None


def drift_soql(contract: DropContract, partition: str, since: datetime | None) -> str:
    """The query of a partition's records: the sent fields and who changed them last, when."""
    fields = dict.fromkeys([*contract.salesforce_fields, *_PAGE_AUDIT, "IsDeleted"])
    where = f"{contract.partition_field} = {soql_literal(partition)}"
    if since is not None:
        where += f" AND SystemModstamp > {since.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return f"SELECT {', '.join(fields)} FROM {contract.mapping.object} WHERE {where}"


class DriftChecker:
    """Checks one partition's records in the org against its ledger and reports the drift."""

    def __init__(
        self, bulk: BulkApi, state: StateStore, contract: DropContract, usernames: Usernames
    ) -> None:
        self.bulk = bulk
        self.state = state
        self.contract = contract
        self.usernames = usernames

    def check(
        self, partition: str, full: bool = False, overlap: timedelta = DEFAULT_OVERLAP
    ) -> DriftCheck:
        """Read the partition's records (all, or changed since the last check), report the drift.

        An incremental check reads the records whose SystemModstamp is later than the last
        check's query job's creation less ``overlap``.
        """
        previous = None if full else last_check(self.state, partition)
        since = None
        if previous is not None:
            since = datetime.strptime(previous.job_created, _STAMP_FORMAT) - overlap
        started = time.monotonic()
        job = run_query_job(self.bulk, drift_soql(self.contract, partition, since), "queryAll")
        with tempfile.TemporaryDirectory(prefix="drift-") as folder:
            pages = list(self._parquet_pages(job.id, Path(folder)))
            queried = time.monotonic()
            lines, read, already = self._compare(partition, pages, full=since is None)
        counts = _counts(lines, read, already)
        self.state.write_parquet(report_path(partition), lines)
        result = DriftCheck(
            partition=partition,
            mode="incremental" if since is not None else "full",
            since=None if since is None else since.isoformat(),
            job_id=job.id,
            job_created=str(job.createdDate),
            counts=counts,
            report_file=self.state.url(report_path(partition)),
            query_seconds=round(queried - started, 3),
            compare_seconds=round(time.monotonic() - queried, 3),
        )
        self.state.write_json(check_path(partition), result)
        return result

    # ---- reading the org ---------------------------------------------------------------------

    def _parquet_pages(self, job_id: str, folder: Path) -> Iterator[Path]:
        """Each results page normalised, hashed and written as Parquet (its CSV deleted)."""
        for csv_page in result_pages(self.bulk, job_id, folder, PAGE_RECORDS):
            # Every value as text, an empty one as null: exactly what the CSV says.
            page = pl.read_csv(csv_page, infer_schema=False)
            csv_page.unlink()
            if page.is_empty():
                continue
            rows = org_rows(page, self.contract).select(
                pl.col(EXTERNAL_ID_FIELD).alias("external_id"),
                ROW_HASH,
                *(pl.col(field).alias(name) for field, name in _PAGE_AUDIT.items()),
                (pl.col("IsDeleted").str.to_lowercase() == "true").alias("deleted"),
                *self.contract.salesforce_fields,
            )
            target = csv_page.with_suffix(".parquet")
            rows.write_parquet(target, compression="lz4", statistics=False)
            yield target

    # ---- comparing -----------------------------------------------------------------------------

    def _compare(
        self, partition: str, pages: list[Path], full: bool
    ) -> tuple[pl.DataFrame, int, int]:
        """The report's lines, the records read and the left-alone rows already reported."""
        org = pl.scan_parquet(pages) if pages else pl.LazyFrame(schema=self._page_schema())
        read = int(org.select(pl.len()).collect().item())
        ledger = load_ledger(self.state, partition).lazy()
        live = org.filter(~pl.col("deleted"))
        # A record deleted and created again (a resend) is live: only its live row counts.
        deleted = (
            org.filter(pl.col("deleted"))
            .join(live.select("external_id"), on="external_id", how="anti")
            .sort("modified_at")
            .unique("external_id", keep="last")
        )
        changed = (
            live.join(ledger.select("external_id", "row_hash", "drop_id"), on="external_id")
            .filter(pl.col(ROW_HASH) != pl.col("row_hash"))
            .collect(engine="streaming")
        )
        lines = pl.concat(
            [
                self._changed_lines(partition, changed),
                self._missing_lines(ledger, live, deleted, full),
                _whole_row_lines(live.join(ledger, on="external_id", how="anti"), "unknown"),
            ]
        )
        lines, already = self._without_already_reported(partition, lines)
        return self._with_usernames(lines), read, already

    def _page_schema(self) -> pl.Schema:
        names = ["external_id", *_PAGE_AUDIT.values(), *self.contract.salesforce_fields]
        schema = {name: pl.String() for name in names}
        return pl.Schema({**schema, ROW_HASH: pl.UInt64(), "deleted": pl.Boolean()})

    def _missing_lines(
        self, ledger: pl.LazyFrame, live: pl.LazyFrame, deleted: pl.LazyFrame, full: bool
    ) -> pl.DataFrame:
        """Ledger rows the org does not hold live: with who deleted them where the org still knows.

        A full check sees every live record, so any ledger row absent is missing; an
        incremental one sees only records deleted since the last check: a delete sets
        IsDeleted and moves SystemModstamp, which replication tools rely on (CopyStorm,
        "Deleted Record Management"). Hard deletes, merges and an emptied recycle bin leave no
        record: only a full check finds those, without who. That the deleter becomes
        LastModifiedById is the sandbox's behaviour, not confirmed in Salesforce's documentation.
        """
        audit = deleted.select("external_id", "modified_by_id", "modified_at")
        if full:
            absent = ledger.join(live, on="external_id", how="anti").join(
                audit, on="external_id", how="left"
            )
        else:
            absent = ledger.join(audit, on="external_id", how="inner")
        return _whole_row_lines(absent, "missing")

    def _changed_lines(self, partition: str, changed: pl.DataFrame) -> pl.DataFrame:
        """One line per drifted field of each changed row, from what the ledger's drop sent.

        A field sent empty under `keep` was not sent, so the org's value cannot drift from
        it. A row whose sent values are no longer staged gets one line for the whole row.
        """
        fields = self.contract.salesforce_fields
        sent = self._sent_values(partition, changed)
        joined = changed.join(sent, on=["external_id", "drop_id"], how="left")
        per_field = [
            joined.filter(
                pl.col(f"{field}|ours").is_not_null()
                & pl.col(f"{field}|ours").ne_missing(pl.col(field))
            ).select(
                "external_id",
                pl.lit("changed").alias("kind"),
                pl.lit(field).alias("field"),
                pl.col(f"{field}|ours").alias("ours"),
                pl.col(field).alias("theirs"),
                pl.lit(self.contract.mapping.drift_policy(field)).alias("policy"),
                "salesforce_id",
                "modified_by_id",
                pl.lit(None, dtype=pl.String).alias("modified_by"),
                "modified_at",
            )
            for field in fields
        ]
        unsent = _whole_row_lines(joined.filter(pl.col("_sent").is_null()).lazy(), "changed")
        return pl.concat([*per_field, unsent]).cast(dict(REPORT_SCHEMA))

    def _sent_values(self, partition: str, changed: pl.DataFrame) -> pl.DataFrame:
        """The values the ledger's rows were last sent with (each drop's staged to_send file)."""
        fields = self.contract.salesforce_fields
        empty = pl.DataFrame(
            schema={
                "external_id": pl.String(),
                "drop_id": pl.String(),
                **{f"{field}|ours": pl.String() for field in fields},
                "_sent": pl.Boolean(),
            }
        )
        scans = []
        for drop_id in changed.get_column("drop_id").unique().drop_nulls().to_list():
            path = StagingFiles.of(drop_id, partition).to_send
            if self.state.exists(path):
                scans.append(
                    self.state.scan_parquet([path])
                    .select(fields)
                    .with_columns(pl.lit(drop_id).alias("drop_id"))
                )
        if not scans:
            return empty
        keys = changed.select(pl.col("external_id").alias(EXTERNAL_ID_FIELD), "drop_id")
        sent = (
            pl.concat(scans)
            .join(keys.lazy(), on=[EXTERNAL_ID_FIELD, "drop_id"], how="semi")
            .collect(engine="streaming")
        )
        return sent.select(
            pl.col(EXTERNAL_ID_FIELD).alias("external_id"),
            "drop_id",
            *(pl.col(field).alias(f"{field}|ours") for field in fields),
            pl.lit(True).alias("_sent"),
        )

    def _without_already_reported(
        self, partition: str, lines: pl.DataFrame
    ) -> tuple[pl.DataFrame, int]:
        """Lines of left-alone rows an earlier check reported with the same SystemModstamp removed.

        The rows left alone now are remembered, so the next check reports them only if the
        org changes them again.
        """
        path = _reported_path(partition)
        earlier = (
            self.state.read_parquet(path)
            if self.state.exists(path)
            else _REPORTED_SCHEMA.to_frame()
        )
        left_alone = _left_alone(lines).select("external_id", "modified_at").unique()
        repeated = left_alone.join(earlier, on=["external_id", "modified_at"], how="semi")
        kept = lines.join(repeated, on=["external_id", "modified_at"], how="anti", nulls_equal=True)
        remembered = pl.concat([earlier, left_alone]).unique("external_id", keep="last")
        self.state.write_parquet(path, remembered)
        return kept, repeated.height

    def _with_usernames(self, lines: pl.DataFrame) -> pl.DataFrame:
        ids = lines.get_column("modified_by_id").drop_nulls().unique().to_list()
        names = self.usernames(ids) if ids else {}
        return lines.with_columns(
            pl.col("modified_by_id").replace_strict(names, default=None).alias("modified_by")
        )


def _whole_row_lines(rows: pl.LazyFrame, kind: str) -> pl.DataFrame:
    """One line for each row (missing, unknown, or changed with no sent values to compare)."""
    policy = "report" if kind == "unknown" else "overwrite"
    columns = rows.collect_schema().names()

    def column(name: str) -> pl.Expr:
        return pl.col(name) if name in columns else pl.lit(None, dtype=pl.String)

    return (
        rows.select(
            "external_id",
            pl.lit(kind).alias("kind"),
            pl.lit(None, dtype=pl.String).alias("field"),
            pl.lit(None, dtype=pl.String).alias("ours"),
            pl.lit(None, dtype=pl.String).alias("theirs"),
            pl.lit(policy).alias("policy"),
            column("salesforce_id"),
            column("modified_by_id"),
            pl.lit(None, dtype=pl.String).alias("modified_by"),
            column("modified_at"),
        )
        .collect(engine="streaming")
        .cast(dict(REPORT_SCHEMA))
    )


def _left_alone(lines: pl.DataFrame) -> pl.DataFrame:
    """Lines of rows with no `overwrite` line: the repair leaves them as the org has them."""
    resent = lines.filter(pl.col("policy") == "overwrite").select("external_id")
    return lines.join(resent, on="external_id", how="anti")


def _counts(lines: pl.DataFrame, read: int, already: int) -> DriftCounts:
    rows = lines.group_by("kind").agg(pl.col("external_id").n_unique())
    by_kind = dict(zip(rows.get_column("kind"), rows.get_column("external_id"), strict=True))
    resend = lines.filter(pl.col("policy") == "overwrite").get_column("external_id").n_unique()
    return DriftCounts(
        read=read,
        changed=by_kind.get("changed", 0),
        missing=by_kind.get("missing", 0),
        unknown=by_kind.get("unknown", 0),
        fields=lines.filter(pl.col("field").is_not_null()).height,
        to_resend=resend,
        left_alone=_left_alone(lines).get_column("external_id").n_unique(),
        already_reported=already,
    )


def repair_drift(state: StateStore, partition: str) -> int:
    """Make the next load resend the rows the last check found drifted under `overwrite`.

    Rows left alone (`report` fields only, unknown to the ledger) are not touched. Returns the
    rows marked.
    """
    path = report_path(partition)
    if not state.exists(path):
        return 0
    lines = state.read_parquet(path, columns=["external_id", "policy"])
    resend = lines.filter(pl.col("policy") == "overwrite").get_column("external_id").unique()
    return resend_on_next_load(state, partition, resend)
