"""Slack faults, injected by the fake Slack at the call where each really occurs, on the real
path: signed Slack requests through Bolt over HTTP, the fake Web API on loopback, SQLite in
tmp_path. Rein retries what can be retried (429 after its Retry-After, 5xx with backoff) so
the effect lands once; explains privately what cannot be done (timeouts, `not_in_channel`,
`channel_not_found`, `is_archived`, `expired_trigger_id`); picks another name on
`name_taken`; and loses nothing: the incident, its timeline and what was asked are stored
whole, and no exception escapes a listener (`no_unhandled_errors`; the fake's contract
violations are checked by conftest's `fake_slack`)."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Runtime, build_runtime
from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.domain.lifecycle import transition
from bot.domain.models import Incident
from bot.domain.reminders import ReminderState
from bot.render.evidence import ADD_EVIDENCE
from bot.render.incident import CHANGE_SEVERITY, CLOSE_INCIDENT, POST_UPDATE
from bot.render.updates import UPDATE_VIEW
from bot.render.views import IMPACT_CHANGED
from bot.slack_gateway import CHANNEL_NAME_ATTEMPTS
from handlers.declare_modal import STALE_SUGGESTION
from tests.conftest import ANNOUNCE, ORIGIN, eventually, make_settings
from tests.fakes.clock import FakeClock
from tests.fakes.slack_api import Channel, FakeSlack
from tests.slack_requests import SlackSender, ticked, typed
from tests.test_reminders import TIMINGS, Rig, reminder_id
from tests.test_timeline_capture import POSTED_TS, pins, react, seed, settled
from tests.test_updates import ANSWERS

QUICK = "declare sev2 agent:crm-writer Wrong CRM field on 300 records"
NAME = "inc-1-wrong-crm-field-on-300-records"
SLACK_TIMEOUT = 1.0  # seconds Rein waits for one Slack answer in the timeout tests
LATE = SLACK_TIMEOUT + 0.6  # a fake Slack this slow makes Rein's call time out

# Faults that pass: Slack answers properly once Rein tries again.
PASSING = {
    "429": {"retry_after": 1},
    "500": {"status": 500},
    "502": {"status": 502},
    "503": {"status": 503},
}
# Why each way the incident channel can stop taking Rein's messages is explained.
GONE_WHY = {
    "archived": "that channel is archived",
    "deleted": "Slack does not know that channel",
    "left": "Rein is not a member of that channel: invite it with /invite @Rein",
}


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def no_unhandled_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No listener, job or retry ends in an unhandled exception: nothing is logged at ERROR
    and no record carries a traceback (Rein's own warnings name the Slack failure only)."""
    caplog.set_level(logging.WARNING)
    yield
    # `caplog.records` is the current phase's (teardown: Rein stopping) only.
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    bad = [
        f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.ERROR or r.exc_info
    ]
    assert bad == [], "an exception escaped or was logged with a traceback"


@pytest.fixture(autouse=True)
def nothing_refused(fake_slack: FakeSlack) -> Iterator[None]:
    """Every message and view Rein sent while working around a fault was one Slack takes."""
    yield
    assert fake_slack.rejections == []


@asynccontextmanager
async def running(
    fake: FakeSlack, tmp_path: Path, policy: Path, **kw: Any
) -> AsyncIterator[Runtime]:
    runtime = await build_runtime(make_settings(fake, tmp_path, policy), environ={}, **kw)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@dataclass
class Slow:
    """A Rein whose Slack calls time out after SLACK_TIMEOUT seconds."""

    runtime: Runtime
    slack: SlackSender


