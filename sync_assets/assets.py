"""The nightly sync as assets: stage a partition of the drop, upsert it into Salesforce, sum up the night."""

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl
import requests
from pydantic import Field

from sync_assets.alerts import Alert, AlertResource
from sync_assets.drop_runs import (
    drop_to_stage,
    exclusive_partition,
    exclusive_staging,
    last_staged_drop,
    latest_partition_syncs,
    left_moves_in_transit,
    night_contract,
)
from sync_assets.drops.reader import DropError
from sync_assets.drops.staging import (
    StagedPartition,
    StagingCounts,
    load_staged,
    stage_partition_of_night,
)
from sync_assets.night_deletes import (
    DeletesResource,
    LoadConfig,
    confirmation,
    delete_absent_rows,
    ledger_identity,
)
from sync_assets.night_plan import NightPlan, plan_night
from sync_assets.partition_deletes import restores_of_drop
from sync_assets.partition_load import PartitionLoader, forget_moved_rows
from sync_assets.partitions import opportunity_partitions
from sync_assets.resend import RESEND_TAG, is_resend, resend_failed_rows
from sync_assets.resources import BulkLoadResource, SalesforceResource, SyncStorage
from sync_assets.run_tags import DROP_TAG
from sync_assets.salesforce.bulk_api import BulkApiUnavailableError
from sync_assets.salesforce.connection import SalesforceConnection
from sync_assets.salesforce.loader import LoadIncompleteError, LoadResult
from sync_assets.state.ledger import distinct_synced_keys, ledger_keys, load_ledger
from sync_assets.state.locks import PartitionBusyError
from sync_assets.state.notices import first_api_version_warning
from sync_assets.state.progress import ProgressReporter
from sync_assets.storage import StateStore

GROUP = "opportunity_sync"
SALESFORCE_POOL = "salesforce_bulk_api"

# Transient Salesforce trouble (5xx, 429, dropped connections) that outlasted the loader's own
# request-level retries: retry the step a few times, backing off minutes, not seconds. Any other
# error fails the step at once (see `salesforce_opportunities`).
TRANSIENT_ERRORS = (BulkApiUnavailableError, LoadIncompleteError, requests.RequestException)
SALESFORCE_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
# The staging checks do not gate the load (they are not blocking): the load starts first, so the
# org is not kept waiting while ten runs recount the drop; the checks run once the load ends.
LOAD_BEFORE_STAGING_CHECKS = {"dagster/priority": "1"}


def reasons_table(counts: dict[str, int], what: str) -> dg.MetadataValue:
    """A markdown table of reasons and their counts, most frequent first."""
    if not counts:
        return dg.MetadataValue.md(f"No {what}.")
    lines = ["| reason | rows |", "|---|---:|"]
    lines += [
        f"| `{reason}` | {count:,} |"
        for reason, count in sorted(counts.items(), key=lambda item: -item[1])
    ]
    return dg.MetadataValue.md("\n".join(lines))


def staging_metadata(counts: StagingCounts) -> dict[str, Any]:
    return {
        "drop_id": counts.drop_id,
        "source": dg.MetadataValue.int(counts.source),
        "rejected": dg.MetadataValue.int(counts.rejected),
        "unchanged": dg.MetadataValue.int(counts.unchanged),
        "new": dg.MetadataValue.int(counts.new),
        "changed": dg.MetadataValue.int(counts.changed),
        "to_send": dg.MetadataValue.int(counts.to_send),
        "deleted_in_source": dg.MetadataValue.int(counts.deleted),
        "reject_rate": dg.MetadataValue.float(
            counts.rejected / counts.source if counts.source else 0.0
        ),
    }


class StagingConfig(dg.Config):
    """How a partition run of the sync stages its rows."""

    dry_run: bool = Field(
        default=False,
        description="Only plan: what the partition would create, update, leave and reject, and "
        "the Bulk jobs and API calls it would use; nothing is staged or sent, no ledger moves.",
    )


