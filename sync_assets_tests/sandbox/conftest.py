"""Fixtures of the sandbox tests: a raw Bulk client and a simple-salesforce session."""

import pytest
from simple_salesforce import Salesforce

from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import SandboxHandle
from sync_assets_tests.sandbox.bulk_client import BulkClient, unique_prefix


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
