"""The error answers of the sandbox's REST and Bulk endpoints: an HTTP status and a JSON array body."""

from typing import Any


class ApiError(Exception):
    """An error answered as ``[{"errorCode": …, "message": …}]`` with an HTTP status.

    REST resources (query, sobjects, the 401 of every endpoint) write ``message`` first and Bulk
    endpoints ``errorCode`` first, as captured from real orgs; parsers do not care, people do.
    """

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        rest: bool = False,
        fields: list[str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.rest = rest
        # REST record errors name the fields at fault, as ``"fields": [...]`` (possibly empty).
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        if self.rest:
            error: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        else:
            error = {"errorCode": self.error_code, "message": self.message}
        if self.fields is not None:
            error["fields"] = self.fields
        return [error]


def not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", "The requested resource does not exist")


def invalid_session() -> ApiError:
    return ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid", rest=True)
