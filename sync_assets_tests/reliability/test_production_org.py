"""A production org's behaviours (issue 15), measured from Salesforce's side: wrapped trigger
errors, maintenance, the two request limits, the daily record allowance.

Each night ends exact (every staged row in Salesforce once, the ledger agreeing) or stops cleanly
with what Salesforce confirmed recorded and nothing called a data error that is not one.
"""

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.salesforce.connection import SalesforceConnection, SalesforceCredentials
from sync_assets.sandbox.runner import SandboxHandle
from sync_assets.state.layout import failed_rows_path
from sync_assets_tests.conftest import use_sandbox_org
from sync_assets_tests.reliability.harness import (
    ACCOUNTS,
    NightFactory,
    definitions,
    org_file,
    record,
)
from sync_assets_tests.sandbox.bulk_client import BulkClient
from sync_assets_tests.sandbox.org_files import key_and_certificate
from sync_assets_tests.webhook import webhook_receiver

pytestmark = pytest.mark.slow

DROP = "2026-11-28"
MAX_RECORDS = 60  # several Bulk jobs per partition
WRAPPED_LOCKS = {"opportunity": {"automation": {"lock_errors": "wrapped"}}}


@pytest.mark.parametrize(
    ("case", "org", "faults", "reason"),
    [
        # DLRS #1241/#847: a rollup trigger that cannot lock the parent Account fails its chunk
        # inside CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY.
        ("wrapped_lock", WRAPPED_LOCKS, "lock=0.003", "UNABLE_TO_LOCK_ROW"),
        # salesforce.stackexchange.com 194022: writes refused while the org is read-only.
        (
            "maintenance",
            {},
            "maintenance=0.3",
            "INSERT_UPDATE_DELETE_NOT_ALLOWED_DURING_MAINTENANCE",
        ),
    ],
)
def test_passing_row_errors_are_resent_until_salesforce_holds_every_row(
    make_night: NightFactory, tmp_path: Path, case: str, org: dict, faults: str, reason: str
) -> None:
    night = make_night(org=org_file(tmp_path, **org), faults=faults, seed=7)
    night.land(DROP)
    run = night.run_partition(DROP, "4", definitions(max_records_per_job=MAX_RECORDS))

    assert run.success, run.errors
    assert run.failed_checks() == {}
    loaded = run.loaded()
    assert loaded["retried"] > 0, "the faults hit some rows"
    assert loaded["failed"] == 0
    night.assert_partition_exact(DROP, "4")
    measured = night.measure(DROP, "4")
    assert (measured["lost"], measured["duplicates"]) == (0, 0)
    record(f"production/{case}_resent", retried=loaded["retried"], reason=reason, **measured)


def test_a_permanent_error_wrapped_in_a_trigger_is_kept_with_salesforces_message(
    make_night: NightFactory, tmp_path: Path
) -> None:
    """The CPU limit hit on every attempt: resent within the budget, then kept with its text."""
    # Jobs of 60 records at 3 ms each: every chunk passes a 150 ms limit.
    org = {"opportunity": {"automation": {"apex_ms_per_record": 3, "cpu_limit_ms": 150}}}
    night = make_night(org=org_file(tmp_path, **org))
    night.land(DROP)
    run = night.run_partition(DROP, "4", definitions(max_records_per_job=MAX_RECORDS))

    loaded = run.loaded()
    assert loaded["failed"] > 0 and loaded["retried"] > 0
    assert "APEX_CPU_LIMIT" in loaded["failures_by_reason"]
    failed = night.state.read_parquet(failed_rows_path(DROP, "4"))
    assert failed["error"].str.contains("Apex CPU time limit exceeded").all()
    assert "no_permanently_failed_rows" in run.failed_checks()
    measured = night.measure(DROP, "4")
    assert (measured["lost"], measured["duplicates"]) == (0, 0)
    record("production/cpu_limit_every_time", failed=loaded["failed"], **measured)


