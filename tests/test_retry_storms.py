"""Slack's retry storms: every Events API event delivered three times produces one effect.

Slack sends the same body again with `X-Slack-Retry-Num` / `X-Slack-Retry-Reason`, signed
afresh each time (a new `X-Slack-Request-Timestamp`). Here the :pushpin: reaction (a message on
the timeline, and one private confirmation) is delivered that way in order, all at once, and
while the first delivery is still waiting on Slack; an original that never got through is
still processed once; and the deduplication holds for any event type, across a restart, and
over Socket Mode. Real HTTP on loopback, Bolt, SQLite and the fake Slack Web API.
"""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from bot.app import Runtime, build_runtime
from tests.conftest import eventually, make_settings, socket_command
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SlackSender
from tests.test_signatures import Recorder
from tests.test_timeline_capture import (
    POSTED_TS,
    declared_channel,
    pins,
    react,
    said_to,
    seed,
    send_event,
    settled,
)

JSON = "application/json"
# When Slack sends each delivery after an http_timeout: at once (3 s on), then a minute later.
# Shifted into the past so all three are inside the five-minute signature window now.
SCHEDULE = (-63, -60, 0)


async def pin_body(
    fake: FakeSlack, channel: str, *, user: str = "U0ALICE", event_id: str = "Ev0STORM"
) -> str:
    """The body of one :pushpin: event, as the other tests build it; Slack sends these very
    bytes on every retry."""
    rec = Recorder(fake)
    await react(rec, channel, POSTED_TS, user=user, event_id=event_id)
    assert rec.kept is not None
    return rec.kept.body


