"""The tags a night's runs carry: named here, without Dagster, for the command that launches them."""

DROP_TAG = "sync/drop_id"
"""The drop a run syncs; the schedule, the sensor and the command line set it."""
LAUNCHED_BY_TAG = "sync/launched_by"
ALERTED_TAG = "sync/alerted"
"""Set on a run whose failure a step has alerted already (its kind), so it is not alerted twice."""
PARTITION_TAG = "dagster/partition"
