"""Asset checks that prove, independently of the loader's own counters, that nothing was lost.

Each check recounts from a different source than the asset that it checks: the drop itself, the
files on disk, the ledger, and Salesforce through SOQL ``COUNT()``. A failed check (WARN or ERROR)
is also posted to the alert webhook.
"""

import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import dagster as dg
import polars as pl
from pydantic import BaseModel, Field

from sync_assets.alerts import Alert, AlertResource
from sync_assets.assets import (
    opportunity_batches,
    opportunity_sync_summary,
    salesforce_opportunities,
)
from sync_assets.drift import DEFAULT_OVERLAP, DriftChecker, DriftCounts
from sync_assets.drop_runs import (
    exclusive_partition,
    exclusive_staging,
    last_staged_drop,
    latest_partition_sync,
    left_moves_in_transit,
    night_contract,
)
from sync_assets.drops.contract import DropContract
from sync_assets.drops.reader import open_drop
from sync_assets.drops.shards import rows_per_partition
from sync_assets.drops.staging import StagedPartition, load_staged
from sync_assets.partition_load import moved_rows_gone, retagged_moved_rows
from sync_assets.partitions import opportunity_partitions
from sync_assets.resources import SalesforceResource, SyncStorage
from sync_assets.run_tags import DROP_TAG
from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.state.layout import drop_census_path, failed_rows_path
from sync_assets.state.ledger import distinct_synced_keys, ledger_keys, ledger_rows
from sync_assets.storage import StateStore

# Per-partition checks are what make a failing partition visible on its own; Dagster marks the
# `partitions_def` of a check as preview and warns at every import, which only confuses users.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

# Reject rate of a partition: above WARN someone should look at the export; above ERROR the export
# is probably broken upstream (a renamed picklist value, a changed date format) and needs a human.
REJECT_RATE_WARN = 0.01
REJECT_RATE_ERROR = 0.05


@dataclass(frozen=True)
class _Verdict:
    """What a check found: its result without the check's key (one step may run several).

    ``details`` are metadata beyond the numbers.
    """

    passed: bool
    severity: dg.AssetCheckSeverity
    description: str
    drop_id: str
    numbers: dict[str, int | float]
    details: dict[str, dg.MetadataValue] = field(default_factory=dict)


# A partition check: what it found, from its step's context and resources.
_PartitionCheck = Callable[
    [dg.AssetCheckExecutionContext, SyncStorage, SalesforceResource], _Verdict
]


def _result(
    context: dg.AssetCheckExecutionContext,
    alerts: AlertResource,
    key: dg.AssetCheckKey,
    verdict: _Verdict,
) -> dg.AssetCheckResult:
    """The check's result, and an alert when it failed."""
    if not verdict.passed:
        alerts.send(
            Alert(
                kind="check_failed",
                severity="WARN" if verdict.severity == dg.AssetCheckSeverity.WARN else "ERROR",
                asset=key.asset_key.to_user_string(),
                partition=context.partition_key if context.has_partition_key else None,
                drop_id=verdict.drop_id,
                check=key.name,
                run_id=context.run.run_id,
                description=verdict.description,
                numbers=verdict.numbers,
            )
        )
    return dg.AssetCheckResult(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=verdict.passed,
        severity=verdict.severity,
        description=verdict.description,
        metadata={"drop_id": verdict.drop_id, **verdict.numbers, **verdict.details},
    )


def _only_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckKey:
    return next(iter(context.selected_asset_check_keys))


def _each_selected(
    context: dg.AssetCheckExecutionContext,
    alerts: AlertResource,
    verdicts: Mapping[dg.AssetCheckKey, Callable[[], _Verdict]],
) -> Iterator[dg.AssetCheckResult]:
    """The step's selected checks in turn; one that raises does not keep the others unrecorded.

    The first error is raised again once the others are recorded: the step fails, as that
    check's own step did when each check was a step of its own.
    """
    errors: list[Exception] = []
    for key, verdict in verdicts.items():
        if key not in context.selected_asset_check_keys:
            continue
        try:
            yield _result(context, alerts, key, verdict())
        except Exception as error:
            context.log.error("Check %s could not run: %s", key.name, type(error).__name__)
            errors.append(error)
    if errors:
        raise errors[0]


