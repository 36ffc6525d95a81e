"""Alerts: failed checks and failed runs are posted as JSON to the webhook, and logged."""

import logging

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from sync_assets.alerts import Alert, AlertResource
from sync_assets.automation import opportunity_sync_job, sync_run_failure_alert
from sync_assets_tests.webhook import webhook_receiver


def test_alert_is_posted_with_its_numbers() -> None:
    with webhook_receiver() as hook:
        sent = AlertResource(webhook_url=hook.url).send(
            Alert(
                kind="check_failed",
                severity="WARN",
                asset="opportunity_batches",
                partition="3",
                drop_id="2026-11-28",
                check="reject_rate_below_threshold",
                description="312 of 20,000 rows rejected (1.56%)",
                numbers={"rejected": 312, "source": 20_000},
            )
        )
    assert sent
    [post] = hook.posts
    assert post["severity"] == "WARN"
    assert post["partition"] == "3"
    assert post["numbers"] == {"rejected": 312, "source": 20_000}
    assert "reject_rate_below_threshold" in post["text"]


def test_webhook_outage_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with webhook_receiver() as hook:
        url = hook.url
    secret_url = url + "?token=s3cr3t-webhook-token"
    with caplog.at_level(logging.WARNING):
        sent = AlertResource(webhook_url=secret_url).send(
            Alert(kind="run_failed", severity="ERROR", description="run failed")
        )
    assert not sent
    assert "Could not post alert" in caplog.text
    assert "s3cr3t-webhook-token" not in caplog.text


@pytest.mark.parametrize(
    ("tags", "posts"),
    [({}, 1), ({"sync/alerted": "deletes_held"}, 0)],
    ids=["posted", "alerted-by-its-step"],
)
def test_failed_run_is_posted_once(tags: dict[str, str], posts: int) -> None:
    with dg.instance_for_test() as instance, webhook_receiver() as hook:
        run = create_run_for_test(
            instance,
            job_name=opportunity_sync_job.name,
            tags={"dagster/partition": "4", "sync/drop_id": "2026-11-28", **tags},
        )
        failure = dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_FAILURE.value,
            job_name=run.job_name,
            message="Execution of run for opportunity_sync_job failed.",
        )
        context = dg.build_run_status_sensor_context(
            sensor_name=sync_run_failure_alert.name,
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=run,
            resources={"alerts": AlertResource(webhook_url=hook.url)},
        ).for_run_failure()
        sync_run_failure_alert(context)
    assert len(hook.posts) == posts
    if not posts:
        return
    [post] = hook.posts
    assert post["kind"] == "run_failed"
    assert post["partition"] == "4"
    assert post["drop_id"] == "2026-11-28"
    assert post["run_id"] == run.run_id
