"""The `plan` command: a night's plan before anything is sent, as a table and as JSON."""

from functools import partial
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sync_assets.demo import NightVerdict, refused_without_org
from sync_assets.drops.contract import ContractError, contract_for_drop
from sync_assets.drops.mapping import MappingError, load_mapping
from sync_assets.drops.reader import DropError, newest_complete_drop
from sync_assets.night_plan import SUMMED, NightPlan, plan_night
from sync_assets.resources import BulkLoadResource
from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.connection import SalesforceConnection
from sync_assets.salesforce.metadata import read_org_metadata
from sync_assets.settings import SyncSettings
from sync_assets.state.layout import plan_path
from sync_assets.storage import StateStore

_COLUMNS = ("source", "create", "update", "unchanged", "rejected", "absent", "jobs", "api_calls")


def plan_table(plan: NightPlan) -> Table:
    """Per partition: rows to create, update, leave and reject, rows absent, jobs and calls."""
    table = Table(title=f"Plan of drop {plan.drop_id} (nothing sent)")
    table.add_column("partition", justify="right")
    for column in _COLUMNS:
        table.add_column(column.replace("_", " "), justify="right")
    table.add_column("top reject reasons")
    for part in plan.partitions:
        reasons = ", ".join(f"{code} {count:,}" for code, count in part.top_reasons.items())
        table.add_row(part.partition, *(f"{getattr(part, name):,}" for name in _COLUMNS), reasons)
    totals = plan.totals
    table.add_row("all", *(f"{totals[name]:,}" for name in _COLUMNS if name in SUMMED), "")
    return table


def limits_lines(plan: NightPlan) -> list[str]:
    if plan.limits_unavailable:
        return [f"[yellow]The org's /limits could not be read: {plan.limits_unavailable}"]
    return [
        f"{'[green]fits' if need.fits else '[red]SHORT'}[/] {need.limit}: needs "
        f"{need.needed:,}, {need.remaining:,} remaining"
        for need in plan.limits
    ]


def make_plan(
    drop_id: str, partitions: list[str], settings: SyncSettings, console: Console
) -> NightPlan:
    """The plan of a drop against the configured org (like `sync`, never a local sandbox)."""
    landing, state = StateStore(settings.landing_dir), StateStore(settings.state_dir)
    mapping = load_mapping(settings.mapping_file)
    connection = SalesforceConnection(settings.salesforce())
    console.print(f"Planning drop {drop_id} against {connection.instance_url}…")
    contract = contract_for_drop(
        state, drop_id, mapping, partial(read_org_metadata, connection), keep=False
    )
    return plan_night(
        landing,
        state,
        drop_id,
        contract,
        partitions,
        BulkLoadResource().loader_settings().plan,
        BulkApi(connection).limits,
    )


def run_plan(
    drop_id: str | None, partitions: list[str], json_file: Path | None, console: Console
) -> NightVerdict:
    """Print the plan's table and write its JSON; FAILED (and why) if no plan could be made."""
    settings = SyncSettings()
    if refused_without_org(settings, console, "Nothing was planned."):
        return NightVerdict.BAD_USAGE
    drop_id = drop_id or newest_complete_drop(StateStore(settings.landing_dir))
    if drop_id is None:
        console.print(f"[red]No complete drop in {settings.landing_dir}.")
        return NightVerdict.NO_DROP
    try:
        plan = make_plan(drop_id, partitions, settings, console)
    except (DropError, MappingError, ContractError) as error:
        console.print(f"[red]{error}")
        return NightVerdict.FAILED
    console.print(plan_table(plan))
    console.print(f"Writes {plan.sobject}: {', '.join(plan.fields)}")
    if plan.extra_columns:
        console.print(f"Columns not mapped (ignored): {', '.join(plan.extra_columns)}")
    if plan.missing_columns:
        console.print(f"Optional columns missing (all empty): {', '.join(plan.missing_columns)}")
    for line in limits_lines(plan):
        console.print(line)
    if json_file is not None:
        json_file.write_text(plan.model_dump_json(indent=2), encoding="utf-8")
        written = str(json_file)
    else:
        state = StateStore(settings.state_dir)
        state.write_json(plan_path(plan.drop_id), plan)
        written = state.url(plan_path(plan.drop_id))
    console.print(f"Nothing was sent and no ledger moved. The plan as JSON: {written}")
    return NightVerdict.PASSED
