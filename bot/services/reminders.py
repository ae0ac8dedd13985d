"""Reminders: kept in line with each incident's state, and sent once when due.

- After every committed change to an incident (`IncidentRepo` tells `changed`), its planned
  reminders are re-derived from its state (`sync` → `ReminderRepo.reconcile` → the domain's
  `plan`): the next update reminder while it is declared or contained, the next postmortem
  reminder while a SEV-1/2 is recovered; anything else pending is cancelled, never sent.
- When one is due, `fire` claims it (reconciling first, in the same transaction), posts it,
  and saves it as sent with its timeline entry. If Slack fails, the claim is released and the
  reminder retried with backoff: it stays due. A reminder whose send was cut short (Rein
  killed, Slack's answer lost) is looked for in the channel's history before it is posted
  again.
- At start-up, claims left by a dead process are released (in doubt), every live row gets
  its job, and incidents with no planned reminder are planned (in the background)."""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.clock import Clock
from bot.debounce import Debouncer
from bot.domain.enums import IncidentStatus, TimelineKind
from bot.domain.models import Incident, TimelineEntry
from bot.domain.policy import Policy
from bot.domain.reminders import (
    LATE_AFTER,
    SEND_RETRY_DELAYS,
    UPDATE_STATUSES,
    Reminder,
    ReminderFacts,
    ReminderKind,
    ReminderState,
    Wanted,
    cadence,
    is_late,
    plan,
    postmortem_due,
    retry_delay,
    snooze_until,
)
from bot.foreground import Foreground
from bot.render import reminders as render
from bot.render.text import user as mention
from bot.scheduler import ReminderRunner
from bot.services.authorise import Refused, authorise, known_incident
from bot.slack_gateway import SlackGateway, SlackProblem
from bot.slack_reads import find_marked
from storage.db import to_db_time
from storage.incidents import IncidentRepo
from storage.reminders import Planner, Reconciled, ReminderRepo
from storage.timeline import TimelineRepo

logger = logging.getLogger(__name__)

SNOOZE_ACTION = "snooze the update reminders of"
# Slack answered nothing usable: the message may have been posted all the same.
_DOUBTFUL = ("unreachable", "http_5", "internal_error", "fatal_error", "request_timeout")
# Slack cannot be asked right now; anything else means it cannot be asked at all.
_TRANSIENT = ("unreachable", "ratelimited", "http_5", "internal_error", "fatal_error")
# The incident channel will not take it: the commander gets it directly instead.
_CHANNEL_GONE = ("not_in_channel", "is_archived", "channel_not_found")
# How far before its due time a send cut short is looked for (clocks differ a little).
LOOKBACK = timedelta(minutes=2)

Composer = Callable[[Reminder, Incident], Awaitable[render.Composed | None]]


@dataclass(frozen=True)
class ReminderTimings:
    """Reminder timing; tests shorten it, production keeps these."""

    retry_delays: tuple[timedelta, ...] = SEND_RETRY_DELAYS
    late_after: timedelta = LATE_AFTER
    sync_delay: float = 0.0  # seconds: changes to one incident this close make one sync


REMINDER_TIMINGS = ReminderTimings()


def _starts(code: str, prefixes: Sequence[str]) -> bool:
    return any(code.startswith(p) for p in prefixes)


