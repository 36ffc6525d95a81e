import dataclasses
from typing import Any

import polars as pl
import pytest

from sync_assets.drops import row_hash_memo, staging
from sync_assets.drops.contract import default_contract
from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.drops.row_hash_memo import MEMO_SCHEMA, SOURCE_HASH, load_memo
from sync_assets.drops.staging import (
    StagedPartition,
    nothing_to_load,
    stage_drop,
    stage_partitions,
)
from sync_assets.state.columns import ROW_HASH
from sync_assets.state.layout import PARTITION_KEYS, row_hash_memo_path
from sync_assets.state.ledger import advance_ledger, mark_ledger_rows_stale
from sync_assets.storage import StateStore

ROWS = 2_000
BAD = 0.04
VALID = ROWS - round(ROWS * BAD)


@pytest.fixture
def landing(tmp_path) -> StateStore:
    store = StateStore(tmp_path / "landing")
    generate_drop(store, GenerateOptions(drop_id="n1", rows=ROWS, accounts=40, bad_fraction=BAD))
    return store


@pytest.fixture
def state(tmp_path) -> StateStore:
    return StateStore(tmp_path / "state")


@pytest.fixture
def converted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows each call turned into Salesforce text."""
    heights: list[int] = []
    outbound = staging._Stager._outbound

    def counting(self: staging._Stager, valid: pl.DataFrame) -> pl.DataFrame:
        heights.append(valid.height)
        return outbound(self, valid)

    monkeypatch.setattr(staging._Stager, "_outbound", counting)
    return heights


@pytest.fixture
def looked_up_by_key(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Per staging, how many ledger rows no hash proved home (looked up by key instead)."""
    heights: list[int] = []
    gone_and_moved = staging._Stager._gone_and_moved

    def counting(self: staging._Stager, *args: Any) -> tuple[pl.DataFrame, pl.DataFrame]:
        heights.append(args[-1].height)
        return gone_and_moved(self, *args)

    monkeypatch.setattr(staging._Stager, "_gone_and_moved", counting)
    return heights


def confirm_all(state: StateStore, staged: dict[str, StagedPartition], drop_id: str) -> None:
    for key, part in staged.items():
        rows = state.read_parquet(part.to_send)
        confirmed = rows.select(
            pl.col("External_Id__c").alias("external_id"),
            pl.col(ROW_HASH).alias("row_hash"),
            pl.lit(None, pl.String).alias("salesforce_id"),
        )
        advance_ledger(state, key, confirmed, drop_id)


def counts(staged: dict[str, StagedPartition]) -> dict[str, int]:
    fields = ["unchanged", "new", "changed"]
    return {name: sum(getattr(part.counts, name) for part in staged.values()) for name in fields}


def test_an_unchanged_drop_is_diffed_without_converting_a_row(
    landing: StateStore, state: StateStore, converted: list[int]
) -> None:
    confirm_all(state, stage_drop(landing, state, "n1"), "n1")
    assert sum(converted) == VALID
    converted.clear()
    again = stage_drop(landing, state, "n1")
    assert counts(again) == {"unchanged": VALID, "new": 0, "changed": 0}
    assert sum(converted) == 0


def test_a_partition_staged_unchanged_has_nothing_to_load(
    landing: StateStore, state: StateStore
) -> None:
    """What the runner goes by to run unchanged partitions' checks a core's worth at a time."""
    contract = default_contract()

    def quiet() -> list[str]:
        return [key for key in PARTITION_KEYS if nothing_to_load(state, "n1", key, contract)]

    staged = stage_drop(landing, state, "n1")
    assert quiet() == []
    confirm_all(state, staged, "n1")
    assert quiet() == []  # the ledgers moved on: that staging is stale, not empty
    stage_drop(landing, state, "n1")
    assert quiet() == PARTITION_KEYS


def test_only_changed_and_new_rows_are_converted(
    landing: StateStore, state: StateStore, converted: list[int]
) -> None:
    confirm_all(state, stage_drop(landing, state, "n1"), "n1")
    generate_drop(
        landing,
        GenerateOptions(drop_id="n2", based_on="n1", accounts=40, changed=0.1, new=0.02, seed=3),
    )
    converted.clear()
    diffed = counts(stage_drop(landing, state, "n2"))
    assert diffed["changed"] > 0 and diffed["new"] > 0
    assert sum(converted) == diffed["changed"] + diffed["new"]
    # The same drop staged from scratch (no memo) finds the same rows to send.
    for key in PARTITION_KEYS:
        state.delete(row_hash_memo_path(key))
    assert counts(stage_drop(landing, state, "n2")) == diffed


