import random
from pathlib import Path

import polars as pl
import pytest
import requests

from sync_assets.partition_load import PartitionLoader
from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.connection import SalesforceConnection, SalesforceCredentials
from sync_assets.salesforce.errors import SalesforceLimitsError
from sync_assets.salesforce.loader import BulkLoader, LoaderSettings
from sync_assets.salesforce.planning import PlanLimits
from sync_assets.salesforce.retry import RetryPolicy
from sync_assets.salesforce.watcher import WatchSettings
from sync_assets.state.ledger import load_ledger
from sync_assets.storage import StateStore
from sync_assets_tests.salesforce.fake_org import FakeBulkOrg
from sync_assets_tests.salesforce.http_fakes import FakeAnswer, mounted
from sync_assets_tests.salesforce.staged_rows import staged_partition

SETTINGS = LoaderSettings(
    plan=PlanLimits(max_records=100),
    jobs_in_flight=3,
    resend_pause=0,
    watch=WatchSettings(first=0.001, cap=0.001),
    retry=RetryPolicy(base_delay=0.001, max_delay=0.002),
)


def loader_for(org: FakeBulkOrg, state: Path, **settings: object) -> PartitionLoader:
    http = requests.Session()
    mounted(http, org)
    connection = SalesforceConnection(
        SalesforceCredentials(
            instance_url="https://org.example.com", access_token="00Dx00000000001!t"
        ),
        http=http,
    )
    settings_ = SETTINGS.model_copy(update=settings)
    api = BulkApi(connection, settings_.retry, rng=random.Random(0))
    return PartitionLoader(BulkLoader(connection, settings_, api=api), StateStore(state))


def test_rows_end_confirmed_or_failed_with_reasons(tmp_path: Path) -> None:
    rows = staged_partition(1_000, "3", accounts=40, invalid_every=50)
    missing_name = rows.filter(pl.col("_invalid_kind") == "missing_name")
    locked = set(rows["External_Id__c"].gather([5, 250, 999]))
    org = FakeBulkOrg(lock_once=locked)
    result = loader_for(org, tmp_path).load(rows, "d1", "3")

    assert (result.sent, result.failed, result.succeeded) == (
        1_000,
        missing_name.height,
        1_000 - missing_name.height,
    )
    assert result.retried == 3 and org.uploaded_rows == 1_003
    assert result.failed_by_reason == {"REQUIRED_FIELD_MISSING": missing_name.height}
    failed = pl.read_parquet(result.failed_file or "")
    assert sorted(failed["External_Id__c"]) == sorted(missing_name["External_Id__c"])
    assert set(failed.columns) >= {
        "Name",
        "Description",
        "_row_hash",
        "error_code",
        "error",
        "job_id",
    }
    ledger = load_ledger(StateStore(tmp_path), "3")
    assert set(ledger["external_id"]) == set(org.records) - set(missing_name["External_Id__c"])
    assert result.created == len(org.records) == ledger.height


def test_transient_failures_give_up_after_the_last_round(tmp_path: Path) -> None:
    rows = staged_partition(50, "3", accounts=5)
    key = rows["External_Id__c"][7]

    class AlwaysLocked(FakeBulkOrg):
        def _process(self, job: dict) -> None:
            self.lock_once.add(key)
            super()._process(job)

    org = AlwaysLocked()
    result = loader_for(org, tmp_path, max_resend_rounds=2).load(rows, "d1", "3")
    assert (result.failed, result.retried) == (1, 2)
    assert result.failed_by_reason == {"UNABLE_TO_LOCK_ROW": 1}
    assert org.uploaded_rows == 50 + 2


def test_a_second_run_of_the_same_drop_sends_nothing(tmp_path: Path) -> None:
    rows = staged_partition(300, "3", accounts=10)
    org = FakeBulkOrg()
    first = loader_for(org, tmp_path).load(rows, "d1", "3")
    second = loader_for(org, tmp_path).load(rows, "d1", "3")
    assert (first.uploaded, second.uploaded, org.uploaded_rows) == (300, 0, 300)
    assert second.succeeded == 300 and second.job_ids == first.job_ids


