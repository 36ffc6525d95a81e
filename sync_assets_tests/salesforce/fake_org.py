"""A tiny in-memory Bulk API 2.0 org behind ``FakeTransport``, for fast loader unit tests.

Jobs complete the moment they are closed. A row with an empty ``Name`` fails with
``REQUIRED_FIELD_MISSING``; a key in ``lock_once`` fails with ``UNABLE_TO_LOCK_ROW`` the first time
it is processed. Everything else is upserted on ``External_Id__c``. A REST ``COUNT()`` answers
the loader's count of created records, ``CreatedDate >= <datetime>`` (each ingest job is created
one second after the previous one; a record's CreatedDate is its creating job's). Query jobs are
only recorded (``queries``): the loader asks none.
"""

import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl
import requests

from sync_assets_tests.salesforce.http_fakes import FakeAnswer

INGEST = re.compile(r"/services/data/v[\d.]+/jobs/ingest/?(?P<job>[^/?]+)?/?(?P<part>[A-Za-z]+)?")
REST_QUERY = re.compile(r"/services/data/v[\d.]+/query/?$")
QUERY = re.compile(r"/services/data/v[\d.]+/jobs/query/?(?P<job>[^/?]+)?/?(?P<part>results)?")
CREATED_SINCE = re.compile(r"CreatedDate >= (\S+)")
EPOCH = datetime(2026, 11, 28, tzinfo=UTC)


class FakeBulkOrg:
    def __init__(self, lock_once: set[str] | None = None, batches_remaining: int = 15_000) -> None:
        self.lock_once = set(lock_once or ())
        self.batches_remaining = batches_remaining
        self.records: dict[str, str] = {}
        self.created: dict[str, datetime] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.queries: dict[str, str] = {}
        self.counts: list[str] = []
        self.downloads: list[str] = []
        self.uploaded_rows = 0

    def __call__(self, request: requests.PreparedRequest) -> FakeAnswer:
        path = (request.path_url or "").split("?")[0]
        if path.endswith("/limits/"):
            return FakeAnswer(
                200,
                {
                    "DailyApiRequests": {"Max": 100_000, "Remaining": 100_000},
                    "DailyBulkApiBatches": {"Max": 15_000, "Remaining": self.batches_remaining},
                },
            )
        if REST_QUERY.search(path):
            return self._count(request)
        if QUERY.search(path):
            return self._query(request, QUERY.search(path))
        match = INGEST.search(path)
        assert match, path
        job_id, part = match["job"], match["part"]
        if request.method == "POST":
            return self._create()
        if request.method == "GET" and job_id is None:
            records = [{"id": key, **job["info"]} for key, job in self.jobs.items()]
            return FakeAnswer(200, {"done": True, "records": records, "nextRecordsUrl": None})
        job = self.jobs[job_id]
        if request.method == "PUT":
            job["csv"] = bytes(request.body or b"")
            return FakeAnswer(201)
        if request.method == "PATCH":
            state = json.loads(request.body or b"{}")["state"]
            if state == "UploadComplete":
                self._process(job)
            else:
                job["info"]["state"] = state
            return FakeAnswer(200, {"id": job_id, "state": job["info"]["state"]})
        if part is None:
            return FakeAnswer(200, {"id": job_id, **job["info"]})
        self.downloads.append(part)
        return FakeAnswer(200, job["results"][part.lower()], {"Content-Type": "text/csv"})

    def _query(self, request: requests.PreparedRequest, match: re.Match[str]) -> FakeAnswer:
        if request.method == "POST":
            job_id = f"750QUERY{len(self.queries):010d}"
            self.queries[job_id] = json.loads(request.body or b"{}")["query"]
            return FakeAnswer(200, {"id": job_id, "state": "UploadComplete"})
        return FakeAnswer(200, {"id": match["job"], "state": "JobComplete"})

    def _count(self, request: requests.PreparedRequest) -> FakeAnswer:
        soql = parse_qs(urlsplit(request.url or "").query)["q"][0]
        self.counts.append(soql)
        since = CREATED_SINCE.search(soql)
        assert since and "COUNT()" in soql, soql
        moment = datetime.strptime(since.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        total = sum(created >= moment for created in self.created.values())
        return FakeAnswer(200, {"totalSize": total, "done": True, "records": []})

    def _create(self) -> FakeAnswer:
        job_id = f"750FAKE{len(self.jobs):011d}"
        info = {
            "state": "Open",
            "object": "Opportunity",
            "createdDate": (EPOCH + timedelta(seconds=len(self.jobs))).strftime(
                "%Y-%m-%dT%H:%M:%S.000+0000"
            ),
            "numberRecordsProcessed": 0,
            "numberRecordsFailed": 0,
        }
        created = datetime.strptime(info["createdDate"], "%Y-%m-%dT%H:%M:%S.%f%z")
        self.jobs[job_id] = {"info": info, "csv": b"", "created": created}
        return FakeAnswer(200, {"id": job_id, **info})

    def _process(self, job: dict[str, Any]) -> None:
        rows = pl.read_csv(io.BytesIO(job["csv"]), infer_schema=False)
        self.uploaded_rows += rows.height
        keys = rows["External_Id__c"].to_list()
        names = rows["Name"].fill_null("").to_list()
        success, failed = [], []
        for key, name in zip(keys, names, strict=True):
            if not name:
                failed.append(
                    (key, "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --")
                )
            elif key in self.lock_once:
                self.lock_once.discard(key)
                failed.append(
                    (key, "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--")
                )
            else:
                created = key not in self.records
                self.records.setdefault(key, f"006{len(self.records):015d}")
                self.created.setdefault(key, job["created"])
                success.append((self.records[key], "true" if created else "false", key))
        job["results"] = {
            "successfulresults": '"sf__Id","sf__Created",External_Id__c\n'
            + "".join(f'"{sf_id}","{created}","{key}"\n' for sf_id, created, key in success),
            "failedresults": '"sf__Id","sf__Error",External_Id__c\n'
            + "".join(f'"","{error}","{key}"\n' for key, error in failed),
            "unprocessedrecords": "External_Id__c\n",
        }
        job["info"].update(
            state="JobComplete", numberRecordsProcessed=rows.height, numberRecordsFailed=len(failed)
        )
