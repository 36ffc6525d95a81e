"""The sandbox's API as one application: routes a request to its resources, and counts requests.

Transport-free: :meth:`SandboxApp.handle` turns a :class:`Request` into a :class:`Response`; the
HTTP server (``server.py``) does sockets, TLS, chunked bodies, gzip and fault injection.
"""

import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from sync_assets.sandbox.api.ingest import MAX_UPLOAD_BYTES, IngestResources
from sync_assets.sandbox.api.messages import Request, Response, allow, json_response
from sync_assets.sandbox.api.oauth import OAuthResources
from sync_assets.sandbox.api.query_jobs import QueryJobResources
from sync_assets.sandbox.api.records import RecordResources
from sync_assets.sandbox.api.rest import NEWEST_VERSION, OLDEST_VERSION, RestResources
from sync_assets.sandbox.api.soap import SoapResources
from sync_assets.sandbox.api.uiapi import UiApiResources
from sync_assets.sandbox.auth import OAuthError, OrgIdentity, TokenStore
from sync_assets.sandbox.errors import ApiError, not_found
from sync_assets.sandbox.jobs import JobStore
from sync_assets.sandbox.jwt_bearer import certificate_key
from sync_assets.sandbox.limits import API_REQUESTS, DailyLimits
from sync_assets.sandbox.login import Logins
from sync_assets.sandbox.metadata import Catalog
from sync_assets.sandbox.org import OrgSpec
from sync_assets.sandbox.processing import Processor
from sync_assets.sandbox.query import QueryService
from sync_assets.sandbox.query_jobs import QueryJobStore
from sync_assets.sandbox.query_runner import QueryRunner
from sync_assets.sandbox.request_encoding import decoded_body
from sync_assets.sandbox.store import Database

FIRST_INGEST_VERSION = 41
FIRST_QUERY_JOB_VERSION = 47
# API End-of-Life Policy: 31.0–40.0 are "deprecated and unsupported from Summer '27, retired from
# Summer '28"; calls to a deprecated version carry a ``Warning`` header with code 299 (REST API
# Developer Guide, "Warning Header"; the doc's example text, with this version's dates).
LAST_DEPRECATED_VERSION = 40
DEPRECATION_WARNING = (
    "299 - \"This API version is deprecated and will be retired in Summer '28. Please see "
    'https://help.salesforce.com/articleView?id=000351312 for details."'
)
_VERSIONED = re.compile(r"^/services/data/v(\d+)\.(\d)(/.*)?$")
_SOAP = re.compile(r"^/services/Soap/([uc])/(\d+\.\d)$")
_READS = frozenset({"GET", "HEAD"})


def _call_options_client(header: str) -> str:
    """``client=…`` of a ``Sforce-Call-Options`` header; ``,`` and ``;`` both separate options."""
    for option in header.replace(";", ",").split(","):
        name, _, value = option.strip().partition("=")
        if name.strip() == "client":
            return value.strip()
    return ""


