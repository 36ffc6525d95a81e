"""Staged partitions built directly in tests, in the shape the drop pipeline writes them."""

import polars as pl

INVALID_KINDS = ("missing_name", "bad_stage", "unknown_account", "bad_date")


def staged_partition(
    rows: int,
    partition: str,
    accounts: int = 50,
    first_account: int = 0,
    invalid_every: int = 0,
    prefix: str = "OPP",
    version: str = "v1",
) -> pl.DataFrame:
    """``rows`` opportunities over ``accounts`` seeded accounts, sorted by account.

    Every ``invalid_every``-th row breaks one rule Salesforce enforces, cycling through
    ``INVALID_KINDS``; ``_invalid_kind`` says which (null for valid rows; never sent, like every
    ``_`` column).
    """
    index = pl.int_range(0, rows, eager=True)
    frame = pl.DataFrame({"n": index}).with_columns(
        account_n=(pl.col("n") * 7919 % accounts) + first_account,
        invalid=(pl.col("n") % invalid_every == invalid_every - 1)
        if invalid_every
        else pl.lit(False),
    )
    kind_index = (pl.col("n") // max(invalid_every, 1)) % len(INVALID_KINDS)
    frame = frame.with_columns(
        _invalid_kind=pl.when(pl.col("invalid")).then(
            pl.lit(pl.Series(INVALID_KINDS)).get(kind_index)
        )
    )
    kind = pl.col("_invalid_kind")
    staged = frame.select(
        pl.format(f"{prefix}-{partition}-{{}}", pl.col("n").cast(pl.String).str.zfill(7)).alias(
            "External_Id__c"
        ),
        pl.when(kind == "unknown_account")
        .then(pl.lit("ACC-999999"))
        .otherwise(pl.format("ACC-{}", pl.col("account_n").cast(pl.String).str.zfill(6)))
        .alias("Account.External_Id__c"),
        pl.when(kind == "missing_name")
        .then(pl.lit(""))
        .otherwise(pl.format('Deal {} {}, "{}"', pl.col("n"), pl.lit(version), pl.lit("quoted")))
        .alias("Name"),
        pl.when(kind == "bad_stage")
        .then(pl.lit("Bogus Stage"))
        .otherwise(pl.lit("Prospecting"))
        .alias("StageName"),
        pl.when(kind == "bad_date")
        .then(pl.lit("2026-13-45"))
        .otherwise(pl.lit("2026-11-28"))
        .alias("CloseDate"),
        pl.lit("1234.50").alias("Amount"),
        pl.lit("10").alias("Probability"),
        pl.lit("#N/A").alias("LeadSource"),
        pl.lit("#N/A").alias("Type"),
        pl.lit("#N/A").alias("NextStep"),
        pl.format("line one\nline two, {} ünïcode 🎉", pl.col("n")).alias("Description"),
        pl.lit(partition).alias("Sync_Partition__c"),
        (
            pl.col("n").cast(pl.UInt64) * 1_000_003
            + pl.lit(sum(map(ord, version)), dtype=pl.UInt64)
        ).alias("_row_hash"),
        pl.lit("new").alias("_change"),
        kind,
    )
    return staged.sort("Account.External_Id__c", "External_Id__c")
