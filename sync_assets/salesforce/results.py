"""Turning a job's three result CSVs into one outcome per row it carried (success, permanent, transient)."""

from pathlib import Path

import polars as pl

from sync_assets.salesforce.checkpoint import OUTCOME_SCHEMA, RowStatus
from sync_assets.salesforce.errors import (
    MISSING_RESULT_ERROR_CODE,
    is_transient_job_failure,
    is_transient_row_error,
    job_failure_code,
    row_error_code,
)
from sync_assets.state.columns import EXTERNAL_ID_FIELD, ROW_HASH

RESULT_COLUMNS = ("status", "salesforce_id", "error_code", "error")


def read_result_csv(path: Path | None, columns: list[str]) -> pl.DataFrame:
    """The wanted columns of a result CSV, all as strings; a missing or empty file gives no rows."""
    if path is None or not path.exists() or path.stat().st_size == 0:
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.String))
    return pl.read_csv(path, columns=columns, infer_schema=False)


def successful_outcomes(path: Path | None, key: str = EXTERNAL_ID_FIELD) -> pl.DataFrame:
    """Rows a job applied, by ``key``: the upsert's external id, or a delete's Id column."""
    rows = read_result_csv(path, ["sf__Id", "sf__Created", key])
    return rows.select(
        pl.col(key),
        pl.when(pl.col("sf__Created").str.to_lowercase() == "true")
        .then(pl.lit(RowStatus.CREATED.value))
        .otherwise(pl.lit(RowStatus.UPDATED.value))
        .alias("status"),
        pl.col("sf__Id").alias("salesforce_id"),
        pl.lit(None, dtype=pl.String).alias("error_code"),
        pl.lit(None, dtype=pl.String).alias("error"),
    )


def empty_result(key: str = EXTERNAL_ID_FIELD) -> pl.DataFrame:
    """A result set with no rows (a job that failed none)."""
    return pl.DataFrame(schema={key: pl.String, **{name: pl.String for name in RESULT_COLUMNS}})


def failed_outcomes(path: Path | None, key: str = EXTERNAL_ID_FIELD) -> pl.DataFrame:
    rows = read_result_csv(path, ["sf__Id", "sf__Error", key])
    error = pl.col("sf__Error")
    return rows.select(
        pl.col(key),
        pl.when(is_transient_row_error(error))
        .then(pl.lit(RowStatus.TRANSIENT.value))
        .otherwise(pl.lit(RowStatus.PERMANENT.value))
        .alias("status"),
        pl.col("sf__Id").replace("", None).alias("salesforce_id"),
        row_error_code(error).alias("error_code"),
        pl.col("sf__Error").alias("error"),
    )


def unprocessed_outcomes(
    path: Path | None, job_error: str | None, key: str = EXTERNAL_ID_FIELD
) -> pl.DataFrame:
    """Rows a ``Failed`` or ``Aborted`` job never reached: resent unless the job failed for good."""
    rows = read_result_csv(path, [key])
    status = RowStatus.TRANSIENT if is_transient_job_failure(job_error) else RowStatus.PERMANENT
    return rows.select(
        pl.col(key),
        pl.lit(status.value).alias("status"),
        pl.lit(None, dtype=pl.String).alias("salesforce_id"),
        pl.lit(job_failure_code(job_error)).alias("error_code"),
        pl.lit(job_error or "unprocessed: the job ended before reaching this row").alias("error"),
    )


def job_outcome(
    keys: pl.DataFrame,
    results: list[pl.DataFrame],
    job_id: str,
    sequence: int,
    key: str = EXTERNAL_ID_FIELD,
    unmentioned: RowStatus = RowStatus.TRANSIENT,
) -> pl.DataFrame:
    """One outcome per carried key; a key no result mentions gets ``unmentioned``.

    ``unmentioned`` is transient (sent again) when the results should name every row, and
    ``applied`` when only failed and unprocessed rows were downloaded: a job that processed
    every row it carried saved each one its failed results do not list.

    The results name rows by ``key``: the upsert's external id, or a delete's Salesforce Id (a
    delete's upload and results carry only ``Id``), matched back to the carried external ids.
    """
    reported = pl.concat([empty_result(key), *results], how="vertical").unique(
        subset=key, keep="first"
    )
    missing = pl.col("status").is_null() & (unmentioned is RowStatus.TRANSIENT)
    return (
        keys.select(*dict.fromkeys([EXTERNAL_ID_FIELD, ROW_HASH, key]))
        .join(reported, on=key, how="left")
        .with_columns(
            pl.col("status").fill_null(unmentioned.value),
            pl.col("error_code").fill_null(
                pl.when(missing).then(pl.lit(MISSING_RESULT_ERROR_CODE))
            ),
            pl.col("error").fill_null(
                pl.when(missing).then(pl.lit("the job's results did not mention this row"))
            ),
            pl.lit(job_id).alias("job_id"),
            pl.lit(sequence, dtype=pl.Int64).alias("sequence"),
        )
        .select(list(OUTCOME_SCHEMA))
    )


def uniform_outcome(
    keys: pl.DataFrame,
    status: RowStatus,
    error_code: str,
    error: str,
    job_id: str,
    sequence: int,
) -> pl.DataFrame:
    """The same outcome for every carried key (a job that never ran, or failed as a whole)."""
    return keys.select(
        pl.col(EXTERNAL_ID_FIELD),
        pl.col(ROW_HASH),
        pl.lit(status.value).alias("status"),
        pl.lit(None, dtype=pl.String).alias("salesforce_id"),
        pl.lit(error_code).alias("error_code"),
        pl.lit(error).alias("error"),
        pl.lit(job_id).alias("job_id"),
        pl.lit(sequence, dtype=pl.Int64).alias("sequence"),
    ).cast({name: dtype for name, dtype in OUTCOME_SCHEMA.items() if name != ROW_HASH})
