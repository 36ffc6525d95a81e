"""Who logs in: the token endpoint's grants and SOAP login, each giving the user it authenticates.

Every user may use the password grant, SOAP login and the JWT bearer grant; client credentials
run as the integration user (the connected app's Run As user). In an org with a My Domain the
client-credentials and JWT grants answer only on the My Domain (instance) host; elsewhere they
answer ``invalid_grant`` / ``request not supported on this domain``, as login.salesforce.com does
for client credentials (Help 000886201; facts §5).
"""

import hmac
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from sync_assets.sandbox.auth import OAuthError, OrgIdentity
from sync_assets.sandbox.jwt_bearer import GRANT_TYPE as JWT_BEARER
from sync_assets.sandbox.jwt_bearer import verified_subject
from sync_assets.sandbox.users import SandboxUser, Users

_MY_DOMAIN_GRANTS = ("client_credentials", JWT_BEARER)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Logins:
    """Checks credentials against the connected app (``identity``) and the org's ``users``.

    ``audiences`` gives the URLs a JWT's ``aud`` may name: the login URL and the My Domain one.
    """

    def __init__(
        self,
        identity: OrgIdentity,
        users: Users,
        certificate: RSAPublicKey | None,
        my_domain: bool,
        audiences: Callable[[], list[str]],
    ) -> None:
        self._identity = identity
        self._users = users
        self._certificate = certificate
        self._my_domain = my_domain
        self._audiences = audiences

    def oauth(self, form: dict[str, str], on_instance_host: bool) -> SandboxUser:
        """The user a ``/services/oauth2/token`` form authenticates, or :class:`OAuthError`."""
        grant_type = form.get("grant_type", "")
        if grant_type not in ("client_credentials", "password", JWT_BEARER):
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        if self._my_domain and grant_type in _MY_DOMAIN_GRANTS and not on_instance_host:
            raise OAuthError("invalid_grant", "request not supported on this domain")
        if grant_type == JWT_BEARER:
            return self._jwt(form.get("assertion", ""))
        self._check_client(form)
        if grant_type == "client_credentials":
            return self._users.integration
        user = self.password(form.get("username", ""), form.get("password", ""))
        if user is None:
            raise OAuthError("invalid_grant", "authentication failure")
        return user

    def password(self, username: str, password: str) -> SandboxUser | None:
        """The user whose username and password these are (password grant, SOAP login)."""
        user = self._users.named(username)
        if user is None or not _same(password, user.password.get_secret_value()):
            return None
        return user

    def _check_client(self, form: dict[str, str]) -> None:
        identity = self._identity
        if not _same(form.get("client_id", ""), identity.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not _same(form.get("client_secret", ""), identity.client_secret.get_secret_value()):
            raise OAuthError("invalid_client", "invalid client credentials")

    def _jwt(self, assertion: str) -> SandboxUser:
        audiences = [url for base in self._audiences() for url in (base, base + "/")]
        subject = verified_subject(
            assertion, self._identity.client_id, self._certificate, audiences, time.time()
        )
        user = self._users.named(subject)
        if user is None:
            # Not captured from a real org (facts §5, open item 4): Salesforce gives this answer
            # for a user the app is not approved for, which an unknown user cannot be.
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        return user
