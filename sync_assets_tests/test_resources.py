import json
import os
from pathlib import Path
from typing import Literal

import dagster as dg
import pytest

from sync_assets.resources import BulkLoadResource, SalesforceResource, salesforce_resource_from_env
from sync_assets.salesforce.connection import AuthFlow
from sync_assets.salesforce.errors import SalesforceConfigError
from sync_assets.settings import (
    UPLOAD_COMPRESSION_VARIABLE,
    SyncSettings,
    local_sandbox_env,
    upload_compression_for,
)


def test_empty_credential_fields_never_fall_back_to_a_sandbox(tmp_path: Path) -> None:
    """Issue 15: a deployment whose secret failed to mount must not sync into a sandbox."""
    (tmp_path / "connection.json").write_text(
        json.dumps({"instance_url": "https://127.0.0.1:8443", "client_id": "c", "ca_cert": "x"})
    )
    with pytest.raises(SalesforceConfigError, match="No Salesforce credentials") as refused:
        SalesforceResource().credentials().flow  # noqa: B018
    assert "`sync-assets demo` and `sync-assets ui`" in str(refused.value)


def test_filled_fields_select_the_org(tmp_path: Path) -> None:
    resource = SalesforceResource(
        instance_url="https://org.example.com",
        access_token="00Dorg!secret-token",
    )
    credentials = resource.credentials()
    assert credentials.flow is AuthFlow.SESSION
    assert "secret-token" not in repr(credentials)
    connection = resource.connection()
    assert connection.instance_url == "https://org.example.com"
    assert resource.connection() is connection


def test_loader_settings_come_from_the_knobs() -> None:
    settings = BulkLoadResource(
        max_records_per_job=2_000, jobs_in_flight=2, max_resend_rounds=1
    ).loader_settings()
    assert (settings.plan.max_records, settings.jobs_in_flight, settings.max_resend_rounds) == (
        2_000,
        2,
        1,
    )


def test_set_variables_are_bound_as_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", "cid")
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", "csecret")
    monkeypatch.delenv("SALESFORCE_ACCESS_TOKEN", raising=False)

    @dg.asset
    def probe(salesforce: SalesforceResource) -> dg.MaterializeResult:
        flow = salesforce.credentials().flow
        return dg.MaterializeResult(metadata={"flow": flow.value})

    resource = salesforce_resource_from_env(SyncSettings())
    result = dg.materialize([probe], resources={"salesforce": resource})
    materialization = result.asset_materializations_for_node("probe")[0]
    assert materialization.metadata["flow"].value == AuthFlow.CLIENT_CREDENTIALS.value


@pytest.mark.parametrize(
    ("choice", "local_sandbox", "resolved"),
    [
        ("auto", False, "gzip"),
        ("auto", True, "none"),
        ("gzip", True, "gzip"),
        ("none", False, "none"),
    ],
)
def test_upload_compression_auto_is_plain_only_into_the_commands_sandbox(
    choice: Literal["auto", "gzip", "none"], local_sandbox: bool, resolved: str
) -> None:
    assert upload_compression_for(choice, local_sandbox=local_sandbox) == resolved


@pytest.mark.parametrize(("variable", "in_sandbox"), [(None, "none"), ("gzip", "gzip")])
def test_the_commands_sandbox_pins_its_upload_compression_for_the_runs(
    monkeypatch: pytest.MonkeyPatch, variable: str | None, in_sandbox: str
) -> None:
    if variable is None:
        monkeypatch.delenv(UPLOAD_COMPRESSION_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(UPLOAD_COMPRESSION_VARIABLE, variable)

    with local_sandbox_env({"SALESFORCE_INSTANCE_URL": "https://127.0.0.1:8443"}):
        inside = BulkLoadResource.from_settings(SyncSettings()).loader_settings()
    outside = BulkLoadResource.from_settings(SyncSettings()).loader_settings()

    assert inside.upload_compression == in_sandbox
    assert outside.upload_compression == "gzip"
    assert os.environ.get(UPLOAD_COMPRESSION_VARIABLE) == variable
