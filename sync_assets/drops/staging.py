"""Stage a drop: per partition, the rows to send (new or changed), the rejects, and the counts.

Every source row is counted in exactly one partition: a valid row in the shard of its account;
a rejected row in the shard of its account key as it came (a missing or empty key falls in
partition "0", whose CRC-32 it shares with ""), so summing `source` over the ten partitions
gives the manifest's row count.

Files written per drop and partition, under `staging/<drop_id>/partition=<k>/` in the state dir:
`to_send.parquet` (Salesforce fields as Bulk-CSV text, plus `_row_hash` and `_change`, sorted by
account), `rejects.parquet` (source columns as text, `reason_code`, `reason`), `deleted.parquet`
(ledger rows absent from the whole drop: reported, not deleted), `moved_out.parquet` (ledger rows
whose opportunity now lives in another partition) and `counts.json`, written last; and per
partition the row hashes by source row (`row_hash_memo`), with which the next staging leaves
unchanged rows unconverted.
"""

import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate

import polars as pl
from pydantic import BaseModel, Field, model_validator

from sync_assets.drops.contract import DropContract, default_contract
from sync_assets.drops.outbound import key_text, row_hash, salesforce_columns
from sync_assets.drops.reader import Drop, open_drop
from sync_assets.drops.row_hash_memo import (
    SOURCE_HASH,
    load_memo,
    remembered,
    source_hashes,
    write_memo,
)
from sync_assets.drops.shards import ACCOUNT, UNSHARDABLE_PARTITION, account_order
from sync_assets.drops.validate import (
    REASON_CODE,
    ROW_INDEX,
    Engine,
    RowValidator,
)
from sync_assets.state.columns import POSITION, ROW_HASH
from sync_assets.state.layout import PARTITION_KEYS, StagingFiles, partition_label
from sync_assets.state.ledger import ledger_version, load_ledger
from sync_assets.storage import StateStore

CHANGE = "_change"
UNCHANGED = "unchanged"
PARTITION = "_partition"
_HOME = "_home"
# A partition's rows are turned into text and written this many at a time (a Parquet row group
# each): its memory stays that of a slice, whatever the partition's size.
ROWS_PER_SLICE = 250_000


class StagingCounts(BaseModel):
    """Where every source row of one partition went. `source = rejected + unchanged + new + changed`."""

    drop_id: str
    partition: str
    source: int = Field(ge=0)
    rejected: int = Field(ge=0)
    rejected_by_reason: dict[str, int]
    unchanged: int = Field(ge=0)
    new: int = Field(ge=0)
    changed: int = Field(ge=0)
    deleted: int = Field(ge=0, description="In the ledger, absent from the drop; not deleted.")
    moved_out: int = Field(
        default=0, ge=0, description="In this partition's ledger, now another partition's row."
    )
    extra_columns: list[str] = Field(
        default_factory=list, description="Columns of the drop the mapping does not read."
    )
    missing_columns: list[str] = Field(
        default_factory=list, description="Optional columns the drop lacks: read as all-null."
    )
    contract_version: str = Field(
        default="",
        description="The contract (mapping and org metadata) the rows were staged under "
        "(`DropContract.fingerprint`); under another, the staging is stale.",
    )
    ledger_version: str = Field(
        default="",
        description="The version of the partition's ledger the rows were diffed against "
        "(`ledger_version`); once the ledger changes, the staging is stale.",
    )

    @model_validator(mode="after")
    def _every_row_accounted_for(self) -> "StagingCounts":
        if self.source != self.rejected + self.unchanged + self.new + self.changed:
            raise ValueError(
                f"partition {self.partition}: source {self.source} != rejected {self.rejected} + "
                f"unchanged {self.unchanged} + new {self.new} + changed {self.changed}"
            )
        if self.rejected != sum(self.rejected_by_reason.values()):
            raise ValueError(f"partition {self.partition}: rejects by reason do not add up")
        return self

    @property
    def to_send(self) -> int:
        return self.new + self.changed


class StagedPartition(StagingFiles):
    """A staged partition: its files (relative to the state dir) and where its rows went."""

    counts: StagingCounts


