"""The OAuth 2.0 JWT bearer grant: checking an RS256 assertion against the connected app's certificate.

Claims (Help "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration"): ``iss`` the consumer
key, ``sub`` the username, ``aud`` the login or My Domain URL, ``exp`` in seconds. PyJWT checks
the signature and audience; ``exp`` is checked here because clients send it as a number or as a
numeric string (simple-salesforce does the latter, and Salesforce accepts it). The refusals are
the ones users captured from real orgs (facts §5).
"""

from collections.abc import Sequence
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from sync_assets.sandbox.auth import OAuthError
from sync_assets.sandbox.org import ConnectedAppSpec

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp"]


def invalid_assertion() -> OAuthError:
    """A malformed assertion or one whose signature the certificate does not verify."""
    return OAuthError("invalid_grant", "invalid assertion")


def certificate_key(app: ConnectedAppSpec) -> RSAPublicKey | None:
    """The RSA public key of the connected app's certificate, if the org file gives one."""
    pem = app.certificate
    if pem is None and app.certificate_file is not None:
        pem = Path(app.certificate_file).read_text(encoding="utf-8")
    if pem is None:
        return None
    key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    if not isinstance(key, RSAPublicKey):
        raise ValueError("connected_app: the certificate's key must be RSA (the flow signs RS256)")
    return key


def verified_subject(
    assertion: str,
    client_id: str,
    key: RSAPublicKey | None,
    audiences: Sequence[str],
    now: float,
) -> str:
    """The username (``sub``) of a valid assertion; :class:`OAuthError` as Salesforce refuses."""
    try:
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise invalid_assertion() from None
    if unverified.get("iss") != client_id:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    if key is None:
        # No certificate uploaded: the app cannot verify any signature.
        raise invalid_assertion()
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=["RS256"],
            audience=list(audiences),
            options={"verify_exp": False, "require": _REQUIRED_CLAIMS},
        )
    except jwt.InvalidAudienceError:
        raise OAuthError("invalid_grant", "audience is invalid") from None
    except jwt.PyJWTError:
        raise invalid_assertion() from None
    try:
        expires = float(claims["exp"])
    except (TypeError, ValueError):
        raise invalid_assertion() from None
    if expires <= now:
        # SE 282513: an expired assertion answers with the authorization code's wording.
        raise OAuthError("invalid_grant", "expired authorization code")
    subject = claims["sub"]
    if not isinstance(subject, str):
        raise invalid_assertion()
    return subject
