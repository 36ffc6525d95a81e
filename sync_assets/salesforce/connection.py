"""Salesforce credentials from the environment, login flows, and re-authentication on token expiry."""

import json
import random
import threading
import time
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

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

DEFAULT_API_VERSION = "59.0"
DEFAULT_LOGIN_URL = "https://login.salesforce.com"
LOGIN_TIMEOUT_SECONDS = 60.0
LOGIN_ATTEMPTS = 5

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
    "ca_bundle": "SALESFORCE_CA_BUNDLE",
}
# SALESFORCE_CA_BUNDLE alone says which CA to trust, not which org to use.
CREDENTIAL_FIELDS = tuple(field for field in ENV_VARIABLES if field != "ca_bundle")


class AuthFlow(StrEnum):
    """How a session is obtained; only the flows that log in can log in again."""

    SESSION = "session"
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
    ca_bundle: str | None = None

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
        # The sandbox's OAuth endpoint lives on the instance itself, so client credentials (which
        # can log in again when a token expires) are preferred over its pre-issued token.
        return cls(
            instance_url=document["instance_url"],
            access_token=document.get("access_token"),
            client_id=document.get("client_id"),
            client_secret=document.get("client_secret"),
            login_url=_login_url_of(document.get("token_url")) or document["instance_url"],
            ca_bundle=document.get("ca_cert"),
        )

    @classmethod
    def resolve(cls, env: Mapping[str, str], sandbox_dir: str | Path) -> "SalesforceCredentials":
        """The configured org, or the local sandbox when no credential variable is set."""
        configured = cls.from_env(env)
        if configured.is_configured:
            return configured
        sandbox = cls.from_sandbox(sandbox_dir)
        # An explicit SALESFORCE_CA_BUNDLE still wins over the sandbox's own CA path.
        return sandbox.model_copy(update={"ca_bundle": configured.ca_bundle or sandbox.ca_bundle})

    @property
    def is_configured(self) -> bool:
        return any(getattr(self, field) is not None for field in CREDENTIAL_FIELDS)

    @property
    def flow(self) -> AuthFlow:
        """The login flow these credentials select, or a config error naming what is missing."""
        has_client = self.client_id is not None or self.client_secret is not None
        has_user = self.username is not None or self.password is not None
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
            "No Salesforce credentials: set SALESFORCE_INSTANCE_URL + SALESFORCE_ACCESS_TOKEN, "
            "SALESFORCE_CLIENT_ID + SALESFORCE_CLIENT_SECRET, or SALESFORCE_USERNAME + "
            "SALESFORCE_PASSWORD (README, Configuration)."
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


def login(credentials: SalesforceCredentials, http: requests.Session) -> SalesforceSession:
    """Obtain a session with the flow the credentials select."""
    flow = credentials.flow
    if flow is AuthFlow.SESSION:
        return SalesforceSession(
            instance_url=_strip_slash(credentials.instance_url or ""),
            access_token=credentials.access_token or SecretStr(""),
        )
    if flow is AuthFlow.SOAP_PASSWORD:
        return _soap_login(credentials, http)
    return _oauth_login(credentials, flow, http)


def _oauth_login(
    credentials: SalesforceCredentials, flow: AuthFlow, http: requests.Session
) -> SalesforceSession:
    login_url = _strip_slash(credentials.login_url or credentials.instance_url or DEFAULT_LOGIN_URL)
    form = {
        "client_id": credentials.client_id or "",
        "client_secret": _reveal(credentials.client_secret),
    }
    if flow is AuthFlow.OAUTH_PASSWORD:
        form |= {
            "grant_type": "password",
            "username": credentials.username or "",
            "password": _reveal(credentials.password) + _reveal(credentials.security_token),
        }
    else:
        form["grant_type"] = "client_credentials"
    token_url = f"{login_url}/services/oauth2/token"
    response = _post_with_retries(http, token_url, form, flow)
    if response.status_code != 200:
        raise SalesforceAuthError(
            f"OAuth {flow} login at {token_url} failed: HTTP {response.status_code} "
            f"{_oauth_error_text(response)}"
        )
    answer = response.json()
    return SalesforceSession(
        instance_url=_strip_slash(answer.get("instance_url") or login_url),
        access_token=SecretStr(answer["access_token"]),
    )


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
    return SalesforceSession(instance_url=f"https://{instance}", access_token=SecretStr(session_id))


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
        api_version: str = DEFAULT_API_VERSION,
        pool_size: int = 32,
        http: requests.Session | None = None,
    ) -> None:
        self.credentials = credentials
        self.api_version = api_version
        self.http = http or verified_session(credentials.ca_bundle, pool_size=pool_size)
        self._lock = threading.Lock()
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
                    "the client-credentials or username/password flow."
                )
            self._session = login(self.credentials, self.http)
            self._client = self._build_client(self._session)
            self.logins += 1

    def _build_client(self, session: SalesforceSession) -> Salesforce:
        return Salesforce(
            instance_url=session.instance_url,
            session_id=session.access_token.get_secret_value(),
            session=self.http,
            version=self.api_version,
        )
