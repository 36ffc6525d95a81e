"""Warnings alerted once rather than every night: the ones already sent, kept in the state dir."""

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from sync_assets.state.layout import API_VERSION_NOTICE_PATH
from sync_assets.state.locks import notices_lock
from sync_assets.storage import StateStore

_LOCK_TIMEOUT_SECONDS = 60.0


class Notice(BaseModel):
    text: str
    first_seen: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def first_api_version_warning(state: StateStore, warning: str) -> bool:
    """Record Salesforce's retiring-version `warning`; True only the first time it is seen."""
    with notices_lock(state, _LOCK_TIMEOUT_SECONDS):
        seen = state.exists(API_VERSION_NOTICE_PATH) and (
            state.read_json(API_VERSION_NOTICE_PATH, Notice).text == warning
        )
        if seen:
            return False
        state.write_json(API_VERSION_NOTICE_PATH, Notice(text=warning))
        return True
