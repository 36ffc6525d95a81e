"""The 10 account-affine partitions every asset, check, job and schedule of the sync shares."""

import dagster as dg

from sync_assets.state.layout import PARTITION_KEYS

opportunity_partitions = dg.StaticPartitionsDefinition(PARTITION_KEYS)
