"""Reminders through the real path: signed Slack requests through Bolt over HTTP, the fake
Slack, the real scheduler, and a clock the test moves (tests/fakes/clock.py) instead of
sleeping. Moving the clock is followed by `rearm`, which rebuilds the scheduler's jobs from
the rows exactly as start-up does. The pure planning (cadence, postmortem points, daylight
saving) is tested at the end without any of that."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot.app import Runtime, build_runtime
from bot.config import Settings
from bot.context import Rein
from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.domain.lifecycle import transition
from bot.domain.models import Incident, NewIncident, TimelineEntry
from bot.domain.policy import Policy
from bot.domain.reminders import (
    Cadence,
    Reminder,
    ReminderFacts,
    ReminderKind,
    ReminderState,
    SentReminder,
    Snooze,
    Wanted,
    cadence,
    is_late,
    plan,
    postmortem_due,
    retry_delay,
    snooze_until,
)
from bot.render.incident import POST_UPDATE
from bot.render.postmortem import START_POSTMORTEM
from bot.render.reminders import Composed, snooze_action
from bot.render.triage import DECLARE_ALERT
from bot.render.updates import UPDATE_VIEW
from bot.services.reminders import Reminders, ReminderTimings
from storage.db import Database
from storage.incidents import IncidentRepo
from storage.reminders import ReminderRepo
from tests.conftest import API_TOKEN, eventually, make_settings
from tests.fakes.clock import FakeClock
from tests.fakes.slack_api import FakeSlack, Message
from tests.slack_requests import SlackSender, typed

ANSWERS = {
    "what_happened": "crm-writer overwrote the industry field on 300 accounts",
    "what_was_affected": "300 CRM accounts",
    "what_was_done": "Runs paused and writes revoked",
}
SEV2_EVERY = timedelta(minutes=60)
SEV1_EVERY = timedelta(minutes=30)


# ------------------------------------------------------------------------------ the rig


@dataclass
class Rig:
    fake: FakeSlack
    settings: Settings
    clock: FakeClock
    http: aiohttp.ClientSession
    timings: ReminderTimings
    runtime: Runtime | None = None
    slack: SlackSender | None = None

    async def start(self) -> None:
        self.runtime = await build_runtime(
            self.settings, environ={}, clock=self.clock, reminder_timings=self.timings
        )
        await self.runtime.start()
        url = f"http://127.0.0.1:{self.runtime.port}/slack/events"
        self.slack = SlackSender(url, self.fake, self.http)

    async def stop(self) -> None:
        if self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            await runtime.stop()

    @property
    def rein(self) -> Rein:
        assert self.runtime is not None
        return self.runtime.rein

    @property
    def reminders(self) -> Reminders:
        assert self.rein.reminders is not None
        return self.rein.reminders

    @property
    def sender(self) -> SlackSender:
        assert self.slack is not None
        return self.slack

    async def advance(self, **delta: float) -> None:
        """Time passes: the clock moves and the jobs are rebuilt from the rows."""
        self.clock.advance(**delta)
        await self.reminders.rearm()

    async def declare(self, text: str, user: str = "U0ALICE", planned: int = 1) -> Incident:
        before = len(self.fake.responses)
        status, answer = await self.sender.command(f"declare {text}", user=user)
        assert status == 200 and str(answer).startswith("Declared INC-"), answer
        await eventually(lambda: len(self.fake.responses) > before)
        incident = (await self.rein.incidents.newest())[0]
        assert incident.channel_id is not None
        if planned:
            await self.wait_planned(incident.number, planned)
        return incident

    async def rows(self, number: int = 1) -> list[Reminder]:
        return await self.reminders.repo.for_incident(number)

    async def pending(self, number: int = 1) -> list[Reminder]:
        return [r for r in await self.rows(number) if r.state is ReminderState.PENDING]

    async def wait_planned(self, number: int = 1, count: int = 1) -> list[Reminder]:
        async def planned() -> list[Reminder] | None:
            pending = await self.pending(number)
            return pending if len(pending) == count else None

        return await eventually(planned)

    def posted(self, channel: str) -> list[Message]:
        """Reminder messages in `channel`, oldest first."""
        return [m for m in self.fake.messages[channel] if reminder_id(m) is not None]

    async def transition(self, number: int, to: IncidentStatus, actor: str = "U0ALICE") -> None:
        """However a status is reached (buttons, commands, the postmortem), it is this."""
        async with self.rein.incidents.edit(number) as edit:
            moved = transition(edit.incident, to, actor=actor, at=self.clock())
            await edit.save(moved.incident, [moved.entry])

    async def timeline(self, number: int = 1) -> list[TimelineEntry]:
        return await self.rein.incidents.timeline(number)


def reminder_id(message: Message) -> int | None:
    first = (message.blocks or [{}])[0].get("block_id", "")
    return int(first.rsplit("-", 1)[1]) if first.startswith("rein-reminder-") else None


def shown(message: Message | dict[str, Any]) -> str:
    if isinstance(message, Message):
        return (message.text or "") + json.dumps(message.blocks or [], ensure_ascii=False)
    return str(message.get("text") or "") + json.dumps(message.get("blocks") or [])


def buttons(blocks: list[dict] | None) -> dict[str, dict]:
    return {
        element["text"]["text"]: element
        for block in blocks or []
        if block["type"] == "actions"
        for element in block["elements"]
    }


def start_of(tz: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))  # type: ignore[misc]


TIMINGS = ReminderTimings()  # production delays: with the test's clock they cost no waiting


@pytest.fixture
async def rig(fake_slack: FakeSlack, tmp_path: Path, policy_path: Path) -> AsyncIterator[Rig]:
    async with aiohttp.ClientSession() as http:
        rig = Rig(
            fake_slack,
            make_settings(fake_slack, tmp_path, policy_path),
            FakeClock(datetime(2026, 11, 24, 9, 0, tzinfo=UTC)),
            http,
            TIMINGS,
        )
        await rig.start()
        try:
            yield rig
        finally:
            await rig.stop()


async def submit_update(rig: Rig, channel: str) -> None:
    before = len(rig.fake.calls_to("views.open"))
    await rig.sender.command("update", channel=channel)
    await eventually(lambda: len(rig.fake.calls_to("views.open")) > before)
    view = rig.fake.last("views.open").args["view"]
    assert view["callback_id"] == UPDATE_VIEW
    status, _ = await rig.sender.submit(view, {k: typed(v) for k, v in ANSWERS.items()})
    assert status == 200


# --------------------------------------------------------------------- update cadence


async def test_declaring_plans_an_update_reminder_counted_from_the_declaration(rig: Rig) -> None:
    incident = await rig.declare("sev2 agent:crm-writer Wrong CRM field")
    [row] = await rig.pending()
    assert row.kind is ReminderKind.UPDATE
    assert row.due_at == incident.declared_at + SEV2_EVERY  # type: ignore[operator]
    assert row.id in rig.reminders.runner.armed  # type: ignore[union-attr]
    # Nothing is sent before its time.
    await rig.advance(minutes=59)
    await asyncio.sleep(0.2)
    assert rig.posted(incident.channel_id) == []  # type: ignore[arg-type]


async def test_sev4_gets_no_update_reminders(rig: Rig) -> None:
    await rig.declare("sev4 agent:crm-writer Odd phrasing in one email", planned=0)
    await asyncio.sleep(0.2)
    assert await rig.rows() == []


async def test_due_reminder_mentions_the_commander_with_post_update_and_snooze_and_repeats(
    rig: Rig,
) -> None:
    incident = await rig.declare("sev2 agent:crm-writer Wrong CRM field")
    channel = incident.channel_id
    assert channel is not None
    await rig.advance(minutes=60)
    [message] = await eventually(lambda: rig.posted(channel))
    text = shown(message)
    assert "<@U0ALICE>" in text and "no status update since" in text.lower()
    assert "<!date^" in text and " UTC>" in text  # each reader's time zone; UTC fallback
    assert "late" not in text
    shown_buttons = buttons(message.blocks)
    assert list(shown_buttons) == ["Post update", "Snooze 15 min", "Snooze 30 min", "Snooze 60 min"]
    assert shown_buttons["Post update"]["action_id"] == POST_UPDATE
    assert shown_buttons["Post update"]["value"] == str(incident.number)
    sent = next(r for r in await rig.rows() if r.state is ReminderState.SENT)
    assert sent.message_ts == message.ts and sent.channel == channel and not sent.late
    entry = [e for e in await rig.timeline() if e.kind is TimelineKind.REMINDER][-1]
    assert entry.actor == "rein" and entry.data["reminder"] == sent.id
    # Repeated each interval until an update is posted.
    [following] = await rig.wait_planned()
    assert following.due_at == rig.clock() + SEV2_EVERY
    await rig.advance(minutes=60)
    await eventually(lambda: len(rig.posted(channel)) == 2)
    # Its Post update button is the card's: it opens the update form.
    await rig.sender.click(POST_UPDATE, str(incident.number), channel=channel)
    await eventually(lambda: rig.fake.calls_to("views.open"))
    assert rig.fake.last("views.open").args["view"]["callback_id"] == UPDATE_VIEW


async def test_a_posted_update_cancels_the_reminder_and_the_count_restarts_from_it(
    rig: Rig,
) -> None:
    incident = await rig.declare("sev2 agent:crm-writer Wrong CRM field")
    channel = incident.channel_id
    assert channel is not None
    [first] = await rig.pending()
    await rig.advance(minutes=40)
    await submit_update(rig, channel)

    async def moved() -> Reminder | None:
        pending = await rig.pending()
        return pending[0] if pending and pending[0].id != first.id else None

    second = await eventually(moved)
    assert second.due_at == rig.clock() + SEV2_EVERY
    cancelled = next(r for r in await rig.rows() if r.id == first.id)
    assert cancelled.state is ReminderState.CANCELLED and "replaced" in (
        cancelled.cancel_reason or ""
    )
    assert first.id not in rig.reminders.runner.armed  # type: ignore[union-attr]
    # The old due time passes quietly; the new one is 60 minutes after the update.
    await rig.advance(minutes=30)
    await asyncio.sleep(0.2)
    assert rig.posted(channel) == []
    await rig.advance(minutes=30)
    [message] = await eventually(lambda: rig.posted(channel))
    assert reminder_id(message) == second.id


async def test_snooze_sets_the_next_reminder_and_shows_who_snoozed(rig: Rig) -> None:
    incident = await rig.declare("sev1 agent:crm-writer Emails to every customer")
    channel = incident.channel_id
    assert channel is not None
    await rig.advance(minutes=30)
    [message] = await eventually(lambda: rig.posted(channel))
    # Someone who is not on the incident may not snooze it.
    status, _ = await rig.sender.click(
        snooze_action(15), "1", user="U0MALLORY", channel=channel, message_ts=message.ts
    )
    assert status == 200
    refusal = await eventually(lambda: [e for e in rig.fake.ephemerals if e.user == "U0MALLORY"])
    assert "Only the commander" in (refusal[0].text or "")
    [regular] = await rig.wait_planned()
    assert regular.due_at == rig.clock() + SEV1_EVERY
    # The commander snoozes for 15 minutes: the next reminder comes then, not in 30.
    before = len(rig.fake.responses)
    await rig.sender.click(snooze_action(15), "1", channel=channel, message_ts=message.ts)
    await eventually(lambda: len(rig.fake.responses) > before)
    answer = rig.fake.responses[-1][1]
    assert answer["replace_original"] is True
    assert "<@U0ALICE> snoozed the update reminder for 15 minutes" in shown(answer)
    assert list(buttons(answer["blocks"])) == ["Post update"]

    async def snoozed() -> Reminder | None:
        pending = await rig.pending()
        return pending[0] if pending and pending[0].id != regular.id else None

    row = await eventually(snoozed)
    assert row.due_at == rig.clock() + timedelta(minutes=15)
    entry = [e for e in await rig.timeline() if e.kind is TimelineKind.REMINDER_SNOOZED][-1]
    assert entry.actor == "U0ALICE" and entry.data["minutes"] == 15
    await rig.advance(minutes=15)
    await eventually(lambda: len(rig.posted(channel)) == 2)
    # After the snoozed one, the cadence is back to every 30 minutes.
    [after] = await rig.wait_planned()
    assert after.due_at == rig.clock() + SEV1_EVERY


async def test_severity_change_reschedules_and_sev4_cancels(rig: Rig) -> None:
    incident = await rig.declare("sev2 agent:crm-writer Wrong CRM field")
    channel = incident.channel_id
    assert channel is not None and incident.declared_at is not None
    await rig.sender.command("sev 1 it reached customers", channel=channel)

    async def due_at(expected: datetime) -> bool:
        pending = await rig.pending()
        return len(pending) == 1 and pending[0].due_at == expected

    await eventually(lambda: due_at(incident.declared_at + SEV1_EVERY))  # type: ignore[operator]
    await rig.sender.command("sev 4 only one email went out", channel=channel)
    await eventually(lambda: _none_pending(rig))
    assert {r.state for r in await rig.rows()} == {ReminderState.CANCELLED}


async def _none_pending(rig: Rig) -> bool:
    return not await rig.pending()


async def test_contained_keeps_reminding_and_recovered_or_closed_cancels(rig: Rig) -> None:
    incident = await rig.declare("sev3 agent:crm-writer Cost loop")
    channel = incident.channel_id
    assert channel is not None
    [row] = await rig.pending()
    await rig.sender.command("contain", channel=channel)
    await eventually(lambda: _status(rig, IncidentStatus.CONTAINED))
    await asyncio.sleep(0.2)  # contained: the reminder stays as it was
    assert [r.id for r in await rig.pending()] == [row.id]
    await rig.transition(1, IncidentStatus.RECOVERED)
    await eventually(lambda: _none_pending(rig))
    assert (await rig.rows())[0].state is ReminderState.CANCELLED
    await rig.advance(hours=5)
    await asyncio.sleep(0.2)
    assert rig.posted(channel) == []  # SEV-3: no postmortem reminders either


async def test_an_alert_gets_update_reminders_once_it_is_declared(rig: Rig) -> None:
    assert rig.runtime is not None
    url = f"http://127.0.0.1:{rig.runtime.port}/v1/alerts"
    alert = {"agent": "crm-writer", "kind": "anomaly", "summary": "Odd writes", "severity": "sev2"}
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with rig.http.post(url, json=alert, headers=headers) as answer:
        assert answer.status == 201
    await asyncio.sleep(0.2)
    assert await rig.rows() == []  # in triage: nobody has declared it
    status, _ = await rig.sender.click(DECLARE_ALERT, "1", user="U0BOB")
    assert status == 200
    [row] = await rig.wait_planned()
    incident = await rig.rein.incidents.get(1)
    assert incident is not None and incident.declared_at is not None
    assert row.kind is ReminderKind.UPDATE and row.due_at == incident.declared_at + SEV2_EVERY


async def test_a_reminder_whose_incident_moved_on_is_cancelled_when_its_job_fires(
    rig: Rig,
) -> None:
    """Even if the change's own re-planning never happened (Rein died right after the
    commit), the claim re-plans first: a reminder that is no longer wanted is not sent."""
    incident = await rig.declare("sev2 agent:crm-writer Wrong CRM field")
    channel = incident.channel_id
    assert channel is not None
    [row] = await rig.pending()
    quiet = IncidentRepo(rig.rein.db)  # no listener: nothing re-plans after this change
    async with quiet.edit(1) as edit:
        moved = transition(edit.incident, IncidentStatus.CONTAINED, actor="U0ALICE", at=rig.clock())
        await edit.save(moved.incident, [moved.entry])
    async with quiet.edit(1) as edit:
        moved = transition(edit.incident, IncidentStatus.RECOVERED, actor="U0ALICE", at=rig.clock())
        await edit.save(moved.incident, [moved.entry])
    assert [r.id for r in await rig.pending()] == [row.id]  # stale, still armed
    await rig.advance(minutes=60)
    await eventually(lambda: _state(rig, row.id, ReminderState.CANCELLED))
    assert rig.posted(channel) == []
    # SEV-2 and recovered: the postmortem's first reminder took its place.
    [postmortem] = await rig.pending()
    assert postmortem.kind is ReminderKind.POSTMORTEM_HALF


async def _state(rig: Rig, reminder_id: int, state: ReminderState) -> bool:
    row = await rig.reminders.repo.get(reminder_id)
    return row is not None and row.state is state


# --------------------------------------------------------------------- postmortem


async def test_postmortem_reminders_at_half_ninety_then_overdue_daily_until_done(
    rig: Rig,
) -> None:
    incident = await rig.declare("sev1 agent:crm-writer Emails to every customer")
    channel = incident.channel_id
    assert channel is not None
    await rig.sender.command("contain", channel=channel)
    await eventually(lambda: _status(rig, IncidentStatus.CONTAINED))
    await rig.transition(1, IncidentStatus.RECOVERED)
    recovered = rig.clock()
    [half] = await eventually(lambda: _pending_of(rig, ReminderKind.POSTMORTEM_HALF))
    assert (half.kind, half.due_at) == (
        ReminderKind.POSTMORTEM_HALF,
        recovered + timedelta(hours=24),
    )
    await rig.advance(hours=24)
    [first] = await eventually(lambda: rig.posted(channel))
    assert "The postmortem is due" in shown(first) and "Half of its 48-hour window" in shown(first)
    assert buttons(first.blocks)["Start postmortem"]["action_id"] == START_POSTMORTEM
    [ninety] = await rig.wait_planned()
    assert ninety.due_at == recovered + timedelta(hours=43, minutes=12)
    await rig.advance(hours=19, minutes=12)
    await eventually(lambda: len(rig.posted(channel)) == 2)
    assert "90% of its 48-hour window" in shown(rig.posted(channel)[1])
    [overdue] = await rig.wait_planned()
    assert overdue.due_at == recovered + timedelta(hours=48)
    await rig.advance(hours=4, minutes=48)
    await eventually(lambda: len(rig.posted(channel)) == 3)
    notice = shown(rig.posted(channel)[2])
    # The commander and the SEV-1 approvers (a user group and a user), in the channel.
    assert "overdue" in notice and "<@U0ALICE>" in notice
    assert "<!subteam^S0SECOPS>" in notice and "<@U0CTO>" in notice
    [again] = await rig.wait_planned()
    assert again.kind is ReminderKind.POSTMORTEM_OVERDUE
    assert again.due_at == rig.clock() + timedelta(days=1)
    await rig.advance(days=1)
    await eventually(lambda: len(rig.posted(channel)) == 4)
    # Completed: the incident leaves `recovered`; the next notice is cancelled.
    await rig.transition(1, IncidentStatus.POSTMORTEM)
    await eventually(lambda: _none_pending(rig))
    await rig.advance(days=2)
    await asyncio.sleep(0.2)
    assert len(rig.posted(channel)) == 4


async def _pending_of(rig: Rig, kind: ReminderKind) -> list[Reminder]:
    return [r for r in await rig.pending() if r.kind is kind]


async def _status(rig: Rig, status: IncidentStatus) -> bool:
    incident = await rig.rein.incidents.get(1)
    return incident is not None and incident.status is status


# ----------------------------------------------------------------- faults and restarts


async def test_due_while_rein_was_down_is_sent_once_at_start_marked_late(rig: Rig) -> None:
    incident = await rig.declare("sev2 agent:crm-writer Wrong CRM field")
    channel = incident.channel_id
    assert channel is not None
    [row] = await rig.pending()
    await rig.stop()
    rig.clock.advance(hours=3)  # Rein is down while it falls due
    await rig.start()
    [message] = await eventually(lambda: rig.posted(channel))
    assert reminder_id(message) == row.id
    assert "late: due at <!date^" in shown(message)
    sent = await rig.reminders.repo.get(row.id)
    assert sent is not None and sent.state is ReminderState.SENT and sent.late
    entry = [e for e in await rig.timeline() if e.kind is TimelineKind.REMINDER][-1]
    assert "late: due at" in entry.text and entry.data["late"] is True
    # Once: another restart sends nothing more (the next one is an hour away).
    await rig.stop()
    await rig.start()
    await asyncio.sleep(0.3)
    assert len(rig.posted(channel)) == 1


async def test_slack_500_when_a_reminder_fires_keeps_it_due_and_it_is_retried(rig: Rig) -> None:
    incident = await rig.declare("sev2 agent:crm-writer Wrong CRM field")
    channel = incident.channel_id
    assert channel is not None
    [row] = await rig.pending()
    rig.fake.fail("chat.postMessage", status=500, times=3)  # slack_sdk itself retries twice

    async def failed_once() -> Reminder | None:
        current = await rig.reminders.repo.get(row.id)
        return current if current is not None and current.attempts == 1 else None

    await rig.advance(minutes=60)
    failed = await eventually(failed_once, timeout=10)
    assert failed.state is ReminderState.PENDING and failed.sent_at is None
    assert failed.last_error == "http_500" and failed.in_doubt  # a 5xx may have posted it
    assert failed.next_try_at == rig.clock() + timedelta(seconds=10)
    assert rig.posted(channel) == []
    assert row.id in rig.reminders.runner.armed  # type: ignore[union-attr]
    # Its next try: Slack is asked first whether it arrived after all (it did not).
    await rig.advance(seconds=10)
    [message] = await eventually(lambda: rig.posted(channel))
    assert reminder_id(message) == row.id
    assert rig.fake.calls_to("conversations.history")
    sent = await rig.reminders.repo.get(row.id)
    assert sent is not None and sent.state is ReminderState.SENT and sent.attempts == 1
    await asyncio.sleep(0.2)
    assert len(rig.posted(channel)) == 1


async def test_racing_timers_send_a_reminder_once(rig: Rig) -> None:
    incident = await rig.declare("sev2 agent:crm-writer Wrong CRM field")
    channel = incident.channel_id
    assert channel is not None
    [row] = await rig.pending()
    rig.clock.advance(minutes=60)  # due, and its own job is armed for later: fire it by hand
    await asyncio.gather(*(rig.reminders.fire(row.id) for _ in range(5)))
    await rig.reminders.rearm()  # and the scheduler's job as well
    await asyncio.sleep(0.3)
    assert len(rig.posted(channel)) == 1
    posts = [
        c
        for c in rig.fake.calls_to("chat.postMessage")
        if (c.args.get("blocks") or [{}])[0].get("block_id") == f"rein-reminder-{row.id}"
    ]
    assert len(posts) == 1


async def test_two_connections_racing_for_one_claim_get_it_once(rig: Rig) -> None:
    """Two senders on separate connections (as two processes would be): BEGIN IMMEDIATE
    lets one claim; the other finds it taken."""
    await rig.declare("sev2 agent:crm-writer Wrong CRM field")
    [row] = await rig.pending()
    other = await Database.open(rig.rein.db.path)
    try:
        now = rig.clock() + timedelta(minutes=60)
        mine, theirs = ReminderRepo(rig.rein.db), ReminderRepo(other)

        def keep(facts: ReminderFacts) -> list[Wanted]:
            return [Wanted(row.kind, row.key, row.due_at)]

        results = await asyncio.gather(
            *(
                repo.claim(row.id, f"sender-{i}", now, keep)
                for i, repo in enumerate([mine, theirs, mine, theirs])
            )
        )
    finally:
        await other.close()
    winners = [r.reminder for r in results if r.reminder is not None]
    assert len(winners) == 1 and winners[0].state is ReminderState.SENDING


async def test_incidents_without_reminders_are_planned_at_start(
    fake_slack: FakeSlack, tmp_path: Path, policy_path: Path
) -> None:
    """Declared just before a crash (or before reminders existed): start-up plans them."""
    settings = make_settings(fake_slack, tmp_path, policy_path)
    clock = FakeClock(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    db = await Database.open(settings.REIN_DB_PATH)
    await db.migrate()
    declared = clock() - timedelta(minutes=10)
    await IncidentRepo(db).create(
        NewIncident(
            title="Loop", agent_id="crm-writer", severity=Severity.SEV1, declared_by="U0BOB"
        ),
        status=IncidentStatus.DECLARED,
        commander="U0BOB",
        entry=TimelineEntry(
            at=declared, actor="U0BOB", kind=TimelineKind.DECLARED, text="Declared"
        ),
    )
    await db.close()
    async with aiohttp.ClientSession() as http:
        rig = Rig(fake_slack, settings, clock, http, TIMINGS)
        await rig.start()
        try:
            [row] = await rig.wait_planned()
            assert row.due_at == declared + SEV1_EVERY
        finally:
            await rig.stop()


async def test_outside_text_is_escaped_in_reminders(rig: Rig) -> None:
    incident = await rig.declare("sev2 agent:crm-writer Wrong <!channel> field for <@U0CEO>")
    channel = incident.channel_id
    assert channel is not None
    await rig.advance(minutes=60)
    [message] = await eventually(lambda: rig.posted(channel))
    text = shown(message)
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text and "<@U0CEO>" not in text


# ----------------------------------------------------------- scheduled (restart gate)


async def test_scheduled_reminder_says_its_payload_and_repeats_until_cancelled(rig: Rig) -> None:
    incident = await rig.declare("sev4 agent:crm-writer Odd phrasing in one email", planned=0)
    channel = incident.channel_id
    assert channel is not None
    first = await rig.reminders.schedule(
        1,
        ReminderKind.GATE_STAGE,
        "stage:1:shadow",
        rig.clock(),
        payload={"text": "Stage *shadow* has its clean runs", "mention": ["U0HEADOPS", "S0SECOPS"]},
        repeat_every=timedelta(days=1),
    )
    assert first is not None
    [message] = await eventually(lambda: rig.posted(channel))
    assert "Stage *shadow* has its clean runs" in shown(message)
    assert "<@U0HEADOPS> <!subteam^S0SECOPS>" in shown(message)
    [again] = await rig.wait_planned()
    assert again.kind is ReminderKind.GATE_STAGE
    assert again.due_at == first.due_at + timedelta(days=1)
    # The same key again is refused while one is live (or once it was sent).
    assert (
        await rig.reminders.schedule(1, ReminderKind.GATE_STAGE, "stage:1:shadow", rig.clock())
        is None
    )
    await rig.advance(days=1)
    await eventually(lambda: len(rig.posted(channel)) == 2)
    assert await rig.reminders.cancel(1, [ReminderKind.GATE_STAGE], "stage promoted") == 1
    assert await rig.pending() == []
    # Planned kinds are not anyone's to schedule.
    with pytest.raises(ValueError):
        await rig.reminders.schedule(1, ReminderKind.UPDATE, "update:x", rig.clock())


async def test_a_composer_decides_the_words_when_sent_or_ends_the_reminder(rig: Rig) -> None:
    incident = await rig.declare("sev4 agent:crm-writer Odd phrasing in one email", planned=0)
    channel = incident.channel_id
    assert channel is not None
    left = {"criteria": 2}

    async def say(reminder: Reminder, incident: Incident) -> Composed | None:
        if not left["criteria"]:
            return None  # the gate was decided: nothing more to say
        text = f"{incident.ref}: {left['criteria']} criteria left"
        return Composed(text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}])

    rig.reminders.compose_with(ReminderKind.GATE_DAILY, say)
    first = await rig.reminders.schedule(
        1, ReminderKind.GATE_DAILY, "gate:1", rig.clock(), repeat_every=timedelta(days=1)
    )
    assert first is not None
    [message] = await eventually(lambda: rig.posted(channel))
    assert "INC-1: 2 criteria left" in shown(message)
    assert reminder_id(message) == first.id  # Rein marks the first block
    [again] = await rig.wait_planned()
    left["criteria"] = 0
    await rig.advance(days=1)
    await eventually(lambda: _state(rig, again.id, ReminderState.CANCELLED))
    assert len(rig.posted(channel)) == 1 and await rig.pending() == []


async def test_closing_cancels_every_pending_reminder(rig: Rig) -> None:
    await rig.declare("sev4 agent:crm-writer Odd phrasing in one email", planned=0)
    await rig.reminders.schedule(
        1, ReminderKind.GATE_STAGE, "gate:stage:shadow", rig.clock() + timedelta(hours=1)
    )
    await rig.transition(1, IncidentStatus.CLOSED)
    await eventually(lambda: _none_pending(rig))
    [row] = await rig.rows()
    assert row.state is ReminderState.CANCELLED and row.cancel_reason == "the incident is over"


# ------------------------------------------------------------------- pure planning

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
SEV2 = Cadence(update_every=SEV2_EVERY, postmortem_window=timedelta(hours=48))


def facts(**overrides: Any) -> ReminderFacts:
    values: dict[str, Any] = {
        "status": IncidentStatus.DECLARED,
        "severity": Severity.SEV2,
        "declared_at": T0,
    }
    values.update(overrides)
    return ReminderFacts(**values)


def test_a_postmortem_due_across_daylight_saving_is_48_real_hours() -> None:
    # New York springs forward on 2026-03-08: the wall clock shows 49 hours, time 48.
    recovered = start_of("America/New_York", 2026, 3, 7, 12, 0)
    due = postmortem_due(recovered, timedelta(hours=48))
    assert due.tzinfo is UTC and due - recovered == timedelta(hours=48)
    assert due.astimezone(ZoneInfo("America/New_York")).hour == 13
    # Berlin falls back on 2026-10-25: the wall clock shows 47 hours, time 48.
    recovered = start_of("Europe/Berlin", 2026, 10, 24, 12, 0)
    due = postmortem_due(recovered, timedelta(hours=48))
    assert due - recovered == timedelta(hours=48)
    assert due.astimezone(ZoneInfo("Europe/Berlin")).hour == 11
    # The reminders across the change are real hours too.
    wanted = plan(facts(status=IncidentStatus.RECOVERED, recovered_at=recovered), SEV2, recovered)
    assert wanted == [
        Wanted(
            ReminderKind.POSTMORTEM_HALF,
            "postmortem:half",
            recovered.astimezone(UTC) + timedelta(hours=24),
        )
    ]
    with pytest.raises(ValueError):
        postmortem_due(datetime(2026, 3, 7, 12, 0), timedelta(hours=48))


def test_update_cadence_counts_from_the_latest_update_then_each_reminder() -> None:
    assert plan(facts(), SEV2, T0) == [
        Wanted(ReminderKind.UPDATE, "update:2026-11-24T10:00:00Z", T0 + SEV2_EVERY)
    ]
    updated = T0 + timedelta(minutes=45)
    [wanted] = plan(facts(latest_update_at=updated), SEV2, updated)
    assert wanted.due_at == updated + SEV2_EVERY
    # A reminder sent before the update belongs to the old count.
    half_hour = T0 + timedelta(minutes=30)
    old = SentReminder(ReminderKind.UPDATE, "u", half_hour, half_hour)
    [wanted] = plan(facts(latest_update_at=updated, sent=(old,)), SEV2, updated)
    assert wanted.due_at == updated + SEV2_EVERY
    # One sent since: the next is an interval after it (after a late one, from when it went).
    late = SentReminder(ReminderKind.UPDATE, "u", T0 + SEV2_EVERY, T0 + timedelta(hours=3))
    [wanted] = plan(facts(sent=(late,)), SEV2, T0)
    assert wanted.due_at == T0 + timedelta(hours=4)
    # Contained still reminds; every other status does not; nor a severity without cadence.
    assert plan(facts(status=IncidentStatus.CONTAINED), SEV2, T0)
    for status in (IncidentStatus.TRIAGE, IncidentStatus.RECOVERED, IncidentStatus.CLOSED):
        assert [
            w for w in plan(facts(status=status), SEV2, T0) if w.kind is ReminderKind.UPDATE
        ] == []
    assert plan(facts(), Cadence(None, None), T0) == []


def test_a_snooze_sets_the_next_update_reminder_until_the_next_update_or_reminder() -> None:
    sent = SentReminder(ReminderKind.UPDATE, "u", T0 + SEV2_EVERY, T0 + SEV2_EVERY)
    snooze = snooze_until(T0 + timedelta(minutes=61), 15)
    assert snooze == Snooze(T0 + timedelta(minutes=61), T0 + timedelta(minutes=76))
    [wanted] = plan(facts(sent=(sent,), snooze=snooze), SEV2, T0)
    assert wanted.due_at == snooze.until
    # The snoozed reminder went: back to the interval.
    again = SentReminder(ReminderKind.UPDATE, "v", snooze.until, snooze.until)
    [wanted] = plan(facts(sent=(sent, again), snooze=snooze), SEV2, T0)
    assert wanted.due_at == snooze.until + SEV2_EVERY
    # An update after the snooze: counted from the update.
    updated = T0 + timedelta(minutes=70)
    [wanted] = plan(facts(sent=(sent,), snooze=snooze, latest_update_at=updated), SEV2, T0)
    assert wanted.due_at == updated + SEV2_EVERY
    with pytest.raises(ValueError):
        snooze_until(T0, 20)


def test_postmortem_points_and_what_is_sent_after_an_outage() -> None:
    recovered = facts(status=IncidentStatus.RECOVERED, recovered_at=T0)
    half = Wanted(ReminderKind.POSTMORTEM_HALF, "postmortem:half", T0 + timedelta(hours=24))
    ninety = Wanted(
        ReminderKind.POSTMORTEM_NINETY, "postmortem:ninety", T0 + timedelta(hours=43, minutes=12)
    )
    overdue = Wanted(
        ReminderKind.POSTMORTEM_OVERDUE, "postmortem:overdue:1", T0 + timedelta(hours=48)
    )
    assert plan(recovered, SEV2, T0) == [half]
    # Rein was down past half and 90%: only the latest point that fell due goes, late.
    assert plan(recovered, SEV2, T0 + timedelta(hours=45)) == [ninety]
    assert plan(recovered, SEV2, T0 + timedelta(hours=60)) == [overdue]

    def sent(w: Wanted, at: datetime) -> SentReminder:
        return SentReminder(w.kind, w.key, w.due_at, at)

    done_half = recovered.__class__(**{**recovered.__dict__, "sent": (sent(half, half.due_at),)})
    assert plan(done_half, SEV2, half.due_at) == [ninety]
    # Overdue: daily from the last notice, numbered.
    notice = sent(overdue, T0 + timedelta(hours=50))
    later = recovered.__class__(**{**recovered.__dict__, "sent": (notice,)})
    assert plan(later, SEV2, T0 + timedelta(hours=50)) == [
        Wanted(ReminderKind.POSTMORTEM_OVERDUE, "postmortem:overdue:2", T0 + timedelta(hours=74))
    ]
    # The deadline the card shows: SEV-1/2 48 hours by default, SEV-3/4 only if the policy
    # gives them one; and reminders only while recovered.
    policy = Policy.model_validate(
        {"agents": [{"id": "a", "name": "A", "owner": "U0OWNER"}], "severities": {}}
    )
    assert cadence(policy, Severity.SEV1).postmortem_window == timedelta(hours=48)
    assert cadence(policy, Severity.SEV3).postmortem_window is None
    assert cadence(policy, Severity.SEV4).update_every is None
    configured = Policy.model_validate(
        {
            "agents": [{"id": "a", "name": "A", "owner": "U0OWNER"}],
            "severities": {
                "sev2": {"postmortem_due_hours": 72},
                "sev3": {"postmortem_due_hours": 24},
            },
        }
    )
    assert cadence(configured, Severity.SEV2).postmortem_window == timedelta(hours=72)
    assert cadence(configured, Severity.SEV3).postmortem_window == timedelta(hours=24)
    assert plan(facts(status=IncidentStatus.POSTMORTEM, recovered_at=T0), SEV2, T0) == []


def test_retry_delays_grow_then_hold_and_late_means_over_a_minute() -> None:
    delays = [retry_delay(n).total_seconds() for n in range(1, 9)]
    assert delays == [10, 30, 60, 120, 300, 300, 300, 300]
    assert not is_late(T0, T0 + timedelta(seconds=60))
    assert is_late(T0, T0 + timedelta(seconds=61))
