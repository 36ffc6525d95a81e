import pytest

from sync_assets.salesforce.errors import SalesforceLimitsError
from sync_assets.salesforce.limits import (
    CALLS_PER_JOB,
    POLL_CALLS_PER_JOB,
    ApiBudget,
    api_calls_needed,
    assess_limits,
    batches_needed,
)
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
    planned = jobs(10_000, 10_000, 5)
    needed = api_calls_needed(planned)
    assess_limits(org(batches=4, requests=needed), planned, needed).raise_if_short()


def test_the_estimate_counts_each_call_of_a_job_and_its_polls() -> None:
    assert api_calls_needed(jobs(10_000, 10_000)) == 2 * (CALLS_PER_JOB + POLL_CALLS_PER_JOB) + 2
    # ~1 call per 1,000 rows sent at most, with jobs of one internal batch.
    assert api_calls_needed(jobs(*[10_000] * 200)) <= 2_000_000 / 1_000


def test_the_estimate_uses_the_calls_per_job_the_last_load_measured() -> None:
    planned = jobs(*[10_000] * 10)
    assert api_calls_needed(planned, calls_per_job=4.3) == 43 + 2
    assert api_calls_needed(planned) == 10 * (CALLS_PER_JOB + POLL_CALLS_PER_JOB) + 2


def test_the_night_may_use_only_its_share_of_the_remaining_requests() -> None:
    planned = jobs(10_000, 10_000)
    needed = api_calls_needed(planned)
    fits = org(batches=10, requests=2 * needed)
    assess_limits(fits, planned, needed, api_budget_share=0.5).raise_if_short()
    short = org(batches=10, requests=2 * needed - 2)
    with pytest.raises(
        SalesforceLimitsError,
        match=rf"DailyApiRequests: needs {needed}, the night may use {needed - 1} \(50% of",
    ):
        assess_limits(short, planned, needed, api_budget_share=0.5).raise_if_short()


def test_the_budget_follows_the_orgs_usage_in_every_answer() -> None:
    """Sforce-Limit-Info counts every integration's calls: others' use shrinks our night too."""
    budget = ApiBudget.start(org(batches=1, requests=1_000), None, 0.5)
    assert budget is not None and budget.calls == 500
    used_at_start = 100_000 - 1_000
    assert not budget.exhausted((used_at_start + 400, 100_000), reserve=50)
    assert budget.exhausted((used_at_start + 460, 100_000), reserve=50)
    degraded = ApiBudget.start(None, (90_000, 100_000), 0.5)
    assert degraded is not None and degraded.calls == 5_000
    assert ApiBudget.start(None, None, 0.5) is None


def test_too_few_batches_refuses_with_the_numbers() -> None:
    planned = jobs(10_000, 10_000, 5)
    report = assess_limits(org(batches=2, requests=10_000), planned, api_calls_needed(planned))
    with pytest.raises(
        SalesforceLimitsError, match=r"DailyBulkApiBatches: needs 3, 2 remaining.*Nothing was sent"
    ):
        report.raise_if_short()


def test_too_few_api_requests_refuses() -> None:
    with pytest.raises(SalesforceLimitsError, match="DailyApiRequests"):
        assess_limits(org(batches=100, requests=5), jobs(100), 6).raise_if_short()


def test_only_limits_a_real_org_reports_are_read() -> None:
    """/limits has no ingested-records key (the REST API reference's Limits resource)."""
    limits = org(
        batches=100,
        requests=10_000,
        DailyBulkApiIngestRecords={"Max": 150_000_000, "Remaining": 50},
    )
    report = assess_limits(limits, jobs(100), api_calls_needed(jobs(100)))
    assert [need.limit for need in report.needs] == ["DailyBulkApiBatches", "DailyApiRequests"]
    report.raise_if_short()


def test_a_limits_answer_without_the_batch_limit_is_an_error() -> None:
    with pytest.raises(SalesforceLimitsError, match="no DailyBulkApiBatches"):
        assess_limits({"DailyApiRequests": {"Max": 1, "Remaining": 1}}, jobs(1), 1)