@pytest.fixture
async def slow(
    fake_slack: FakeSlack, tmp_path: Path, policy_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[Slow]:
    async with running(fake_slack, tmp_path, policy_path, slack_timeout=SLACK_TIMEOUT) as rt:
        yield Slow(rt, SlackSender(f"http://127.0.0.1:{rt.port}/slack/events", fake_slack, http))


@pytest.fixture
async def rig(fake_slack: FakeSlack, tmp_path: Path, policy_path: Path) -> AsyncIterator[Rig]:
    """tests/test_reminders.py's rig: the real runtime with a clock the test moves."""
    async with aiohttp.ClientSession() as http:
        settings = make_settings(fake_slack, tmp_path, policy_path)
        clock = FakeClock(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
        rig = Rig(fake_slack, settings, clock, http, TIMINGS)
        await rig.start()
        try:
            yield rig
        finally:
            await rig.stop()


# ------------------------------------------------------------------------------- helpers


async def incident(rein: Runtime, number: int = 1) -> Incident:
    found = await rein.rein.incidents.get(number)
    assert found is not None
    return found


async def kinds(rein: Runtime, number: int = 1) -> list[TimelineKind]:
    return [e.kind for e in await rein.rein.incidents.timeline(number)]


async def problems(rein: Runtime, number: int = 1) -> list[str]:
    timeline = await rein.rein.incidents.timeline(number)
    return [e.text for e in timeline if e.kind is TimelineKind.SLACK_PROBLEM]


async def assert_declared_whole(rein: Runtime, severity: Severity = Severity.SEV2) -> Incident:
    """INC-1 as QUICK declared it: every field the declaration gave, and its first entry."""
    stored = await incident(rein)
    assert (stored.title, stored.agent_id, stored.severity) == (
        "Wrong CRM field on 300 records",
        "crm-writer",
        severity,
    )
    assert (stored.declared_by, stored.commander) == ("U0ALICE", "U0ALICE")
    first = (await rein.rein.incidents.timeline(1))[0]
    assert first.kind is TimelineKind.DECLARED and first.actor == "U0ALICE"
    return stored


def incident_channels(fake: FakeSlack, number: int = 1) -> list[Channel]:
    return [c for c in fake.channels.values() if c.name.startswith(f"inc-{number}-")]


def cards(fake: FakeSlack, channel: str) -> list[Any]:
    """Incident cards posted in `channel` (the card carries the Post update button)."""
    return [m for m in fake.messages[channel] if POST_UPDATE in str(m.blocks)]


def told(fake: FakeSlack, user: str = "U0ALICE") -> list[str]:
    """Everything said to `user` privately: response_url answers, ephemerals and DMs."""
    answers = [str(body.get("text")) for _, body in fake.responses if isinstance(body, dict)]
    ephemerals = [e.text or "" for e in fake.ephemerals if e.user == user]
    dms = [m.text or "" for m in fake.messages.get(user, [])]
    return answers + ephemerals + dms


async def reply(fake: FakeSlack, count: int = 1, timeout: float = 10) -> str:
    """The `count`-th response_url answer (the declare reply is the first)."""
    await eventually(lambda: len(fake.responses) >= count, timeout=timeout)
    return str(fake.responses[count - 1][1]["text"])


async def declared(slack: SlackSender, fake: FakeSlack, rein: Runtime) -> str:
    """QUICK, its room set up without faults; the incident channel id."""
    await slack.command(QUICK)
    await reply(fake)
    stored = await incident(rein)
    assert stored.channel_id is not None and stored.card_ts is not None
    return stored.channel_id


async def when_seen(fake: FakeSlack, method: str, count: int, timeout: float = 10) -> float:
    """The loop time at which the fake has recorded `count` calls to `method`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(fake.calls_to(method)) < count:
        assert loop.time() < deadline, f"{method} was not called {count} times"
        await asyncio.sleep(0.005)
    return loop.time()


async def gap_between_tries(fake: FakeSlack, method: str, start: Awaitable[Any]) -> float:
    """Run `start`; seconds between Rein's first and second call to `method`."""
    task = asyncio.ensure_future(start)
    first = await when_seen(fake, method, 1)
    second = await when_seen(fake, method, 2)
    await task
    return second - first


def waited_enough(fault: str, gap: float) -> bool:
    """429: at least Retry-After (1 s); 5xx: slack_sdk's backoff (at least 0.5 s)."""
    return gap >= (0.9 if fault == "429" else 0.4)


def gone(fake: FakeSlack, channel: str, how: str) -> None:
    """The incident channel stops taking Rein's messages, as people make it do."""
    if how == "archived":
        fake.archive(channel)
    elif how == "deleted":
        del fake.channels[channel]
    else:
        fake.channels[channel].members.discard(fake.bot_user_id)


async def submit_update(slack: SlackSender, fake: FakeSlack, *, user: str = "U0ALICE") -> None:
    """`/incident update INC-1` typed in #general, then its five prompts submitted."""
    before = len(fake.calls_to("views.open"))
    await slack.command("update INC-1", channel=ORIGIN, user=user)
    await eventually(lambda: len(fake.calls_to("views.open")) > before)
    view = fake.last("views.open").args["view"]
    assert view["callback_id"] == UPDATE_VIEW
    status, _ = await slack.submit(view, {k: typed(v) for k, v in ANSWERS.items()}, user=user)
    assert status == 200


# ------------------------------------------------ 429 and 5xx: retried, and done once


@pytest.mark.parametrize("fault", PASSING)
async def test_a_passing_fault_on_channel_creation_is_retried_and_makes_one_channel(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, fault: str
) -> None:
    fake_slack.fail("conversations.create", **PASSING[fault])
    gap = await gap_between_tries(fake_slack, "conversations.create", slack.command(QUICK))
    answer = await reply(fake_slack)

    assert waited_enough(fault, gap), gap
    assert [c.args["name"] for c in fake_slack.calls_to("conversations.create")] == [NAME, NAME]
    [channel] = incident_channels(fake_slack)
    assert channel.name == NAME  # the retry asked for the same name, not a suffixed one
    stored = await assert_declared_whole(rein)
    assert stored.channel_id == channel.id
    assert len(cards(fake_slack, channel.id)) == 1 and len(fake_slack.pins) == 1
    assert len(fake_slack.messages[ANNOUNCE]) == 1
    assert await kinds(rein) == [TimelineKind.DECLARED]  # nothing Slack would not do
    assert answer == f"INC-1 is declared as SEV-2: <#{channel.id}>."


@pytest.mark.parametrize("fault", PASSING)
async def test_a_passing_fault_on_the_card_is_retried_and_posts_one_card(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, fault: str
) -> None:
    fake_slack.fail("chat.postMessage", **PASSING[fault])  # the room's first post: the card
    gap = await gap_between_tries(fake_slack, "chat.postMessage", slack.command(QUICK))
    answer = await reply(fake_slack)

    assert waited_enough(fault, gap), gap
    stored = await assert_declared_whole(rein)
    assert stored.channel_id is not None
    first, second = fake_slack.calls_to("chat.postMessage")[:2]
    assert first.args == second.args and first.args["channel"] == stored.channel_id
    [card] = cards(fake_slack, stored.channel_id)
    assert stored.card_ts == card.ts and fake_slack.pins == [(stored.channel_id, card.ts)]
    assert [m.ts for m in fake_slack.messages[ANNOUNCE]] == [stored.digest_ts]
    assert await kinds(rein) == [TimelineKind.DECLARED]
    assert "Slack would not do everything" not in answer


async def test_a_server_error_that_lasts_is_explained_and_the_rest_of_the_room_is_set_up(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    fake_slack.fail("pins.add", status=503, times=3)  # the try and slack_sdk's two retries
    await slack.command(QUICK)
    answer = await reply(fake_slack)

    assert len(fake_slack.calls_to("pins.add")) == 3 and fake_slack.pins == []
    stored = await assert_declared_whole(rein)
    assert stored.channel_id is not None and stored.card_ts is not None
    assert len(cards(fake_slack, stored.channel_id)) == 1
    assert stored.digest_ts is not None  # the digest after the pin was still posted
    assert "Could not pin the card" in answer and "503" in answer
    assert len(await problems(rein)) == 1


# ------------------------------------------------------- timeouts: explained, never doubled


async def test_channel_creation_timing_out_is_explained_and_not_tried_again(
    slow: Slow, fake_slack: FakeSlack
) -> None:
    """A create that timed out may still have made its channel: trying again would make a
    second one. Rein says so, names the channel, and posts the card where it was typed."""
    fake_slack.fail("conversations.create", delay=LATE)
    status, answer = await slow.slack.command(QUICK)
    assert status == 200 and answer.startswith("Declared INC-1")
    text = await reply(fake_slack)

    assert len(fake_slack.calls_to("conversations.create")) == 1
    assert f"Could not create the incident channel #{NAME}" in text
    assert "did not answer in time" in text and "The card is posted here instead" in text
    stored = await assert_declared_whole(slow.runtime)
    assert stored.channel_id is None and stored.card_channel == ORIGIN
    assert len(cards(fake_slack, ORIGIN)) == 1
    assert await kinds(slow.runtime) == [TimelineKind.DECLARED, TimelineKind.SLACK_PROBLEM]
    await asyncio.sleep(LATE - SLACK_TIMEOUT + 0.2)  # the slow create lands after all
    assert len(incident_channels(fake_slack)) <= 1


async def test_a_card_edit_timing_out_is_explained_and_the_change_is_kept(
    slow: Slow, fake_slack: FakeSlack
) -> None:
    channel = await declared(slow.slack, fake_slack, slow.runtime)
    fake_slack.fail("chat.update", delay=LATE)  # the card's edit; the digest's goes through
    await slow.slack.command("sev 3 only internal records", channel=channel)
    text = await reply(fake_slack, 2)

    assert text.startswith("INC-1 is now SEV-3.")
    assert "Could not update the message" in text and "did not answer in time" in text
    stored = await assert_declared_whole(slow.runtime, Severity.SEV3)
    assert stored.status is IncidentStatus.DECLARED
    assert TimelineKind.SEVERITY_CHANGED in await kinds(slow.runtime)
    assert "SEV-3" in (fake_slack.messages[ANNOUNCE][0].text or "")


async def test_a_form_timing_out_is_explained_and_nothing_is_stored(
    slow: Slow, fake_slack: FakeSlack
) -> None:
    fake_slack.fail("views.open", delay=LATE)
    status, _ = await slow.slack.command("declare")
    assert status == 200
    text = await reply(fake_slack)

    assert text.startswith("Could not open the form") and "did not answer in time" in text
    assert await slow.runtime.rein.incidents.newest() == []


# ----------------------------------------------------------- name_taken: another name


async def test_name_taken_on_creation_picks_the_next_name(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    fake_slack.fail("conversations.create", error="name_taken")
    await slack.command(QUICK)
    answer = await reply(fake_slack)

    names = [c.args["name"] for c in fake_slack.calls_to("conversations.create")]
    assert names == [NAME, f"{NAME}-2"]
    [channel] = incident_channels(fake_slack)
    stored = await assert_declared_whole(rein)
    assert (stored.channel_id, stored.channel_name) == (channel.id, f"{NAME}-2")
    assert len(cards(fake_slack, channel.id)) == 1
    assert await kinds(rein) == [TimelineKind.DECLARED]
    assert answer == f"INC-1 is declared as SEV-2: <#{channel.id}>."


async def test_every_name_taken_is_explained_and_the_card_posted_where_typed(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    fake_slack.fail("conversations.create", error="name_taken", times=CHANNEL_NAME_ATTEMPTS)
    await slack.command(QUICK)
    answer = await reply(fake_slack)

    names = [c.args["name"] for c in fake_slack.calls_to("conversations.create")]
    assert names == [NAME] + [f"{NAME}-{n}" for n in range(2, CHANNEL_NAME_ATTEMPTS + 1)]
    assert incident_channels(fake_slack) == []
    stored = await assert_declared_whole(rein)
    assert stored.channel_id is None and stored.card_channel == ORIGIN
    assert len(cards(fake_slack, ORIGIN)) == 1
    assert "Could not create the incident channel" in answer and "taken" in answer
    assert "`name_taken`" not in answer  # said in words, not as Slack's code
    assert len(await problems(rein)) == 1


# ------------------------------------------- not_in_channel during the room's set-up


async def test_declaring_where_rein_is_not_a_member_is_explained(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    """No channel of its own (a workspace setting) and typed in a channel Rein is not in:
    the card cannot go anywhere; the incident is kept and the reply says why."""
    fake_slack.add_channel("CQUIET", "quiet", members=["U0ALICE"], bot_is_member=False)
    fake_slack.fail("conversations.create", error="restricted_action")
    status, answer = await slack.command(QUICK, channel="CQUIET")
    assert status == 200 and answer.startswith("Declared INC-1")
    text = await reply(fake_slack)

    assert "Rein is not a member of that channel: invite it with /invite @Rein" in text
    stored = await assert_declared_whole(rein)
    assert stored.card_ts is None and stored.digest_ts is not None
    assert fake_slack.messages["CQUIET"] == []
    assert len(await problems(rein)) == 2  # the channel, then the card


@pytest.mark.parametrize("method", ["pins.add", "conversations.invite"])
async def test_not_in_channel_on_pin_or_invite_is_explained_and_the_room_is_kept(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, method: str
) -> None:
    fake_slack.fail(method, error="not_in_channel")
    await slack.command(QUICK)
    text = await reply(fake_slack)

    assert "Rein is not a member of that channel" in text
    stored = await assert_declared_whole(rein)
    assert stored.channel_id is not None and stored.digest_ts is not None
    assert len(cards(fake_slack, stored.channel_id)) == 1
    assert len(fake_slack.calls_to(method)) == 1
    assert len(await problems(rein)) == 1


async def test_announce_channel_not_found_is_explained_and_the_room_is_kept(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    del fake_slack.channels[ANNOUNCE]  # deleted by an admin while Rein runs
    await slack.command(QUICK)
    text = await reply(fake_slack)

    assert "Could not post the message: Slack does not know that channel" in text
    stored = await assert_declared_whole(rein)
    assert stored.channel_id is not None and stored.card_ts is not None
    assert stored.digest_ts is None
    assert len(await problems(rein)) == 1


# ---------------------------- the incident channel archived, deleted, or Rein removed from it


@pytest.mark.parametrize("how", GONE_WHY)
async def test_a_card_refresh_into_a_gone_channel_is_explained_and_the_change_kept(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, how: str
) -> None:
    channel = await declared(slack, fake_slack, rein)
    gone(fake_slack, channel, how)
    await slack.command("sev INC-1 3 only internal records", channel=ORIGIN)
    text = await reply(fake_slack, 2)

    assert text.startswith("INC-1 is now SEV-3.\nSlack would not do everything:")
    assert GONE_WHY[how] in text
    stored = await assert_declared_whole(rein, Severity.SEV3)
    assert stored.channel_id == channel  # the incident keeps its channel
    timeline = await rein.rein.incidents.timeline(1)
    changes = [e for e in timeline if e.kind is TimelineKind.SEVERITY_CHANGED]
    assert len(changes) == 1 and "only internal records" in changes[0].text
    assert "SEV-3" in (fake_slack.messages[ANNOUNCE][0].text or "")  # the digest shows it


@pytest.mark.parametrize("how", GONE_WHY)
async def test_a_status_update_into_a_gone_channel_is_recorded_and_explained(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, how: str
) -> None:
    channel = await declared(slack, fake_slack, rein)
    gone(fake_slack, channel, how)
    await submit_update(slack, fake_slack)
    dms = await eventually(lambda: fake_slack.messages.get("U0ALICE"))

    [dm] = dms  # no ephemeral in #general: the update form has no channel, so a DM
    assert (dm.text or "").startswith("INC-1: your update is recorded.")
    assert GONE_WHY[how] in (dm.text or "")
    timeline = await rein.rein.incidents.timeline(1)
    [update] = [e for e in timeline if e.kind is TimelineKind.STATUS_UPDATE]
    assert update.actor == "U0ALICE"
    assert [update.data[k] for k in ANSWERS] == list(ANSWERS.values())
    assert any(GONE_WHY[how] in p for p in await problems(rein))
    # What could be done was: the update is in the digest's thread.
    stored = await assert_declared_whole(rein)
    thread = [m for m in fake_slack.messages[ANNOUNCE] if m.thread_ts == stored.digest_ts]
    assert len(thread) == 1 and ANSWERS["what_happened"] in str(thread[0].blocks)


@pytest.mark.parametrize("how", GONE_WHY)
async def test_a_reminder_into_a_gone_channel_goes_to_the_commander(
    rig: Rig, fake_slack: FakeSlack, how: str
) -> None:
    declared_incident = await rig.declare("sev2 agent:crm-writer Wrong CRM field")
    channel = declared_incident.channel_id
    assert channel is not None
    [row] = await rig.pending()
    gone(fake_slack, channel, how)
    await rig.advance(minutes=60)

    [dm] = await eventually(lambda: rig.posted("U0ALICE"))
    assert reminder_id(dm) == row.id
    sent = await rig.reminders.repo.get(row.id)
    assert sent is not None and sent.state is ReminderState.SENT
    entries = [e for e in await rig.timeline() if e.kind is TimelineKind.REMINDER]
    assert [e.data["channel"] for e in entries] == ["U0ALICE"]
    await asyncio.sleep(0.2)
    assert len(rig.posted("U0ALICE")) == 1  # sent once, not retried into the channel


async def test_a_pushpin_rein_cannot_read_is_explained_to_the_pinner(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein)
    seed(fake_slack, channel, "Rolled back 120 of 300 rows")
    gone(fake_slack, channel, "left")
    fake_slack.fail("conversations.history", error="not_in_channel")
    assert await react(slack, channel, POSTED_TS, user="U0BOB") == 200
    await settled()

    said = await eventually(lambda: told(fake_slack, "U0BOB"))
    assert any("Could not read the message" in s and "not a member" in s for s in said)
    assert await pins(rein) == []
    await assert_declared_whole(rein)


# ------------------------------------------ expired_trigger_id: try again, nothing stored


async def _recovered(rein: Runtime) -> None:
    """INC-1 contained, then recovered, as the buttons would leave it."""
    for status in (IncidentStatus.CONTAINED, IncidentStatus.RECOVERED):
        async with rein.rein.incidents.edit(1) as edit:
            moved = transition(edit.incident, status, actor="U0ALICE", at=rein.rein.clock())
            await edit.save(moved.incident, [moved.entry])


Opener = Callable[[SlackSender, str], Awaitable[Any]]
OPENERS: dict[str, Opener] = {
    "/incident update": lambda slack, channel: slack.command("update", channel=channel),
    "/incident postmortem": lambda slack, channel: slack.command("postmortem", channel=channel),
    "Post update": lambda slack, channel: slack.click(POST_UPDATE, "1", channel=channel),
    "Add evidence": lambda slack, channel: slack.click(ADD_EVIDENCE, "1", channel=channel),
    "Change severity": lambda slack, channel: slack.click(CHANGE_SEVERITY, "1", channel=channel),
    "Close incident": lambda slack, channel: slack.click(CLOSE_INCIDENT, "1", channel=channel),
}


@pytest.mark.parametrize("opener", OPENERS)
async def test_an_expired_trigger_says_try_again_privately_and_stores_nothing(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, opener: str
) -> None:
    channel = await declared(slack, fake_slack, rein)
    if opener == "/incident postmortem":
        await _recovered(rein)
    before = await rein.rein.incidents.timeline(1)
    said_before = len(told(fake_slack))
    fake_slack.fail("views.open", error="expired_trigger_id")
    status, _ = await OPENERS[opener](slack, channel)
    assert status == 200

    said = await eventually(lambda: told(fake_slack)[said_before:])
    assert said == ["Could not open the form: the form took too long to open; try again."]
    assert len(fake_slack.calls_to("views.open")) == 1 and fake_slack.views == []
    assert await rein.rein.incidents.timeline(1) == before
    await assert_declared_whole(rein)


async def test_an_expired_trigger_on_declare_stores_no_incident(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    fake_slack.fail("views.open", error="expired_trigger_id")
    status, answer = await slack.command("declare")
    assert status == 200 and not answer  # the ack says nothing; the answer follows
    text = await reply(fake_slack)

    assert text == "Could not open the form: the form took too long to open; try again."
    assert fake_slack.views == []
    assert await rein.rein.incidents.newest() == []
    assert fake_slack.calls_to("conversations.create") == []


# ------------------------------------------- the declare form's live redraw (views.update)


async def tick_customer_visible(slack: SlackSender, view: dict[str, Any]) -> None:
    """The declarer ticks "customer-visible" on the open declare form."""
    status, _ = await slack.interaction(
        {
            "type": "block_actions",
            "user": {"id": "U0ALICE"},
            "team": {"id": "T0000TEAM"},
            "api_app_id": "A0REIN",
            "trigger_id": "trigger.tick",
            "view": {
                **view,
                "hash": "1700000000.abc",
                "state": {
                    "values": {"impact": {IMPACT_CHANGED: ticked("customer_visible")}},
                },
            },
            "actions": [{"type": "checkboxes", "action_id": IMPACT_CHANGED, "block_id": "impact"}],
        }
    )
    assert status == 200


@pytest.mark.parametrize("fault", ["503", "hash_conflict"])
async def test_a_form_redraw_slack_refuses_is_explained_unless_a_newer_one_follows(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, fault: str
) -> None:
    await slack.command("declare")
    await eventually(lambda: fake_slack.views)
    opened = fake_slack.views[-1]
    if fault == "503":
        fake_slack.fail("views.update", status=503, times=3)  # the try and two retries
    else:  # the declarer ticked again meanwhile: Slack refuses the older redraw
        fake_slack.fail("views.update", error="hash_conflict")
    await tick_customer_visible(slack, opened)
    await eventually(lambda: fake_slack.calls_to("views.update"), timeout=10)
    await settled()

    if fault == "503":
        said = await eventually(lambda: told(fake_slack))
        assert said == [
            "Could not update the form: Slack kept answering with a server error (HTTP 503) "
            f"as Rein retried. {STALE_SUGGESTION}"
        ]
    else:
        assert told(fake_slack) == []
    assert await rein.rein.incidents.newest() == []
