"""`sync-assets restore`: upsert back the rows a drop's deletes removed, partition by partition."""

from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from sync_assets.demo import NightVerdict, refused_without_org
from sync_assets.partition_deletes import RestoreResult, restore_partition
from sync_assets.partition_load import PartitionLoader
from sync_assets.resources import BulkLoadResource
from sync_assets.salesforce.connection import SalesforceConnection
from sync_assets.salesforce.loader import BulkLoader
from sync_assets.settings import SyncSettings
from sync_assets.state.layout import DeleteFiles
from sync_assets.state.locks import PartitionBusyError, partition_lock
from sync_assets.storage import StateStore

# A restore waits this long for a partition's running sync to finish before it gives up.
LOCK_TIMEOUT_SECONDS = 60.0


def partitions_with_deletes(state: StateStore, drop_id: str, partitions: list[str]) -> list[str]:
    """The given partitions in which the drop's deletes kept rows to restore."""
    return [key for key in partitions if state.exists(DeleteFiles.of(drop_id, key).deleted)]


def restore_table(results: list[RestoreResult]) -> Table:
    table = Table(title="Restored (upserted back with their last sent values)")
    for column in ("partition", "deleted", "without values", "sent", "restored", "failed"):
        table.add_column(column, justify="right")
    for result in results:
        table.add_row(
            result.partition,
            f"{result.kept:,}",
            f"{result.without_values:,}",
            f"{result.sent:,}",
            f"{result.restored:,}",
            f"{result.failed:,}",
        )
    return table


def run_restore(drop_id: str, partitions: list[str], console: Console) -> NightVerdict:
    """Restore the drop's deleted rows; FAILED when a row could not be upserted back."""
    settings = SyncSettings()
    if refused_without_org(settings, console, "Nothing was restored."):
        return NightVerdict.BAD_USAGE
    state = StateStore(settings.state_dir)
    found = partitions_with_deletes(state, drop_id, partitions)
    if not found:
        console.print(
            f"[red]Drop {drop_id} deleted nothing in partition(s) {', '.join(partitions)} "
            f"(no deletes/{drop_id}/partition=<k>/deleted.parquet in {state.url()}). "
            "Nothing was restored."
        )
        return NightVerdict.BAD_USAGE
    connection = SalesforceConnection(settings.salesforce())
    resource = BulkLoadResource.from_settings(settings)
    loader = PartitionLoader(BulkLoader(connection, resource.loader_settings()), state)
    restore_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    console.print(f"Restoring drop {drop_id}'s deletes into {connection.instance_url}…")
    results = []
    for key in found:
        try:
            with partition_lock(state, key, LOCK_TIMEOUT_SECONDS):
                result = restore_partition(loader, drop_id, key, restore_id)
        except PartitionBusyError as error:
            console.print(f"[red]{error}[/] Partition {key} was not restored; try again.")
            return NightVerdict.FAILED
        if result is not None:
            state.write_json(DeleteFiles.of(drop_id, key).restore_record(restore_id), result)
            results.append(result)
    console.print(restore_table(results))
    missing = sum(result.without_values for result in results)
    if missing:
        console.print(
            f"[yellow]{missing:,} deleted rows had no last sent values (their drop's staging "
            "was gone) and could not be restored."
        )
    failed = [result for result in results if result.failed]
    for result in failed:
        console.print(
            f"[red]Partition {result.partition}: {result.failed:,} rows failed: {result.failed_file}"
        )
    console.print(
        "The ledger holds the restored rows again. If the drop still lacks them, the next night "
        "deletes them again: fix the export first, or set SYNC_DELETE_MODE=none."
    )
    return NightVerdict.FAILED if failed or missing else NightVerdict.PASSED