def test_the_concurrent_request_limit_is_waited_out_within_the_run(
    make_night: NightFactory,
) -> None:
    night = make_night(faults="http_403_concurrent=0.08", seed=3)
    night.land(DROP)
    run = night.run_partition(DROP, "5", definitions(max_records_per_job=MAX_RECORDS))

    assert run.success, run.errors
    assert run.step_restarts == 0
    assert run.failed_checks() == {}
    throttled = night.stats()["totals"]["fault:http_403_concurrent"]
    assert throttled > 0
    night.assert_partition_exact(DROP, "5")
    record("production/concurrent_limit", throttled=throttled, **night.measure(DROP, "5"))


def test_the_daily_record_allowance_stops_the_night_and_a_later_run_resumes(
    make_night: NightFactory,
) -> None:
    """ExceededQuota while processing: no row is called failed, the confirmed ones are kept."""
    night = make_night(daily_records=150)
    night.land(DROP)
    run = night.run_partition(DROP, "2", definitions(max_records_per_job=MAX_RECORDS))

    assert not run.success
    assert run.step_restarts == 0
    [error] = run.errors
    assert "LoadStoppedError" in error and "ExceededQuota" in error
    assert "are not failures" in error
    assert night.failed_keys(DROP, "2") == set()
    held = set(night.external_ids("2"))
    assert held and set(night.ledger_keys("2")) == held, "the ledger records what was confirmed"

    night.restart_sandbox(daily_records=150_000_000)
    resumed = night.run_partition(DROP, "2", definitions(max_records_per_job=MAX_RECORDS))
    assert resumed.success, resumed.errors
    assert resumed.failed_checks() == {}
    night.assert_partition_exact(DROP, "2")
    record("production/daily_records_stop", error=error, **night.measure(DROP, "2"))


