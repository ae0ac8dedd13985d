"""Incidents and their timeline. A state change and its timeline entries commit together."""

import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiosqlite

from bot.domain.enums import IncidentStatus, TimelineKind
from bot.domain.models import Incident, NewIncident, TimelineEntry
from bot.domain.severity import Impact
from storage.db import Database, from_db_time, to_db_time

_OPEN = tuple(s.value for s in IncidentStatus if s.is_open)
_COLUMNS = (
    "number, title, summary, agent_id, severity, status, commander, declared_by, impact,"
    " channel_id, channel_name, card_channel, card_ts, digest_ts, declared_at, created_at,"
    " updated_at, containment_plan, automatic, alert_kind, fingerprint, alert_count,"
    " triage_channel, triage_ts"
)
# Fields a change may rewrite; Slack references have their own call.
_MUTABLE = (
    "title",
    "summary",
    "severity",
    "status",
    "commander",
    "impact",
    "declared_at",
    "containment_plan",
    "automatic",
    "alert_count",
)
_SLACK_REFS = frozenset(
    {
        "channel_id",
        "channel_name",
        "card_channel",
        "card_ts",
        "digest_ts",
        "triage_channel",
        "triage_ts",
    }
)


class UnknownIncident(LookupError):
    def __init__(self, number: int) -> None:
        super().__init__(f"There is no incident INC-{number}.")
        self.number = number


def _incident(row: aiosqlite.Row) -> Incident:
    return Incident(
        number=row["number"],
        title=row["title"],
        summary=row["summary"],
        agent_id=row["agent_id"],
        severity=row["severity"],
        status=row["status"],
        commander=row["commander"],
        declared_by=row["declared_by"],
        impact=Impact.model_validate_json(row["impact"]),
        channel_id=row["channel_id"],
        channel_name=row["channel_name"],
        card_channel=row["card_channel"],
        card_ts=row["card_ts"],
        digest_ts=row["digest_ts"],
        declared_at=from_db_time(row["declared_at"]),
        created_at=from_db_time(row["created_at"]),
        updated_at=from_db_time(row["updated_at"]),
        containment_plan=json.loads(row["containment_plan"]) if row["containment_plan"] else None,
        automatic=row["automatic"],
        alert_kind=row["alert_kind"],
        fingerprint=row["fingerprint"],
        alert_count=row["alert_count"],
        triage_channel=row["triage_channel"],
        triage_ts=row["triage_ts"],
    )


def _entry(row: aiosqlite.Row) -> TimelineEntry:
    return TimelineEntry(
        at=from_db_time(row["at"]),
        actor=row["actor"],
        kind=TimelineKind(row["kind"]),
        text=row["text"],
        data=json.loads(row["data"]),
    )


APPEND_ENTRY = (
    "INSERT INTO timeline (incident, at, actor, kind, text, data) VALUES (?, ?, ?, ?, ?, ?)"
)


def entry_rows(number: int, entries: Sequence[TimelineEntry]) -> list[tuple[Any, ...]]:
    return [
        (number, to_db_time(e.at), e.actor, e.kind.value, e.text, json.dumps(e.data))
        for e in entries
    ]


async def _append(
    conn: aiosqlite.Connection, number: int, entries: Sequence[TimelineEntry]
) -> None:
    await conn.executemany(APPEND_ENTRY, entry_rows(number, entries))


def _ref_assignments(refs: dict[str, str | None]) -> str:
    if not set(refs) <= _SLACK_REFS:
        raise ValueError(f"unknown Slack reference fields: {sorted(set(refs) - _SLACK_REFS)}")
    return ", ".join(f"{name} = ?" for name in refs)


def _mutable_values(incident: Incident) -> dict[str, Any]:
    return {
        "title": incident.title,
        "summary": incident.summary,
        "severity": incident.severity.value,
        "status": incident.status.value,
        "commander": incident.commander,
        "impact": incident.impact.model_dump_json(),
        "declared_at": to_db_time(incident.declared_at) if incident.declared_at else None,
        "containment_plan": (
            json.dumps([m.value for m in incident.containment_plan])
            if incident.containment_plan is not None
            else None
        ),
        "automatic": incident.automatic,
        "alert_count": incident.alert_count,
    }


