"""The benchmark scripts in their smoke size: every scenario runs and lands in both report files."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.limited_link import LOADER_VARIANTS

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parent.parent
SCENARIO_HEADINGS = [
    "## 1. The floor",
    "## 2. Our sync, sandbox unthrottled",
    "## 3. The peer: simple-salesforce",
    "## 4. Salesforce-bound",
    "## 5. Locks",
    "## 6. Nights after the first",
    "## 7. Scale",
]
SCENARIO_KEYS = ["floor", "sync", "peer", "bound", "locks", "following", "scale_points"]


def run_benchmarks(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`benchmarks.run_all` at smoke scale, writing into `tmp_path`, with no org configured."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SALESFORCE_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run_all",
            "--scale",
            "smoke",
            *options,
            "--out-dir",
            str(tmp_path / "docs"),
            "--work",
            str(tmp_path / "work"),
            "--drop-cache",
            str(tmp_path / "drops"),
        ],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.timeout(1200)
def test_smoke_run_writes_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    completed = run_benchmarks(tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]

    report = (out / "BENCHMARKS.md").read_text()
    for heading in SCENARIO_HEADINGS:
        assert heading in report
    assert "## Targets" in report

    figures = json.loads((out / "benchmarks.json").read_text())
    assert figures["scale"]["name"] == "smoke"
    for key in SCENARIO_KEYS:
        assert figures[key], key
    assert figures["production"] is None

    # Scenario 8 alone, added to the saved figures without measuring the others again.
    only = run_benchmarks(tmp_path, "--only", "production")
    assert only.returncode == 0, only.stdout[-3000:] + only.stderr[-5000:]
    merged = json.loads((out / "benchmarks.json").read_text())
    assert merged["production"]["automation"]["api"]["calls_seen_by_org"] > 0
    # The next night sends every row again, its polls timed by the first night's pace.
    assert merged["production"]["automation_next"]["api"]["sent"] > 0
    assert {key: merged[key] for key in SCENARIO_KEYS} == {
        key: figures[key] for key in SCENARIO_KEYS
    }
    assert "## 8. A production org" in (out / "BENCHMARKS.md").read_text()

    # Scenario 9 alone, likewise: the drift found is exactly what was edited and deleted.
    alone = run_benchmarks(tmp_path, "--only", "drift")
    assert alone.returncode == 0, alone.stdout[-3000:] + alone.stderr[-5000:]
    with_drift = json.loads((out / "benchmarks.json").read_text())
    drift = with_drift["drift"]
    assert sum(check["drifted"] for check in drift["full"]) == 250  # 200 edited + 50 deleted
    # queryAll: the deleted records are read too (who deleted them).
    sent = sum(run["sent"] for run in drift["load"]["runs"])
    assert sum(check["read"] for check in drift["full"]) == sent
    assert with_drift["production"] == merged["production"]
    assert "## 9. Drift: the org read back" in (out / "BENCHMARKS.md").read_text()

    # Scenario 10 alone, likewise: every section before it the same, byte for byte.
    report_before = (out / "BENCHMARKS.md").read_text()
    linked = run_benchmarks(tmp_path, "--only", "link")
    assert linked.returncode == 0, linked.stdout[-3000:] + linked.stderr[-5000:]
    with_link = json.loads((out / "benchmarks.json").read_text())
    for key in [*SCENARIO_KEYS, "production", "drift"]:
        assert with_link[key] == with_drift[key], key
    report_after = (out / "BENCHMARKS.md").read_text()
    assert _sections(report_after, "## 10. A limited link") == _sections(
        report_before, "## When each scenario ran"
    )
    _check_limited_link(with_link["link"])

    # Scenario 11 alone: every process of a small `sync-assets demo` night, each kind's peak.
    memory = run_benchmarks(tmp_path, "--only", "night_memory")
    assert memory.returncode == 0, memory.stdout[-3000:] + memory.stderr[-5000:]
    with_memory = json.loads((out / "benchmarks.json").read_text())
    night = with_memory["night_memory"]
    assert night["rows"] == 20_000 and night["exit_code"] == 0
    assert night["ledger_rows"] == night["source"] - night["rejected"] > 0
    kinds = {kind["kind"]: kind for kind in night["kinds"]}
    assert {"command", "sandbox", "fork server", "run worker"} <= set(kinds)
    assert kinds["run worker"]["processes"] >= 10  # a run per partition
    for kind in ("command", "sandbox", "fork server", "run worker"):
        assert 20 < kinds[kind]["peak_rss_mb"] < night["ceiling_mb"], kind
    assert with_memory["drift"] == drift and with_memory["link"] == with_link["link"]
    assert "## 11. A whole night's memory" in (out / "BENCHMARKS.md").read_text()
    assert any("demo night" in target["name"] for target in with_memory["targets"])

    # A full run again (sections 1-7 reused from the saved figures): what was measured alone stays.
    again = run_benchmarks(tmp_path, "--resume")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]
    kept = json.loads((out / "benchmarks.json").read_text())
    for key in ("production", "drift", "link", "night_memory"):
        assert kept[key] == with_memory[key], key
    assert sum("--only" in name for name in kept["steps"]) == 4
    assert "## 11. A whole night's memory" in (out / "BENCHMARKS.md").read_text()


def _sections(report: str, until: str) -> str:
    return report[report.index("## 1. ") : report.index(until)]


def _check_limited_link(link: dict[str, Any]) -> None:
    calibration = link["calibration"]
    # The proxy is never faster than its model (a token bucket one 64 KiB chunk deep).
    assert calibration["upload_seconds"] >= calibration["upload_model_seconds"] - 0.01
    assert calibration["round_trip_ms"] >= link["link"]["rtt_ms"]
    variants = link["variants"]
    assert [nights["variant"]["name"] for nights in variants] == [v.name for v in LOADER_VARIANTS]
    for nights in variants:
        first_sent = sum(run["sent"] for run in nights["first"]["night"]["runs"])
        changed_sent = sum(run["sent"] for run in nights["changed"]["night"]["runs"])
        assert 0 < changed_sent < first_sent
        for night in (nights["first"], nights["changed"]):
            api_calls = sum(run["api_calls"] for run in night["night"]["runs"])
            use = night["link"]
            # Our loader's calls are some of the requests the sandbox answered (checks ask too).
            assert 0 < api_calls <= use["http_requests"]
            # What crossed the link holds the bodies the sandbox counted, plus TLS and headers.
            assert 0 < use["request_body_bytes"] < use["traffic"]["bytes_up"]
            assert 0 < use["response_body_bytes"] < use["traffic"]["bytes_down"]
    # Plain, then gzip uploads (issue 17 item 2): the same rows for under a third of the bytes.
    plain, gzipped = variants[0], variants[-1]
    for night in ("first", "changed"):
        assert sum(run["sent"] for run in gzipped[night]["night"]["runs"]) == sum(
            run["sent"] for run in plain[night]["night"]["runs"]
        )
        plain_up = plain[night]["link"]["request_body_bytes"]
        assert gzipped[night]["link"]["request_body_bytes"] < 0.3 * plain_up
    # The control: the same nights with no link sent the same rows.
    for night in ("first", "changed"):
        assert sum(run["sent"] for run in link["direct"][night]["runs"]) == sum(
            run["sent"] for run in variants[0][night]["night"]["runs"]
        )
    peer = link["peer"]
    first_sent = sum(run["sent"] for run in variants[0]["first"]["night"]["runs"])
    assert peer["first"]["run"]["processed"] == peer["first"]["rows"] == first_sent
    # It keeps no state: the changed night sends the whole drop again.
    assert peer["changed"]["run"]["processed"] == peer["changed"]["rows"] == first_sent
    # The peer's uploads went through the link: its CSV, plus TLS and headers.
    for night in (peer["first"], peer["changed"]):
        assert night["link"]["traffic"]["bytes_up"] >= night["csv_mb"] * 1e6
