"""Which Salesforce org the state describes: recorded on the first night, checked on every other."""

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from sync_assets.state.layout import ORG_RECORD_PATH
from sync_assets.storage import StateStore

# Salesforce ids are 15 case-sensitive characters, or 18 with a checksum suffix: an identity URL
# gives 18, an access token's prefix 15. The first 15 name the org.
_ORG_ID_CHARACTERS = 15


class OrgRecord(BaseModel):
    org_id: str
    instance_url: str
    recorded_at: str = Field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )


class WrongOrgError(Exception):
    """The configured credentials log in to another org than the one the state describes."""


def bind_org(state: StateStore, org_id: str, instance_url: str) -> OrgRecord:
    """Record the org on the state's first night; refuse to go on against any other org.

    A ledger says which rows *this* org holds unchanged: run against another org, the sync would
    skip those rows there, or count a throw-away org's rows as the real one's.
    """
    if state.exists(ORG_RECORD_PATH):
        recorded = state.read_json(ORG_RECORD_PATH, OrgRecord)
        if recorded.org_id[:_ORG_ID_CHARACTERS] != org_id[:_ORG_ID_CHARACTERS]:
            raise WrongOrgError(
                f"The state dir {state.url('')} describes Salesforce org {recorded.org_id} "
                f"({recorded.instance_url}, since {recorded.recorded_at}), but the configured "
                f"SALESFORCE_* credentials log in to org {org_id} ({instance_url}). Refusing to "
                "sync: the ledger would call rows unchanged that this org does not hold. Point "
                "SYNC_STATE_DIR at this org's own state dir, or fix the SALESFORCE_* variables."
            )
        return recorded
    record = OrgRecord(org_id=org_id, instance_url=instance_url)
    state.write_json(ORG_RECORD_PATH, record)
    return record