def plan_metadata(plan: NightPlan) -> dict[str, Any]:
    """A dry run's plan of one partition as metadata (the whole plan as JSON too)."""
    [part] = plan.partitions
    return {
        "drop_id": plan.drop_id,
        "dry_run": True,
        **{
            name: dg.MetadataValue.int(getattr(part, name))
            for name in ("source", "create", "update", "unchanged", "rejected", "absent")
        },
        "jobs": dg.MetadataValue.int(part.jobs),
        "api_calls": dg.MetadataValue.int(part.api_calls),
        "records": dg.MetadataValue.int(part.records),
        "top_reject_reasons": reasons_table(part.top_reasons, "rejected rows"),
        "fields": dg.MetadataValue.json(plan.fields),
        "limits_fit": dg.MetadataValue.bool(bool(plan.fits))
        if plan.fits is not None
        else dg.MetadataValue.text(f"unknown: {plan.limits_unavailable}"),
        "plan": dg.MetadataValue.json(plan.model_dump(mode="json")),
    }


def plan_partition(
    context: dg.AssetExecutionContext,
    storage: SyncStorage,
    salesforce: SalesforceResource,
    bulk_load: BulkLoadResource,
    drop_id: str,
) -> None:
    """Plan the partition and record the plan as an observation; nothing is staged or sent."""
    partition = context.partition_key
    contract = night_contract(storage, drop_id, salesforce, keep=False)
    try:
        plan = plan_night(
            storage.landing(),
            storage.state(),
            drop_id,
            contract,
            [partition],
            bulk_load.loader_settings().plan,
            salesforce.limits,
        )
    except DropError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error
    [part] = plan.partitions
    context.log.info(
        "Plan of drop %s partition %s: %d to create, %d to update, %d unchanged, %d rejected, "
        "%d Bulk jobs; nothing was sent",
        drop_id,
        partition,
        part.create,
        part.update,
        part.unchanged,
        part.rejected,
        part.jobs,
    )
    context.log_event(
        dg.AssetObservation(
            asset_key=context.asset_key, partition=partition, metadata=plan_metadata(plan)
        )
    )


@dg.asset(
    partitions_def=opportunity_partitions,
    group_name=GROUP,
    kinds={"polars", "parquet"},
    owners=["team:data-engineering"],
    tags={"sync/stage": "stage"},
    # A dry run materializes nothing, so the load and the checks after it are skipped.
    output_required=False,
)
def opportunity_batches(
    context: dg.AssetExecutionContext,
    config: StagingConfig,
    storage: SyncStorage,
    salesforce: SalesforceResource,
    bulk_load: BulkLoadResource,
) -> Iterator[dg.MaterializeResult]:
    """Validate one partition (one shard of parent Accounts) of the drop and stage what changed.

    The rules come from the mapping file and the org's own metadata (read once a night). Rows
    that break them are quarantined with their reason; rows Salesforce already holds
    unchanged (per the ledger) are skipped; only new and changed rows are staged to be sent.
    With `dry_run`, only the partition's plan is made (an observation; see `night_plan.py`).
    """
    partition = context.partition_key
    drop_id = drop_to_stage(context.run.tags, storage)
    if config.dry_run:
        plan_partition(context, storage, salesforce, bulk_load, drop_id)
        return
    started = time.monotonic()
    state = storage.state()
    try:
        with (
            exclusive_partition(context, state, partition),
            exclusive_staging(context, state, drop_id),
        ):
            contract = night_contract(storage, drop_id, salesforce)
            staged, staged_now = stage_partition_of_night(
                storage.landing(), state, drop_id, partition, contract
            )
    except (DropError, PartitionBusyError) as error:
        # A malformed drop is not a transient problem: retrying cannot fix the file. A partition
        # busy for hours needs a human, not another wait.
        raise dg.Failure(description=str(error), allow_retries=False) from error
    counts = staged.counts
    if staged_now:
        context.log.info("Staged drop %s partitions %s in one pass", drop_id, ",".join(staged_now))
    else:
        context.log.info("Drop %s partition %s was already staged; using it", drop_id, partition)
    context.log.info(
        "Drop %s partition %s: %d source rows, %d rejected, %d unchanged, %d new, %d changed",
        drop_id,
        partition,
        counts.source,
        counts.rejected,
        counts.unchanged,
        counts.new,
        counts.changed,
    )
    yield dg.MaterializeResult(
        metadata={
            **staging_metadata(counts),
            "dagster/partition_row_count": dg.MetadataValue.int(counts.source),
            "rejects_by_reason": reasons_table(counts.rejected_by_reason, "rejected rows"),
            "rejects_file": dg.MetadataValue.path(state.url(staged.rejects)),
            "staged_file": dg.MetadataValue.path(state.url(staged.to_send)),
            "staged_partitions": dg.MetadataValue.text(",".join(staged_now) or "none (reused)"),
            "extra_columns": dg.MetadataValue.json(counts.extra_columns),
            "missing_columns": dg.MetadataValue.json(counts.missing_columns),
            "duration_seconds": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
        },
        tags={DROP_TAG: drop_id},
    )


