"""Each run the runner forks gets its share of the cores for polars' thread pool (run_threads.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sync_assets.run_threads import POLARS_THREADS_PER_RUN, threads_per_run


@pytest.mark.parametrize(
    ("parallel", "cores", "threads"),
    [(10, 2, 1), (2, 2, 1), (1, 2, 2), (3, 8, 2), (1, 8, 8), (16, 4, 1)],
)
def test_each_run_gets_its_share_of_the_cores_and_at_least_one_thread(
    parallel: int, cores: int, threads: int
) -> None:
    assert threads_per_run(parallel, cores) == threads


# A fresh interpreter: the fork server of the process that runs it must not be running yet.
FORKED_RUN = """
import json, multiprocessing, multiprocessing.forkserver, sys
from concurrent.futures import ProcessPoolExecutor
from sync_assets.run_threads import offer_to_fork_server
from sync_assets.runner import FORK_SERVER_PRELOAD

def pool_size():
    import polars
    return polars.thread_pool_size()

if __name__ == "__main__":
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORK_SERVER_PRELOAD)
    offer_to_fork_server(parallel=int(sys.argv[1]), cores=int(sys.argv[2]))
    multiprocessing.forkserver.ensure_running()
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        print(json.dumps(pool.submit(pool_size).result()))
"""


def forked_pool_size(tmp_path: Path, parallel: int, cores: int, **env: str) -> int:
    """polars' pool size in a worker forked as the runner forks its runs."""
    script = tmp_path / "forked_run.py"
    script.write_text(FORKED_RUN)
    variables = {
        name: value
        for name, value in os.environ.items()
        if name not in {"POLARS_MAX_THREADS", POLARS_THREADS_PER_RUN}
    }
    completed = subprocess.run(
        [sys.executable, str(script), str(parallel), str(cores)],
        env={**variables, "DAGSTER_HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return int(json.loads(completed.stdout.strip().splitlines()[-1]))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: one thread either way")
def test_runs_forked_by_the_runner_start_polars_with_their_share(tmp_path: Path) -> None:
    cores = os.cpu_count() or 1
    assert forked_pool_size(tmp_path, parallel=cores, cores=cores) == 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: one thread either way")
def test_a_pool_size_the_user_set_is_kept(tmp_path: Path) -> None:
    cores = os.cpu_count() or 1
    pool = forked_pool_size(tmp_path, parallel=cores, cores=cores, POLARS_MAX_THREADS="2")
    assert pool == 2