class Reminders:
    """The reminder service Rein holds (`rein.reminders`); the runtime attaches `runner`."""

    def __init__(
        self,
        repo: ReminderRepo,
        *,
        incidents: IncidentRepo,
        timeline: TimelineRepo,
        slack: SlackGateway,
        policy: Policy,
        clock: Clock,
        timings: ReminderTimings = REMINDER_TIMINGS,
        foreground: Foreground | None = None,
    ) -> None:
        self.repo = repo
        self._incidents = incidents
        self._timeline = timeline
        self._slack = slack
        self._policy = policy
        self._clock = clock
        self._timings = timings
        self.runner: ReminderRunner | None = None
        # Names this process's claims: a claim left by another (dead) one is released.
        self._claim = uuid.uuid4().hex
        self._syncs = Debouncer(self._sync_quietly, timings.sync_delay, foreground=foreground)
        self._composers: dict[ReminderKind, Composer] = {}
        self._sweep: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Release the claims of a process that died mid-send, arm a job for every live row,
        then plan, in the background, incidents that have none."""
        released = await self.repo.release_stale_claims(self._clock())
        if released:
            logger.warning(
                "%d reminders were being sent when Rein stopped: checking Slack", released
            )
        assert self.runner is not None, "the runtime attaches the reminder runner"
        self.runner.start(await self.repo.live())
        self._sweep = asyncio.get_running_loop().create_task(self._plan_unplanned())

    async def stop(self, grace_seconds: float) -> None:
        if self._sweep is not None and not self._sweep.done():
            self._sweep.cancel()
        await self._syncs.stop(grace_seconds)
        if self.runner is not None:
            await self.runner.stop(grace_seconds)

    async def rearm(self) -> None:
        """Rebuild every job from the rows (what start-up does); after the clock jumped."""
        assert self.runner is not None
        self.runner.rearm(await self.repo.live())

    async def _plan_unplanned(self) -> None:
        try:
            numbers = await self.repo.unplanned_incidents()
            for number in numbers:
                await self.sync(number)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("could not plan the reminders of open incidents at start-up")

    # -------------------------------------------------------------- planning

    def changed(self, number: int) -> None:
        """An incident changed (committed): its reminders are re-derived shortly."""
        self._syncs.poke(number)

    async def sync(self, number: int) -> Reconciled:
        """Bring the incident's planned reminders in line with its state, now."""
        now = self._clock()
        changes = await self.repo.reconcile(number, self._planner(now), now)
        self._apply(changes)
        return changes

    async def _sync_quietly(self, number: int) -> None:
        await self.sync(number)

    def _planner(self, now: datetime) -> Planner:
        policy = self._policy

        def planner(facts: ReminderFacts) -> list[Wanted]:
            return plan(facts, cadence(policy, facts.severity), now)

        return planner

    def _apply(self, changes: Reconciled) -> None:
        if self.runner is None:
            return
        for reminder_id in changes.cancelled:
            self.runner.disarm(reminder_id)
        for reminder in changes.added:
            self.runner.arm(reminder)

    # ---------------------------------------------------------------- sending

    async def fire(self, reminder_id: int) -> None:
        """The reminder's time has come: claim it, then send it (or find it sent)."""
        now = self._clock()
        try:
            claimed = await self.repo.claim(reminder_id, self._claim, now, self._planner(now))
        except Exception:
            # Nothing was claimed (the transaction rolled back): the row stays pending.
            logger.exception("reminder %s could not be claimed", reminder_id)
            if self.runner is not None:
                self.runner.arm_in(reminder_id, self._timings.retry_delays[0])
            return
        self._apply(claimed.changes)
        reminder = claimed.reminder
        if reminder is None:
            current = claimed.current
            if current is not None and current.state is ReminderState.PENDING and self.runner:
                self.runner.arm(current)  # not due yet by Rein's clock
            return
        try:
            await self._send(reminder, now)
        except Exception as exc:
            # Whatever went wrong, the reminder must not stay claimed until the next start.
            logger.exception("reminder %s failed unexpectedly", reminder.id)
            await self._failed(reminder, now, f"error: {type(exc).__name__}", in_doubt=True)

    async def _send(self, reminder: Reminder, now: datetime) -> None:
        incident = await self._incidents.get(reminder.incident)
        if incident is None:
            await self._failed(reminder, now, "the incident is missing", in_doubt=False)
            return
        where = incident.channel_id or incident.card_channel or incident.commander
        late = is_late(reminder.due_at, now, self._timings.late_after)
        if reminder.in_doubt:
            try:
                # Never posted before it was due: its history starts there.
                oldest = (reminder.due_at - LOOKBACK).timestamp()
                ts = await find_marked(self._slack, where, reminder.marker, oldest)
            except SlackProblem as problem:
                if _starts(problem.code, _TRANSIENT):
                    await self._failed(reminder, now, problem.code, in_doubt=True)
                    return
                logger.warning(
                    "%s: cannot tell whether reminder %s reached Slack (%s); sending it",
                    incident.ref,
                    reminder.id,
                    problem.code,
                )
                ts = None
            if ts is not None:
                # Its message is there: it was sent by the process that died.
                sent_late = is_late(
                    reminder.due_at, reminder.claimed_at or now, self._timings.late_after
                )
                await self._sent(reminder, incident, now, where, ts, late=sent_late, found=True)
                return
        composed = await self._compose(reminder, incident, late)
        if composed is None:  # its owner has nothing to say any more: it is over
            if await self.repo.drop(reminder, "nothing to say when it fell due", now):
                logger.info("%s: reminder %s dropped by its composer", incident.ref, reminder.id)
            return
        try:
            channel, ts = await self._post(incident, where, composed)
        except SlackProblem as problem:
            await self._failed(
                reminder, now, problem.code, in_doubt=_starts(problem.code, _DOUBTFUL)
            )
            return
        await self._sent(reminder, incident, self._clock(), channel, ts, late=late)

    async def _post(
        self, incident: Incident, where: str, composed: render.Composed
    ) -> tuple[str, str]:
        try:
            return where, await self._slack.post(where, composed.text, composed.blocks)
        except SlackProblem as problem:
            if where == incident.commander or problem.code not in _CHANNEL_GONE:
                raise
            logger.warning(
                "%s: the channel refused a reminder (%s); sending it to the commander",
                incident.ref,
                problem.code,
            )
        dm = incident.commander
        return dm, await self._slack.post(dm, composed.text, composed.blocks)

    async def _sent(
        self,
        reminder: Reminder,
        incident: Incident,
        now: datetime,
        channel: str,
        ts: str,
        *,
        late: bool,
        found: bool = False,
    ) -> None:
        text = render.sent_entry_text(reminder, incident, late)
        if found:
            text += " (found in Slack after a restart)"
        entry = TimelineEntry(
            at=now,
            actor="rein",
            kind=TimelineKind.REMINDER,
            text=text,
            data={
                "reminder": reminder.id,
                "kind": reminder.kind.value,
                "key": reminder.key,
                "due_at": to_db_time(reminder.due_at),
                "late": late,
                "channel": channel,
                "ts": ts,
                "found_after_restart": found,
            },
        )
        changes = await self.repo.mark_sent(
            reminder,
            now=now,
            channel=channel,
            ts=ts,
            late=late,
            entry=entry,
            planner=self._planner(now),
        )
        if changes is None:
            logger.warning("reminder %s was sent but no longer claimed by Rein", reminder.id)
            return
        self._apply(changes)

    async def _failed(
        self, reminder: Reminder, now: datetime, error: str, *, in_doubt: bool
    ) -> None:
        """Not sent: still due, tried again after a growing delay."""
        delay = retry_delay(reminder.attempts + 1, self._timings.retry_delays)
        logger.warning(
            "INC-%d: reminder %s not sent (%s); trying again in %ds",
            reminder.incident,
            reminder.id,
            error,
            int(delay.total_seconds()),
        )
        released = await self.repo.release(
            reminder, now=now, next_try_at=now + delay, error=error, in_doubt=in_doubt
        )
        if released is not None and self.runner is not None:
            self.runner.arm(released)

    async def _compose(
        self, reminder: Reminder, incident: Incident, late: bool
    ) -> render.Composed | None:
        composer = self._composers.get(reminder.kind)
        if composer is None:
            occasion = await self._occasion(reminder, incident, late)
            return render.compose(reminder, incident, occasion)
        composed = await composer(reminder, incident)
        return render.marked(reminder, composed) if composed is not None else None

    async def _occasion(
        self, reminder: Reminder, incident: Incident, late: bool
    ) -> render.Occasion:
        rules = cadence(self._policy, incident.severity)
        if reminder.kind is ReminderKind.UPDATE:
            latest = await self._timeline.latest(incident.number, TimelineKind.STATUS_UPDATE)
            since = latest.at if latest else incident.declared_at or incident.created_at
            return render.Occasion(since=since, every=rules.update_every, late=late)
        if reminder.kind.planned:  # the postmortem's
            recovered = await self._incidents.last_transition_to(
                incident.number, IncidentStatus.RECOVERED
            )
            window = rules.postmortem_window
            due = postmortem_due(recovered.at, window) if recovered and window else None
            return render.Occasion(
                postmortem_due=due,
                window=window,
                approvers=tuple(self._policy.approvers(incident.severity)),
                late=late,
            )
        return render.Occasion(late=late)

    # -------------------------------------------------------------- snoozing

    async def snooze(self, number: int, minutes: int, *, actor: str) -> tuple[Incident, datetime]:
        """Someone on the incident asks for the next update reminder in `minutes`."""
        incident = await known_incident(number, self._incidents)
        if incident.status not in UPDATE_STATUSES:
            raise Refused(f"{incident.ref} is {incident.status}: it gets no update reminders now.")
        if cadence(self._policy, incident.severity).update_every is None:
            raise Refused(
                f"{incident.ref} is {incident.severity.label}: it gets no update reminders."
            )
        await authorise(
            actor,
            incident,
            SNOOZE_ACTION,
            incidents=self._incidents,
            slack=self._slack,
            policy=self._policy,
            clock=self._clock,
        )
        now = self._clock()
        snooze = snooze_until(now, minutes)
        entry = TimelineEntry(
            at=now,
            actor=actor,
            kind=TimelineKind.REMINDER_SNOOZED,
            text=f"{mention(actor)} snoozed the update reminder for {minutes} minutes",
            data={"minutes": minutes, "until": to_db_time(snooze.until)},
        )
        self._apply(await self.repo.reconcile(number, self._planner(now), now, [entry]))
        return incident, snooze.until

    # ---------------------------------------------- scheduled reminders (restart gate)

    def compose_with(self, kind: ReminderKind, composer: Composer) -> None:
        """What a scheduled kind says, decided when it is sent (the gate's unchecked
        criteria, say); returning None sends nothing and cancels it (and its repeats).
        Without one, the reminder says its `payload.text`. Rein marks the first block with
        the reminder's id, so a send cut short is found again."""
        self._composers[kind] = composer

    async def schedule(
        self,
        number: int,
        kind: ReminderKind,
        key: str,
        due_at: datetime,
        *,
        payload: dict[str, Any] | None = None,
        repeat_every: timedelta | None = None,
    ) -> Reminder | None:
        """A scheduled reminder (restart gate): sent at `due_at`, then every `repeat_every`
        until `cancel` or the incident's end; None when `key` is live or was sent."""
        reminder = await self.repo.schedule(
            number, kind, key, due_at, self._clock(), payload=payload, repeat_every=repeat_every
        )
        if reminder is not None and self.runner is not None:
            self.runner.arm(reminder)
        return reminder

    async def cancel(self, number: int, kinds: Sequence[ReminderKind], reason: str) -> int:
        """Cancel the incident's pending scheduled reminders of `kinds`."""
        cancelled = await self.repo.cancel_scheduled(number, kinds, reason, self._clock())
        self._apply(Reconciled(cancelled=tuple(cancelled)))
        return len(cancelled)
