"""What runs in a measured subprocess: the floor, a night of our sync, the simple-salesforce peer, a drift check.

    python -m benchmarks.workers <kind> '<arguments as JSON>' <result file>

Each kind writes its own figures to the result file as JSON; the parent samples the process tree
from outside (peak RSS per process). Started by `benchmarks.measure.run_worker`.
"""

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from benchmarks.measure import Clock, descendants_cpu_seconds, peak_rss_mb_self

# Time for a fork server to reap its last workers, so their CPU shows in its children's times.
_REAP_SECONDS = 0.5


class FloorArguments(BaseModel):
    landing: Path
    drop_id: str


class NightArguments(BaseModel):
    drop_id: str
    partitions: list[str]
    parallel: int


class DriftArguments(BaseModel):
    partition: str
    full: bool
    overlap_seconds: float


class PeerArguments(BaseModel):
    csv_file: Path
    sandbox_dir: Path
    batch_size: int | None = None
    instance_url: str | None = Field(
        default=None, description="Where to send every call instead of the sandbox (a proxy)."
    )


def floor(arguments: FloorArguments) -> dict[str, Any]:
    """Polars alone: read the drop, shard it by account, serialise every row to CSV in memory."""
    import polars as pl

    from sync_assets.drops.reader import read_manifest
    from sync_assets.drops.shards import shard_expr
    from sync_assets.storage import StateStore

    manifest = read_manifest(StateStore(arguments.landing), arguments.drop_id)
    files = [arguments.landing / arguments.drop_id / name for name in manifest.files]
    with Clock() as clock:
        frame = pl.read_parquet(files)
        shards = frame.with_columns(shard_expr("account_key").alias("_shard")).partition_by(
            "_shard", include_key=False
        )
        csv_bytes = 0
        for shard in shards:
            buffer = io.BytesIO()
            shard.write_csv(buffer)
            csv_bytes += buffer.tell()
    return {
        "rows": frame.height,
        "csv_bytes": csv_bytes,
        "seconds": clock.seconds,
        "cpu_seconds": clock.cpu_seconds,
        "peak_rss_mb": peak_rss_mb_self(),
    }


def night(arguments: NightArguments) -> dict[str, Any]:
    """`run_night` (what `sync-assets sync` runs) on the org and paths the environment names."""
    from rich.console import Console

    from sync_assets import demo, runner
    from sync_assets.staging_ahead import HeadStart

    outcomes: list[runner.RunOutcome] = []
    head_starts: list[HeadStart] = []

    def recording_run_drop(*args: Any, **kwargs: Any) -> list[runner.RunOutcome]:
        printing = kwargs.pop("on_head_start")

        def on_head_start(head_start: HeadStart) -> None:
            head_starts.append(head_start)
            printing(head_start)

        result = runner.run_drop(*args, on_head_start=on_head_start, **kwargs)
        outcomes.extend(result)
        return result

    demo.run_drop = recording_run_drop
    cpu_before = descendants_cpu_seconds()
    started = time.perf_counter()
    verdict = demo.run_night(
        drop_id=arguments.drop_id,
        partitions=arguments.partitions,
        parallel=arguments.parallel,
        launched_by="benchmarks",
        rows_if_missing=None,
        console=Console(file=io.StringIO(), width=160),
    )
    wall = time.perf_counter() - started
    time.sleep(_REAP_SECONDS)
    return {
        # PASSED is 0: the verdict's truth value is the opposite of the night's.
        "ok": verdict == demo.NightVerdict.PASSED,
        "seconds": wall,
        "cpu_seconds": descendants_cpu_seconds() - cpu_before,
        "runs": [_run_figures(outcome) for outcome in outcomes],
        "head_start": head_starts[0].model_dump() if head_starts else None,
    }


