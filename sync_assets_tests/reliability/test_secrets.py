"""Secrets: no token, password or client secret in anything a run leaves behind; TLS always verified;
the sandbox refuses a missing or wrong token on every endpoint.
"""

import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dagster._serdes import serialize_value

from sync_assets.salesforce import connection as connection_module
from sync_assets.salesforce.connection import (
    SalesforceConnection,
    SalesforceCredentials,
    SalesforceSession,
)
from sync_assets.salesforce.errors import SalesforceAuthError
from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import SandboxConnection, SandboxHandle
from sync_assets_tests.reliability.harness import Night, NightFactory, PartitionRun, record

DROP = "2026-11-28"


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from (path for path in root.rglob("*") if path.is_file())


def everything_a_run_left(night: Night, runs: list[PartitionRun]) -> dict[str, str]:
    """Where a secret could leak, each as text: event logs, tags, errors, files."""
    instance = night.instance()
    places: dict[str, str] = {}
    for run_record in instance.get_run_records():
        run = run_record.dagster_run
        places[f"run {run.run_id} tags"] = repr(run.tags)
        places[f"run {run.run_id} config"] = repr(run.run_config)
        places[f"run {run.run_id} event log"] = "\n".join(
            serialize_value(entry) for entry in instance.all_logs(run.run_id)
        )
    for run in runs:
        places[f"run {run.run_id} errors"] = "\n".join(run.errors)
        places[f"run {run.run_id} metadata"] = repr(run.materializations) + repr(run.checks)
    for path in files_under(night.state.local_path(""), night.dagster_home, night.root / "landing"):
        places[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return places


@pytest.mark.slow
def test_no_secret_is_left_anywhere_by_nights_that_used_secrets(
    make_night: NightFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    night = make_night()
    night.land(DROP)
    sandbox = night.connection()
    issued: list[str] = []
    real_login = connection_module.login

    def recording_login(credentials: SalesforceCredentials, http: Any) -> SalesforceSession:
        session = real_login(credentials, http)
        issued.append(session.access_token.get_secret_value())
        return session

    monkeypatch.setattr(connection_module, "login", recording_login)
    caplog.set_level("DEBUG")
    password = sandbox.password.get_secret_value()
    # The password grant sends password + security token: split the org's password in two.
    password_part, security_token = password[:-8], password[-8:]
    client_secret = sandbox.client_secret.get_secret_value()
    wrong_secret = "Wr0ngSecret-" + client_secret[:12][::-1]
    common = {
        "SALESFORCE_CLIENT_ID": sandbox.client_id,
        "SALESFORCE_LOGIN_URL": sandbox.instance_url,
        "SALESFORCE_CA_BUNDLE": str(sandbox.ca_cert),
    }
    nights: list[tuple[str, dict[str, str], bool]] = [
        ("1", {**common, "SALESFORCE_CLIENT_SECRET": client_secret}, True),
        (
            "2",
            {
                **common,
                "SALESFORCE_CLIENT_SECRET": client_secret,
                "SALESFORCE_USERNAME": sandbox.username,
                "SALESFORCE_PASSWORD": password_part,
                "SALESFORCE_SECURITY_TOKEN": security_token,
            },
            True,
        ),
        ("3", {**common, "SALESFORCE_CLIENT_SECRET": wrong_secret}, False),
        (
            "4",
            {
                **common,
                "SALESFORCE_CLIENT_SECRET": client_secret,
                "SALESFORCE_USERNAME": sandbox.username,
                "SALESFORCE_PASSWORD": wrong_secret,
            },
            False,
        ),
    ]
    runs = []
    for partition, env, succeeds in nights:
        with monkeypatch.context() as scoped:
            for name, value in env.items():
                scoped.setenv(name, value)
            runs.append(night.run_partition(DROP, partition))
        assert runs[-1].success is succeeds, runs[-1].errors
    assert len(issued) >= 2
    # A bare session token (SALESFORCE_ACCESS_TOKEN) is a secret too.
    with monkeypatch.context() as scoped:
        scoped.setenv("SALESFORCE_INSTANCE_URL", sandbox.instance_url)
        scoped.setenv("SALESFORCE_ACCESS_TOKEN", issued[0])
        scoped.setenv("SALESFORCE_CA_BUNDLE", str(sandbox.ca_cert))
        runs.append(night.run_partition(DROP, "5"))
    assert runs[-1].success, runs[-1].errors

    secrets = {
        "client secret": client_secret,
        "password": password,
        "password part": password_part,
        "security token": security_token,
        "wrong secret": wrong_secret,
        "sandbox session token": sandbox.access_token.get_secret_value(),
        **{f"issued token {number}": token for number, token in enumerate(issued)},
    }
    out, err = capfd.readouterr()
    places = everything_a_run_left(night, runs)
    places |= {"python logs": caplog.text, "stdout": out, "stderr": err}
    # The scan reads what it claims to: the event logs and the instance's database hold the
    # failed logins' token URL and the drop id, in plain text.
    assert any(sandbox.instance_url in text for place, text in places.items() if "log" in place)
    assert any(DROP in text for place, text in places.items() if place.endswith(".db"))
    leaks = [
        f"{name} in {place}"
        for name, secret in secrets.items()
        for place, text in places.items()
        if secret in text
    ]
    assert leaks == []
    record("secrets/scan", places=len(places), secrets=len(secrets), leaks=len(leaks))


def test_tls_verification_cannot_be_turned_off(
    sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{sandbox.connection.instance_url}/services/data"
    # The environment cannot blank the CA bundle into "no verification".
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "")
    monkeypatch.setenv("CURL_CA_BUNDLE", "")
    untrusting = verified_session()
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.get(url, timeout=10)
    # Neither can a caller: verify=False on the session or the request is overridden.
    untrusting.verify = False
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.get(url, timeout=10, verify=False)
    # Trusting the sandbox CA is the only way in.
    assert verified_session(sandbox.connection.ca_cert).get(url, timeout=10).status_code == 200


def test_new_connections_reuse_one_tls_context_and_load_no_ca_again(
    sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{sandbox.connection.instance_url}/services/data"
    # A context for this CA file: made, and its CAs loaded, here.
    assert verified_session(sandbox.connection.ca_cert).get(url, timeout=10).status_code == 200
    loads: list[str] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(str(kwargs.get("cafile") or args[0]))
        load(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    # Every session opens its own connection: each used to load certifi's bundle (~14 ms of CPU)
    # and each adapter the system's CAs (~19 ms).
    for _ in range(3):
        assert verified_session(sandbox.connection.ca_cert).get(url, timeout=10).ok
    assert loads == []
    # A CA file written again (a sandbox made anew in the same place) is read again.
    ca = Path(sandbox.connection.ca_cert)
    written = ca.stat()
    os.utime(ca, ns=(written.st_atime_ns, written.st_mtime_ns + 1_000_000))
    assert verified_session(ca).get(url, timeout=10).ok
    assert str(ca) in loads
    assert len(loads) == len(set(loads))  # each file once, when the new context is made


def test_an_org_whose_certificate_is_not_trusted_is_a_clear_error(
    sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_module, "LOGIN_ATTEMPTS", 1)
    connection = sandbox.connection
    credentials = SalesforceCredentials(
        client_id=connection.client_id,
        client_secret=connection.client_secret,
        login_url=connection.instance_url,
    )
    with pytest.raises(SalesforceAuthError, match="CERTIFICATE_VERIFY_FAILED") as refused:
        SalesforceConnection(credentials)
    assert connection.client_secret.get_secret_value() not in str(refused.value)


def _endpoints(job_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    data = "/services/data/v59.0"
    ingest = f"{data}/jobs/ingest"
    return [
        ("GET", f"{data}/", {}),
        ("GET", f"{data}/limits/", {}),
        ("GET", f"{data}/sobjects", {}),
        ("GET", f"{data}/sobjects/Opportunity/describe", {}),
        ("GET", f"{data}/query", {"params": {"q": "SELECT Id FROM Opportunity"}}),
        ("GET", f"{data}/queryAll", {"params": {"q": "SELECT Id FROM Opportunity"}}),
        ("GET", f"{data}/query/01gSx0000000001AAA-2000", {}),
        ("GET", f"{data}/no-such-resource", {}),
        ("GET", ingest, {}),
        ("POST", ingest, {"json": {"object": "Opportunity", "operation": "insert"}}),
        ("GET", f"{ingest}/{job_id}", {}),
        ("PUT", f"{ingest}/{job_id}/batches", {"data": b"Name\nX\n"}),
        ("PATCH", f"{ingest}/{job_id}", {"json": {"state": "Aborted"}}),
        ("DELETE", f"{ingest}/{job_id}", {}),
        ("GET", f"{ingest}/{job_id}/successfulResults", {}),
        ("GET", f"{ingest}/{job_id}/failedResults", {}),
        ("GET", f"{ingest}/{job_id}/unprocessedrecords", {}),
        ("GET", "/services/oauth2/userinfo", {}),
        ("GET", "/__sandbox/stats", {}),
    ]


def test_the_sandbox_refuses_missing_or_wrong_tokens_on_every_endpoint(
    sandbox: SandboxHandle,
) -> None:
    connection: SandboxConnection = sandbox.connection
    base = connection.instance_url
    valid = {"Authorization": f"Bearer {connection.access_token.get_secret_value()}"}
    http = verified_session(connection.ca_cert)
    created = http.post(
        f"{base}/services/data/v59.0/jobs/ingest",
        headers=valid,
        json={"object": "Opportunity", "operation": "insert"},
        timeout=30,
    )
    assert created.status_code == 200
    job_id = created.json()["id"]
    before = http.get(f"{base}/__sandbox/stats", headers=valid, timeout=30).json()["jobs"]
    org, _, secret = connection.access_token.get_secret_value().partition("!")
    wrong_headers: dict[str, dict[str, str]] = {
        "no token": {},
        "empty bearer": {"Authorization": "Bearer "},
        "unknown token": {"Authorization": f"Bearer {org}!{secret[::-1]}"},
        "token without its org prefix": {"Authorization": f"Bearer {secret}"},
        "client secret as a token": {
            "Authorization": f"Bearer {connection.client_secret.get_secret_value()}"
        },
        "basic scheme": {"Authorization": f"Basic {connection.access_token.get_secret_value()}"},
    }
    accepted = [
        f"{method} {path} with {name}: HTTP {answer.status_code}"
        for method, path, options in _endpoints(job_id)
        for name, headers in wrong_headers.items()
        if (
            answer := http.request(method, f"{base}{path}", headers=headers, timeout=30, **options)
        ).status_code
        != 401
    ]
    assert accepted == []
    # Nothing the refused requests asked for happened.
    after = http.get(f"{base}/__sandbox/stats", headers=valid, timeout=30).json()["jobs"]
    assert after == before
