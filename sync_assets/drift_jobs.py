"""The drift jobs: check a partition's records in the org, and repair what the check found."""

import dagster as dg

from sync_assets.assets import salesforce_opportunities
from sync_assets.drift import repair_drift
from sync_assets.drop_runs import PARTITION_LOCK_TIMEOUT_SECONDS
from sync_assets.partitions import opportunity_partitions
from sync_assets.resources import SyncStorage
from sync_assets.state.locks import partition_lock

DRIFT_CHECK = dg.AssetCheckKey(salesforce_opportunities.key, "salesforce_matches_what_was_sent")

opportunity_drift_job = dg.define_asset_job(
    "opportunity_drift_job",
    selection=dg.AssetSelection.checks(DRIFT_CHECK),
    partitions_def=opportunity_partitions,
    description="Read one partition's records back from the org (a Bulk API 2.0 query job) and "
    "report the rows edited, deleted or added there since the sync sent them. Incremental "
    "unless the check's config says full: true.",
    executor_def=dg.in_process_executor,
)


@dg.op(
    description="Mark the rows the partition's last drift check found drifted under an "
    "`overwrite` field (or missing from the org) so the next load resends them."
)
def repair_opportunity_drift(context: dg.OpExecutionContext, storage: SyncStorage) -> int:
    state = storage.state()
    partition = context.partition_key
    # The ledger moves: never beside a load of the same partition.
    with partition_lock(state, partition, PARTITION_LOCK_TIMEOUT_SECONDS):
        marked = repair_drift(state, partition)
    context.log.info("Partition %s: the next load resends %d drifted rows", partition, marked)
    context.add_output_metadata({"rows_to_resend": marked})
    return marked


@dg.job(
    partitions_def=opportunity_partitions,
    description="Repair a partition's drift: the next load resends what the last drift check "
    "found changed under `overwrite` or missing; `report` fields are left alone.",
    executor_def=dg.in_process_executor,
)
def opportunity_drift_repair_job() -> None:
    repair_opportunity_drift()