def _top_reasons(by_reason: dict[str, int], limit: int = 3) -> str:
    """The most frequent reasons with their counts, e.g. "name_missing 12, stage_unknown 3"."""
    ranked = sorted(by_reason.items(), key=lambda item: -item[1])[:limit]
    return ", ".join(f"{reason} {count:,}" for reason, count in ranked)


def _staged_drop(context: dg.AssetCheckExecutionContext) -> str:
    return last_staged_drop(
        context.instance, context.run.tags, context.partition_key, opportunity_batches.key
    )


def _staging(state: StateStore, drop_id: str, partition: str) -> StagedPartition:
    staged = load_staged(state, drop_id, partition)
    if staged is None:
        raise dg.Failure(description=f"Drop {drop_id} partition {partition} is not staged.")
    return staged


class DropCensus(BaseModel):
    """Rows of a drop per partition, counted from the drop itself (not from its staging)."""

    contract_version: str
    rows: dict[str, int]


def drop_census(
    context: dg.AssetCheckExecutionContext,
    storage: SyncStorage,
    drop_id: str,
    contract: DropContract,
) -> DropCensus:
    """The drop's rows per partition: counted by the first partition's check, read by the others.

    One pass over the drop's account column serves the ten checks of a night (each used to scan
    the whole drop for its own partition). A drop never changes once complete; a new mapping
    (another account column) counts again. The file is replaced atomically, so it is read
    without the lock; counting takes the drop's staging lock so that ten checks count once.
    """
    state = storage.state()
    path = drop_census_path(drop_id)

    def counted() -> DropCensus | None:
        census = state.read_json(path, DropCensus) if state.exists(path) else None
        return census if census and census.contract_version == contract.fingerprint else None

    census = counted()
    if census is not None:
        return census
    with exclusive_staging(context, state, drop_id):
        census = counted()
        if census is not None:
            return census
        census = DropCensus(
            contract_version=contract.fingerprint,
            rows=rows_per_partition(
                open_drop(storage.landing(), drop_id, contract).scan(), contract.parent_column
            ),
        )
        state.write_json(path, census)
        return census


def _rows_accounted_for(
    context: dg.AssetCheckExecutionContext, storage: SyncStorage, salesforce: SalesforceResource
) -> _Verdict:
    """Recount the partition's rows in the drop and compare with the staged and rejected files."""
    state = storage.state()
    drop_id = _staged_drop(context)
    contract = night_contract(storage, drop_id, salesforce)
    in_drop = drop_census(context, storage, drop_id, contract).rows.get(context.partition_key, 0)
    # Another run of the partition may be staging it again (its ledger has moved on since): the
    # counts and both files must come from one staging, not half from each.
    with exclusive_staging(context, state, drop_id):
        staged = _staging(state, drop_id, context.partition_key)
        to_send = state.scan_parquet([staged.to_send]).select(pl.len()).collect().item()
        rejected = state.scan_parquet([staged.rejects]).select(pl.len()).collect().item()
    unchanged = staged.counts.unchanged
    accounted = to_send + rejected + unchanged
    passed = in_drop == accounted == staged.counts.source
    return _Verdict(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"All {in_drop:,} rows of the drop in this partition are accounted for."
            if passed
            else f"{in_drop:,} rows in the drop but {accounted:,} accounted for "
            f"({to_send:,} to send + {rejected:,} rejected + {unchanged:,} unchanged)."
        ),
        drop_id=drop_id,
        numbers={
            "rows_in_drop": in_drop,
            "to_send": to_send,
            "rejected": rejected,
            "unchanged": unchanged,
        },
    )


