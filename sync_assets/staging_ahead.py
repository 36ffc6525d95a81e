"""A night's head start: the command stages the drop while its fork server imports Dagster.

For about its first second a night keeps one core busy: the fork server importing the code
location every run is forked from (`fork_preload`). The command stages the drop on the other
core, exactly as the night's first run would (`stage_partition_of_night` under the drop's staging
lock, with the org's metadata read and kept for the drop), so the runs find their partitions
staged instead of ten of them starting beside the staging and nine waiting for it.

Only a drop that one pass stages whole (`ROWS_PER_PASS`) is staged ahead: that pass is then the
night's whole staging. A bigger drop is staged by the runs pass by pass, each pass in its own
process and bounded in memory, so the command itself stays small. Whatever stops the head start
(another staging holds the lock, a drop or mapping that does not read, an org that does not
answer) is left to the runs: they meet it again and report it in their event log, where a
failed night is looked into.

It also says which partitions were staged with nothing to send (`quiet`): the runner starts
those a core's worth at a time, on workers that ran one already (`runner`).

It imports no Dagster: the command that runs it never does (the fork server imports it, on the
other core), so the staging starts as soon as the command has read the drop's manifest.
"""

import time
from functools import partial

from pydantic import BaseModel, Field

from sync_assets.drops.contract import contract_for_drop
from sync_assets.drops.mapping import load_mapping
from sync_assets.drops.reader import read_manifest
from sync_assets.drops.staging import ROWS_PER_PASS, nothing_to_load, stage_partition_of_night
from sync_assets.salesforce.connection import SalesforceConnection
from sync_assets.salesforce.metadata import read_org_metadata
from sync_assets.settings import SyncSettings
from sync_assets.state.layout import PARTITION_KEYS
from sync_assets.state.locks import drop_staging_lock
from sync_assets.storage import StateStore


class HeadStart(BaseModel):
    """What the command staged before the runs needed it, or why it left the staging to them."""

    partitions: list[str] = Field(default_factory=list, description="Staged now (none: reused).")
    quiet: list[str] = Field(
        default_factory=list,
        description="Partitions staged with nothing to send or retag (`nothing_to_load`).",
    )
    seconds: float = 0.0
    left_to_runs: str | None = None


def stage_ahead(drop_id: str, partition: str) -> HeadStart:
    """Stage `drop_id` as the night's first run of `partition` would, if one pass covers it."""
    started = time.monotonic()
    settings = SyncSettings()
    landing, state = StateStore(settings.landing_dir), StateStore(settings.state_dir)
    try:
        rows = read_manifest(landing, drop_id).row_count
        if rows > ROWS_PER_PASS:
            return HeadStart(left_to_runs=f"{rows:,} rows, more than one staging pass")
        # No wait: a lock held means the drop is being staged already.
        with drop_staging_lock(state, drop_id, timeout=0.0):
            # The contract as the night's runs read it (`drop_runs.night_contract`), kept for them.
            org = SalesforceConnection(settings.salesforce())
            mapping = load_mapping(settings.mapping_file or None)
            contract = contract_for_drop(state, drop_id, mapping, partial(read_org_metadata, org))
            _, staged = stage_partition_of_night(landing, state, drop_id, partition, contract)
            quiet = [
                key for key in PARTITION_KEYS if nothing_to_load(state, drop_id, key, contract)
            ]
    except Exception as error:  # any of it is left to the runs, which report it (see above)
        return HeadStart(
            seconds=round(time.monotonic() - started, 3),
            left_to_runs=str(error) or type(error).__name__,
        )
    return HeadStart(partitions=staged, quiet=quiet, seconds=round(time.monotonic() - started, 3))
