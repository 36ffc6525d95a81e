"""Salesforce credentials from the environment, login flows, and re-authentication on token expiry."""

import json
import logging
import random
import re
import threading
import time
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from pydantic import BaseModel, ConfigDict, SecretStr
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import SalesforceAuthenticationFailed

from sync_assets.salesforce.errors import (
    REQUEST_LIMIT_EXCEEDED,
    RETRYABLE_HTTP_STATUSES,
    ErrorClass,
    SalesforceAuthError,
    SalesforceConfigError,
    request_limit_class,
)
from sync_assets.salesforce.retry import RetryPolicy
from sync_assets.salesforce.transport import verified_session

log = logging.getLogger(__name__)

# Spring '26, the newest version the local sandbox serves; Salesforce keeps a version for about
# three years before deprecating it (API End-of-Life Policy), so a default is raised once a year.
DEFAULT_API_VERSION = "66.0"
DEFAULT_LOGIN_URL = "https://login.salesforce.com"
# The generic login hosts: the client-credentials flow is refused there ("request not supported on
# this domain", Salesforce Help 000886201); the org's My Domain host takes every flow.
GENERIC_LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})
MY_DOMAIN_HINT = (
    "Set SALESFORCE_LOGIN_URL to the org's My Domain URL (https://<your-domain>.my.salesforce.com, "
    "Setup → My Domain)."
)
LOGIN_TIMEOUT_SECONDS = 60.0
LOGIN_ATTEMPTS = 5
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# "exp … within 3 minutes" (Help "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration").
JWT_LIFETIME_SECONDS = 180
# Names this integration in the org's API usage and event logs (REST API Developer Guide,
# "Call Options Header"; supported by Bulk API 2.0).
CALL_OPTIONS = "client=sync_assets"
# `Sforce-Limit-Info: api-usage=18/5000` (REST API Developer Guide, "Limit Info Header"); the same
# pattern simple-salesforce and jsforce parse.
_API_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")

# Maps each field to its variable; the names are part of the interface (README, Configuration).
ENV_VARIABLES: dict[str, str] = {
    "instance_url": "SALESFORCE_INSTANCE_URL",
    "access_token": "SALESFORCE_ACCESS_TOKEN",
    "client_id": "SALESFORCE_CLIENT_ID",
    "client_secret": "SALESFORCE_CLIENT_SECRET",
    "login_url": "SALESFORCE_LOGIN_URL",
    "username": "SALESFORCE_USERNAME",
    "password": "SALESFORCE_PASSWORD",
    "security_token": "SALESFORCE_SECURITY_TOKEN",
    "domain": "SALESFORCE_DOMAIN",
    "private_key_file": "SALESFORCE_PRIVATE_KEY_FILE",
    "private_key": "SALESFORCE_PRIVATE_KEY",
    "ca_bundle": "SALESFORCE_CA_BUNDLE",
    "api_version": "SALESFORCE_API_VERSION",
}
# SALESFORCE_CA_BUNDLE and SALESFORCE_API_VERSION alone say how to talk, not which org to use.
CREDENTIAL_FIELDS = tuple(
    field for field in ENV_VARIABLES if field not in ("ca_bundle", "api_version")
)


class AuthFlow(StrEnum):
    """How a session is obtained; only the flows that log in can log in again."""

    SESSION = "session"
    JWT_BEARER = "oauth_jwt_bearer"
    CLIENT_CREDENTIALS = "oauth_client_credentials"
    OAUTH_PASSWORD = "oauth_password"
    SOAP_PASSWORD = "soap_password"

    @property
    def can_reauthenticate(self) -> bool:
        return self is not AuthFlow.SESSION


