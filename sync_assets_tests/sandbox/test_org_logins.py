"""Logging in to the acme org: the JWT bearer grant, the My Domain host rule, SOAP login.

Modelled on: Help "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration" (claims), the
refusals users captured from real orgs (facts §5: SE 184363, SE 282513, salesforce-laravel #68),
Help 000886201 (client credentials only on My Domain), and SOAP login answers recorded in client
test fixtures (INVALID_LOGIN fault, HTTP 500).
"""

import time
from typing import Any

import jwt
import pytest
import requests
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import SalesforceAuthenticationFailed

from sync_assets.salesforce.transport import verified_session
from sync_assets_tests.sandbox.conftest import AcmeSandbox
from sync_assets_tests.sandbox.org_files import key_and_certificate

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
OTHER_KEY, _ = key_and_certificate()


def _token(acme: AcmeSandbox, base_url: str, **form: str) -> requests.Response:
    return verified_session(acme.connection.ca_cert).post(
        f"{base_url}/services/oauth2/token", data=form
    )


def _assertion(acme: AcmeSandbox, key: bytes | None = None, **claims: Any) -> str:
    """An assertion as a JWT client signs it (PyJWT, RS256), for the integration user."""
    connection = acme.connection
    payload = {
        "iss": connection.client_id,
        "sub": connection.username,
        "aud": connection.login_url,
        "exp": int(time.time()) + 180,
        **claims,
    }
    return jwt.encode(payload, key or acme.org.signing_key, algorithm="RS256")


def _jwt_login(acme: AcmeSandbox, assertion: str, base_url: str | None = None) -> requests.Response:
    return _token(
        acme,
        base_url or acme.connection.instance_url,
        grant_type=JWT_BEARER,
        assertion=assertion,
    )


def _userinfo(acme: AcmeSandbox, token: str) -> dict[str, Any]:
    answer = verified_session(acme.connection.ca_cert).get(
        f"{acme.connection.instance_url}/services/oauth2/userinfo",
        headers={"Authorization": f"Bearer {token}"},
    )
    answer.raise_for_status()
    return answer.json()


def test_my_domain_is_the_instance_host(acme: AcmeSandbox) -> None:
    connection = acme.connection
    assert connection.instance_url.startswith("https://localhost:")
    assert connection.login_url.startswith("https://127.0.0.1:")
    assert connection.token_url == f"{connection.instance_url}/services/oauth2/token"


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"aud": "instance"},
        {"sub": "rep@acme.example"},
        # simple-salesforce sends exp as a string of seconds; Salesforce accepts it.
        {"exp": "string"},
    ],
    ids=["login-audience", "my-domain-audience", "a-person", "string-exp"],
)
def test_a_signed_assertion_is_accepted(acme: AcmeSandbox, claims: dict[str, Any]) -> None:
    if claims.get("aud") == "instance":
        claims = {"aud": acme.connection.instance_url}
    if claims.get("exp") == "string":
        # Computed here, not at collection: a slow suite would hand over an expired assertion.
        claims = {"exp": f"{time.time() + 180:.0f}"}
    answer = _jwt_login(acme, _assertion(acme, **claims))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # No refresh_token, issued_at or signature in the JWT answer (facts §5).
    assert set(body) == {"access_token", "scope", "instance_url", "id", "token_type"}
    assert body["instance_url"] == acme.connection.instance_url
    subject = claims.get("sub", acme.connection.username)
    info = _userinfo(acme, body["access_token"])
    assert info["preferred_username"] == subject
    assert body["id"].endswith(f"/{info['user_id']}")


@pytest.mark.parametrize(
    ("change", "error", "description"),
    [
        ({"key": OTHER_KEY}, "invalid_grant", "invalid assertion"),
        ({"aud": "https://login.salesforce.com"}, "invalid_grant", "audience is invalid"),
        ({"sub": "nobody@acme.example"}, "invalid_grant", "user hasn't approved this consumer"),
        ({"exp": int(time.time()) - 10}, "invalid_grant", "expired authorization code"),
        ({"iss": "3MVG9unknown"}, "invalid_client_id", "client identifier invalid"),
    ],
    ids=["bad-signature", "wrong-audience", "unknown-subject", "expired", "unknown-client"],
)
def test_a_bad_assertion_is_refused_as_salesforce_refuses_it(
    acme: AcmeSandbox, change: dict[str, Any], error: str, description: str
) -> None:
    answer = _jwt_login(acme, _assertion(acme, **change))
    assert answer.status_code == 400
    assert answer.json() == {"error": error, "error_description": description}


def test_a_malformed_assertion_is_invalid(acme: AcmeSandbox) -> None:
    answer = _jwt_login(acme, "not.a.jwt")
    assert answer.json() == {"error": "invalid_grant", "error_description": "invalid assertion"}


def test_client_credentials_and_jwt_answer_only_on_the_my_domain_host(acme: AcmeSandbox) -> None:
    connection = acme.connection
    client = {
        "client_id": connection.client_id,
        "client_secret": connection.client_secret.get_secret_value(),
    }
    off_domain = {
        "error": "invalid_grant",
        "error_description": "request not supported on this domain",
    }
    answer = _token(acme, connection.login_url, grant_type="client_credentials", **client)
    assert (answer.status_code, answer.json()) == (400, off_domain)
    answer = _jwt_login(acme, _assertion(acme), connection.login_url)
    assert (answer.status_code, answer.json()) == (400, off_domain)
    answer = _token(acme, connection.instance_url, grant_type="client_credentials", **client)
    assert answer.status_code == 200
    assert _userinfo(acme, answer.json()["access_token"])["preferred_username"] == (
        connection.username
    )


def test_the_password_grant_answers_on_the_login_host_too(acme: AcmeSandbox) -> None:
    connection = acme.connection
    answer = _token(
        acme,
        connection.login_url,
        grant_type="password",
        client_id=connection.client_id,
        client_secret=connection.client_secret.get_secret_value(),
        username="rep@acme.example",
        password="rep-password-1",
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # The session lives on the My Domain; the identity URL names the host logged in at.
    assert body["instance_url"] == connection.instance_url
    assert body["id"].startswith(f"{connection.login_url}/id/00DSx0000001AbcAAA/005")


def test_soap_login_for_a_person(acme: AcmeSandbox) -> None:
    session = verified_session(acme.connection.ca_cert)
    session_id, instance = SalesforceLogin(
        username="rep@acme.example",
        password="rep-password-1",
        security_token="",
        scratch_url=acme.connection.login_url,
        session=session,
    )
    assert instance == acme.connection.instance_url.removeprefix("https://")
    sf = Salesforce(session_id=session_id, instance=instance, session=session)
    [me] = sf.query("SELECT Id, Username FROM User WHERE Username = 'rep@acme.example'")["records"]
    assert _userinfo(acme, session_id)["user_id"] == me["Id"]
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        SalesforceLogin(
            username="rep@acme.example",
            password="wrong",
            security_token="",
            scratch_url=acme.connection.login_url,
            session=session,
        )
    assert refused.value.code == "INVALID_LOGIN"
    assert "Invalid username, password, security token; or user locked out." in str(refused.value)