def _reject_rate(
    context: dg.AssetCheckExecutionContext, storage: SyncStorage, _: SalesforceResource
) -> _Verdict:
    """Flag an export that suddenly rejects many rows: usually an upstream format change."""
    drop_id = _staged_drop(context)
    staged = _staging(storage.state(), drop_id, context.partition_key)
    counts = staged.counts
    rate = counts.rejected / counts.source if counts.source else 0.0
    severity = (
        dg.AssetCheckSeverity.ERROR if rate > REJECT_RATE_ERROR else dg.AssetCheckSeverity.WARN
    )
    passed = rate <= REJECT_RATE_WARN
    top = _top_reasons(counts.rejected_by_reason)
    return _Verdict(
        passed=passed,
        severity=severity,
        description=(
            f"{counts.rejected:,} of {counts.source:,} rows rejected ({rate:.2%})"
            + (f": {top}." if top else ".")
        ),
        drop_id=drop_id,
        numbers={
            "rejected": counts.rejected,
            "source": counts.source,
            "reject_rate": round(rate, 6),
            "warn_above": REJECT_RATE_WARN,
            "error_above": REJECT_RATE_ERROR,
        },
    )


def _failed_rows(
    context: dg.AssetCheckExecutionContext, storage: SyncStorage, _: SalesforceResource
) -> _Verdict:
    """Count the rows in the partition's failed-rows file, which keeps Salesforce's reasons."""
    partition = context.partition_key
    drop_id = _staged_drop(context)
    state = storage.state()
    path = failed_rows_path(drop_id, partition)
    failed = (
        state.read_parquet(path, columns=["error_code"]) if state.exists(path) else pl.DataFrame()
    )
    by_reason = (
        dict(failed.get_column("error_code").value_counts().iter_rows()) if failed.height else {}
    )
    top = _top_reasons(by_reason)
    return _Verdict(
        passed=failed.height == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "No permanently failed rows."
            if failed.height == 0
            else f"{failed.height:,} rows failed in Salesforce ({top}); they are in {state.url(path)} "
            f"(`sync-assets failures --drop-id {drop_id} --partition {partition}`); once the org "
            "or the data is fixed, `sync-assets resend` sends them again (else the next drop does)."
        ),
        drop_id=drop_id,
        numbers={"failed": failed.height, **{f"failed_{k}": v for k, v in by_reason.items()}},
    )


def _partition_count(
    context: dg.AssetCheckExecutionContext, storage: SyncStorage, salesforce: SalesforceResource
) -> _Verdict:
    """Ask Salesforce itself (SOQL COUNT() on Sync_Partition__c) and compare with the ledger.

    An opportunity that moved to another partition stays in this ledger until this partition's
    next load sees it re-tagged; once its new partition has sent it (possibly after this load
    ended) it is in transit, not missing, and is not expected here.
    """
    partition = context.partition_key
    drop_id = _staged_drop(context)
    state = storage.state()
    # Another run of the partition may be loading it: Salesforce then holds rows its ledger does
    # not yet. Count between loads, never during one.
    with exclusive_partition(context, state, partition):
        in_ledger = ledger_rows(state, partition)
        in_salesforce = salesforce.count_partition(partition)
        staged = load_staged(state, drop_id, partition)
        retagged = (
            retagged_moved_rows(state, staged, salesforce.still_tagged)[1]
            if staged is not None
            else pl.Series(dtype=pl.String)
        )
        # The keys are read only when some moved: most nights none did.
        in_transit = (
            int(ledger_keys(state, partition).is_in(retagged.implode()).sum())
            if retagged.len()
            else 0
        )
    expected = in_ledger - in_transit
    return _Verdict(
        passed=in_salesforce == expected,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"Salesforce holds {in_salesforce:,} opportunities for partition {partition}, "
            f"the ledger {in_ledger:,}"
            + (f" ({in_transit:,} moved to another partition since)." if in_transit else ".")
        ),
        drop_id=drop_id,
        numbers={
            "salesforce_count": in_salesforce,
            "ledger_count": in_ledger,
            "moved_in_transit": in_transit,
        },
    )