class SalesforceCredentials(BaseModel):
    """What is needed to reach one org; secrets are ``SecretStr`` so they never print."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    instance_url: str | None = None
    access_token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    login_url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    domain: str | None = None
    private_key_file: str | None = None
    private_key: SecretStr | None = None
    ca_bundle: str | None = None
    api_version: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "SalesforceCredentials":
        """The ``SALESFORCE_*`` variables of ``env``; empty values count as unset."""
        return cls(**{field: env.get(name) or None for field, name in ENV_VARIABLES.items()})

    @classmethod
    def from_sandbox(cls, data_dir: str | Path) -> "SalesforceCredentials":
        """Credentials of the local sandbox, from the ``connection.json`` it writes on start."""
        path = Path(data_dir) / "connection.json"
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as missing:
            raise SalesforceConfigError(
                f"No SALESFORCE_* variables are set and the local sandbox has no {path}; "
                "start it with `sync-assets sandbox` or configure an org (README, Configuration)."
            ) from missing
        # Client credentials (which can log in again when a token expires) at the token URL the
        # sandbox names: its My Domain host when the org file gives it one.
        return cls(
            instance_url=document["instance_url"],
            client_id=document.get("client_id"),
            client_secret=document.get("client_secret"),
            login_url=_login_url_of(document.get("token_url")) or document["instance_url"],
            ca_bundle=document.get("ca_cert"),
        )

    def to_env(self) -> dict[str, str]:
        """These credentials as ``SALESFORCE_*`` variables (how the commands hand an org to runs)."""
        values = {
            ENV_VARIABLES[field]: value.get_secret_value()
            if isinstance(value, SecretStr)
            else str(value)
            for field, value in self
            if value is not None
        }
        return values

    @property
    def is_configured(self) -> bool:
        return any(getattr(self, field) is not None for field in CREDENTIAL_FIELDS)

    @property
    def flow(self) -> AuthFlow:
        """The login flow these credentials select, or a config error naming what is missing."""
        has_client = self.client_id is not None or self.client_secret is not None
        has_user = self.username is not None or self.password is not None
        if self.private_key_file is not None or self.private_key is not None:
            self._require("client_id", "username")
            return AuthFlow.JWT_BEARER
        if has_client:
            self._require("client_id", "client_secret")
            if has_user:
                self._require("username", "password")
                return AuthFlow.OAUTH_PASSWORD
            return AuthFlow.CLIENT_CREDENTIALS
        if has_user:
            self._require("username", "password")
            return AuthFlow.SOAP_PASSWORD
        if self.access_token is not None or self.instance_url is not None:
            self._require("instance_url", "access_token")
            return AuthFlow.SESSION
        raise SalesforceConfigError(
            "No Salesforce credentials: set SALESFORCE_CLIENT_ID + SALESFORCE_USERNAME + "
            "SALESFORCE_PRIVATE_KEY_FILE (the JWT bearer flow), SALESFORCE_CLIENT_ID + "
            "SALESFORCE_CLIENT_SECRET + SALESFORCE_LOGIN_URL (client credentials, My Domain), or "
            "SALESFORCE_INSTANCE_URL + SALESFORCE_ACCESS_TOKEN (README, Configuration). Only "
            "`sync-assets demo` and `sync-assets ui` start the local sandbox."
        )

    def _require(self, *fields: str) -> None:
        missing = [ENV_VARIABLES[field] for field in fields if getattr(self, field) is None]
        if missing:
            raise SalesforceConfigError(
                f"Incomplete Salesforce credentials: {', '.join(missing)} not set."
            )


class SalesforceSession(BaseModel):
    """One authenticated session: where the org is and the bearer token to use."""

    model_config = ConfigDict(frozen=True)

    instance_url: str
    access_token: SecretStr
    org_id: str | None = None


def login(credentials: SalesforceCredentials, http: requests.Session) -> SalesforceSession:
    """Obtain a session with the flow the credentials select."""
    flow = credentials.flow
    if flow is AuthFlow.SESSION:
        token = credentials.access_token or SecretStr("")
        return SalesforceSession(
            instance_url=_strip_slash(credentials.instance_url or ""),
            access_token=token,
            org_id=_org_id_of_token(token.get_secret_value()),
        )
    if flow is AuthFlow.SOAP_PASSWORD:
        return _soap_login(credentials, http)
    return _oauth_login(credentials, flow, http)


def _oauth_login(
    credentials: SalesforceCredentials, flow: AuthFlow, http: requests.Session
) -> SalesforceSession:
    login_url = _strip_slash(credentials.login_url or credentials.instance_url or DEFAULT_LOGIN_URL)
    generic_host = urlsplit(login_url).hostname in GENERIC_LOGIN_HOSTS
    if flow is AuthFlow.CLIENT_CREDENTIALS and generic_host:
        raise SalesforceConfigError(
            f"The client-credentials flow is refused on {login_url} (Salesforce Help 000886201). "
            + MY_DOMAIN_HINT
        )
    form = {"client_id": credentials.client_id or ""}
    if flow is AuthFlow.JWT_BEARER:
        form |= {
            "grant_type": JWT_BEARER_GRANT,
            "assertion": _jwt_assertion(credentials, login_url),
        }
        del form["client_id"]
    elif flow is AuthFlow.OAUTH_PASSWORD:
        form |= {
            "client_secret": _reveal(credentials.client_secret),
            "grant_type": "password",
            "username": credentials.username or "",
            "password": _reveal(credentials.password) + _reveal(credentials.security_token),
        }
    else:
        form |= {
            "client_secret": _reveal(credentials.client_secret),
            "grant_type": "client_credentials",
        }
    token_url = f"{login_url}/services/oauth2/token"
    response = _post_with_retries(http, token_url, form, flow)
    if response.status_code != 200:
        hint = f" {MY_DOMAIN_HINT}" if _wants_my_domain(response) else ""
        raise SalesforceAuthError(
            f"OAuth {flow} login at {token_url} failed: HTTP {response.status_code} "
            f"{_oauth_error_text(response)}{hint}"
        )
    answer = response.json()
    token = str(answer["access_token"])
    return SalesforceSession(
        instance_url=_strip_slash(answer.get("instance_url") or login_url),
        access_token=SecretStr(token),
        org_id=_org_id_of_identity(answer.get("id")) or _org_id_of_token(token),
    )


def _jwt_assertion(credentials: SalesforceCredentials, audience: str) -> str:
    """An RS256 assertion: iss the consumer key, sub the username, aud the login URL, exp ≤ 3 min."""
    claims = {
        "iss": credentials.client_id,
        "sub": credentials.username,
        "aud": audience,
        "exp": int(time.time()) + JWT_LIFETIME_SECONDS,
    }
    try:
        return jwt.encode(claims, _private_key(credentials), algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError) as error:
        # The library's message names the problem, never the key.
        raise SalesforceConfigError(
            f"The JWT bearer flow's private key cannot sign: {type(error).__name__} (expected an "
            "RSA private key in PEM, e.g. `openssl genrsa`)."
        ) from None


def _private_key(credentials: SalesforceCredentials) -> str:
    if credentials.private_key is not None:
        return credentials.private_key.get_secret_value()
    path = Path(credentials.private_key_file or "")
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise SalesforceConfigError(
            f"SALESFORCE_PRIVATE_KEY_FILE {path} cannot be read: {error.strerror}"
        ) from None


def _wants_my_domain(response: requests.Response) -> bool:
    """Token errors that the org's My Domain URL fixes (salesforce-facts §5)."""
    text = response.text.lower()
    return "not supported on this domain" in text or "audience is invalid" in text


