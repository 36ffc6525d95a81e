"""The `sync-assets` command line: demo, sandbox, generate, plan, sync, failures, resend, restore and ui."""

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Nightly Data Cloud → Salesforce Opportunity sync (Bulk API 2.0, Dagster).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def sandbox(context: typer.Context) -> None:
    """Run the local Salesforce sandbox (HTTPS on SQLite) in the foreground; --help lists its options."""
    from sync_assets.sandbox.config import parse_command_line
    from sync_assets.sandbox.server import serve
    from sync_assets.settings import SyncSettings

    arguments = list(context.args)
    if not any(argument.split("=")[0] == "--data-dir" for argument in arguments):
        arguments = ["--data-dir", SyncSettings().sandbox_dir, *arguments]
    serve(parse_command_line(arguments))


@app.command()
def generate(
    drop_id: Annotated[str, typer.Option(help="Drop id, e.g. 2026-11-28.")],
    rows: Annotated[int, typer.Option(help="Rows in the drop.")] = 2_000_000,
    accounts: Annotated[int, typer.Option(help="Distinct parent accounts.")] = 20_000,
    bad_fraction: Annotated[float, typer.Option(help="Fraction of rows that break a rule.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same drop).")] = 0,
    based_on: Annotated[
        str | None, typer.Option(help="Make the next night's drop from this drop id.")
    ] = None,
    changed: Annotated[float, typer.Option(help="With --based-on: fraction changed.")] = 0.05,
    new: Annotated[float, typer.Option(help="With --based-on: fraction of new rows.")] = 0.01,
    deleted: Annotated[float, typer.Option(help="With --based-on: fraction deleted.")] = 0.005,
    file_format: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    landing_dir: Annotated[
        Path | None, typer.Option(help="Landing dir (default $SYNC_LANDING_DIR).")
    ] = None,
) -> None:
    """Write a demo drop (part files, then _manifest.json) into the landing dir."""
    from sync_assets.drops.generate import GenerateOptions, generate_drop
    from sync_assets.settings import SyncSettings

    target = landing_dir or SyncSettings().landing_dir
    manifest = generate_drop(
        target,
        GenerateOptions(
            drop_id=drop_id,
            rows=rows,
            accounts=accounts,
            bad_fraction=bad_fraction,
            seed=seed,
            based_on=based_on,
            changed=changed,
            new=new,
            deleted=deleted,
            file_format=file_format,
        ),
    )
    typer.echo(f"wrote drop {manifest.drop_id}: {manifest.row_count:,} rows in {target}")


EXIT_CODES_HELP = (
    "Exit codes: 0 the night passed (failed WARN checks are printed, e.g. a reject rate above 1%); "
    "1 a run or an ERROR check failed (rows may be missing from Salesforce); 2 bad usage or no org "
    "configured (SALESFORCE_*, nothing written); "
    "3 only WARN checks failed and --strict was given; 4 no complete drop to sync."
)


def _run_night(
    drop_id: str | None,
    partitions: list[str] | None,
    parallel: int,
    launched_by: str,
    rows_if_missing: int | None,
    strict: bool,
    progress_interval: float,
) -> None:
    from sync_assets.demo import run_night, wide_console

    verdict = run_night(
        drop_id=drop_id,
        partitions=_partition_keys(partitions),
        parallel=parallel,
        launched_by=launched_by,
        rows_if_missing=rows_if_missing,
        console=wide_console(),
        strict=strict,
        progress_interval=progress_interval,
    )
    raise typer.Exit(int(verdict))


StrictOption = Annotated[
    bool, typer.Option(help="Exit 3 when only WARN checks failed (default: exit 0, printed).")
]
ProgressIntervalOption = Annotated[
    float,
    typer.Option(
        min=1.0,
        help="Seconds between plain progress lines per partition when stdout is not a terminal "
        "(cron, a pod's log); a terminal shows live bars instead.",
    ),
]


@app.command(epilog=EXIT_CODES_HELP)
def demo(
    rows: Annotated[
        int, typer.Option(help="Rows of the demo drop, if one must be made.")
    ] = 2_000_000,
    parallel: Annotated[int, typer.Option(help="Partition runs side by side.")] = 10,
    strict: StrictOption = False,
    progress_interval: ProgressIntervalOption = 30.0,
) -> None:
    """The whole nightly sync on the embedded default: demo drop, local sandbox, 10 partitions."""
    _run_night(
        None,
        None,
        parallel,
        "sync-assets demo",
        rows_if_missing=rows,
        strict=strict,
        progress_interval=progress_interval,
    )


@app.command(epilog=EXIT_CODES_HELP)
def sync(
    drop_id: Annotated[
        str | None, typer.Option(help="Drop to sync (default: the newest complete drop).")
    ] = None,
    partition: Annotated[
        list[str] | None, typer.Option(help="Partition(s) to sync (default: all 10).")
    ] = None,
    parallel: Annotated[int, typer.Option(help="Partition runs side by side.")] = 10,
    strict: StrictOption = False,
    progress_interval: ProgressIntervalOption = 30.0,
) -> None:
    """Run the nightly sync headless against the configured org (SALESFORCE_*, required)."""
    _run_night(
        drop_id,
        partition,
        parallel,
        "sync-assets sync",
        rows_if_missing=None,
        strict=strict,
        progress_interval=progress_interval,
    )