class SandboxApp:
    def __init__(
        self,
        db: Database,
        identity: OrgIdentity,
        tokens: TokenStore,
        limits: DailyLimits,
        jobs: JobStore,
        processor: Processor,
        instance_url: Callable[[], str],
        org: OrgSpec,
        catalog: Catalog,
        login_url: Callable[[], str],
        deprecated_through: int = 0,
        refuse_compressed_requests: bool = False,
    ) -> None:
        """``instance_url`` is the org's (My Domain) URL, ``login_url`` the generic login one.

        Versions up to ``deprecated_through`` are deprecated: their answers carry a Warning.
        ``refuse_compressed_requests`` plays an org that answers a compressed body with 415.
        """
        self.deprecated_through = deprecated_through
        self.refuse_compressed_requests = refuse_compressed_requests
        self.org = org
        self.catalog = catalog
        self.db = db
        self.identity = identity
        self.limits = limits
        self.processor = processor
        logins = Logins(
            identity,
            catalog.users,
            certificate_key(org.connected_app),
            org.my_domain is not None,
            lambda: [login_url(), instance_url()],
        )
        self.oauth = OAuthResources(
            identity, tokens, logins, catalog.users, instance_url, login_url
        )
        self.soap = SoapResources(identity, tokens, logins, instance_url, org)
        queries = QueryService()
        records = RecordResources(db, queries, processor, catalog)
        self.rest = RestResources(db, identity, limits, queries, catalog, records)
        self.ingest = IngestResources(db, jobs, processor, catalog)
        self.uiapi = UiApiResources(catalog)
        query_jobs = QueryJobStore(db)
        self.query_jobs = QueryJobResources(
            query_jobs, QueryRunner(db, query_jobs, catalog, processor.files), catalog
        )
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()

    def count(self, name: str, amount: int = 1) -> None:
        with self._counts_lock:
            self.counts[name] += amount

    def handle(self, request: Request) -> Response:
        self.count("requests")
        try:
            return self._route(request)
        except ApiError as error:
            return json_response(error.body(), error.status)
        except OAuthError as error:
            return json_response(
                {"error": error.error, "error_description": error.description}, error.status
            )

    def _route(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path == "/services/oauth2/token":
            allow(request, "POST")
            return self.oauth.token(request)
        if path == "/services/oauth2/userinfo":
            return self.oauth.userinfo(self.oauth.authenticate(request))
        soap = _SOAP.match(path)
        if soap is not None:
            return self.soap.login(request, soap.group(1), soap.group(2))
        if path == "/services/data":
            return self.rest.versions()
        if path == "/__sandbox/stats":
            self.oauth.authenticate(request)
            return json_response(self._stats())
        matched = _VERSIONED.match(path)
        if matched is None:
            raise not_found()
        major = int(matched.group(1))
        request.api_version = f"{major}.{matched.group(2)}"
        if major < OLDEST_VERSION:
            raise ApiError(
                410,
                "GONE",
                f"API version {request.api_version} has been retired; supported versions are "
                f"{OLDEST_VERSION}.0 to {NEWEST_VERSION}.0",
            )
        if major > NEWEST_VERSION or matched.group(2) != "0":
            raise not_found()
        self.oauth.authenticate(request)
        if request.method not in _READS:
            # Any call of the data API but a read may change data (job creation included).
            self.count("write_requests")
        if not self.limits.try_consume(API_REQUESTS):
            raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        # Counted as an API request before it is decoded: the client counts every call it makes.
        request.body = self._decoded_body(request)
        response = self._versioned(request, major, matched.group(3) or "")
        used, maximum = self.limits.usage(API_REQUESTS)
        response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{maximum}"
        if major <= self.deprecated_through:
            response.headers["Warning"] = DEPRECATION_WARNING
        # Which client made the call, as an org's API usage logs show it (Sforce-Call-Options).
        client = _call_options_client(request.headers.get("sforce-call-options", ""))
        self.count(f"client:{client or '(none)'}")
        return response

    def _decoded_body(self, request: Request) -> bytes:
        """The body as the resources read it; a refused or broken one is counted, then answered."""
        try:
            return decoded_body(
                request.body,
                request.headers.get("content-encoding", ""),
                MAX_UPLOAD_BYTES,
                refuse=self.refuse_compressed_requests,
            )
        except ApiError as refused:
            self.count(f"request_body_refused:{refused.status}")
            raise

    def _versioned(self, request: Request, major: int, rest: str) -> Response:
        parts = [p for p in rest.split("/") if p]
        if parts[:2] == ["jobs", "ingest"]:
            if major < FIRST_INGEST_VERSION:
                raise not_found()
            return self.ingest.handle(request, parts[2:])
        if parts[:2] == ["jobs", "query"]:
            if major < FIRST_QUERY_JOB_VERSION:
                raise not_found()
            return self.query_jobs.handle(request, parts[2:])
        if parts[:1] == ["ui-api"]:
            return self.uiapi.handle(request, parts[1:])
        return self.rest.handle(request, parts)

    def _stats(self) -> dict[str, Any]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT id, object, operation, state, records_received, upload_bytes, "
                "number_processed, number_failed, lock_failures, retries FROM jobs ORDER BY seq"
            )
            .fetchall()
        )
        jobs = {
            r["id"]: {
                "object": r["object"],
                "operation": r["operation"],
                "state": r["state"],
                "records_received": r["records_received"],
                "upload_bytes": r["upload_bytes"],
                "records_processed": r["number_processed"],
                "records_failed": r["number_failed"],
                "lock_failures": r["lock_failures"],
                "retries": r["retries"],
            }
            for r in rows
        }
        with self._counts_lock:
            counts = dict(self.counts)
        return {
            "jobs": jobs,
            "totals": {
                "jobs": len(jobs),
                "records_received": sum(j["records_received"] for j in jobs.values()),
                "records_processed": sum(j["records_processed"] for j in jobs.values()),
                "lock_failures": sum(j["lock_failures"] for j in jobs.values()),
                **counts,
            },
            "queued_batches": self.processor.queued_batches(),
        }
