"""A real Rein process (`python -m bot run`, as tests/test_cli.py starts it) killed with
SIGKILL while it sends due reminders, then started again: every due reminder reaches Slack
exactly once. None lost, none doubled.

The database is prepared the way an earlier Rein run would have left it, with Rein's own
repositories and planner: incidents declared hours ago whose update reminders fell due while
Rein was down, a recovered SEV-1 whose postmortem reminder is due, a restart-gate reminder,
and two reminders that a dead process had claimed (one of whose messages reached Slack).
The fake Slack answers the first few chat.postMessage calls at once and holds the next ones
for seconds, so the kill lands with reminders sent, reminders mid-send (their messages reach
Slack after Rein is dead, unrecorded) and reminders not yet started."""

import asyncio
import signal
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from bot.clock import utc_now
from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.domain.lifecycle import transition
from bot.domain.models import NewIncident, TimelineEntry
from bot.domain.reminders import (
    ReminderFacts,
    ReminderKind,
    ReminderState,
    Wanted,
    cadence,
    marker,
    plan,
)
from bot.policy import load_policy
from storage.db import Database
from storage.incidents import IncidentRepo
from storage.reminders import ReminderRepo
from tests.conftest import POLICY, assert_no_secrets, eventually
from tests.fakes.slack_api import FakeSlack, Message
from tests.test_cli import CLEAN_ENV, full_env

UPDATES_DUE = 14  # more than Rein sends at once (8): some wait their turn when it is killed
FAST_FIRST = 3  # chat.postMessage calls answered at once: sent and recorded before the kill
HELD = 4  # the next calls are held this many at a time ...
HOLD_SECONDS = 4.0  # ... this long: in flight when Rein is killed


async def prepare(db_path: str, fake: FakeSlack) -> dict[int, str]:
    """The rows an earlier Rein left; returns each due reminder's id and channel."""
    db = await Database.open(db_path)
    try:
        await db.migrate()
        incidents, reminders = IncidentRepo(db), ReminderRepo(db)
        policy = load_policy(str(POLICY))
        now = utc_now()

        def planner(facts: ReminderFacts) -> list[Wanted]:
            return plan(facts, cadence(policy, facts.severity), now)

        async def incident(severity: Severity, ago: timedelta) -> tuple[int, str]:
            declared = now - ago
            created, _ = await incidents.create(
                NewIncident(
                    title="Wrong CRM field",
                    agent_id="crm-writer",
                    severity=severity,
                    declared_by="U0ALICE",
                ),
                status=IncidentStatus.DECLARED,
                commander="U0ALICE",
                entry=TimelineEntry(
                    at=declared, actor="U0ALICE", kind=TimelineKind.DECLARED, text="Declared"
                ),
            )
            channel = f"C0INC{created.number:04d}"
            fake.add_channel(channel, f"inc-{created.number}", members=["U0ALICE"])
            await incidents.set_slack_refs(created.number, channel_id=channel)
            return created.number, channel

        due: dict[int, str] = {}
        for _ in range(UPDATES_DUE):  # SEV-2: every 60 minutes; declared 2 hours ago
            number, channel = await incident(Severity.SEV2, timedelta(hours=2))
            for row in (await reminders.reconcile(number, planner, now)).added:
                due[row.id] = channel
        # A SEV-1 recovered 30 hours ago: half its 48-hour window passed 6 hours ago.
        number, channel = await incident(Severity.SEV1, timedelta(hours=31))
        for to in (IncidentStatus.CONTAINED, IncidentStatus.RECOVERED):
            async with incidents.edit(number) as edit:
                moved = transition(edit.incident, to, actor="U0ALICE", at=now - timedelta(hours=30))
                await edit.save(moved.incident, [moved.entry])
        [half] = (await reminders.reconcile(number, planner, now)).added
        assert half.kind is ReminderKind.POSTMORTEM_HALF and half.due_at < now
        due[half.id] = channel
        # A restart-gate notice (a scheduled kind) in its words, repeated daily.
        stage = await reminders.schedule(
            number,
            ReminderKind.GATE_STAGE,
            "stage:1:shadow",
            now - timedelta(minutes=5),
            now,
            payload={"text": "Stage shadow has its clean runs", "mention": ["U0HEADOPS"]},
            repeat_every=timedelta(days=1),
        )
        assert stage is not None
        due[stage.id] = channel
        # Two reminders a dead process had claimed; the first one's message reached Slack.
        for reached in (True, False):
            number, channel = await incident(Severity.SEV2, timedelta(hours=2))
            [row] = (await reminders.reconcile(number, planner, now)).added
            claimed = await reminders.claim(row.id, "a-process-that-died", now, planner)
            assert claimed.reminder is not None
            if reached:
                fake.messages[channel].append(
                    Message(
                        ts=f"{now.timestamp():.6f}",
                        text="INC: a status update is due",
                        blocks=[
                            {
                                "type": "section",
                                "block_id": marker(row.id),
                                "text": {"type": "mrkdwn", "text": "status update due"},
                            }
                        ],
                        thread_ts=None,
                        user=fake.bot_user_id,
                    )
                )
            due[row.id] = channel
        return due
    finally:
        await db.close()