def load_metadata(result: LoadResult) -> dict[str, Any]:
    return {
        "sent": dg.MetadataValue.int(result.sent),
        "succeeded": dg.MetadataValue.int(result.succeeded),
        "created": dg.MetadataValue.int(result.created),
        "updated": dg.MetadataValue.int(result.updated),
        "failed": dg.MetadataValue.int(result.failed),
        "retried": dg.MetadataValue.int(result.retried),
        "uploaded": dg.MetadataValue.int(result.uploaded),
        "jobs": dg.MetadataValue.int(len(result.job_ids)),
        "jobs_resumed": dg.MetadataValue.int(result.jobs_resumed),
        "bulk_job_ids": dg.MetadataValue.json(result.job_ids),
        "api_calls": dg.MetadataValue.int(result.api_calls),
        "poll_calls": dg.MetadataValue.int(result.poll_calls),
        "api_calls_per_1000_rows": dg.MetadataValue.float(
            round(1_000 * result.api_calls / result.sent, 2) if result.sent else 0.0
        ),
        "throttled_calls": dg.MetadataValue.int(result.throttled),
        "jobs_aborted_past_deadline": dg.MetadataValue.int(result.jobs_aborted_past_deadline),
        "peak_jobs_in_flight": dg.MetadataValue.int(result.peak_jobs_in_flight),
        "lowest_jobs_in_flight": dg.MetadataValue.int(result.lowest_jobs_in_flight),
        "preflight": dg.MetadataValue.text(result.preflight),
        "upload_compression": dg.MetadataValue.text(result.upload_compression),
        "http_retries": dg.MetadataValue.int(result.http_retries),
        "duration_seconds": dg.MetadataValue.float(round(result.duration_seconds, 3)),
        "records_per_second": dg.MetadataValue.float(round(result.records_per_second, 1)),
        "failures_by_reason": reasons_table(result.failed_by_reason, "failed rows"),
        "reauthentications": dg.MetadataValue.int(result.logins),
        # The loader already gives the file's full address.
        "failed_file": dg.MetadataValue.path(result.failed_file)
        if result.failed_file
        else dg.MetadataValue.null(),
    }


@dg.asset(
    partitions_def=opportunity_partitions,
    deps=[opportunity_batches],
    group_name=GROUP,
    kinds={"salesforce"},
    owners=["team:data-engineering"],
    pool=SALESFORCE_POOL,
    retry_policy=SALESFORCE_RETRY_POLICY,
    op_tags=LOAD_BEFORE_STAGING_CHECKS,
)
def salesforce_opportunities(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    storage: SyncStorage,
    salesforce: SalesforceResource,
    bulk_load: BulkLoadResource,
    deletes: DeletesResource,
    alerts: AlertResource,
) -> dg.MaterializeResult:
    """Upsert the staged rows of one partition into Salesforce Opportunity (Bulk API 2.0).

    Upserts on External_Id__c, so a re-run never duplicates; resumes the Bulk jobs of a crashed
    attempt instead of resending their rows; resends only transient failures; advances the ledger
    only for rows Salesforce confirmed. With a delete mode, then deletes (or archives) the rows
    absent from the drop, unless the mass-delete guard holds them (see `night_deletes.py`).
    """
    partition = context.partition_key
    drop_id = last_staged_drop(
        context.instance, context.run.tags, partition, opportunity_batches.key
    )
    state = storage.state()
    confirmed = confirmation(context, config)
    try:
        with exclusive_partition(context, state, partition):
            before = ledger_keys(state, partition)
            staged, result, moved_out, forgotten = load_staged_partition(
                context, state, salesforce, bulk_load, drop_id, partition
            )
            after_upserts = ledger_keys(state, partition)
            forgot_deleted, deleted = delete_absent_rows(
                context, state, salesforce, bulk_load, deletes, alerts, staged, confirmed
            )
    except TRANSIENT_ERRORS:
        raise  # the step's RetryPolicy backs off and tries again; the checkpoint resumes the jobs
    except dg.Failure:
        raise
    except Exception as error:
        # Limits, credentials (the login happens here too), bad configuration, bugs: retrying
        # cannot help, so fail now, clearly.
        raise dg.Failure(
            description=f"{type(error).__name__}: {error}", allow_retries=False
        ) from error
    context.log.info(
        "Drop %s partition %s: sent %d, %d created, %d updated, %d failed, %d resent "
        "in %d jobs (%.0f records/s)",
        drop_id,
        partition,
        result.sent,
        result.created,
        result.updated,
        result.failed,
        result.retried,
        len(result.job_ids),
        result.records_per_second,
    )
    if result.preflight.startswith("degraded"):
        context.log.warning("Pre-flight %s", result.preflight)
    synced = load_ledger(state, partition).height
    connection = salesforce.connection()
    alert_retiring_api_version(context, state, connection, alerts, drop_id)
    return dg.MaterializeResult(
        metadata={
            "drop_id": drop_id,
            **{
                key: value
                for key, value in staging_metadata(staged.counts).items()
                if key in {"source", "rejected", "unchanged"}
            },
            **load_metadata(result),
            "api_calls_of_the_run": dg.MetadataValue.int(connection.api_calls),
            "api_version": connection.api_version,
            "moved_out": dg.MetadataValue.int(moved_out),
            "moved_out_forgotten": dg.MetadataValue.int(forgotten),
            **deleted,
            **ledger_identity(before, after_upserts, forgotten, forgot_deleted, synced),
            **failure_links(state, staged, result),
            "dagster/partition_row_count": dg.MetadataValue.int(synced),
        },
        tags={DROP_TAG: drop_id},
    )


