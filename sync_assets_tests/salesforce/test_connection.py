import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests

from sync_assets.salesforce import connection as connection_module
from sync_assets.salesforce.connection import (
    DEFAULT_API_VERSION,
    AuthFlow,
    SalesforceConnection,
    SalesforceCredentials,
    login,
)
from sync_assets.salesforce.errors import SalesforceAuthError, SalesforceConfigError
from sync_assets_tests.salesforce.http_fakes import FakeAnswer, mounted

TOKEN = "00DTEST000000001!SECRET-ACCESS-TOKEN"
CLIENT_SECRET = "SECRET-CLIENT-5e6f"
PASSWORD = "SECRET-Pa55w0rd"
SECURITY_TOKEN = "SECRET-sectoken"
SECRETS = (TOKEN, CLIENT_SECRET, PASSWORD, SECURITY_TOKEN)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(
    ("env", "flow"),
    [
        (
            {
                "SALESFORCE_INSTANCE_URL": "https://x.my.salesforce.com",
                "SALESFORCE_ACCESS_TOKEN": TOKEN,
            },
            AuthFlow.SESSION,
        ),
        (
            {"SALESFORCE_CLIENT_ID": "cid", "SALESFORCE_CLIENT_SECRET": CLIENT_SECRET},
            AuthFlow.CLIENT_CREDENTIALS,
        ),
        (
            {
                "SALESFORCE_CLIENT_ID": "cid",
                "SALESFORCE_CLIENT_SECRET": CLIENT_SECRET,
                "SALESFORCE_USERNAME": "u@x",
                "SALESFORCE_PASSWORD": PASSWORD,
            },
            AuthFlow.OAUTH_PASSWORD,
        ),
        (
            {
                "SALESFORCE_USERNAME": "u@x",
                "SALESFORCE_PASSWORD": PASSWORD,
                "SALESFORCE_SECURITY_TOKEN": SECURITY_TOKEN,
            },
            AuthFlow.SOAP_PASSWORD,
        ),
    ],
)
def test_the_variables_select_the_flow(env: dict[str, str], flow: AuthFlow) -> None:
    credentials = SalesforceCredentials.from_env(env)
    assert credentials.flow is flow
    assert flow.can_reauthenticate is (flow is not AuthFlow.SESSION)


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"SALESFORCE_ACCESS_TOKEN": TOKEN}, "SALESFORCE_INSTANCE_URL"),
        ({"SALESFORCE_CLIENT_SECRET": CLIENT_SECRET}, "SALESFORCE_CLIENT_ID"),
        ({"SALESFORCE_USERNAME": "u@x"}, "SALESFORCE_PASSWORD"),
        (
            {
                "SALESFORCE_CLIENT_ID": "cid",
                "SALESFORCE_CLIENT_SECRET": CLIENT_SECRET,
                "SALESFORCE_PASSWORD": PASSWORD,
            },
            "SALESFORCE_USERNAME",
        ),
    ],
)
def test_incomplete_credentials_name_the_missing_variable_and_no_secret(
    env: dict[str, str], missing: str
) -> None:
    with pytest.raises(SalesforceConfigError) as raised:
        _ = SalesforceCredentials.from_env(env).flow
    assert missing in str(raised.value)
    assert_no_secret(str(raised.value))


def test_secrets_never_print() -> None:
    credentials = SalesforceCredentials.from_env(
        {
            "SALESFORCE_INSTANCE_URL": "https://x.my.salesforce.com",
            "SALESFORCE_ACCESS_TOKEN": TOKEN,
            "SALESFORCE_CLIENT_ID": "cid",
            "SALESFORCE_CLIENT_SECRET": CLIENT_SECRET,
            "SALESFORCE_USERNAME": "u@x",
            "SALESFORCE_PASSWORD": PASSWORD,
            "SALESFORCE_SECURITY_TOKEN": SECURITY_TOKEN,
        }
    )
    for text in (
        repr(credentials),
        str(credentials),
        credentials.model_dump_json(),
        str(credentials.model_dump()),
    ):
        assert_no_secret(text)


def test_empty_variables_count_as_unset_and_nothing_set_is_an_error() -> None:
    assert not SalesforceCredentials.from_env({"SALESFORCE_ACCESS_TOKEN": ""}).is_configured
    # A CA bundle or an API version alone do not say which org to use.
    only_transport = SalesforceCredentials.from_env(
        {"SALESFORCE_CA_BUNDLE": "/etc/ca.pem", "SALESFORCE_API_VERSION": "62.0"}
    )
    assert not only_transport.is_configured
    with pytest.raises(SalesforceConfigError, match="No Salesforce credentials"):
        only_transport.flow  # noqa: B018


def test_the_sandbox_connection_is_handed_over_as_variables(tmp_path: Path) -> None:
    (tmp_path / "connection.json").write_text(
        json.dumps(
            {
                "instance_url": "https://localhost:9999",
                "access_token": TOKEN,
                "client_id": "sandbox",
                "client_secret": CLIENT_SECRET,
                "token_url": "https://localhost:9999/services/oauth2/token",
                "ca_cert": "/tmp/ca.pem",
            }
        )
    )
    env = SalesforceCredentials.from_sandbox(tmp_path).to_env()
    assert env == {
        "SALESFORCE_INSTANCE_URL": "https://localhost:9999",
        "SALESFORCE_CLIENT_ID": "sandbox",
        "SALESFORCE_CLIENT_SECRET": CLIENT_SECRET,
        "SALESFORCE_LOGIN_URL": "https://localhost:9999",
        "SALESFORCE_CA_BUNDLE": "/tmp/ca.pem",
    }
    assert SalesforceCredentials.from_env(env).flow is AuthFlow.CLIENT_CREDENTIALS


