"""The OAuth resources: the token endpoint, userinfo, and the access-token check of the others."""

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sync_assets.sandbox.api.messages import Request, Response, json_response
from sync_assets.sandbox.auth import OrgIdentity, TokenStore
from sync_assets.sandbox.errors import invalid_session
from sync_assets.sandbox.jwt_bearer import GRANT_TYPE as JWT_BEARER
from sync_assets.sandbox.login import Logins
from sync_assets.sandbox.users import Users


def host_name(request: Request) -> str:
    """The host a request was sent to (its ``Host`` header without the port)."""
    return urlsplit("//" + request.headers.get("host", "")).hostname or ""


class OAuthResources:
    """``instance_url`` is the My Domain (instance) URL, ``login_url`` the generic login one."""

    def __init__(
        self,
        identity: OrgIdentity,
        tokens: TokenStore,
        logins: Logins,
        users: Users,
        instance_url: Callable[[], str],
        login_url: Callable[[], str],
    ) -> None:
        self.identity = identity
        self.tokens = tokens
        self.logins = logins
        self.users = users
        self.instance_url = instance_url
        self.login_url = login_url

    def authenticate(self, request: Request) -> str:
        """The Id of the user the request's access token acts for (kept in ``request.user_id``)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        user_id = self.tokens.user_of(token.strip())
        # A token of a user the org file no longer has is as dead as an expired one.
        if scheme.lower() not in ("bearer", "oauth") or user_id not in self.users:
            raise invalid_session()
        request.user_id = user_id
        return user_id

    def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        on_instance = host_name(request) == urlsplit(self.instance_url()).hostname
        user = self.logins.oauth(form, on_instance)
        token, issued = self.tokens.issue(user.id)
        # The identity URL's host is the one the client logged in at (facts §5).
        base = self.instance_url() if on_instance else self.login_url()
        answer: dict[str, Any] = {
            "access_token": token,
            "scope": "api",
            "instance_url": self.instance_url(),
            "id": f"{base}/id/{self.identity.org_id}/{user.id}",
            "token_type": "Bearer",
        }
        if form.get("grant_type") != JWT_BEARER:
            # The JWT answer has no signature and no issued_at (facts §5).
            answer |= self._signed(answer["id"], issued)
        return json_response(answer)

    def _signed(self, identity_url: str, issued: float) -> dict[str, str]:
        issued_ms = str(int(issued * 1000))
        signature = hmac.new(
            self.identity.client_secret.get_secret_value().encode(),
            (identity_url + issued_ms).encode(),
            hashlib.sha256,
        ).digest()
        return {"signature": base64.b64encode(signature).decode(), "issued_at": issued_ms}

    def userinfo(self, user_id: str) -> Response:
        user = self.users[user_id]
        return json_response(
            {
                "sub": f"{self.instance_url()}/id/{self.identity.org_id}/{user.id}",
                "user_id": user.id,
                "organization_id": self.identity.org_id,
                "preferred_username": user.username,
                "nickname": user.username.partition("@")[0],
                "name": user.name,
                "email": user.username,
                "email_verified": True,
                "zoneinfo": "GMT",
                "locale": "en_US",
                "language": "en_US",
                "user_type": "STANDARD",
                "active": True,
            }
        )
