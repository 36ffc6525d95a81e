"""The `failures` and `resend` commands: a drop's rows that did not reach Salesforce, listed and resent."""

from pathlib import Path

import dagster as dg
import polars as pl
from rich.console import Console
from rich.table import Table

from sync_assets.demo import NightVerdict, night_verdict, print_checks, refused_without_org
from sync_assets.drop_runs import latest_partition_syncs
from sync_assets.drops.mapping import MappingError, load_mapping
from sync_assets.failures import (
    FAILED,
    REJECTED,
    ROW_COLUMNS,
    drops_with_state,
    failed_count,
    failure_rows,
    grouped_counts,
    newest_drop_with_state,
    rejected_count,
)
from sync_assets.resend import ResendRefusedError, load_to_resend
from sync_assets.runner import LOAD_ASSET, RunOutcome, prepare_dagster_home, resend_drop
from sync_assets.settings import SyncSettings
from sync_assets.state.layout import PARTITION_KEYS
from sync_assets.storage import StateStore

_REASON_WIDTH = 100


def unknown_drop(state: StateStore, drop_id: str, console: Console) -> bool:
    """Whether the state holds nothing of `drop_id` (said so, with the drops it does hold)."""
    known = drops_with_state(state)
    if drop_id in known:
        return False
    console.print(
        f"[red]Drop {drop_id} has no staging or failed rows in {state.url()}[/] "
        f"(drops there: {', '.join(known) or 'none'})."
    )
    return True


