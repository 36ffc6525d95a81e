import datetime as dt

import polars as pl
import pytest

from sync_assets.drops import staging
from sync_assets.drops.contract import default_contract
from sync_assets.drops.generate import GenerateOptions, generate_drop
from sync_assets.drops.outbound import NULL_VALUE
from sync_assets.drops.reader import open_drop
from sync_assets.drops.shards import shard_of
from sync_assets.drops.staging import (
    StagedPartition,
    StagingCounts,
    load_staged,
    stage_drop,
    stage_partition,
    stage_partition_of_night,
)
from sync_assets.state.layout import PARTITION_KEYS
from sync_assets.state.ledger import advance_ledger, load_ledger
from sync_assets.storage import StateStore
from sync_assets_tests.drops.helpers import valid_rows, write_drop

ROWS = 3_000
BAD = 0.04


@pytest.fixture
def landing(tmp_path) -> StateStore:
    store = StateStore(tmp_path / "landing")
    generate_drop(store, GenerateOptions(drop_id="n1", rows=ROWS, accounts=60, bad_fraction=BAD))
    return store


@pytest.fixture
def state(tmp_path) -> StateStore:
    return StateStore(tmp_path / "state")


def sent(state: StateStore, staged: dict[str, StagedPartition]) -> pl.DataFrame:
    return pl.concat([state.read_parquet(part.to_send) for part in staged.values()])


def confirm_all(state: StateStore, staged: dict[str, StagedPartition], drop_id: str) -> None:
    for key, part in staged.items():
        rows = state.read_parquet(part.to_send)
        advance_ledger(state, key, confirmed(rows), drop_id)


