"""Triggers, flows and rollups on Opportunity writes: Apex time per chunk, the CPU limit, wrapped errors.

Salesforce runs a Bulk batch's DML in chunks of 200 records, each its own transaction with its own
governor limits ("When DML is performed with Bulk API, each chunk of 200 records is processed as a
separate transaction", Bulk API Developer Guide, Limits). An exception a trigger does not handle
fails every record of its chunk with the same text ("If a trigger ever throws an unhandled
exception, all records are marked with an error", Apex Developer Guide, Trigger Exceptions), wrapped
in ``CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY`` as captured from real orgs: a rollup trigger that cannot
lock the parent Account (DLRS issues 1241, 847, 736) and the CPU limit (salesforce.stackexchange.com
96410). The wrapped text spans several lines, as in those captures.
"""

from sync_assets.sandbox.convert import row_error
from sync_assets.sandbox.dml.prepare import DML_CHUNK
from sync_assets.sandbox.org import AutomationSpec

_EVENTS = {"insert": "AfterInsert", "delete": "AfterDelete", "hardDelete": "AfterDelete"}
_UPDATE_EVENT = "AfterUpdate"
# Where the trigger's stack trace points: any line will do, real ones differ per org.
_TRIGGER_LINE = "line 12, column 1"


def fail_active_rows(errors: list[str | None], start: int, end: int, error: str) -> int:
    """Give ``error`` to the rows in ``start:end`` that have none yet; how many there were."""
    failed = 0
    for i in range(start, end):
        if errors[i] is None:
            errors[i] = error
            failed += 1
    return failed


class Automation:
    """The org's Opportunity automation as it acts on one job's batches."""

    def __init__(self, spec: AutomationSpec, operation: str) -> None:
        self._spec = spec
        self._event = _EVENTS.get(operation, _UPDATE_EVENT)

    @property
    def wraps_lock_errors(self) -> bool:
        return self._spec.lock_errors == "wrapped"

    def _wrapped(self, cause: str) -> str:
        trigger = self._spec.trigger
        return row_error(
            "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
            f"{trigger}: execution of {self._event}\n\ncaused by: {cause}\n\n"
            f"Trigger.{trigger}: {_TRIGGER_LINE}",
        )

    def lock_error(self, account_id: str) -> str:
        """The trigger's update of the parent Account could not lock it."""
        return self._wrapped(
            "System.DmlException: Update failed. First exception on row 0 with id "
            f"{account_id}; first error: UNABLE_TO_LOCK_ROW, unable to obtain exclusive access "
            "to this record: []"
        )

    def cpu_error(self) -> str:
        return self._wrapped("System.LimitException: Apex CPU time limit exceeded")

    def run_triggers(self, errors: list[str | None]) -> list[float]:
        """Apex milliseconds of each 200-record chunk; a chunk over the CPU limit fails whole.

        Rows that already failed validation do not reach the triggers and cost nothing. A chunk
        that passes the limit is stopped there, so it costs exactly the limit.
        """
        per_record, limit = self._spec.apex_ms_per_record, self._spec.cpu_limit_ms
        costs: list[float] = []
        for start in range(0, len(errors), DML_CHUNK):
            end = min(start + DML_CHUNK, len(errors))
            cost = errors[start:end].count(None) * per_record
            if cost > limit:
                fail_active_rows(errors, start, end, self.cpu_error())
                cost = limit
            costs.append(cost)
        return costs

    def wrap_lock_failures(
        self, errors: list[str | None], locked: list[int], parents: list[str | None]
    ) -> list[int]:
        """Fail the chunk of each row in ``locked`` (rows that could not lock their parent).

        The rollup trigger's own update of the Account throws, so every row of the chunk fails
        with the same wrapped text, naming the first Account that could not be locked. Returns
        every row failed for a lock, ``locked`` included, in order.
        """
        messages: dict[int, str] = {}
        for i in locked:
            parent = parents[i]
            if parent is not None and i // DML_CHUNK not in messages:
                messages[i // DML_CHUNK] = self.lock_error(parent)
        failed = set(locked)
        for chunk, message in messages.items():
            start, end = chunk * DML_CHUNK, min((chunk + 1) * DML_CHUNK, len(errors))
            for i in range(start, end):
                if errors[i] is None or i in failed:
                    errors[i] = message
                    failed.add(i)
        return sorted(failed)