def test_sync_without_salesforce_variables_refuses_and_writes_nothing(tmp_path: Path) -> None:
    """Done when: `SALESFORCE_*` unset + `sync-assets sync` → a clear error, exit non-zero."""
    landing = tmp_path / "landing"
    generate_drop(landing, GenerateOptions(drop_id=DROP, rows=100, accounts=10))
    env = {name: value for name, value in os.environ.items() if not name.startswith("SALESFORCE_")}
    env |= {
        "SYNC_LANDING_DIR": str(landing),
        "SYNC_STATE_DIR": str(tmp_path / "state"),
        "SYNC_SANDBOX_DIR": str(tmp_path / "sandbox"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    command = shutil.which("sync-assets")
    assert command, "the sync-assets entry point is not installed (uv sync)"
    completed = subprocess.run(
        [command, "sync"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 2, "exit code 2: no org configured"
    output = " ".join((completed.stdout + completed.stderr).split())
    assert "No Salesforce credentials" in output and "Nothing was run or written." in output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["landing"]


def test_the_state_of_one_org_refuses_another_org_with_both_ids(
    make_night: NightFactory,
    tmp_path: Path,
    fresh_sandbox: Callable[..., SandboxHandle],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    night = make_night()
    night.land(DROP)
    first = night.run_partition(DROP, "1")
    assert first.success, first.errors
    first_org = night.login().org_id
    assert json.loads(night.state.read_bytes("org.json"))["org_id"] == first_org

    other_org_file = org_file(tmp_path / "other", org_id="00DSx0000000002MAA")
    other = fresh_sandbox(accounts=ACCOUNTS, org=other_org_file)
    use_sandbox_org(monkeypatch, other.data_dir)
    other_org = SalesforceConnection(SalesforceCredentials.from_sandbox(other.data_dir)).org_id
    assert other_org != first_org
    refused = night.run_partition(DROP, "2")

    assert not refused.success
    assert refused.step_restarts == 0
    [error] = refused.errors
    assert "WrongOrgError" in error and first_org in error and other_org in error
    stats = BulkClient(other.connection).session.get(
        f"{other.connection.instance_url}/__sandbox/stats",
        headers={"Authorization": f"Bearer {other.connection.access_token.get_secret_value()}"},
    )
    assert stats.json()["jobs"] == {}, "nothing was sent to the other org"
    assert night.ledger_keys("2").is_empty()
    record("production/wrong_org_refused", error=error)


def test_a_jwt_bearer_night_on_a_my_domain_org_renews_tokens_and_names_itself(
    make_night: NightFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Help "OAuth 2.0 JWT Bearer Flow": iss consumer key, sub username, aud login URL, RS256."""
    key, certificate = key_and_certificate()
    (tmp_path / "app.crt").write_bytes(certificate)
    (tmp_path / "app.key").write_bytes(key)
    org = org_file(
        tmp_path, my_domain="acme", connected_app={"certificate_file": str(tmp_path / "app.crt")}
    )
    night = make_night(org=org, token_ttl=1.0, rate=150, slots=1)
    connection = night.connection()
    assert connection.login_url != connection.instance_url, "a My Domain org"
    for name in [name for name in os.environ if name.startswith("SALESFORCE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", connection.client_id)
    monkeypatch.setenv("SALESFORCE_USERNAME", connection.username)
    monkeypatch.setenv("SALESFORCE_PRIVATE_KEY_FILE", str(tmp_path / "app.key"))
    # The My Domain URL: the generic login host refuses the flow on a My Domain org.
    monkeypatch.setenv("SALESFORCE_LOGIN_URL", connection.instance_url)
    monkeypatch.setenv("SALESFORCE_CA_BUNDLE", str(connection.ca_cert))
    night.land(DROP)
    requests_before = night.stats()["totals"]

    run = night.run_partition(DROP, "3", definitions(max_records_per_job=MAX_RECORDS))

    assert run.success, run.errors
    assert run.failed_checks() == {}
    assert run.loaded()["reauthentications"] >= 1
    night.assert_partition_exact(DROP, "3")
    totals = night.stats()["totals"]
    ours = totals.get("client:sync_assets", 0) - requests_before.get("client:sync_assets", 0)
    assert ours >= run.loaded()["api_calls"] > 0, "every API call says it is sync_assets"
    record(
        "production/jwt_bearer_my_domain",
        reauthentications=run.loaded()["reauthentications"],
        calls_named_sync_assets=ours,
        **night.measure(DROP, "3"),
    )


def test_client_credentials_on_the_generic_login_host_point_to_my_domain(
    make_night: NightFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Help 000886201: "request not supported on this domain" outside My Domain."""
    night = make_night(org=org_file(tmp_path, my_domain="acme"))
    connection = night.connection()
    monkeypatch.setenv("SALESFORCE_LOGIN_URL", connection.login_url)
    night.land(DROP)
    run = night.run_partition(DROP, "3")
    assert not run.success and run.step_restarts == 0
    [error] = run.errors
    assert "request not supported on this domain" in error
    assert "Set SALESFORCE_LOGIN_URL to the org's My Domain URL" in error


def test_a_retiring_api_version_is_logged_and_alerted_once(
    make_night: NightFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REST API Developer Guide, "Warning Header": 299 on calls to a deprecated version."""
    # Today's deprecated versions (31.0–40.0) predate Bulk API 2.0 (41.0): this org deprecates
    # up to 45.0, as the next end-of-life notice will.
    night = make_night(deprecated_through=45)
    monkeypatch.setenv("SALESFORCE_API_VERSION", "45.0")
    night.land(DROP)
    with webhook_receiver() as hook:
        monkeypatch.setenv("SYNC_ALERT_WEBHOOK_URL", hook.url)
        runs = [night.run_partition(DROP, partition) for partition in ("6", "7")]
        assert all(run.success for run in runs), [run.errors for run in runs]
        assert {run.loaded()["api_version"] for run in runs} == {"45.0"}
        notices = [post for post in hook.posts if post["kind"] == "api_version_retiring"]
    assert len(notices) == 1
    assert "45.0" in notices[0]["description"] and "Summer '28" in notices[0]["description"]
    night.assert_partition_exact(DROP, "6")
    record("production/retiring_api_version", alerts=len(notices))