class IncidentEdit:
    """The current incident, read inside a write transaction, and the way to save a change."""

    def __init__(self, conn: aiosqlite.Connection, incident: Incident) -> None:
        self._conn = conn
        self.incident = incident

    @property
    def conn(self) -> aiosqlite.Connection:
        """For other repositories' writes that must commit with this change."""
        return self._conn

    async def save(self, changed: Incident, entries: Sequence[TimelineEntry]) -> None:
        values = _mutable_values(changed)
        assignments = ", ".join(f"{name} = ?" for name in _MUTABLE)
        # Declared now (out of triage): its room is to be set up, as in `create`.
        await self._conn.execute(
            f"UPDATE incidents SET {assignments}, updated_at = ?,"  # noqa: S608
            " room_pending = CASE WHEN declared_at IS NULL AND ? IS NOT NULL THEN 1"
            " ELSE room_pending END WHERE number = ?",
            (
                *values.values(),
                to_db_time(changed.updated_at),
                values["declared_at"],
                changed.number,
            ),
        )
        await _append(self._conn, changed.number, entries)
        self.incident = changed

    async def append(self, entries: Sequence[TimelineEntry]) -> None:
        await _append(self._conn, self.incident.number, entries)


class IncidentRepo:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._listeners: list[Callable[[int], None]] = []

    def on_change(self, listener: Callable[[int], None]) -> None:
        """`listener(number)` runs after each committed `create` or `edit`: state derived
        from an incident (its reminders) follows every change, whichever code made it."""
        self._listeners.append(listener)

    def _changed(self, number: int) -> None:
        for listener in self._listeners:
            listener(number)

    async def create(
        self, new: NewIncident, *, status: IncidentStatus, commander: str, entry: TimelineEntry
    ) -> tuple[Incident, bool]:
        """Insert the incident and its first timeline entry. A repeated idempotency key returns
        the incident it created the first time and `False`."""
        incident, created = await self._create(new, status=status, commander=commander, entry=entry)
        if created:
            self._changed(incident.number)
        return incident, created

    async def _create(
        self, new: NewIncident, *, status: IncidentStatus, commander: str, entry: TimelineEntry
    ) -> tuple[Incident, bool]:
        at = to_db_time(entry.at)
        declared_at = at if status is IncidentStatus.DECLARED else None
        values = (
            new.title,
            new.summary,
            new.agent_id,
            new.severity.value,
            status.value,
            commander,
            new.declared_by,
            new.impact.model_dump_json(),
            new.idempotency_key,
            declared_at,
            at,
            at,
            new.alert_kind,
            new.fingerprint,
            1 if new.alert_kind else 0,
            int(declared_at is not None),  # a declared incident's room is to be set up
        )

        def insert(conn: sqlite3.Connection) -> tuple[sqlite3.Row, bool]:
            if new.idempotency_key:
                found = conn.execute(
                    f"SELECT {_COLUMNS} FROM incidents WHERE idempotency_key = ?",  # noqa: S608
                    (new.idempotency_key,),
                ).fetchone()
                if found is not None:
                    return found, False
            [row] = conn.execute(
                "INSERT INTO incidents (title, summary, agent_id, severity, status, commander,"  # noqa: S608
                " declared_by, impact, idempotency_key, declared_at, created_at, updated_at,"
                " alert_kind, fingerprint, alert_count, room_pending)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f" RETURNING {_COLUMNS}",
                values,
            ).fetchall()
            conn.executemany(APPEND_ENTRY, entry_rows(row["number"], [entry]))
            return row, True

        # On every declaration's path to its acknowledgement: one round trip (see atomically).
        row, created = await self._db.atomically(insert)
        return _incident(row), created

    @asynccontextmanager
    async def edit(self, number: int) -> AsyncIterator[IncidentEdit]:
        """Read-modify-write under BEGIN IMMEDIATE: concurrent clicks see each other's result."""
        async with self._db.transaction() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT {_COLUMNS} FROM incidents WHERE number = ?",  # noqa: S608
                (number,),
            )
            if not rows:
                raise UnknownIncident(number)
            yield IncidentEdit(conn, _incident(next(iter(rows))))
        self._changed(number)  # committed: an exception inside rolls back and skips this

    async def append(self, number: int, entries: Sequence[TimelineEntry]) -> None:
        async with self._db.transaction() as conn:
            await _append(conn, number, entries)

    async def append_once(self, number: int, entry: TimelineEntry, dedupe_key: str) -> bool:
        """Append unless an entry with this key exists; True when it was appended. One
        statement: atomic on its own, one round trip to the database thread."""
        changed = await self._db.write(
            "INSERT OR IGNORE INTO timeline (incident, at, actor, kind, text, data, dedupe_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                number,
                to_db_time(entry.at),
                entry.actor,
                entry.kind.value,
                entry.text,
                json.dumps(entry.data),
                dedupe_key,
            ),
        )
        return changed == 1

    async def set_slack_refs(self, number: int, **refs: str | None) -> None:
        if not refs:
            raise ValueError("no Slack reference to set")
        await self._db.write(
            f"UPDATE incidents SET {_ref_assignments(refs)} WHERE number = ?",  # noqa: S608
            (*refs.values(), number),
        )

    async def room_ready(self, number: int, **refs: str | None) -> None:
        """Its room's set-up has ended (with these Slack references): a restart need not
        resume it. One statement with the references, so one write."""
        assignments = ", ".join(
            [_ref_assignments(refs), "room_pending = 0"] if refs else ["room_pending = 0"]
        )
        await self._db.write(
            f"UPDATE incidents SET {assignments} WHERE number = ?",  # noqa: S608
            (*refs.values(), number),
        )

    async def rooms_pending(self) -> list[Incident]:
        """Declared incidents whose room set-up was cut short (Rein stopped first)."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM incidents WHERE room_pending = 1 ORDER BY number"  # noqa: S608
        )
        return [_incident(row) for row in rows]

    async def get(self, number: int) -> Incident | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM incidents WHERE number = ?",  # noqa: S608
            (number,),
        )
        return _incident(row) if row else None

    async def by_channel(self, channel_id: str) -> Incident | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM incidents WHERE channel_id = ?"  # noqa: S608
            " ORDER BY number DESC LIMIT 1",
            (channel_id,),
        )
        return _incident(row) if row else None

    async def recent_by_declarer(
        self, declared_by: str, agent_id: str, title: str, since: datetime
    ) -> Incident | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM incidents WHERE declared_by = ? AND agent_id = ?"  # noqa: S608
            " AND title = ? AND created_at >= ? ORDER BY number DESC LIMIT 1",
            (declared_by, agent_id, title, to_db_time(since)),
        )
        return _incident(row) if row else None

    async def newest(self, status: str | None = None, limit: int = 100) -> list[Incident]:
        """Newest first. `status`: "open" (every status but closed and dismissed), one status,
        or None for all."""
        if status == "open":
            marks = ", ".join("?" for _ in _OPEN)
            where, params = f"WHERE status IN ({marks})", list(_OPEN)
        elif status is not None:
            where, params = "WHERE status = ?", [IncidentStatus(status).value]
        else:
            where, params = "", []
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM incidents {where} ORDER BY number DESC LIMIT ?",  # noqa: S608
            (*params, limit),
        )
        return [_incident(row) for row in rows]

    async def open_by_fingerprint(self, fingerprint: str) -> Incident | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM incidents WHERE fingerprint = ?"  # noqa: S608
            " AND status NOT IN ('closed', 'dismissed')",
            (fingerprint,),
        )
        return _incident(row) if row else None

    async def last_transition_to(self, number: int, status: IncidentStatus) -> TimelineEntry | None:
        row = await self._db.fetchone(
            "SELECT at, actor, kind, text, data FROM timeline WHERE incident = ? AND kind = ?"
            " AND json_extract(data, '$.to') = ? ORDER BY id DESC LIMIT 1",
            (number, TimelineKind.STATUS_CHANGED.value, status.value),
        )
        return _entry(row) if row else None

    async def first_entry(self, number: int, kind: TimelineKind) -> TimelineEntry | None:
        """The oldest entry of `kind` (an alert's own fields), without reading the timeline."""
        row = await self._db.fetchone(
            "SELECT at, actor, kind, text, data FROM timeline WHERE incident = ? AND kind = ?"
            " ORDER BY id LIMIT 1",
            (number, kind.value),
        )
        return _entry(row) if row else None

    async def timeline(self, number: int) -> list[TimelineEntry]:
        rows = await self._db.fetchall(
            "SELECT at, actor, kind, text, data FROM timeline WHERE incident = ? ORDER BY id",
            (number,),
        )
        return [_entry(row) for row in rows]
