import polars as pl
import pytest

from sync_assets.drops.generate import BAD_KINDS, GenerateOptions, generate_drop
from sync_assets.drops.reader import MANIFEST_NAME, open_drop
from sync_assets.storage import StateStore


def rows_of(landing: StateStore, drop_id: str) -> pl.DataFrame:
    return open_drop(landing, drop_id).scan().collect()


def test_same_seed_same_drop_other_seed_other_drop(tmp_path) -> None:
    one, two = StateStore(tmp_path / "one"), StateStore(tmp_path / "two")
    options = GenerateOptions(drop_id="d", rows=3_000, accounts=100, bad_fraction=0.05, seed=7)
    generate_drop(one, options)
    generate_drop(two, options)
    generate_drop(two, options.model_copy(update={"drop_id": "e", "seed": 8}))
    assert rows_of(one, "d").equals(rows_of(two, "d"))
    assert not rows_of(one, "d").equals(rows_of(two, "e"))


def test_manifest_and_part_files(tmp_path) -> None:
    landing = StateStore(tmp_path)
    manifest = generate_drop(
        str(tmp_path), GenerateOptions(drop_id="d", rows=2_500, accounts=50, rows_per_file=1_000)
    )
    assert manifest.row_count == 2_500
    assert manifest.files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert landing.exists(f"d/{MANIFEST_NAME}")
    with pytest.raises(FileExistsError):
        generate_drop(landing, GenerateOptions(drop_id="d", rows=10))


def test_accounts_are_skewed_and_use_the_sandbox_keys(tmp_path) -> None:
    landing = StateStore(tmp_path)
    generate_drop(landing, GenerateOptions(drop_id="d", rows=20_000, accounts=1_000))
    per_account = rows_of(landing, "d")["account_key"].value_counts()["count"]
    assert per_account.max() > 20 * per_account.median()
    keys = rows_of(landing, "d")["account_key"]
    assert keys.str.contains(r"^ACC-\d{6}$").all()
    assert keys.str.slice(4).cast(pl.Int64).max() < 1_000


def test_descriptions_are_nasty(tmp_path) -> None:
    landing = StateStore(tmp_path)
    generate_drop(landing, GenerateOptions(drop_id="d", rows=2_000, accounts=50))
    text = rows_of(landing, "d")["description"].drop_nulls()
    for needle in [",", '"', "\n", "\r\n", "\t", "日本語", "🚀", "\u200b"]:
        assert text.str.contains(needle, literal=True).any(), needle
    assert text.str.len_chars().max() > 3_000


def test_every_kind_of_bad_row_is_mixed_in(tmp_path) -> None:
    landing = StateStore(tmp_path)
    generate_drop(landing, GenerateOptions(drop_id="d", rows=1_000, accounts=50, bad_fraction=0.1))
    rows = rows_of(landing, "d")
    assert rows["name"].null_count() >= 10
    assert (rows["stage"] == "Closed Maybe").sum() == 10
    assert (rows["probability"] > 100).sum() == 10
    assert rows["opportunity_key"].is_duplicated().sum() == 20
    assert len(BAD_KINDS) == 10


def test_csv_drop(tmp_path) -> None:
    landing = StateStore(tmp_path)
    generate_drop(landing, GenerateOptions(drop_id="d", rows=500, accounts=20, file_format="csv"))
    drop = open_drop(landing, "d")
    assert drop.file_format == "csv" and drop.scan().collect().height == 500


def test_next_night_changes_adds_and_deletes(tmp_path) -> None:
    landing = StateStore(tmp_path)
    generate_drop(landing, GenerateOptions(drop_id="n1", rows=10_000, accounts=100))
    generate_drop(
        landing,
        GenerateOptions(drop_id="n2", based_on="n1", changed=0.1, new=0.02, deleted=0.01, seed=1),
    )
    first, second = rows_of(landing, "n1"), rows_of(landing, "n2")
    kept = first.join(second, on="opportunity_key", how="semi")
    assert first.height - kept.height == 100
    assert second.join(first, on="opportunity_key", how="anti").height == 200
    both = first.join(second, on="opportunity_key", suffix="_next")
    changed = both.filter(pl.col("updated_at_next") != pl.col("updated_at"))
    assert changed.height == 1_000
    assert (changed["description_next"] != changed["description"].fill_null("")).all()
    assert (changed["updated_at_next"] > first["updated_at"].max()).all()


def test_a_drop_made_part_by_part_is_reproducible_skewed_and_broken_as_a_whole(tmp_path) -> None:
    """Parts are generated one at a time (memory of one part), from one random stream."""
    one, two = StateStore(tmp_path / "one"), StateStore(tmp_path / "two")
    options = GenerateOptions(
        drop_id="d", rows=20_000, accounts=1_000, bad_fraction=0.0123, rows_per_file=1_500
    )
    manifest = generate_drop(one, options)
    generate_drop(two, options)
    rows = rows_of(one, "d")
    assert len(manifest.files) == 14 and manifest.row_count == rows.height == 20_000
    assert rows.equals(rows_of(two, "d"))
    assert rows["opportunity_key"].str.slice(4).cast(pl.Int64).max() == 19_999
    # The heavy accounts are the same in every part: the drop is as skewed as one made at once.
    per_account = rows["account_key"].value_counts()["count"]
    assert per_account.max() > 20 * per_account.median()
    # 246 broken rows over the drop (not per part): 25 of the first six kinds, 24 of the rest.
    assert (rows["stage"] == "Closed Maybe").sum() == 25
    assert (rows["probability"] > 100).sum() == 24
    assert rows["opportunity_key"].is_duplicated().sum() == 2 * 24
