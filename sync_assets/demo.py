"""The `demo` and `sync` commands: a whole night's sync with progress bars and a reconciliation table."""

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sync_assets.drops.reader import newest_complete_drop
from sync_assets.runner import RunOutcome, prepare_dagster_home, run_drop
from sync_assets.salesforce.connection import SalesforceCredentials
from sync_assets.salesforce.errors import SalesforceConfigError
from sync_assets.settings import SyncSettings, local_sandbox_env
from sync_assets.staging_ahead import HeadStart
from sync_assets.state.progress import PartitionProgress, read_progress
from sync_assets.storage import StateStore

DEMO_BAD_FRACTION = 0.001


class NightVerdict(IntEnum):
    """How a night ended, as the command's exit code: what a scheduler (cron, Kubernetes) acts on."""

    PASSED = 0
    """Every run succeeded and every check passed, or only WARN checks failed (printed)."""
    FAILED = 1
    """A run failed or an ERROR check failed: rows may be missing from Salesforce."""
    BAD_USAGE = 2
    """Bad usage (an unknown drop or partition, nothing to act on) or no org configured
    (`SALESFORCE_*`): nothing was run or written."""
    WARNINGS = 3
    """Only WARN checks failed, and the command was asked to be --strict."""
    NO_DROP = 4
    """No complete drop to sync: the export did not land (its manifest is missing)."""


def night_verdict(outcomes: list[RunOutcome], *, strict: bool) -> NightVerdict:
    """FAILED on a failed run or ERROR check; WARN-only failures fail only a --strict night."""
    failed_checks = [check for outcome in outcomes for check in outcome.checks if not check.passed]
    if not all(outcome.success for outcome in outcomes) or any(
        check.severity != "WARN" for check in failed_checks
    ):
        return NightVerdict.FAILED
    if failed_checks and strict:
        return NightVerdict.WARNINGS
    return NightVerdict.PASSED


# The reconciliation table needs ~120 columns; logs and CI are not terminals and default to 80.
_MIN_WIDTH = 132


def wide_console() -> Console:
    console = Console()
    if console.width < _MIN_WIDTH:
        console = Console(width=_MIN_WIDTH)
    return console


@contextlib.contextmanager
def salesforce_for_commands(settings: SyncSettings, console: Console) -> Iterator[str]:
    """For `demo` and `ui`: the configured org, or else the local sandbox started here.

    The sandbox runs for the command's duration; its connection is handed to every run explicitly,
    as `SALESFORCE_*` variables (the code location itself never falls back to it).
    """
    if settings.salesforce().is_configured:
        yield "the configured Salesforce org"
        return
    from sync_assets.sandbox.runner import running_sandbox

    console.print(
        f"No SALESFORCE_* variables set: starting the local sandbox in {settings.sandbox_dir} "
        "and syncing into it (set SALESFORCE_* to use a real org)"
    )
    with running_sandbox(Path(settings.sandbox_dir)) as sandbox:
        org = SalesforceCredentials.from_sandbox(sandbox.data_dir).to_env()
        with local_sandbox_env(org):
            yield f"the local sandbox at {sandbox.connection.instance_url}"


def configured_org_problem(settings: SyncSettings) -> str | None:
    """Why `sync` cannot run against the configured org, or None: `sync` never starts a sandbox."""
    try:
        settings.salesforce().flow  # noqa: B018 (validates the credentials)
    except SalesforceConfigError as error:
        return str(error)
    return None


def refused_without_org(settings: SyncSettings, console: Console, nothing_done: str) -> bool:
    """True, saying why and ``nothing_done``, when no org is configured.

    Commands other than `demo` and `ui` never fall back to the local sandbox.
    """
    problem = configured_org_problem(settings)
    if problem is not None:
        console.print(f"[red]{problem}[/] {nothing_done}")
    return problem is not None


def ensure_demo_drop(settings: SyncSettings, rows: int, console: Console) -> str:
    """The newest complete drop, after generating one of `rows` rows if the landing dir has none."""
    from sync_assets.drops.generate import GenerateOptions, generate_drop

    newest = newest_complete_drop(StateStore(settings.landing_dir))
    if newest is not None:
        return newest
    drop_id = datetime.now(UTC).strftime("%Y-%m-%d")
    console.print(f"No drop in {settings.landing_dir}: generating drop {drop_id} ({rows:,} rows)…")
    started = time.monotonic()
    generate_drop(
        settings.landing_dir,
        GenerateOptions(drop_id=drop_id, rows=rows, bad_fraction=DEMO_BAD_FRACTION),
    )
    console.print(f"Generated in {time.monotonic() - started:.1f} s.")
    return drop_id


