import itertools

import polars as pl
import pytest

from sync_assets.salesforce.planning import (
    PlanLimits,
    build_csv,
    csv_header_bytes,
    csv_row_bytes,
    group_lanes,
    plan_jobs,
    send_columns,
)

ACCOUNT = "Account.External_Id__c"


def staged(accounts: list[tuple[str, int]], description: str = "plain") -> pl.DataFrame:
    keys = [account for account, count in accounts for _ in range(count)]
    return pl.DataFrame(
        {
            "External_Id__c": [f"OPP-{index:05d}" for index in range(len(keys))],
            ACCOUNT: keys,
            "Description": [description] * len(keys),
            "_row_hash": ["h"] * len(keys),
            "_change": ["new"] * len(keys),
        }
    )


def accounts_of(rows: pl.DataFrame, start: int, end: int) -> set[str]:
    return set(rows[ACCOUNT][start:end].to_list())


def test_internal_columns_are_never_sent() -> None:
    rows = staged([("A", 2)])
    assert send_columns(rows) == ["External_Id__c", ACCOUNT, "Description"]
    header = build_csv(rows).decode().splitlines()[0]
    assert header == "External_Id__c,Account.External_Id__c,Description"


@pytest.mark.parametrize(
    "description",
    [
        "plain",
        "",
        'has "quotes"',
        "comma, here",
        "multi\nline\r\nvalue",
        "emoji 🎉 ünïcode",
        " #N/A ",
    ],
)
def test_row_byte_estimate_is_exact(description: str) -> None:
    rows = staged([("A", 3), ("B", 2)], description)
    estimate = int(csv_row_bytes(rows).sum()) + csv_header_bytes(send_columns(rows))
    assert estimate == len(build_csv(rows))


@pytest.mark.parametrize("description", ["plain", "emoji 🎉 ünïcode", 'has "quotes", commas'])
def test_the_upload_body_is_the_csv_text_in_utf8(description: str) -> None:
    """Written straight to bytes, the body is exactly polars' CSV text encoded as UTF-8."""
    rows = staged([("A", 2), ("B", 1)], description)
    text = rows.select(send_columns(rows)).write_csv(line_terminator="\n")
    assert build_csv(rows) == text.encode("utf-8")


def test_cuts_fall_on_account_boundaries_and_respect_the_record_limit() -> None:
    rows = staged([("A", 3), ("B", 4), ("C", 2), ("D", 5), ("E", 1)])
    slices = plan_jobs(rows, PlanLimits(max_records=6))
    assert [(job.start, job.end) for job in slices] == [(0, 3), (3, 9), (9, 15)]
    assert all(job.records <= 6 for job in slices)
    for first, second in itertools.pairwise(slices):
        assert not accounts_of(rows, first.start, first.end) & accounts_of(
            rows, second.start, second.end
        )
    assert len({job.lane for job in slices}) == len(slices)


def test_an_account_larger_than_a_job_is_split_into_one_sequential_lane() -> None:
    rows = staged([("A", 2), ("BIG", 25), ("C", 3)])
    slices = plan_jobs(rows, PlanLimits(max_records=10))
    big = [job for job in slices if "BIG" in accounts_of(rows, job.start, job.end)]
    assert len(big) == 3
    assert len({job.lane for job in big}) == 1
    assert all(job.records <= 10 for job in slices)
    assert slices[0].end == 2  # "A" alone: adding BIG's first rows would split BIG across lanes
    lanes = group_lanes(slices)
    assert sum(len(lane) for lane in lanes) == len(slices)
    assert [job.start for lane in lanes for job in lane] == sorted(job.start for job in slices)


def test_cover_every_row_exactly_once() -> None:
    rows = staged([(f"ACC-{index}", 1 + index % 7) for index in range(200)])
    slices = plan_jobs(rows, PlanLimits(max_records=50))
    covered = [position for job in slices for position in range(job.start, job.end)]
    assert covered == list(range(rows.height))


def test_byte_limit_cuts_jobs() -> None:
    rows = staged([(f"ACC-{index}", 10) for index in range(10)], description="x" * 200)
    limits = PlanLimits(max_records=10_000, max_bytes=5_000)
    slices = plan_jobs(rows, limits)
    assert len(slices) > 1
    for job in slices:
        assert len(build_csv(rows.slice(job.start, job.records))) <= limits.max_bytes
        assert job.csv_bytes == len(build_csv(rows.slice(job.start, job.records)))


def test_unaligned_planning_ignores_accounts() -> None:
    rows = staged([("A", 7), ("B", 7)])
    slices = plan_jobs(rows, PlanLimits(max_records=5, account_aligned=False))
    assert [(job.start, job.end) for job in slices] == [(0, 5), (5, 10), (10, 14)]
    assert len({job.lane for job in slices}) == 3


def test_empty_input_plans_nothing() -> None:
    assert plan_jobs(staged([]), PlanLimits()) == []


def test_default_job_is_one_internal_salesforce_batch() -> None:
    assert PlanLimits().max_records == 10_000


def test_a_plans_small_last_job_is_cut_between_accounts_into_pieces_that_run_side_by_side() -> None:
    # Two full jobs, then a remainder of 3,000 records (at most half a job, more than 1,500).
    rows = staged([(f"ACC-{index:03d}", 100) for index in range(230)])
    slices = plan_jobs(rows, PlanLimits())
    assert [job.records for job in slices] == [10_000, 10_000, 1_500, 1_500]
    tail = slices[2:]
    assert len({job.lane for job in slices}) == len(slices)
    for first, second in itertools.pairwise(tail):
        assert not accounts_of(rows, first.start, first.end) & accounts_of(
            rows, second.start, second.end
        )
    for job in tail:
        assert job.csv_bytes == len(build_csv(rows.slice(job.start, job.records)))
    covered = [position for job in slices for position in range(job.start, job.end)]
    assert covered == list(range(rows.height))


@pytest.mark.parametrize(
    ("accounts", "limits"),
    [
        # The last job holds more than half of a full one: it is not a remainder.
        ([(f"ACC-{index:03d}", 100) for index in range(260)], PlanLimits()),
        # At most `tail_records`: one job already.
        ([(f"ACC-{index:03d}", 100) for index in range(212)], PlanLimits()),
        # Cutting switched off.
        ([(f"ACC-{index:03d}", 100) for index in range(230)], PlanLimits(tail_records=None)),
        # The last job is the end of one account larger than a job: its pieces share a lane.
        ([("A", 100), ("BIG", 13_000)], PlanLimits()),
    ],
    ids=["more-than-half", "small-enough", "switched-off", "inside-one-account"],
)
def test_a_last_job_stays_whole_unless_cutting_it_lets_it_run_on_more_slots(
    accounts: list[tuple[str, int]], limits: PlanLimits
) -> None:
    rows = staged(accounts)
    whole = plan_jobs(rows, limits.model_copy(update={"tail_records": None}))
    assert plan_jobs(rows, limits) == whole
