"""HTTPS sessions that trust an extra CA (the local sandbox's) without ever disabling verification."""

import ssl
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter


class ExtraCAAdapter(HTTPAdapter):
    """An adapter whose TLS context trusts the system CAs plus one extra CA file.

    ``requests`` lets ``REQUESTS_CA_BUNDLE`` override ``session.verify``, so trusting a CA through
    ``verify=`` silently stops working in environments that set it. The CA is loaded into the SSL
    context itself instead; a bundle from the environment can only add to it, never remove it.
    """

    def __init__(self, ca_file: str | Path | None = None, **kwargs: Any) -> None:
        self._ssl_context = ssl.create_default_context()
        if ca_file is not None:
            self._ssl_context.load_verify_locations(cafile=str(ca_file))
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._ssl_context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        # Verification is not optional: a caller passing verify=False still gets it.
        super().cert_verify(conn, url, True if verify is False else verify, cert)


def verified_session(ca_file: str | Path | None = None, pool_size: int = 32) -> requests.Session:
    """A ``requests.Session`` that verifies TLS against the system CAs and ``ca_file``."""
    session = requests.Session()
    adapter = ExtraCAAdapter(ca_file, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.verify = True
    return session