def reminder_posts(fake: FakeSlack) -> list[str]:
    """The marker of every chat.postMessage call that carried a reminder."""
    found = []
    for call in fake.calls_to("chat.postMessage"):
        blocks = call.args.get("blocks") or []
        first = blocks[0].get("block_id", "") if blocks and isinstance(blocks[0], dict) else ""
        if first.startswith("rein-reminder-"):
            found.append(first)
    return found


def reminder_messages(fake: FakeSlack, channel: str, reminder_id: int) -> list[Message]:
    return [
        m
        for m in fake.messages[channel]
        if m.blocks and m.blocks[0].get("block_id") == marker(reminder_id)
    ]


async def states(db_path: str) -> dict[int, tuple[ReminderState, bool, bool]]:
    """Each reminder's state, and whether it is due now, and late, read as another process."""
    db = await Database.open(db_path)
    try:
        repo = ReminderRepo(db)
        ids = [int(row[0]) for row in await db.fetchall("SELECT id FROM reminders")]
        rows = [r for r in [await repo.get(i) for i in ids] if r is not None]
    finally:
        await db.close()
    now = utc_now()
    return {r.id: (r.state, r.due_at <= now, r.late) for r in rows}


async def start(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    handle = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            env={**CLEAN_ENV, **env},
            cwd=log.parent,
            stdout=handle,
            stderr=handle,
        )
    finally:
        handle.close()


async def healthy(port: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    pytest.fail("rein run did not start serving")


async def test_sigkill_mid_send_then_restart_sends_every_due_reminder_exactly_once(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    env = full_env(fake_slack, tmp_path)
    db_path = env["REIN_DB_PATH"]
    due = await prepare(db_path, fake_slack)
    assert len(due) == UPDATES_DUE + 4
    fake_slack.fail("chat.postMessage", times=FAST_FIRST)  # a fault with no error: answered
    fake_slack.fail("chat.postMessage", delay=HOLD_SECONDS, times=HELD)
    log = tmp_path / "rein.log"

    first = await start(env, log)
    try:
        await healthy(env["REIN_PORT"])

        async def mid_send() -> bool:
            if len(fake_slack.calls_to("chat.postMessage")) < FAST_FIRST + HELD:
                return False
            return any(s is ReminderState.SENT for s, _, _ in (await states(db_path)).values())

        await eventually(mid_send, timeout=20)
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    assert first.returncode == -signal.SIGKILL

    at_kill = await states(db_path)
    ours = {i: at_kill[i] for i in due}
    assert any(s is ReminderState.SENT for s, _, _ in ours.values()), log.read_text()
    assert any(s is ReminderState.SENDING for s, _, _ in ours.values()), "nothing was mid-send"
    assert any(s is ReminderState.PENDING for s, _, _ in ours.values()), "nothing was waiting"
    # The held calls reach Slack after Rein died: posted, but not recorded as sent.
    await asyncio.sleep(HOLD_SECONDS + 0.5)

    second = await start(env, log)
    try:
        await healthy(env["REIN_PORT"])

        async def all_sent() -> bool:
            now = await states(db_path)
            return all(now[i][0] is ReminderState.SENT for i in due)

        await eventually(all_sent, timeout=30)
        await asyncio.sleep(1.0)  # nothing more may arrive
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 20)
    assert second.returncode == 0, log.read_text()

    posts = reminder_posts(fake_slack)
    for reminder_id, channel in due.items():
        # Exactly one message in Slack, and at most one call that posted it (the message a
        # dead process had already posted is found, not posted again).
        assert len(reminder_messages(fake_slack, channel, reminder_id)) == 1, reminder_id
        assert posts.count(marker(reminder_id)) <= 1, reminder_id
    assert posts.count(marker(max(due))) == 1  # the claimed one that never reached Slack
    assert len(posts) == len(set(posts)), "a reminder was posted twice"
    final = await states(db_path)
    assert all(final[i][2] for i in due), "every one of them fell due long before: late"
    # None lost: nothing due is left behind; what is pending now is the next ones, later.
    leftover = [i for i, (s, is_due, _) in final.items() if s is ReminderState.PENDING and is_due]
    assert leftover == []
    db = await Database.open(db_path)
    try:
        numbers = {int(row[0]) for row in await db.fetchall("SELECT incident FROM reminders")}
        found = [
            e
            for number in sorted(numbers)
            for e in await IncidentRepo(db).timeline(number)
            if e.kind is TimelineKind.REMINDER and e.data.get("found_after_restart")
        ]
    finally:
        await db.close()
    # The mid-send ones and the dead process's one were found in Slack, not posted again.
    assert len(found) >= 2
    assert_no_secrets(log.read_text(), "the log of both rein run processes")
