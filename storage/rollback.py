"""The rollback ledger. Writes take the caller's connection (`IncidentRepo.edit().conn`) so an
item's change and its timeline entry commit together; reads go through the database."""

import json
from collections.abc import Sequence
from datetime import datetime

import aiosqlite

from bot.domain.enums import RollbackStatus
from bot.domain.models import LedgerCounts
from bot.domain.rollback import NewRollbackItem, RollbackItem
from storage.db import Database, from_db_time, to_db_time

_COLUMNS = (
    "incident, id, system, record, value_before, value_after, status, reason, status_by,"
    " status_at, created_by, created_at"
)


def _item(row: aiosqlite.Row) -> RollbackItem:
    return RollbackItem(
        incident=row["incident"],
        id=row["id"],
        system=row["system"],
        record=row["record"],
        before=row["value_before"],
        after=row["value_after"],
        status=RollbackStatus(row["status"]),
        reason=row["reason"],
        by=row["status_by"],
        at=from_db_time(row["status_at"]),
        created_by=row["created_by"],
        created_at=from_db_time(row["created_at"]),
    )


def _counts(rows: Sequence[aiosqlite.Row]) -> LedgerCounts:
    by_status = {row["status"]: row["n"] for row in rows}
    return LedgerCounts(
        total=sum(by_status.values()),
        restored=by_status.get(RollbackStatus.RESTORED.value, 0),
        accepted=by_status.get(RollbackStatus.ACCEPTED.value, 0),
        not_reversible=by_status.get(RollbackStatus.NOT_REVERSIBLE.value, 0),
    )


_COUNTS = "SELECT status, COUNT(*) AS n FROM rollback_items WHERE incident = ? GROUP BY status"


class RollbackRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------ inside a transaction

    @staticmethod
    async def add_in(
        conn: aiosqlite.Connection, number: int, new: NewRollbackItem, *, actor: str, at: datetime
    ) -> tuple[RollbackItem, bool]:
        """Insert the item with the incident's next number; when the same system and record
        are already in its ledger, return that item and False, and change nothing."""
        async with conn.execute(
            f"SELECT {_COLUMNS} FROM rollback_items"  # noqa: S608
            " WHERE incident = ? AND system = ? AND record = ?",
            (number, new.system, new.record),
        ) as cursor:
            row = await cursor.fetchone()
        if row is not None:
            return _item(row), False
        when = to_db_time(at)
        async with conn.execute(
            f"INSERT INTO rollback_items ({_COLUMNS})"  # noqa: S608
            " SELECT ?, COALESCE(MAX(id), 0) + 1, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?"
            " FROM rollback_items WHERE incident = ?"
            f" RETURNING {_COLUMNS}",
            (
                number,
                new.system,
                new.record,
                new.before,
                new.after,
                RollbackStatus.PENDING.value,
                actor,
                when,
                actor,
                when,
                number,
            ),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return _item(row), True

    @staticmethod
    async def statuses_in(
        conn: aiosqlite.Connection, number: int, ids: Sequence[int] | None
    ) -> dict[int, RollbackStatus]:
        """The current status of the items named (None: of every pending item)."""
        if ids is None:
            sql = "SELECT id, status FROM rollback_items WHERE incident = ? AND status = ?"
            params: tuple[object, ...] = (number, RollbackStatus.PENDING.value)
        else:
            sql = (
                "SELECT id, status FROM rollback_items WHERE incident = ?"
                " AND id IN (SELECT value FROM json_each(?))"
            )
            params = (number, json.dumps(list(ids)))
        async with conn.execute(sql + " ORDER BY id", params) as cursor:
            rows = await cursor.fetchall()
        return {row["id"]: RollbackStatus(row["status"]) for row in rows}

    @staticmethod
    async def mark_in(
        conn: aiosqlite.Connection,
        number: int,
        ids: Sequence[int],
        status: RollbackStatus,
        reason: str | None,
        *,
        actor: str,
        at: datetime,
    ) -> int:
        """Set the status of the items named; returns how many changed."""
        cursor = await conn.execute(
            "UPDATE rollback_items SET status = ?, reason = ?, status_by = ?, status_at = ?"
            " WHERE incident = ? AND id IN (SELECT value FROM json_each(?))",
            (status.value, reason, actor, to_db_time(at), number, json.dumps(list(ids))),
        )
        return cursor.rowcount

    @staticmethod
    async def counts_in(conn: aiosqlite.Connection, number: int) -> LedgerCounts:
        async with conn.execute(_COUNTS, (number,)) as cursor:
            return _counts(list(await cursor.fetchall()))

    @staticmethod
    async def pending_in(conn: aiosqlite.Connection, number: int, limit: int) -> list[RollbackItem]:
        async with conn.execute(
            f"SELECT {_COLUMNS} FROM rollback_items WHERE incident = ? AND status = ?"  # noqa: S608
            " ORDER BY id LIMIT ?",
            (number, RollbackStatus.PENDING.value, limit),
        ) as cursor:
            return [_item(row) for row in await cursor.fetchall()]

    # ------------------------------------------------------------------------- reads

    async def counts(self, number: int) -> LedgerCounts:
        return _counts(await self._db.fetchall(_COUNTS, (number,)))

    async def for_incident(
        self, number: int, status: RollbackStatus | None = None, limit: int | None = None
    ) -> list[RollbackItem]:
        """In item order; `limit` None: all of them."""
        where = "WHERE incident = ?"
        params: list[object] = [number]
        if status is not None:
            where += " AND status = ?"
            params.append(status.value)
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM rollback_items {where} ORDER BY id LIMIT ?",  # noqa: S608
            (*params, -1 if limit is None else limit),
        )
        return [_item(row) for row in rows]

    async def batch(self, number: int, after_id: int, limit: int) -> list[RollbackItem]:
        """Up to `limit` items after item `after_id`, in item order: the whole ledger a batch
        at a time (bot/services/streamed_export.py)."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM rollback_items WHERE incident = ? AND id > ?"  # noqa: S608
            " ORDER BY id LIMIT ?",
            (number, after_id, limit),
        )
        return [_item(row) for row in rows]

    async def pending_ids(self, number: int) -> list[int]:
        rows = await self._db.fetchall(
            "SELECT id FROM rollback_items WHERE incident = ? AND status = ? ORDER BY id",
            (number, RollbackStatus.PENDING.value),
        )
        return [row["id"] for row in rows]
