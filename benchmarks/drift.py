"""Scenario 9, drift (issue 16): the org read back and compared with the ledger, partition by partition.

A fresh sandbox is filled by a measured night of the base drop; then some records are edited
and some deleted in the org (Bulk jobs, as another integration would); then every partition's
drift check runs alone in a measured process, full (every record read); then more records are
edited and every partition's incremental check (records whose SystemModstamp moved since) runs. Each check's peak memory is compared with the peak
of the run workers that loaded the partitions.
"""

from pydantic import BaseModel, Field
from simple_salesforce import Salesforce

from benchmarks.fixtures import BASE_DROP, fresh_sandbox, land
from benchmarks.measure import median, run_worker
from benchmarks.scenarios import Bench, NightFigures, measure_night
from benchmarks.workers import DriftArguments
from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import SandboxHandle
from sync_assets.state.layout import PARTITION_KEYS


class DriftScale(BaseModel):
    rows: int
    edited: int = Field(description="Records whose Amount another integration changes.")
    deleted: int = Field(description="Records another integration deletes.")


DRIFT_SCALES = {
    "smoke": DriftScale(rows=20_000, edited=200, deleted=50),
    "full": DriftScale(rows=2_000_000, edited=2_000, deleted=500),
}


class DriftCheckFigures(BaseModel):
    partition: str
    mode: str
    read: int
    drifted: int
    query_seconds: float = Field(description="The query job: created, run, every page downloaded.")
    compare_seconds: float
    run_seconds: float = Field(description="The whole check's run, Dagster included.")
    peak_rss_mb: float = Field(description="The measured process (the run executes in it).")


class DriftFigures(BaseModel):
    scale: DriftScale
    load: NightFigures
    full: list[DriftCheckFigures]
    incremental: list[DriftCheckFigures]

    @property
    def load_peak_rss_mb(self) -> float:
        return self.load.peak_rss_mb_run_worker

    @property
    def check_peak_rss_mb(self) -> float:
        return max(check.peak_rss_mb for check in self.full)


def _edit_in_the_org(sandbox: SandboxHandle, edited: int, deleted: int) -> None:
    """Change `edited` Amounts and delete `deleted` records (as many in each partition) by Bulk jobs."""
    connection = sandbox.connection
    sf = Salesforce(
        instance_url=connection.instance_url,
        session_id=connection.access_token.get_secret_value(),
        session=verified_session(connection.ca_cert),
    )
    each = (edited + deleted) // len(PARTITION_KEYS)
    ids = []
    for partition in PARTITION_KEYS:
        soql = f"SELECT Id FROM Opportunity WHERE Sync_Partition__c = '{partition}' LIMIT {each}"
        ids += [record["Id"] for record in sf.query_all(soql)["records"]]
    edits = [{"Id": record_id, "Amount": 424242.42} for record_id in ids[:edited]]
    sf.bulk2.Opportunity.update(records=edits)
    if deleted:
        sf.bulk2.Opportunity.delete(records=[{"Id": record_id} for record_id in ids[edited:]])


def _check(env: dict[str, str], partition: str, full: bool) -> DriftCheckFigures:
    # No overlap: the incremental check reads only what changed after the full one started (the
    # default overlap of 5 minutes would take in the whole load just before).
    arguments = DriftArguments(partition=partition, full=full, overlap_seconds=0.0)
    measured = run_worker("drift", arguments, env=env)
    return DriftCheckFigures.model_validate(
        measured.result | {"peak_rss_mb": measured.peak_total_rss_mb}
    )


def measure_drift(bench: Bench) -> DriftFigures:
    scale = DRIFT_SCALES[bench.scale.name]
    night = bench.night("drift")
    land(bench.cache.landing(bench.spec(scale.rows)), BASE_DROP, night.landing, "drift")
    with fresh_sandbox(bench.sandbox_dir("drift"), accounts=bench.scale.accounts) as sandbox:
        load = measure_night(night, sandbox, "drift")
        _edit_in_the_org(sandbox, scale.edited, scale.deleted)
        env = night.env(sandbox)
        full = [_check(env, partition, full=True) for partition in PARTITION_KEYS]
        # The next day's edits: only these records are read again.
        _edit_in_the_org(sandbox, scale.edited, 0)
        incremental = [_check(env, partition, full=False) for partition in PARTITION_KEYS]
    return DriftFigures(scale=scale, load=load, full=full, incremental=incremental)


def summary(figures: DriftFigures) -> dict[str, float]:
    """The figures the report and its targets quote."""
    full, incremental = figures.full, figures.incremental
    return {
        "full_seconds": sum(check.run_seconds for check in full),
        "full_query_seconds": sum(check.query_seconds for check in full),
        "full_compare_seconds": sum(check.compare_seconds for check in full),
        "incremental_seconds": sum(check.run_seconds for check in incremental),
        "read": sum(check.read for check in full),
        "drifted": sum(check.drifted for check in full),
        "median_check_peak_rss_mb": median(check.peak_rss_mb for check in full),
    }
