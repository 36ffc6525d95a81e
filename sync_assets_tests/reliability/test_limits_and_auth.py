"""Limits and auth: an org that cannot take the night, a daily limit hit mid-run, expiring tokens,
wrong credentials. Each ends in completion or a clean, clearly explained stop, never a retry storm.
"""

import pytest

from sync_assets.salesforce.transport import verified_session
from sync_assets.state.layout import PARTITION_KEYS
from sync_assets_tests.reliability.harness import (
    Night,
    NightFactory,
    definitions,
    record,
    wait_until,
)

pytestmark = pytest.mark.slow

DROP = "2026-11-28"
PARTITION = "2"
MAX_RECORDS = 60


def test_a_night_the_org_cannot_take_is_refused_before_anything_is_sent(
    make_night: NightFactory,
) -> None:
    night = make_night(daily_batches=0)
    night.land(DROP)
    run = night.run_partition(DROP, PARTITION)

    assert not run.success
    assert run.step_restarts == 0
    [error] = run.errors
    to_send = night.staged(DROP, PARTITION).counts.to_send
    assert f"Refusing to load {to_send:,} records" in error
    assert "DailyBulkApiBatches: needs" in error and "Nothing was sent." in error
    assert night.stats()["jobs"] == {}
    assert night.external_ids().is_empty()
    assert night.ledger_keys(PARTITION).is_empty()
    record("limits/night_too_big", error=error, jobs=len(night.stats()["jobs"]))


def burn_api_requests(night: Night) -> int:
    """Use up the org's daily API requests, as another integration sharing the org would."""
    connection = night.connection()
    session = verified_session(connection.ca_cert)
    headers = {"Authorization": f"Bearer {connection.access_token.get_secret_value()}"}
    url = f"{connection.instance_url}/services/data/v59.0/limits/"
    burnt = 0
    while session.get(url, headers=headers, timeout=30).status_code == 200:
        burnt += 1
    return burnt


def test_request_limit_exceeded_mid_run_stops_cleanly_and_the_next_run_resumes(
    make_night: NightFactory,
) -> None:
    night = make_night(daily_api_requests=300, rate=50, slots=1)
    night.land(DROP)
    worker = night.start_worker(DROP, PARTITION, max_records=MAX_RECORDS)
    wait_until(
        lambda: any(job["state"] == "InProgress" for job in night.stats()["jobs"].values()),
        120,
        "a Bulk job in progress",
    )
    assert burn_api_requests(night) > 0
    ended = worker.finish()
    assert ended.code == 0 and ended.run is not None, ended
    assert not ended.run.success
    assert ended.run.step_restarts == 0  # a daily limit does not come back in minutes
    [error] = ended.run.errors
    assert "HTTP 403 REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded." in error

    night.restart_sandbox(daily_api_requests=1_000_000)
    # The ledger claims nothing Salesforce does not hold.
    assert set(night.ledger_keys(PARTITION)) <= set(night.external_ids(PARTITION))
    to_send = night.staged(DROP, PARTITION).counts.to_send
    resumed = night.run_partition(DROP, PARTITION, definitions(max_records_per_job=MAX_RECORDS))
    assert resumed.success, resumed.errors
    assert resumed.failed_checks() == {}
    assert resumed.loaded()["jobs_resumed"] >= 1
    night.assert_partition_exact(DROP, PARTITION)
    night.assert_every_row_went_through_one_completed_job(to_send)
    record(
        "limits/request_limit_exceeded_mid_run",
        error=error,
        jobs_resumed=resumed.loaded()["jobs_resumed"],
        rerun_uploaded=resumed.loaded()["uploaded"],
        **night.measure(DROP, PARTITION),
    )


def test_tokens_expiring_mid_run_are_renewed_and_the_run_completes(
    make_night: NightFactory,
) -> None:
    night = make_night(token_ttl=1.0, rate=150, slots=1)
    night.land(DROP)
    run = night.run_partition(DROP, PARTITION, definitions(max_records_per_job=MAX_RECORDS))

    assert run.success, run.errors
    assert run.failed_checks() == {}
    assert run.loaded()["reauthentications"] >= 1
    to_send = night.staged(DROP, PARTITION).counts.to_send
    assert run.loaded()["succeeded"] == to_send
    night.assert_partition_exact(DROP, PARTITION)
    record(
        "auth/token_expiry",
        reauthentications=run.loaded()["reauthentications"],
        **night.measure(DROP, PARTITION),
    )


@pytest.mark.parametrize("flow", ["client_credentials", "password"])
def test_wrong_credentials_fail_clearly_with_one_login_attempt(
    make_night: NightFactory, monkeypatch: pytest.MonkeyPatch, flow: str
) -> None:
    night = make_night()
    night.land(DROP)
    connection = night.connection()
    wrong = "Wr0ng-" + connection.client_secret.get_secret_value()[::-1]
    real_secret = connection.client_secret.get_secret_value()
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", connection.client_id)
    monkeypatch.setenv("SALESFORCE_LOGIN_URL", connection.instance_url)
    monkeypatch.setenv("SALESFORCE_CA_BUNDLE", str(connection.ca_cert))
    if flow == "client_credentials":
        monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", wrong)
        expected = "HTTP 400 invalid_client: invalid client credentials"
    else:
        monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", real_secret)
        monkeypatch.setenv("SALESFORCE_USERNAME", connection.username)
        monkeypatch.setenv("SALESFORCE_PASSWORD", wrong)
        expected = "HTTP 400 invalid_grant: authentication failure"

    first, second = (night.stats()["totals"]["requests"] for _ in range(2))
    run = night.run_partition(DROP, PARTITION)
    requests_of_the_run = night.stats()["totals"]["requests"] - second - (second - first)

    assert not run.success
    assert run.step_restarts == 0
    [error] = run.errors
    assert "SalesforceAuthError" in error and expected in error
    assert wrong not in error and real_secret not in error
    # One token request: no retry storm against a wrong secret.
    assert requests_of_the_run == 1
    record(f"auth/wrong_credentials_{flow}", error=error, login_requests=requests_of_the_run)
    assert night.stats()["jobs"] == {}
    assert all(night.ledger_keys(key).is_empty() for key in PARTITION_KEYS)