def test_a_crash_after_jobs_were_closed_resumes_by_collecting_them(tmp_path: Path) -> None:
    rows = staged_partition(1_000, "3", accounts=40)
    org = FakeBulkOrg()
    closed: list[str] = []

    def crash(event: str, job_id: str) -> None:
        if event == "closed":
            closed.append(job_id)
            if len(closed) == 4:
                raise RuntimeError("simulated crash")

    crashing = loader_for(org, tmp_path)
    crashing.loader._on_job_event = crash
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.load(rows, "d1", "3")
    sent_before = org.uploaded_rows
    assert 0 < sent_before < 1_000

    result = loader_for(org, tmp_path).load(rows, "d1", "3")
    assert result.succeeded == 1_000 and result.jobs_resumed >= 1
    assert org.uploaded_rows == 1_000  # nothing a finished job carried was sent twice
    assert result.uploaded == 1_000 - sent_before


def test_a_crash_before_upload_aborts_the_open_job_and_resends_its_rows(tmp_path: Path) -> None:
    rows = staged_partition(200, "3", accounts=10)
    org = FakeBulkOrg()

    def crash(event: str, job_id: str) -> None:
        if event == "created":
            raise RuntimeError("simulated crash")

    crashing = loader_for(org, tmp_path, jobs_in_flight=1, max_jobs_in_flight=1)
    crashing.loader._on_job_event = crash
    with pytest.raises(RuntimeError):
        crashing.load(rows, "d1", "3")
    result = loader_for(org, tmp_path).load(rows, "d1", "3")
    assert result.succeeded == 200 and org.uploaded_rows == 200
    assert org.jobs[result.job_ids[0]]["info"]["state"] == "Aborted"


def test_a_job_whose_abort_failed_is_aborted_by_the_next_load(tmp_path: Path) -> None:
    """The org went down between a job's upload and its close: the close and the abort both
    failed, the job stayed Open holding its rows (which a new job sent). Salesforce never
    processes it but keeps it for 24 h; the next load of the partition aborts it."""
    rows = staged_partition(100, "3", accounts=5)
    failing = 2 * RetryPolicy().max_attempts  # the close's tries, then the abort's

    class DownForTheFirstJobsEnd(FakeBulkOrg):
        def __call__(self, request: requests.PreparedRequest) -> FakeAnswer:
            nonlocal failing
            if request.method == "PATCH" and failing > 0:
                failing -= 1
                return FakeAnswer(503, {"message": "down"})
            return super().__call__(request)

    org = DownForTheFirstJobsEnd()
    first = loader_for(org, tmp_path, jobs_in_flight=1, max_jobs_in_flight=1).load(rows, "d1", "3")
    assert first.succeeded == 100
    (stranded,) = [key for key, job in org.jobs.items() if job["info"]["state"] == "Open"]
    assert org.jobs[stranded].get("csv")
    loader_for(org, tmp_path).load(rows, "d1", "3")
    assert org.jobs[stranded]["info"]["state"] == "Aborted"
    assert all(job["info"]["state"] in ("JobComplete", "Aborted") for job in org.jobs.values())


def test_limits_refuse_before_anything_is_sent(tmp_path: Path) -> None:
    org = FakeBulkOrg(batches_remaining=2)
    with pytest.raises(SalesforceLimitsError, match="DailyBulkApiBatches: needs 3, 2 remaining"):
        loader_for(org, tmp_path).load(staged_partition(300, "3", accounts=3), "d1", "3")
    assert not org.jobs


