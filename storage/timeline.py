"""Reading the timeline by position: pages for Slack, the latest entry of a kind, and the
entries after the last automated channel status. Appending stays in storage/incidents.py."""

from collections.abc import Sequence

from bot.domain.enums import TimelineKind
from bot.domain.models import TimelineEntry
from storage.db import Database
from storage.incidents import _entry

_FIELDS = "id, at, actor, kind, text, data"


class TimelineRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def count(self, number: int) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM timeline WHERE incident = ?", (number,))
        return int(row[0]) if row else 0

    async def page(self, number: int, offset: int, limit: int) -> list[TimelineEntry]:
        """Entries `offset` … `offset + limit - 1`, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_FIELDS} FROM timeline WHERE incident = ?"  # noqa: S608
            " ORDER BY id LIMIT ? OFFSET ?",
            (number, limit, offset),
        )
        return [_entry(row) for row in rows]

    async def latest(self, number: int, kind: TimelineKind) -> TimelineEntry | None:
        row = await self._db.fetchone(
            f"SELECT {_FIELDS} FROM timeline WHERE incident = ? AND kind = ?"  # noqa: S608
            " ORDER BY id DESC LIMIT 1",
            (number, kind.value),
        )
        return _entry(row) if row else None

    async def status_cursor(self, number: int) -> int:
        """The last timeline id the incident channel's automated status covered (0: none)."""
        row = await self._db.fetchone(
            "SELECT json_extract(data, '$.through') FROM timeline WHERE incident = ?"
            " AND kind = ? ORDER BY id DESC LIMIT 1",
            (number, TimelineKind.STATUS_POSTED.value),
        )
        return int(row[0]) if row and row[0] is not None else 0

    async def after(
        self, number: int, after_id: int, kinds: Sequence[TimelineKind]
    ) -> list[tuple[int, TimelineEntry]]:
        """Entries of `kinds` with an id above `after_id`, oldest first, with their ids."""
        marks = ", ".join("?" for _ in kinds)
        rows = await self._db.fetchall(
            f"SELECT {_FIELDS} FROM timeline WHERE incident = ? AND id > ?"  # noqa: S608
            f" AND kind IN ({marks}) ORDER BY id",
            (number, after_id, *(k.value for k in kinds)),
        )
        return [(int(row["id"]), _entry(row)) for row in rows]
