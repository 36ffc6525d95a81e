"""Unit tests of the lookups' pure parts: when a load began, its datetime literal, key chunks."""

from datetime import UTC, datetime, timedelta, timezone

from sync_assets.salesforce.checkpoint import CheckpointedJob
from sync_assets.salesforce.lookups import (
    CLOCK_SKEW_MARGIN,
    chunks_by_length,
    load_started,
    soql_datetime,
)

T0 = datetime(2026, 12, 3, 1, 0, 0, 500_000, tzinfo=UTC)


def job(sequence: int, created_at: datetime, server_created: datetime | None) -> CheckpointedJob:
    return CheckpointedJob(
        sequence=sequence,
        job_id=f"750{sequence:015d}",
        records=1,
        created_at=created_at,
        server_created=server_created,
    )


def test_a_load_begins_at_its_first_jobs_createdDate_by_salesforces_clock() -> None:
    # The client's clock runs an hour fast: Salesforce's createdDate is what CreatedDate compares to.
    jobs = [
        job(1, T0 + timedelta(hours=1, seconds=5), T0 + timedelta(seconds=5)),
        job(0, T0 + timedelta(hours=1), T0),
    ]
    assert load_started(jobs) == T0


def test_a_job_without_salesforces_createdDate_counts_from_the_client_clock_less_a_margin() -> None:
    jobs = [job(0, T0, T0 + timedelta(seconds=3)), job(1, T0 + timedelta(seconds=1), None)]
    assert load_started(jobs) == T0 + timedelta(seconds=1) - CLOCK_SKEW_MARGIN


def test_the_datetime_literal_is_utc_floored_to_the_second() -> None:
    # SOQL datetimes have whole seconds: flooring keeps records created in the load's first second.
    assert soql_datetime(T0) == "2026-12-03T01:00:00Z"
    assert soql_datetime(T0.astimezone(timezone(timedelta(hours=2)))) == "2026-12-03T01:00:00Z"


def test_key_chunks_fit_the_statement_and_keep_every_key_in_order() -> None:
    literals = [f"'OPP-{n:07d}'" for n in range(1_000)]
    chunks = chunks_by_length(literals, 1_000)
    assert [literal for chunk in chunks for literal in chunk] == literals
    assert all(len(", ".join(chunk)) <= 1_000 for chunk in chunks)
    assert len(chunks) == 1_000 * 15 // 1_000 + 1