def test_progress_reports_confirmed_rows(tmp_path: Path) -> None:
    rows = staged_partition(500, "3", accounts=20)
    seen: list[tuple[int, int]] = []
    loader = loader_for(FakeBulkOrg(), tmp_path)
    loader.loader._progress = lambda now: seen.append((now.confirmed, now.total))
    loader.load(rows, "d1", "3")
    assert seen[0] == (0, 500) and seen[-1] == (500, 500)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_an_account_larger_than_a_job_is_sent_first(tmp_path: Path) -> None:
    # 350 rows of one account in the middle of the partition: a lane of 4 jobs of ≤100 rows that
    # must run one after another. Started first, it does not end the load alone.
    rows = staged_partition(700, "3", accounts=35)
    accounts = rows["Account.External_Id__c"].unique(maintain_order=True)
    big = accounts[len(accounts) // 2]
    rows = pl.concat(
        [
            rows.filter(pl.col("Account.External_Id__c") < big),
            staged_partition(350, "3", accounts=1, prefix="BIG").with_columns(
                pl.lit(big).alias("Account.External_Id__c")
            ),
            rows.filter(pl.col("Account.External_Id__c") > big),
        ]
    )
    org = FakeBulkOrg()
    result = loader_for(org, tmp_path, jobs_in_flight=1, max_jobs_in_flight=1).load(rows, "d1", "3")

    assert result.failed == 0
    first_jobs = [job["csv"].decode() for job in list(org.jobs.values())[:4]]
    assert all(f",{big}," in body or f'"{big}"' in body for body in first_jobs)
    assert all(big not in job["csv"].decode() for job in list(org.jobs.values())[4:])


def test_clean_upsert_jobs_download_no_results_and_counts_stay_exact(tmp_path: Path) -> None:
    """Issue 17: failedResults only where a job failed rows ("Get Job Info":
    numberRecordsFailed); created/updated from one COUNT() per load, kept in the checkpoint; no
    Id is downloaded."""
    org = FakeBulkOrg()
    first = staged_partition(300, "3", accounts=40, invalid_every=50)
    nameless = int((first["_invalid_kind"] == "missing_name").sum())
    result = loader_for(org, tmp_path).load(first, "d1", "3")
    assert nameless == 2
    assert (result.created, result.updated, result.failed) == (298, 0, 2)
    # Of the account-aligned jobs, those that failed a row are the only downloads.
    failing = [job for job in org.jobs.values() if job["info"]["numberRecordsFailed"]]
    assert len(result.job_ids) > len(failing) > 0
    assert org.downloads == ["failedResults"] * len(failing)
    assert (len(org.counts), org.queries) == (1, {})
    ledger = load_ledger(StateStore(tmp_path), "3")
    assert ledger.height == 298 and ledger["salesforce_id"].is_null().all()

    # A re-run of the drop reads the count from the checkpoint: same counts, no query.
    again = loader_for(org, tmp_path).load(first, "d1", "3")
    assert (again.created, again.updated, again.uploaded) == (298, 0, 0)
    assert len(org.counts) == 1

    # The next night: 100 changed rows and 50 new ones; the COUNT() counts only the new records.
    known = first["External_Id__c"].implode()
    changed = pl.concat(
        [
            staged_partition(300, "3", accounts=40, version="v2").head(100),
            staged_partition(350, "3", accounts=40).filter(~pl.col("External_Id__c").is_in(known)),
        ]
    ).sort("Account.External_Id__c", maintain_order=True)
    night = loader_for(org, tmp_path).load(changed, "d2", "3")
    assert (night.created, night.updated, night.failed) == (50, 100, 0)
    assert org.downloads == ["failedResults"] * len(failing)
    assert (len(org.counts), org.queries) == (2, {})


def test_a_jobs_lock_failures_are_resent_while_the_rounds_other_jobs_run(tmp_path: Path) -> None:
    rows = staged_partition(400, "3", accounts=8)  # four jobs of 100 rows, two accounts each
    keys = rows["External_Id__c"]
    locked, in_last_job = keys[0], keys[399]

    class SlowLastJob(FakeBulkOrg):
        """The round's last job runs until the first job's failure is resent (or 500 polls)."""

        def __init__(self) -> None:
            super().__init__(lock_once={locked})
            self.slow: dict | None = None
            self.polls = 0
            self.resent_while_last_job_ran = False

        def _process(self, job: dict) -> None:
            if self.slow is None and in_last_job.encode() in job["csv"]:
                self.slow = job
                job["info"]["state"] = "InProgress"
                return
            if locked.encode() in job["csv"] and "UNABLE" in self.failures_so_far():
                self.resent_while_last_job_ran = self.slow["info"]["state"] == "InProgress"
            super()._process(job)

        def failures_so_far(self) -> str:
            return "".join(
                job.get("results", {}).get("failedresults", "") for job in self.jobs.values()
            )

        def __call__(self, request: requests.PreparedRequest) -> FakeAnswer:
            if (
                request.method == "GET"
                and self.slow
                and self.slow["info"]["state"] != "JobComplete"
            ):
                self.polls += 1
                if self.resent_while_last_job_ran or self.polls > 500:
                    super()._process(self.slow)
            return super().__call__(request)

    org = SlowLastJob()
    result = loader_for(org, tmp_path, jobs_in_flight=4).load(rows, "d1", "3")
    assert (result.succeeded, result.failed, result.retried) == (400, 0, 1)
    # Sent again by its own lane, after its job: not after the round, once the slow job ended.
    assert org.resent_while_last_job_ran