class PartitionBars:
    """One progress bar per partition, fed from the progress files the runs write."""

    def __init__(
        self, state: StateStore, drop_id: str, partitions: list[str], console: Console
    ) -> None:
        self._state = state
        self._drop_id = drop_id
        self._progress = Progress(
            TextColumn("partition {task.fields[partition]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._tasks = {
            partition: self._progress.add_task(
                "", total=None, partition=partition, status="staging"
            )
            for partition in partitions
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "PartitionBars":
        self._progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._progress.stop()

    def finished(self, outcome: RunOutcome) -> None:
        task = self._tasks.get(outcome.partition)
        if task is None:
            return
        status = "[green]done" if outcome.success else "[red]failed"
        sent = outcome.materializations.get("salesforce_opportunities", {}).get("sent", 0)
        self._progress.update(task, total=max(sent, 1), completed=max(sent, 1), status=status)

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            for partition, task in self._tasks.items():
                progress = read_progress(self._state, self._drop_id, partition)
                if progress is not None and progress.phase == "loading":
                    self._progress.update(
                        task, total=progress.total, completed=progress.confirmed, status="loading"
                    )


DEFAULT_PROGRESS_INTERVAL = 30.0
"""Seconds between plain progress lines when no terminal shows the bars (cron, a pod's log)."""


def progress_line(partition: str, progress: PartitionProgress | None, elapsed: float) -> str:
    """One partition's progress as a plain line a log keeps: rows, jobs in flight, errors."""
    if progress is None:
        return f"partition {partition}: staging or waiting to load ({elapsed:.0f} s)"
    if progress.phase == "done":
        return (
            f"partition {partition}: loaded, {progress.failed:,} of {progress.total:,} rows "
            f"failed; checking ({elapsed:.0f} s)"
        )
    share = progress.confirmed / progress.total if progress.total else 1.0
    return (
        f"partition {partition}: {progress.confirmed:,} of {progress.total:,} rows confirmed "
        f"({share:.0%}), {progress.sent:,} sent, {progress.jobs_in_flight} jobs in flight, "
        f"{progress.failed:,} failed, {progress.resent:,} to resend ({elapsed:.0f} s)"
    )


class PartitionLines:
    """Without a terminal: a plain progress line per running partition every `interval` seconds.

    Fed from the same progress files as `PartitionBars`; a log keeps every line, so a stuck or
    failing partition shows while the night runs, not only in the final table.
    """

    def __init__(
        self,
        state: StateStore,
        drop_id: str,
        partitions: list[str],
        console: Console,
        interval: float,
    ) -> None:
        self._state = state
        self._drop_id = drop_id
        self._running = list(partitions)
        self._console = console
        self._interval = interval
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._report, daemon=True)

    def __enter__(self) -> "PartitionLines":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def finished(self, outcome: RunOutcome) -> None:
        loaded = outcome.materializations.get("salesforce_opportunities", {})
        verdict = "done" if outcome.success else f"failed: {outcome.error}"
        with self._lock:
            if outcome.partition in self._running:
                self._running.remove(outcome.partition)
            self._print(
                f"partition {outcome.partition}: {verdict}, {int(loaded.get('sent') or 0):,} sent, "
                f"{int(loaded.get('failed') or 0):,} failed ({outcome.duration_seconds:.0f} s)"
            )

    def _report(self) -> None:
        while not self._stop.wait(self._interval):
            elapsed = time.monotonic() - self._started
            with self._lock:
                for partition in self._running:
                    progress = read_progress(self._state, self._drop_id, partition)
                    self._print(progress_line(partition, progress, elapsed))

    def _print(self, line: str) -> None:
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)


def night_progress(
    state: StateStore, drop_id: str, partitions: list[str], console: Console, interval: float
) -> "PartitionBars | PartitionLines":
    """Live bars on a terminal; plain lines at a steady interval where only a log is watching."""
    if console.is_terminal:
        return PartitionBars(state, drop_id, partitions, console)
    return PartitionLines(state, drop_id, partitions, console, interval)


def print_head_start(drop_id: str, head_start: HeadStart, console: Console) -> None:
    """What the command staged while Dagster started (nothing to say when it was staged already)."""
    if head_start.partitions:
        console.print(
            f"Staged drop {drop_id} (partitions {','.join(head_start.partitions)}) in "
            f"{head_start.seconds:.1f} s while the runs started."
        )
    elif head_start.left_to_runs:
        console.print(f"[dim]Drop {drop_id} staged by the runs: {head_start.left_to_runs}")


