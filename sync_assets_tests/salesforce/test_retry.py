import random

from sync_assets.salesforce.retry import RetryPolicy


def test_backoff_grows_exponentially_then_stays_bounded() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    rng = random.Random(1)
    for retry in range(12):
        ceiling = min(8.0, 0.5 * 2**retry)
        delays = [policy.delay(retry, rng) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert max(policy.delay(30, rng) for _ in range(100)) <= 8.0


def test_backoff_is_jittered() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    assert len({round(policy.delay(3, rng), 6) for _ in range(20)}) == 20


def test_total_budget_sums_the_ceilings() -> None:
    assert RetryPolicy(max_attempts=4, base_delay=1, max_delay=3).total_budget() == 1 + 2 + 3
