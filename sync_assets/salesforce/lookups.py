"""What Salesforce holds of a load's rows: when the load began (to count what it created), Ids by key."""

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.checkpoint import CheckpointedJob
from sync_assets.salesforce.queries import soql_literal
from sync_assets.salesforce.query_export import result_pages, run_query_job
from sync_assets.state.columns import EXTERNAL_ID_FIELD, PARTITION_FIELD

# A job checkpointed without Salesforce's createdDate (an older checkpoint) is dated by the
# client's clock; records it created may then carry a CreatedDate this much earlier.
CLOCK_SKEW_MARGIN = timedelta(minutes=5)
# Keys are looked up in IN lists while few; past this, one query of the whole partition is
# cheaper than the keys' share of the SOQL length.
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


def count_created(api: BulkApi, query: IdQuery, since: datetime) -> int:
    """How many of the partition's records were created at or after ``since`` (one COUNT()).

    What a load created, in one small answer instead of its records' Ids: an upsert that
    matched a record never changes its CreatedDate, and a load ends a second after its last job
    finished (`BulkLoader.load`), so an earlier load's records are all dated before ``since``.
    (CreatedDate is a system audit field, set when the record is inserted: Object Reference,
    "System Fields"; SOQL datetime literals are ``YYYY-MM-DDThh:mm:ssZ``, whole seconds: SOQL
    and SOSL Reference, "Date Formats and Date Literals".)
    """
    return api.count(
        f"SELECT COUNT() FROM {query.sobject} "
        f"WHERE {query.partition_field} = {soql_literal(query.partition)} "
        f"AND CreatedDate >= {soql_datetime(since)}"
    )


def ids_by_key(api: BulkApi, query: IdQuery, external_ids: pl.Series) -> pl.DataFrame:
    """The Ids of the live records with these external ids (``EXTERNAL_ID_FIELD``, ``Id``).

    Asked when a delete needs them rather than kept from each load: learning every created
    record's Id cost a download of ~8.5 bytes a row per night (issue 17), and an Id kept since
    then can be stale (a record deleted and created again by a later upsert). A key with no live
    record is absent from the answer. Few keys go in ``IN`` lists of SOQL statements of at most
    `MAX_SOQL_CHARACTERS`; past `MAX_KEYED_LOOKUPS`, one query of the partition is cheaper.
    """
    key = query.external_id_field
    if external_ids.is_empty():
        found = pl.DataFrame(schema={key: pl.String, "Id": pl.String})
    elif external_ids.len() > MAX_KEYED_LOOKUPS:
        soql = (
            f"SELECT Id, {key} FROM {query.sobject} "
            f"WHERE {query.partition_field} = {soql_literal(query.partition)}"
        )
        found = bulk_query(api, soql, [key]).filter(pl.col(key).is_in(external_ids.implode()))
    else:
        head = f"SELECT Id, {key} FROM {query.sobject} WHERE {key} IN ("
        found = pl.concat(
            [
                bulk_query(api, head + ", ".join(chunk) + ")", [key])
                for chunk in chunks_by_length(
                    [soql_literal(value) for value in external_ids.to_list()],
                    MAX_SOQL_CHARACTERS - len(head) - 1,
                )
            ],
            how="vertical",
        )
    return found.select(pl.col(key).alias(EXTERNAL_ID_FIELD), "Id").unique(
        EXTERNAL_ID_FIELD, keep="first"
    )


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
