"""Posts failed checks and failed runs as JSON to SYNC_ALERT_WEBHOOK_URL, and logs them."""

import logging
from datetime import UTC, datetime
from typing import Any, Literal

import dagster as dg
import requests
from pydantic import BaseModel, Field

from sync_assets.salesforce.transport import verified_session

logger = logging.getLogger(__name__)

_POST_TIMEOUT_SECONDS = 10.0


class Alert(BaseModel):
    """What an on-call engineer needs to act on a failure without opening the UI first."""

    kind: Literal["check_failed", "run_failed", "api_version_retiring", "deletes_held"]
    severity: Literal["WARN", "ERROR"]
    asset: str | None = None
    partition: str | None = None
    drop_id: str | None = None
    check: str | None = None
    run_id: str | None = None
    description: str
    numbers: dict[str, Any] = Field(default_factory=dict)
    sent_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class AlertResource(dg.ConfigurableResource):
    """Sends alerts to a webhook (Slack-compatible JSON POST); logs them either way."""

    webhook_url: str = ""

    def send(self, alert: Alert) -> bool:
        """Log the alert and post it; a webhook outage is logged, never raised into the run."""
        logger.warning(
            "ALERT %s %s asset=%s partition=%s drop=%s check=%s: %s",
            alert.severity,
            alert.kind,
            alert.asset,
            alert.partition,
            alert.drop_id,
            alert.check,
            alert.description,
        )
        if not self.webhook_url:
            return False
        payload = alert.model_dump(mode="json")
        payload["text"] = _one_line_summary(alert)
        try:
            with verified_session() as session:
                response = session.post(
                    self.webhook_url, json=payload, timeout=_POST_TIMEOUT_SECONDS
                )
            response.raise_for_status()
        except requests.RequestException as error:
            # The URL itself may embed a token (Slack-style webhooks), so it is never logged.
            logger.error("Could not post alert to the webhook: %s", type(error).__name__)
            return False
        return True


def _one_line_summary(alert: Alert) -> str:
    where = " ".join(
        part
        for part in (
            alert.asset,
            f"partition {alert.partition}" if alert.partition else None,
            f"drop {alert.drop_id}" if alert.drop_id else None,
            f"check {alert.check}" if alert.check else None,
        )
        if part
    )
    return f"[{alert.severity}] {where}: {alert.description}"