def test_a_missing_sandbox_says_how_to_start_it(tmp_path: Path) -> None:
    with pytest.raises(SalesforceConfigError, match="sync-assets sandbox"):
        SalesforceCredentials.from_sandbox(tmp_path)


def token_endpoint(status: int, body: dict[str, str]):
    seen: list[dict[str, list[str]]] = []

    def handler(request: requests.PreparedRequest) -> FakeAnswer:
        assert request.url == "https://login.example.com/services/oauth2/token"
        seen.append(parse_qs(str(request.body)))
        return FakeAnswer(status, body)

    return handler, seen


def test_client_credentials_login_posts_the_grant_and_reads_the_instance() -> None:
    handler, seen = token_endpoint(
        200, {"access_token": TOKEN, "instance_url": "https://org.example.com/"}
    )
    http = requests.Session()
    mounted(http, handler)
    credentials = SalesforceCredentials(
        client_id="cid", client_secret=CLIENT_SECRET, login_url="https://login.example.com"
    )
    session = login(credentials, http)
    assert session.instance_url == "https://org.example.com"
    assert session.access_token.get_secret_value() == TOKEN
    assert seen[0]["grant_type"] == ["client_credentials"]
    assert seen[0]["client_secret"] == [CLIENT_SECRET]


def test_password_grant_appends_the_security_token() -> None:
    handler, seen = token_endpoint(
        200, {"access_token": TOKEN, "instance_url": "https://org.example.com"}
    )
    http = requests.Session()
    mounted(http, handler)
    credentials = SalesforceCredentials(
        client_id="cid",
        client_secret=CLIENT_SECRET,
        username="u@x",
        password=PASSWORD,
        security_token=SECURITY_TOKEN,
        login_url="https://login.example.com",
    )
    login(credentials, http)
    assert seen[0]["grant_type"] == ["password"]
    assert seen[0]["password"] == [PASSWORD + SECURITY_TOKEN]


def test_a_refused_login_explains_itself_without_the_secret() -> None:
    handler, _ = token_endpoint(
        400, {"error": "invalid_client", "error_description": "invalid client credentials"}
    )
    http = requests.Session()
    mounted(http, handler)
    credentials = SalesforceCredentials(
        client_id="cid", client_secret=CLIENT_SECRET, login_url="https://login.example.com"
    )
    with pytest.raises(SalesforceAuthError) as raised:
        login(credentials, http)
    assert "invalid_client" in str(raised.value)
    assert "HTTP 400" in str(raised.value)
    assert_no_secret(str(raised.value))


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_module.time, "sleep", lambda seconds: None)


def test_a_login_is_retried_through_server_errors(no_backoff: None) -> None:
    answers = [
        requests.ConnectionError("reset"),
        FakeAnswer(503, {"error": "unavailable"}),
        FakeAnswer(200, {"access_token": TOKEN, "instance_url": "https://org.example.com"}),
    ]
    http = requests.Session()
    transport = mounted(http, lambda request: answers.pop(0))
    credentials = SalesforceCredentials(
        client_id="cid", client_secret=CLIENT_SECRET, login_url="https://login.example.com"
    )
    assert login(credentials, http).access_token.get_secret_value() == TOKEN
    assert len(transport.requests) == 3


def test_an_unreachable_login_explains_itself_without_the_secret(no_backoff: None) -> None:
    http = requests.Session()
    mounted(http, lambda request: requests.ConnectionError("connection refused"))
    credentials = SalesforceCredentials(
        client_id="cid", client_secret=CLIENT_SECRET, login_url="https://login.example.com"
    )
    with pytest.raises(SalesforceAuthError, match="after 5 tries: connection refused") as raised:
        login(credentials, http)
    assert_no_secret(str(raised.value))


def test_a_bare_session_token_cannot_be_renewed() -> None:
    credentials = SalesforceCredentials(instance_url="https://org.example.com", access_token=TOKEN)
    connection = SalesforceConnection(credentials)
    assert connection.data_url == f"https://org.example.com/services/data/v{DEFAULT_API_VERSION}/"
    with pytest.raises(SalesforceAuthError, match="cannot be renewed") as raised:
        connection.reauthenticate(TOKEN)
    assert_no_secret(str(raised.value))
    assert_no_secret(repr(connection))


def test_renewal_happens_once_for_concurrent_expiries() -> None:
    issued = iter(["00DTEST000000001!first", "00DTEST000000001!second", "00DTEST000000001!third"])

    def handler(request: requests.PreparedRequest) -> FakeAnswer:
        return FakeAnswer(
            200, {"access_token": next(issued), "instance_url": "https://org.example.com"}
        )

    credentials = SalesforceCredentials(
        client_id="cid", client_secret=CLIENT_SECRET, login_url="https://login.example.com"
    )
    http = requests.Session()
    mounted(http, handler)
    connection = SalesforceConnection(credentials, http=http)
    first = connection.access_token
    connection.reauthenticate(first)
    second = connection.access_token
    connection.reauthenticate(first)  # a second worker reporting the same stale token
    assert (first, second, connection.access_token) == (
        "00DTEST000000001!first",
        "00DTEST000000001!second",
        "00DTEST000000001!second",
    )
    assert connection.logins == 2