def _org_id_of_identity(identity_url: Any) -> str | None:
    """The org id in ``https://host/id/<orgId>/<userId>`` (the token answer's ``id``)."""
    if not isinstance(identity_url, str):
        return None
    parts = urlsplit(identity_url).path.strip("/").split("/")
    return parts[-2] if len(parts) >= 3 and parts[-3] == "id" else None


def _org_id_of_token(token: str) -> str | None:
    """Access tokens start with the org's 15-character id: ``00D…!…`` (sfdx-core checks this)."""
    head, bang, _ = token.partition("!")
    return head if bang and head.startswith("00D") and len(head) in (15, 18) else None


def _post_with_retries(
    http: requests.Session, token_url: str, form: dict[str, str], flow: AuthFlow
) -> requests.Response:
    """POST the token request, retrying dropped connections, 5xx and 429 (a login is idempotent)."""
    policy = RetryPolicy(max_attempts=LOGIN_ATTEMPTS)
    jitter = random.Random()
    problem = ""
    for attempt in range(policy.max_attempts):
        if attempt:
            time.sleep(policy.delay(attempt - 1, jitter))
        try:
            response = http.post(token_url, data=form, timeout=LOGIN_TIMEOUT_SECONDS)
        except requests.RequestException as error:
            # The exception text carries only the URL and the socket error, never the form body.
            problem = str(error)
            continue
        if response.status_code not in RETRYABLE_HTTP_STATUSES and not _concurrency_limited(
            response
        ):
            return response
        problem = f"HTTP {response.status_code}"
    raise SalesforceAuthError(
        f"OAuth {flow} login at {token_url} failed after {policy.max_attempts} tries: {problem}"
    )


def _concurrency_limited(response: requests.Response) -> bool:
    """A 403 for the org's concurrent-request limit, which passes (salesforce-facts §3)."""
    if response.status_code != 403:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
    return (
        first.get("errorCode") == REQUEST_LIMIT_EXCEEDED
        and request_limit_class(str(first.get("message", ""))) is ErrorClass.TRANSIENT
    )


def _soap_login(credentials: SalesforceCredentials, http: requests.Session) -> SalesforceSession:
    try:
        session_id, instance = SalesforceLogin(
            username=credentials.username or "",
            password=_reveal(credentials.password),
            security_token=_reveal(credentials.security_token) or None,
            domain=credentials.domain or "login",
            session=http,
        )
    except SalesforceAuthenticationFailed as error:
        # simple-salesforce's message is Salesforce's fault code and text, with no credential in it.
        raise SalesforceAuthError(
            f"Salesforce login for {credentials.username} failed: {error.code} {error.auth_message}"
        ) from None
    except requests.RequestException as error:
        raise SalesforceAuthError(
            f"Salesforce login for {credentials.username} failed: {error}"
        ) from None
    return SalesforceSession(
        instance_url=f"https://{instance}",
        access_token=SecretStr(session_id),
        org_id=_org_id_of_token(session_id),
    )


