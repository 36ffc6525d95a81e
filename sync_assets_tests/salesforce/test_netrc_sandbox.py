"""A user's ``.netrc`` never replaces the org's token.

requests puts Basic credentials from ``.netrc`` on every request that names no ``auth`` and
whose host has an entry there (``Session.prepare_request``), over the ``Authorization`` header
the request carries.
"""

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.connection import SalesforceConnection, SalesforceCredentials
from sync_assets.sandbox.runner import SandboxHandle


def test_a_netrc_entry_for_the_org_does_not_replace_the_token(
    sandbox: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = SalesforceCredentials.from_sandbox(sandbox.data_dir)
    host = urlsplit(credentials.instance_url).hostname
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {host} login someone password not-the-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))

    connection = SalesforceConnection(credentials)
    soql = "SELECT COUNT() FROM Opportunity WHERE Sync_Partition__c = 'none'"
    # Our calls and simple-salesforce's share the session.
    assert BulkApi(connection).count(soql) == 0
    assert connection.client.query(soql)["totalSize"] == 0
    assert connection.logins == 1
