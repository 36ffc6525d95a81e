"""The sandbox org's identity and access tokens: credentials, and the user each token acts for.

Tokens look like Salesforce's (``00D…!…``), are stored as SHA-256 hashes so they survive restarts
without the database holding usable secrets, and expire after ``token_ttl`` seconds when set.
"""

import hashlib
import secrets
import string
import threading
import time

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


def load_identity(db: Database, org_id: str | None = None) -> OrgIdentity:
    """The org's identity, created on first start and then kept in the database.

    ``org_id`` (an org file's) replaces the kept one without being stored over it.
    """
    identity = _kept_identity(db)
    return identity if org_id is None else identity.model_copy(update={"org_id": org_id})


def _kept_identity(db: Database) -> OrgIdentity:
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
    """Access tokens and the user each acts for (the integration user for tokens from before)."""

    def __init__(self, db: Database, identity: OrgIdentity, ttl: float) -> None:
        self._db = db
        self._identity = identity
        self._ttl = ttl
        self._lock = threading.Lock()
        rows = db.connection().execute("SELECT hash, expires, user_id FROM tokens").fetchall()
        self._sessions: dict[str, tuple[float | None, str]] = {
            str(r[0]): (r[1], r[2] or identity.user_id) for r in rows
        }

    def issue(self, user_id: str | None = None) -> tuple[str, float]:
        """A new token for ``user_id`` (default: the integration user) and its issue time (epoch s)."""
        user_id = user_id or self._identity.user_id
        secret = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(96))
        token = f"{self._identity.org_id[:15]}!{secret}"
        issued = time.time()
        expires = issued + self._ttl if self._ttl > 0 else None
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO tokens (hash, issued, expires, user_id) VALUES (?, ?, ?, ?)",
                (_digest(token), issued, expires, user_id),
            )
        with self._lock:
            self._sessions[_digest(token)] = (expires, user_id)
        return token, issued

    def user_of(self, token: str) -> str | None:
        """The Id of the user ``token`` acts for, or None if it is unknown or expired."""
        with self._lock:
            session = self._sessions.get(_digest(token))
        if session is None:
            return None
        expires, user_id = session
        return user_id if expires is None or time.time() < expires else None

    def valid(self, token: str) -> bool:
        return self.user_of(token) is not None
