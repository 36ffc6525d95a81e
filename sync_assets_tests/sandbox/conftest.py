"""Fixtures of the sandbox tests: a raw Bulk client, a simple-salesforce session, the acme org."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr
from simple_salesforce import Salesforce

from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import SandboxConnection, SandboxHandle, running_sandbox
from sync_assets_tests.sandbox.bulk_client import BulkClient, unique_prefix
from sync_assets_tests.sandbox.org_files import OrgFile, acme_org_file


@pytest.fixture
def bulk(sandbox: SandboxHandle) -> BulkClient:
    return BulkClient(sandbox.connection)


@pytest.fixture
def sf(sandbox: SandboxHandle) -> Salesforce:
    """simple-salesforce, unmodified, in session mode against the session sandbox."""
    connection = sandbox.connection
    return Salesforce(
        instance_url=connection.instance_url,
        session_id=connection.access_token.get_secret_value(),
        session=verified_session(connection.ca_cert),
    )


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@dataclass(frozen=True)
class AcmeSandbox:
    handle: SandboxHandle
    org: OrgFile

    @property
    def connection(self) -> SandboxConnection:
        return self.handle.connection

    def person(self) -> BulkClient:
        """A client logged in as the org file's sales rep with the OAuth password grant."""
        connection = self.connection
        rep = self.org.document["users"]["people"][0]
        answer = verified_session(connection.ca_cert).post(
            connection.token_url,
            data={
                "grant_type": "password",
                "client_id": connection.client_id,
                "client_secret": connection.client_secret.get_secret_value(),
                "username": rep["username"],
                "password": rep["password"],
            },
        )
        assert answer.status_code == 200, answer.text
        token = SecretStr(answer.json()["access_token"])
        return BulkClient(connection.model_copy(update={"access_token": token}))


@pytest.fixture(scope="session")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcmeSandbox]:
    """A sandbox playing the acme org (``org_files.acme_org_file``), shared by the session."""
    org = acme_org_file(tmp_path_factory.mktemp("acme-org"))
    with running_sandbox(tmp_path_factory.mktemp("acme"), accounts=50, org=org.path) as handle:
        yield AcmeSandbox(handle, org)
