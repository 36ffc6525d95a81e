"""Simulate how the org packs a night's jobs on its slots: the plans' org span against the minimum.

    uv run python -m benchmarks.packing --rows 300000 --ms-per-record 12

Generates and stages a drop as section 8 does (not timed), cuts each partition's rows into jobs
with the loader's planner (`plan_jobs`: as it cuts them, and without its cut of each plan's
last job, `PlanLimits.tail_records`), then lets `--slots` slots take the jobs first come first
served, each job taking its records × the Apex time, for `--orders` random arrival orders: each
partition's jobs in plan order, partitions starting a few seconds apart. Reports, per way of
cutting the last jobs, the jobs it makes and the median and 90th-percentile org span. A model of
the sandbox's queue (`sandbox/processing.py`), not a measurement of it.
"""

import argparse
import heapq
import math
import random
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path

import polars as pl

from benchmarks.fixtures import BAD_FRACTION
from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.drops.staging import stage_drop
from sync_assets.salesforce.planning import SALESFORCE_INTERNAL_BATCH, PlanLimits, plan_jobs
from sync_assets.state.columns import ACCOUNT_EXTERNAL_ID_FIELD
from sync_assets.storage import StateStore

Recut = Callable[[list[int]], list[int]]


def partition_plans(rows: int, accounts: int, limits: list[PlanLimits]) -> list[list[list[int]]]:
    """Records per job of each partition's plan, as the loader cuts a first night, per limits."""
    work = Path(tempfile.mkdtemp(prefix="bench-packing-"))
    landing, state = StateStore(work / "landing"), StateStore(work / "state")
    generate_drop(
        landing,
        GenerateOptions(drop_id="bench", rows=rows, accounts=accounts, bad_fraction=BAD_FRACTION),
    )
    plans: list[list[list[int]]] = [[] for _ in limits]
    for staged in stage_drop(landing, state, "bench").values():
        to_send = state.read_parquet(staged.to_send).sort(
            ACCOUNT_EXTERNAL_ID_FIELD, maintain_order=True
        )
        for plan, limit in zip(plans, limits, strict=True):
            plan.append([job.records for job in plan_jobs(to_send, limit)])
    return plans


