"""What starts the sync: the nightly schedule, the drop sensor, the summary sensor and run-failure alerts.

The schedule and the drop sensor may both see the same drop; each partition of a drop is synced
once, whichever fires first, because both ask the instance which partitions of the drop already
have a run before requesting any.
"""

import dagster as dg

from sync_assets.alerts import Alert, AlertResource
from sync_assets.assets import (
    opportunity_batches,
    opportunity_sync_summary,
    salesforce_opportunities,
)
from sync_assets.drift_jobs import DRIFT_CHECK
from sync_assets.drop_runs import latest_partition_syncs
from sync_assets.drops.reader import newest_complete_drop
from sync_assets.partitions import opportunity_partitions
from sync_assets.resend import RESEND_TAG
from sync_assets.resources import SyncStorage
from sync_assets.run_tags import ALERTED_TAG, DROP_TAG, PARTITION_TAG
from sync_assets.settings import SyncSettings

opportunity_sync_job = dg.define_asset_job(
    "opportunity_sync_job",
    # The drift check reads the partition back from the org: its own job, on its own schedule.
    selection=dg.AssetSelection.assets(opportunity_batches, salesforce_opportunities)
    - dg.AssetSelection.checks(DRIFT_CHECK),
    partitions_def=opportunity_partitions,
    description="Stage one partition of a drop and upsert it into Salesforce, with its checks.",
    # One process per run, both steps inside it: a step subprocess would cost more than the step.
    executor_def=dg.in_process_executor,
    tags={"sync/target": "salesforce"},
)

DRY_RUN_CONFIG = {
    "ops": {opportunity_batches.key.to_python_identifier(): {"config": {"dry_run": True}}}
}

opportunity_plan_job = dg.define_asset_job(
    "opportunity_plan_job",
    selection=dg.AssetSelection.assets(opportunity_batches).without_checks(),
    partitions_def=opportunity_partitions,
    description="Plan one partition of a drop (opportunity_batches with dry_run): what it would "
    "create, update, leave and reject, the Bulk jobs and API calls it would use. Nothing is "
    "staged or sent and no ledger moves; the plan is an observation of opportunity_batches.",
    config=DRY_RUN_CONFIG,
    executor_def=dg.in_process_executor,
)

opportunity_resend_job = dg.define_asset_job(
    "opportunity_resend_job",
    # The load and its nightly checks, not the staging (the rows come from the failed-rows file)
    # nor the drift check (a read of the whole partition).
    selection=dg.AssetSelection.assets(salesforce_opportunities)
    - dg.AssetSelection.checks(DRIFT_CHECK),
    partitions_def=opportunity_partitions,
    description="Send one partition's rows that failed in Salesforce again (`sync-assets resend`), "
    "once the org or the data is fixed; give the drop as the run tag sync/drop_id.",
    executor_def=dg.in_process_executor,
    tags={RESEND_TAG: "failed"},
)

opportunity_summary_job = dg.define_asset_job(
    "opportunity_summary_job",
    selection=dg.AssetSelection.assets(opportunity_sync_summary),
    description="Sum up a drop once its 10 partitions are in Salesforce.",
    executor_def=dg.in_process_executor,
)


def is_dry_run(run: dg.DagsterRun) -> bool:
    """A run of the sync job launched with `dry_run` config: it planned, it did not sync."""
    ops = run.run_config.get("ops", {}) if isinstance(run.run_config, dict) else {}
    staging = ops.get(opportunity_batches.key.to_python_identifier(), {})
    return bool(staging.get("config", {}).get("dry_run"))


def partitions_with_runs(instance: dg.DagsterInstance, drop_id: str) -> set[str]:
    """Partitions that already have a run (in any state, dry runs aside) for this drop."""
    runs = instance.get_run_records(
        filters=dg.RunsFilter(job_name=opportunity_sync_job.name, tags={DROP_TAG: drop_id})
    )
    return {
        record.dagster_run.tags[PARTITION_TAG]
        for record in runs
        if PARTITION_TAG in record.dagster_run.tags and not is_dry_run(record.dagster_run)
    }


