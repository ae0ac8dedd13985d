"""Reminders: which ones an incident should have now, derived from its state. Pure: the
caller passes the facts and the time; nothing here reads a clock or the database.

Two families:
- *planned* reminders follow from the incident's state alone and are re-derived after every
  change (`plan`): the status-update cadence while `declared` or `contained`, and the
  postmortem reminders while a SEV-1/SEV-2 is `recovered`;
- *scheduled* reminders (the restart gate's, next issue) are put in place by whoever owns
  them and repeat on their own (`repeat_every`) until that owner cancels them.

Every time is an aware UTC datetime, whole seconds (storage keeps seconds)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.domain.enums import IncidentStatus, Severity
from bot.domain.policy import Policy
from bot.domain.postmortem import due_hours


class ReminderKind(StrEnum):
    UPDATE = "update"  # no status update for the severity's interval
    POSTMORTEM_HALF = "postmortem_half"  # half the postmortem window has passed
    POSTMORTEM_NINETY = "postmortem_ninety"  # 90% of it
    POSTMORTEM_OVERDUE = "postmortem_overdue"  # past due: repeated daily until done
    GATE_DAILY = "gate_daily"  # restart gate: unchecked criteria, daily (scheduled)
    GATE_STAGE = "gate_stage"  # a staged restart's stage has its clean runs (scheduled)

    @property
    def planned(self) -> bool:
        return self in PLANNED_KINDS


PLANNED_KINDS = frozenset(
    {
        ReminderKind.UPDATE,
        ReminderKind.POSTMORTEM_HALF,
        ReminderKind.POSTMORTEM_NINETY,
        ReminderKind.POSTMORTEM_OVERDUE,
    }
)
POSTMORTEM_KINDS = PLANNED_KINDS - {ReminderKind.UPDATE}


class ReminderState(StrEnum):
    PENDING = "pending"  # waiting for its time, or for its next try after Slack failed
    SENDING = "sending"  # claimed: one sender is posting it now
    SENT = "sent"
    CANCELLED = "cancelled"  # the incident moved on; never sent


UPDATE_STATUSES = frozenset({IncidentStatus.DECLARED, IncidentStatus.CONTAINED})
SNOOZE_MINUTES = (15, 30, 60)
OVERDUE_EVERY = timedelta(days=1)
LATE_AFTER = timedelta(minutes=1)  # sent later than this after its due time: marked late
# After Slack failed: the next tries, then the last delay for as long as it takes.
SEND_RETRY_DELAYS = (
    timedelta(seconds=10),
    timedelta(seconds=30),
    timedelta(minutes=1),
    timedelta(minutes=2),
    timedelta(minutes=5),
)


class Reminder(BaseModel):
    """One reminder: a row. `due_at` never moves; a failed send sets `next_try_at`."""

    model_config = ConfigDict(frozen=True)

    id: int
    incident: int
    kind: ReminderKind
    key: str  # unique among the incident's live reminders: what was sent is not sent again
    due_at: datetime
    state: ReminderState = ReminderState.PENDING
    attempts: int = 0  # failed sends so far
    next_try_at: datetime | None = None
    in_doubt: bool = False  # a send may have reached Slack: look there before posting again
    claimed_at: datetime | None = None
    claim: str | None = None
    sent_at: datetime | None = None
    late: bool = False
    channel: str | None = None
    message_ts: str | None = None
    last_error: str | None = None
    cancel_reason: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)  # scheduled kinds: what to say
    repeat_every: timedelta | None = None  # scheduled kinds: sent again this long after
    created_at: datetime
    updated_at: datetime

    @property
    def fires_at(self) -> datetime:
        """When it should be tried: its due time, or later after a failed send."""
        if self.next_try_at is not None and self.next_try_at > self.due_at:
            return self.next_try_at
        return self.due_at

    @property
    def marker(self) -> str:
        """The block id its Slack message carries: how a send cut short is found again."""
        return marker(self.id)


def marker(reminder_id: int) -> str:
    return f"rein-reminder-{reminder_id}"


@dataclass(frozen=True)
class Wanted:
    """A reminder the incident should have pending now."""

    kind: ReminderKind
    key: str
    due_at: datetime


@dataclass(frozen=True)
class SentReminder:
    kind: ReminderKind
    key: str
    due_at: datetime
    sent_at: datetime


@dataclass(frozen=True)
class Snooze:
    at: datetime  # when someone snoozed
    until: datetime


@dataclass(frozen=True)
class ReminderFacts:
    """What planning reads about an incident (loaded by storage/reminders.py)."""

    status: IncidentStatus
    severity: Severity
    declared_at: datetime
    latest_update_at: datetime | None = None
    recovered_at: datetime | None = None
    snooze: Snooze | None = None  # the latest
    sent: tuple[SentReminder, ...] = ()  # planned kinds only; at least the latest update one


@dataclass(frozen=True)
class Cadence:
    """The policy's intervals for one severity."""

    update_every: timedelta | None
    postmortem_window: timedelta | None  # None: no postmortem deadline


