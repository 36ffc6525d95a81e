import pytest

from sync_assets.salesforce.errors import SalesforceLimitsError
from sync_assets.salesforce.limits import CALLS_PER_JOB, assess_limits, batches_needed
from sync_assets.salesforce.planning import JobSlice


def jobs(*sizes: int) -> list[JobSlice]:
    slices, start = [], 0
    for lane, size in enumerate(sizes):
        slices.append(JobSlice(start=start, end=start + size, lane=lane, csv_bytes=size * 100))
        start += size
    return slices


def org(batches: int, requests: int, **extra: dict[str, int]) -> dict[str, object]:
    return {
        "DailyBulkApiBatches": {"Max": 15_000, "Remaining": batches},
        "DailyApiRequests": {"Max": 100_000, "Remaining": requests},
        **extra,
    }


def test_each_started_ten_thousand_records_of_a_job_is_a_batch() -> None:
    assert batches_needed(jobs(10_000, 10_001, 1)) == 1 + 2 + 1


def test_a_night_that_fits_passes() -> None:
    assess_limits(
        org(batches=4, requests=3 * CALLS_PER_JOB), jobs(10_000, 10_000, 5)
    ).raise_if_short()


def test_too_few_batches_refuses_with_the_numbers() -> None:
    report = assess_limits(org(batches=2, requests=10_000), jobs(10_000, 10_000, 5))
    with pytest.raises(
        SalesforceLimitsError, match=r"DailyBulkApiBatches: needs 3, 2 remaining.*Nothing was sent"
    ):
        report.raise_if_short()


def test_too_few_api_requests_refuses() -> None:
    with pytest.raises(SalesforceLimitsError, match="DailyApiRequests"):
        assess_limits(org(batches=100, requests=5), jobs(100)).raise_if_short()


def test_only_limits_a_real_org_reports_are_read() -> None:
    """/limits has no ingested-records key (the REST API reference's Limits resource)."""
    limits = org(
        batches=100,
        requests=10_000,
        DailyBulkApiIngestRecords={"Max": 150_000_000, "Remaining": 50},
    )
    report = assess_limits(limits, jobs(100))
    assert [need.limit for need in report.needs] == ["DailyBulkApiBatches", "DailyApiRequests"]
    report.raise_if_short()


def test_a_limits_answer_without_the_batch_limit_is_an_error() -> None:
    with pytest.raises(SalesforceLimitsError, match="no DailyBulkApiBatches"):
        assess_limits({"DailyApiRequests": {"Max": 1, "Remaining": 1}}, jobs(1))
