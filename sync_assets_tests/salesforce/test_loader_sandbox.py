"""The Bulk loader end to end against the local HTTPS sandbox: counts, failures, faults, locks, expiry, resume."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.drops.staging import stage_drop, stage_partition
from sync_assets.partition_load import OrgPace, OrgPaceFile, PartitionLoader
from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.connection import AuthFlow, SalesforceConnection, SalesforceCredentials
from sync_assets.salesforce.errors import SalesforceLimitsError
from sync_assets.salesforce.loader import BulkLoader, LoaderSettings, LoadProgress, LoadResult
from sync_assets.salesforce.planning import PlanLimits
from sync_assets.salesforce.queries import count_partition
from sync_assets.salesforce.retry import RetryPolicy
from sync_assets.salesforce.watcher import WatchSettings
from sync_assets.sandbox.runner import SandboxConnection, running_sandbox
from sync_assets.state.layout import ORG_PACE_PATH
from sync_assets.state.ledger import load_ledger
from sync_assets.storage import StateStore
from sync_assets_tests.salesforce.staged_rows import INVALID_KINDS, staged_partition

pytestmark = pytest.mark.slow

ACCOUNTS = 300
FAST_POLL = WatchSettings(first=0.05, cap=0.5)
FAST_RETRY = RetryPolicy(max_attempts=10, base_delay=0.05, max_delay=0.5)


@pytest.fixture(scope="module")
def sandbox_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data_dir = tmp_path_factory.mktemp("sandbox")
    with running_sandbox(data_dir, accounts=ACCOUNTS):
        yield data_dir


def connect(data_dir: Path) -> SalesforceConnection:
    return SalesforceConnection(SalesforceCredentials.from_sandbox(data_dir))


def loader(
    data_dir: Path, state: Path, progress: list[LoadProgress] | None = None, **settings: Any
) -> PartitionLoader:
    defaults: dict[str, Any] = {"watch": FAST_POLL, "retry": FAST_RETRY, "resend_pause": 0.1}
    bulk = BulkLoader(
        connect(data_dir),
        LoaderSettings(**(defaults | settings)),
        progress=progress.append if progress is not None else None,
    )
    return PartitionLoader(bulk, StateStore(state))


def load_in_jobs_of_500(tmp_path: Path, rows: pl.DataFrame) -> LoadResult:
    """``rows`` (one partition's) into the sandbox under ``tmp_path``, two jobs of 500 in flight."""
    partition = rows.get_column("Sync_Partition__c")[0]
    return loader(
        tmp_path / "sandbox", tmp_path / "state", plan=PlanLimits(max_records=500), jobs_in_flight=2
    ).load(rows, "drop-a", partition)


def processed_by_jobs(connection: SalesforceConnection, job_ids: list[str]) -> int:
    """Rows Salesforce processed across jobs, from each job's own counter."""
    api = BulkApi(connection)
    return sum(api.job_info(job_id).numberRecordsProcessed for job_id in job_ids)


def assert_accounted(result: LoadResult) -> None:
    assert result.sent == result.succeeded + result.failed
    assert result.succeeded == result.created + result.updated


def test_load_counts_failures_ledger_and_rerun(sandbox_dir: Path, tmp_path: Path) -> None:
    rows = staged_partition(3_000, "1", accounts=ACCOUNTS, invalid_every=97)
    invalid = rows.filter(pl.col("_invalid_kind").is_not_null())
    progress: list[LoadProgress] = []
    result = loader(sandbox_dir, tmp_path, progress, plan=PlanLimits(max_records=700)).load(
        rows, "drop-a", "1"
    )

    assert_accounted(result)
    assert (result.sent, result.failed, result.created) == (
        3_000,
        invalid.height,
        3_000 - invalid.height,
    )
    assert result.retried == 0 and result.uploaded == 3_000
    assert len(result.job_ids) == 5
    assert (progress[-1].confirmed, progress[-1].total) == (3_000 - invalid.height, 3_000)
    # What a log line without progress bars says (issue 16, item 6): sent, failed, jobs in flight.
    assert (progress[-1].sent, progress[-1].failed, progress[-1].resent) == (
        3_000,
        invalid.height,
        0,
    )
    assert 1 <= max(now.jobs_in_flight for now in progress) <= 8
    assert sum(result.failed_by_reason.values()) == invalid.height

    failed = pl.read_parquet(result.failed_file or "")
    assert sorted(failed["External_Id__c"]) == sorted(invalid["External_Id__c"])
    assert failed["error"].str.contains(":").all()
    reason_of = dict(zip(failed["_invalid_kind"], failed["error_code"], strict=True))
    assert set(reason_of) == set(INVALID_KINDS)
    assert reason_of["missing_name"] == "REQUIRED_FIELD_MISSING"

    ledger = load_ledger(StateStore(tmp_path), "1")
    assert ledger.height == result.succeeded
    assert not set(ledger["external_id"]) & set(invalid["External_Id__c"])
    assert ledger["salesforce_id"].str.starts_with("006").all()
    connection = connect(sandbox_dir)
    assert count_partition(connection, "1") == result.succeeded

    again = loader(sandbox_dir, tmp_path).load(rows, "drop-a", "1")
    assert again.uploaded == 0 and again.model_dump(
        include={"sent", "succeeded", "failed"}
    ) == result.model_dump(include={"sent", "succeeded", "failed"})

    # The next drop, staged against the advanced ledger: only the rows that failed are left.
    restaged = rows.join(
        ledger.select(
            pl.col("external_id").alias("External_Id__c"), pl.col("row_hash").alias("_row_hash")
        ),
        on=["External_Id__c", "_row_hash"],
        how="anti",
    )
    next_night = loader(sandbox_dir, tmp_path).load(restaged, "drop-b", "1")
    assert (next_night.sent, next_night.uploaded, next_night.failed) == (invalid.height,) * 3
    assert count_partition(connection, "1") == result.succeeded


def test_every_login_flow_reaches_the_sandbox(sandbox_dir: Path) -> None:
    sandbox = SandboxConnection.read(sandbox_dir)
    login_url = sandbox.token_url.removesuffix("/services/oauth2/token")
    flows = {
        AuthFlow.CLIENT_CREDENTIALS: SalesforceCredentials.from_sandbox(sandbox_dir),
        AuthFlow.OAUTH_PASSWORD: SalesforceCredentials(
            client_id=sandbox.client_id,
            client_secret=sandbox.client_secret,
            username=sandbox.username,
            password=sandbox.password,
            login_url=login_url,
            ca_bundle=str(sandbox.ca_cert),
        ),
        AuthFlow.SESSION: SalesforceCredentials(
            instance_url=sandbox.instance_url,
            access_token=sandbox.access_token,
            ca_bundle=str(sandbox.ca_cert),
        ),
    }
    for flow, credentials in flows.items():
        assert credentials.flow is flow
        connection = SalesforceConnection(credentials)
        assert connection.instance_url == sandbox.instance_url
        assert count_partition(connection, "9") == 0
        assert "DailyBulkApiBatches" in BulkApi(connection).limits()


def test_changed_rows_are_updates(sandbox_dir: Path, tmp_path: Path) -> None:
    first = staged_partition(400, "2", accounts=ACCOUNTS)
    loader(sandbox_dir, tmp_path).load(first, "drop-a", "2")
    changed = staged_partition(500, "2", accounts=ACCOUNTS, version="v2")
    result = loader(sandbox_dir, tmp_path).load(changed, "drop-b", "2")
    assert (result.updated, result.created, result.failed) == (400, 100, 0)
    assert count_partition(connect(sandbox_dir), "2") == 500


def test_a_partition_with_nothing_to_send_asks_the_org_nothing(tmp_path: Path) -> None:
    """An unchanged partition spends no call on `/limits` (ten a night, for a budget nothing
    would use), so an org that would refuse any load does not fail it either."""
    with running_sandbox(tmp_path / "sandbox", accounts=ACCOUNTS, daily_batches=0):
        nothing = staged_partition(10, "3", accounts=ACCOUNTS).head(0)
        result = loader(tmp_path / "sandbox", tmp_path / "state").load(nothing, "drop-a", "3")
    assert (result.sent, result.api_calls) == (0, 0)
    assert result.preflight == "not needed: nothing to send"


def test_refuses_a_night_the_org_cannot_take(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox", accounts=ACCOUNTS, daily_batches=0):
        rows = staged_partition(1_500, "3", accounts=ACCOUNTS)
        with pytest.raises(SalesforceLimitsError, match="Nothing was sent"):
            loader(tmp_path / "sandbox", tmp_path / "state").load(rows, "drop-a", "3")
        assert count_partition(connect(tmp_path / "sandbox"), "3") == 0


def test_completes_exactly_under_injected_faults(tmp_path: Path) -> None:
    faults = (
        "http_500=0.03,http_503=0.03,http_429=0.03,reset=0.03,"
        "http_500_after=0.02,http_503_after=0.02,reset_after=0.02,job_fail=0.1,lock=0.01"
    )
    with running_sandbox(tmp_path / "sandbox", accounts=ACCOUNTS, faults=faults, seed=11):
        rows = staged_partition(4_000, "4", accounts=ACCOUNTS)
        result = loader(
            tmp_path / "sandbox",
            tmp_path / "state",
            plan=PlanLimits(max_records=400),
            max_resend_rounds=5,
        ).load(rows, "drop-a", "4")
        assert_accounted(result)
        assert (result.succeeded, result.failed) == (4_000, 0)
        assert result.http_retries > 0
        assert count_partition(connect(tmp_path / "sandbox"), "4") == 4_000


def test_lock_failures_are_resent(tmp_path: Path) -> None:
    # A job takes 1 s to process, so jobs the loader starts together are processed together
    # however slowly a busy machine uploads them (at 0.25 s a job, one uploaded late on a loaded CI
    # machine had finished before the next arrived: nothing collided, nothing to resend).
    with running_sandbox(
        tmp_path / "sandbox", accounts=ACCOUNTS, slots=4, rate=250, lock_timeout=0.05
    ):
        # Few accounts, small jobs cut without regard for accounts: concurrent batches collide.
        rows = staged_partition(3_000, "5", accounts=6)
        careless = loader(
            tmp_path / "sandbox",
            tmp_path / "state",
            plan=PlanLimits(max_records=250, account_aligned=False),
            jobs_in_flight=6,
            max_resend_rounds=6,
        ).load(rows, "drop-a", "5")
        assert_accounted(careless)
        assert careless.retried > 0
        assert (careless.succeeded, careless.failed) == (3_000, 0)

        aligned_rows = staged_partition(3_000, "6", accounts=6)
        aligned = loader(
            tmp_path / "sandbox",
            tmp_path / "state",
            plan=PlanLimits(max_records=250),
            jobs_in_flight=6,
        ).load(aligned_rows, "drop-a", "6")
        assert (aligned.succeeded, aligned.retried) == (3_000, 0)


def test_expired_tokens_are_renewed_with_client_credentials(tmp_path: Path) -> None:
    with running_sandbox(
        # Slow enough that the load outlives its first token (3 s of processing).
        tmp_path / "sandbox",
        accounts=ACCOUNTS,
        token_ttl=1.0,
        rate=500,
        slots=2,
    ):
        result = load_in_jobs_of_500(tmp_path, staged_partition(3_000, "7", accounts=ACCOUNTS))
        assert (result.succeeded, result.failed) == (3_000, 0)
        assert result.logins >= 1


def test_a_partitions_first_load_shares_the_orgs_pace_with_the_other_partitions(
    tmp_path: Path,
) -> None:
    """Jobs of 1,500 records at 750 records/s: the org's seconds per record (0.0013), measured
    from jobs seen running, reach the state for the other partitions' first loads. (Within a
    factor of four: the org's clock is read to the second from the answers' ``Date``, so a 2 s
    job may measure 1-3 s; 1 s jobs measured as little as 0.47 s. Smaller jobs measure nothing:
    `WatchSettings.pace_min_records`.)"""
    with running_sandbox(tmp_path / "sandbox", accounts=ACCOUNTS, rate=750, slots=2):
        result = loader(
            tmp_path / "sandbox",
            tmp_path / "state",
            plan=PlanLimits(max_records=1_500),
            jobs_in_flight=2,
        ).load(staged_partition(3_000, "3", accounts=ACCOUNTS), "drop-a", "3")
        assert (result.succeeded, result.failed) == (3_000, 0)
    state = StateStore(tmp_path / "state")
    shared = OrgPaceFile(state, "4").read()
    assert shared is not None and 0.0003 <= shared <= 0.0054, shared
    assert state.read_json(ORG_PACE_PATH, OrgPace).measured_by == "3"


def test_a_crashed_run_is_resumed_without_resending(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sandbox", accounts=ACCOUNTS, rate=5_000, slots=2):
        rows = staged_partition(3_000, "8", accounts=ACCOUNTS)
        closed: list[str] = []

        def crash_after_third_close(event: str, job_id: str) -> None:
            if event == "closed":
                closed.append(job_id)
                if len(closed) == 3:
                    raise RuntimeError("simulated crash")

        settings = LoaderSettings(
            watch=FAST_POLL, retry=FAST_RETRY, plan=PlanLimits(max_records=500), jobs_in_flight=2
        )
        crashing = PartitionLoader(
            BulkLoader(
                connect(tmp_path / "sandbox"), settings, on_job_event=crash_after_third_close
            ),
            StateStore(tmp_path / "state"),
        )
        with pytest.raises(RuntimeError, match="simulated crash"):
            crashing.load(rows, "drop-a", "8")

        result = loader(
            tmp_path / "sandbox",
            tmp_path / "state",
            plan=PlanLimits(max_records=500),
            jobs_in_flight=2,
        ).load(rows, "drop-a", "8")
        assert (result.succeeded, result.failed) == (3_000, 0)
        assert result.jobs_resumed >= 1
        assert result.uploaded == 3_000 - 500 * len(closed)
        connection = connect(tmp_path / "sandbox")
        assert processed_by_jobs(connection, result.job_ids) == 3_000
        assert count_partition(connection, "8") == 3_000


def test_staged_drop_partitions_load_and_a_restaged_drop_sends_nothing(
    sandbox_dir: Path, tmp_path: Path
) -> None:
    landing, state = StateStore(tmp_path / "landing"), StateStore(tmp_path / "state")
    generate_drop(
        landing,
        GenerateOptions(drop_id="night-1", rows=4_000, accounts=ACCOUNTS, bad_fraction=0.02),
    )
    staged = stage_drop(landing, state, "night-1")
    connection = connect(sandbox_dir)
    bulk = PartitionLoader(
        BulkLoader(connection, LoaderSettings(watch=FAST_POLL, retry=FAST_RETRY)), state
    )
    for partition in ("0", "5"):
        to_send = staged[partition].counts.to_send
        result = bulk.load_staged("night-1", partition)
        assert (result.sent, result.succeeded, result.failed) == (to_send, to_send, 0)
        assert load_ledger(state, partition).height == to_send
        assert count_partition(connection, partition) == to_send

    restaged = stage_partition(landing, state, "night-1", "5")
    assert restaged.counts.to_send == 0
    again = bulk.load_staged("night-1", "5")
    assert (again.sent, again.uploaded) == (0, 0)


def successful_results(
    connection: SalesforceConnection, job_ids: list[str], folder: Path
) -> pl.DataFrame:
    """What the loader no longer downloads: every job's successfulResults (key, Id, created)."""
    api = BulkApi(connection)
    frames = [
        pl.read_csv(
            api.download_results(job_id, "successfulResults", folder / f"{job_id}.csv"),
            columns=["sf__Id", "sf__Created", "External_Id__c"],
            infer_schema=False,
        )
        for job_id in job_ids
    ]
    return pl.concat(frames)


def test_created_counts_equal_those_of_successful_results_with_nights_back_to_back(
    sandbox_dir: Path, tmp_path: Path
) -> None:
    """A night of new and existing records, with the ledger and without it (issue 17, item 1).

    The load reads only failedResults and counts what it created with one COUNT(): its created
    and updated counts equal those the jobs' successfulResults give ("Get Job Successful Record
    Results": ``sf__Created``), though each night starts the moment the previous one returns
    (SOQL datetimes have whole seconds: a load ends a second after its last job finished).
    """
    connection = connect(sandbox_dir)
    downloaded: list[str] = []
    counted: list[int] = []

    def night(state: Path, rows: pl.DataFrame, drop_id: str) -> LoadResult:
        partition_loader = loader(sandbox_dir, state, plan=PlanLimits(max_records=250))
        api = partition_loader.loader.api
        original_download, original_count = api.download_results, api.count

        def spy_download(job_id: str, kind: Any, destination: Path) -> Path:
            downloaded.append(kind)
            return original_download(job_id, kind, destination)

        def spy_count(soql: str) -> int:
            counted.append(original_count(soql))
            return counted[-1]

        api.download_results = spy_download  # type: ignore[method-assign]
        api.count = spy_count  # type: ignore[method-assign]
        return partition_loader.load(rows, drop_id, "5")

    first = staged_partition(600, "5", accounts=ACCOUNTS, invalid_every=97)
    mixed = staged_partition(900, "5", accounts=ACCOUNTS, invalid_every=89, version="v2")
    without_ledger = staged_partition(1_000, "5", accounts=ACCOUNTS, version="v3")
    nights = [
        (tmp_path / "state", first, "drop-a"),
        (tmp_path / "state", mixed, "drop-b"),
        # A lost ledger: Salesforce, not the ledger, says what was created.
        (tmp_path / "fresh-state", without_ledger, "drop-c"),
    ]
    for number, (state, rows, drop_id) in enumerate(nights):
        result = night(state, rows, drop_id)
        assert_accounted(result)
        reported = successful_results(connection, result.job_ids, tmp_path / f"results-{number}")
        created = int((reported["sf__Created"] == "true").sum())
        assert (result.created, result.updated) == (created, reported.height - created)
        # Every night creates records; the later ones update others too.
        assert created > 0 and (number == 0 or reported.height > created)
    assert len(counted) == 3
    # Two of the nights had failed rows: their failures are the only downloads.
    assert [kind for kind in downloaded if kind != "failedResults"] == []
    assert "failedResults" in downloaded
