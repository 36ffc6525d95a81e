"""The Dagster UI as our users drive it, in headless Chromium.

`sync-assets ui` is started the way the README says, on a temporary Dagster home with the local
sandbox. The night is launched from the partition backfill dialog (all 10 partitions), then the test
reads what a person sees: the partition bar, the checks with their numbers (compared with
Salesforce's own COUNT()), the metadata plots; finally it re-materializes one partition from its
partition page and watches that run succeed. Screenshots go to ``$SYNC_UI_SCREENSHOTS`` (the README's
come from ``SYNC_UI_SCREENSHOTS=docs/images``) or to the test's temporary directory.
"""

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from simple_salesforce import Salesforce

from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.salesforce.transport import verified_session
from sync_assets.sandbox.runner import SandboxConnection
from sync_assets_tests.ui.services import (
    DagsterGraphQL,
    ServiceProcess,
    clean_env,
    free_port,
    require,
    wait_for,
)

# Eleven Dagster runs through the real daemon and queue: minutes, not seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = Path(os.environ.get("SYNC_CHROMIUM", "/usr/bin/chromium"))
# As root on a machine without network: no sandbox, and none of Chromium's background calls home.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCATION = "sync_assets"
REPOSITORY = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
SYNC_JOB = "opportunity_sync_job"
SUMMARY_JOB = "opportunity_summary_job"
DROP_ID = "2026-11-27"
ROWS = 3_000
ACCOUNTS = 200
RERUN_PARTITION = "3"
# Ten Dagster run processes (each imports Dagster and the code location) on two shared cores.
NIGHT_TIMEOUT = 480.0
UI_TIMEOUT_MS = 30_000


