"""Watching a load's Bulk jobs with few API calls: one poll for all of them, timed by their progress."""

import logging
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, Field

from sync_assets.salesforce.bulk_api import BulkApi, JobInfo


class WatchSettings(BaseModel):
    """How the watcher times its polls.

    Jobs of a load finish one after another as the org works through them. Once one has
    finished, the next poll is due one typical gap between finishes later; until the first
    finishes, and whenever the expected finish passes without one, the wait grows with the
    time waited (a share of it, and once the gap is known, of at most one gap), so a long night
    costs polls in proportion to its jobs, not to its hours, and an overdue job is noticed
    within a share of the gap. A fresh load's first finish (no job finished, no prior pace) is
    waited for with the larger `blind_share`: fewer polls for a first job of minutes. A load
    whose jobs are all too short to time one by one looks at them once they can all be done,
    before the last load's first finish if that is later (it may have queued in a busier org).

    Once the org's seconds per record are measured, a job is timed by its own size: one seen
    ``InProgress`` started at its ``systemModstamp`` (or, at the latest, when a poll first
    showed it running) and is polled at its expected end, and while it is overdue, again after
    `overdue_share` of the time it is overdue (most end within a second or two of the expected
    end: the org's clock is read to the second); one still waiting is looked at again
    a duration after the poll that saw it waiting, or with a later job of the load. When every
    waiting job is timed so, `cap` does not apply. That is what notices a load's last jobs
    within about a second however long the org's automation takes, instead of after a share of
    the wait (see `_ends_by_size`). A poll due for one job's end alone asks for that job: the
    answer has its counters, which a job seen finished in the list costs one more call for.
    """

    first: float = Field(default=0.5, gt=0, description="Shortest wait between two polls.")
    age_share: float = Field(
        default=0.25, gt=0, le=1, description="A late poll waits this share of the time waited."
    )
    overdue_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A running job past its expected end is polled again after this share of "
        "the time it is overdue (at least `first`, at most `age_share` of its duration).",
    )
    blind_share: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Before anything is known of the org's pace (no job finished, no prior "
        "load), each poll waits this share of the time waited.",
    )
    cap: float = Field(default=60.0, gt=0, description="Longest wait between two polls.")
    pace_min_records: int = Field(
        default=1_000,
        ge=1,
        description="A job of fewer records does not measure the org's pace: its time is mostly "
        "the org's overhead per job, and per record it would time a full job many times too long.",
    )
    shared_look: float = Field(
        default=5.0,
        gt=0,
        description="While nothing is known of the org's pace, how often a load looks whether "
        "another partition's load has measured it (`SharedPace`).",
    )


class Pace(BaseModel):
    """How fast a partition's jobs finished: measured by one load, a prior for the next."""

    first_finish_seconds: float = Field(ge=0, description="From the first close to a finish.")
    seconds_between_finishes: float = Field(ge=0)
    calls_per_job: float | None = Field(
        default=None, description="API calls per job (polls apart), measured: the next estimate."
    )
    polls_per_job: float | None = None
    seconds_per_record: float | None = Field(
        default=None, description="How long the org took per record of a running job (median)."
    )

    @property
    def api_calls_per_job(self) -> float | None:
        """Every call a job cost, polls included, when both were measured."""
        if self.calls_per_job is None or self.polls_per_job is None:
            return None
        return self.calls_per_job + self.polls_per_job


# A job shorter than this many `first`s is left to the gaps between finishes.
SIZED_MIN_FIRSTS = 4

log = logging.getLogger(__name__)


class SharedPace(Protocol):
    """The org's seconds per record, as the loads running beside this one measured them.

    A partition's first load knows nothing of the org's pace and polls blind (`blind_share`);
    the org is the same for every partition, so the first of them to see a job finish tells
    the others, whose jobs are then timed by their size (`JobWatcher._ends_by_size`).
    """

    def read(self) -> float | None: ...

    def publish(self, seconds_per_record: float) -> None: ...


