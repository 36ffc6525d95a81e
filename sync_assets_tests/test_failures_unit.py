"""Pure pieces of issue 16's items 4 and 6: a resend's counts folded into the load's, progress lines."""

from pathlib import Path

import polars as pl

from sync_assets.demo import progress_line
from sync_assets.failures import failed_count
from sync_assets.resend import with_earlier_load
from sync_assets.salesforce.loader import LoadResult
from sync_assets.state.columns import FAILED_OPERATION
from sync_assets.state.layout import failed_rows_path
from sync_assets.state.progress import PartitionProgress
from sync_assets.storage import StateStore


def resend_result(sent: int, succeeded: int, failed: int) -> LoadResult:
    return LoadResult(
        drop_id="d1",
        partition="3",
        sent=sent,
        succeeded=succeeded,
        created=succeeded,
        updated=0,
        failed=failed,
        retried=1,
        uploaded=sent,
        job_ids=["750x"],
        api_calls=6,
        http_retries=0,
        logins=0,
        duration_seconds=1.0,
        records_per_second=float(sent),
        failed_by_reason={"FIELD_CUSTOM_VALIDATION_EXCEPTION": failed} if failed else {},
    )


def test_a_resend_keeps_the_drops_identities_in_the_loads_counts() -> None:
    earlier = {
        "sent": 100,
        "succeeded": 90,
        "created": 60,
        "updated": 30,
        "failed": 10,
        "retried": 4,
    }
    combined = with_earlier_load(earlier, resend_result(sent=10, succeeded=7, failed=3))
    assert (combined.sent, combined.succeeded, combined.failed) == (100, 97, 3)
    assert (combined.created, combined.updated, combined.retried) == (67, 30, 5)
    assert combined.sent == combined.succeeded + combined.failed
    # This run's own figures stay the resend's.
    assert (combined.uploaded, combined.api_calls) == (10, 6)
    assert combined.failed_by_reason == {"FIELD_CUSTOM_VALIDATION_EXCEPTION": 3}


def test_progress_lines_say_where_a_partition_is() -> None:
    assert progress_line("3", None, 12.4) == "partition 3: staging or waiting to load (12 s)"
    loading = PartitionProgress(
        drop_id="d1",
        partition="3",
        phase="loading",
        confirmed=120_000,
        total=200_000,
        updated_at=0.0,
        sent=150_000,
        jobs_in_flight=6,
        failed=12,
        resent=40,
    )
    assert progress_line("3", loading, 540.0) == (
        "partition 3: 120,000 of 200,000 rows confirmed (60%), 150,000 sent, 6 jobs in flight, "
        "12 failed, 40 to resend (540 s)"
    )
    done = loading.model_copy(update={"phase": "done"})
    assert progress_line("3", done, 600.0) == (
        "partition 3: loaded, 12 of 200,000 rows failed; checking (600 s)"
    )
    # A progress file written before these counts existed reads as zeros.
    old = PartitionProgress.model_validate_json(
        '{"drop_id": "d1", "partition": "3", "phase": "loading", "confirmed": 5, "total": 9, '
        '"updated_at": 0}'
    )
    assert (old.sent, old.jobs_in_flight, old.failed, old.resent) == (0, 0, 0, 0)


def test_rows_salesforce_refused_to_delete_are_not_rows_to_resend(tmp_path: Path) -> None:
    """Deletes keep their refusals in the same failed-rows file; a resend sends upserts only."""
    state = StateStore(tmp_path)
    upserts = pl.DataFrame(
        {"External_Id__c": ["a", "b"], "error_code": ["X", "X"], "error": ["e", "e"]}
    )
    refused_delete = pl.DataFrame(
        {"Id": ["006x"], "error_code": ["ENTITY_IS_DELETED"], FAILED_OPERATION: ["delete"]}
    )
    state.write_parquet(
        failed_rows_path("d1", "3"), pl.concat([upserts, refused_delete], how="diagonal_relaxed")
    )
    assert failed_count(state, "d1", "3") == 2
    assert failed_count(state, "d1", "4") == 0