def failure_links(
    state: StateStore, staged: StagedPartition, result: LoadResult
) -> dict[str, dg.MetadataValue]:
    """Where the partition's rows that did not reach Salesforce are, and how to act on them."""
    where = f"--drop-id {staged.counts.drop_id} --partition {staged.counts.partition}"
    return {
        "rejects_file": dg.MetadataValue.path(state.url(staged.rejects)),
        "act_on_failures": dg.MetadataValue.md(
            f"List the rejected ({staged.counts.rejected:,}) and failed ({result.failed:,}) rows "
            f"with their reasons: `sync-assets failures {where}` (`--csv FILE` for all of "
            f"them). Once the org or the data is fixed: `sync-assets resend {where}`, or launch "
            f"this partition with the run tag `{RESEND_TAG}=failed`. Rejected rows need a "
            "corrected export."
        ),
    }


def alert_retiring_api_version(
    context: dg.AssetExecutionContext,
    state: StateStore,
    connection: SalesforceConnection,
    alerts: AlertResource,
    drop_id: str,
) -> None:
    """Salesforce said the API version is retiring (a ``Warning`` header): alert once, not nightly."""
    warning = connection.version_warning
    if warning is None or not first_api_version_warning(state, warning):
        return
    alerts.send(
        Alert(
            kind="api_version_retiring",
            severity="WARN",
            asset=context.asset_key.to_user_string(),
            partition=context.partition_key,
            drop_id=drop_id,
            run_id=context.run.run_id,
            description=f"Salesforce API version {connection.api_version} is retiring: {warning}. "
            "Set SALESFORCE_API_VERSION to a current version.",
            numbers={"api_version": connection.api_version},
        )
    )


def load_staged_partition(
    context: dg.AssetExecutionContext,
    state: StateStore,
    salesforce: SalesforceResource,
    bulk_load: BulkLoadResource,
    drop_id: str,
    partition: str,
) -> tuple[StagedPartition, LoadResult, int, int]:
    """Upsert a staged partition; returns the staging, the load, rows moved out and forgotten."""
    staged = load_staged(state, drop_id, partition)
    if staged is None:
        raise dg.Failure(
            description=f"Drop {drop_id} partition {partition} is not staged yet.",
            allow_retries=False,
        )
    progress = ProgressReporter(state, drop_id, partition, context.log)
    loader = PartitionLoader(
        bulk_load.loader(salesforce, progress=lambda now: progress.loading(**now.model_dump())),
        state,
    )
    result = (
        resend_failed_rows(context, loader, drop_id)
        if is_resend(context.run.tags)
        else loader.load_staged(drop_id, partition)
    )
    progress.finished(result.succeeded + result.failed, result.sent, result.failed)
    moved_out, forgotten = forget_moved_rows(state, staged, salesforce.still_tagged)
    return staged, result, moved_out, forgotten


