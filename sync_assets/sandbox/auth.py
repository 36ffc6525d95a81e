"""The sandbox org's identity and OAuth: credentials, access tokens, the token endpoint's grants.

Tokens look like Salesforce's (``00D…!…``), are stored as SHA-256 hashes so they survive restarts
without the database holding usable secrets, and expire after ``token_ttl`` seconds when set.
"""

import hashlib
import hmac
import secrets
import string
import threading
import time
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from sync_assets.sandbox.ids import mint_ids
from sync_assets.sandbox.objects import ORG_KEY_PREFIX, USER_KEY_PREFIX
from sync_assets.sandbox.store import Database

USERNAME = "integration@sandbox.local"
_TOKEN_ALPHABET = string.ascii_letters + string.digits + "."


class OAuthError(Exception):
    """An OAuth answer: HTTP 400 (or 401) with ``{"error", "error_description"}``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


class OrgIdentity(BaseModel):
    """Who the sandbox org is and the secrets that log in to it (never shown in a repr)."""

    model_config = ConfigDict(frozen=True)

    org_id: str
    user_id: str
    client_id: str
    client_secret: SecretStr = Field(repr=False)
    username: str = USERNAME
    password: SecretStr = Field(repr=False)


def load_identity(db: Database) -> OrgIdentity:
    """The org's identity, created on first start and then kept in the database."""
    stored = {key: db.get_meta(f"identity:{key}") for key in OrgIdentity.model_fields}
    if all(stored.values()):
        return OrgIdentity(**{k: v for k, v in stored.items() if v is not None})
    identity = OrgIdentity(
        org_id=mint_ids(ORG_KEY_PREFIX, 1, 1)[0],
        user_id=mint_ids(USER_KEY_PREFIX, 1, 1)[0],
        client_id="3MVG9" + "".join(secrets.choice(_TOKEN_ALPHABET[:-1]) for _ in range(80)),
        client_secret=SecretStr(secrets.token_hex(32).upper()),
        password=SecretStr(secrets.token_urlsafe(18)),
    )
    with db.write() as conn:
        for key in OrgIdentity.model_fields:
            value = getattr(identity, key)
            plain = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            db.set_meta(conn, f"identity:{key}", plain)
    return identity


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, db: Database, identity: OrgIdentity, ttl: float) -> None:
        self._db = db
        self._identity = identity
        self._ttl = ttl
        self._lock = threading.Lock()
        rows = db.connection().execute("SELECT hash, expires FROM tokens").fetchall()
        self._expiry: dict[str, float | None] = {str(r[0]): r[1] for r in rows}

    def issue(self) -> tuple[str, float]:
        """A new access token and its issue time (epoch seconds)."""
        secret = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(96))
        token = f"{self._identity.org_id[:15]}!{secret}"
        issued = time.time()
        expires = issued + self._ttl if self._ttl > 0 else None
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO tokens (hash, issued, expires) VALUES (?, ?, ?)",
                (_digest(token), issued, expires),
            )
        with self._lock:
            self._expiry[_digest(token)] = expires
        return token, issued

    def valid(self, token: str) -> bool:
        with self._lock:
            if (digest := _digest(token)) not in self._expiry:
                return False
            expires = self._expiry[digest]
        return expires is None or time.time() < expires

    def user_of(self, token: str) -> str:
        """The Id of the user a valid token was issued to: every token is the integration user's."""
        return self._identity.user_id

    def grant(self, body: bytes) -> str:
        """Check a ``/services/oauth2/token`` form; the issued token, or :class:`OAuthError`."""
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        grant_type = form.get("grant_type", "")
        if grant_type not in ("client_credentials", "password"):
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        identity = self._identity
        if not hmac.compare_digest(form.get("client_id", ""), identity.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(
            form.get("client_secret", ""), identity.client_secret.get_secret_value()
        ):
            raise OAuthError("invalid_client", "invalid client credentials")
        if grant_type == "password":
            username_ok = form.get("username", "") == identity.username
            password_ok = hmac.compare_digest(
                form.get("password", ""), identity.password.get_secret_value()
            )
            if not (username_ok and password_ok):
                raise OAuthError("invalid_grant", "authentication failure")
        token, _ = self.issue()
        return token
