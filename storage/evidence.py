"""The evidence store: append-only, each item committed with its timeline entry."""

import sqlite3
from datetime import datetime

import aiosqlite

from bot.domain.enums import EvidenceKind, TimelineKind
from bot.domain.evidence import EvidenceBrief, EvidenceItem, NewEvidence, entry_text
from bot.domain.models import TimelineEntry
from storage.db import Database, from_db_time, to_db_time
from storage.incidents import APPEND_ENTRY, UnknownIncident, entry_rows

_COLUMNS = "id, incident, kind, content, url, source, note, size, added_by, added_at"
BRIEF_PREVIEW_MAX = 300  # characters of content read for the card, never the whole item


def _item(row: aiosqlite.Row) -> EvidenceItem:
    return EvidenceItem(
        id=row["id"],
        incident=row["incident"],
        kind=EvidenceKind(row["kind"]),
        content=row["content"],
        url=row["url"],
        source=row["source"],
        note=row["note"],
        size=row["size"],
        added_by=row["added_by"],
        added_at=from_db_time(row["added_at"]),
    )


class EvidenceRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self, number: int, new: NewEvidence, *, added_by: str, at: datetime
    ) -> EvidenceItem:
        """Record the item and its `evidence` timeline entry in one transaction, and mark the
        incident updated. `UnknownIncident` when there is no such incident."""
        when = to_db_time(at)

        def insert(conn: sqlite3.Connection) -> EvidenceItem:
            touched = conn.execute(
                "UPDATE incidents SET updated_at = ? WHERE number = ?", (when, number)
            )
            if touched.rowcount != 1:
                raise UnknownIncident(number)
            [row] = conn.execute(
                "INSERT INTO evidence (incident, kind, content, url, source, note, size,"  # noqa: S608
                " added_by, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f" RETURNING {_COLUMNS}",
                (
                    number,
                    new.kind.value,
                    new.content,
                    new.url,
                    new.source,
                    new.note,
                    new.size,
                    added_by,
                    when,
                ),
            ).fetchall()
            item = _item(row)
            entry = TimelineEntry(
                at=at,
                actor=added_by,
                kind=TimelineKind.EVIDENCE,
                text=entry_text(new),
                data={
                    "evidence_id": item.id,
                    "kind": item.kind.value,
                    "bytes": item.size,
                    "url": item.url,
                    "source": item.source,
                },
            )
            conn.executemany(APPEND_ENTRY, entry_rows(number, [entry]))
            return item

        # Answered to Slack only once committed: one round trip (see Database.atomically).
        item = await self._db.atomically(insert)
        return item

    async def for_incident(self, number: int) -> list[EvidenceItem]:
        """Every item, whole, oldest first (for the API and the export)."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM evidence WHERE incident = ? ORDER BY id",  # noqa: S608
            (number,),
        )
        return [_item(row) for row in rows]

    async def batch(self, number: int, after_id: int, limit: int) -> list[EvidenceItem]:
        """Up to `limit` whole items after the one with id `after_id`, oldest first: every
        item a batch at a time (bot/services/streamed_export.py)."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM evidence WHERE incident = ? AND id > ?"  # noqa: S608
            " ORDER BY id LIMIT ?",
            (number, after_id, limit),
        )
        return [_item(row) for row in rows]

    async def kinds(self, number: int) -> frozenset[EvidenceKind]:
        rows = await self._db.fetchall(
            "SELECT DISTINCT kind FROM evidence WHERE incident = ?", (number,)
        )
        return frozenset(EvidenceKind(row["kind"]) for row in rows)

    async def count(self, number: int) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM evidence WHERE incident = ?", (number,))
        return int(row[0]) if row else 0

    async def latest(self, number: int, limit: int) -> list[EvidenceBrief]:
        """The newest items, newest first, with only the start of their content."""
        rows = await self._db.fetchall(
            "SELECT id, kind, substr(content, 1, ?) AS head, url, source, size, added_by,"
            " added_at FROM evidence WHERE incident = ? ORDER BY id DESC LIMIT ?",
            (BRIEF_PREVIEW_MAX, number, limit),
        )
        return [
            EvidenceBrief(
                id=row["id"],
                kind=EvidenceKind(row["kind"]),
                preview=row["head"] or "",
                url=row["url"],
                source=row["source"],
                size=row["size"],
                added_by=row["added_by"],
                added_at=from_db_time(row["added_at"]),
            )
            for row in rows
        ]
