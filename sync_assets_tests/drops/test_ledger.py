import polars as pl
import pytest

from sync_assets.state import ledger
from sync_assets.state.layout import PARTITION_KEYS, ledger_path
from sync_assets.state.ledger import (
    LEDGER_SCHEMA,
    STALE_ROW_HASH,
    advance_ledger,
    distinct_synced_keys,
    ledger_rows,
    load_ledger,
    mark_ledger_rows_stale,
)
from sync_assets.storage import StateStore


@pytest.fixture(params=["local", "memory"])
def state(request: pytest.FixtureRequest, tmp_path) -> StateStore:
    if request.param == "local":
        return StateStore(tmp_path / "state")
    return StateStore(f"memory://ledger-{tmp_path.name}")


def confirmed(*rows: tuple[str, int, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"external_id": pl.String, "row_hash": pl.UInt64, "salesforce_id": pl.String},
        orient="row",
    )


def test_ledger_path() -> None:
    assert ledger_path("3") == "ledger/partition=3.parquet"
    with pytest.raises(ValueError):
        ledger_path("11")


def test_empty_ledger_has_the_schema(state: StateStore) -> None:
    ledger = load_ledger(state, "0")
    assert ledger.is_empty() and ledger.schema == LEDGER_SCHEMA


def test_advance_upserts_only_confirmed_rows(state: StateStore) -> None:
    assert advance_ledger(state, "2", confirmed(("A", 1, "006A"), ("B", 2, "006B")), "d1") == 2
    assert advance_ledger(state, "2", confirmed(("B", 3, None), ("C", 4, "006C")), "d2") == 2
    ledger = load_ledger(state, "2").sort("external_id")
    assert ledger.rows() == [
        ("A", 1, "006A", "d1"),  # untouched
        ("B", 3, "006B", "d2"),  # new hash, keeps the Salesforce id it had
        ("C", 4, "006C", "d2"),
    ]
    assert load_ledger(state, "3").is_empty()  # other partitions untouched


def test_advance_accepts_hashes_as_text_and_ignores_nothing_to_do(state: StateStore) -> None:
    text = pl.DataFrame(
        {"external_id": ["A"], "row_hash": ["18446744073709551615"], "salesforce_id": ["006A"]}
    )
    assert advance_ledger(state, "1", text, "d1") == 1
    assert load_ledger(state, "1")["row_hash"].to_list() == [2**64 - 1]
    assert advance_ledger(state, "1", confirmed(), "d2") == 0
    assert load_ledger(state, "1")["drop_id"].to_list() == ["d1"]


def test_advance_refuses_frames_without_the_columns(state: StateStore) -> None:
    with pytest.raises(ValueError, match="row_hash"):
        advance_ledger(
            state, "1", pl.DataFrame({"external_id": ["A"], "salesforce_id": ["x"]}), "d"
        )


def test_a_key_confirmed_twice_keeps_its_last_version_and_its_id(state: StateStore) -> None:
    advance_ledger(state, "4", confirmed(("A", 1, "006A"), ("Z", 9, "006Z")), "d1")
    again = confirmed(("B", 5, None), ("A", 2, None), ("A", 3, None), ("Z", 10, "006Z2"))
    assert advance_ledger(state, "4", again, "d2") == 3
    assert load_ledger(state, "4").rows() == [  # sorted by key
        ("A", 3, "006A", "d2"),  # the last version, with the id Salesforce gave it before
        ("B", 5, None, "d2"),  # no id known anywhere
        ("Z", 10, "006Z2", "d2"),
    ]


def test_rows_marked_stale_keep_their_id_and_are_resent_as_changed(state: StateStore) -> None:
    advance_ledger(state, "4", confirmed(("A", 1, "006A"), ("B", 2, "006B")), "d1")
    assert mark_ledger_rows_stale(state, "4", pl.Series(["B", "Z"])) == 1
    assert load_ledger(state, "4").sort("external_id").rows() == [
        ("A", 1, "006A", "d1"),
        ("B", STALE_ROW_HASH, "006B", "d1"),
    ]
    assert mark_ledger_rows_stale(state, "4", pl.Series([], dtype=pl.String)) == 0


def test_distinct_synced_keys_counts_a_move_in_transit_once(state: StateStore) -> None:
    assert distinct_synced_keys(state) == 0
    advance_ledger(state, "1", confirmed(("a", 1, None), ("b", 2, None)), "d1")
    advance_ledger(state, "4", confirmed(("c", 3, None)), "d1")
    assert distinct_synced_keys(state) == 3
    # "b" moved to partition 4, which confirmed it; partition 1 still holds it until its next load.
    advance_ledger(state, "4", confirmed(("b", 2, None)), "d2")
    assert distinct_synced_keys(state) == 3
    assert sum(load_ledger(state, key).height for key in ["1", "4"]) == 4


def test_distinct_synced_keys_are_counted_again_only_when_a_ledger_is_replaced(
    state: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary and its check count once a night; any replaced ledger is read again."""
    advance_ledger(state, "1", confirmed(("a", 1, None), ("b", 2, None)), "d1")
    reads: list[str] = []
    read = ledger.ledger_keys
    monkeypatch.setattr(
        ledger, "ledger_keys", lambda store, key: reads.append(key) or read(store, key)
    )
    assert distinct_synced_keys(state) == 2
    assert distinct_synced_keys(state) == 2
    assert len(reads) == len(PARTITION_KEYS)
    # The same number of rows, other keys: a ledger of the same size is still another ledger.
    state.write_parquet(
        ledger_path("1"), load_ledger(state, "1").with_columns(pl.lit("c").alias("external_id"))
    )
    assert distinct_synced_keys(state) == 1
    assert len(reads) == 2 * len(PARTITION_KEYS)


def test_ledger_rows_are_read_from_the_file_as_it_is_on_disk(state: StateStore) -> None:
    assert ledger_rows(state, "2") == 0
    advance_ledger(state, "2", confirmed(("a", 1, None), ("b", 2, None)), "d1")
    advance_ledger(state, "2", confirmed(("b", 3, None), ("c", 4, None)), "d2")
    assert ledger_rows(state, "2") == load_ledger(state, "2").height == 3
