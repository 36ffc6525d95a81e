"""The concurrency gate's rules, on made-up job outcomes (pure logic, no org)."""

import time

import pytest

from sync_assets.salesforce.concurrency import ConcurrencyGate, ConcurrencySettings


def finish_window(gate: ConcurrencyGate, records_per_job: int, pushed_back: int = 0) -> None:
    for _ in range(gate.limit):
        gate.job_finished(records_per_job, pushed_back)


def test_the_gate_rises_while_throughput_rises_and_stays_within_its_bounds() -> None:
    gate = ConcurrencyGate(ConcurrencySettings(start=2, low=1, high=4))
    limits = []
    for records in (1_000, 2_000, 4_000, 8_000, 16_000, 32_000):
        time.sleep(0.01)
        finish_window(gate, records)
        limits.append(gate.limit)
    assert limits == [3, 4, 4, 4, 4, 4]
    assert gate.peak == 4


def test_lock_cpu_or_concurrency_push_back_halves_it_once_per_window() -> None:
    gate = ConcurrencyGate(ConcurrencySettings(start=8, low=1, high=8))
    gate.job_finished(100, pushed_back=200)
    gate.job_finished(100, pushed_back=200)
    assert gate.limit == 4, "one cut per window, however many jobs report it"
    finish_window(gate, 100)
    gate.throttled()
    assert gate.limit == 2
    for _ in range(5):
        finish_window(gate, 0, pushed_back=1)
    assert gate.limit == 1, "never below the low bound"


def test_a_flat_throughput_holds_and_a_fall_after_a_rise_steps_back() -> None:
    gate = ConcurrencyGate(ConcurrencySettings(start=3, low=1, high=8))
    time.sleep(0.01)
    finish_window(gate, 1_000)  # first window: probe one higher
    assert gate.limit == 4
    time.sleep(0.01)
    finish_window(gate, 10)  # the probe made it worse: back
    assert gate.limit == 3


def test_the_bounds_must_hold_the_start() -> None:
    with pytest.raises(ValueError, match="low ≤ start ≤ high"):
        ConcurrencySettings(start=9, low=1, high=8)


def test_acquire_waits_for_a_free_slot() -> None:
    import threading

    gate = ConcurrencyGate(ConcurrencySettings(start=1, low=1, high=2))
    gate.acquire()
    entered = threading.Event()
    thread = threading.Thread(target=lambda: (gate.acquire(), entered.set()))
    thread.start()
    assert not entered.wait(0.1)
    gate.release()
    assert entered.wait(1.0)
    thread.join()