class DagsterUi:
    """A running `sync-assets ui`: its URL, GraphQL endpoint, directories and sandbox."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.landing = root / "landing"
        self.state = root / "state"
        self.sandbox_dir = root / "sandbox"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.gql = DagsterGraphQL(self.base_url)
        env = clean_env(
            SYNC_LANDING_DIR=str(self.landing),
            SYNC_STATE_DIR=str(self.state),
            SYNC_SANDBOX_DIR=str(self.sandbox_dir),
            DAGSTER_HOME=str(root / "dagster_home"),
        )
        command = shutil.which("sync-assets")
        assert command, "the sync-assets entry point is not installed (uv sync)"
        self.service = ServiceProcess(
            [command, "ui", "--port", str(self.port)], env, root, root / "ui.log"
        )

    def wait_until_ready(self) -> None:
        def ready() -> bool:
            self.service.assert_running()
            return self.gql.serving() and self.gql.location_loaded(LOCATION)

        wait_for("the Dagster UI and its code location", ready, timeout=180)

    def salesforce(self) -> Salesforce:
        connection = SandboxConnection.read(self.sandbox_dir)
        return Salesforce(
            instance_url=connection.instance_url,
            session_id=connection.access_token.get_secret_value(),
            session=verified_session(connection.ca_cert),
        )


@pytest.fixture
def dagster_ui(tmp_path: Path) -> Iterator[DagsterUi]:
    ui = DagsterUi(tmp_path)
    try:
        ui.wait_until_ready()
        yield ui
    finally:
        ui.service.stop()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("SYNC_UI_SCREENSHOTS") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def page() -> Iterator[Page]:
    require(CHROMIUM.exists(), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(UI_TIMEOUT_MS)
            # Assertions wait as long as actions: on two loaded cores the asset graph's check
            # statuses can take longer than Playwright's 5 s default to render.
            expect.set_options(timeout=UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def pause_automation(gql: DagsterGraphQL) -> None:
    """Stop the drop sensor and the nightly schedule, as an operator does before a manual night."""
    sensor = gql(
        """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
             ... on Sensor { sensorState { id selectorId } } } }""",
        s={**REPOSITORY, "sensorName": "opportunity_drop_sensor"},
    )["sensorOrError"]["sensorState"]
    stopped = gql(
        """mutation($id: String, $selector: String) { stopSensor(id: $id, jobSelectorId: $selector) {
             ... on StopSensorMutationResult { instigationState { status } } } }""",
        id=sensor["id"],
        selector=sensor["selectorId"],
    )
    assert stopped["stopSensor"]["instigationState"]["status"] == "STOPPED"
    # A tick the daemon started before the stop may still be reading the landing folder: were the
    # drop written under it, it would request runs of its own beside the backfill's.
    wait_for("the drop sensor's last tick to end", lambda: sensor_idle(gql), timeout=120)
    schedule = gql(
        """query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) {
             ... on Schedule { scheduleState { id selectorId } } } }""",
        s={**REPOSITORY, "scheduleName": "nightly_opportunity_sync"},
    )["scheduleOrError"]["scheduleState"]
    stopped = gql(
        """mutation($id: String, $selector: String) {
             stopRunningSchedule(id: $id, scheduleSelectorId: $selector) {
             ... on ScheduleStateResult { scheduleState { status } } } }""",
        id=schedule["id"],
        selector=schedule["selectorId"],
    )
    assert stopped["stopRunningSchedule"]["scheduleState"]["status"] == "STOPPED"


def sensor_idle(gql: DagsterGraphQL) -> bool:
    ticks = gql(
        """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
             ... on Sensor { sensorState { ticks(limit: 1) { status } } } } }""",
        s={**REPOSITORY, "sensorName": "opportunity_drop_sensor"},
    )["sensorOrError"]["sensorState"]["ticks"]
    return not ticks or ticks[0]["status"] != "STARTED"


def tags_of(run: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def finished_partition_runs(gql: DagsterGraphQL) -> list[dict[str, Any]] | None:
    runs = gql.runs(SYNC_JOB)
    failed = [run for run in runs if run["status"] in {"FAILURE", "CANCELED"}]
    assert not failed, f"partition runs failed: {failed}"
    done = [run for run in runs if run["status"] == "SUCCESS"]
    return done if len(done) >= 10 else None


def single_partition_run(gql: DagsterGraphQL, partition: str) -> dict[str, Any] | None:
    """The run of ``partition`` launched on its own (not by the backfill), once there is one."""
    runs = [
        run
        for run in gql.runs()
        if tags_of(run).get("dagster/partition") == partition
        and "dagster/backfill" not in tags_of(run)
    ]
    assert len(runs) <= 1, f"more than one run launched: {runs}"
    return runs[0] if runs else None


def summary_succeeded(gql: DagsterGraphQL) -> bool:
    statuses = {run["status"] for run in gql.runs(SUMMARY_JOB)}
    assert not statuses & {"FAILURE", "CANCELED"}, f"summary run failed: {statuses}"
    return "SUCCESS" in statuses


def number(text: str) -> int:
    return int(text.replace(",", ""))


def launch_night_from_backfill_dialog(page: Page, ui: DagsterUi, screenshots: Path) -> None:
    page.goto(f"{ui.base_url}/locations/{LOCATION}/jobs/{SYNC_JOB}")
    page.get_by_role("button", name=re.compile("Materialize all")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Launch runs to materialize 2 assets")).to_be_visible()
    dialog.get_by_role("button", name="All", exact=True).click()
    expect(dialog.get_by_text("10 partitions", exact=True)).to_be_visible()
    page.screenshot(path=screenshots / "backfill-dialog.png")
    dialog.get_by_role("button", name="Launch backfill").click()
    expect(page.get_by_text(re.compile(r"Created backfill \w+"))).to_be_visible()


def assert_partition_bar(page: Page, ui: DagsterUi, asset: str) -> None:
    page.goto(f"{ui.base_url}/assets/{asset}?view=partitions")
    for status in ("Materialized (10)", "Failed (0)", "Missing (0)", "Materializing (0)"):
        expect(page.get_by_text(status, exact=True)).to_be_visible()


def open_check(page: Page, ui: DagsterUi, asset: str, check: str) -> str:
    """Open a check's page; return its latest execution as the page shows it, once it passed."""
    page.goto(f"{ui.base_url}/assets/{asset}?view=checks")
    page.get_by_title(check, exact=True).first.click()
    expect(page).to_have_url(re.compile(f"checkDetail={check}"))
    expect(page.get_by_text("Passed", exact=True)).to_be_visible()
    return page.locator("body").inner_text()


def assert_checks_green_with_numbers(page: Page, ui: DagsterUi, screenshots: Path) -> None:
    salesforce = ui.salesforce()
    # Materialized from the UI, the assets run all their checks: the drift check
    # (salesforce_matches_what_was_sent) too, clean right after the load.
    for asset, count in (("opportunity_batches", 2), ("salesforce_opportunities", 4)):
        page.goto(f"{ui.base_url}/assets/{asset}?view=checks")
        expect(page.get_by_text(f"Checks ({count})")).to_be_visible()
        expect(page.get_by_text("Succeeded", exact=True)).to_have_count(count)

    shown = open_check(page, ui, "opportunity_batches", "rows_accounted_for")
    accounted = re.search(
        r"All ([\d,]+) rows of the drop in this partition are accounted for", shown
    )
    assert accounted and number(accounted.group(1)) > 0, shown

    shown = open_check(page, ui, "opportunity_batches", "reject_rate_below_threshold")
    rejected = re.search(r"([\d,]+) of ([\d,]+) rows rejected \(([\d.]+)%\)", shown)
    assert rejected and float(rejected.group(3)) <= 1.0, shown

    shown = open_check(page, ui, "salesforce_opportunities", "no_permanently_failed_rows")
    assert "No permanently failed rows." in shown

    shown = open_check(page, ui, "salesforce_opportunities", "salesforce_count_matches_ledger")
    counted = re.search(
        r"Salesforce holds ([\d,]+) opportunities for partition (\d), the ledger ([\d,]+)\.", shown
    )
    assert counted, shown
    in_salesforce, partition, in_ledger = counted.groups()
    soql = f"SELECT COUNT() FROM Opportunity WHERE Sync_Partition__c = '{partition}'"
    assert number(in_salesforce) == number(in_ledger) == salesforce.query(soql)["totalSize"] > 0
    for key in ("salesforce_count", "ledger_count"):
        expect(page.get_by_text(key, exact=True).first).to_be_visible()
    page.screenshot(path=screenshots / "check.png")