@app.command()
def plan(
    drop_id: Annotated[
        str | None, typer.Option(help="Drop to plan (default: the newest complete drop).")
    ] = None,
    partition: Annotated[
        list[str] | None, typer.Option(help="Partition(s) to plan (default: all 10).")
    ] = None,
    json_file: Annotated[
        Path | None,
        typer.Option(
            "--json", help="Write the plan here (default: plans/<drop>.json in the state)."
        ),
    ] = None,
) -> None:
    """Plan the next night without sending anything: rows to create, update, leave and reject.

    Exit codes: 0 planned, 1 the drop or the mapping was refused (printed), 2 bad usage or no
    org configured (SALESFORCE_*), 4 no complete drop.

    Per partition, with the Bulk jobs and API calls it would use against the org's /limits and
    the fields it would write; printed as a table and written as JSON.
    """
    from sync_assets.demo import wide_console
    from sync_assets.plan_report import run_plan

    raise typer.Exit(int(run_plan(drop_id, _partition_keys(partition), json_file, wide_console())))


def _partition_keys(partitions: list[str] | None) -> list[str]:
    """The partitions named on the command line (default: all), or exit 2 naming the bad one."""
    from sync_assets.state.layout import PARTITION_KEYS, partition_label

    try:
        return [partition_label(key) for key in partitions] if partitions else PARTITION_KEYS
    except ValueError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from error


@app.command(
    epilog="Exit codes: 0 listed (or none to list); 2 bad usage: an unknown drop or partition, "
    "an unreadable mapping file; 4 no drop staged yet."
)
def failures(
    drop_id: Annotated[
        str | None,
        typer.Option(help="Drop whose rows to list (default: the newest drop in the state)."),
    ] = None,
    partition: Annotated[
        list[str] | None, typer.Option(help="Partition(s) to list (default: all 10).")
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option(help="Write every listed row, with all its columns, to this CSV file."),
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="Rows to print after the counts.")] = 50,
) -> None:
    """List a drop's rows that did not reach Salesforce, with their reasons.

    Rejected by the sync's rules (fix the export) and failed in Salesforce (fix the org or the data, then `resend`): counts by partition, kind and reason code first, then the rows. Reads the state only.
    """
    from sync_assets.demo import wide_console
    from sync_assets.failure_report import run_failures

    keys = _partition_keys(partition)
    raise typer.Exit(int(run_failures(drop_id, keys, csv, limit, wide_console())))


@app.command(
    epilog="Exit codes (as sync's): 0 resent and the checks passed; 1 a run or an ERROR check "
    "failed (rows still fail: `sync-assets failures` lists them); 2 bad usage (an unknown drop "
    "or partition, a partition last loaded from another drop) or no org configured "
    "(SALESFORCE_*), nothing resent or written."
)
def resend(
    drop_id: Annotated[str, typer.Option(help="Drop whose failed rows to resend.")],
    partition: Annotated[
        list[str] | None, typer.Option(help="Partition(s) to resend (default: all 10).")
    ] = None,
    parallel: Annotated[int, typer.Option(help="Partition runs side by side.")] = 10,
) -> None:
    """Send a drop's rows that failed in Salesforce again, once the org or the data is fixed.

    One Dagster run per partition (tag sync/resend) against the configured org (SALESFORCE_*, required): the ledger takes the rows Salesforce now confirms, the failed-rows file keeps only those that still fail, the load's checks run again. Only a partition's last loaded drop can be resent; rejected rows cannot (a corrected export brings them in).
    """
    from sync_assets.demo import wide_console
    from sync_assets.failure_report import run_resend

    keys = _partition_keys(partition)
    raise typer.Exit(int(run_resend(drop_id, keys, parallel, wide_console())))


@app.command()
def restore(
    drop_id: Annotated[str, typer.Option(help="The drop whose deletes to undo.")],
    partition: Annotated[
        list[str] | None,
        typer.Option(help="Partition(s) to restore (default: every one the drop deleted in)."),
    ] = None,
) -> None:
    """Upsert back the rows a drop's deletes removed, with the values they were last sent with.

    Exit codes: 0 restored; 1 rows could not be restored (failed rows are kept in
    deletes/<drop>/partition=<k>/restore_failed.parquet, or their values were gone); 2 no org
    configured (SALESFORCE_*), or the drop deleted nothing in those partitions.

    The ledger holds the restored rows again: fix the export (or set SYNC_DELETE_MODE=none)
    before the next night, which would delete them again.
    """
    from sync_assets.demo import wide_console
    from sync_assets.restore_report import run_restore

    raise typer.Exit(int(run_restore(drop_id, _partition_keys(partition), wide_console())))


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port of the Dagster UI.")] = 3000,
    host: Annotated[str, typer.Option(help="Address of the Dagster UI.")] = "127.0.0.1",
) -> None:
    """The Dagster UI (webserver + daemon); with no SALESFORCE_* set, on the local sandbox."""
    from rich.console import Console

    from sync_assets.dagster_services import ServiceExitedError, serve_dagster
    from sync_assets.demo import salesforce_for_commands
    from sync_assets.runner import prepare_dagster_home
    from sync_assets.settings import SyncSettings

    console = Console()
    settings = SyncSettings()
    home = prepare_dagster_home(settings.commands_dagster_home())
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    with salesforce_for_commands(settings, console):
        console.print(
            f"Dagster UI on http://{host}:{port}; schedules, sensors and the run queue run in the "
            f"daemon, which logs to {home / 'daemon.log'} (Ctrl-C stops both)"
        )
        try:
            serve_dagster(workspace, host, port, daemon_log=home / "daemon.log")
        except ServiceExitedError as error:
            console.print(f"[red]{error}")
            raise typer.Exit(1) from error
