"""Reading an org's metadata over HTTPS from the sandbox: the empty org, and the acme org file.

Modelled on describe (DescribeSObjectResult, recordTypeInfos), the UI API's Picklist Values per
record type, and the RecordType and CurrencyType objects (facts §8); field-level security hides
a field from describe (facts §9).
"""

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync_assets.drops.contract import DropContract, build_contract, default_contract
from sync_assets.drops.mapping import load_mapping
from sync_assets.salesforce.connection import SalesforceConnection, SalesforceCredentials
from sync_assets.salesforce.metadata import read_org_metadata
from sync_assets.sandbox.runner import SandboxHandle, running_sandbox
from sync_assets.state.org_metadata import OrgMetadata, metadata_for_drop, stored_metadata
from sync_assets.storage import StateStore
from sync_assets_tests.drops.orgs import acme_like_org, acme_mapping
from sync_assets_tests.sandbox.org_files import acme_org_file


def connect(sandbox: SandboxHandle) -> SalesforceConnection:
    return SalesforceConnection(SalesforceCredentials.from_sandbox(sandbox.data_dir))


@pytest.fixture(scope="module")
def acme_org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    org = acme_org_file(tmp_path_factory.mktemp("acme-org"))
    with running_sandbox(tmp_path_factory.mktemp("acme"), accounts=5, org=org.path) as handle:
        yield handle


def rules(contract: DropContract) -> list[dict[str, Any]]:
    """Every rule of a contract, record type Ids left out (each org mints its own)."""
    shown = []
    for spec in contract.specs:
        target = dataclasses.asdict(spec.target)
        target["record_type_ids"] = sorted(target["record_type_ids"] or {})
        shown.append({**spec.model_dump(exclude={"target"}), **target})
    return shown


def test_an_empty_org_describes_the_built_in_standard_org(sandbox: SandboxHandle) -> None:
    metadata = read_org_metadata(connect(sandbox), "Opportunity", ["Account"])
    assert metadata.stages == {"012000000000000AAA": list(metadata.stages_of("x"))}
    assert metadata.currencies is None
    contract = build_contract(load_mapping(), metadata)
    assert rules(contract) == rules(default_contract())
    assert contract.salesforce_fields == default_contract().salesforce_fields


def test_the_acme_org_is_read_as_its_org_file_says(acme_org: SandboxHandle) -> None:
    metadata = read_org_metadata(connect(acme_org), "Opportunity", ["Account"])
    names = {info.developer_name: info for info in metadata.sobject.record_type_infos}
    assert list(names) == ["New_Business", "Renewal", "Master"]
    assert names["New_Business"].default_record_type_mapping
    assert metadata.stages_of(names["Renewal"].record_type_id) == [
        "Renewal Open",
        "Closed Won",
        "Closed Lost",
    ]
    assert metadata.currencies is not None
    assert (metadata.currencies.active, metadata.currencies.inactive) == (
        ["USD", "EUR", "GBP"],
        ["CAD"],
    )
    assert metadata.sobject.field("NextStep") is None  # hidden from the integration user
    lead_source = metadata.sobject.field("LeadSource")
    assert lead_source is not None and not lead_source.createable
    # The unit tests' acme-like metadata says the same as the org does.
    read = build_contract(acme_mapping(), metadata)
    assert rules(read) == rules(build_contract(acme_mapping(), acme_like_org()))


def test_the_metadata_is_read_once_per_drop(acme_org: SandboxHandle, tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state")
    reads: list[OrgMetadata] = []

    def read() -> OrgMetadata:
        reads.append(read_org_metadata(connect(acme_org), "Opportunity", []))
        return reads[-1]

    assert stored_metadata(state, "d") is None
    first = metadata_for_drop(state, "d", read)
    again = metadata_for_drop(state, "d", read)
    assert len(reads) == 1 and again == first == stored_metadata(state, "d")
    metadata_for_drop(state, "another drop", read)
    assert len(reads) == 2
