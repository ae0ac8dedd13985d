"""Reminders: rows, so pending ones survive a restart, and claims, so each is sent once.

`reconcile` is the one place where an incident's planned reminders are brought in line with
its state: it reads the facts, asks the domain's planner what should be pending, and cancels
or inserts rows to match, in one transaction. Claiming a reminder reconciles first, so a
reminder whose incident moved on is cancelled rather than sent."""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.domain.models import TimelineEntry
from bot.domain.reminders import (
    PLANNED_KINDS,
    POSTMORTEM_KINDS,
    UPDATE_STATUSES,
    Reminder,
    ReminderFacts,
    ReminderKind,
    ReminderState,
    SentReminder,
    Snooze,
    Wanted,
)
from storage.db import Database, from_db_time, to_db_time
from storage.incidents import _append

Planner = Callable[[ReminderFacts], list[Wanted]]

_COLUMNS = (
    "id, incident, kind, key, due_at, state, attempts, next_try_at, in_doubt, claimed_at,"
    " claim, sent_at, late, channel, message_ts, last_error, cancel_reason, payload,"
    " repeat_seconds, created_at, updated_at"
)
_LIVE = (ReminderState.PENDING.value, ReminderState.SENDING.value)
# Written out (not bound) where it lets SQLite use the partial index `reminders_live`.
_LIVE_SQL = f"('{ReminderState.PENDING.value}', '{ReminderState.SENDING.value}')"
_PLANNED = tuple(sorted(k.value for k in PLANNED_KINDS))
_POSTMORTEM = tuple(sorted(k.value for k in POSTMORTEM_KINDS))
_ACTIVE = tuple(sorted(s.value for s in (*UPDATE_STATUSES, IncidentStatus.RECOVERED)))


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


def _time(value: datetime | None) -> str | None:
    return to_db_time(value) if value is not None else None


def _reminder(row: aiosqlite.Row) -> Reminder:
    return Reminder(
        id=row["id"],
        incident=row["incident"],
        kind=row["kind"],
        key=row["key"],
        due_at=from_db_time(row["due_at"]),
        state=row["state"],
        attempts=row["attempts"],
        next_try_at=from_db_time(row["next_try_at"]),
        in_doubt=bool(row["in_doubt"]),
        claimed_at=from_db_time(row["claimed_at"]),
        claim=row["claim"],
        sent_at=from_db_time(row["sent_at"]),
        late=bool(row["late"]),
        channel=row["channel"],
        message_ts=row["message_ts"],
        last_error=row["last_error"],
        cancel_reason=row["cancel_reason"],
        payload=json.loads(row["payload"]),
        repeat_every=(timedelta(seconds=row["repeat_seconds"]) if row["repeat_seconds"] else None),
        created_at=from_db_time(row["created_at"]),
        updated_at=from_db_time(row["updated_at"]),
    )


@dataclass(frozen=True)
class Reconciled:
    """What a reconciliation changed: rows to arm, and rows whose jobs to drop."""

    added: tuple[Reminder, ...] = ()
    cancelled: tuple[int, ...] = ()

    def __add__(self, other: "Reconciled") -> "Reconciled":
        return Reconciled(self.added + other.added, self.cancelled + other.cancelled)


@dataclass(frozen=True)
class Claimed:
    """A claim's outcome. `reminder` is set when this sender holds it and must send it;
    otherwise `current` is the row as it is (still pending: not due yet by the clock)."""

    reminder: Reminder | None
    current: Reminder | None
    changes: Reconciled = field(default_factory=Reconciled)


class ReminderRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------ reading

    async def get(self, reminder_id: int) -> Reminder | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM reminders WHERE id = ?",  # noqa: S608
            (reminder_id,),
        )
        return _reminder(row) if row else None

    async def live(self) -> list[Reminder]:
        """Every pending or claimed reminder, soonest first: what start-up arms."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM reminders WHERE state IN {_LIVE_SQL} ORDER BY due_at, id"  # noqa: S608
        )
        return [_reminder(row) for row in rows]

    async def for_incident(self, number: int) -> list[Reminder]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM reminders WHERE incident = ? ORDER BY id",  # noqa: S608
            (number,),
        )
        return [_reminder(row) for row in rows]

    async def unplanned_incidents(self) -> list[int]:
        """Incidents in a status that may want reminders but with none live: declared just
        before a crash, or from before reminders existed. Start-up plans these."""
        rows = await self._db.fetchall(
            f"SELECT number FROM incidents WHERE status IN ({_marks(_ACTIVE)})"  # noqa: S608
            " AND NOT EXISTS (SELECT 1 FROM reminders r WHERE r.incident = incidents.number"
            f" AND r.state IN (?, ?) AND r.kind IN ({_marks(_PLANNED)})) ORDER BY number",
            (*_ACTIVE, *_LIVE, *_PLANNED),
        )
        return [int(row[0]) for row in rows]

    # ---------------------------------------------------------------- planning

    async def reconcile(
        self,
        number: int,
        planner: Planner,
        now: datetime,
        entries: Sequence[TimelineEntry] = (),
    ) -> Reconciled:
        """Make the incident's planned reminders what `planner` says they should be, after
        appending `entries` (a snooze) in the same transaction. Reads first without the
        write lock: most changes to an incident leave its reminders as they are."""
        if not entries and not await self._differs(number, planner):
            return Reconciled()
        async with self._db.transaction() as conn:
            if entries:
                await _append(conn, number, entries)
            return await self._reconcile(conn, number, planner, now)

    async def _differs(self, number: int, planner: Planner) -> bool:
        found = await self._wanted(number, planner)
        if found is None:
            return False
        to_cancel, to_add = _diff(*found)
        return bool(to_cancel or to_add)

    async def _wanted(
        self, number: int, planner: Planner
    ) -> tuple[list[Wanted], list[Reminder], bool] | None:
        row = await self._db.fetchone(
            "SELECT status, severity, declared_at, created_at FROM incidents WHERE number = ?",
            (number,),
        )
        if row is None:
            return None
        status, severity = IncidentStatus(row["status"]), Severity(row["severity"])
        live = [
            _reminder(r)
            for r in await self._db.fetchall(
                f"SELECT {_COLUMNS} FROM reminders WHERE incident = ? AND state IN (?, ?)",  # noqa: S608
                (number, *_LIVE),
            )
        ]
        if not status.is_open:
            return [], live, False
        facts = ReminderFacts(
            status=status,
            severity=severity,
            declared_at=from_db_time(row["declared_at"] or row["created_at"]),  # type: ignore[arg-type]
            **await self._facts(number, status),
        )
        return planner(facts), live, True

    async def _facts(self, number: int, status: IncidentStatus) -> dict[str, Any]:
        """Only what the status needs: an incident that wants no reminders costs one query."""
        facts: dict[str, Any] = {}
        sent: list[SentReminder] = []
        if status in UPDATE_STATUSES:
            row = await self._db.fetchone(
                "SELECT at FROM timeline WHERE incident = ? AND kind = ? ORDER BY id DESC LIMIT 1",
                (number, TimelineKind.STATUS_UPDATE.value),
            )
            facts["latest_update_at"] = from_db_time(row["at"]) if row else None
            row = await self._db.fetchone(
                "SELECT at, json_extract(data, '$.until') AS until FROM timeline"
                " WHERE incident = ? AND kind = ? ORDER BY id DESC LIMIT 1",
                (number, TimelineKind.REMINDER_SNOOZED.value),
            )
            if row is not None and row["until"]:
                facts["snooze"] = Snooze(from_db_time(row["at"]), from_db_time(row["until"]))  # type: ignore[arg-type]
            sent += await self._sent(number, (ReminderKind.UPDATE.value,), latest_only=True)
        if status is IncidentStatus.RECOVERED:
            row = await self._db.fetchone(
                "SELECT at FROM timeline WHERE incident = ? AND kind = ?"
                " AND json_extract(data, '$.to') = ? ORDER BY id DESC LIMIT 1",
                (number, TimelineKind.STATUS_CHANGED.value, IncidentStatus.RECOVERED.value),
            )
            facts["recovered_at"] = from_db_time(row["at"]) if row else None
            sent += await self._sent(number, _POSTMORTEM)
        facts["sent"] = tuple(sent)
        return facts

    async def _sent(
        self, number: int, kinds: Sequence[str], *, latest_only: bool = False
    ) -> list[SentReminder]:
        limit = " LIMIT 1" if latest_only else ""
        rows = await self._db.fetchall(
            "SELECT kind, key, due_at, sent_at FROM reminders WHERE incident = ? AND state = ?"  # noqa: S608
            f" AND kind IN ({_marks(kinds)}) ORDER BY sent_at DESC, id DESC{limit}",
            (number, ReminderState.SENT.value, *kinds),
        )
        return [
            SentReminder(
                ReminderKind(r["kind"]),
                r["key"],
                from_db_time(r["due_at"]),  # type: ignore[arg-type]
                from_db_time(r["sent_at"]),  # type: ignore[arg-type]
            )
            for r in rows
        ]

    async def _reconcile(
        self, conn: aiosqlite.Connection, number: int, planner: Planner, now: datetime
    ) -> Reconciled:
        """Inside the caller's transaction (the connection is the one `_wanted` reads)."""
        found = await self._wanted(number, planner)
        if found is None:
            return Reconciled()
        to_cancel, to_add = _diff(*found)
        cancelled = []
        for reminder, reason in to_cancel:
            cursor = await conn.execute(
                "UPDATE reminders SET state = ?, cancel_reason = ?, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (
                    ReminderState.CANCELLED.value,
                    reason,
                    to_db_time(now),
                    reminder.id,
                    ReminderState.PENDING.value,
                ),
            )
            if cursor.rowcount == 1:
                cancelled.append(reminder.id)
        added = []
        for want in to_add:
            inserted = await _insert(conn, number, want.kind, want.key, want.due_at, now)
            if inserted is not None:
                added.append(inserted)
        return Reconciled(tuple(added), tuple(cancelled))

    # ------------------------------------------------------------------ sending

    async def claim(self, reminder_id: int, claim: str, now: datetime, planner: Planner) -> Claimed:
        """Reconcile the reminder's incident, then take the reminder if it is still pending
        and due: in one transaction, so of two racing senders exactly one gets it."""
        async with self._db.transaction() as conn:
            before = await self.get(reminder_id)
            if before is None:
                return Claimed(None, None)
            changes = await self._reconcile(conn, before.incident, planner, now)
            at = to_db_time(now)
            async with conn.execute(
                # An in-doubt row keeps the time of the send that was cut short.
                "UPDATE reminders SET state = ?, claim = ?, claimed_at = CASE"  # noqa: S608
                " WHEN in_doubt = 1 AND claimed_at IS NOT NULL THEN claimed_at ELSE ? END,"
                " updated_at = ?"
                " WHERE id = ? AND state = ? AND due_at <= ?"
                " AND (next_try_at IS NULL OR next_try_at <= ?)"
                f" RETURNING {_COLUMNS}",
                (
                    ReminderState.SENDING.value,
                    claim,
                    at,
                    at,
                    reminder_id,
                    ReminderState.PENDING.value,
                    at,
                    at,
                ),
            ) as cursor:
                row = await cursor.fetchone()
            if row is not None:
                return Claimed(_reminder(row), None, changes)
            return Claimed(None, await self.get(reminder_id), changes)

    async def mark_sent(
        self,
        reminder: Reminder,
        *,
        now: datetime,
        channel: str | None,
        ts: str | None,
        late: bool,
        entry: TimelineEntry,
        planner: Planner,
    ) -> Reconciled | None:
        """The reminder reached Slack: saved as sent with its timeline entry, its next
        occurrence (a repeating scheduled one) inserted, and the incident reconciled (the
        next planned one). None when this sender no longer held the claim."""
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE reminders SET state = ?, sent_at = ?, late = ?, channel = ?,"
                " message_ts = ?, in_doubt = 0, last_error = NULL, updated_at = ?"
                " WHERE id = ? AND state = ? AND claim = ?",
                (
                    ReminderState.SENT.value,
                    to_db_time(now),
                    int(late),
                    channel,
                    ts,
                    to_db_time(now),
                    reminder.id,
                    ReminderState.SENDING.value,
                    reminder.claim,
                ),
            )
            if cursor.rowcount != 1:
                return None
            await _append(conn, reminder.incident, [entry])
            added: list[Reminder] = []
            if reminder.repeat_every is not None and not reminder.kind.planned:
                due = max(reminder.due_at + reminder.repeat_every, now)
                root = reminder.key.split("@", 1)[0]
                again = await _insert(
                    conn,
                    reminder.incident,
                    reminder.kind,
                    f"{root}@{to_db_time(due)}",
                    due,
                    now,
                    payload=reminder.payload,
                    repeat_every=reminder.repeat_every,
                )
                if again is not None:
                    added.append(again)
            changes = await self._reconcile(conn, reminder.incident, planner, now)
            return Reconciled(tuple(added)) + changes

    async def release(
        self,
        reminder: Reminder,
        *,
        now: datetime,
        next_try_at: datetime,
        error: str,
        in_doubt: bool,
    ) -> Reminder | None:
        """A send that failed: the reminder stays due, for another try at `next_try_at`."""
        async with self._db.transaction() as conn:
            async with conn.execute(
                "UPDATE reminders SET state = ?, attempts = attempts + 1, next_try_at = ?,"  # noqa: S608
                " last_error = ?, in_doubt = ?, claim = NULL, updated_at = ?"
                " WHERE id = ? AND state = ? AND claim = ?"
                f" RETURNING {_COLUMNS}",
                (
                    ReminderState.PENDING.value,
                    to_db_time(next_try_at),
                    error,
                    int(in_doubt),
                    to_db_time(now),
                    reminder.id,
                    ReminderState.SENDING.value,
                    reminder.claim,
                ),
            ) as cursor:
                row = await cursor.fetchone()
            return _reminder(row) if row else None

    async def drop(self, reminder: Reminder, reason: str, now: datetime) -> bool:
        """Cancel a claimed reminder that turned out to have nothing to say."""
        return (
            await self._db.write(
                "UPDATE reminders SET state = ?, cancel_reason = ?, claim = NULL, updated_at = ?"
                " WHERE id = ? AND state = ? AND claim = ?",
                (
                    ReminderState.CANCELLED.value,
                    reason,
                    to_db_time(now),
                    reminder.id,
                    ReminderState.SENDING.value,
                    reminder.claim,
                ),
            )
            == 1
        )

    async def release_stale_claims(self, now: datetime) -> int:
        """At start-up, before anything is armed: a reminder still claimed was being sent by
        a process that died. It may or may not have reached Slack; it is pending again, in
        doubt, so Slack is asked before it is posted again."""
        return await self._db.write(
            "UPDATE reminders SET state = ?, in_doubt = 1, claim = NULL, updated_at = ?"  # noqa: S608
            f" WHERE state IN {_LIVE_SQL} AND state = ?",
            (ReminderState.PENDING.value, to_db_time(now), ReminderState.SENDING.value),
        )

    async def cancel(self, reminder_id: int, reason: str, now: datetime) -> bool:
        return (
            await self._db.write(
                "UPDATE reminders SET state = ?, cancel_reason = ?, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (
                    ReminderState.CANCELLED.value,
                    reason,
                    to_db_time(now),
                    reminder_id,
                    ReminderState.PENDING.value,
                ),
            )
            == 1
        )

    # ------------------------------------------------------- scheduled reminders

    async def schedule(
        self,
        number: int,
        kind: ReminderKind,
        key: str,
        due_at: datetime,
        now: datetime,
        *,
        payload: dict[str, Any] | None = None,
        repeat_every: timedelta | None = None,
    ) -> Reminder | None:
        """A scheduled reminder (not a planned kind); None when one with `key` is live or
        was sent already."""
        if kind.planned:
            raise ValueError(f"{kind} reminders are planned from the incident's state")
        async with self._db.transaction() as conn:
            return await _insert(
                conn, number, kind, key, due_at, now, payload=payload, repeat_every=repeat_every
            )

    async def cancel_scheduled(
        self, number: int, kinds: Sequence[ReminderKind], reason: str, now: datetime
    ) -> list[int]:
        values = [k.value for k in kinds]
        async with self._db.transaction() as conn:
            async with conn.execute(
                "UPDATE reminders SET state = ?, cancel_reason = ?, updated_at = ?"  # noqa: S608
                f" WHERE incident = ? AND state = ? AND kind IN ({_marks(values)}) RETURNING id",
                (
                    ReminderState.CANCELLED.value,
                    reason,
                    to_db_time(now),
                    number,
                    ReminderState.PENDING.value,
                    *values,
                ),
            ) as cursor:
                return [int(row[0]) for row in await cursor.fetchall()]


