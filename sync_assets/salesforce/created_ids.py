"""Which rows a load created, and their Salesforce Ids, learned by one narrow Bulk query instead of successfulResults."""

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.checkpoint import CheckpointedJob, RowStatus
from sync_assets.salesforce.queries import soql_literal
from sync_assets.salesforce.query_export import result_pages, run_query_job
from sync_assets.state.columns import EXTERNAL_ID_FIELD, PARTITION_FIELD

log = logging.getLogger(__name__)

# A job checkpointed without Salesforce's createdDate (an older checkpoint) is dated by the
# client's clock; records it created may then carry a CreatedDate this much earlier.
CLOCK_SKEW_MARGIN = timedelta(minutes=5)
# Applied rows the ledger has no Id for and the load did not create (moved in from another
# partition, or records that predate the ledger) are looked up by key while few; past this,
# one query of the whole partition is cheaper than the keys' share of the SOQL length.
MAX_KEYED_LOOKUPS = 20_000
# Bulk API 2.0 query: a SOQL statement may be 100,000 characters long (Salesforce Developer
# Limits, "SOQL and SOSL Limits": "Maximum length of SOQL statements"); the margin is kept free.
MAX_SOQL_CHARACTERS = 100_000 - 1_000


@dataclass(frozen=True)
class IdQuery:
    """What one Id lookup asks: the object, its key and partition fields, and the partition."""

    sobject: str
    partition: str
    external_id_field: str = EXTERNAL_ID_FIELD
    partition_field: str = PARTITION_FIELD


def load_started(jobs: list[CheckpointedJob]) -> datetime:
    """The earliest moment any record of this load can have been created, by Salesforce's clock."""
    moments = [
        job.server_created if job.server_created is not None else job.created_at - CLOCK_SKEW_MARGIN
        for job in jobs
    ]
    return min(moments, default=datetime.now(UTC) - CLOCK_SKEW_MARGIN)


def soql_datetime(moment: datetime) -> str:
    """A SOQL datetime literal, floored to the second (``CreatedDate >=`` keeps every record)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_applied(
    api: BulkApi,
    query: IdQuery,
    applied: pl.Series,
    known: pl.DataFrame,
    since: datetime,
) -> pl.DataFrame:
    """Created or updated, and the Id, of each applied external id (``status``, ``salesforce_id``).

    ``known``: the external ids (``EXTERNAL_ID_FIELD``) whose Id the caller holds
    (``salesforce_id``). Created rows are the partition's records with ``CreatedDate`` at or
    after ``since`` (an upsert that matched a record never changes its CreatedDate or Id) whose
    Id was not known before: SOQL datetimes have whole seconds, so a record an earlier load
    created in the second this load began is told apart by its known Id. An updated row whose Id
    is known keeps it (``salesforce_id`` null); the others are looked up.
    """
    key = query.external_id_field
    holds = known.select(pl.col(EXTERNAL_ID_FIELD).alias(key), pl.col("salesforce_id"))
    rows = (
        applied.rename(key)
        .to_frame()
        .join(_created_since(api, query, since), on=key, how="left")
        .join(holds, on=key, how="left")
        .with_columns(
            created=pl.col("Id").is_not_null() & pl.col("Id").ne_missing(pl.col("salesforce_id"))
        )
    )
    missing = rows.filter(pl.col("Id").is_null() & pl.col("salesforce_id").is_null())
    found = _ids_of(api, query, missing.get_column(key))
    return rows.join(found, on=key, how="left", suffix="_found").select(
        pl.col(key).alias(EXTERNAL_ID_FIELD),
        pl.when("created")
        .then(pl.lit(RowStatus.CREATED.value))
        .otherwise(pl.lit(RowStatus.UPDATED.value))
        .alias("status"),
        pl.when("created")
        .then("Id")
        .otherwise(pl.coalesce("Id_found", "Id"))
        .alias("salesforce_id"),
    )


def _created_since(api: BulkApi, query: IdQuery, since: datetime) -> pl.DataFrame:
    soql = (
        f"SELECT Id, {query.external_id_field} FROM {query.sobject} "
        f"WHERE {query.partition_field} = {soql_literal(query.partition)} "
        f"AND CreatedDate >= {soql_datetime(since)}"
    )
    return bulk_query(api, soql, [query.external_id_field])


def _ids_of(api: BulkApi, query: IdQuery, external_ids: pl.Series) -> pl.DataFrame:
    """The Ids of records the load updated but the ledger has no Id for (few, usually none)."""
    key = query.external_id_field
    if external_ids.is_empty():
        return pl.DataFrame(schema={key: pl.String, "Id": pl.String})
    if external_ids.len() > MAX_KEYED_LOOKUPS:
        soql = (
            f"SELECT Id, {key} FROM {query.sobject} "
            f"WHERE {query.partition_field} = {soql_literal(query.partition)}"
        )
        return bulk_query(api, soql, [key]).filter(pl.col(key).is_in(external_ids.implode()))
    head = f"SELECT Id, {key} FROM {query.sobject} WHERE {key} IN ("
    pages = [
        bulk_query(api, head + ", ".join(chunk) + ")", [key])
        for chunk in chunks_by_length(
            [soql_literal(value) for value in external_ids.to_list()],
            MAX_SOQL_CHARACTERS - len(head) - 1,
        )
    ]
    return pl.concat(pages, how="vertical")


def chunks_by_length(literals: list[str], budget: int) -> list[list[str]]:
    """``literals`` cut into runs whose joined length (``, `` between them) fits ``budget``."""
    chunks: list[list[str]] = [[]]
    used = 0
    for literal in literals:
        size = len(literal) + 2
        if chunks[-1] and used + size > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(literal)
        used += size
    return chunks


def bulk_query(
    api: BulkApi,
    soql: str,
    columns: list[str],
    sleep: Callable[[float], None] = time.sleep,
) -> pl.DataFrame:
    """Run ``soql`` as a Bulk API 2.0 query job; ``Id`` and ``columns`` of every record, as text.

    The job is polled until it ends (Bulk API 2.0 Developer Guide, "Get Information About a
    Query Job"), then its result pages are streamed to disk and read (gzipped on the wire:
    "Query results are always compressed").
    """
    job = run_query_job(api, soql, sleep=sleep)
    wanted = ["Id", *columns]
    pages: list[pl.DataFrame] = [pl.DataFrame(schema=dict.fromkeys(wanted, pl.String))]
    with tempfile.TemporaryDirectory(prefix=f"bulk-query-{job.id}-") as scratch:
        pages += [
            pl.read_csv(path, columns=wanted, infer_schema=False)
            for path in result_pages(api, job.id, Path(scratch))
            if path.stat().st_size
        ]
    return pl.concat(pages, how="vertical")
