"""The command-line runner: its fork server's preload, and where the commands keep run history."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sync_assets.runner import FORK_SERVER_PRELOAD, Admission, prepare_dagster_home
from sync_assets.settings import SyncSettings

# What opening the project's instance may still import once the preload ran: a handful of modules
# (today none). Hundreds means the preload no longer warms what a run opens.
MODULES_LEFT_TO_IMPORT = 25


def test_the_fork_server_preload_covers_the_instance_a_run_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails loudly when a Dagster upgrade makes the preload miss the instance's storage layer.

    The runner forks each partition run from a server that imported `FORK_SERVER_PRELOAD`; if the
    preload stops importing what `DagsterInstance.get()` needs, every run pays ~1 CPU-second again
    and nothing else would notice.
    """
    monkeypatch.setenv("DAGSTER_HOME", "")  # restored after the test
    prepare_dagster_home(tmp_path / "dagster_home")
    script = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {FORK_SERVER_PRELOAD!r}:
            importlib.import_module(name)
        import dagster as dg
        before = set(sys.modules)
        with dg.DagsterInstance.get() as instance:
            instance.get_runs(limit=1)
        print(len(set(sys.modules) - before))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    newly_imported = int(completed.stdout.strip().splitlines()[-1])
    assert newly_imported <= MODULES_LEFT_TO_IMPORT, (
        f"opening the instance after the fork server's preload imported {newly_imported} modules: "
        "the preload (sync_assets/fork_preload.py) no longer covers Dagster's storage layer"
    )