@dataclass
class _Waiting:
    closed_at: float
    records: int | None = None
    started: float | None = None
    """When the org started the job (monotonic clock), once a poll showed it running."""
    queued_at: float | None = None
    """The last poll that showed it still waiting for the org (``UploadComplete``)."""
    done: threading.Event = field(default_factory=threading.Event)
    info: JobInfo | None = None
    error: Exception | None = None


class JobWatcher:
    """Polls every job a load waits for, with one call where Salesforce allows it.

    ``GET /jobs/ingest`` lists the states of all the org's jobs (1,000 per page, in no order,
    without counters: Bulk API 2.0 Developer Guide, "Get All Jobs"); a page that shows all the
    waited-for jobs ends the poll. Where the list would cost more calls than asking for each job
    (an org with many jobs), each job is asked for. A job the list shows ``Failed`` or
    ``Aborted`` is asked for once more, for its ``errorMessage``.
    """

    def __init__(
        self,
        api: BulkApi,
        settings: WatchSettings | None = None,
        prior: Pace | None = None,
        shared: SharedPace | None = None,
    ) -> None:
        self.api = api
        self.settings = settings or WatchSettings()
        self.prior = prior
        self.shared = shared
        self._shared_per_record: float | None = None
        self._shared_looked_at = float("-inf")
        self._lock = threading.Condition()
        self._waiting: dict[str, _Waiting] = {}
        self._started: float | None = None
        self._finishes: list[float] = []
        self._seconds_per_record: list[float] = []
        self._list_cost = 1
        self._polled_at = 0.0
        self._thread: threading.Thread | None = None
        self.polls = 0
        self.poll_calls = 0

    def wait(
        self, job_id: str, closed_at: float, deadline: float, records: int | None = None
    ) -> JobInfo | None:
        """The job's info once it is finished, or None if it is still running at ``deadline``.

        ``records``, the rows the job carries, times its end once the org has started it.
        """
        waiting = _Waiting(closed_at, records)
        with self._lock:
            self._waiting[job_id] = waiting
            if self._started is None:
                self._started = closed_at
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="bulk-job-watcher", daemon=True
                )
                self._thread.start()
            self._lock.notify_all()
        finished = waiting.done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._waiting.pop(job_id, None)
        if waiting.error is not None:
            raise waiting.error
        return waiting.info if finished else None

    # ---- the polling thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._look_at_shared_pace()
            with self._lock:
                if not self._waiting:
                    self._thread = None
                    return
                due_at, lone = self._next_poll()
                wait = due_at - time.monotonic()
                if wait > 0:
                    # A newly registered job wakes the thread, which then waits again; so does
                    # the next look at the pace the other loads measured, while none is known.
                    look = self.settings.shared_look if self._looks_at_shared_pace() else wait
                    self._lock.wait(timeout=min(wait, self.settings.cap, look))
                    continue
                ids = [lone] if lone is not None else self._unfinished()
            if ids:
                try:
                    self._poll(ids)
                except Exception as error:
                    # Retries are the calls' own: a poll that still failed ends every wait.
                    self._fail(ids, error)

    def _unfinished(self) -> list[str]:
        return [job_id for job_id, w in self._waiting.items() if not w.done.is_set()]

    def _next_poll(self) -> tuple[float, str | None]:
        """When the next poll is worth its call, and the one job it asks for, if any.

        See `WatchSettings`; a poll due for one job's expected end asks for that job alone
        (`_lone_due_job`).
        """
        settings = self.settings
        now = time.monotonic()
        pace = self.pace()
        expected: float | None = None
        oldest = min(w.closed_at for w in self._waiting.values())
        waited_for_at_most = float("inf")
        if self._finishes and pace is not None:
            # Since the last finish, or since the oldest waiting job was closed if that is later
            # (a resend round after a quiet spell is not late yet).
            waited_since = max(self._finishes[-1], oldest)
            expected = waited_since + max(pace.seconds_between_finishes, settings.first)
            # A job queued behind other loads' jobs makes its finish overdue by minutes: counting
            # them all would let the wait grow until the last job is noticed minutes late.
            waited_for_at_most = max(pace.seconds_between_finishes, settings.first)
        else:
            waited_since = oldest
            if self.prior is not None:
                # Nothing finished yet: the last load's pace says when the first job will.
                expected = waited_since + self.prior.first_finish_seconds
                # Jobs too short to time one by one can all be done within a few polls' floor;
                # the last load's first finish may have waited in a busier org's queue (a first
                # night's ten partitions): looked at then first, then at that finish.
                short = waited_since + self._shortest_sized()
                if self._polled_at < short < expected and self._all_short():
                    expected = short
        if expected is not None and self._polled_at < expected:
            # Finishes minutes apart (jobs queued behind other loads') must not hold the next
            # poll back longer than `cap`: a job may end anywhere in the gap.
            due = max(
                min(expected, self._polled_at + settings.cap), self._polled_at + settings.first
            )
        else:
            waited = min(now - waited_since, waited_for_at_most)
            # A fresh load's first finish may be minutes away (automation). Each poll waits a
            # share of the time waited by then, so polls are spaced 1 / (1 - share) apart:
            # log(T / first) / log(1 / (1 - share)) polls: 8 for two minutes at 1/2, against
            # 13.5 at 1/3 and 19 at 0.25; the finish noticed at most share / (1 - share) of T
            # late (T itself at 1/2). Only a partition's first load waits so: every later one
            # starts from the pace the last measured. Jobs are timed closer once one finished.
            blind = not self._finishes and self.prior is None
            share = settings.blind_share if blind else settings.age_share
            late = min(settings.cap, max(settings.first, share * waited))
            due = max(self._polled_at, waited_since) + late
        ends, every_job_sized = self._ends_by_size()
        if not ends:
            return due, None
        sized = max(ends[0][0], self._polled_at + settings.first)
        if not every_job_sized:
            return min(due, sized), None
        return sized, self._lone_due_job(ends, sized)

    def _shortest_sized(self) -> float:
        """The shortest job duration worth timing by its size (`SIZED_MIN_FIRSTS` polls' floor)."""
        return SIZED_MIN_FIRSTS * self.settings.first

    def _all_short(self) -> bool:
        """Every job waited for is too short to be timed by its size, at a known pace."""
        per_record = self._per_record()
        return per_record is not None and all(
            waiting.records is not None and per_record * waiting.records < self._shortest_sized()
            for waiting in self._waiting.values()
            if not waiting.done.is_set()
        )

    def _lone_due_job(self, ends: list[tuple[float, str]], due: float) -> str | None:
        """The one running job a poll at ``due`` is for, when no other job may end by then.

        Asked for directly, it costs the one call the list would, and a finished job's answer
        carries its counters, which a listed job costs another call for (`BulkLoader._results`).
        A job still waiting in the org's queue is looked at with the list: one answer then says
        which of the load's waiting jobs have started, where asking for each would cost a call
        apiece.
        """
        job_id = ends[0][1]
        if self._waiting[job_id].started is None or (
            len(ends) > 1 and ends[1][0] <= due + self.settings.first
        ):
            return None
        return job_id

    def _ends_by_size(self) -> tuple[list[tuple[float, str]], bool]:
        """When each waiting job can have ended at the soonest, by its size; all of them or not.

        The ends come soonest first, with the job's id. When every waiting job was, that moment
        alone times the next poll. A running job ends its duration (records × the org's seconds
        per record) after its start, polled `first` later (the org's clock is read to the
        second); past that it is overdue (a slower batch, lock waits) and polled again after a
        share of how long it is overdue (`_overdue_wait`). A job not seen running cannot end
        sooner than its duration after the last poll that saw it waiting (or after its close):
        while the org works through other loads' jobs, each wait costs a poll per duration, not
        one per share of the time waited. A waiting job is looked at no sooner than another job
        of the load can end, if one can end only later (`_queued_end`).
        """
        per_record = self._per_record()
        if per_record is None:
            return [], False
        ends: list[tuple[float, str]] = []
        seen_waiting: list[tuple[float, str]] = []
        every_job_sized = True
        for job_id, waiting in self._waiting.items():
            if waiting.done.is_set():
                continue
            if waiting.records is None:
                every_job_sized = False
                continue
            duration = per_record * waiting.records
            if duration < self._shortest_sized():
                # Jobs of a few polls' floor: timing each would poll at that floor, more often
                # than the gaps between finishes do (a quick org, a busy client).
                every_job_sized = False
                continue
            if waiting.started is not None:
                end = waiting.started + duration + self.settings.first
                if end <= self._polled_at:
                    end = self._polled_at + self._overdue_wait(
                        self._polled_at - waiting.started - duration, duration
                    )
                ends.append((end, job_id))
            elif waiting.queued_at is None:
                # Not looked at since its close: it may have run since.
                ends.append((waiting.closed_at + duration + self.settings.first, job_id))
            else:
                # Seen waiting then, it cannot have ended sooner than a duration later.
                seen_waiting.append((waiting.queued_at + duration + self.settings.first, job_id))
        every_end = ends + seen_waiting
        ends += [(self._queued_end(end, every_end), job_id) for end, job_id in seen_waiting]
        return sorted(ends), every_job_sized

    def _overdue_wait(self, overdue: float, duration: float) -> float:
        """The wait before polling again a running job ``overdue`` seconds past its expected end.

        A share of the time it is overdue, so that one that ends a second late (the org's clock
        read to the second, a batch's own overhead) is noticed within about a second, and one
        held up for minutes (lock waits) costs polls by the log of its delay. At most
        `age_share` of its duration: waits of a 120 s job's 30 s noticed a job ending 1 s late
        22-29 s late (section 8).
        """
        settings = self.settings
        return max(
            settings.first, min(settings.overdue_share * overdue, settings.age_share * duration)
        )

    @staticmethod
    def _queued_end(end: float, every_end: list[tuple[float, str]]) -> float:
        """When a job still waiting in the org's queue is looked at: with the load's next end.

        Seen waiting, a job of ours showed the org's slots all taken. While another job of the
        load cannot end before this one can, seeing this one start or finish changes nothing the
        load waits for: the load ends with its last job, and a finished job frees a place in
        flight for jobs that would only queue behind it. So it is looked at with the soonest
        such job instead of once per its own duration: a partition's small last jobs, queued
        for minutes behind every partition's full jobs, were polled every 7-18 s (section 8's
        next night: 24 polls for a partition of 4 jobs).
        """
        later = [other for other, _ in every_end if other > end]
        return min(later, default=end)

    def _per_record(self) -> float | None:
        """The org's seconds per record: measured by this load, else its prior, else shared."""
        if self._seconds_per_record:
            return statistics.median(self._seconds_per_record)
        if self.prior is not None and self.prior.seconds_per_record is not None:
            return self.prior.seconds_per_record
        return self._shared_per_record

    def _looks_at_shared_pace(self) -> bool:
        return self.shared is not None and self._per_record() is None

    def _look_at_shared_pace(self) -> None:
        """Read the pace other loads measured, every `shared_look` seconds while none is known.

        Outside the lock: the state may be an object store. An estimate only: a failed read
        leaves the load polling blind, as it would alone.
        """
        now = time.monotonic()
        with self._lock:
            shared = self.shared if self._looks_at_shared_pace() else None
            if shared is None or now - self._shared_looked_at < self.settings.shared_look:
                return
            self._shared_looked_at = now
        try:
            measured = shared.read()
        except Exception as error:  # any store's error: see the docstring
            log.warning("could not read the org's shared pace (%s); polling blind", error)
            return
        if measured is not None and measured > 0:
            with self._lock:
                self._shared_per_record = measured

    def _share_pace(self, seconds_per_record: float) -> None:
        """Tell the loads beside this one the org's pace measured here (see `SharedPace`)."""
        if self.shared is None:
            return
        try:
            self.shared.publish(seconds_per_record)
        except Exception as error:  # an estimate for others: never this load's end
            log.warning("could not share the org's pace (%s)", error)

    def pace(self) -> Pace | None:
        """This load's pace so far (the prior's until a job has finished)."""
        if not self._finishes or self._started is None:
            return self.prior
        gaps = [b - a for a, b in zip(self._finishes, self._finishes[1:], strict=False)]
        first = self._finishes[0] - self._started
        return Pace(
            first_finish_seconds=first,
            seconds_between_finishes=statistics.median(gaps) if gaps else first,
            calls_per_job=self.prior.calls_per_job if self.prior else None,
            polls_per_job=self.prior.polls_per_job if self.prior else None,
            seconds_per_record=self._per_record(),
        )

    def _poll(self, ids: list[str]) -> None:
        found, calls, clock = self._states(ids)
        # The list carries no errorMessage: a job that did not complete is asked for it.
        unfinished = [
            j for j, info in found.items() if info.is_terminal and info.state != "JobComplete"
        ]
        found |= {job_id: self.api.job_info(job_id) for job_id in unfinished}
        finished = {job_id: info for job_id, info in found.items() if info.is_terminal}
        now = time.monotonic()
        with self._lock:
            self._polled_at = now
            self.polls += 1
            self.poll_calls += calls + len(unfinished)
            measured_before = len(self._seconds_per_record)
            if finished:
                self._finishes.append(now)
            for job_id, info in found.items():
                waiting = self._waiting.get(job_id)
                if waiting is None or waiting.done.is_set():
                    continue
                if not info.is_terminal and info.state != "InProgress":
                    waiting.queued_at = now
                if info.state == "InProgress" and waiting.started is None:
                    # At the latest now; earlier if the org says it changed state before.
                    waiting.started = min(now, clock.monotonic(info.modified_at, default=now))
                if info.is_terminal:
                    self._learn_duration(waiting, clock.monotonic(info.modified_at, default=now))
                    waiting.info = info
                    waiting.done.set()
            learned = len(self._seconds_per_record) > measured_before
            per_record = self._per_record()
        if learned and per_record is not None:
            self._share_pace(per_record)

    def _learn_duration(self, waiting: _Waiting, ended: float) -> None:
        """Measure the org's seconds per record by a job seen running, if it is large enough.

        A job's time is the org's overhead for the job plus its records at the org's pace (the
        Bulk API 2.0 Quick Start's 7-record Account job reports a totalProcessingTime of 886 ms,
        127 ms a record). In the benchmarks' 5%-changed night, a 126-record job took 0.36 s
        (2.8 ms a record, 14 times a full job's pace); timed by it, the load's 9,995-record job,
        done 1.4 s after it started, was noticed 35 s after its end (`pace_min_records`).
        """
        if (
            waiting.started is not None
            and waiting.records is not None
            and waiting.records >= self.settings.pace_min_records
            and ended > waiting.started
        ):
            self._seconds_per_record.append((ended - waiting.started) / waiting.records)

    def _fail(self, ids: list[str], error: Exception) -> None:
        with self._lock:
            for job_id in ids:
                waiting = self._waiting.get(job_id)
                if waiting is not None:
                    waiting.error = error
                    waiting.done.set()

    def _states(self, ids: list[str]) -> tuple[dict[str, JobInfo], int, "OrgClock"]:
        """The jobs' states, the calls that cost, and the org's clock as the answer gave it.

        By the list while it is the cheaper way, else one call per job.
        """
        if self._list_cost >= len(ids):
            found = {job_id: self.api.job_info(job_id) for job_id in ids}
            return found, len(ids), OrgClock.read(None)
        listing = self.api.job_states(set(ids))
        self._list_cost = listing.pages
        found = dict(listing.found)
        # A job the list did not show (another user's view, or gone) is asked for directly.
        missing = [job_id for job_id in ids if job_id not in found]
        found |= {job_id: self.api.job_info(job_id) for job_id in missing}
        return found, listing.pages + len(missing), OrgClock.read(listing.server_time)


@dataclass(frozen=True)
class OrgClock:
    """The org's clock against this process's monotonic clock, as read at one answer."""

    server_now: float
    monotonic_now: float

    @classmethod
    def read(cls, server_time: datetime | None) -> "OrgClock":
        """From the answer's ``Date`` (whole seconds: its middle is taken), else our own clock."""
        server_now = server_time.timestamp() + 0.5 if server_time is not None else time.time()
        return cls(server_now, time.monotonic())

    def monotonic(self, moment: datetime | None, *, default: float) -> float:
        """``moment`` of the org's clock on this process's monotonic clock."""
        if moment is None:
            return default
        return self.monotonic_now - (self.server_now - moment.timestamp())
