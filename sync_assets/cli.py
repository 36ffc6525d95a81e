"""The `sync-assets` command line: demo, sandbox, generate, sync and ui."""

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Nightly Data Cloud → Salesforce Opportunity sync (Bulk API 2.0, Dagster).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="HTTPS port (0 picks a free one).")] = 8443,
    data_dir: Annotated[
        Path, typer.Option(help="SQLite, CA and connection.json live here.")
    ] = Path("data/sandbox"),
    accounts: Annotated[
        int, typer.Option(help="Accounts ACC-000000… seeded on first start.")
    ] = 20_000,
    slots: Annotated[int, typer.Option(help="Parallel processing slots (internal batches).")] = 10,
    rate: Annotated[
        float, typer.Option(help="Records/second per slot; 0 = as fast as possible.")
    ] = 0.0,
    lock_timeout: Annotated[
        float, typer.Option(help="Seconds a record waits for a locked parent Account.")
    ] = 10.0,
    batch_time_limit: Annotated[
        float, typer.Option(help="Seconds an internal batch may run before the org retries it.")
    ] = 300.0,
    batch_retries: Annotated[
        int, typer.Option(help="Retries of a batch that runs out of time before its job fails.")
    ] = 20,
    faults: Annotated[
        str,
        typer.Option(
            help='Fault rates, e.g. "http_500=0.02,http_403_concurrent=0.01,maintenance=30s" '
            "(see sync_assets/sandbox/faults.py)."
        ),
    ] = "",
    seed: Annotated[int, typer.Option(help="Seed for fault injection and ids.")] = 0,
    daily_records: Annotated[
        int, typer.Option(help="Daily Bulk ingest record allowance.")
    ] = 150_000_000,
    token_ttl: Annotated[
        float, typer.Option(help="Seconds an access token stays valid; 0 = forever.")
    ] = 0.0,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    daily_api_requests: Annotated[
        int, typer.Option(help="Daily API request allowance (DailyApiRequests).")
    ] = 1_000_000,
    daily_batches: Annotated[
        int, typer.Option(help="Daily Bulk batch allowance (DailyBulkApiBatches).")
    ] = 15_000,
    deprecated_through: Annotated[
        int,
        typer.Option(help="API versions up to this one answer with a 299 Warning header."),
    ] = 40,
    org: Annotated[
        Path | None,
        typer.Option(help="An org file (YAML) describing the org to play; none: an empty org."),
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Run the local Salesforce sandbox (Bulk API 2.0 over HTTPS) in the foreground."""
    from sync_assets.sandbox.server import SandboxConfig, serve

    serve(
        SandboxConfig(
            host=host,
            port=port,
            data_dir=data_dir,
            accounts=accounts,
            slots=slots,
            rate=rate,
            lock_timeout=lock_timeout,
            batch_time_limit=batch_time_limit,
            batch_retries=batch_retries,
            faults=faults,
            seed=seed,
            daily_records=daily_records,
            token_ttl=token_ttl,
            org=org,
            daily_api_requests=daily_api_requests,
            daily_batches=daily_batches,
            deprecated_through=deprecated_through,
            verbose=verbose,
        )
    )


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


def _run_night(
    drop_id: str | None,
    partitions: list[str] | None,
    parallel: int,
    launched_by: str,
    rows_if_missing: int | None,
) -> None:
    from sync_assets.demo import run_night, wide_console
    from sync_assets.state.layout import PARTITION_KEYS, partition_label

    ok = run_night(
        drop_id=drop_id,
        partitions=[partition_label(key) for key in partitions] if partitions else PARTITION_KEYS,
        parallel=parallel,
        launched_by=launched_by,
        rows_if_missing=rows_if_missing,
        console=wide_console(),
    )
    raise typer.Exit(0 if ok else 1)


@app.command()
def demo(
    rows: Annotated[
        int, typer.Option(help="Rows of the demo drop, if one must be made.")
    ] = 2_000_000,
    parallel: Annotated[int, typer.Option(help="Partition runs side by side.")] = 10,
) -> None:
    """The whole nightly sync on the embedded default: demo drop, local sandbox, 10 partitions."""
    _run_night(None, None, parallel, "sync-assets demo", rows_if_missing=rows)


@app.command()
def sync(
    drop_id: Annotated[
        str | None, typer.Option(help="Drop to sync (default: the newest complete drop).")
    ] = None,
    partition: Annotated[
        list[str] | None, typer.Option(help="Partition(s) to sync (default: all 10).")
    ] = None,
    parallel: Annotated[int, typer.Option(help="Partition runs side by side.")] = 10,
) -> None:
    """Run the nightly sync headless against the configured org (SALESFORCE_*, required)."""
    _run_night(drop_id, partition, parallel, "sync-assets sync", rows_if_missing=None)


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