def test_rows_the_ledger_holds_otherwise_are_converted_and_sent(
    landing: StateStore, state: StateStore, converted: list[int], looked_up_by_key: list[int]
) -> None:
    """A row that failed (ledger not advanced) or drifted (marked stale) has an unchanged source.

    No memo'd hash proves its ledger row home: that row is looked up by key, and found.
    """
    first = stage_drop(landing, state, "n1")
    confirm_all(state, first, "n1")
    stale = state.read_parquet(first["3"].to_send).get_column("External_Id__c").head(4)
    mark_ledger_rows_stale(state, "3", stale.rename("external_id"))
    converted.clear()
    again = stage_drop(landing, state, "n1")
    assert counts(again) == {"unchanged": VALID - 4, "new": 0, "changed": 4}
    assert sum(converted) == 4
    resent = state.read_parquet(again["3"].to_send)
    assert resent.get_column("External_Id__c").sort().to_list() == stale.sort().to_list()
    assert looked_up_by_key == [0, 4]
    assert sum(part.counts.deleted + part.counts.moved_out for part in again.values()) == 0


def test_an_unchanged_drop_proves_every_ledger_row_home_by_its_hash(
    landing: StateStore, state: StateStore, looked_up_by_key: list[int]
) -> None:
    confirm_all(state, stage_drop(landing, state, "n1"), "n1")
    again = stage_drop(landing, state, "n1")
    assert looked_up_by_key == [0, 0]  # the first night has no ledger; then all are proven
    assert sum(part.counts.deleted + part.counts.moved_out for part in again.values()) == 0


def test_a_memo_of_another_contract_or_conversion_is_not_used(
    landing: StateStore, state: StateStore, converted: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    contract = default_contract()
    confirm_all(state, stage_drop(landing, state, "n1", contract), "n1")
    other = dataclasses.replace(contract, fingerprint=contract.fingerprint + "-changed")
    converted.clear()
    assert counts(stage_drop(landing, state, "n1", other))["unchanged"] == VALID
    assert sum(converted) == VALID
    monkeypatch.setattr(row_hash_memo, "_conversion_code", lambda: b"another version")
    converted.clear()
    assert counts(stage_drop(landing, state, "n1", other))["unchanged"] == VALID
    assert sum(converted) == VALID


def test_a_wrong_or_unreadable_memo_only_costs_conversions(
    landing: StateStore, state: StateStore, converted: list[int]
) -> None:
    confirm_all(state, stage_drop(landing, state, "n1"), "n1")
    memo = load_memo(state, "5")
    state.write_parquet(
        row_hash_memo_path("5"), memo.with_columns(pl.col(ROW_HASH) + 1)
    )  # every entry wrong
    state.write_bytes(row_hash_memo_path("6"), b"not parquet")
    state.write_parquet(row_hash_memo_path("7"), memo.rename({SOURCE_HASH: "other"}))
    converted.clear()
    again = stage_drop(landing, state, "n1")
    assert counts(again) == {"unchanged": VALID, "new": 0, "changed": 0}
    assert sum(converted) == sum(again[key].counts.unchanged for key in ["5", "6", "7"])
    assert load_memo(state, "6").schema == MEMO_SCHEMA  # rewritten by the staging
    assert load_memo(state, "6").height == again["6"].counts.unchanged


def test_a_source_hash_found_twice_is_not_trusted(state: StateStore) -> None:
    memo = pl.DataFrame({SOURCE_HASH: [1, 1, 2], ROW_HASH: [10, 11, 20]}, schema=MEMO_SCHEMA)
    state.write_parquet(row_hash_memo_path("0"), memo)
    assert load_memo(state, "0").to_dicts() == [{SOURCE_HASH: 2, ROW_HASH: 20}]


def test_a_plans_staging_leaves_the_states_memo_alone(
    landing: StateStore, state: StateStore, tmp_path
) -> None:
    confirm_all(state, stage_drop(landing, state, "n1"), "n1")
    before = {key: state.version(row_hash_memo_path(key)) for key in PARTITION_KEYS}
    scratch = StateStore(tmp_path / "scratch")
    stage_partitions(landing, state, "n1", PARTITION_KEYS, output=scratch)
    assert {key: state.version(row_hash_memo_path(key)) for key in PARTITION_KEYS} == before
    assert scratch.exists(row_hash_memo_path("0"))


def test_a_memo_written_a_slice_at_a_time_is_read_back_whole(
    landing: StateStore, state: StateStore, converted: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition of more than one slice writes its memo a row group per slice (20M-row nights)."""
    monkeypatch.setattr(staging, "ROWS_PER_SLICE", 70)
    confirm_all(state, stage_drop(landing, state, "n1"), "n1")
    memo = load_memo(state, "2")
    assert memo.schema == MEMO_SCHEMA
    assert memo.height == state.read_parquet(row_hash_memo_path("2")).height > 70
    converted.clear()
    assert counts(stage_drop(landing, state, "n1")) == {"unchanged": VALID, "new": 0, "changed": 0}
    assert sum(converted) == 0
