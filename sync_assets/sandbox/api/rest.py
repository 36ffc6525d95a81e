"""The REST resources: API versions, a version's resource list, limits, sobjects/describe, query."""

from sync_assets.sandbox.api.messages import Request, Response, allow, json_response
from sync_assets.sandbox.api.records import RecordResources
from sync_assets.sandbox.auth import OrgIdentity
from sync_assets.sandbox.errors import ApiError, not_found
from sync_assets.sandbox.limits import DailyLimits
from sync_assets.sandbox.objects import OBJECTS, ObjectDef, find_object
from sync_assets.sandbox.query import QueryService
from sync_assets.sandbox.store import Database

OLDEST_VERSION, NEWEST_VERSION = 31, 66
_SEASONS = ("Winter", "Spring", "Summer")


def release_label(version: int) -> str:
    """The release a version shipped in: 59.0 was Winter '24, one release every third of a year."""
    offset = version - 59
    return f"{_SEASONS[offset % 3]} '{24 + offset // 3:02d}"


class RestResources:
    def __init__(
        self,
        db: Database,
        identity: OrgIdentity,
        limits: DailyLimits,
        queries: QueryService,
        records: RecordResources,
    ) -> None:
        self.db = db
        self.identity = identity
        self.limits = limits
        self.queries = queries
        self.records = records

    @staticmethod
    def versions() -> Response:
        return json_response(
            [
                {"label": release_label(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
                for v in range(OLDEST_VERSION, NEWEST_VERSION + 1)
            ]
        )

    def handle(self, request: Request, parts: list[str]) -> Response:
        """Answer ``/services/data/vNN.0/<parts>``."""
        base = f"/services/data/v{request.api_version}"
        if not parts:
            allow(request, "GET")
            return json_response(
                {
                    name: f"{base}/{name}"
                    for name in ("jobs", "limits", "query", "queryAll", "sobjects")
                }
            )
        head = parts[0]
        if head == "limits" and len(parts) == 1:
            allow(request, "GET")
            return self._limits()
        if head == "sobjects":
            return self._sobjects(request, parts[1:])
        if head in ("query", "queryAll") and len(parts) <= 2:
            allow(request, "GET")
            return self._query(request, head == "queryAll", parts[1] if len(parts) == 2 else None)
        raise not_found()

    def _limits(self) -> Response:
        counted = self.limits.snapshot()
        return json_response(
            {
                "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
                **{name: counted[name] for name in sorted(counted)},
                "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                "DataStorageMB": {"Max": 1024, "Remaining": 1024},
                "FileStorageMB": {"Max": 1024, "Remaining": 1024},
            }
        )

    def _sobjects(self, request: Request, parts: list[str]) -> Response:
        version = request.api_version
        if not parts:
            allow(request, "GET")
            return json_response(
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [o.summary(version) for o in OBJECTS.values()],
                }
            )
        if parts[0] == "User" and len(parts) == 2 and parts[1] == self.identity.user_id:
            allow(request, "GET")
            return json_response(
                {
                    "attributes": {
                        "type": "User",
                        "url": f"/services/data/v{version}/sobjects/User/{parts[1]}",
                    },
                    "Id": parts[1],
                    "Username": self.identity.username,
                }
            )
        sobject = self._sobject(parts[0])
        if parts[1:] == ["describe"]:
            allow(request, "GET")
            return json_response(sobject.describe(version))
        if len(parts) > 1:
            return self.records.handle(request, sobject, parts[1:])
        allow(request, "HEAD", "GET", "POST")
        if request.method == "POST":
            return self.records.create(request, sobject)
        return json_response({"objectDescribe": sobject.summary(version), "recentItems": []})

    @staticmethod
    def _sobject(name: str) -> ObjectDef:
        sobject = find_object(name)
        if sobject is None:
            raise ApiError(
                404, "NOT_FOUND", f"The requested resource does not exist: {name}", rest=True
            )
        return sobject

    def _query(self, request: Request, include_deleted: bool, locator: str | None) -> Response:
        conn = self.db.connection()
        if locator is not None:
            page = self.queries.next_page(conn, locator, include_deleted, request.api_version)
        else:
            page = self.queries.first_page(
                conn, request.query.get("q"), include_deleted, request.api_version
            )
        return json_response(page)