def reconciliation_table(outcomes: list[RunOutcome]) -> Table:
    """Per partition: where every row went, what Salesforce counts, and what the checks said."""
    table = Table(title="Reconciliation")
    for column in (
        "partition",
        "source",
        "rejected",
        "unchanged",
        "sent",
        "failed",
        "Salesforce",
        "ledger",
        "checks",
        "run s",
    ):
        table.add_column(column, justify="right" if column not in {"checks"} else "left")
    totals = dict.fromkeys(("source", "rejected", "unchanged", "sent", "failed"), 0)
    for outcome in outcomes:
        if not outcome.partition:
            continue
        loaded = outcome.materializations.get("salesforce_opportunities", {})
        count_check = next(
            (c for c in outcome.checks if c.name == "salesforce_count_matches_ledger"), None
        )
        failed_checks = [
            f"[yellow]{c.name}" if c.severity == "WARN" else f"[red]{c.name}"
            for c in outcome.checks
            if not c.passed
        ]
        for key in totals:
            totals[key] += int(loaded.get(key) or 0)
        table.add_row(
            outcome.partition,
            *(
                f"{int(loaded.get(key) or 0):,}"
                for key in ("source", "rejected", "unchanged", "sent", "failed")
            ),
            f"{count_check.metadata.get('salesforce_count', 0):,}" if count_check else "-",
            f"{count_check.metadata.get('ledger_count', 0):,}" if count_check else "-",
            ", ".join(failed_checks)
            if failed_checks
            else (
                f"[green]{len(outcome.checks)} passed"
                if outcome.success
                else f"[red]{outcome.error}"
            ),
            f"{outcome.duration_seconds:.1f}",
        )
    table.add_row(
        "all", *(f"{value:,}" for value in totals.values()), "", "", "", "", end_section=True
    )
    return table


def print_checks(outcomes: list[RunOutcome], console: Console) -> None:
    """The night's summary checks, and every partition check that did not pass, with its reason."""
    for outcome in outcomes:
        for check in outcome.checks:
            if check.passed and outcome.partition:
                continue
            if check.passed:
                verdict = "[green]PASS"
            else:
                verdict = "[yellow]WARN" if check.severity == "WARN" else "[red]FAIL"
            where = f" (partition {outcome.partition})" if outcome.partition else ""
            console.print(f"{verdict}[/] {check.name}{where}: {check.description}")


def run_night(
    *,
    drop_id: str | None,
    partitions: list[str],
    parallel: int,
    launched_by: str,
    rows_if_missing: int | None,
    console: Console,
    strict: bool = False,
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
) -> NightVerdict:
    """Sync one drop end to end and print the reconciliation; how the night ended.

    ``rows_if_missing`` set means the demo: it makes a drop and, with no org configured, uses
    the local sandbox. Without it (`sync`) an unconfigured org ends here, before anything is written.
    """
    settings = SyncSettings()
    # `sync` (no rows to make a drop with) syncs only into the org it was given.
    if rows_if_missing is None and refused_without_org(
        settings, console, "Nothing was run or written."
    ):
        return NightVerdict.BAD_USAGE
    dagster_home = prepare_dagster_home(settings.commands_dagster_home())
    started = time.monotonic()
    if drop_id is None:
        if rows_if_missing is None:
            drop_id = newest_complete_drop(StateStore(settings.landing_dir))
            if drop_id is None:
                console.print(f"[red]No complete drop in {settings.landing_dir}.")
                return NightVerdict.NO_DROP
        else:
            drop_id = ensure_demo_drop(settings, rows_if_missing, console)
    generated = time.monotonic()
    with salesforce_for_commands(settings, console) as target:
        console.print(f"Syncing drop {drop_id} ({len(partitions)} partitions) into {target}…")
        synced_from = time.monotonic()
        state = StateStore(settings.state_dir)
        with night_progress(state, drop_id, partitions, console, progress_interval) as progress:
            outcomes = run_drop(
                drop_id,
                partitions,
                parallel=parallel,
                launched_by=launched_by,
                on_done=progress.finished,
                on_head_start=lambda head_start: print_head_start(drop_id, head_start, console),
            )
    sync_seconds = time.monotonic() - synced_from
    console.print(reconciliation_table(outcomes))
    print_checks(outcomes, console)
    verdict = night_verdict(outcomes, strict=strict)
    console.print(
        f"Sync of drop {drop_id}: {sync_seconds:.1f} s "
        f"(total {time.monotonic() - started:.1f} s, drop generation {generated - started:.1f} s). "
        f"Run history is in {dagster_home} (`sync-assets ui`)."
    )
    return verdict