def _diff(
    wanted: list[Wanted], live: list[Reminder], is_open: bool
) -> tuple[list[tuple[Reminder, str]], list[Wanted]]:
    """Pending rows nobody wants any more (with why), and wanted ones not there yet. A
    claimed row is being sent: too late to cancel, and its key stays taken."""
    keep = {(w.key, w.due_at) for w in wanted}
    to_cancel = []
    for reminder in live:
        if reminder.state is not ReminderState.PENDING:
            continue
        if not is_open:
            to_cancel.append((reminder, "the incident is over"))
        elif reminder.kind.planned and (reminder.key, reminder.due_at) not in keep:
            to_cancel.append((reminder, _why_not(reminder, wanted)))
    going = {reminder.id for reminder, _ in to_cancel}
    have = {r.key for r in live if r.id not in going}
    return to_cancel, [w for w in wanted if w.key not in have]


def _why_not(reminder: Reminder, wanted: list[Wanted]) -> str:
    same_series = [
        w
        for w in wanted
        if (w.kind is ReminderKind.UPDATE) == (reminder.kind is ReminderKind.UPDATE)
    ]
    if same_series:
        return f"replaced by the one due {to_db_time(same_series[0].due_at)}"
    return "no longer wanted: the incident moved on"


async def _insert(
    conn: aiosqlite.Connection,
    number: int,
    kind: ReminderKind,
    key: str,
    due_at: datetime,
    now: datetime,
    *,
    payload: dict[str, Any] | None = None,
    repeat_every: timedelta | None = None,
) -> Reminder | None:
    """Insert unless the key is live or sent already (the partial unique index)."""
    at = to_db_time(now)
    async with conn.execute(
        "INSERT OR IGNORE INTO reminders (incident, kind, key, due_at, state, payload,"  # noqa: S608
        " repeat_seconds, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        f" RETURNING {_COLUMNS}",
        (
            number,
            kind.value,
            key,
            to_db_time(due_at),
            ReminderState.PENDING.value,
            json.dumps(payload or {}),
            int(repeat_every.total_seconds()) if repeat_every else None,
            at,
            at,
        ),
    ) as cursor:
        row = await cursor.fetchone()
    return _reminder(row) if row else None