def counts_table(drop_id: str, counts: pl.DataFrame) -> Table:
    """Rows per partition, kind and reason code, with one reason as an example."""
    table = Table(title=f"Rows of drop {drop_id} that did not reach Salesforce, by reason")
    for column in ("partition", "kind", "code", "rows", "example reason"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for row in counts.iter_rows(named=True):
        table.add_row(
            row["partition"],
            row["kind"],
            row["code"] or "",
            f"{row['rows']:,}",
            (row["example"] or "")[:_REASON_WIDTH],
        )
    return table


def rows_table(rows: pl.DataFrame, total: int) -> Table:
    """The first rows (partition, kind, key, code, reason); the caption says how many are left out."""
    caption = (
        f"{total - rows.height:,} more rows not shown: --csv FILE writes all {total:,}, "
        "with every column."
        if total > rows.height
        else None
    )
    table = Table(title=f"Rows ({rows.height:,} of {total:,})", caption=caption)
    for column in ROW_COLUMNS:
        table.add_column(column)
    for row in rows.select(ROW_COLUMNS).iter_rows():
        table.add_row(*[(value or "")[:_REASON_WIDTH] for value in row])
    return table


def what_to_do(drop_id: str, counts: pl.DataFrame, console: Console) -> None:
    by_kind = dict(counts.group_by("kind").agg(pl.col("rows").sum()).iter_rows())
    if by_kind.get(FAILED):
        console.print(
            f"{by_kind[FAILED]:,} rows failed in Salesforce: once the org or the data is fixed, "
            f"`sync-assets resend --drop-id {drop_id}` sends them again."
        )
    if by_kind.get(REJECTED):
        console.print(
            f"{by_kind[REJECTED]:,} rows were rejected by the sync's rules and never sent: they "
            "cannot be resent; a corrected export (the next drop) brings them in."
        )


def run_failures(
    drop_id: str | None,
    partitions: list[str],
    csv_file: Path | None,
    limit: int,
    console: Console,
) -> NightVerdict:
    """Print a drop's rejected and failed rows, grouped then listed; write them all to `csv_file`."""
    settings = SyncSettings()
    state, landing = StateStore(settings.state_dir), StateStore(settings.landing_dir)
    if drop_id is None:
        drop_id = newest_drop_with_state(state, landing)
        if drop_id is None:
            console.print(f"[red]No drop has been staged in {state.url()} yet.")
            return NightVerdict.NO_DROP
    elif unknown_drop(state, drop_id, console):
        return NightVerdict.BAD_USAGE
    try:
        key_column = load_mapping(settings.mapping_file).key.column
    except MappingError as error:
        console.print(f"[red]{error}")
        return NightVerdict.BAD_USAGE
    rows = failure_rows(state, drop_id, partitions, key_column)
    counts = grouped_counts(rows)
    total = int(counts["rows"].sum())
    if csv_file is not None:
        rows.sink_csv(csv_file)
        console.print(f"Wrote {total:,} rows to {csv_file}.")
    if total == 0:
        console.print(
            f"Drop {drop_id}: no rejected or failed rows in partitions {', '.join(partitions)}."
        )
        return NightVerdict.PASSED
    console.print(counts_table(drop_id, counts))
    console.print(rows_table(rows.head(limit).collect(), total))
    what_to_do(drop_id, counts, console)
    return NightVerdict.PASSED


def resend_table(outcomes: list[RunOutcome], before: dict[str, int]) -> Table:
    """Per partition: failed rows before, now in Salesforce, still failing, the checks."""
    table = Table(title="Resend")
    for column in ("partition", "failed before", "now in Salesforce", "still failing", "checks"):
        table.add_column(column, justify="left" if column == "checks" else "right")
    for outcome in outcomes:
        if not outcome.partition:
            continue
        loaded = outcome.materializations.get(LOAD_ASSET, {})
        still = int(loaded["failed"]) if "failed" in loaded else None
        failed_checks = [check.name for check in outcome.checks if not check.passed]
        table.add_row(
            outcome.partition,
            f"{before[outcome.partition]:,}",
            f"{before[outcome.partition] - still:,}" if still is not None else "-",
            f"{still:,}" if still is not None else "-",
            ", ".join(failed_checks)
            if failed_checks
            else (f"{len(outcome.checks)} passed" if outcome.success else f"{outcome.error}"),
        )
    return table


def partitions_to_resend(
    state: StateStore, drop_id: str, partitions: list[str], console: Console
) -> dict[str, int] | None:
    """Partition → failed rows to resend; None (each reason printed) if any may not be resent."""
    instance = dg.DagsterInstance.get()
    load_asset = dg.AssetKey(LOAD_ASSET)
    failed = {partition: failed_count(state, drop_id, partition) for partition in partitions}
    refusals = []
    for partition in [partition for partition, count in failed.items() if count]:
        try:
            load_to_resend(instance, load_asset, state, drop_id, partition)
        except ResendRefusedError as error:
            refusals.append(str(error))
    for refusal in refusals:
        console.print(f"[red]{refusal}")
    return None if refusals else {partition: count for partition, count in failed.items() if count}


def run_resend(
    drop_id: str, partitions: list[str], parallel: int, console: Console
) -> NightVerdict:
    """Resend a drop's failed rows against the configured org (like `sync`, never a sandbox)."""
    settings = SyncSettings()
    if refused_without_org(settings, console, "Nothing was resent or written."):
        return NightVerdict.BAD_USAGE
    state = StateStore(settings.state_dir)
    if unknown_drop(state, drop_id, console):
        return NightVerdict.BAD_USAGE
    prepare_dagster_home(settings.commands_dagster_home())
    to_resend = partitions_to_resend(state, drop_id, partitions, console)
    if to_resend is None:
        console.print("Nothing was resent.")
        return NightVerdict.BAD_USAGE
    if rejected := sum(rejected_count(state, drop_id, partition) for partition in partitions):
        console.print(
            f"{rejected:,} rejected rows of drop {drop_id} are not resent: the sync's rules "
            "refused them before sending, so only a corrected export (the next drop) brings them "
            "in (`sync-assets failures` lists them)."
        )
    if not to_resend:
        console.print(f"Drop {drop_id} has no failed rows in partitions {', '.join(partitions)}.")
        return NightVerdict.PASSED
    console.print(
        f"Resending {sum(to_resend.values()):,} failed rows of drop {drop_id} "
        f"(partitions {', '.join(to_resend)}) into the configured org…"
    )
    latest = latest_partition_syncs(dg.DagsterInstance.get(), dg.AssetKey(LOAD_ASSET))
    outcomes = resend_drop(
        drop_id,
        list(to_resend),
        parallel=parallel,
        launched_by="sync-assets resend",
        # The night's totals change with the resend: summed again once all ten are of this drop.
        summarise=len(latest) == len(PARTITION_KEYS)
        and {str(meta.get("drop_id")) for meta in latest.values()} == {drop_id},
    )
    console.print(resend_table(outcomes, to_resend))
    print_checks(outcomes, console)
    return night_verdict(outcomes, strict=False)
