"""Watching a load's Bulk jobs with few API calls: one poll for all of them, timed by their progress."""

import statistics
import threading
import time
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from sync_assets.salesforce.bulk_api import BulkApi, JobInfo


class WatchSettings(BaseModel):
    """How the watcher times its polls.

    Jobs of a load finish one after another as the org works through them. Once one has
    finished, the next poll is due one typical gap between finishes later; until the first
    finishes, and whenever the expected finish passes without one, the wait grows with the
    time waited (a share of it, and once the gap is known, of at most one gap), so a long night
    costs polls in proportion to its jobs, not to its hours, and an overdue job is noticed
    within a share of the gap.
    """

    first: float = Field(default=0.5, gt=0, description="Shortest wait between two polls.")
    age_share: float = Field(
        default=0.25, gt=0, le=1, description="A late poll waits this share of the time waited."
    )
    cap: float = Field(default=60.0, gt=0, description="Longest wait between two polls.")


class Pace(BaseModel):
    """How fast a partition's jobs finished: measured by one load, a prior for the next."""

    first_finish_seconds: float = Field(ge=0, description="From the first close to a finish.")
    seconds_between_finishes: float = Field(ge=0)
    calls_per_job: float | None = Field(
        default=None, description="API calls per job (polls apart), measured: the next estimate."
    )
    polls_per_job: float | None = None

    @property
    def api_calls_per_job(self) -> float | None:
        """Every call a job cost, polls included, when both were measured."""
        if self.calls_per_job is None or self.polls_per_job is None:
            return None
        return self.calls_per_job + self.polls_per_job


@dataclass
class _Waiting:
    closed_at: float
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
        self, api: BulkApi, settings: WatchSettings | None = None, prior: Pace | None = None
    ) -> None:
        self.api = api
        self.settings = settings or WatchSettings()
        self.prior = prior
        self._lock = threading.Condition()
        self._waiting: dict[str, _Waiting] = {}
        self._started: float | None = None
        self._finishes: list[float] = []
        self._list_cost = 1
        self._polled_at = 0.0
        self._thread: threading.Thread | None = None
        self.polls = 0
        self.poll_calls = 0

    def wait(self, job_id: str, closed_at: float, deadline: float) -> JobInfo | None:
        """The job's info once it is finished, or None if it is still running at ``deadline``."""
        waiting = _Waiting(closed_at)
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
            with self._lock:
                if not self._waiting:
                    self._thread = None
                    return
                wait = self._next_poll_at() - time.monotonic()
                if wait > 0:
                    # A newly registered job wakes the thread, which then waits again.
                    self._lock.wait(timeout=min(wait, self.settings.cap))
                    continue
                ids = [job_id for job_id, w in self._waiting.items() if not w.done.is_set()]
            if ids:
                try:
                    self._poll(ids)
                except Exception as error:
                    # Retries are the calls' own: a poll that still failed ends every wait.
                    self._fail(ids, error)

    def _next_poll_at(self) -> float:
        """When the next poll is worth its call (see `WatchSettings`)."""
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
        if expected is not None and self._polled_at < expected:
            return max(expected, self._polled_at + settings.first)
        waited = min(now - waited_since, waited_for_at_most)
        late = min(settings.cap, max(settings.first, settings.age_share * waited))
        return max(self._polled_at, waited_since) + late

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
        )

    def _poll(self, ids: list[str]) -> None:
        found, calls = self._states(ids)
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
            if finished:
                self._finishes.append(now)
            for job_id, info in finished.items():
                waiting = self._waiting.get(job_id)
                if waiting is not None and not waiting.done.is_set():
                    waiting.info = info
                    waiting.done.set()

    def _fail(self, ids: list[str], error: Exception) -> None:
        with self._lock:
            for job_id in ids:
                waiting = self._waiting.get(job_id)
                if waiting is not None:
                    waiting.error = error
                    waiting.done.set()

    def _states(self, ids: list[str]) -> tuple[dict[str, JobInfo], int]:
        """The jobs' states, and the calls that cost: by the list while it is the cheaper way."""
        if self._list_cost >= len(ids):
            return {job_id: self.api.job_info(job_id) for job_id in ids}, len(ids)
        found, pages = self.api.job_states(set(ids))
        self._list_cost = pages
        # A job the list did not show (another user's view, or gone) is asked for directly.
        missing = [job_id for job_id in ids if job_id not in found]
        found |= {job_id: self.api.job_info(job_id) for job_id in missing}
        return found, pages + len(missing)
