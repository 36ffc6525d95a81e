"""The REST ``query``/``queryAll`` resources: SOQL compiled by ``soql``, run on SQLite, paged by 2,000."""

import re
import secrets
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sync_assets.sandbox.errors import ApiError
from sync_assets.sandbox.ids import BASE62
from sync_assets.sandbox.metadata import Catalog
from sync_assets.sandbox.soql.compiler import CompiledQuery, compile_soql
from sync_assets.sandbox.soql.errors import SoqlError

PAGE_SIZE = 2_000
_KEPT_CURSORS = 1_000
_SELECT = re.compile(r"^\s*select\s+", re.IGNORECASE)


@dataclass(frozen=True)
class _Cursor:
    """What a ``nextRecordsUrl`` needs to fetch the following pages."""

    compiled: CompiledQuery
    shown: list[str]
    total: int
    catalog: Catalog


class QueryService:
    def __init__(self) -> None:
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def compile(
        soql: str, include_deleted: bool, catalog: Catalog, rest: bool = True
    ) -> CompiledQuery:
        """Compile SOQL over the objects of ``catalog`` (the querying user's view).

        Salesforce's error answer if it is not valid.
        """
        try:
            return compile_soql(soql, catalog.soql(), include_deleted)
        except SoqlError as error:
            raise ApiError(400, error.error_code, error.message, rest=rest) from None

    def first_page(
        self,
        conn: sqlite3.Connection,
        soql: str | None,
        include_deleted: bool,
        api_version: str,
        catalog: Catalog,
    ) -> dict[str, Any]:
        """The first page of ``soql`` over the objects of ``catalog`` (the querying user's view)."""
        if not soql:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified", rest=True)
        compiled = self.compile(soql, include_deleted, catalog)
        if compiled.is_count:
            count = int(conn.execute(compiled.sql, compiled.params).fetchone()[0])
            return {"totalSize": count, "done": True, "records": []}
        widened = self._with_record_ids(soql, compiled, include_deleted, catalog)
        rows = self._fetch(conn, widened, 0, PAGE_SIZE + 1)
        total = len(rows)
        if total > PAGE_SIZE:
            total = int(
                conn.execute(f"SELECT COUNT(*) FROM ({widened.sql})", widened.params).fetchone()[0]
            )
        cursor = _Cursor(widened, compiled.columns, total, catalog)
        return self._page(cursor, rows[:PAGE_SIZE], 0, api_version, include_deleted)

    def record(
        self,
        conn: sqlite3.Connection,
        object_name: str,
        record_id: str,
        fields: list[str],
        api_version: str,
        catalog: Catalog,
    ) -> dict[str, Any] | None:
        """One live record with ``fields`` as REST returns it (``attributes`` first), or None.

        The fields are read through ``catalog``, the reading user's view.
        """
        soql = f"SELECT {', '.join(fields)} FROM {object_name} WHERE Id = '{record_id}'"
        compiled = self.compile(soql, False, catalog)
        widened = self._with_record_ids(soql, compiled, False, catalog)
        row = conn.execute(widened.sql, widened.params).fetchone()
        if row is None:
            return None
        return _record(_Cursor(widened, compiled.columns, 1, catalog), row, api_version)

    def next_page(
        self, conn: sqlite3.Connection, locator: str, include_deleted: bool, api_version: str
    ) -> dict[str, Any]:
        key, _, offset_text = locator.rpartition("-")
        with self._lock:
            cursor = self._cursors.get(key)
        if cursor is None or not offset_text.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator", rest=True)
        offset = int(offset_text)
        rows = self._fetch(conn, cursor.compiled, offset, PAGE_SIZE)
        return self._page(cursor, rows, offset, api_version, include_deleted, key)

    @staticmethod
    def _with_record_ids(
        soql: str, compiled: CompiledQuery, include_deleted: bool, catalog: Catalog
    ) -> CompiledQuery:
        """Recompile with ``Id`` (and ``Rel.Id``) selected too: record ``attributes.url`` needs them."""
        extra = [] if "Id" in compiled.columns else ["Id"]
        relationships = {c.split(".", 1)[0] for c in compiled.columns if "." in c}
        extra += [f"{r}.Id" for r in sorted(relationships) if f"{r}.Id" not in compiled.columns]
        if not extra:
            return compiled
        widened = _SELECT.sub(lambda m: m.group(0) + ", ".join(extra) + ", ", soql, count=1)
        return compile_soql(widened, catalog.soql(), include_deleted)

    @staticmethod
    def _fetch(
        conn: sqlite3.Connection, compiled: CompiledQuery, offset: int, limit: int
    ) -> list[sqlite3.Row]:
        return conn.execute(
            f"SELECT * FROM ({compiled.sql}) LIMIT ? OFFSET ?", [*compiled.params, limit, offset]
        ).fetchall()

    def _remember(self, cursor: _Cursor) -> str:
        key = "01g" + "".join(secrets.choice(BASE62) for _ in range(15))
        with self._lock:
            self._cursors[key] = cursor
            while len(self._cursors) > _KEPT_CURSORS:
                self._cursors.popitem(last=False)
        return key

    def _page(
        self,
        cursor: _Cursor,
        rows: list[sqlite3.Row],
        offset: int,
        api_version: str,
        include_deleted: bool,
        key: str | None = None,
    ) -> dict[str, Any]:
        end = offset + len(rows)
        done = end >= cursor.total
        page: dict[str, Any] = {"totalSize": cursor.total, "done": done}
        if not done:
            key = key or self._remember(cursor)
            resource = "queryAll" if include_deleted else "query"
            page["nextRecordsUrl"] = f"/services/data/v{api_version}/{resource}/{key}-{end}"
        page["records"] = [_record(cursor, r, api_version) for r in rows]
        return page


def _typed(catalog: Catalog, object_name: str, field_name: str, value: Any) -> Any:
    if value is None:
        return None
    sobject = catalog.find(object_name)
    field = sobject.field(field_name) if sobject is not None else None
    if field is not None and field.type == "boolean":
        return bool(value)
    return value


def _record(cursor: _Cursor, row: sqlite3.Row, api_version: str) -> dict[str, Any]:
    """One record as REST returns it: ``attributes`` first, relationship fields nested."""
    catalog, object_name = cursor.catalog, cursor.compiled.object_name
    values = dict(zip(cursor.compiled.columns, tuple(row), strict=True))
    record: dict[str, Any] = {
        "attributes": {
            "type": object_name,
            "url": f"/services/data/v{api_version}/sobjects/{object_name}/{values['Id']}",
        }
    }
    for column in cursor.shown:
        relationship, dot, field_name = column.partition(".")
        if not dot:
            record[column] = _typed(catalog, object_name, column, values[column])
            continue
        root = catalog.find(object_name)
        lookup = root.relationship(relationship) if root is not None else None
        parent_name = lookup.reference_to if lookup and lookup.reference_to else relationship
        parent_id = values.get(f"{relationship}.Id")
        if parent_id is None:
            record[relationship] = None
            continue
        nested = record.setdefault(
            relationship,
            {
                "attributes": {
                    "type": parent_name,
                    "url": f"/services/data/v{api_version}/sobjects/{parent_name}/{parent_id}",
                }
            },
        )
        nested[field_name] = _typed(catalog, parent_name, field_name, values[column])
    return record
