"""A requests transport adapter that answers from a test's handler, for unit tests without a server."""

import json
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

Handler = Callable[[requests.PreparedRequest], "FakeAnswer | Exception"]


class FakeAnswer:
    def __init__(self, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
        self.status = status
        if isinstance(body, bytes):
            self.body = body
        elif isinstance(body, str):
            self.body = body.encode()
        else:
            self.body = json.dumps(body).encode()
        self.headers = headers or {"Content-Type": "application/json"}


class FakeTransport(BaseAdapter):
    """Every request is recorded in ``requests``; the handler's answer (or exception) is returned."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.requests.append(request)
        answer = self.handler(request)
        if isinstance(answer, Exception):
            raise answer
        response = requests.Response()
        response.status_code = answer.status
        response._content = answer.body
        response.headers = CaseInsensitiveDict(answer.headers)
        response.url = request.url or ""
        response.request = request
        response.raw = _BytesRaw(answer.body)
        return response

    def close(self) -> None:
        pass


class _BytesRaw:
    """Enough of urllib3's response for ``iter_content`` on a streamed fake response."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, chunk_size: int, decode_content: bool = True) -> Any:
        for start in range(0, len(self._body), chunk_size):
            yield self._body[start : start + chunk_size]

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


def mounted(session: requests.Session, handler: Handler) -> FakeTransport:
    transport = FakeTransport(handler)
    session.mount("https://", transport)
    return transport