def _preload_then(script: str, env: dict[str, str]) -> str:
    """Run ``script`` in a fresh interpreter after the fork server's preload; its last line."""
    preload = "".join(f"import {name}\n" for name in FORK_SERVER_PRELOAD)
    completed = subprocess.run(
        [sys.executable, "-c", preload + textwrap.dedent(script)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    return completed.stdout.strip().splitlines()[-1]


def test_runs_forked_after_the_preload_collect_garbage_but_never_traverse_what_it_imported() -> (
    None
):
    """The preload pauses the collector while it imports, then freezes what it made (the
    `gc.freeze` recipe for a server that forks without exec): a run's collections skip Dagster's
    hundreds of thousands of long-lived objects, and the collector is on again for the runs."""
    enabled, frozen = _preload_then(
        "import gc; print(gc.isenabled(), gc.get_freeze_count())", {}
    ).split()
    assert enabled == "True"
    assert int(frozen) > 100_000


def test_runs_forked_after_the_preload_read_dagsters_migrations_once(tmp_path: Path) -> None:
    """Alembic reads Dagster's ~90 migration scripts for every SQLite file a run opens (~25 ms of
    CPU each time); after the preload the first read is handed back for Dagster's location, and
    any other location is read anew, as Alembic does."""
    (tmp_path / "versions").mkdir()
    same, head_kept, other_anew = _preload_then(
        f"""
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        def read(location):
            config = Config()
            config.set_main_option("script_location", location)
            return ScriptDirectory.from_config(config)

        dagster = read("dagster:_core/storage/alembic")
        print(
            dagster is read("dagster:_core/storage/alembic"),
            dagster.get_current_head() == ScriptDirectory(dagster.dir).get_current_head(),
            read({str(tmp_path)!r}) is not read({str(tmp_path)!r}),
        )
        """,
        {},
    ).split()
    assert (same, head_kept, other_anew) == ("True", "True", "True")


def _fork_server_instance(dagster_home: Path) -> Path:
    (directory,) = dagster_home.glob(".fork-server-instance-*")
    return directory


def test_the_preload_keeps_its_own_instance_in_dagster_home_and_opens_it_again(
    tmp_path: Path,
) -> None:
    """Created once (~0.25 s of SQLite files and schema stamps), then only opened (~0.03 s), on
    the path before each night's first run; never the instance runs are recorded in."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    _preload_then("print('up')", {"DAGSTER_HOME": str(home)})
    runs_db = _fork_server_instance(home) / "history" / "runs.db"
    made = runs_db.stat().st_mtime_ns
    _preload_then("print('up')", {"DAGSTER_HOME": str(home)})
    assert runs_db.stat().st_mtime_ns == made
    assert not (home / "history").exists()


def test_a_broken_preload_instance_does_not_stop_the_fork_server(tmp_path: Path) -> None:
    """Left to the runs, which open their own instance and report what is wrong with it."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    _preload_then("print('up')", {"DAGSTER_HOME": str(home)})
    (_fork_server_instance(home) / "dagster.yaml").write_text("run_storage: [not, a, mapping\n")
    assert _preload_then("print('up')", {"DAGSTER_HOME": str(home)}) == "up"


def test_runs_forked_after_the_preload_find_the_orgs_tls_context_built(tmp_path: Path) -> None:
    """The org's CA file (here certifi's bundle copied) is loaded once by the fork server: a
    run's connection to the org builds no TLS context of its own."""
    import certifi

    ca_file = tmp_path / "org-ca.pem"
    ca_file.write_bytes(Path(certifi.where()).read_bytes())
    built = _preload_then(
        """
        import os
        from sync_assets.salesforce import transport
        before = transport._tls_context.cache_info().misses
        transport.verified_session(os.environ["SALESFORCE_CA_BUNDLE"]).close()
        print(transport._tls_context.cache_info().misses - before)
        """,
        {"SALESFORCE_CA_BUNDLE": str(ca_file)},
    )
    assert built == "0"


def test_an_unreadable_ca_file_does_not_stop_the_fork_server(tmp_path: Path) -> None:
    """Left to the runs, which report it: the preload itself must not fail."""
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate")
    assert _preload_then("print('up')", {"SALESFORCE_CA_BUNDLE": str(broken)}) == "up"


def test_the_command_that_launches_a_night_imports_no_dagster() -> None:
    """The fork server imports Dagster for the runs, on one core, while the command stages the
    drop on the other (`staging_ahead`); every run waits for that staging, which the command's
    own import of Dagster (~0.6 CPU-s) used to delay."""
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sync_assets.cli, sync_assets.demo\n"
            "print(sorted(name for name in sys.modules if name.split('.')[0] == 'dagster'))",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.stdout.strip().splitlines()[-1] == "[]"


KEYS = [str(key) for key in range(10)]


def test_no_run_starts_until_the_head_start_says_which_have_rows_to_load() -> None:
    """Every run would wait for the staging; started early, it takes a core from it."""
    admission = Admission(parallel=10, cores=2)
    assert admission.start(KEYS, loading=0, checking=0, quiet=None) == ([], [])
    assert admission.start(KEYS, loading=0, checking=0, quiet=set(KEYS)) == ([], ["0", "1"])


def test_runs_with_rows_to_load_go_side_by_side_and_quiet_ones_a_cores_worth_at_a_time() -> None:
    admission = Admission(parallel=10, cores=2)
    quiet = {"3", "4", "5", "6", "7", "8", "9"}
    loads, checks = admission.start(KEYS[2:], loading=2, checking=0, quiet=quiet)
    assert (loads, checks) == (["2"], ["3", "4"])
    # Never more than `parallel` side by side, whatever is quiet.
    assert Admission(parallel=3, cores=2).start(KEYS, 0, 0, quiet) == (["0", "1", "2"], [])
    assert Admission(parallel=4, cores=8).start(KEYS, 0, 0, quiet) == (["0", "1", "2"], ["3"])
    # Without a head start (a resend), every partition is taken to have rows to load.
    assert admission.start(KEYS, 0, 0, quiet=set()) == (KEYS, [])


def test_the_runner_reaches_dagster_only_through_its_public_api() -> None:
    """The runner and its preload import no private `dagster._…` module (an upgrade may move them)."""
    package = Path(__file__).resolve().parent.parent / "sync_assets"
    for module in ("runner.py", "fork_preload.py"):
        assert "dagster._" not in (package / module).read_text(), module


def test_commands_keep_history_in_dagster_home_when_it_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "x"))
    assert SyncSettings().commands_dagster_home() == tmp_path / "x"
    monkeypatch.delenv("DAGSTER_HOME")
    assert SyncSettings().commands_dagster_home() == Path(".dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", "")  # restored after the test
    prepare_dagster_home(tmp_path / "y")
    assert os.environ["DAGSTER_HOME"] == str((tmp_path / "y").resolve())
    assert (tmp_path / "y" / "dagster.yaml").exists()


def _open_and_list_runs(_: int) -> int:
    from sync_assets.runner import _opened_instance

    with _opened_instance() as instance:
        return len(instance.get_runs(limit=1))


def test_workers_opening_a_new_instance_together_create_its_storage_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first worker creates the SQLite files and schema; the others wait on the lock."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    monkeypatch.setenv("DAGSTER_HOME", "")  # restored after the test
    prepare_dagster_home(tmp_path / "dagster_home")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        assert list(pool.map(_open_and_list_runs, range(4))) == [0, 0, 0, 0]
    assert (tmp_path / "dagster_home" / "history" / "runs.db").exists()
