"""The REST resources: API versions, a version's resource list, limits, sobjects (describe, rows), query."""

from sync_assets.sandbox.api.messages import Request, Response, allow, json_response
from sync_assets.sandbox.api.records import RecordResources
from sync_assets.sandbox.auth import OrgIdentity
from sync_assets.sandbox.errors import ApiError, not_found
from sync_assets.sandbox.limits import DailyLimits
from sync_assets.sandbox.metadata import Catalog
from sync_assets.sandbox.objects import ObjectDef
from sync_assets.sandbox.query import QueryService
from sync_assets.sandbox.store import Database

OLDEST_VERSION, NEWEST_VERSION = 31, 66
_SEASONS = ("Winter", "Spring", "Summer")


def no_view_setup() -> ApiError:
    """/limits without View Setup and Configuration.

    The exact body is unconfirmed (facts §9, open item 3): Salesforce's generic refusal code,
    with the wording of its "Insufficient Privileges" page.
    """
    return ApiError(
        403,
        "INSUFFICIENT_ACCESS",
        "You do not have the level of access necessary to perform the operation you requested. "
        "Please contact the owner of the record or your administrator if access is necessary.",
        rest=True,
    )


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
        catalog: Catalog,
        records: RecordResources,
    ) -> None:
        self.db = db
        self.identity = identity
        self.limits = limits
        self.queries = queries
        self.catalog = catalog
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
            # /limits needs View Setup and Configuration (REST API reference, Limits).
            if not self.catalog.users[request.user_id].view_setup:
                raise no_view_setup()
            return self._limits()
        if head == "sobjects":
            return self._sobjects(request, parts[1:])
        if head in ("query", "queryAll") and len(parts) <= 2:
            allow(request, "GET")
            return self._query(request, head == "queryAll", parts[1] if len(parts) == 2 else None)
        raise not_found()

    def _limits(self) -> Response:
        return json_response(self.limits.report())

    def _sobjects(self, request: Request, parts: list[str]) -> Response:
        version = request.api_version
        catalog = self.catalog.for_user(request.user_id)
        if not parts:
            allow(request, "GET")
            return json_response(
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [o.summary(version) for o in catalog.objects.values()],
                }
            )
        user = self.catalog.users.get(parts[1]) if parts[0] == "User" and len(parts) == 2 else None
        if user is not None:
            allow(request, "GET")
            return json_response(
                {
                    "attributes": {
                        "type": "User",
                        "url": f"/services/data/v{version}/sobjects/User/{user.id}",
                    },
                    "Id": user.id,
                    "Username": user.username,
                }
            )
        sobject = _sobject(catalog, parts[0])
        if parts[1:] == ["describe"]:
            allow(request, "GET")
            return json_response(sobject.describe(version))
        if len(parts) > 1:
            return self.records.handle(request, sobject, parts[1:])
        allow(request, "HEAD", "GET", "POST")
        if request.method == "POST":
            return self.records.create(request, sobject)
        return json_response({"objectDescribe": sobject.summary(version), "recentItems": []})

    def _query(self, request: Request, include_deleted: bool, locator: str | None) -> Response:
        conn = self.db.connection()
        if locator is not None:
            page = self.queries.next_page(conn, locator, include_deleted, request.api_version)
        else:
            page = self.queries.first_page(
                conn,
                request.query.get("q"),
                include_deleted,
                request.api_version,
                self.catalog.for_user(request.user_id),
            )
        return json_response(page)


def _sobject(catalog: Catalog, name: str) -> ObjectDef:
    """The object ``name`` as the requesting user sees it; REST's 404 if there is none."""
    sobject = catalog.find(name)
    if sobject is None:
        raise ApiError(
            404, "NOT_FOUND", f"The requested resource does not exist: {name}", rest=True
        )
    return sobject
