"""Kill-switch deliveries: rows, so pending ones survive a restart and resume."""

import json
from collections.abc import Sequence

import aiosqlite

from bot.domain.enums import DeliveryState
from bot.domain.models import Delivery, TimelineEntry
from storage.db import Database, from_db_time, to_db_time
from storage.incidents import _append

_COLUMNS = (
    "id, incident, agent_id, event, actions, mode, issued_at, state, attempts, next_attempt_at,"
    " last_error, confirmed_at, updated_at"
)


def _delivery(row: aiosqlite.Row) -> Delivery:
    return Delivery(
        id=row["id"],
        incident=row["incident"],
        agent_id=row["agent_id"],
        event=row["event"],
        actions=json.loads(row["actions"]),
        mode=row["mode"],
        issued_at=from_db_time(row["issued_at"]),
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at=from_db_time(row["next_attempt_at"]),
        last_error=row["last_error"],
        confirmed_at=from_db_time(row["confirmed_at"]),
        updated_at=from_db_time(row["updated_at"]),
    )


def _optional_time(value: object) -> str | None:
    return to_db_time(value) if value is not None else None  # type: ignore[arg-type]


class DeliveryRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    async def insert_in(conn: aiosqlite.Connection, delivery: Delivery) -> None:
        """Inside the caller's transaction: the delivery commits with the change it carries."""
        await conn.execute(
            f"INSERT INTO deliveries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            (
                delivery.id,
                delivery.incident,
                delivery.agent_id,
                delivery.event.value,
                json.dumps([a.value for a in delivery.actions]),
                delivery.mode.value,
                to_db_time(delivery.issued_at),
                delivery.state.value,
                delivery.attempts,
                _optional_time(delivery.next_attempt_at),
                delivery.last_error,
                _optional_time(delivery.confirmed_at),
                to_db_time(delivery.updated_at),
            ),
        )

    async def get(self, delivery_id: str) -> Delivery | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM deliveries WHERE id = ?",  # noqa: S608
            (delivery_id,),
        )
        return _delivery(row) if row else None

    async def pending(self) -> list[Delivery]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM deliveries WHERE state = ? ORDER BY next_attempt_at",  # noqa: S608
            (DeliveryState.PENDING.value,),
        )
        return [_delivery(row) for row in rows]

    async def for_incident(self, number: int) -> list[Delivery]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM deliveries WHERE incident = ? ORDER BY issued_at, id",  # noqa: S608
            (number,),
        )
        return [_delivery(row) for row in rows]

    async def record(
        self, before: Delivery, after: Delivery, entries: Sequence[TimelineEntry]
    ) -> bool:
        """Save an attempt's outcome with its timeline entries, unless the delivery changed
        meanwhile (a manual retry); False then, and nothing is written."""
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?,"
                " last_error = ?, confirmed_at = ?, updated_at = ?"
                " WHERE id = ? AND state = ? AND attempts = ?",
                (
                    after.state.value,
                    after.attempts,
                    _optional_time(after.next_attempt_at),
                    after.last_error,
                    _optional_time(after.confirmed_at),
                    to_db_time(after.updated_at),
                    before.id,
                    before.state.value,
                    before.attempts,
                ),
            )
            if cursor.rowcount != 1:
                return False
            await _append(conn, after.incident, entries)
            return True