@dg.asset_check(
    asset=opportunity_sync_summary,
    description="Salesforce's COUNT() of all synced opportunities equals the ledgers' distinct keys.",
)
def salesforce_total_matches_ledger(
    context: dg.AssetCheckExecutionContext,
    storage: SyncStorage,
    salesforce: SalesforceResource,
    alerts: AlertResource,
) -> dg.AssetCheckResult:
    """One COUNT() over every partition, against the sum of the ten ledgers."""
    in_salesforce = salesforce.count_synced()
    in_ledger = distinct_synced_keys(storage.state())
    drop_id = context.run.tags.get(DROP_TAG, "")
    return _result(
        context,
        alerts,
        _only_check(context),
        _Verdict(
            passed=in_salesforce == in_ledger,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"Salesforce holds {in_salesforce:,} synced opportunities, the ledgers {in_ledger:,}."
            ),
            drop_id=drop_id,
            numbers={"salesforce_count": in_salesforce, "ledger_count": in_ledger},
        ),
    )


LEDGER_TERMS = ("ledger_before", "ledger_added", "ledger_moved_out", "ledger_deleted")


def _ledger_identity(
    context: dg.AssetCheckExecutionContext, storage: SyncStorage, _: SalesforceResource
) -> _Verdict:
    """The load's ledger terms against the partition's ledger as it is on disk now.

    Rows the load left in transit to another partition and the night's summary forgot since
    (`settle_moves_in_transit`) count as moved out.
    """
    partition = context.partition_key
    metadata = latest_partition_sync(context.instance, salesforce_opportunities.key, partition)
    terms = {name: int(str((metadata or {}).get(name) or 0)) for name in LEDGER_TERMS}
    drop_id = str((metadata or {}).get("drop_id", ""))
    state = storage.state()
    with exclusive_partition(context, state, partition):
        now = ledger_rows(state, partition)
        staged = load_staged(state, drop_id, partition) if left_moves_in_transit(metadata) else None
        moved = terms["ledger_moved_out"] if staged is None else moved_rows_gone(state, staged)
    settled = moved - terms["ledger_moved_out"]
    expected = terms["ledger_before"] + terms["ledger_added"] - moved - terms["ledger_deleted"]
    return _Verdict(
        passed=expected == now,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"Ledger {terms['ledger_before']:,} + {terms['ledger_added']:,} new − "
            f"{moved:,} moved out"
            + (f" ({settled:,} of them forgotten by the night's summary)" if settled else "")
            + f" − {terms['ledger_deleted']:,} deleted = {expected:,}; the ledger holds {now:,}."
        ),
        drop_id=drop_id,
        numbers={**terms, "ledger_moved_out_settled": settled, "ledger_rows": now},
    )


# ---- drift: the org's values against what the sync sent -----------------------------------------


class DriftCheckConfig(dg.Config):
    full: bool = Field(
        default=False,
        description="Read every record of the partition, not only those whose SystemModstamp "
        "moved since the last check (the first check is always full).",
    )
    overlap_seconds: float = Field(
        default=DEFAULT_OVERLAP.total_seconds(),
        ge=0,
        description="An incremental check also reads records changed this long before the last "
        "check started (saved in a transaction that was still open then).",
    )


def _drift_description(counts: DriftCounts) -> str:
    if not counts.drifted:
        return f"The org holds the {counts.read:,} records read as the sync sent them."
    return (
        f"{counts.drifted:,} rows drifted in the org ({counts.changed:,} changed, "
        f"{counts.missing:,} missing, {counts.unknown:,} not in the ledger): the repair "
        f"(opportunity_drift_repair_job) makes the next load resend {counts.to_resend:,}; "
        f"{counts.left_alone:,} are left as the org has them."
    )


