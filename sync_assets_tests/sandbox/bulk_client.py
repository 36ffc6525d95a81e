"""A thin raw-HTTP Bulk API 2.0 client for the sandbox tests: exact shapes, no client library."""

import csv
import io
import time
import uuid
from typing import Any

import requests

from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import SandboxConnection

API_VERSION = "59.0"
DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}


def unique_prefix() -> str:
    """A prefix for external ids, so tests sharing the session sandbox never see each other's rows."""
    return f"T{uuid.uuid4().hex[:10]}-"


class BulkClient:
    def __init__(self, connection: SandboxConnection, version: str = API_VERSION) -> None:
        self.connection = connection
        self.session = verified_session(connection.ca_cert)
        self.session.headers["Authorization"] = (
            f"Bearer {connection.access_token.get_secret_value()}"
        )
        self.root = connection.instance_url
        self.base = f"{connection.instance_url}/services/data/v{version}"

    def create(self, **job: Any) -> requests.Response:
        return self.session.post(f"{self.base}/jobs/ingest", json=job)

    def upload(self, job_id: str, data: bytes | str, **kwargs: Any) -> requests.Response:
        body = data.encode() if isinstance(data, str) else data
        headers = {"Content-Type": "text/csv", **kwargs.pop("headers", {})}
        return self.session.put(
            f"{self.base}/jobs/ingest/{job_id}/batches", data=body, headers=headers, **kwargs
        )

    def patch(self, job_id: str, state: str) -> requests.Response:
        return self.session.patch(f"{self.base}/jobs/ingest/{job_id}", json={"state": state})

    def info(self, job_id: str, kind: str = "ingest") -> dict[str, Any]:
        response = self.session.get(f"{self.base}/jobs/{kind}/{job_id}")
        response.raise_for_status()
        return response.json()

    def wait(self, job_id: str, timeout: float = 60.0, kind: str = "ingest") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.info(job_id, kind)
            if info["state"] in ("JobComplete", "Failed", "Aborted"):
                return info
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} still {info['state']} after {timeout} s")

    def start(self, data: bytes | str, object: str = "Opportunity", **job: Any) -> str:
        """Create, upload and close; the job's id."""
        created = self.create(object=object, **job)
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]
        uploaded = self.upload(job_id, data)
        assert uploaded.status_code == 201, uploaded.text
        closed = self.patch(job_id, "UploadComplete")
        assert closed.status_code == 200, closed.text
        return str(job_id)

    def load(self, data: bytes | str, object: str = "Opportunity", **job: Any) -> dict[str, Any]:
        """Create, upload, close and wait; the final JobInfo."""
        return self.wait(self.start(data, object, **job))

    def create_query(self, **job: Any) -> requests.Response:
        return self.session.post(f"{self.base}/jobs/query", json=job)

    def run_query(self, soql: str, operation: str = "query", **job: Any) -> dict[str, Any]:
        """Create a query job and wait for it; the final JobInfo."""
        created = self.create_query(operation=operation, query=soql, **job)
        assert created.status_code == 200, created.text
        return self.wait(created.json()["id"], kind="query")

    def query_results(self, job_id: str, **params: str | int) -> requests.Response:
        return self.session.get(f"{self.base}/jobs/query/{job_id}/results", params=params)

    def results_text(self, job_id: str, kind: str) -> requests.Response:
        return self.session.get(f"{self.base}/jobs/ingest/{job_id}/{kind}")

    def results(self, job_id: str, kind: str, delimiter: str = "COMMA") -> list[dict[str, str]]:
        response = self.results_text(job_id, kind)
        response.raise_for_status()
        reader = csv.DictReader(io.StringIO(response.text), delimiter=DELIMITERS[delimiter])
        return list(reader)

    def query(self, soql: str, resource: str = "query") -> dict[str, Any]:
        response = self.session.get(f"{self.base}/{resource}", params={"q": soql})
        response.raise_for_status()
        return response.json()

    def count(self, where: str = "", sobject: str = "Opportunity") -> int:
        clause = f" WHERE {where}" if where else ""
        return int(self.query(f"SELECT COUNT() FROM {sobject}{clause}")["totalSize"])

    def records(self, soql: str) -> list[dict[str, Any]]:
        page = self.query(soql)
        rows = list(page["records"])
        while not page["done"]:
            response = self.session.get(self.root + page["nextRecordsUrl"])
            response.raise_for_status()
            page = response.json()
            rows += page["records"]
        return rows


def opportunity_csv(
    prefix: str,
    count: int,
    start: int = 0,
    account: str = "ACC-000001",
    delimiter: str = ",",
    line_ending: str = "\n",
    **overrides: str,
) -> str:
    """``count`` valid opportunity rows keyed ``<prefix><n>``; ``overrides`` set a column for all."""
    columns = {
        "External_Id__c": None,
        "Account.External_Id__c": account,
        "Name": None,
        "StageName": "Prospecting",
        "CloseDate": "2026-11-28",
        "Amount": "1250.50",
        **overrides,
    }
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=line_ending)
    writer.writerow(list(columns))
    for n in range(start, start + count):
        writer.writerow(
            [
                f"{prefix}{n}"
                if name == "External_Id__c"
                else f"Opportunity {prefix}{n}"
                if name == "Name"
                else value
                for name, value in columns.items()
            ]
        )
    return buffer.getvalue()