def _even(records: int, pieces: int) -> list[int]:
    return [records // pieces + (1 if i < records % pieces else 0) for i in range(pieces)]


def _last_job_halved(plan: list[int]) -> list[int]:
    return plan[:-1] + _even(plan[-1], 2) if plan else plan


def _last_batch_in_quarters(plan: list[int]) -> list[int]:
    if len(plan) < 2:
        return plan
    tail = plan[-2] + plan[-1] if plan[-1] < SALESFORCE_INTERNAL_BATCH // 2 else plan[-1]
    head = plan[:-2] if tail != plan[-1] else plan[:-1]
    return head + _even(tail, math.ceil(tail / (SALESFORCE_INTERNAL_BATCH // 4)))


# Other ways of cutting the last jobs, applied to the plans without the tail cut.
RECUTS: dict[str, Recut] = {
    "without the tail cut": lambda plan: plan,
    "last job halved": _last_job_halved,
    "last 10,000 rows in quarters": _last_batch_in_quarters,
}


def org_span(
    plans: list[list[int]],
    slots: int,
    seconds_per_record: float,
    seed: int,
    hold_remainders: bool = False,
) -> float:
    """When the last job ends, jobs taken first come first served by the first free slot.

    With ``hold_remainders``, jobs of at most half an internal batch arrive once the full jobs
    have (after a first finish: the sixth run's reverted change).
    """
    rng = random.Random(seed)
    arrivals = []
    for plan in rng.sample(plans, len(plans)):
        start = rng.uniform(0, 5)
        for n, records in enumerate(plan):
            held = hold_remainders and 2 * records <= SALESFORCE_INTERNAL_BATCH
            at = 200 + rng.uniform(0, 20) if held else start + n * 0.7 + rng.uniform(0, 0.3)
            arrivals.append((at, records))
    free = [0.0] * slots
    for _, records in sorted(arrivals):
        heapq.heappush(free, heapq.heappop(free) + records * seconds_per_record)
    return max(free)


def org_span_in_flight(
    plans: list[list[int]], slots: int, seconds_per_record: float, seed: int, in_flight: int
) -> float:
    """As `org_span`, but each partition keeps at most ``in_flight`` jobs unfinished.

    A partition's next job arrives once one of its jobs has finished (as the loader's
    concurrency gate sends it): with more jobs than ``in_flight``, its last ones queue behind
    whatever every other partition has queued by then.
    """
    rng = random.Random(seed)
    events: list[tuple[float, int, int, int]] = []  # (time, order, partition, records or -1)
    order = 0
    waiting: list[int] = [0] * len(plans)
    for partition, plan in enumerate(plans):
        start = rng.uniform(0, 5)
        for n, records in enumerate(plan[:in_flight]):
            events.append((start + n * 0.7 + rng.uniform(0, 0.3), order, partition, records))
            order += 1
        waiting[partition] = min(in_flight, len(plan))
    heapq.heapify(events)
    queue: deque[tuple[int, int]] = deque()  # the org's first-come-first-served queue
    free, end = slots, 0.0
    while events:
        now, _, partition, records = heapq.heappop(events)
        if records >= 0:
            queue.append((partition, records))
        else:
            free += 1
            end = max(end, now)
            if waiting[partition] < len(plans[partition]):
                next_records = plans[partition][waiting[partition]]
                waiting[partition] += 1
                heapq.heappush(
                    events, (now + rng.uniform(0.2, 1.0), order, partition, next_records)
                )
                order += 1
        while free and queue:
            started_partition, started_records = queue.popleft()
            free -= 1
            done = now + started_records * seconds_per_record
            heapq.heappush(events, (done, order, started_partition, -1))
            order += 1
    return end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--ms-per-record", type=float, default=12.0)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument(
        "--in-flight",
        type=int,
        nargs="*",
        default=[4, 5, 8],
        help="Also model each partition keeping at most this many jobs unfinished.",
    )
    args = parser.parse_args()
    planned, whole_tails = partition_plans(
        args.rows, args.accounts, [PlanLimits(), PlanLimits(tail_records=None)]
    )
    per_record = args.ms_per_record / 1_000
    minimum = sum(map(sum, planned)) * per_record / args.slots
    print(f"minimum {minimum:.0f} s")
    Span = Callable[[list[list[int]], int], float]

    def all_queued(hold: bool) -> Span:
        return lambda cut, seed: org_span(cut, args.slots, per_record, seed, hold)

    def in_flight(limit: int) -> Span:
        return lambda cut, seed: org_span_in_flight(cut, args.slots, per_record, seed, limit)

    ways: list[tuple[str, list[list[int]], Span]] = [
        ("as the loader plans (tail cut)", planned, all_queued(False))
    ]
    ways += [
        (name, [recut(plan) for plan in whole_tails], all_queued(False))
        for name, recut in RECUTS.items()
    ]
    ways.append(("without the tail cut, remainders held back", whole_tails, all_queued(True)))
    for limit in args.in_flight:
        ways.append((f"{limit} jobs in flight per partition, tail cut", planned, in_flight(limit)))
        ways.append(
            (f"{limit} jobs in flight per partition, no tail cut", whole_tails, in_flight(limit))
        )
    for name, cut, span in ways:
        spans = pl.Series([span(cut, seed) for seed in range(args.orders)])
        median, p90 = spans.median(), spans.quantile(0.9)
        print(
            f"{name}: {sum(map(len, cut))} jobs, org span median {median:.0f} s "
            f"(utilisation {minimum / median:.0%}), 90th percentile {p90:.0f} s"
        )


if __name__ == "__main__":
    main()
