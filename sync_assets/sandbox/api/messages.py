"""The API's transport-free Request and Response, and the HTTP method check every resource makes."""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sync_assets.sandbox.errors import ApiError

JSON = "application/json;charset=UTF-8"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    api_version: str = ""
    user_id: str = ""  # who the access token acts for, once authenticated


@dataclass
class Response:
    status: int
    body: bytes | Iterator[bytes] = b""
    content_type: str | None = JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode())


def allow(request: Request, *methods: str) -> None:
    if request.method not in methods:
        raise ApiError(
            405,
            "METHOD_NOT_ALLOWED",
            f"HTTP Method '{request.method}' not allowed. Allowed are {','.join(methods)}",
        )