def _oauth_error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict):
        return f"{body.get('error', '')}: {body.get('error_description', '')}"
    return str(body)[:500]


def _login_url_of(token_url: str | None) -> str | None:
    """``https://host`` from ``https://host/services/oauth2/token``."""
    return token_url.removesuffix("/services/oauth2/token") if token_url else None


def _reveal(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret is not None else ""


def _strip_slash(url: str) -> str:
    return url.rstrip("/")


class SalesforceConnection:
    """A thread-safe authenticated connection that can log in again when its token expires.

    Every call site reads the current token, and on ``401 INVALID_SESSION_ID`` calls
    :meth:`reauthenticate` with the token that failed, so concurrent workers hitting the same
    expiry trigger one login, not one each.
    """

    def __init__(
        self,
        credentials: SalesforceCredentials,
        api_version: str | None = None,
        pool_size: int = 32,
        http: requests.Session | None = None,
    ) -> None:
        self.credentials = credentials
        self.api_version = api_version or credentials.api_version or DEFAULT_API_VERSION
        self.http = http or verified_session(
            credentials.ca_bundle, pool_size=pool_size, bearer_token=True
        )
        self.http.headers["Sforce-Call-Options"] = CALL_OPTIONS
        self.http.hooks["response"].append(self._observe)
        self._lock = threading.Lock()
        self._api_calls = 0
        self._api_usage: tuple[int, int] | None = None
        self.version_warning: str | None = None
        self._session = login(credentials, self.http)
        self._client = self._build_client(self._session)
        self.logins = 1

    def __repr__(self) -> str:
        return f"SalesforceConnection({self.instance_url!r}, flow={self.credentials.flow})"

    @property
    def instance_url(self) -> str:
        return self._session.instance_url

    @property
    def access_token(self) -> str:
        return self._session.access_token.get_secret_value()

    @property
    def api_calls(self) -> int:
        """API requests this connection made that reached the org (every ``/services/data`` call)."""
        return self._api_calls

    @property
    def api_usage(self) -> tuple[int, int] | None:
        """The org's API requests used and allowed in 24 hours, per the last answer that said."""
        return self._api_usage

    @property
    def org_id(self) -> str:
        """The org's id, from the login's identity URL or token, else from ``userinfo``."""
        if self._session.org_id is None:
            answer = self.http.get(
                f"{self.instance_url}/services/oauth2/userinfo",
                headers={"Authorization": f"Bearer {self.access_token}"},
                timeout=LOGIN_TIMEOUT_SECONDS,
            )
            if answer.status_code != 200:
                raise SalesforceAuthError(
                    f"Cannot tell which org this is: userinfo answered HTTP {answer.status_code}"
                )
            self._session = self._session.model_copy(
                update={"org_id": str(answer.json()["organization_id"])}
            )
        return str(self._session.org_id)

    def _observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Count every API call, and log once a ``Warning`` about a retiring API version.

        Salesforce answers calls to a deprecated version with ``Warning: 299 - "…"`` (REST API
        Developer Guide, "Warning Header").
        """
        if "/services/data/" not in response.url:
            return
        warning = response.headers.get("Warning")
        usage = _API_USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        with self._lock:
            self._api_calls += 1
            if usage is not None:
                self._api_usage = (int(usage.group(1)), int(usage.group(2)))
            first_warning = warning is not None and self.version_warning is None
            if first_warning:
                self.version_warning = warning
        if first_warning:
            log.warning("Salesforce API version %s: %s", self.api_version, warning)

    @property
    def client(self) -> Salesforce:
        """The simple-salesforce client for the current token."""
        return self._client

    @property
    def data_url(self) -> str:
        """``https://host/services/data/vXX.X/`` of the current instance."""
        return self._client.base_url

    def reauthenticate(self, failed_token: str) -> None:
        """Log in again, unless another thread already replaced ``failed_token``."""
        with self._lock:
            if self._session.access_token.get_secret_value() != failed_token:
                return
            if not self.credentials.flow.can_reauthenticate:
                raise SalesforceAuthError(
                    "The Salesforce session expired (401 INVALID_SESSION_ID) and cannot be renewed: "
                    "SALESFORCE_ACCESS_TOKEN is a bare session token. Supply a fresh token, or use "
                    "the JWT bearer or client-credentials flow."
                )
            org_id = self._session.org_id
            self._session = login(self.credentials, self.http)
            if self._session.org_id is None:
                self._session = self._session.model_copy(update={"org_id": org_id})
            self._client = self._build_client(self._session)
            self.logins += 1

    def _build_client(self, session: SalesforceSession) -> Salesforce:
        return Salesforce(
            instance_url=session.instance_url,
            session_id=session.access_token.get_secret_value(),
            session=self.http,
            version=self.api_version,
        )