SUMMARY_COLUMNS = [
    "source",
    "rejected",
    "unchanged",
    "sent",
    "succeeded",
    "failed",
    "retried",
    "deleted",
]


@dg.asset(
    deps=[salesforce_opportunities],
    group_name=GROUP,
    kinds={"salesforce"},
    owners=["team:data-engineering"],
)
def opportunity_sync_summary(
    context: dg.AssetExecutionContext, storage: SyncStorage, salesforce: SalesforceResource
) -> dg.MaterializeResult:
    """The night in one place: totals over the 10 partitions of one drop, once all have synced."""
    latest = latest_partition_syncs(context.instance, salesforce_opportunities.key)
    drops = {str(meta.get("drop_id")) for meta in latest.values()}
    missing = sorted(set(opportunity_partitions.get_partition_keys()) - set(latest))
    if missing or len(drops) != 1:
        raise dg.Failure(
            description=f"Partitions are not all synced from one drop (missing {missing}, "
            f"drops {sorted(drops)}); the summary waits for all 10.",
            allow_retries=False,
        )
    drop_id = drops.pop()
    frame = pl.DataFrame(
        [
            {
                "partition": partition,
                **{column: int(meta.get(column) or 0) for column in SUMMARY_COLUMNS},
            }
            for partition, meta in sorted(latest.items())
        ]
    )
    totals = frame.select(pl.col(SUMMARY_COLUMNS).sum()).row(0, named=True)
    state = storage.state()
    settled = settle_moves_in_transit(context, state, salesforce, drop_id, latest)
    ledger_total = distinct_synced_keys(state)
    confirmations = [
        {"partition": partition, **meta["deletes_confirmed"]}
        for partition, meta in sorted(latest.items())
        if isinstance(meta.get("deletes_confirmed"), dict)
    ]
    restores = restores_of_drop(state, drop_id, sorted(latest))
    context.log.info(
        "Drop %s: %d source rows, %d rejected, %d unchanged, %d sent, %d failed; ledger holds %d",
        drop_id,
        totals["source"],
        totals["rejected"],
        totals["unchanged"],
        totals["sent"],
        totals["failed"],
        ledger_total,
    )
    return dg.MaterializeResult(
        metadata={
            "drop_id": drop_id,
            **{column: dg.MetadataValue.int(int(value)) for column, value in totals.items()},
            "ledger_total": dg.MetadataValue.int(ledger_total),
            "moved_out_settled": dg.MetadataValue.int(settled),
            "partitions": dg.MetadataValue.md(partition_table(frame)),
            # Who confirmed a held delete and what was restored since: the night's audit trail.
            "deletes_confirmed": dg.MetadataValue.json(confirmations),
            "restores": dg.MetadataValue.json([record.model_dump() for record in restores]),
        },
        tags={DROP_TAG: drop_id},
    )


def settle_moves_in_transit(
    context: dg.AssetExecutionContext,
    state: StateStore,
    salesforce: SalesforceResource,
    drop_id: str,
    latest: dict[str, dict[str, object]],
) -> int:
    """Forget from their old ledgers the opportunities that moved and have since been sent.

    A load forgets a moved-out row only once Salesforce tags it with its new partition; when
    that partition loaded later in the night, the row was left in transit. Once every load is
    done, the summary settles it, so each ledger matches Salesforce when the night ends rather
    than after its partition's next load. Returns the rows forgotten.
    """
    settled = 0
    for partition, meta in sorted(latest.items()):
        if not left_moves_in_transit(meta):
            continue
        staged = load_staged(state, drop_id, partition)
        if staged is None:
            continue
        with exclusive_partition(context, state, partition):
            forgotten = forget_moved_rows(state, staged, salesforce.still_tagged)[1]
        if forgotten:
            context.log.info(
                "Partition %s: %d moved-out rows forgotten, their new partition has sent them",
                partition,
                forgotten,
            )
        settled += forgotten
    return settled


def partition_table(frame: pl.DataFrame) -> str:
    """A markdown table of a small frame (one row per partition), numbers with thousands separators."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---:" for _ in frame.columns) + "|"
    rows = [
        "| "
        + " | ".join(f"{value:,}" if isinstance(value, int) else str(value) for value in row)
        + " |"
        for row in frame.iter_rows()
    ]
    return "\n".join([header, rule, *rows])
