"""The Dagster code location: assets, checks, jobs, schedule, sensors and resources of the sync."""

import dagster as dg

from sync_assets import assets, checks
from sync_assets.alerts import AlertResource
from sync_assets.automation import (
    nightly_opportunity_sync,
    opportunity_drop_sensor,
    opportunity_plan_job,
    opportunity_resend_job,
    opportunity_summary_job,
    opportunity_summary_sensor,
    opportunity_sync_job,
    sync_run_failure_alert,
)
from sync_assets.drift_jobs import opportunity_drift_job, opportunity_drift_repair_job
from sync_assets.night_deletes import DeletesResource
from sync_assets.resources import (
    BulkLoadResource,
    SyncStorage,
    salesforce_resource_from_env,
)
from sync_assets.settings import SyncSettings


def build_defs() -> dg.Definitions:
    """The definitions with resources and the schedule bound to the environment as it is now."""
    settings = SyncSettings()
    webhook = (
        {"webhook_url": dg.EnvVar("SYNC_ALERT_WEBHOOK_URL")} if settings.alert_webhook_url else {}
    )
    return dg.Definitions(
        assets=dg.load_assets_from_modules([assets]),
        asset_checks=dg.load_asset_checks_from_modules([checks]),
        jobs=[
            opportunity_sync_job,
            opportunity_summary_job,
            opportunity_plan_job,
            opportunity_resend_job,
            opportunity_drift_job,
            opportunity_drift_repair_job,
        ],
        schedules=[nightly_opportunity_sync(settings)],
        sensors=[opportunity_drop_sensor, opportunity_summary_sensor, sync_run_failure_alert],
        resources={
            "storage": SyncStorage.from_settings(settings),
            "salesforce": salesforce_resource_from_env(settings),
            "bulk_load": BulkLoadResource.from_settings(settings),
            "alerts": AlertResource(**webhook),
            "deletes": DeletesResource(
                mode=settings.delete_mode,
                max_share=settings.delete_max_share,
                max_rows=settings.delete_max_rows,
                archive_values=settings.delete_archive_values,
            ),
        },
    )


# Loaded when Dagster loads the code location, not when this module is imported.
defs = dg.definitions(build_defs)
