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

    async def extent(self, number: int) -> tuple[int, int]:
        """How many entries the incident has, and the id of its newest (0: none), read
        together: `page` counts from the newest end of exactly those."""
        row = await self._db.fetchone(
            # MAX(id) as its own subquery is one seek; beside COUNT(*) it reads every row's id.
            "SELECT COUNT(*), (SELECT MAX(id) FROM timeline WHERE incident = ?)"
            " FROM timeline WHERE incident = ?",
            (number, number),
        )
        return (int(row[0]), int(row[1] or 0)) if row else (0, 0)

    async def page(
        self, number: int, offset: int, limit: int, extent: tuple[int, int] | None = None
    ) -> list[TimelineEntry]:
        """Entries `offset` … `offset + limit - 1`, oldest first. Given the `extent` read
        before, only among the entries it counted, and a page in the newer half is read
        backwards from the newest of them: SQLite walks an OFFSET entry by entry, so the
        latest page of a 100,000-entry timeline would otherwise walk past them all."""
        if extent is None:
            rows = await self._db.fetchall(
                f"SELECT {_FIELDS} FROM timeline WHERE incident = ?"  # noqa: S608
                " ORDER BY id LIMIT ? OFFSET ?",
                (number, limit, offset),
            )
            return [_entry(row) for row in rows]
        total, newest = extent
        count = min(limit, total - offset)
        if count <= 0:
            return []
        if offset <= total // 2:
            rows = await self._db.fetchall(
                f"SELECT {_FIELDS} FROM timeline WHERE incident = ? AND id <= ?"  # noqa: S608
                " ORDER BY id LIMIT ? OFFSET ?",
                (number, newest, count, offset),
            )
            return [_entry(row) for row in rows]
        rows = await self._db.fetchall(
            f"SELECT {_FIELDS} FROM timeline WHERE incident = ? AND id <= ?"  # noqa: S608
            " ORDER BY id DESC LIMIT ? OFFSET ?",
            (number, newest, count, total - offset - count),
        )
        return [_entry(row) for row in reversed(rows)]

    async def batch(
        self, number: int, after_id: int, limit: int
    ) -> list[tuple[int, TimelineEntry]]:
        """Up to `limit` entries after the one with id `after_id`, oldest first, with their
        ids: the whole timeline a batch at a time (bot/services/streamed_export.py)."""
        rows = await self._db.fetchall(
            f"SELECT {_FIELDS} FROM timeline WHERE incident = ? AND id > ?"  # noqa: S608
            " ORDER BY id LIMIT ?",
            (number, after_id, limit),
        )
        return [(int(row["id"]), _entry(row)) for row in rows]

    async def latest(self, number: int, kind: TimelineKind) -> TimelineEntry | None:
        row = await self._db.fetchone(
            f"SELECT {_FIELDS} FROM timeline WHERE incident = ? AND kind = ?"  # noqa: S608
            " ORDER BY id DESC LIMIT 1",
            (number, kind.value),
        )
        return _entry(row) if row else None

    async def of_kinds(self, number: int, kinds: Sequence[TimelineKind]) -> list[TimelineEntry]:
        """Every entry of these kinds, oldest first. One branch per kind, so each is a seek on
        `timeline_by_incident_kind`: with `kind IN (…)` SQLite's planner walks the incident's
        whole timeline on `timeline_by_incident` instead."""
        branch = f"SELECT {_FIELDS} FROM timeline WHERE incident = ? AND kind = ?"  # noqa: S608
        rows = await self._db.fetchall(
            " UNION ALL ".join(branch for _ in kinds) + " ORDER BY id",
            [value for kind in kinds for value in (number, kind.value)],
        )
        return [_entry(row) for row in rows]

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
