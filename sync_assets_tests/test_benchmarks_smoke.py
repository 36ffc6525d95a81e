"""The benchmark scripts in their smoke size: every scenario runs and lands in both report files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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

    # Scenario 10 alone: every process of a small `sync-assets demo` night, each kind's peak.
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
    assert with_memory["drift"] == drift
    assert "## 10. A whole night's memory" in (out / "BENCHMARKS.md").read_text()
    assert any("demo night" in target["name"] for target in with_memory["targets"])
