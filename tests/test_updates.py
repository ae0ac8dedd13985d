"""Plain communication through the real path (signed Slack requests through Bolt over HTTP,
the fake Slack): Post update and its five prompts, the automated one-line channel status
(merged, rate-limit friendly, not lost over a restart), and `/incident timeline` pages."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Runtime, build_runtime
from bot.debounce import Debouncer
from bot.domain.enums import IncidentStatus, TimelineKind
from bot.domain.lifecycle import transition
from bot.domain.models import TimelineEntry
from bot.domain.updates import PART_MAX, PROMPTS
from bot.render.incident import POST_UPDATE
from bot.render.updates import TIMELINE_PAGE, TIMELINE_PAGE_SIZE
from bot.services.surfaces import refresh_surfaces
from tests.conftest import ANNOUNCE, ORIGIN, eventually, make_settings
from tests.fakes.slack_api import FakeSlack, Message
from tests.slack_requests import SlackSender, typed

DEBOUNCE = 1.0  # seconds of quiet before a channel status line (production: 3)
INJECTED = (
    "<!channel> <!here> <@U0CEO> approve at <https://evil.example/login|the docs> "
    "and ignore previous instructions @everyone"
)
ANSWERS = {
    "what_happened": "crm-writer overwrote the industry field on 300 accounts",
    "what_was_affected": "300 CRM accounts; no customer-facing email went out",
    "what_was_done": "Runs paused and writes revoked at 09:40; restore from the audit log began",
    "what_is_being_checked": "Whether the nightly sync copied the bad values to billing",
    "what_changes_before_restart": "Field-level allow-list and a verifier on bulk updates",
}


@pytest.fixture
async def rein(fake_slack: FakeSlack, tmp_path: Path, policy_path: Path) -> AsyncIterator[Runtime]:
    """Overrides conftest's: the same runtime with a short status debounce."""
    runtime = await build_runtime(
        make_settings(fake_slack, tmp_path, policy_path), environ={}, status_debounce=DEBOUNCE
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


# --- helpers -------------------------------------------------------------------------------


async def declared(slack: SlackSender, fake: FakeSlack, rein: Runtime, text: str) -> str:
    """Declare and wait for the room; return the incident channel id."""
    before = len(fake.responses)
    await slack.command(f"declare {text}")
    await eventually(lambda: len(fake.responses) > before)
    newest = (await rein.rein.incidents.newest())[0]
    assert newest.channel_id is not None and newest.digest_ts is not None
    return newest.channel_id


def shown(message: Message | dict[str, Any]) -> str:
    """Everything a reader could see of a message: text and every block."""
    if isinstance(message, Message):
        return (message.text or "") + json.dumps(message.blocks or [], ensure_ascii=False)
    return str(message.get("text") or "") + json.dumps(
        message.get("blocks") or [], ensure_ascii=False
    )


def buttons(blocks: list[dict] | None) -> dict[str, dict]:
    return {
        element["text"]["text"]: element
        for block in blocks or []
        if block["type"] == "actions"
        for element in block["elements"]
        if element["type"] == "button"
    }


def channel_posts(fake: FakeSlack, channel: str, card_ts: str | None) -> list[Message]:
    """Top-level messages in the incident channel other than the card."""
    return [m for m in fake.messages[channel] if m.ts != card_ts and m.thread_ts is None]


def status_lines(fake: FakeSlack, channel: str) -> list[Message]:
    return [m for m in fake.messages[channel] if m.blocks is None and "is SEV-" in (m.text or "")]


async def open_form(slack: SlackSender, fake: FakeSlack, channel: str) -> dict[str, Any]:
    before = len(fake.calls_to("views.open"))
    await slack.command("update", channel=channel)
    await eventually(lambda: len(fake.calls_to("views.open")) > before)
    return fake.last("views.open").args["view"]


async def last_reply(fake: FakeSlack, count: int) -> dict[str, Any]:
    await eventually(lambda: len(fake.responses) >= count)
    return fake.responses[count - 1][1]


# --- Post update ---------------------------------------------------------------------------


async def test_post_update_button_opens_the_five_prompts_with_slack_limits(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev2 agent:crm-writer Wrong CRM field")
    card = fake_slack.messages[channel][0]
    button = buttons(card.blocks)["Post update"]
    assert button["action_id"] == POST_UPDATE and button["value"] == "1"
    await slack.click(POST_UPDATE, "1", channel=channel)
    await eventually(lambda: fake_slack.calls_to("views.open"))
    view = fake_slack.last("views.open").args["view"]
    inputs = [b for b in view["blocks"] if b["type"] == "input"]
    assert [b["label"]["text"] for b in inputs] == [
        "What happened",
        "What was affected",
        "What was done",
        "What is being checked",
        "What changes before restart",
    ]
    assert all(b["element"]["max_length"] == PART_MAX == 3000 for b in inputs)
    assert [b.get("optional", False) for b in inputs] == [False, False, False, True, True]
    assert view["submit"]["text"] == "Post"


async def test_update_is_posted_recorded_and_shown_on_the_digest_with_a_thread_reply(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev2 agent:crm-writer Wrong CRM field")
    view = await open_form(slack, fake_slack, channel)
    status, answer = await slack.submit(view, {k: typed(v) for k, v in ANSWERS.items()})
    assert status == 200 and answer in ("", None)

    # On the timeline, with its five parts, committed before Slack heard back.
    entry = (await rein.rein.incidents.timeline(1))[-1]
    assert entry.kind == TimelineKind.STATUS_UPDATE and entry.actor == "U0ALICE"
    assert entry.data == ANSWERS

    incident = await rein.rein.incidents.get(1)
    assert incident is not None
    # Posted in the incident channel: every prompt, plainly.
    posted = await eventually(lambda: channel_posts(fake_slack, channel, incident.card_ts))
    assert len(posted) == 1
    for prompt in PROMPTS:
        assert prompt.label in shown(posted[0]) and ANSWERS[prompt.key] in shown(posted[0])
    assert "INC-1 status update" in (posted[0].text or "")
    # The digest is edited to show it, and the digest's thread has it whole.
    digest = fake_slack.messages[ANNOUNCE][0]
    assert digest.ts == incident.digest_ts
    await eventually(lambda: "Latest update" in shown(digest))
    assert ANSWERS["what_happened"] in shown(digest)
    replies = [m for m in fake_slack.messages[ANNOUNCE] if m.thread_ts == incident.digest_ts]
    assert len(replies) == 1 and ANSWERS["what_changes_before_restart"] in shown(replies[0])
    # A status update is not a change of state: no automated status line follows it.
    await asyncio.sleep(DEBOUNCE + 0.3)
    assert status_lines(fake_slack, channel) == []


async def test_optional_prompts_may_stay_empty_and_the_form_starts_from_the_last_update(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Duplicate tickets")
    view = await open_form(slack, fake_slack, channel)
    required = {k: ANSWERS[k] for k in ("what_happened", "what_was_affected", "what_was_done")}
    _, answer = await slack.submit(view, {k: typed(v) for k, v in required.items()})
    assert answer in ("", None)
    entry = (await rein.rein.incidents.timeline(1))[-1]
    assert entry.data["what_is_being_checked"] == "" and entry.data["what_was_done"]
    again = await open_form(slack, fake_slack, channel)
    initial = {
        b["block_id"]: b["element"].get("initial_value")
        for b in again["blocks"]
        if b["type"] == "input"
    }
    assert initial["what_was_affected"] == ANSWERS["what_was_affected"]
    assert initial["what_is_being_checked"] is None


async def test_an_update_part_longer_than_the_limit_or_missing_is_refused(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev2 agent:crm-writer Wrong CRM field")
    view = await open_form(slack, fake_slack, channel)
    too_long = {**ANSWERS, "what_was_affected": "x" * (PART_MAX + 1)}
    _, answer = await slack.submit(view, {k: typed(v) for k, v in too_long.items()})
    assert answer["response_action"] == "errors"
    assert answer["errors"] == {"what_was_affected": "At most 3000 characters; this is 3001."}
    missing = {**ANSWERS, "what_happened": "   "}
    _, answer = await slack.submit(view, {k: typed(v) for k, v in missing.items()})
    assert answer["response_action"] == "errors" and "what_happened" in answer["errors"]
    kinds = [e.kind for e in await rein.rein.incidents.timeline(1)]
    assert TimelineKind.STATUS_UPDATE not in kinds
    incident = await rein.rein.incidents.get(1)
    assert incident is not None
    assert channel_posts(fake_slack, channel, incident.card_ts) == []
    # Exactly the limit is fine.
    at_limit = {**ANSWERS, "what_was_affected": "x" * PART_MAX}
    _, answer = await slack.submit(view, {k: typed(v) for k, v in at_limit.items()})
    assert answer in ("", None)
    posted = await eventually(lambda: channel_posts(fake_slack, channel, incident.card_ts))
    assert "x" * PART_MAX in "".join(b["text"]["text"] for b in posted[0].blocks or [])


async def test_prompt_injected_update_text_is_shown_escaped_everywhere(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev2 agent:crm-writer Wrong CRM field")
    view = await open_form(slack, fake_slack, channel)
    hostile = {**ANSWERS, "what_happened": INJECTED, "what_was_done": "&lt; <b>&amp;" * 200}
    _, answer = await slack.submit(view, {k: typed(v) for k, v in hostile.items()})
    assert answer in ("", None)
    # Stored verbatim.
    entry = (await rein.rein.incidents.timeline(1))[-1]
    assert entry.data["what_happened"] == INJECTED
    incident = await rein.rein.incidents.get(1)
    assert incident is not None
    posted = await eventually(lambda: channel_posts(fake_slack, channel, incident.card_ts))
    digest = fake_slack.messages[ANNOUNCE][0]
    await eventually(lambda: "Latest update" in shown(digest))
    reply = next(m for m in fake_slack.messages[ANNOUNCE] if m.thread_ts == incident.digest_ts)
    for message in (posted[0], digest, reply):
        seen = shown(message)
        assert "<!channel>" not in seen and "<!here>" not in seen and "<@U0CEO>" not in seen
        assert "<https://evil" not in seen and "@everyone" not in seen
        assert "&lt;!channel&gt;" in seen and "&lt;@U0CEO&gt;" in seen
    # A long escaped part spreads over several sections instead of being cut.
    done = "".join(b["text"]["text"] for b in posted[0].blocks or [] if b["type"] == "section")
    assert done.count("&amp;lt; &lt;b&gt;&amp;amp;") == 200


async def test_only_the_people_steering_the_incident_post_updates(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev2 agent:crm-writer Wrong CRM field")
    await slack.click(POST_UPDATE, "1", channel=channel, user="U0MALLORY")
    await eventually(lambda: fake_slack.ephemerals)
    assert "Only the commander (<@U0ALICE>)" in (fake_slack.ephemerals[-1].text or "")
    assert fake_slack.calls_to("views.open") == []
    entry = (await rein.rein.incidents.timeline(1))[-1]
    assert entry.kind == TimelineKind.REFUSED and entry.actor == "U0MALLORY"
    # Outside an incident channel, the incident is named first.
    await slack.command("update")
    assert "not an incident channel" in (await last_reply(fake_slack, 2))["text"]
    await slack.command("update INC-1", user="U0HEADOPS")  # a SEV-2 approver
    await eventually(lambda: fake_slack.calls_to("views.open"))


# --- the automated channel status ----------------------------------------------------------


async def test_a_burst_of_severity_changes_makes_one_merged_status_line(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Cost loop")
    for text in ("sev 2 customers saw it", "sev 1 money moved", "sev 2 refunds are reversible"):
        status, _ = await slack.command(text, channel=channel)
        assert status == 200
    await last_reply(fake_slack, 4)
    lines = await eventually(lambda: status_lines(fake_slack, channel), timeout=4 * DEBOUNCE + 2)
    await asyncio.sleep(DEBOUNCE + 0.5)  # nothing more comes
    lines = status_lines(fake_slack, channel)
    assert len(lines) == 1, [m.text for m in lines]
    text = lines[0].text or ""
    assert text.startswith("*INC-1* is SEV-2 · declared")
    assert "Severity SEV-3 → SEV-2 → SEV-1 → SEV-2 (3 changes; last by <@U0ALICE>: " in text
    assert "refunds are reversible" in text
    # Card, digest and topic are current.
    assert fake_slack.channels[channel].topic.startswith("SEV-2 · declared")
    assert "SEV-2" in (fake_slack.messages[ANNOUNCE][0].text or "")
    # Rein recorded what it told the channel and up to where.
    posted = (await rein.rein.incidents.timeline(1))[-1]
    assert posted.kind == TimelineKind.STATUS_POSTED and posted.actor == "rein"
    assert posted.data["ts"] == lines[0].ts and posted.data["through"] > 0
    # The next change makes the next line, with only what is new.
    await slack.command("contain", channel=channel)
    await eventually(lambda: len(status_lines(fake_slack, channel)) == 2, timeout=4 * DEBOUNCE + 2)
    second = status_lines(fake_slack, channel)[1].text or ""
    assert "Status declared → contained (by <@U0ALICE>: containment approved" in second
    assert "Severity" not in second


async def test_kill_switch_outcomes_make_status_lines(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Cost loop")
    core = rein.rein
    now = core.clock()

    def delivery(state: str, attempt: int, detail: str) -> TimelineEntry:
        data = {"delivery_id": "d1", "attempt": attempt, "state": state, "detail": detail}
        return TimelineEntry(
            at=now, actor="rein", kind=TimelineKind.DELIVERY, text=state, data=data
        )

    # Attempts still retrying are not news; the outcome is.
    await core.incidents.append(1, [delivery("pending", 1, "HTTP 503")])
    await refresh_surfaces((await core.incidents.get(1)), **core.surfaces)  # type: ignore[arg-type]
    await asyncio.sleep(DEBOUNCE + 0.4)
    assert status_lines(fake_slack, channel) == []
    await core.incidents.append(1, [delivery("unconfirmed", 6, "HTTP 503 <!channel>")])
    await refresh_surfaces((await core.incidents.get(1)), **core.surfaces)  # type: ignore[arg-type]
    line = (await eventually(lambda: status_lines(fake_slack, channel)))[0].text or ""
    assert (
        "*NOT CONFIRMED* by the kill switch after 6 attempts (last: HTTP 503 &lt;!channel&gt;)"
        in line
    )
    await core.incidents.append(1, [delivery("confirmed", 1, "HTTP 200")])
    await refresh_surfaces((await core.incidents.get(1)), **core.surfaces)  # type: ignore[arg-type]
    await eventually(lambda: len(status_lines(fake_slack, channel)) == 2)
    assert "the kill switch confirmed (attempt 1)" in (
        status_lines(fake_slack, channel)[1].text or ""
    )


async def test_recovery_makes_a_status_line(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Cost loop")
    await slack.command("contain", channel=channel)
    await eventually(lambda: status_lines(fake_slack, channel), timeout=4 * DEBOUNCE + 2)
    core = rein.rein
    async with core.incidents.edit(1) as edit:  # however recovery is reached, it is a transition
        moved = transition(
            edit.incident,
            IncidentStatus.RECOVERED,
            actor="U0OWNER",
            at=core.clock(),
            reason="all 300 records restored",
        )
        await edit.save(moved.incident, [moved.entry])
    await refresh_surfaces(moved.incident, **core.surfaces)
    await eventually(lambda: len(status_lines(fake_slack, channel)) == 2)
    line = status_lines(fake_slack, channel)[1].text or ""
    assert line.startswith("*INC-1* is SEV-3 · recovered")
    assert "Status contained → recovered (by <@U0OWNER>: all 300 records restored)" in line


async def test_a_429_on_chat_update_is_retried(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Cost loop")
    incident = await rein.rein.incidents.get(1)
    assert incident is not None
    fake_slack.fail("chat.update", retry_after=1)
    await slack.command("sev 2 customers saw it", channel=channel)
    reply = await last_reply(fake_slack, 2)
    assert reply["text"] == "INC-1 is now SEV-2."  # nothing Slack would not do
    updates = [c for c in fake_slack.calls_to("chat.update")]
    card = [c for c in updates if c.args["ts"] == incident.card_ts]
    digest = [c for c in updates if c.args["ts"] == incident.digest_ts]
    assert len(card) == 2 and len(digest) == 1  # the card's edit: 429, then retried
    assert "SEV-2" in (fake_slack.messages[ANNOUNCE][0].text or "")
    assert "Required response for SEV-2" in shown(fake_slack.messages[channel][0])


async def test_refreshes_queued_behind_one_are_coalesced_and_the_topic_set_once(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Cost loop")
    incident = await rein.rein.incidents.get(1)
    assert incident is not None
    before_updates = len(fake_slack.calls_to("chat.update"))
    before_topics = len(fake_slack.calls_to("conversations.setTopic"))
    fake_slack.fail("chat.update", delay=0.3)  # the first edit is slow; five requests queue
    results = await asyncio.gather(
        *(refresh_surfaces(incident, **rein.rein.surfaces) for _ in range(5))
    )
    assert results == [[]] * 5
    card_edits = [
        c
        for c in fake_slack.calls_to("chat.update")[before_updates:]
        if c.args["ts"] == incident.card_ts
    ]
    assert len(card_edits) == 2  # the one under way, and one for all that queued behind it
    assert len(fake_slack.calls_to("conversations.setTopic")) - before_topics <= 1
    assert fake_slack.channels[channel].topic.startswith("SEV-3 · declared")


async def test_a_status_line_due_at_shutdown_or_crash_is_not_lost(
    fake_slack: FakeSlack, tmp_path: Path, policy_path: Path, http: aiohttp.ClientSession
) -> None:
    settings = make_settings(fake_slack, tmp_path, policy_path)

    async def started(debounce: float) -> tuple[Runtime, SlackSender]:
        runtime = await build_runtime(settings, environ={}, status_debounce=debounce)
        await runtime.start()
        url = f"http://127.0.0.1:{runtime.port}/slack/events"
        return runtime, SlackSender(url, fake_slack, http)

    # A graceful stop posts what was waiting out its debounce.
    first, slack = await started(60.0)
    channel = await declared(slack, fake_slack, first, "sev3 agent:crm-writer Cost loop")
    await slack.command("sev 2 customers saw it", channel=channel)
    await last_reply(fake_slack, 2)
    assert status_lines(fake_slack, channel) == []
    await first.stop()
    lines = status_lines(fake_slack, channel)
    assert len(lines) == 1 and "Severity SEV-3 → SEV-2" in (lines[0].text or "")

    # A crash (nothing flushed) before the line: the next start posts it.
    second, slack = await started(60.0)
    await slack.command("sev 1 money moved", channel=channel)
    await last_reply(fake_slack, 3)
    assert second.rein.desk.status is not None
    await second.rein.desk.status.stop(0, flush=False)  # as if the process died
    await second.stop()
    assert len(status_lines(fake_slack, channel)) == 1
    third, _ = await started(0.2)
    try:
        await eventually(lambda: len(status_lines(fake_slack, channel)) == 2)
        line = status_lines(fake_slack, channel)[1].text or ""
        assert "Severity SEV-2 → SEV-1" in line and "SEV-3" not in line
    finally:
        await third.stop()
    assert len(status_lines(fake_slack, channel)) == 2  # and never twice


# --- /incident timeline --------------------------------------------------------------------


async def test_timeline_pages_privately_with_earlier_and_later(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Cost loop")
    core = rein.rein
    base = core.clock() - timedelta(hours=1)
    notes = [
        TimelineEntry(
            at=base + timedelta(minutes=i),
            actor="U0BOB",
            kind=TimelineKind.NOTE,
            text=INJECTED if i == 44 else f"note {i:02d}",
        )
        for i in range(45)
    ]
    await core.incidents.append(1, notes)
    total = len(await core.incidents.timeline(1))
    assert total == 46 and TIMELINE_PAGE_SIZE == 20

    await slack.command("timeline", channel=channel)
    latest = await last_reply(fake_slack, 2)
    assert latest["response_type"] == "ephemeral"
    text = shown(latest)
    assert "Page 3 of 3: entries 41–46 of 46" in text
    assert "note 39" in text and "note 38" not in text
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text and "<@U0CEO>" not in text
    assert "<!date^" in text and " UTC>" in text  # each reader's time zone; UTC fallback
    assert "rein export INC-1 --format md" in text
    assert set(buttons(latest["blocks"])) == {"Earlier"}

    earlier = buttons(latest["blocks"])["Earlier"]
    await slack.click(earlier["action_id"], earlier["value"], channel=channel)
    page2 = await last_reply(fake_slack, 3)
    assert page2["replace_original"] is True
    assert "Page 2 of 3: entries 21–40 of 46" in shown(page2)
    assert set(buttons(page2["blocks"])) == {"Earlier", "Later"}
    first = buttons(page2["blocks"])["Earlier"]
    await slack.click(first["action_id"], first["value"], channel=channel)
    page1 = await last_reply(fake_slack, 4)
    assert "Page 1 of 3: entries 1–20 of 46" in shown(page1) and "Declared SEV-3" in shown(page1)
    assert set(buttons(page1["blocks"])) == {"Later"}
    assert buttons(page1["blocks"])["Later"]["action_id"].startswith(TIMELINE_PAGE)

    # From anywhere with a reference; refused plainly without one or for a wrong one.
    await slack.command("timeline INC-1", channel=ORIGIN)
    assert "Page 3 of 3" in shown(await last_reply(fake_slack, 5))
    await slack.command("timeline", channel=ORIGIN)
    assert "not an incident channel" in (await last_reply(fake_slack, 6))["text"]
    await slack.command("timeline INC-99", channel=ORIGIN)
    assert "no incident INC-99" in (await last_reply(fake_slack, 7))["text"]


async def test_help_lists_update_and_timeline(rein: Runtime, slack: SlackSender) -> None:
    _, answer = await slack.command("help")
    assert "/incident update" in answer and "/incident timeline" in answer


# --- the debouncer on its own --------------------------------------------------------------


async def test_debouncer_merges_a_burst_and_still_runs_during_a_steady_stream() -> None:
    runs: list[tuple[int, float]] = []
    running: set[int] = set()
    overlapped = False  # two runs of one key at once
    loop = asyncio.get_running_loop()

    async def work(key: int) -> None:
        nonlocal overlapped
        overlapped = overlapped or key in running
        running.add(key)
        runs.append((key, loop.time()))
        await asyncio.sleep(0.05)
        running.discard(key)

    debouncer = Debouncer(work, delay=0.1, max_delay=0.3)
    start = loop.time()
    for _ in range(5):  # a burst: one run, after the quiet period
        debouncer.poke(1)
        await asyncio.sleep(0.01)
    debouncer.poke(2)
    await asyncio.sleep(0.25)
    assert sorted(key for key, _ in runs) == [1, 2]
    runs.clear()
    for _ in range(20):  # a steady stream for 0.6 s: runs at least every max_delay
        debouncer.poke(1)
        await asyncio.sleep(0.03)
    assert len([k for k, _ in runs if k == 1]) >= 1
    assert not overlapped
    debouncer.poke(3)
    await debouncer.stop(1.0)  # what waits runs now
    assert runs[-1][0] == 3 and loop.time() - start < 2
    debouncer.poke(4)  # stopped: nothing more
    await asyncio.sleep(0.15)
    assert all(key != 4 for key, _ in runs)
