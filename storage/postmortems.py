"""Postmortems. Saves take the caller's connection (`IncidentRepo.edit().conn`) so the row, its
timeline entry and (on completion) the incident's move to `postmortem` commit together."""

from datetime import datetime

import aiosqlite

from bot.domain.enums import IncidentStatus, PostmortemState, Severity, TimelineKind
from bot.domain.postmortem import PARTS, Postmortem, PostmortemParts
from storage.db import Database, from_db_time, to_db_time

_PARTS = tuple(part.key for part in PARTS)
_COLUMNS = (
    "incident, "
    + ", ".join(_PARTS)
    + ", state, revision, started_by, started_at, updated_by, updated_at, completed_by,"
    " completed_at"
)


def _postmortem(row: aiosqlite.Row) -> Postmortem:
    return Postmortem(
        incident=row["incident"],
        parts=PostmortemParts(**{key: row[key] for key in _PARTS}),
        state=PostmortemState(row["state"]),
        revision=row["revision"],
        started_by=row["started_by"],
        started_at=from_db_time(row["started_at"]),
        updated_by=row["updated_by"],
        updated_at=from_db_time(row["updated_at"]),
        completed_by=row["completed_by"],
        completed_at=from_db_time(row["completed_at"]),
    )


class PostmortemRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------ inside a transaction

    @staticmethod
    async def get_in(conn: aiosqlite.Connection, number: int) -> Postmortem | None:
        async with conn.execute(
            f"SELECT {_COLUMNS} FROM postmortems WHERE incident = ?",  # noqa: S608
            (number,),
        ) as cursor:
            row = await cursor.fetchone()
        return _postmortem(row) if row else None

    @staticmethod
    async def save_in(
        conn: aiosqlite.Connection,
        number: int,
        parts: PostmortemParts,
        *,
        complete: bool,
        actor: str,
        at: datetime,
    ) -> Postmortem:
        """Insert the first version or overwrite the draft (a completed one is refused by the
        database itself); the revision counts the saves."""
        when = to_db_time(at)
        state = PostmortemState.COMPLETED if complete else PostmortemState.DRAFT
        texts = [getattr(parts, key) for key in _PARTS]
        done = (actor, when) if complete else (None, None)
        marks = ", ".join("?" for _ in _PARTS)
        updates = ", ".join(f"{key} = excluded.{key}" for key in _PARTS)
        async with conn.execute(
            f"INSERT INTO postmortems (incident, {', '.join(_PARTS)}, state, revision,"  # noqa: S608
            " started_by, started_at, updated_by, updated_at, completed_by, completed_at)"
            f" VALUES (?, {marks}, ?, 1, ?, ?, ?, ?, ?, ?)"
            f" ON CONFLICT (incident) DO UPDATE SET {updates}, state = excluded.state,"
            " revision = postmortems.revision + 1, updated_by = excluded.updated_by,"
            " updated_at = excluded.updated_at, completed_by = excluded.completed_by,"
            " completed_at = excluded.completed_at"
            f" RETURNING {_COLUMNS}",
            (number, *texts, state.value, actor, when, actor, when, *done),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return _postmortem(row)

    # ---------------------------------------------------------------------- reads

    async def get(self, number: int) -> Postmortem | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM postmortems WHERE incident = ?",  # noqa: S608
            (number,),
        )
        return _postmortem(row) if row else None

    async def for_card(
        self, number: int
    ) -> tuple[Severity, datetime | None, Postmortem | None] | None:
        """What the card needs in one read: the severity, when the incident was recovered
        (looked up only once it has been), and the postmortem. None: no such incident."""
        row = await self._db.fetchone(
            f"SELECT i.severity AS severity, CASE WHEN i.status IN (?, ?, ?) THEN ("  # noqa: S608
            "  SELECT t.at FROM timeline t WHERE t.incident = i.number AND t.kind = ?"
            "  AND json_extract(t.data, '$.to') = ? ORDER BY t.id DESC LIMIT 1"
            ") END AS recovered_at, p.incident AS has_postmortem,"
            f" {', '.join('p.' + c.strip() for c in _COLUMNS.split(','))}"
            " FROM incidents i LEFT JOIN postmortems p ON p.incident = i.number"
            " WHERE i.number = ?",
            (
                IncidentStatus.RECOVERED.value,
                IncidentStatus.POSTMORTEM.value,
                IncidentStatus.CLOSED.value,
                TimelineKind.STATUS_CHANGED.value,
                IncidentStatus.RECOVERED.value,
                number,
            ),
        )
        if row is None:
            return None
        postmortem = _postmortem(row) if row["has_postmortem"] is not None else None
        return Severity(row["severity"]), from_db_time(row["recovered_at"]), postmortem
