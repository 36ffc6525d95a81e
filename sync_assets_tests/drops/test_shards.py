import subprocess
import sys
import zlib

import polars as pl
import pytest

from sync_assets.drops.shards import account_order, rows_per_partition, shard_expr, shard_of
from sync_assets.state.layout import PARTITION_COUNT, PARTITION_KEYS, partition_label

# Fixed vectors: CRC-32 (ISO-HDLC, as zlib and every CRC-32 library compute it) mod 10.
VECTORS = {
    "ACC-000000": "9",
    "ACC-000001": "9",
    "ACC-000002": "3",
    "ACC-012345": "8",  # CRC-32 1966632148
    "ACC-019999": "9",
    "": "0",
    "Ünïcödé-🎉": "4",
    "123456789": "2",  # the CRC-32 check value 0xCBF43926 = 3421780262
}


def test_partition_keys() -> None:
    assert PARTITION_COUNT == 10
    assert PARTITION_KEYS == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    assert partition_label(3) == "3"
    with pytest.raises(ValueError):
        partition_label("10")


@pytest.mark.parametrize(("account_key", "expected"), VECTORS.items())
def test_fixed_vectors(account_key: str, expected: str) -> None:
    assert shard_of(account_key) == expected


def test_crc32_check_value() -> None:
    assert zlib.crc32(b"123456789") == 0xCBF43926


def test_vectorised_shard_equals_scalar_shard() -> None:
    keys = [*VECTORS, *(f"ACC-{i:06d}" for i in range(0, 20_000, 7)), None]
    frame = pl.DataFrame({"account_key": keys}).with_columns(
        shard_expr("account_key").alias("shard")
    )
    expected = [0 if key is None else int(shard_of(key)) for key in keys]
    assert frame["shard"].to_list() == expected


def test_shards_are_the_same_in_another_process() -> None:
    code = (
        "from sync_assets.drops.shards import shard_of;"
        f"print(','.join(shard_of(k) for k in {list(VECTORS)!r}))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert output.split(",") == list(VECTORS.values())


def test_shards_spread_accounts_evenly() -> None:
    shards = [shard_of(f"ACC-{i:06d}") for i in range(20_000)]
    counts = [shards.count(key) for key in PARTITION_KEYS]
    assert min(counts) > 1_800 and max(counts) < 2_200


def test_account_order_groups_by_partition_then_account() -> None:
    keys = pl.Series([f"ACC-{i:06d}" for i in (5, 3, 9, 3, 1)] + [None])
    order = account_order(keys)
    assert order.height == 4
    assert order.columns == ["order", "account_key", "partition"]
    pairs = list(zip(order["partition"], order["account_key"], strict=True))
    assert pairs == sorted(pairs)
    assert order["order"].to_list() == [0, 1, 2, 3]


def test_rows_per_partition_counts_each_partition_and_null_accounts_in_partition_0() -> None:
    keys = [f"ACC-{n:06d}" for n in range(300)] * 3 + [None] * 7
    rows = pl.LazyFrame({"account_key": keys, "amount": range(len(keys))})
    expected = (
        rows.select(shard_expr("account_key").alias("partition")).collect()["partition"]
    ).value_counts()
    counted = rows_per_partition(rows, "account_key")
    assert counted == {
        str(partition): count
        for partition, count in zip(expected["partition"], expected["count"], strict=True)
    }
    assert sum(counted.values()) == len(keys)
    assert counted["0"] >= 7
