"""The OAuth resources: the token endpoint, userinfo, and the access-token check of the others."""

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

from sync_assets.sandbox.api.messages import Request, Response, json_response
from sync_assets.sandbox.auth import OrgIdentity, TokenStore
from sync_assets.sandbox.errors import invalid_session


class OAuthResources:
    def __init__(
        self, identity: OrgIdentity, tokens: TokenStore, instance_url: Callable[[], str]
    ) -> None:
        self.identity = identity
        self.tokens = tokens
        self.instance_url = instance_url

    def authenticate(self, request: Request) -> None:
        token = _bearer_token(request)
        if token is None or not self.tokens.valid(token):
            raise invalid_session()

    def user_of(self, request: Request) -> str:
        """The Id of the user whose token signed an authenticated request."""
        return self.tokens.user_of(_bearer_token(request) or "")

    def token(self, request: Request) -> Response:
        token = self.tokens.grant(request.body)
        issued_ms = str(int(time.time() * 1000))
        identity_url = self._identity_url()
        signature = hmac.new(
            self.identity.client_secret.get_secret_value().encode(),
            (identity_url + issued_ms).encode(),
            hashlib.sha256,
        ).digest()
        return json_response(
            {
                "access_token": token,
                "signature": base64.b64encode(signature).decode(),
                "scope": "api",
                "instance_url": self.instance_url(),
                "id": identity_url,
                "token_type": "Bearer",
                "issued_at": issued_ms,
            }
        )

    def userinfo(self) -> Response:
        return json_response(
            {
                "sub": self._identity_url(),
                "user_id": self.identity.user_id,
                "organization_id": self.identity.org_id,
                "preferred_username": self.identity.username,
                "nickname": "integration",
                "name": "Integration User",
                "email": self.identity.username,
                "email_verified": True,
                "zoneinfo": "GMT",
                "locale": "en_US",
                "language": "en_US",
                "user_type": "STANDARD",
                "active": True,
            }
        )

    def _identity_url(self) -> str:
        return f"{self.instance_url()}/id/{self.identity.org_id}/{self.identity.user_id}"


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "oauth") else None