def cadence(policy: Policy, severity: Severity) -> Cadence:
    """The severity's `update_every_minutes`, and its postmortem deadline as the card shows
    it (bot/domain/postmortem.py: 48 hours for SEV-1/2 unless the policy says otherwise;
    SEV-3/4 only when the policy gives them one)."""
    minutes = policy.update_every_minutes(severity)
    hours = due_hours(policy, severity)
    return Cadence(
        update_every=timedelta(minutes=minutes) if minutes else None,
        postmortem_window=timedelta(hours=hours) if hours else None,
    )


def utc(at: datetime) -> datetime:
    """Whole seconds in UTC; a naive time is a bug, not a guess."""
    if at.tzinfo is None:
        raise ValueError("reminder times must be timezone-aware")
    return at.astimezone(UTC).replace(microsecond=0)


def postmortem_due(recovered_at: datetime, window: timedelta) -> datetime:
    """`window` real hours after recovery, whatever the clocks on the wall did meanwhile
    (daylight saving): computed in UTC."""
    return utc(recovered_at) + window


def update_reminder_key(due_at: datetime) -> str:
    return f"update:{utc(due_at).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def plan(facts: ReminderFacts, cadence: Cadence, now: datetime) -> list[Wanted]:
    """The planned reminders the incident should have pending now (at most one per series):
    the next update reminder, and the next postmortem reminder."""
    wanted: list[Wanted] = []
    update = _next_update(facts, cadence)
    if update is not None:
        wanted.append(update)
    postmortem = _next_postmortem(facts, cadence, utc(now))
    if postmortem is not None:
        wanted.append(postmortem)
    return wanted


def _next_update(facts: ReminderFacts, cadence: Cadence) -> Wanted | None:
    """Counted from the latest status update (or the declaration), then repeated each
    interval from the last reminder; a snooze made since both sets the next one instead."""
    if facts.status not in UPDATE_STATUSES or cadence.update_every is None:
        return None
    anchor = utc(facts.declared_at)
    if facts.latest_update_at is not None:
        anchor = max(anchor, utc(facts.latest_update_at))
    reminded = [
        utc(s.sent_at)
        for s in facts.sent
        if s.kind is ReminderKind.UPDATE and utc(s.sent_at) >= anchor
    ]
    last = max(reminded) if reminded else None
    due = (last or anchor) + cadence.update_every
    snooze = facts.snooze
    if snooze is not None and utc(snooze.at) >= anchor and (last is None or snooze.at >= last):
        due = utc(snooze.until)
    return Wanted(ReminderKind.UPDATE, update_reminder_key(due), due)


def _next_postmortem(facts: ReminderFacts, cadence: Cadence, now: datetime) -> Wanted | None:
    """At half the window and at 90%, then at the deadline and daily after it. After a long
    outage only the latest point that fell due is sent (late), not every one it missed."""
    if (
        facts.status is not IncidentStatus.RECOVERED
        or cadence.postmortem_window is None
        or facts.recovered_at is None
    ):
        return None
    start, window = utc(facts.recovered_at), cadence.postmortem_window
    due = postmortem_due(start, window)
    overdue = sorted(
        (s for s in facts.sent if s.kind is ReminderKind.POSTMORTEM_OVERDUE),
        key=lambda s: s.sent_at,
    )
    if overdue:
        return Wanted(
            ReminderKind.POSTMORTEM_OVERDUE,
            f"postmortem:overdue:{len(overdue) + 1}",
            utc(overdue[-1].sent_at) + OVERDUE_EVERY,
        )
    points = [
        Wanted(ReminderKind.POSTMORTEM_HALF, "postmortem:half", start + window / 2),
        Wanted(ReminderKind.POSTMORTEM_NINETY, "postmortem:ninety", start + window * 9 / 10),
        Wanted(ReminderKind.POSTMORTEM_OVERDUE, "postmortem:overdue:1", due),
    ]
    points = [Wanted(p.kind, p.key, utc(p.due_at)) for p in points]
    sent = {s.key for s in facts.sent}
    last_sent = max((i for i, p in enumerate(points) if p.key in sent), default=-1)
    remaining = points[last_sent + 1 :]
    fallen_due = [p for p in remaining if p.due_at <= now]
    if fallen_due:
        return fallen_due[-1]
    return remaining[0] if remaining else None


def retry_delay(failures: int, delays: Sequence[timedelta] = SEND_RETRY_DELAYS) -> timedelta:
    """The wait after the `failures`-th failed send: growing, then steady; never giving up
    (a reminder stays due until it is sent or the incident moves on)."""
    return delays[min(max(failures, 1), len(delays)) - 1]


def is_late(due_at: datetime, sent_at: datetime, late_after: timedelta = LATE_AFTER) -> bool:
    return utc(sent_at) - utc(due_at) > late_after


def snooze_until(at: datetime, minutes: int) -> Snooze:
    if minutes not in SNOOZE_MINUTES:
        raise ValueError(f"snooze for {', '.join(map(str, SNOOZE_MINUTES))} minutes")
    return Snooze(at=utc(at), until=utc(at) + timedelta(minutes=minutes))
