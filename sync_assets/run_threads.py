"""How many threads polars starts in each run the runner forks: the cores shared out among the runs.

Polars sizes its thread pool once, from ``POLARS_MAX_THREADS`` if set when it is imported, else
one thread per core. A night runs up to ``parallel`` partition runs side by side, each with a
pool of its own: ten runs on two cores start twenty threads that take turns on them, and every
small query of a load (a job's rows, its outcome file) wakes a pool the other runs keep busy.
As process-pool libraries do for OpenMP and BLAS (joblib's loky gives each worker
``cpu_count // n_jobs`` threads; joblib/joblib#1548 asks the same for polars), the runner
offers each run its share of the cores; the fork server adopts it before importing polars, so
every run forked from it inherits it. Alternated first nights of the 2M-row drop, three pairs
(2026-12-06): 35.0, 38.6 and 37.7 CPU-s against 37.0, 40.4 and 40.3.

Nothing here imports polars: the fork server reads this module first.
"""

import os

POLARS_THREADS_PER_RUN = "SYNC_ASSETS_POLARS_THREADS_PER_RUN"
"""Set by the runner for the fork server it starts; read there, before polars is imported."""


def threads_per_run(parallel: int, cores: int) -> int:
    """Each of `parallel` runs' share of `cores`: at least one thread."""
    return max(1, cores // max(1, parallel))


def offer_to_fork_server(parallel: int, cores: int) -> None:
    """Name each run's share for the fork server the runner is about to start.

    A fork server already running keeps the share it started with.
    """
    os.environ[POLARS_THREADS_PER_RUN] = str(threads_per_run(parallel, cores))


def adopt_in_fork_server() -> None:
    """Size polars' pool in this process (and its forks) as offered, unless the user sized it."""
    offered = os.environ.get(POLARS_THREADS_PER_RUN)
    if offered and "POLARS_MAX_THREADS" not in os.environ:
        os.environ["POLARS_MAX_THREADS"] = offered
