"""Resending a partition's failed rows: a run of the load asset with a tag, so the UI records it."""

from collections.abc import Mapping

import dagster as dg

from sync_assets.drop_runs import latest_partition_sync
from sync_assets.failures import failed_count
from sync_assets.partition_load import PartitionLoader
from sync_assets.salesforce.loader import LoadResult
from sync_assets.storage import StateStore

RESEND_TAG = "sync/resend"
"""On a run of `salesforce_opportunities` (any value, e.g. "failed"): instead of loading the
staging, send the drop's rows that failed for good again (`sync-assets resend`, or the UI's
launchpad with this tag and the drop's `sync/drop_id`)."""


class ResendRefusedError(ValueError):
    """The partition's failed rows of this drop cannot be resent (why is in the message)."""


def is_resend(run_tags: Mapping[str, str]) -> bool:
    return bool(run_tags.get(RESEND_TAG))


def recorded_count(metadata: Mapping[str, object], key: str) -> int:
    """A count from a load's metadata (0 where a load did not record it)."""
    value = metadata.get(key)
    return value if isinstance(value, int) else 0


def load_to_resend(
    instance: dg.DagsterInstance,
    load_asset: dg.AssetKey,
    state: StateStore,
    drop_id: str,
    partition: str,
) -> dict[str, object]:
    """The partition's last load (its metadata), if its failed rows of `drop_id` may be resent.

    Only the partition's last load: a newer drop's staging diffed against the ledger, which
    lacks these rows, so that drop has sent them (with newer values) already; resending the old
    values would overwrite them.
    """
    last = latest_partition_sync(instance, load_asset, partition)
    if last is None:
        raise ResendRefusedError(f"Partition {partition} has never been loaded: nothing to resend.")
    if str(last.get("drop_id")) != drop_id:
        raise ResendRefusedError(
            f"Partition {partition} was last loaded from drop {last.get('drop_id')}, not "
            f"{drop_id}: that load sent {drop_id}'s failed rows again where the newer drop still "
            f"had them (see `sync-assets failures --drop-id {last.get('drop_id')}`)."
        )
    recorded = recorded_count(last, "failed")
    on_file = failed_count(state, drop_id, partition)
    if recorded != on_file:
        raise ResendRefusedError(
            f"Drop {drop_id} partition {partition}: the last load recorded {recorded:,} failed "
            f"rows but the failed-rows file holds {on_file:,}; it was changed outside the sync."
        )
    return last


def with_earlier_load(earlier: Mapping[str, object], resent: LoadResult) -> LoadResult:
    """The partition's load of the drop once the resend is in.

    The earlier load's rows and successes, the resend's successes added, and only what still
    fails as failed. So the load's metadata (and the night's summary) keep `sent = succeeded + failed` for the
    drop; the figures of this run alone (jobs, API calls, duration) stay the resend's.
    """
    return resent.model_copy(
        update={
            "sent": recorded_count(earlier, "sent"),
            **{
                key: recorded_count(earlier, key) + getattr(resent, key)
                for key in ("succeeded", "created", "updated", "retried")
            },
        }
    )


def resend_failed_rows(
    context: dg.AssetExecutionContext, loader: PartitionLoader, drop_id: str
) -> LoadResult:
    """Resend the partition's failed rows of the drop; the load as it stands after the resend."""
    partition = context.partition_key
    earlier = load_to_resend(context.instance, context.asset_key, loader.state, drop_id, partition)
    resent = loader.resend_failed(drop_id, partition, attempt=context.run.run_id)
    context.log.info(
        "Resent %d failed rows of drop %s partition %s: %d now in Salesforce, %d still fail",
        resent.sent,
        drop_id,
        partition,
        resent.succeeded,
        resent.failed,
    )
    return with_earlier_load(earlier, resent)