def assert_metadata_plots(page: Page, ui: DagsterUi, screenshots: Path) -> None:
    page.goto(f"{ui.base_url}/assets/salesforce_opportunities?view=overview")
    page.get_by_role("button", name="Plots").click()
    for series in ("sent", "created", "failed", "records_per_second", "api_calls"):
        expect(page.get_by_text(series, exact=True).first).to_be_visible()
    expect(page.locator("canvas").nth(9)).to_be_visible()  # one chart per numeric entry
    page.screenshot(path=screenshots / "plots.png")


def rematerialize_one_partition(page: Page, ui: DagsterUi, screenshots: Path) -> None:
    partition_page = (
        f"{ui.base_url}/assets/salesforce_opportunities?view=partitions&partition={RERUN_PARTITION}"
    )
    page.goto(partition_page)
    expect(page.get_by_text("View all historical events (1)")).to_be_visible()
    page.get_by_role("button", name=re.compile("Materialize")).first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    launch = dialog.get_by_role("button", name="Launch 1 run")
    expect(launch).to_be_enabled()
    launch.click()
    # The dialog closes once the run is submitted; the "Launched run" toast it leaves is gone
    # after a few seconds, too soon on a busy machine, so the run is found by its tags.
    expect(dialog).to_be_hidden(timeout=int(NIGHT_TIMEOUT * 1000))
    run = wait_for(
        "the run launched from the partition page",
        lambda: single_partition_run(ui.gql, RERUN_PARTITION),
        timeout=60.0,
        interval=1.0,
    )

    page.goto(f"{ui.base_url}/runs/{run['runId']}")
    expect(page.get_by_text(f"partition: {RERUN_PARTITION}")).to_be_visible()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible(
        timeout=int(NIGHT_TIMEOUT * 1000)
    )
    page.goto(partition_page)
    expect(page.get_by_text("View all historical events (2)")).to_be_visible()
    page.screenshot(path=screenshots / "partition-page.png")


def test_night_backfilled_and_one_partition_rerun_from_the_ui(
    page: Page, dagster_ui: DagsterUi, screenshots: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Automation off first, so the runs of this night are the ones launched from the dialog.
    pause_automation(dagster_ui.gql)
    generate_drop(
        dagster_ui.landing,
        GenerateOptions(drop_id=DROP_ID, rows=ROWS, accounts=ACCOUNTS, bad_fraction=0.003),
    )

    launch_night_from_backfill_dialog(page, dagster_ui, screenshots)
    runs = wait_for(
        "the 10 partition runs of the backfill",
        lambda: finished_partition_runs(dagster_ui.gql),
        timeout=NIGHT_TIMEOUT,
        interval=3.0,
    )
    assert sorted(tags_of(run)["dagster/partition"] for run in runs) == [str(k) for k in range(10)]
    assert all("dagster/backfill" in tags_of(run) for run in runs), "runs not from the backfill"

    assert_partition_bar(page, dagster_ui, "opportunity_batches")
    assert_partition_bar(page, dagster_ui, "salesforce_opportunities")
    assert_checks_green_with_numbers(page, dagster_ui, screenshots)
    assert_metadata_plots(page, dagster_ui, screenshots)

    total_before = dagster_ui.salesforce().query("SELECT COUNT() FROM Opportunity")["totalSize"]
    rematerialize_one_partition(page, dagster_ui, screenshots)
    total_after = dagster_ui.salesforce().query("SELECT COUNT() FROM Opportunity")["totalSize"]
    assert total_after == total_before, "re-running a partition must not create opportunities"

    # The summary sensor sums the night up once all 10 partitions are in.
    wait_for(
        "the night's summary run",
        lambda: summary_succeeded(dagster_ui.gql),
        timeout=NIGHT_TIMEOUT,
        interval=3.0,
    )
    page.goto(f"{dagster_ui.base_url}/asset-groups/opportunity_sync")
    # opportunity_batches 2 checks; salesforce_opportunities 4 (the ledger identity and the drift
    # check too); the summary 1.
    expect(page.get_by_text("2 / 2 Passed")).to_have_count(1)
    expect(page.get_by_text("4 / 4 Passed")).to_have_count(1)
    expect(page.get_by_text("1 / 1 Passed")).to_have_count(1)
    expect(page.get_by_text("100% filled")).to_have_count(2)
    page.screenshot(path=screenshots / "asset-graph.png")
    assert errors == [], f"uncaught errors in the UI: {errors}"