async def deliver(slack: SlackSender, body: str, attempt: int, *, signed_at: int) -> int:
    """Delivery `attempt` (0: the original), signed for `signed_at` as Slack signs it."""
    retry = {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_timeout"}
    status, _ = await slack.post(
        body, content_type=JSON, timestamp=signed_at, headers=retry if attempt else None
    )
    return status


def schedule() -> Iterator[tuple[int, int]]:
    now = int(time.time())
    return ((attempt, now + offset) for attempt, offset in enumerate(SCHEDULE))


async def storm_in_order(slack: SlackSender, body: str) -> list[int]:
    return [await deliver(slack, body, n, signed_at=at) for n, at in schedule()]


async def storm_at_once(slack: SlackSender, body: str) -> list[int]:
    return list(
        await asyncio.gather(*(deliver(slack, body, n, signed_at=at) for n, at in schedule()))
    )


async def room(rein: Runtime, slack: SlackSender, fake: FakeSlack) -> str:
    channel = await declared_channel(rein, slack, "sev3 agent:crm-writer Wrong field")
    seed(fake, channel, "Kill switch confirmed at 09:40")
    await settled()
    return channel


async def assert_one_effect(rein: Runtime, fake: FakeSlack, *, reads: int = 1) -> None:
    """One timeline entry, one confirmation, and (the listener ran once) one read of Slack."""
    await eventually(lambda: pins(rein))
    await settled()
    assert len(await pins(rein)) == 1
    assert len(said_to(fake, "U0ALICE")) == 1
    assert len(fake.calls_to("conversations.history")) == reads


# --- the storm ------------------------------------------------------------------------------


async def test_three_deliveries_in_order_are_one_effect(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    body = await pin_body(fake_slack, await room(rein, slack, fake_slack))
    assert await storm_in_order(slack, body) == [200, 200, 200]
    await assert_one_effect(rein, fake_slack)


async def test_three_deliveries_at_once_are_one_effect(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    body = await pin_body(fake_slack, await room(rein, slack, fake_slack))
    assert await storm_at_once(slack, body) == [200, 200, 200]
    await assert_one_effect(rein, fake_slack)


async def test_retries_arriving_while_the_first_is_still_working_are_answered_at_once(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    """The first delivery's listener waits on a slow Slack; the retries are answered 200
    before it is done, and do not start the work again."""
    body = await pin_body(fake_slack, await room(rein, slack, fake_slack))
    fake_slack.fail("conversations.history", delay=2.0)  # then answered normally
    (_, first), *retries = list(schedule())
    assert await deliver(slack, body, 0, signed_at=first) == 200
    await eventually(lambda: fake_slack.calls_to("conversations.history"))  # it is working
    assert [await deliver(slack, body, n, signed_at=at) for n, at in retries] == [200, 200]
    # Every delivery was answered while the first one's read of Slack was still pending.
    assert await pins(rein) == [] and said_to(fake_slack, "U0ALICE") == []
    await assert_one_effect(rein, fake_slack)


async def test_any_event_type_runs_its_listener_once(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    """Deduplication is Rein-wide, not the pushpin's: an event type Rein does not subscribe
    to today, with a listener added now, also runs once per event_id."""
    seen: list[str] = []

    @rein.bolt.event("app_mention")
    async def mentioned(body: dict[str, Any]) -> None:
        seen.append(body["event_id"])

    rec = Recorder(fake_slack)
    mention = {"type": "app_mention", "user": "U0ALICE", "text": "<@UREINBOT> hi"}
    await send_event(rec, {**mention, "channel": "CGENERAL", "ts": POSTED_TS}, event_id="Ev0M1")
    assert rec.kept is not None
    assert await storm_in_order(slack, rec.kept.body) == [200, 200, 200]
    await send_event(rec, {**mention, "channel": "CGENERAL", "ts": POSTED_TS}, event_id="Ev0M2")
    assert await storm_at_once(slack, rec.kept.body) == [200, 200, 200]
    await settled()
    assert seen == ["Ev0M1", "Ev0M2"]


# --- originals that never got through -------------------------------------------------------


async def test_an_original_refused_for_its_signature_is_processed_by_its_retry(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    body = await pin_body(fake_slack, await room(rein, slack, fake_slack))
    (_, first), *retries = list(schedule())
    status, _ = await slack.post(
        body, content_type=JSON, timestamp=first, signature="v0=" + "0" * 64
    )
    assert status == 401
    assert [await deliver(slack, body, n, signed_at=at) for n, at in retries] == [200, 200]
    await assert_one_effect(rein, fake_slack)


async def test_an_original_that_failed_inside_rein_is_processed_by_its_retry(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    """A 5xx before any listener ran leaves no trace: Slack's retry runs, even when it comes
    byte for byte the same (the same second, so the same signature); the one after is a
    duplicate."""
    crashes = ["Ev0STORM"]

    @rein.bolt.use
    async def crash_once(body: dict[str, Any], next_: Any) -> None:
        if body.get("event_id") in crashes:
            crashes.remove(body["event_id"])
            raise RuntimeError("simulated failure before any listener ran")
        await next_()

    body = await pin_body(fake_slack, await room(rein, slack, fake_slack))
    (_, first), _, (_, last) = list(schedule())
    assert await deliver(slack, body, 0, signed_at=first) == 500
    assert await deliver(slack, body, 1, signed_at=first) == 200  # identical bytes and headers
    assert await deliver(slack, body, 2, signed_at=last) == 200
    await assert_one_effect(rein, fake_slack)


async def test_a_retry_after_a_restart_adds_nothing(
    fake_slack: FakeSlack, tmp_path: Path, policy_path: Path
) -> None:
    """Rein's memory of events is lost on restart; the timeline's own idempotency still makes
    the retry a no-op (Slack is read again, nothing is added or said)."""
    settings = make_settings(fake_slack, tmp_path, policy_path)
    body = ""
    for attempt, signed_at in list(schedule())[:2]:
        runtime = await build_runtime(settings, environ={})
        await runtime.start()
        try:
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{runtime.port}/slack/events"
                slack = SlackSender(url, fake_slack, http)
                if not body:
                    body = await pin_body(fake_slack, await room(runtime, slack, fake_slack))
                assert await deliver(slack, body, attempt, signed_at=signed_at) == 200
                await eventually(lambda rt=runtime: pins(rt))  # type: ignore[misc]
                await settled()
                assert len(await pins(runtime)) == 1
        finally:
            await runtime.stop()
    assert len(said_to(fake_slack, "U0ALICE")) == 1
    assert len(fake_slack.calls_to("conversations.history")) == 2


# --- people, and Socket Mode ----------------------------------------------------------------


async def test_two_people_pinning_in_a_storm_get_one_entry_and_one_confirmation(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    """Two events (two pins) each delivered three times, all at once: the message is on the
    timeline once, credited to whoever pinned first, and only that person is told; a second
    pin stays quiet (bot/services/capture.py, handlers/timeline_capture.py)."""
    channel = await room(rein, slack, fake_slack)
    alice = await pin_body(fake_slack, channel, user="U0ALICE", event_id="Ev0ALICE")
    carol = await pin_body(fake_slack, channel, user="U0CAROL", event_id="Ev0CAROL")
    statuses = await asyncio.gather(storm_at_once(slack, alice), storm_at_once(slack, carol))
    assert statuses == [[200, 200, 200], [200, 200, 200]]
    await eventually(lambda: pins(rein))
    await settled()
    [entry] = await pins(rein)
    assert entry.actor in ("U0ALICE", "U0CAROL")
    assert len(said_to(fake_slack, entry.actor)) == 1
    other = "U0CAROL" if entry.actor == "U0ALICE" else "U0ALICE"
    assert said_to(fake_slack, other) == []
    assert len(fake_slack.calls_to("conversations.history")) == 2  # one per event, not per try


async def test_socket_mode_redeliveries_are_one_effect(
    socket_rein: Runtime,
    fake_slack: FakeSlack,
) -> None:
    """Socket Mode has no signatures, but Slack redelivers there too (a new envelope, the same
    event_id): the same deduplication applies."""
    await fake_slack.wait_socket_connected()
    text = "declare sev3 agent:crm-writer Wrong field"
    await fake_slack.socket_deliver("slash_commands", socket_command(text, fake_slack))

    async def channel() -> str | None:
        incident = await socket_rein.rein.incidents.get(1)
        return incident.channel_id if incident else None

    seed(fake_slack, await eventually(channel), "Kill switch confirmed at 09:40")
    await settled()
    body = await pin_body(fake_slack, await channel() or "")
    payload = json.loads(body)
    acks = [await fake_slack.socket_deliver("events_api", payload)]
    acks += await asyncio.gather(*(fake_slack.socket_deliver("events_api", payload) for _ in "ab"))
    assert len(acks) == 3
    await assert_one_effect(socket_rein, fake_slack)