def _run_figures(outcome: Any) -> dict[str, Any]:
    staged = outcome.materializations.get("opportunity_batches", {})
    loaded = outcome.materializations.get("salesforce_opportunities", {})
    return {
        "partition": outcome.partition or "summary",
        "success": outcome.success,
        "error": outcome.error,
        "run_seconds": outcome.duration_seconds,
        "staging_seconds": float(staged.get("duration_seconds") or 0.0),
        "loading_seconds": float(loaded.get("duration_seconds") or 0.0),
        "source": int(staged.get("source") or 0),
        "to_send": int(staged.get("to_send") or 0),
        "unchanged": int(staged.get("unchanged") or 0),
        "sent": int(loaded.get("sent") or 0),
        "failed": int(loaded.get("failed") or 0),
        "retried": int(loaded.get("retried") or 0),
        "jobs": int(loaded.get("jobs") or 0),
        "api_calls": int(loaded.get("api_calls") or 0),
        "api_calls_of_the_run": int(loaded.get("api_calls_of_the_run") or 0),
        "poll_calls": int(loaded.get("poll_calls") or 0),
        "peak_jobs_in_flight": int(loaded.get("peak_jobs_in_flight") or 0),
        "lowest_jobs_in_flight": int(loaded.get("lowest_jobs_in_flight") or 0),
        "checks_failed": [check.name for check in outcome.checks if not check.passed],
    }


def peer(arguments: PeerArguments) -> dict[str, Any]:
    """simple-salesforce's Bulk 2.0 upsert of one CSV file (its defaults unless ``batch_size``)."""
    from simple_salesforce import Salesforce
    from simple_salesforce.exceptions import SalesforceError, SalesforceOperationError

    from sync_assets.salesforce.transport import verified_session
    from sync_assets.sandbox.runner import SandboxConnection

    connection = SandboxConnection.read(arguments.sandbox_dir)
    sf = Salesforce(
        instance_url=arguments.instance_url or connection.instance_url,
        session_id=connection.access_token.get_secret_value(),
        session=verified_session(connection.ca_cert),
    )
    error = None
    results: list[dict[str, Any]] = []
    with Clock() as clock:
        try:
            results = sf.bulk2.Opportunity.upsert(
                csv_file=str(arguments.csv_file),
                external_id_field="External_Id__c",
                batch_size=arguments.batch_size,
            )
        except (SalesforceError, SalesforceOperationError) as failure:
            error = f"{type(failure).__name__}: {failure}"
    return {
        "error": error,
        "seconds": clock.seconds,
        "cpu_seconds": clock.cpu_seconds,
        "peak_rss_mb": peak_rss_mb_self(),
        "jobs": len(results),
        "processed": sum(int(r.get("numberRecordsProcessed") or 0) for r in results),
        "failed": sum(int(r.get("numberRecordsFailed") or 0) for r in results),
    }


def drift(arguments: DriftArguments) -> dict[str, Any]:
    """One partition's drift check (`opportunity_drift_job`) in this process, on the instance named."""
    import dagster as dg

    from sync_assets.definitions import build_defs

    check = "salesforce_opportunities_salesforce_matches_what_was_sent"
    job = build_defs().resolve_job_def("opportunity_drift_job")
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            tags={"dagster/partition": arguments.partition},
            run_config={
                "ops": {
                    check: {
                        "config": {
                            "full": arguments.full,
                            "overlap_seconds": arguments.overlap_seconds,
                        }
                    }
                }
            },
        )
    [evaluation] = result.get_asset_check_evaluations()
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    return {
        "partition": arguments.partition,
        "mode": metadata["mode"],
        "read": metadata["read"],
        "drifted": metadata["drifted"],
        "query_seconds": metadata["query_seconds"],
        "compare_seconds": metadata["compare_seconds"],
        "run_seconds": time.perf_counter() - started,
    }


_KINDS = {
    "floor": (FloorArguments, floor),
    "night": (NightArguments, night),
    "peer": (PeerArguments, peer),
    "drift": (DriftArguments, drift),
}


def main() -> None:
    kind, arguments, result_file = sys.argv[1:4]
    model, function = _KINDS[kind]
    result = function(model.model_validate_json(arguments))
    Path(result_file).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