def run_requests_for_drop(instance: dg.DagsterInstance, drop_id: str) -> list[dg.RunRequest]:
    """One run request per partition of the drop that has no run yet."""
    done = partitions_with_runs(instance, drop_id)
    return [
        dg.RunRequest(
            run_key=f"{drop_id}:{partition}",
            partition_key=partition,
            tags={DROP_TAG: drop_id},
        )
        for partition in opportunity_partitions.get_partition_keys()
        if partition not in done
    ]


def requests_for_newest_drop(
    instance: dg.DagsterInstance, storage: SyncStorage
) -> tuple[str | None, list[dg.RunRequest] | dg.SkipReason]:
    """The newest complete drop and its partitions still to run, or why there is nothing to do."""
    drop_id = newest_complete_drop(storage.landing())
    if drop_id is None:
        return None, dg.SkipReason(f"No complete drop in {storage.landing_dir}.")
    requests = run_requests_for_drop(instance, drop_id)
    if not requests:
        return drop_id, dg.SkipReason(f"Drop {drop_id} already has a run for every partition.")
    return drop_id, requests


def nightly_opportunity_sync(settings: SyncSettings) -> dg.ScheduleDefinition:
    """The nightly schedule, at the hour the settings give (`SYNC_SCHEDULE_CRON`, `…_TIMEZONE`)."""

    @dg.schedule(
        name="nightly_opportunity_sync",
        job=opportunity_sync_job,
        cron_schedule=settings.schedule_cron,
        execution_timezone=settings.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every night: sync the 10 partitions of the newest complete drop, if not yet "
        "synced.",
    )
    def schedule(
        context: dg.ScheduleEvaluationContext, storage: SyncStorage
    ) -> dg.SkipReason | list[dg.RunRequest]:
        """The safety net behind the sensor: whatever it missed is synced at the nightly hour."""
        _, requests = requests_for_newest_drop(context.instance, storage)
        return requests

    return schedule


@dg.sensor(
    job=opportunity_sync_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sync a drop as soon as its manifest lands.",
)
def opportunity_drop_sensor(
    context: dg.SensorEvaluationContext, storage: SyncStorage
) -> dg.SensorResult | dg.SkipReason:
    """Watch the landing dir; a drop is complete once its `_manifest.json` exists."""
    drop_id, requests = requests_for_newest_drop(context.instance, storage)
    if isinstance(requests, dg.SkipReason):
        return requests
    return dg.SensorResult(run_requests=requests, cursor=drop_id)


@dg.sensor(
    job=opportunity_summary_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sum up a drop once all 10 partitions have synced it.",
)
def opportunity_summary_sensor(
    context: dg.SensorEvaluationContext,
) -> dg.SensorResult | dg.SkipReason:
    """Request the summary once per drop (the run key is the drop id)."""
    latest = latest_partition_syncs(context.instance, salesforce_opportunities.key)
    drops = {str(meta.get("drop_id")) for meta in latest.values()}
    if len(latest) < opportunity_partitions.get_num_partitions() or len(drops) != 1:
        return dg.SkipReason(
            f"{len(latest)} of {opportunity_partitions.get_num_partitions()} partitions synced "
            f"(drops {sorted(drops)})."
        )
    drop_id = drops.pop()
    summarised = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=opportunity_summary_job.name, tags={DROP_TAG: drop_id}),
        limit=1,
    )
    if summarised:
        return dg.SkipReason(f"Drop {drop_id} is already summarised.")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"summary:{drop_id}", tags={DROP_TAG: drop_id})],
        cursor=drop_id,
    )


@dg.run_failure_sensor(
    monitored_jobs=[opportunity_sync_job, opportunity_resend_job, opportunity_summary_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Post every failed sync run to the alert webhook.",
)
def sync_run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertResource) -> None:
    """A failed run means a partition's rows are not all in Salesforce: page someone.

    Unless a step of the run sent its own alert with the reason (e.g. the mass-delete guard).
    """
    run = context.dagster_run
    if ALERTED_TAG in run.tags:
        context.log.info("Run %s alerted already (%s)", run.run_id, run.tags[ALERTED_TAG])
        return
    alerts.send(
        Alert(
            kind="run_failed",
            severity="ERROR",
            asset=",".join(key.to_user_string() for key in run.asset_selection or []) or None,
            partition=run.tags.get(PARTITION_TAG),
            drop_id=run.tags.get(DROP_TAG),
            run_id=run.run_id,
            description=context.failure_event.message or "run failed",
        )
    )
