"""HTTPS sessions that trust an extra CA (the local sandbox's) without ever disabling verification."""

import os
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH


@lru_cache(maxsize=8)
def _tls_context(ca_files: tuple[tuple[str, int], ...]) -> ssl.SSLContext:
    """The system's CAs and those of ``ca_files`` (path and mtime: a rewritten file is read again).

    One per process and set of files: loading the system's CAs costs ~19 ms of CPU and a bundle
    like certifi's ~14 ms, and a night opens dozens of connections. A context is thread-safe.
    """
    context = ssl.create_default_context()
    for path, _ in ca_files:
        context.load_verify_locations(cafile=path)
    return context


def _bundles_requests_names(ca_file: str | Path | None) -> list[str]:
    """The CA files urllib3 would load into the context at every new connection.

    Certifi's bundle (requests' default), the environment's (``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE``, as requests reads them) and ours. Directories and missing files are left
    to requests (and its error).
    """
    environment = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    named = [DEFAULT_CA_BUNDLE_PATH, environment, None if ca_file is None else str(ca_file)]
    return sorted({path for path in named if path and os.path.isfile(path)})


class ExtraCAAdapter(HTTPAdapter):
    """An adapter whose TLS context trusts the system CAs plus one extra CA file.

    ``requests`` lets ``REQUESTS_CA_BUNDLE`` override ``session.verify``, so trusting a CA through
    ``verify=`` silently stops working in environments that set it. The CA is loaded into the SSL
    context itself instead; a bundle from the environment can only add to it, never remove it.
    """

    def __init__(self, ca_file: str | Path | None = None, **kwargs: Any) -> None:
        bundles = _bundles_requests_names(ca_file)
        self._in_context = frozenset(bundles)
        self._ssl_context = _tls_context(
            tuple((path, os.stat(path).st_mtime_ns) for path in bundles)
        )
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
        if getattr(conn, "ca_certs", None) in self._in_context:
            # Already in the context: urllib3 would load it again at every new connection.
            conn.ca_certs = None


def _headers_as_given(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


class _TokenSession(requests.Session):
    """A session whose requests carry the ``Authorization`` header they are given.

    requests replaces it with Basic credentials from the user's ``.netrc`` (``NETRC``) whenever
    that file has an entry for the host and the request names no ``auth``: every call to the org
    would then carry that password instead of the org's token, and be refused. An explicit
    pass-through ``auth`` keeps ``.netrc`` out; proxies and CA bundles from the environment still
    apply.
    """

    def __init__(self) -> None:
        super().__init__()
        self.auth = _headers_as_given

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: Any) -> None:
        # requests' own, without .netrc: a redirect to another host drops the token.
        url = prepared_request.url or ""
        if "Authorization" in prepared_request.headers and self.should_strip_auth(
            response.request.url, url
        ):
            del prepared_request.headers["Authorization"]


def verified_session(
    ca_file: str | Path | None = None, pool_size: int = 32, *, bearer_token: bool = False
) -> requests.Session:
    """A ``requests.Session`` that verifies TLS against the system CAs and ``ca_file``.

    ``bearer_token``: its requests carry their own token, never ``.netrc`` credentials.
    """
    session = _TokenSession() if bearer_token else requests.Session()
    adapter = ExtraCAAdapter(ca_file, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.verify = True
    return session
