"""The schedule and the sensors: one sync per drop and partition, whichever fires; one summary."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from sync_assets.assets import salesforce_opportunities
from sync_assets.automation import (
    nightly_opportunity_sync,
    opportunity_drop_sensor,
    opportunity_summary_job,
    opportunity_summary_sensor,
    opportunity_sync_job,
)
from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.resources import SyncStorage
from sync_assets.run_tags import DROP_TAG
from sync_assets.settings import SyncSettings
from sync_assets.state.layout import PARTITION_KEYS


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def storage(tmp_path: Path) -> SyncStorage:
    return SyncStorage(landing_dir=str(tmp_path / "landing"), state_dir=str(tmp_path / "state"))


def land(storage: SyncStorage, drop_id: str) -> None:
    generate_drop(storage.landing_dir, GenerateOptions(drop_id=drop_id, rows=300, accounts=40))


def evaluate_schedule(
    instance: dg.DagsterInstance, storage: SyncStorage
) -> list[dg.RunRequest] | dg.SkipReason:
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 11, 28, 2, 0, tzinfo=UTC),
        resources={"storage": storage},
    )
    return nightly_opportunity_sync(SyncSettings())(context)


def evaluate_drop_sensor(
    instance: dg.DagsterInstance, storage: SyncStorage, cursor: str | None = None
) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": storage}
    )
    return opportunity_drop_sensor(context)


def record_runs(instance: dg.DagsterInstance, requests: list[dg.RunRequest]) -> None:
    """What the daemon does with run requests: a run per request, tagged as requested."""
    for request in requests:
        create_run_for_test(
            instance,
            job_name=opportunity_sync_job.name,
            tags={**request.tags, "dagster/partition": request.partition_key},
        )


def test_no_drop_means_no_runs(instance: dg.DagsterInstance, storage: SyncStorage) -> None:
    assert isinstance(evaluate_schedule(instance, storage), dg.SkipReason)
    assert isinstance(evaluate_drop_sensor(instance, storage), dg.SkipReason)


def test_new_drop_gives_ten_run_requests_tagged_with_the_drop(
    instance: dg.DagsterInstance, storage: SyncStorage
) -> None:
    land(storage, "2026-11-27")
    result = evaluate_drop_sensor(instance, storage)
    assert isinstance(result, dg.SensorResult)
    requests = result.run_requests
    assert sorted(request.partition_key for request in requests) == PARTITION_KEYS
    assert {request.tags[DROP_TAG] for request in requests} == {"2026-11-27"}
    assert len({request.run_key for request in requests}) == 10
    assert all("2026-11-27" in request.run_key for request in requests)
    assert result.cursor == "2026-11-27"


def test_schedule_and_sensor_sync_each_partition_once_whichever_fires_first(
    instance: dg.DagsterInstance, storage: SyncStorage
) -> None:
    land(storage, "2026-11-27")
    from_sensor = evaluate_drop_sensor(instance, storage)
    assert isinstance(from_sensor, dg.SensorResult)
    record_runs(instance, from_sensor.run_requests[:4])  # the daemon got to 4 runs so far

    from_schedule = evaluate_schedule(instance, storage)
    assert isinstance(from_schedule, list)
    assert sorted(request.partition_key for request in from_schedule) == PARTITION_KEYS[4:]
    record_runs(instance, from_schedule)

    assert isinstance(evaluate_schedule(instance, storage), dg.SkipReason)
    assert isinstance(evaluate_drop_sensor(instance, storage, cursor="2026-11-27"), dg.SkipReason)


def test_a_newer_drop_is_synced_after_an_older_one(
    instance: dg.DagsterInstance, storage: SyncStorage
) -> None:
    land(storage, "2026-11-27")
    first = evaluate_drop_sensor(instance, storage)
    assert isinstance(first, dg.SensorResult)
    record_runs(instance, first.run_requests)
    land(storage, "2026-11-28")
    second = evaluate_drop_sensor(instance, storage, cursor=first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert {request.tags[DROP_TAG] for request in second.run_requests} == {"2026-11-28"}
    assert len(second.run_requests) == 10


def test_incomplete_drop_is_ignored(instance: dg.DagsterInstance, storage: SyncStorage) -> None:
    land(storage, "2026-11-27")
    (Path(storage.landing_dir) / "2026-11-27" / "_manifest.json").unlink()
    assert isinstance(evaluate_drop_sensor(instance, storage), dg.SkipReason)


def report_synced(instance: dg.DagsterInstance, drop_id: str, partitions: list[str]) -> None:
    for partition in partitions:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=salesforce_opportunities.key,
                partition=partition,
                metadata={"drop_id": drop_id},
            )
        )


def test_summary_waits_for_all_ten_partitions_then_runs_once(instance: dg.DagsterInstance) -> None:
    def evaluate() -> dg.SensorResult | dg.SkipReason:
        return opportunity_summary_sensor(dg.build_sensor_context(instance=instance))

    report_synced(instance, "2026-11-27", PARTITION_KEYS[:9])
    assert isinstance(evaluate(), dg.SkipReason)

    report_synced(instance, "2026-11-27", PARTITION_KEYS[9:])
    result = evaluate()
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests
    assert request.run_key == "summary:2026-11-27"
    assert request.tags[DROP_TAG] == "2026-11-27"

    create_run_for_test(instance, job_name=opportunity_summary_job.name, tags=request.tags)
    assert isinstance(evaluate(), dg.SkipReason)


def test_summary_waits_while_partitions_hold_different_drops(instance: dg.DagsterInstance) -> None:
    report_synced(instance, "2026-11-27", PARTITION_KEYS)
    report_synced(instance, "2026-11-28", PARTITION_KEYS[:3])
    result = opportunity_summary_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SkipReason)