def confirmed(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select(
        pl.col("External_Id__c").alias("external_id"),
        pl.col("_row_hash").alias("row_hash"),
        pl.concat_str(pl.lit("006"), pl.col("External_Id__c")).alias("salesforce_id"),
    )


def totals(staged: dict[str, StagedPartition]) -> dict[str, int]:
    fields = ["source", "rejected", "unchanged", "new", "changed", "deleted"]
    return {name: sum(getattr(part.counts, name) for part in staged.values()) for name in fields}


def test_every_source_row_is_counted_once(landing: StateStore, state: StateStore) -> None:
    staged = stage_drop(landing, state, "n1")
    assert list(staged) == PARTITION_KEYS
    assert totals(staged) == {
        "source": ROWS,
        "rejected": round(ROWS * BAD),
        "unchanged": 0,
        "new": ROWS - round(ROWS * BAD),
        "changed": 0,
        "deleted": 0,
    }
    for key, part in staged.items():
        assert part.folder == f"staging/n1/partition={key}"
        assert load_staged(state, "n1", key) == part
        rejects = state.read_parquet(part.rejects)
        assert rejects.height == part.counts.rejected
        assert rejects.group_by("reason_code").len().height == len(part.counts.rejected_by_reason)
    by_reason: dict[str, int] = {}
    for part in staged.values():
        for code, count in part.counts.rejected_by_reason.items():
            by_reason[code] = by_reason.get(code, 0) + count
    assert by_reason == {
        "account_key_missing": 12,
        "amount_too_small": 12,
        "close_date_missing": 12,
        "close_date_too_small": 12,
        "duplicate_key": 12,
        "name_missing": 12,
        "name_too_long": 12,
        "next_step_too_long": 12,
        "probability_too_large": 12,
        "stage_not_in_picklist": 12,
    }
    assert load_staged(state, "n2", "0") is None


def test_counts_refuse_to_lose_a_row() -> None:
    with pytest.raises(ValueError, match="source"):
        StagingCounts(
            drop_id="d",
            partition="0",
            source=10,
            rejected=1,
            rejected_by_reason={"x": 1},
            unchanged=3,
            new=5,
            changed=0,
            deleted=0,
        )


def test_rows_to_send_are_bulk_csv_ready(landing: StateStore, state: StateStore) -> None:
    staged = stage_drop(landing, state, "n1")
    fields = default_contract().salesforce_fields
    source_positions = (
        open_drop(landing, "n1")
        .scan()
        .with_row_index("position")
        .filter(pl.col("opportunity_key").is_unique())
        .select("opportunity_key", "position")
        .collect()
    )
    for key, part in staged.items():
        rows = state.read_parquet(part.to_send)
        assert rows.columns == [*fields, "_row_hash", "_change"]
        assert all(rows.schema[name] == pl.String for name in fields)
        assert (rows["Sync_Partition__c"] == key).all()
        accounts = rows["Account.External_Id__c"].unique().to_list()
        assert {shard_of(account) for account in accounts} <= {key}
        # Grouped by account (the order jobs are cut in); within an account, as the drop had them.
        assert rows["Account.External_Id__c"].is_sorted()
        positions = rows.join(
            source_positions,
            left_on="External_Id__c",
            right_on="opportunity_key",
            maintain_order="left",
        )
        in_drop_order = positions.group_by("Account.External_Id__c").agg(
            (pl.col("position").diff().fill_null(1) > 0).all()
        )
        assert in_drop_order["position"].all()
        assert rows["CloseDate"].str.contains(r"^\d{4}-\d{2}-\d{2}$").all()
        assert rows["Amount"].str.contains(r"^(\d+\.\d{2}|#N/A)$").all()
        assert rows["Probability"].str.contains(r"^(\d{1,3}|#N/A)$").all()
        for optional in ["Amount", "Probability", "LeadSource", "Type", "NextStep", "Description"]:
            assert rows[optional].null_count() == 0
    every = sent(state, staged)
    assert (every["Description"] == NULL_VALUE).any() and (every["Amount"] == NULL_VALUE).any()


def test_nasty_strings_go_out_as_they_came_in(landing: StateStore, state: StateStore) -> None:
    staged = stage_drop(landing, state, "n1")
    source = open_drop(landing, "n1").scan().collect()
    unique = source.filter(~pl.col("opportunity_key").is_duplicated())
    joined = sent(state, staged).join(
        unique, left_on="External_Id__c", right_on="opportunity_key", how="inner"
    )
    assert joined.height == ROWS - round(ROWS * BAD) - 12  # less the winners of duplicates
    for source_column, field in [
        ("name", "Name"),
        ("description", "Description"),
        ("next_step", "NextStep"),
        ("stage", "StageName"),
    ]:
        expected = joined[source_column].fill_null(NULL_VALUE).replace("", NULL_VALUE)
        assert (joined[field] == expected).all(), field
    descriptions = joined["Description"]
    for needle in ["\r\n", "\n", '"', ",", "\t", "🚀", "日本語", "\u200b", "e\u0301"]:
        assert descriptions.str.contains(needle, literal=True).any(), needle


def test_unchanged_drop_sends_nothing(landing: StateStore, state: StateStore) -> None:
    confirm_all(state, stage_drop(landing, state, "n1"), "n1")
    again = stage_drop(landing, state, "n1")
    assert totals(again)["new"] == totals(again)["changed"] == 0
    assert totals(again)["unchanged"] == ROWS - round(ROWS * BAD)
    assert sent(state, again).is_empty()


def test_rows_that_failed_are_sent_again(landing: StateStore, state: StateStore) -> None:
    first = stage_drop(landing, state, "n1")
    rows = state.read_parquet(first["4"].to_send)
    succeeded = rows[: rows.height // 2]
    advance_ledger(state, "4", confirmed(succeeded), "n1")
    again = stage_drop(landing, state, "n1")
    retried = state.read_parquet(again["4"].to_send)
    assert (
        retried["External_Id__c"].to_list() == rows[rows.height // 2 :]["External_Id__c"].to_list()
    )
    assert (retried["_change"] == "new").all()
    assert again["4"].counts.unchanged == succeeded.height


def test_a_stale_ledger_hash_means_changed(landing: StateStore, state: StateStore) -> None:
    first = stage_drop(landing, state, "n1")
    rows = state.read_parquet(first["7"].to_send)
    stale = confirmed(rows).with_columns(
        pl.when(pl.int_range(pl.len()) < 5)
        .then(pl.lit(1, pl.UInt64))
        .otherwise("row_hash")
        .alias("row_hash")
    )
    advance_ledger(state, "7", stale, "n0")
    again = stage_drop(landing, state, "n1")
    assert again["7"].counts.changed == 5
    assert state.read_parquet(again["7"].to_send)["_change"].to_list() == ["changed"] * 5


def test_next_night_new_changed_deleted(landing: StateStore, state: StateStore) -> None:
    confirm_all(state, stage_drop(landing, state, "n1"), "n1")
    generate_drop(
        landing,
        GenerateOptions(
            drop_id="n2", based_on="n1", accounts=60, changed=0.1, new=0.02, deleted=0.01, seed=4
        ),
    )
    staged = stage_drop(landing, state, "n2")
    counts = totals(staged)
    assert counts["source"] == ROWS - 30 + 60
    # 60 new keys; a changed losing duplicate can win now, under another account's partition.
    assert 60 <= counts["new"] <= 62
    assert 270 <= counts["changed"] <= 300  # 300 changed, minus those that are rejected rows
    assert 25 <= counts["deleted"] <= 30  # 30 deleted, minus those never synced (rejected)
    previous = open_drop(landing, "n1").scan().collect()
    current = open_drop(landing, "n2").scan().collect()
    deleted = pl.concat([state.read_parquet(part.deleted) for part in staged.values()])
    gone = previous.join(current, on="opportunity_key", how="anti")["opportunity_key"]
    assert set(deleted["external_id"]) <= set(gone)
    assert deleted.columns == ["external_id", "row_hash", "salesforce_id", "drop_id"]
    ledger = pl.concat([load_ledger(state, key) for key in PARTITION_KEYS])
    assert set(deleted["external_id"]) <= set(ledger["external_id"])  # reported, not deleted


def test_a_cleared_value_is_sent_as_null(tmp_path, state: StateStore) -> None:
    landing = StateStore(tmp_path / "small")
    rows = valid_rows(20, accounts=3).with_columns(pl.lit("note").alias("description"))
    write_drop(landing, "a", [rows])
    confirm_all(state, stage_drop(landing, state, "a"), "a")
    write_drop(landing, "b", [rows.with_columns(rows["description"].scatter(0, None))])
    staged = stage_drop(landing, state, "b")
    out = sent(state, staged)
    assert out["External_Id__c"].to_list() == [rows["opportunity_key"][0]]
    assert out["Description"].to_list() == [NULL_VALUE]
    assert out["_change"].to_list() == ["changed"]


def test_one_partition_alone_matches_all_at_once(landing: StateStore, tmp_path) -> None:
    everything = stage_drop(landing, StateStore(tmp_path / "all"), "n1")
    alone_state = StateStore(tmp_path / "alone")
    for key in ["0", "5"]:
        alone = stage_partition(landing, alone_state, "n1", key)
        assert alone.counts == everything[key].counts
        for name in ["to_send", "rejects", "deleted"]:
            expected = StateStore(tmp_path / "all").read_parquet(getattr(everything[key], name))
            assert alone_state.read_parquet(getattr(alone, name)).equals(expected), name


def test_csv_drop_stages_like_the_parquet_drop(landing: StateStore, tmp_path) -> None:
    options = GenerateOptions(
        drop_id="c1", rows=ROWS, accounts=60, bad_fraction=BAD, file_format="csv"
    )
    generate_drop(landing, options)
    from_parquet = stage_drop(landing, StateStore(tmp_path / "p"), "n1")
    from_csv = stage_drop(landing, StateStore(tmp_path / "c"), "c1")
    assert sent(StateStore(tmp_path / "p"), from_parquet).equals(
        sent(StateStore(tmp_path / "c"), from_csv)
    )
    rejected = {key: part.counts.rejected_by_reason for key, part in from_csv.items()}
    assert sum(rejected["0"].values()) >= 12  # rows without an account key count in partition 0
    assert any("close_date_invalid" in reasons for reasons in rejected.values())


def test_duplicates_across_partitions_count_once(tmp_path, state: StateStore) -> None:
    landing = StateStore(tmp_path / "dups")
    rows = valid_rows(2, accounts=1).with_columns(
        pl.Series("opportunity_key", ["K", "K"]),
        pl.Series("account_key", ["ACC-000000", "ACC-000002"]),  # shards 9 and 3
        pl.Series(
            "updated_at",
            [dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)],
        ).dt.cast_time_unit("us"),
    )
    write_drop(landing, "d", [rows])
    staged = stage_drop(landing, state, "d")
    assert staged["9"].counts.new == 1
    assert staged["3"].counts.rejected_by_reason == {"duplicate_key": 1}
    assert totals(staged)["source"] == 2


def test_staging_into_an_object_store(landing: StateStore, tmp_path) -> None:
    state = StateStore(f"memory://staging-{tmp_path.name}")
    staged = stage_drop(landing, state, "n1")
    assert totals(staged)["source"] == ROWS
    assert state.read_parquet(staged["1"].to_send).height == staged["1"].counts.new


def test_the_nights_first_partition_stages_them_all(landing: StateStore, tmp_path) -> None:
    state = StateStore(tmp_path / "night")
    first, staged_now = stage_partition_of_night(landing, state, "n1", "3")
    assert staged_now == PARTITION_KEYS
    for key in PARTITION_KEYS:
        again, staged_again = stage_partition_of_night(landing, state, "n1", key)
        assert staged_again == []
    assert again.counts == load_staged(state, "n1", "9").counts
    everything = stage_drop(landing, StateStore(tmp_path / "all"), "n1")
    assert first.counts == everything["3"].counts
    assert state.read_parquet(first.to_send).equals(
        StateStore(tmp_path / "all").read_parquet(everything["3"].to_send)
    )


def test_a_changed_ledger_makes_only_that_partition_stage_again(
    landing: StateStore, tmp_path
) -> None:
    state = StateStore(tmp_path / "night")
    stage_partition_of_night(landing, state, "n1", "0")
    five = load_staged(state, "n1", "5")
    assert five is not None and five.counts.new > 0
    seven_before = state.read_bytes(load_staged(state, "n1", "7").to_send)
    # Partition 5's load confirmed its rows: its staging is stale, partition 7's is not.
    advance_ledger(state, "5", confirmed(state.read_parquet(five.to_send)), "n1")
    restaged, staged_now = stage_partition_of_night(landing, state, "n1", "5")
    assert staged_now == ["5"]
    assert restaged.counts.to_send == 0
    assert restaged.counts.unchanged == five.counts.new
    _, staged_now = stage_partition_of_night(landing, state, "n1", "7")
    assert staged_now == []
    assert state.read_bytes(load_staged(state, "n1", "7").to_send) == seven_before


def test_a_large_drop_is_staged_a_few_partitions_per_pass(
    landing: StateStore, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two partitions' worth of rows per pass: the run's own partition and the first unstaged one.
    monkeypatch.setattr(staging, "ROWS_PER_PASS", ROWS // 5)
    state = StateStore(tmp_path / "night")
    _, staged_now = stage_partition_of_night(landing, state, "n1", "4")
    assert staged_now == ["0", "4"]
    _, staged_now = stage_partition_of_night(landing, state, "n1", "0")
    assert staged_now == []
    _, staged_now = stage_partition_of_night(landing, state, "n1", "9")
    assert staged_now == ["1", "9"]


def test_a_partition_written_in_slices_is_the_partition_written_whole(
    landing: StateStore, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, sliced = StateStore(tmp_path / "whole"), StateStore(tmp_path / "sliced")
    first = stage_drop(landing, whole, "n1")
    # Half of each partition already synced, a few of those since changed in Salesforce's eyes:
    # every slice then holds unchanged, changed and new rows.
    for key, part in first.items():
        rows = whole.read_parquet(part.to_send)
        known = confirmed(rows.gather_every(2)).with_columns(
            pl.when(pl.int_range(pl.len()) % 7 == 0)
            .then(pl.col("row_hash") + 1)
            .otherwise(pl.col("row_hash"))
            .alias("row_hash")
        )
        for state in (whole, sliced):
            advance_ledger(state, key, known, "n0")
    expected = stage_drop(landing, whole, "n1")
    monkeypatch.setattr(staging, "ROWS_PER_SLICE", 37)
    actual = stage_drop(landing, sliced, "n1")

    for key in PARTITION_KEYS:
        # Everything but the ledger's version, which names a file of each state dir.
        assert actual[key].counts.model_dump(exclude={"ledger_version"}) == expected[
            key
        ].counts.model_dump(exclude={"ledger_version"})
        assert (
            actual[key].counts.unchanged and actual[key].counts.changed and actual[key].counts.new
        )
        assert sliced.read_parquet(actual[key].to_send).equals(
            whole.read_parquet(expected[key].to_send)
        ), key


def test_deleted_and_moved_out_rows_are_the_same_staged_alone_or_all_at_once(
    tmp_path, state: StateStore
) -> None:
    landing = StateStore(tmp_path / "moves")
    first = valid_rows(400, accounts=40, seed=7)
    write_drop(landing, "a", [first])
    confirm_all(state, stage_drop(landing, state, "a"), "a")
    home = dict(
        first.select(
            "opportunity_key", pl.col("account_key").map_elements(shard_of, return_dtype=pl.String)
        ).iter_rows()
    )
    accounts = first["account_key"].unique().sort().to_list()
    gone = set(first["opportunity_key"][:15])
    movers = set(first["opportunity_key"][15:40])

    def another_shard(account: str) -> str:
        return next(other for other in accounts if shard_of(other) != shard_of(account))

    second = first.filter(~pl.col("opportunity_key").is_in(list(gone))).with_columns(
        pl.when(pl.col("opportunity_key").is_in(list(movers)))
        .then(pl.col("account_key").map_elements(another_shard, return_dtype=pl.String))
        .otherwise(pl.col("account_key"))
        .alias("account_key")
    )
    write_drop(landing, "b", [second])

    def keys(store: StateStore, path: str) -> set[str]:
        return set(store.read_parquet(path)["external_id"])

    everything = stage_drop(landing, state, "b")
    for key in PARTITION_KEYS:
        assert keys(state, everything[key].deleted) == {k for k in gone if home[k] == key}
        assert keys(state, everything[key].moved_out) == {k for k in movers if home[k] == key}
        # Alone, the rest of the drop is streamed: a mover's new partition is not staged.
        scratch = StateStore(tmp_path / f"alone-{key}")
        alone = staging.stage_partitions(landing, state, "b", [key], output=scratch)[key]
        assert alone.counts == everything[key].counts
        assert keys(scratch, alone.deleted) == keys(state, everything[key].deleted)
        assert keys(scratch, alone.moved_out) == keys(state, everything[key].moved_out)
    assert sum(part.counts.moved_out for part in everything.values()) == len(movers)
    assert sum(part.counts.deleted for part in everything.values()) == len(gone)
