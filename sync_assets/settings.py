"""Where drops land and state lives, read from the environment (DESIGN §3.2)."""

import os

from pydantic import BaseModel, Field


class SyncSettings(BaseModel):
    """Paths of the nightly sync; each may be a local path or an object-store URL (s3://…)."""

    landing_dir: str = Field(default="./data/landing", description="SYNC_LANDING_DIR")
    state_dir: str = Field(default="./data/state", description="SYNC_STATE_DIR")
    alert_webhook_url: str | None = Field(default=None, description="SYNC_ALERT_WEBHOOK_URL")
    sandbox_dir: str = Field(default="./data/sandbox", description="SYNC_SANDBOX_DIR")

    @classmethod
    def from_env(cls) -> "SyncSettings":
        return cls(
            landing_dir=os.environ.get("SYNC_LANDING_DIR") or "./data/landing",
            state_dir=os.environ.get("SYNC_STATE_DIR") or "./data/state",
            alert_webhook_url=os.environ.get("SYNC_ALERT_WEBHOOK_URL") or None,
            sandbox_dir=os.environ.get("SYNC_SANDBOX_DIR") or "./data/sandbox",
        )