@dg.asset_check(
    asset=salesforce_opportunities,
    partitions_def=opportunity_partitions,
    description="The org holds the partition's records as the sync sent them: none edited, "
    "deleted or added by someone else (a Bulk API 2.0 query job, hashed as the ledger is).",
)
def salesforce_matches_what_was_sent(
    context: dg.AssetCheckExecutionContext,
    config: DriftCheckConfig,
    storage: SyncStorage,
    salesforce: SalesforceResource,
    alerts: AlertResource,
) -> dg.AssetCheckResult:
    """Read the partition back from the org and report drift, field by field, with who made it.

    WARN, not ERROR: every row the sync sent was confirmed; a person or automation changed the
    org since, the repair puts it right, and a scheduler must not treat it as a failed night.
    """
    state = storage.state()
    drop_id = _staged_drop(context)
    contract = night_contract(storage, drop_id, salesforce)
    checker = DriftChecker(BulkApi(salesforce.connection()), state, contract, salesforce.usernames)
    overlap = timedelta(seconds=config.overlap_seconds)
    check = checker.check(context.partition_key, full=config.full, overlap=overlap)
    counts = check.counts
    context.log.info(
        "Partition %s: %d records read (%s), %d drifted, in %.1f s query + %.1f s compare",
        context.partition_key,
        counts.read,
        check.mode,
        counts.drifted,
        check.query_seconds,
        check.compare_seconds,
    )
    return _result(
        context,
        alerts,
        _only_check(context),
        _Verdict(
            passed=counts.drifted == 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=_drift_description(counts),
            drop_id=drop_id,
            numbers={
                **counts.model_dump(),
                "drifted": counts.drifted,
                "query_seconds": check.query_seconds,
                "compare_seconds": check.compare_seconds,
            },
            details={
                "mode": dg.MetadataValue.text(check.mode),
                "since": dg.MetadataValue.text(check.since or ""),
                "drifted_rows_file": dg.MetadataValue.path(check.report_file),
            },
        ),
    )


# ---- the partition's checks: a step per asset, each check still runnable alone -------------------
# A step costs Dagster about as much CPU as a whole check (its events, its context): on a night
# with nothing to send, five check steps per partition were a tenth of every run's CPU.


def _spec(
    name: str, asset: dg.AssetsDefinition, description: str, blocking: bool = False
) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        partitions_def=opportunity_partitions,
        blocking=blocking,
        description=description,
    )


ROWS_ACCOUNTED_FOR = _spec(
    "rows_accounted_for",
    opportunity_batches,
    "Every source row of the partition is staged, unchanged or rejected: none lost.",
)
REJECT_RATE_BELOW_THRESHOLD = _spec(
    "reject_rate_below_threshold",
    opportunity_batches,
    f"Rejected rows stay under {REJECT_RATE_WARN:.0%} (WARN) and "
    f"{REJECT_RATE_ERROR:.0%} (ERROR) of the partition.",
)
NO_PERMANENTLY_FAILED_ROWS = _spec(
    "no_permanently_failed_rows",
    salesforce_opportunities,
    "No row of the partition failed for good in Salesforce (failed rows are on disk).",
    blocking=True,
)
SALESFORCE_COUNT_MATCHES_LEDGER = _spec(
    "salesforce_count_matches_ledger",
    salesforce_opportunities,
    "Salesforce's COUNT() of the partition's opportunities equals the ledger's count.",
)
LEDGER_IDENTITY_HOLDS = _spec(
    "ledger_identity_holds",
    salesforce_opportunities,
    "Yesterday's ledger + new − moved out − deleted = today's ledger (read again).",
)


def _partition_checks(
    name: str, description: str, checks: list[tuple[dg.AssetCheckSpec, _PartitionCheck]]
) -> dg.AssetChecksDefinition:
    """One step for a partition's checks of one asset; each check can still be run alone."""

    @dg.multi_asset_check(
        specs=[spec for spec, _ in checks], name=name, description=description, can_subset=True
    )
    def step(
        context: dg.AssetCheckExecutionContext,
        storage: SyncStorage,
        salesforce: SalesforceResource,
        alerts: AlertResource,
    ) -> Iterator[dg.AssetCheckResult]:
        yield from _each_selected(
            context,
            alerts,
            {spec.key: partial(check, context, storage, salesforce) for spec, check in checks},
        )

    return step


opportunity_batches_checks = _partition_checks(
    "opportunity_batches_checks",
    "The staging's checks of a partition.",
    [(ROWS_ACCOUNTED_FOR, _rows_accounted_for), (REJECT_RATE_BELOW_THRESHOLD, _reject_rate)],
)
salesforce_opportunities_checks = _partition_checks(
    "salesforce_opportunities_checks",
    "The load's checks of a partition.",
    [
        (NO_PERMANENTLY_FAILED_ROWS, _failed_rows),
        (SALESFORCE_COUNT_MATCHES_LEDGER, _partition_count),
        (LEDGER_IDENTITY_HOLDS, _ledger_identity),
    ],
)
