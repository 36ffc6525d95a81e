"""Fault injection: error statuses, dropped connections, failing jobs, lock errors, stats endpoint."""

import pytest
import requests

from sync_assets.sandbox.faults import FaultInjector, FaultSpec
from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv, unique_prefix


def test_fault_spec_parsing_and_validation() -> None:
    assert FaultSpec.parse("http_500=0.02, reset=0.01").rates == {"http_500": 0.02, "reset": 0.01}
    with pytest.raises(ValueError, match="unknown fault"):
        FaultSpec.parse("http_418=0.5")
    with pytest.raises(ValueError, match="probability"):
        FaultSpec.parse("lock=2")


def test_faults_are_reproducible_for_a_seed() -> None:
    spec = FaultSpec.parse("http_500=0.3,http_503=0.3")
    draws = [[FaultInjector(spec, seed=7).request_fault() for _ in range(1)] for _ in range(2)]
    first, second = FaultInjector(spec, 7), FaultInjector(spec, 7)
    assert [first.request_fault() for _ in range(50)] == [second.request_fault() for _ in range(50)]
    assert draws[0] == draws[1]


def test_error_statuses_and_resets_before_handling(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    handle = fresh_sandbox(
        accounts=0, faults="http_500=0.25,http_503=0.25,http_429=0.2,reset=0.2", seed=3
    )
    bulk = BulkClient(handle.connection)
    outcomes: list[str] = []
    for _ in range(60):
        try:
            outcomes.append(str(bulk.session.get(f"{bulk.base}/limits").status_code))
        except requests.ConnectionError:
            outcomes.append("reset")
    assert {"200", "500", "503", "429", "reset"} <= set(outcomes)
    stats = bulk.session.get(f"{bulk.root}/__sandbox/stats")
    while stats.status_code != 200:
        stats = bulk.session.get(f"{bulk.root}/__sandbox/stats")
    assert stats.json()["totals"]["fault:reset"] == outcomes.count("reset")


def test_a_reset_after_handling_applies_the_request(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    bulk = BulkClient(fresh_sandbox(accounts=0, faults="reset_after=1").connection)
    with pytest.raises(requests.ConnectionError):
        bulk.create(object="Account", operation="insert")
    stats = bulk.session.get(f"{bulk.root}/__sandbox/stats").json()
    assert stats["totals"]["jobs"] == 1


def test_job_fail_leaves_unprocessed_rows(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    bulk = BulkClient(fresh_sandbox(accounts=3, faults="job_fail=1", seed=1, slots=1).connection)
    prefix = unique_prefix()
    info = bulk.load(opportunity_csv(prefix, 35_000), operation="insert")
    assert info["state"] == "Failed" and info["errorMessage"]
    applied = bulk.count(f"External_Id__c LIKE '{prefix}%'")
    assert applied == info["numberRecordsProcessed"] and applied % 10_000 == 0
    assert len(bulk.results(info["id"], "unprocessedrecords")) == 35_000 - applied
    assert len(bulk.results(info["id"], "successfulResults")) == applied


def test_lock_fault_fails_rows_and_counts_retries(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    bulk = BulkClient(fresh_sandbox(accounts=3, faults="lock=0.5", seed=2).connection)
    info = bulk.load(opportunity_csv(unique_prefix(), 400), operation="insert")
    assert 100 < info["numberRecordsFailed"] < 300
    assert info["retries"] == info["numberRecordsFailed"]
    stats = bulk.session.get(f"{bulk.root}/__sandbox/stats").json()
    assert stats["jobs"][info["id"]]["lock_failures"] == info["numberRecordsFailed"]
    assert stats["jobs"][info["id"]]["records_received"] == 400


def test_stats_need_the_bearer_token(bulk: BulkClient) -> None:
    assert (
        requests.Session()
        .get(f"{bulk.root}/__sandbox/stats", verify=str(bulk.connection.ca_cert))
        .status_code
        == 401
    )


def test_stats_count_the_requests_that_may_change_data(fresh_sandbox) -> None:  # type: ignore[no-untyped-def]
    bulk = BulkClient(fresh_sandbox(accounts=3).connection)

    def writes() -> int:
        return int(
            bulk.session.get(f"{bulk.root}/__sandbox/stats")
            .json()["totals"]
            .get("write_requests", 0)
        )

    bulk.session.get(f"{bulk.base}/limits")
    bulk.session.get(f"{bulk.base}/sobjects/Opportunity/describe")
    bulk.records("SELECT Id FROM Opportunity")
    assert writes() == 0
    bulk.load(opportunity_csv(unique_prefix(), 3), operation="insert")  # create, upload, close
    assert writes() == 3
