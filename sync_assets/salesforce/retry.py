"""Backoff: bounded exponential backoff with jitter for retried calls and resend rounds."""

import random

from pydantic import BaseModel, Field


class RetryPolicy(BaseModel):
    """How often and how patiently a failed HTTP call is retried."""

    max_attempts: int = Field(default=8, ge=1, description="Tries per call, the first included.")
    base_delay: float = Field(default=0.5, gt=0, description="Seconds before the first retry.")
    max_delay: float = Field(default=20.0, gt=0, description="Cap on one wait, in seconds.")

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based).

        The ceiling doubles each time up to ``max_delay``; the wait is drawn from its upper half,
        so concurrent clients that failed together spread out but never retry at once.
        """
        ceiling = min(self.max_delay, self.base_delay * 2**retry)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)

    def total_budget(self) -> float:
        """The longest a call can spend waiting between its tries."""
        return sum(
            min(self.max_delay, self.base_delay * 2**retry)
            for retry in range(self.max_attempts - 1)
        )