def load_staged(state: StateStore, drop_id: str, partition: str) -> StagedPartition | None:
    """A partition staged earlier (its counts.json exists), or None."""
    files = StagingFiles.of(drop_id, partition)
    if not state.exists(files.counts_file):
        return None
    counts = state.read_json(files.counts_file, StagingCounts)
    return StagedPartition(counts=counts, **files.model_dump())


# All partitions: the drop is read into memory once. Fewer: it is streamed, so a pass holds only
# its partitions' rows (and a few narrow whole-drop columns), however large the drop.
IN_MEMORY: Engine = "in-memory"
STREAMING: Engine = "streaming"

ORDER = "_order"
LEDGER_HASH = "_ledger_hash"


class _Stager:
    """Stages rows of one drop: validation, placement in partitions, diff against the ledger."""

    def __init__(self, drop: Drop, contract: DropContract) -> None:
        self.drop = drop
        self.contract = contract
        self.source = drop.scan(ROW_INDEX)
        self.validator = RowValidator(self.source.collect_schema(), contract)
        self.key_spec = contract.spec(contract.key_column)

    def stage(
        self, state: StateStore, partitions: list[str], output: StateStore | None = None
    ) -> dict[str, StagedPartition]:
        """Stage the rows of `partitions` and write each partition's files into `output`.

        `output` is by default the state whose ledgers the rows are diffed against. With all partitions the drop is read once into memory; with fewer it is streamed and
        filtered, and the checks that span the whole drop (duplicates, deletions) stream its key
        columns. Large frames are dropped as soon as they are used: peak memory is time too.
        """
        everything, engine = self.source, STREAMING
        if len(partitions) == len(PARTITION_KEYS):
            everything, engine = self.source.collect().lazy(), IN_MEMORY
        # Versions first: a ledger replaced in between makes the staging look stale, never fresh.
        versions = {key: ledger_version(state, key) for key in partitions}
        ledger_of = {key: load_ledger(state, key) for key in partitions}
        memo_of = {key: load_memo(state, key) for key in partitions}
        coded, duplicate_rows = self._code_rows(everything, partitions, engine)
        coded = coded.with_columns(self.validator.with_duplicates(duplicate_rows))
        rejected = coded.filter(pl.col(REASON_CODE).is_not_null())
        rejects = (
            self.validator.rejects(rejected.lazy(), duplicate_rows)
            .collect()
            .with_columns(rejected.get_column(PARTITION))
        )
        source_counts = _per_partition(coded.get_column(PARTITION))
        send_order = self._send_order(coded)
        valid_counts = _per_partition(
            coded.get_column(PARTITION).filter(coded.get_column(REASON_CODE).is_null())
        )
        placed = coded.drop(ROW_INDEX, REASON_CODE, ORDER)
        placed = placed.with_columns(source_hashes(placed, self.contract))
        del rejected
        # The send order lists partition after partition: each partition's rows are one slice of
        # it, gathered, turned into text, hashed and diffed beside another partition's write.
        offsets = dict(zip(PARTITION_KEYS, accumulate([0, *valid_counts.values()]), strict=False))
        positions = {
            key: send_order.slice(offsets[key], valid_counts[int(key)]) for key in partitions
        }
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            recalled = {
                key: pool.submit(self._recall, placed, positions[key], ledger_of[key], memo_of[key])
                for key in partitions
            }
            known = {key: future.result()[0] for key, future in recalled.items()}
            unproven = pl.concat(
                [
                    future.result()[1].with_columns(pl.lit(int(key), pl.UInt8).alias(PARTITION))
                    for key, future in recalled.items()
                ]
            )
            del recalled, memo_of
            deleted, moved_out = self._gone_and_moved(
                everything, engine, coded, duplicate_rows, unproven
            )
            del everything, coded
            futures = {
                key: pool.submit(
                    self._write_partition,
                    output or state,
                    key,
                    source_counts[int(key)],
                    placed,
                    positions[key],
                    known[key],
                    ledger_of[key],
                    versions[key],
                    rejects,
                    deleted,
                    moved_out,
                )
                for key in partitions
            }
            return {key: future.result() for key, future in futures.items()}

    @staticmethod
    def _recall(
        placed: pl.DataFrame, at: pl.Series, ledger: pl.DataFrame, memo: pl.DataFrame
    ) -> tuple[pl.Series, pl.DataFrame]:
        """One partition's rows' memo'd hashes, and its ledger rows none of them proves home.

        Per row `at` of `placed`, the row hash its memo holds for it (null if none). A row hash
        covers the key: the ledger holds a row's memo'd hash only for that row's key
        (`_diff_slice`), so such a ledger row is among the partition's rows. Usually all are.
        """
        known = remembered(memo, placed.get_column(SOURCE_HASH).gather(at))
        proven = pl.col("row_hash").is_in(known.drop_nulls().implode())
        return known, ledger.filter(~proven)

    def _gone_and_moved(
        self,
        rows: pl.LazyFrame,
        engine: Engine,
        coded: pl.DataFrame,
        duplicate_rows: pl.Series,
        unproven: pl.DataFrame,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Of the ledger rows no hash proved home (`_recall`): those gone, those moved.

        Gone: absent from the whole drop; moved: now in another partition (an opportunity moves
        when its account moved to another shard). One anti join of those ledger rows with where
        the coded rows of their keys (the versions that won) live now keeps the ones not found in
        their own partition, usually none; only those are placed, and only those not among the
        coded rows are looked for in the rest of the drop (none when every partition is staged).
        The same anti join of every ledger row was 0.4 s and 0.8 CPU-s of staging an unchanged
        2M-row drop; a left join of every ledger row, carrying each row's columns through, was
        0.65 s and 1.3 CPU-s.
        """
        if unproven.is_empty():
            return unproven, unproven  # a first night, an unchanged drop: nothing gone or moved
        key = pl.col(self.contract.key_column)
        homes = (
            coded.lazy()
            .filter(~pl.col(ROW_INDEX).is_in(duplicate_rows.implode()))
            .filter(key.is_in(unproven.get_column("external_id").implode()))
            .select(key.alias("external_id"), pl.col(PARTITION).cast(unproven.schema[PARTITION]))
        )
        away = (
            unproven.lazy()
            .join(homes, on=["external_id", PARTITION], how="anti", maintain_order="left")
            .collect()
        )
        if away.is_empty():
            # Most nights: nothing to place, and no need to read the rest of the drop for it.
            return away, away
        located = away.join(
            homes.filter(pl.col("external_id").is_in(away.get_column("external_id").implode()))
            .rename({PARTITION: _HOME})
            .collect(),
            on="external_id",
            how="left",
            maintain_order="left",
        )
        home = pl.col(_HOME)
        unplaced = located.filter(home.is_null()).drop(_HOME)
        elsewhere = (
            rows.select(pl.col(self.contract.key_column).alias("external_id"))
            .filter(pl.col("external_id").is_in(unplaced.get_column("external_id").implode()))
            .unique()
            .collect(engine=engine)
        )
        moved_out = pl.concat(
            [
                located.filter(home.is_not_null()).drop(_HOME),
                unplaced.join(elsewhere, on="external_id", how="semi", maintain_order="left"),
            ]
        )
        return unplaced.join(elsewhere, on="external_id", how="anti"), moved_out

    def _code_rows(
        self, rows: pl.LazyFrame, partitions: list[str], engine: Engine
    ) -> tuple[pl.DataFrame, pl.Series]:
        """`_coded` rows (without the duplicate rule) and the ROW_INDEX of duplicates that lost.

        Finding duplicates is a single-threaded pass: in memory it runs beside placement and the
        rules; streamed, first, so that its buffers are gone before the pass's rows are held.
        """

        def placed_and_coded() -> pl.DataFrame:
            accounts = account_order(
                rows.select(pl.col(self.contract.parent_column).unique())
                .collect(engine=engine)
                .to_series()
            )
            return self._coded(rows, accounts, partitions, engine)

        if engine != IN_MEMORY:
            losers = self.validator.duplicate_rows(rows, engine)
            return placed_and_coded(), losers
        with ThreadPoolExecutor(max_workers=1) as pool:
            losers = pool.submit(self.validator.duplicate_rows, rows, engine)
            return placed_and_coded(), losers.result()

    def _coded(
        self,
        rows: pl.LazyFrame,
        accounts: pl.DataFrame,
        partitions: list[str],
        engine: Engine,
    ) -> pl.DataFrame:
        """Rows with their reason code (null if valid or a duplicate), account rank and partition."""
        account = pl.col(self.contract.parent_column)
        if len(partitions) < len(PARTITION_KEYS):
            # Filtered first, on a plain membership test: polars streams that, but would hold
            # the whole drop to place every row before filtering.
            rows = rows.filter(_of_partitions(account, accounts, partitions))
        placed = rows.with_columns(
            account.replace_strict(
                accounts[ACCOUNT], accounts["order"], default=None, return_dtype=pl.UInt32
            ).alias(ORDER)
        ).with_columns(
            pl.lit(accounts["partition"])
            .gather(pl.col(ORDER))
            .fill_null(int(UNSHARDABLE_PARTITION))
            .alias(PARTITION)
        )
        # One contiguous buffer per column: gathering rows from many chunks is many times slower.
        return (
            placed.with_columns(self.validator.reason_code(None)).collect(engine=engine).rechunk()
        )

    @staticmethod
    def _send_order(coded: pl.DataFrame) -> pl.Series:
        """Positions of the valid rows in send order: partition, account, then as they came.

        A stable sort on the account's rank (one integer column): sorting by the key strings
        as well would cost more than the rest of the placement.
        """
        return (
            coded.lazy()
            .select(pl.int_range(pl.len(), dtype=pl.UInt32).alias(POSITION), ORDER, REASON_CODE)
            .filter(pl.col(REASON_CODE).is_null())
            .sort(ORDER, maintain_order=True)
            .collect()
            .get_column(POSITION)
        )

    def _outbound(self, valid: pl.DataFrame) -> pl.DataFrame:
        """Valid rows as Salesforce fields (text), with their partition and row hash."""
        strings = [name for name, dtype in valid.schema.items() if dtype == pl.String]
        without_empty = frozenset(
            name for name in strings if not (valid.get_column(name).str.len_bytes() == 0).any()
        )
        outbound = (
            valid.lazy()
            .select(*self.validator.typed_columns(without_empty), PARTITION)
            .select(*salesforce_columns(self.contract, pl.col(PARTITION)), PARTITION)
            .collect()
        )
        return outbound.with_columns(row_hash(outbound, self.contract.salesforce_fields))

    def _keys(self, rows: pl.DataFrame) -> pl.Series:
        """The rows' external ids as Salesforce receives them: the ledger's keys."""
        return (
            rows.lazy()
            .select(self.validator.typed(self.key_spec).alias(self.key_spec.name))
            .select(key_text(self.contract))
            .collect()
            .to_series()
        )

    def _ledger_hashes(
        self, placed: pl.DataFrame, at: pl.Series, ledger: pl.DataFrame
    ) -> pl.Series:
        """Per row `at` of `placed`, the row hash the ledger holds for its key; null if none."""
        if ledger.is_empty() or at.is_empty():
            return pl.repeat(None, at.len(), dtype=pl.UInt64, eager=True).alias(LEDGER_HASH)
        keys = self._keys(placed.select(pl.col(self.key_spec.name).gather(at)))
        known = ledger.select(
            pl.col("external_id").alias(keys.name), pl.col("row_hash").alias(LEDGER_HASH)
        )
        # Joined on the narrow key columns only: a join copies every column it carries.
        return (
            keys.to_frame()
            .join(known, on=keys.name, how="left", maintain_order="left")
            .get_column(LEDGER_HASH)
        )

    def _diff_slice(
        self, placed: pl.DataFrame, at: pl.Series, known: pl.Series, ledger: pl.DataFrame
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Rows `at` of `placed` diffed: those converted, as text with `_change`; and their memo.

        A row whose memo'd hash (`row_hash_memo`) the ledger holds is unchanged and is not
        converted: a row hash covers every sent field, the external id among them, so the
        ledger holds it only for this row's key with these values (trusting a 64-bit hash, as
        every diff here does). That asks no string of the ledger: looking each row's key up in
        it cost half an unchanged drop's diff. Every other row is turned into text, hashed and
        compared with the hash the ledger holds for its key.
        """
        sources = placed.get_column(SOURCE_HASH).gather(at)
        settled = known.is_in(ledger.get_column("row_hash").implode()).fill_null(False)
        unsettled = at.filter(~settled)
        converted = self._outbound(placed.gather(unsettled))
        hashes = converted.get_column(ROW_HASH)
        held = self._ledger_hashes(placed, unsettled, ledger)
        diffed = converted.with_columns(_change(hashes, held)).drop(PARTITION)
        memo_part = pl.DataFrame(
            {
                SOURCE_HASH: pl.concat([sources.filter(settled), sources.filter(~settled)]),
                ROW_HASH: pl.concat([known.filter(settled), hashes]),
            }
        )
        return diffed, memo_part

    def _write_partition(
        self,
        state: StateStore,
        key: str,
        source: int,
        placed: pl.DataFrame,
        positions: pl.Series,
        known: pl.Series,
        ledger: pl.DataFrame,
        version: str,
        rejects: pl.DataFrame,
        deleted: pl.DataFrame,
        moved_out: pl.DataFrame,
    ) -> StagedPartition:
        """Diff a partition's valid rows against its ledger; turn those to send into text; write.

        A row whose memo'd hash (`row_hash_memo`) is the ledger's is unchanged without being
        converted; the others are gathered, turned into Salesforce text, hashed and compared.
        The rows are handled a slice at a time, so a partition's text is never held whole,
        however many rows it has.
        """
        files = StagingFiles.of(self.drop.drop_id, key)
        number = int(key)
        changes: Counter[str] = Counter()
        memo_parts: list[pl.DataFrame] = []

        def to_send_slices() -> Iterator[pl.DataFrame]:
            for start in range(0, max(positions.len(), 1), ROWS_PER_SLICE):
                at = positions.slice(start, ROWS_PER_SLICE)
                diffed, memo_part = self._diff_slice(
                    placed, at, known.slice(start, ROWS_PER_SLICE), ledger
                )
                memo_parts.append(memo_part)
                change = diffed.get_column(CHANGE)
                changes[UNCHANGED] += at.len() - diffed.height
                changes.update(_value_counts(change.fill_null(UNCHANGED)))
                yield diffed.filter(change.is_not_null()) if change.null_count() else diffed

        state.write_parquet_parts(
            files.to_send, to_send_slices(), compression="lz4", statistics=False
        )
        write_memo(state, key, memo_parts)
        unchanged = changes[UNCHANGED]
        rejected = rejects.filter(pl.col(PARTITION) == number).drop(PARTITION)
        gone = deleted.filter(pl.col(PARTITION) == number).drop(PARTITION)
        moved = moved_out.filter(pl.col(PARTITION) == number).drop(PARTITION)
        counts = StagingCounts(
            drop_id=self.drop.drop_id,
            partition=key,
            source=source,
            rejected=rejected.height,
            rejected_by_reason=dict(
                sorted(_value_counts(rejected.get_column(REASON_CODE)).items())
            ),
            unchanged=unchanged,
            new=changes["new"],
            changed=changes["changed"],
            deleted=gone.height,
            moved_out=moved.height,
            extra_columns=self.drop.extra_columns,
            missing_columns=self.drop.missing_columns,
            contract_version=self.contract.fingerprint,
            ledger_version=version,
        )
        state.write_parquet(files.rejects, rejected)
        state.write_parquet(files.deleted, gone)
        state.write_parquet(files.moved_out, moved)
        state.write_json(files.counts_file, counts)
        return StagedPartition(counts=counts, **files.model_dump())


def _of_partitions(account: pl.Expr, accounts: pl.DataFrame, partitions: list[str]) -> pl.Expr:
    """True for the rows of `partitions`; a row without an account key is the unshardable one's."""
    numbers = [int(key) for key in partitions]
    keys = accounts.filter(pl.col("partition").is_in(numbers)).get_column(ACCOUNT)
    member = account.is_in(keys.implode())
    if UNSHARDABLE_PARTITION in partitions:
        return member | account.is_null()
    return member


def _change(hashes: pl.Series, held: pl.Series) -> pl.Series:
    """Per row: "new" (the ledger holds no hash), "changed" (another hash) or null (unchanged)."""
    return pl.select(
        pl.when(held.is_null())
        .then(pl.lit("new"))
        .when(held != hashes)
        .then(pl.lit("changed"))
        .alias(CHANGE)
    ).to_series()


def _value_counts(values: pl.Series) -> dict[str, int]:
    counted = values.value_counts()
    return dict(zip(counted.get_column(values.name), counted.get_column("count"), strict=True))


def _per_partition(partitions: pl.Series) -> dict[int, int]:
    counts = dict.fromkeys(range(len(PARTITION_KEYS)), 0)
    counted = partitions.value_counts()
    counts.update(zip(counted.get_column(PARTITION), counted.get_column("count"), strict=True))
    return counts


ROWS_PER_PASS = 2_500_000
"""How many drop rows one staging pass holds in memory at most (whole partitions, at least one)."""


def _still_valid(state: StateStore, staged: StagedPartition, contract: DropContract) -> bool:
    """A staging is used while its ledger and its contract are the ones it was made with."""
    counts = staged.counts
    return (
        counts.ledger_version == ledger_version(state, counts.partition)
        and counts.contract_version == contract.fingerprint
    )


def nothing_to_load(
    state: StateStore, drop_id: str, partition: str, contract: DropContract
) -> bool:
    """Whether the partition's staging is current and leaves its load nothing to send or retag.

    Its run then only checks (and at most deletes the rows gone from the drop, when deletes are
    on: a job of a few rows, usually held by the guard), a second of CPU and no Bulk load.
    """
    staged = load_staged(state, drop_id, partition_label(partition))
    if staged is None or not _still_valid(state, staged, contract):
        return False
    return staged.counts.to_send == 0 and staged.counts.moved_out == 0


def stage_partition_of_night(
    landing: StateStore,
    state: StateStore,
    drop_id: str,
    partition: str,
    contract: DropContract | None = None,
) -> tuple[StagedPartition, list[str]]:
    """The partition's staging for the drop, staged now only if there is none or it is stale.

    A run calls it holding the partition's lock, then the drop's staging lock; the command's
    head start (`staging_ahead`) holds the staging lock alone: a ledger replaced meanwhile
    leaves that partition's staging stale, never wrong. When the partition must be staged,
    every other partition of the drop nobody staged yet is staged in the same pass (up to
    `ROWS_PER_PASS` rows): the night's first staging reads and validates the drop once for all
    ten, and the runs find their rows ready. A partition staged by another
    run is used only while its ledger is the one it was diffed against and the contract the one it
    was staged under (a changed mapping restages); staging another run's
    partition never replaces a staging that exists. Returns the staging and the partitions
    staged now (empty when reused).
    """
    key = partition_label(partition)
    contract = contract or default_contract()
    current = load_staged(state, drop_id, key)
    if current is not None and _still_valid(state, current, contract):
        return current, []
    drop = open_drop(landing, drop_id, contract)
    per_pass = max(1, ROWS_PER_PASS * len(PARTITION_KEYS) // max(drop.manifest.row_count, 1))
    unstaged = [
        other
        for other in PARTITION_KEYS
        if other != key and load_staged(state, drop_id, other) is None
    ]
    batch = [key, *unstaged[: per_pass - 1]]
    staged = _Stager(drop, contract).stage(state, sorted(batch))
    return staged[key], sorted(batch)


def stage_partitions(
    landing: StateStore,
    state: StateStore,
    drop_id: str,
    partitions: list[str],
    contract: DropContract | None = None,
    output: StateStore | None = None,
) -> dict[str, StagedPartition]:
    """Stage some partitions of a drop, diffed against the state's ledgers.

    All ten read the drop once into memory; fewer stream it, filtered to their rows (duplicates
    and deletions judged against the whole drop, from its key columns only). The rows are diffed against `state`'s ledgers and the files written into `output`: the state
    itself by default; a plan's scratch space, which leaves the state as it was.
    """
    keys = sorted(partition_label(partition) for partition in partitions)
    contract = contract or default_contract()
    stager = _Stager(open_drop(landing, drop_id, contract), contract)
    return stager.stage(state, keys, output)


def stage_partition(
    landing: StateStore,
    state: StateStore,
    drop_id: str,
    partition: str,
    contract: DropContract | None = None,
) -> StagedPartition:
    """Stage one partition of a drop (see `stage_partitions`)."""
    key = partition_label(partition)
    return stage_partitions(landing, state, drop_id, [key], contract)[key]


def stage_drop(
    landing: StateStore,
    state: StateStore,
    drop_id: str,
    contract: DropContract | None = None,
) -> dict[str, StagedPartition]:
    """Stage all ten partitions of a drop, reading and validating the drop once."""
    return stage_partitions(landing, state, drop_id, PARTITION_KEYS, contract)
