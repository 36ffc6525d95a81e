"""What the Dagster steps of a night share: the run's drop and tags, the partition locks, the history of syncs."""

from collections.abc import Mapping
from contextlib import AbstractContextManager

import dagster as dg

from sync_assets.drops.contract import (
    ContractError,
    DropContract,
    contract_for_drop,
)
from sync_assets.drops.mapping import MappingError
from sync_assets.drops.reader import newest_complete_drop
from sync_assets.partitions import opportunity_partitions
from sync_assets.resources import SalesforceResource, SyncStorage
from sync_assets.run_tags import DROP_TAG
from sync_assets.state.locks import drop_staging_lock, partition_lock
from sync_assets.storage import StateStore

# How long a run waits for another run of the same partition (schedule plus a manual launch) to
# finish before giving up; a partition's load takes minutes, so this is generous.
PARTITION_LOCK_TIMEOUT_SECONDS = 3 * 3600.0

StepContext = dg.AssetExecutionContext | dg.AssetCheckExecutionContext


def exclusive_partition(
    context: StepContext, state: StateStore, partition: str
) -> AbstractContextManager[None]:
    """The partition's lock (see `partition_lock`), logging when another run holds it."""

    def waiting(path: str) -> None:
        context.log.warning(
            "Partition %s is being synced by another run; waiting for its lock %s", partition, path
        )

    return partition_lock(state, partition, PARTITION_LOCK_TIMEOUT_SECONDS, on_wait=waiting)


def exclusive_staging(
    context: StepContext, state: StateStore, drop_id: str
) -> AbstractContextManager[None]:
    """The drop's staging lock (see `drop_staging_lock`), logging when another run holds it."""

    def waiting(path: str) -> None:
        context.log.info("Drop %s is being staged by another run; waiting for %s", drop_id, path)

    return drop_staging_lock(state, drop_id, PARTITION_LOCK_TIMEOUT_SECONDS, on_wait=waiting)


def drop_to_stage(run_tags: Mapping[str, str], storage: SyncStorage) -> str:
    """The drop a run stages: the one its tag names, or else the newest complete drop.

    A run launched from the UI carries no tag: it stages whatever landed last. The steps after
    staging read the drop back with `last_staged_drop`, so a drop landing mid-run changes nothing.
    """
    tagged = run_tags.get(DROP_TAG)
    if tagged:
        return tagged
    newest = newest_complete_drop(storage.landing())
    if newest is None:
        raise dg.Failure(
            description=f"No complete drop in {storage.landing_dir}: nothing to sync "
            "(a drop is complete once its _manifest.json has landed).",
            allow_retries=False,
        )
    return newest


def last_staged_drop(
    instance: dg.DagsterInstance,
    run_tags: Mapping[str, str],
    partition: str,
    staging_asset: dg.AssetKey,
) -> str:
    """The drop this partition was last staged from: the run's tag, else the staging's record."""
    tagged = run_tags.get(DROP_TAG)
    if tagged:
        return tagged
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=staging_asset, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        raise dg.Failure(
            description=f"Partition {partition} has never been staged: materialize "
            f"{staging_asset.to_user_string()} for it first.",
            allow_retries=False,
        )
    return str(records[0].asset_materialization.metadata["drop_id"].value)


def latest_partition_sync(
    instance: dg.DagsterInstance, load_asset: dg.AssetKey, partition: str
) -> dict[str, object] | None:
    """The metadata of the load asset's latest materialization of one partition, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=load_asset, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()}


def left_moves_in_transit(load: Mapping[str, object] | None) -> bool:
    """Whether a load's metadata says it kept moved-out rows its new partition had not yet sent."""
    metadata = load or {}
    moved = int(str(metadata.get("moved_out") or 0))
    return moved > int(str(metadata.get("moved_out_forgotten") or 0))


def latest_partition_syncs(
    instance: dg.DagsterInstance, load_asset: dg.AssetKey
) -> dict[str, dict[str, object]]:
    """Per partition, the metadata of the load asset's latest materialization."""
    latest = {
        partition: latest_partition_sync(instance, load_asset, partition)
        for partition in opportunity_partitions.get_partition_keys()
    }
    return {partition: meta for partition, meta in latest.items() if meta is not None}


def night_contract(
    storage: SyncStorage, drop_id: str, salesforce: SalesforceResource, keep: bool = True
) -> DropContract:
    """The contract a drop is staged and checked under: the mapping file in the org's metadata.

    The metadata is read from the org the first time a run of the drop needs it and kept in the
    state (unless `keep` is false: a dry run), so every partition of the drop is validated
    against the same snapshot. A mapping that cannot be read or does not fit the org refuses
    the night before anything is sent (no retry: only a person can fix the file or the org).
    """
    try:
        return contract_for_drop(
            storage.state(), drop_id, storage.mapping(), salesforce.org_metadata, keep
        )
    except (MappingError, ContractError) as error:
        raise dg.Failure(description=f"Drop {drop_id}: {error}", allow_retries=False) from error
