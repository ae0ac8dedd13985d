"""The injection corpus through every path by which outside text reaches Slack (issue 7).

Outside text is what people and agents wrote: titles, descriptions, alert fields, evidence,
captured messages, updates, reasons and notes, ledger values, postmortem parts, run reports.
Each path below sends the whole corpus (mrkdwn pings and mentions, disguised links, Slack's own
entities, control and bidi characters, a 5,000-character line, SQL and format strings) through
the real path: signed Slack requests through Bolt over HTTP, the HTTP API over real HTTP, the
fake Slack on loopback, SQLite in tmp_path, a real HMAC-checking kill switch.

Then two things are proven:
- *Shown as text*: every Slack call Rein made (messages, edits, ephemerals, response_urls,
  acks, views, topics, file uploads) is scanned: no live special token from the input
  (`<!channel>`, `<!here>`, `<!everyone>`, `<@…>`, `<#…>`, `<!subteam…>`, `<http…|…>`,
  `<mailto:…>`), no raw `&`, no bare `@channel`, no control or bidi-override character, and a
  text longer than its room is cut with a visible "…" (the fake refuses Slack's limits).
- *Stored verbatim*: Rein's repositories, `GET /v1/incidents/{ref}` and `rein export --format
  json` give the text back as it came, except for the normalisations that are intended and
  listed in `NORMALISED` below.
Corpus × path: each request carries every corpus item at once (one declaration per path keeps
the run short); a failure names the Slack call, the field and the token that leaked.

Known and accepted: Slack has no escape for `*`, `_`, `~` and backticks, so mrkdwn emphasis in
outside text still formats (harmless: it cannot ping, mention or link); a `>` at the start of
a line is Rein's own quoting of captured messages and evidence previews.
"""

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.domain.enums import IncidentStatus
from bot.domain.models import Incident
from bot.render.postmortem import COMPLETE, COMPLETE_BLOCK
from tests import test_containment as containment
from tests.conftest import ANNOUNCE, POLICY, eventually, make_settings
from tests.fakes.kill_switch import FakeKillSwitch
from tests.fakes.slack_api import Call, FakeSlack
from tests.slack_requests import chosen, number, ticked, typed
from tests.test_cli import rein_cli
from tests.test_containment import AUTH, FAST, Rig
from tests.test_restart_gate import gate_button, gate_message
from tests.test_timeline_capture import POSTED_TS, react, seed, shortcut

kill_switch = containment.kill_switch  # the real HMAC-checking receiver, as a fixture

TRIAGE = "CTRIAGE"
COMMANDER = "U0ALICE"
OWNER = "U0OWNER"  # crm-writer's owner
SEV3_LEAD = "U0SEV3LEAD"  # the SEV-3 approver (through the S0SEV3 group)

# ----------------------------------------------------------------------------- the corpus

CORPUS: dict[str, str] = {
    "channel ping": "<!channel>",
    "here ping": "<!here>",
    "everyone ping": "<!everyone>",
    "bare broadcasts": "@channel @here @everyone",
    "user mention": "<@U0BOSS>",
    "channel link": "<#C0SECRET>",
    "user-group mention": "<!subteam^S0EVIL>",
    "disguised link": "<https://evil.example|https://bank.example>",
    "mailto link": "<mailto:x@evil.example|support>",
    "mrkdwn": "*bold* _it_ ~s~ `code` ```block```",
    "quote": "> quote",
    "already escaped": "&lt;!channel&gt; &amp;",
    "control characters": "ctl[" + "".join(map(chr, range(0x20))) + "\x7f]",
    "bidi override": "bidi[\u202eevil\u202c]",
    "zero width": "zw[\u200b]",
    "emoji": "🔥🧯👩🏽‍💻",
    "sql": "'); DROP TABLE incidents;--",
    "sql or": '" OR 1=1 --',
    "format strings": "%s %d %(x)s {0} {title} {{",
}
HOSTILE = "\n".join(CORPUS.values())  # every item, one a line: 369 characters
# Titles hold 150 characters: the corpus's most dangerous items, in two titles.
TITLE_A = (
    "<!channel> <!everyone> @here <@U0BOSS> <https://evil.example|https://bank.example> "
    "&amp; \x00\x07\x7f\u202e🔥 {title} %s"
)
TITLE_B = (
    "<!here> <#C0SECRET> <!subteam^S0EVIL> <mailto:x@evil.example|support> *b* `c` "
    "'); DROP TABLE incidents;-- \x1b\u200b"
)


def line(name: str, size: int) -> str:
    """One line of `size` characters, its start and end recognisable: shown whole or cut."""
    head, tail = f"{name}-START ", f" {name}-END"
    return head + "x" * (size - len(head) - len(tail)) + tail


LONG = line("LONGLINE", 5000)
HOSTILE_LONG = f"{HOSTILE}\n{LONG}"  # for fields without a small limit
HOSTILE_3000 = f"{HOSTILE}\n{line('MIDLINE', 3000 - len(HOSTILE) - 1)}"  # at Slack's input limit
LINES = (("LONGLINE-START", "LONGLINE-END"), ("MIDLINE-START", "MIDLINE-END"))

# What Rein changes on purpose before storing, per path (everything else is kept verbatim):
NORMALISED = {
    "slash-command words": "the quick declaration and `/agent pause` read the command as "
    "words (a title is its words joined by one space, as Slack's one-line input shows it)",
    "emergency-stop title": "`Emergency stop: <reason>`, cut at the 150 characters of a title",
    "alert title": "`<kind>: <summary>` as plain text: control characters dropped, whitespace "
    "folded, cut at 150 with '…' (the alert's own fields are kept whole)",
    "modal and command edges": "leading and trailing whitespace is trimmed from typed values",
}
# Not a normalisation: Slack sends a slash command's `&`, `<` and `>` as entities (and the tests
# send them so); Rein decodes them once, where `/incident` and `/agent` are dispatched, so every
# command keeps what was typed, as the forms and the API do.


def words(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- the scanner

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
_RAW_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt);)")
_BROADCAST = re.compile(r"@(?:channel|here|everyone)\b", re.IGNORECASE)
_TOKEN = re.compile(r"<[^<>]*>")
# The special tokens Rein itself writes: people and channels by id, dates, user groups.
_REIN_TOKENS = re.compile(
    r"<(?:@[UW][A-Z0-9]+|#[CG][A-Z0-9]+|!date\^\d+\^[^|<>]*\|[^<>]*|!subteam\^S[A-Z0-9]+)>"
)
# The one live broadcast Rein sends: a run failed during a staged restart (README).
_REIN_HERE = ":rotating_light: <!here> *`"
# Ids that only the corpus names: a mention of one of them came from the input.
_INJECTED_IDS = ("U0BOSS", "C0SECRET", "S0EVIL", "evil.example")


@dataclass(frozen=True)
class Shown:
    where: str
    text: str
    parsed: bool  # mrkdwn (Slack parses `<…>` and `&…;` in it) or plain text


def _walk(value: Any, where: str, out: list[Shown]) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{where}[{i}]", out)
        return
    if not isinstance(value, dict):
        return
    kind, text = value.get("type"), value.get("text")
    if kind in ("mrkdwn", "plain_text", "markdown") and isinstance(text, str):
        out.append(Shown(where, text, kind != "plain_text"))
    for key, item in value.items():
        if key in ("private_metadata", "value", "action_id", "block_id", "callback_id"):
            continue  # never shown
        if key == "initial_value" and isinstance(item, str):
            continue  # an input's value: edited as typed, never parsed
        _walk(item, f"{where}.{key}", out)


def _message(body: dict[str, Any], where: str) -> list[Shown]:
    out: list[Shown] = []
    text = body.get("text")
    if isinstance(text, str) and text:
        out.append(Shown(f"{where}.text", text, body.get("mrkdwn") is not False))
    for key in ("blocks", "attachments"):
        _walk(body.get(key), f"{where}.{key}", out)
    for key, error in (body.get("errors") or {}).items():  # a modal's errors: plain text
        out.append(Shown(f"{where}.errors.{key}", str(error), False))
    return out


def shown_in_call(call: Call, where: str) -> list[Shown]:
    args = call.args
    if call.method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
        return _message(args, where)
    if call.method.startswith("views."):
        out: list[Shown] = []
        _walk(args.get("view"), f"{where}.view", out)
        return out
    if call.method == "conversations.setTopic":
        return [Shown(f"{where}.topic", str(args.get("topic", "")), True)]
    if call.method == "conversations.create":
        return [Shown(f"{where}.name", str(args.get("name", "")), False)]
    if call.method == "files.getUploadURLExternal":
        return [Shown(f"{where}.filename", str(args.get("filename", "")), False)]
    if call.method == "files.completeUploadExternal":
        out = [Shown(f"{where}.initial_comment", str(args.get("initial_comment") or ""), True)]
        for i, item in enumerate(args.get("files") or []):
            out.append(Shown(f"{where}.files[{i}].title", str(item.get("title") or ""), False))
        return out
    return []


def problems_in(shown: Shown) -> list[str]:
    found: list[str] = []
    if _CONTROL.search(shown.text):
        found.append("a control or bidi-override character")
    if not shown.parsed:
        return found
    text = shown.text.replace(_REIN_HERE, "")
    for token in _TOKEN.findall(text):
        injected = any(marker in token for marker in _INJECTED_IDS)
        if injected or not _REIN_TOKENS.fullmatch(token):
            found.append(f"the live token {token[:60]!r}")
    stray = _TOKEN.sub("", text)
    if "<" in stray:
        found.append("an unescaped '<'")
    if _RAW_AMPERSAND.search(text):
        found.append("an unescaped '&'")
    if _BROADCAST.search(text):
        found.append("a bare @channel/@here/@everyone")
    return found


@dataclass
class Surfaces:
    """Everything Rein showed in Slack: the fake's calls and response_urls, and the acks
    (the HTTP answers to slash commands and view submissions)."""

    fake: FakeSlack
    acks: list[Any] = field(default_factory=list)

    def all(self) -> list[list[Shown]]:
        """One list per message, view or call."""
        shown = [shown_in_call(c, f"{c.method}#{i}") for i, c in enumerate(self.fake.calls)]
        for i, (key, body) in enumerate(self.fake.responses):
            if isinstance(body, dict):
                shown.append(_message(body, f"response_url#{i}({key})"))
        for i, ack in enumerate(self.acks):
            if isinstance(ack, str) and ack:
                shown.append([Shown(f"ack#{i}", ack, True)])
            elif isinstance(ack, dict):
                shown.append(_message(ack, f"ack#{i}"))
        return shown

    def text(self) -> str:
        return "\n".join(s.text for group in self.all() for s in group)

    def check(self) -> None:
        """No live token, no raw entity, no control character; long lines whole or cut."""
        problems: list[str] = []
        for group in self.all():
            for shown in group:
                if found := problems_in(shown):
                    problems.append(f"{shown.where}: {', '.join(found)} in {shown.text[:160]!r}")
            whole = "\n".join(s.text for s in group)
            for head, tail in LINES:
                if head in whole and tail not in whole and "…" not in whole:
                    problems.append(f"{group[0].where}: a long line cut without '…'")
        assert problems == [], "\n".join(problems[:40])
        assert self.fake.rejections == [], self.fake.rejections
        assert self.fake.violations == [], self.fake.violations

    def shows(self, *escaped: str) -> None:
        """The input reached Slack, as text: each of `escaped` appears somewhere."""
        everything = self.text()
        missing = [e for e in escaped if e not in everything]
        assert missing == [], missing


# ------------------------------------------------------------------------------- the rig


@pytest.fixture
async def rig(
    fake_slack: FakeSlack, kill_switch: FakeKillSwitch, tmp_path: Path
) -> AsyncIterator[Rig]:
    """Rein with a triage channel and the containment tests' policy (a kill switch for
    crm-writer, SEV-3 approved by the S0SEV3 group)."""
    fake_slack.add_usergroup(containment.SEV3_GROUP, [SEV3_LEAD])
    fake_slack.add_channel(TRIAGE, "alerts", members=[COMMANDER, "U0BOB", OWNER])
    policy = containment.write_policy(tmp_path, kill_switch.url)
    settings = make_settings(fake_slack, tmp_path, policy, REIN_TRIAGE_CHANNEL=TRIAGE)
    async with aiohttp.ClientSession() as http:
        rig = Rig(fake_slack, kill_switch, settings, http, FAST)
        await rig.start()
        try:
            yield rig
        finally:
            await rig.stop()


@pytest.fixture
def surfaces(rig: Rig) -> Iterator[Surfaces]:
    seen = Surfaces(rig.fake)
    yield seen
    seen.check()  # also after the test's own checks: whatever Rein sent late


async def command(
    rig: Rig,
    seen: Surfaces,
    text: str,
    *,
    user: str = COMMANDER,
    channel: str = "CGENERAL",
    reply: bool = True,
) -> Any:
    """A slash command; its ack is kept for the scan; an answer by response_url is awaited
    when the ack is empty (and `reply`: the form opens a modal instead)."""
    before = len(rig.fake.responses)
    name = "/agent" if text.startswith("/agent ") else "/incident"
    status, answer = await rig.slack.command(
        text.removeprefix("/agent "), user=user, channel=channel, name=name
    )
    assert status == 200, answer
    seen.acks.append(answer)
    if answer in ("", None) and reply:
        await eventually(lambda: len(rig.fake.responses) > before)
        return rig.fake.responses[-1][1]
    return answer


async def submit(
    rig: Rig, seen: Surfaces, view: dict[str, Any], values: dict[str, Any], user: str
) -> None:
    status, answer = await rig.slack.submit(view, values, user=user)
    assert status == 200
    seen.acks.append(answer)
    assert answer in ("", None), answer


async def opened_by(rig: Rig, label: str, user: str, number: int = 1) -> dict[str, Any]:
    """Press the card's button `label`; the modal Rein opened."""
    await eventually(lambda: _has_button(rig, label, number))
    before = len(rig.fake.calls_to("views.open"))
    status, _ = await rig.press(label, user, number)
    assert status == 200
    await eventually(lambda: len(rig.fake.calls_to("views.open")) > before)
    return rig.fake.calls_to("views.open")[-1].args["view"]


async def document(rig: Rig, ref: str) -> dict[str, Any]:
    async with rig.http.get(f"{rig.base}/v1/incidents/{ref}", headers=AUTH) as answer:
        assert answer.status == 200
        return dict(await answer.json())


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def holds(record: Any, *expected: str) -> None:
    """Each of `expected` is one whole value of the record: kept verbatim."""
    values = set(strings(record))
    missing = [e[:80] for e in expected if e not in values]
    assert missing == [], missing


async def channel_of(rig: Rig, number: int) -> str:
    incident = await rig.incident(number)
    assert incident.channel_id is not None
    return incident.channel_id


async def status_is(rig: Rig, number: int, status: IncidentStatus) -> bool:
    return (await rig.incident(number)).status is status


# ---------------------------------------------------------------------------------- paths


async def test_declaring_steering_and_closing(rig: Rig, surfaces: Surfaces) -> None:
    """Quick declare, the declare form (title, what happened, override reason), the list,
    the card again, severity changes (command and form), closing (command and form), the
    emergency stop, and the private answers that repeat what was typed."""
    seen = surfaces
    # The quick declaration (slash command): words, joined by one space.
    answer = await command(rig, seen, f"declare sev4 agent:crm-writer {TITLE_A}")
    assert str(answer).startswith("Declared INC-1")
    await eventually(lambda: len(rig.fake.responses) >= 1)
    first = await rig.incident(1)
    assert first.title == words(TITLE_A)
    seen.shows("&lt;!channel&gt;", "&lt;https://evil.example|https://bank.example&gt;")

    # The declare form: title, what happened (at Slack's input limit), a reason to override.
    await command(rig, seen, "declare", reply=False)
    await eventually(lambda: rig.fake.calls_to("views.open"))
    view = {**rig.fake.last("views.open").args["view"], "id": "V0DECLARE"}
    values = {
        "title": typed(TITLE_B),
        "agent": chosen("page-publisher"),
        "summary": typed(HOSTILE_3000),
        "impact": ticked(),
        "records": number(""),
        "severity": chosen("sev3"),
        "override": typed(HOSTILE),
    }
    await submit(rig, seen, view, values, COMMANDER)
    second = await eventually(lambda: _with_card(rig, 2))
    assert (second.title, second.summary) == (TITLE_B, HOSTILE_3000)
    timeline = await rig.timeline(2)
    assert timeline[0].data["override_reason"] == HOSTILE
    channel = await channel_of(rig, 2)

    # Severity by command and by the form; the list and the card again.
    await command(rig, seen, f"sev 2 {HOSTILE}", channel=channel)
    view = await opened_by(rig, "Change severity", COMMANDER, 2)
    await submit(rig, seen, view, {"severity": chosen("sev3"), "reason": typed(HOSTILE)}, COMMANDER)
    await eventually(lambda: _severity(rig, 2, "sev3"))
    await command(rig, seen, "list")
    await command(rig, seen, "status", channel=channel)
    await command(rig, seen, "timeline", channel=channel)
    reasons = [e.data.get("reason") for e in await rig.timeline(2)]
    assert reasons.count(HOSTILE) == 2

    # Closing a SEV-4: by command (INC-1), and by the form (INC-3).
    await command(rig, seen, f"close INC-1 {HOSTILE_3000}")
    assert (await rig.incident(1)).status is IncidentStatus.CLOSED
    await command(rig, seen, f"declare sev4 agent:page-publisher {TITLE_B}", user="U0BOB")
    await eventually(lambda: _with_card(rig, 3))
    view = await opened_by(rig, "Close incident", "U0BOB", 3)
    await submit(rig, seen, view, {"learning": typed(HOSTILE_3000)}, "U0BOB")
    await eventually(lambda: status_is(rig, 3, IncidentStatus.CLOSED))

    # The emergency stop: the reason makes the title.
    answer = await command(rig, seen, f"/agent pause crm-writer sev3 {HOSTILE}", user=OWNER)
    assert "is paused" in str(answer), answer
    await eventually(lambda: _with_card(rig, 4))
    stopped = await rig.incident(4)
    assert stopped.title == f"Emergency stop: {words(HOSTILE)}"[:150]

    # Private answers that repeat what was typed: escaped too.
    for text in (
        f"{TITLE_A} help",  # not a subcommand
        f"declare sev2 agent:{TITLE_B.split()[0]} x",  # no such agent
        "declare sev<!channel> agent:crm-writer x",  # not a severity
        f"sev INC-{TITLE_B.split()[0]} 2 why",  # not an incident reference
        f"evidence {TITLE_A}",  # not an evidence kind
        f"gate check {TITLE_B.split()[0]} x",  # not a criterion
        "rollback restored <!channel>",  # not an item number
        f"timeline {TITLE_A}",  # not an incident reference
        f"gate {TITLE_B.split()[0]}",  # not a gate command
        "help",  # Rein's own usage forms, `<reason>` and the like
        f"/agent {TITLE_A}",
        "/agent help",
        f"/agent status {TITLE_A}",
        f"/agent pause {TITLE_B.split()[2]} sev2 {HOSTILE}",
    ):
        await command(rig, seen, text, channel=channel, user=OWNER)
    seen.check()

    # Read back: the API and `rein export` hold the text as it came.
    holds(await document(rig, "INC-1"), words(TITLE_A), HOSTILE_3000)
    holds(await document(rig, "INC-2"), TITLE_B, HOSTILE_3000, HOSTILE)
    holds(await document(rig, "INC-3"), TITLE_B, HOSTILE_3000)
    code, out, err = await export_json(rig, "INC-2")
    assert code == 0, err
    holds(json.loads(out), TITLE_B, HOSTILE_3000, HOSTILE)
    topic = rig.fake.calls_to("conversations.setTopic")[-1].args["topic"]
    assert len(topic) <= 250


async def test_alert_intake_and_its_triage_message(rig: Rig, surfaces: Surfaces) -> None:
    """`POST /v1/alerts`: summary, details (a 5,000-character line too), fingerprint; the
    triage message, its redraw after a repeat and after Declare incident; unknown agents."""
    seen = surfaces
    body = {
        "agent": "crm-writer",
        "kind": "customer_complaint",
        "summary": HOSTILE,
        "details": HOSTILE_LONG,
        "fingerprint": TITLE_A,
    }
    for expected in (201, 200):  # the second is a repeat of the same fingerprint
        async with rig.http.post(f"{rig.base}/v1/alerts", json=body, headers=AUTH) as answer:
            assert answer.status == expected, await answer.text()
    incident = await eventually(lambda: _triaged(rig))
    triage = next(m for m in rig.fake.messages[TRIAGE] if m.ts == incident.triage_ts)
    await eventually(lambda: rig.fake.calls_to("chat.update"))  # the counter, redrawn
    seen.shows("&lt;!channel&gt;", "&lt;@U0BOSS&gt;", "&amp;lt;!channel&amp;gt;", "🔥")
    assert "…" in json.dumps(triage.blocks, ensure_ascii=False)  # the details, cut visibly

    # Declare incident from the triage message: the title comes from the summary.
    action = next(
        el
        for b in triage.blocks or []
        if b["type"] == "actions"
        for el in b["elements"]
        if el["text"]["text"] == "Declare incident"
    )
    payload = rig.block_actions(
        COMMANDER, incident, {**action, "block_id": "triage_actions", "type": "button"}
    )
    payload["container"] = {"type": "message", "message_ts": triage.ts, "channel_id": TRIAGE}
    payload["channel"] = {"id": TRIAGE, "name": "alerts"}
    status, _ = await rig.slack.interaction(payload)
    assert status == 200
    declared = await eventually(lambda: _with_card(rig, 1))
    assert declared.title.startswith("Customer complaint: ") and len(declared.title) <= 150
    assert "\x00" not in declared.title and "\u202e" not in declared.title

    # Unknown agents (in the body and in a path): JSON errors, nothing recorded.
    hostile_agent = {**body, "agent": TITLE_A}
    async with rig.http.post(f"{rig.base}/v1/alerts", json=hostile_agent, headers=AUTH) as answer:
        assert answer.status in (404, 422)
        assert answer.content_type == "application/json"
    for path in ("autonomy", "runs"):
        url = f"{rig.base}/v1/agents/%3C!channel%3E%20%27%3B--/{path}"
        method = rig.http.get if path == "autonomy" else rig.http.post
        run = {"run_id": "r", "outcome": "ok"}
        async with method(url, headers=AUTH, json=run) as answer:
            assert answer.status == 404 and answer.content_type == "application/json"
            assert (await answer.json())["error"]
    assert len(await rig.rein.incidents.newest()) == 1  # nothing recorded for them
    seen.check()

    document_ = await document(rig, "INC-1")
    holds(document_, HOSTILE, HOSTILE_LONG, TITLE_A)
    stored = await rig.incident(1)
    assert stored.fingerprint == TITLE_A


async def test_evidence_captured_messages_and_status_updates(rig: Rig, surfaces: Surfaces) -> None:
    """Evidence by command, by the API and by the form; a message put on the timeline by the
    shortcut (in the channel and through the chooser) and by :pushpin:; a status update;
    the timeline pages."""
    seen = surfaces
    await command(rig, seen, "declare sev2 agent:crm-writer Wrong industry on 300 accounts")
    await eventually(lambda: _with_card(rig, 1))
    channel = await channel_of(rig, 1)

    # Evidence: the command, the API (content whole, a URL, a source, a note), the form.
    await command(rig, seen, f"evidence reviewer_notes {HOSTILE}", channel=channel)
    url = "https://evil.example/run?id=1&next=%3C!channel%3E#'--"
    api_item = {
        "kind": "final_output",
        "content": HOSTILE_LONG,
        "url": url,
        "source": TITLE_A,
        "note": HOSTILE,
    }
    async with rig.http.post(
        f"{rig.base}/v1/incidents/INC-1/evidence", json=api_item, headers=AUTH
    ) as answer:
        assert answer.status == 201, await answer.text()
    view = await opened_by(rig, "Add evidence", COMMANDER)
    values = {
        "kind": chosen("prompt"),
        "content": typed(HOSTILE_3000),
        "url": {"type": "url_text_input", "value": None},
        "note": typed(HOSTILE),
    }
    await submit(rig, seen, view, values, COMMANDER)
    await eventually(lambda: _evidence_count(rig, 3))
    items = await rig.rein.evidence.for_incident(1)
    assert [(i.content, i.note) for i in items] == [
        (HOSTILE, None),
        (HOSTILE_LONG, HOSTILE),
        (HOSTILE_3000, HOSTILE),
    ]
    assert (items[1].url, items[1].source) == (url, TITLE_A)

    # A message on the timeline: the shortcut in the channel, the chooser from elsewhere
    # (its text travels in private_metadata), and :pushpin: (read via conversations.history).
    await shortcut(rig.slack, channel, HOSTILE_LONG, ts="1700000300.000100")
    seed(rig.fake, "CGENERAL", HOSTILE, ts="1700000350.000100")
    await shortcut(rig.slack, "CGENERAL", HOSTILE, ts="1700000350.000100")
    chooser = await eventually(lambda: _chooser(rig))
    await submit(rig, seen, chooser, {"incident": chosen("1")}, COMMANDER)
    seed(rig.fake, channel, HOSTILE_LONG)
    assert await react(rig.slack, channel, POSTED_TS) == 200
    await eventually(lambda: _pinned(rig, 3))
    pinned = [e.text for e in await rig.timeline() if e.kind.value == "pinned_message"]
    assert sorted(pinned) == sorted([HOSTILE_LONG, HOSTILE, HOSTILE_LONG])

    # A status update: all five parts, at Slack's input limit.
    view = await opened_by(rig, "Post update", COMMANDER)
    parts = (
        "what_happened",
        "what_was_affected",
        "what_was_done",
        "what_is_being_checked",
        "what_changes_before_restart",
    )
    await submit(rig, seen, view, {p: typed(HOSTILE_3000) for p in parts}, COMMANDER)
    await eventually(lambda: _update_posted(rig, channel))
    update = [e for e in await rig.timeline() if e.kind.value == "status_update"][-1]
    assert all(update.data[p] == HOSTILE_3000 for p in parts)
    await eventually(lambda: "Latest update" in json.dumps(rig.fake.messages[ANNOUNCE][0].blocks))
    # The form again starts from the last update: its inputs hold the text as typed.
    view = await opened_by(rig, "Post update", COMMANDER)
    initial = [b["element"].get("initial_value") for b in view["blocks"] if b["type"] == "input"]
    assert initial == [HOSTILE_3000] * 5

    await command(rig, seen, "timeline", channel=channel)
    seen.shows("&lt;!channel&gt;", "&lt;mailto:x@evil.example|support&gt;", "@\u2060here")
    seen.check()
    doc = await document(rig, "INC-1")
    holds(doc, HOSTILE, HOSTILE_LONG, HOSTILE_3000, url, TITLE_A)


async def test_ledger_postmortem_gate_and_run_reports(rig: Rig, surfaces: Surfaces) -> None:
    """The rollback ledger (API, command, form, reasons, accepting the rest), the postmortem
    (its five parts, the shared document), the restart gate (check notes by command and form,
    an acceptance, the approval note), run reports (run id and summary, a flagged run that
    contains the agent again), and retiring the agent with a reason."""
    seen = surfaces
    await command(rig, seen, "declare sev3 agent:crm-writer Duplicate notes on accounts")
    await eventually(lambda: _with_card(rig, 1))
    channel = await channel_of(rig, 1)
    status, _ = await rig.press("Approve containment", COMMANDER)
    assert status == 200
    await eventually(lambda: status_is(rig, 1, IncidentStatus.CONTAINED))

    # The ledger: by the API (values whole), the command, the form; marks with reasons.
    item = {"system": TITLE_B[:100], "record": HOSTILE, "before": HOSTILE_LONG, "after": TITLE_A}
    async with rig.http.post(
        f"{rig.base}/v1/incidents/INC-1/rollback", json=item, headers=AUTH
    ) as answer:
        assert answer.status == 201, await answer.text()
    await command(rig, seen, f"rollback crm {TITLE_B.split()[0]} {TITLE_A} -> x", channel=channel)
    view = await opened_by(rig, "Add affected record", COMMANDER)
    record = {"system": typed("cms"), "record": typed(TITLE_A), "before": typed(HOSTILE_3000)}
    await submit(rig, seen, view, {**record, "after": typed(HOSTILE)}, COMMANDER)
    await eventually(lambda: _ledger_size(rig, 3))
    await command(rig, seen, f"rollback accepted 1 {HOSTILE}", channel=channel)
    await command(rig, seen, "rollback list", channel=channel)
    # Mark recovered with records pending: the commander accepts the rest, with a reason.
    view = await opened_by(rig, "Mark recovered", COMMANDER)
    await submit(rig, seen, view, {"accept": ticked("accept"), "reason": typed(HOSTILE)}, COMMANDER)
    await eventually(lambda: status_is(rig, 1, IncidentStatus.RECOVERED))
    ledger = await rig.rein.rollback.for_incident(1)
    assert (ledger[0].system, ledger[0].record, ledger[0].before, ledger[0].after) == (
        TITLE_B[:100],
        HOSTILE,
        HOSTILE_LONG,
        TITLE_A,
    )
    # The command, sent as Slack encodes it, keeps what was typed, as the API and form do.
    assert (ledger[1].record, ledger[1].before) == (TITLE_B.split()[0], TITLE_A)
    assert (ledger[2].record, ledger[2].before, ledger[2].after) == (
        TITLE_A,
        HOSTILE_3000,
        HOSTILE,
    )
    assert [i.reason for i in ledger] == [HOSTILE, HOSTILE, HOSTILE]

    # The postmortem: five parts, completed; then shared as a file in the channel.
    parts = ("business_impact", "agent_path", "failed_controls", "guardrail_changes")
    view = await opened_by(rig, "Start postmortem", OWNER)
    values: dict[str, Any] = {p: typed(HOSTILE_3000) for p in parts}
    values["scorecard_updates"] = typed(HOSTILE)
    values[COMPLETE_BLOCK] = ticked(COMPLETE)
    await submit(rig, seen, view, values, OWNER)
    await eventually(lambda: status_is(rig, 1, IncidentStatus.POSTMORTEM))
    await command(rig, seen, "postmortem share", channel=channel, user=OWNER)
    upload = await eventually(lambda: [f for f in rig.fake.files.values() if f.completed])
    assert upload[0].content is not None
    shared = upload[0].content.decode()
    assert "<!channel>" not in shared.split("## Evidence")[0]  # outside text as entities

    # The gate: checks with notes (command and form), an acceptance, the approval's note.
    await command(rig, seen, "gate", channel=channel)
    for criterion in ("owner", "root_cause", "tests"):
        await command(rig, seen, f"gate check {criterion} {HOSTILE}", channel=channel)
    before = len(rig.fake.calls_to("views.open"))
    found = gate_button(await gate_message(rig), "Check", "records_identified")
    assert found is not None
    block_id, element = found
    action = {**element, "block_id": block_id}
    await rig.slack.interaction(rig.block_actions(COMMANDER, await rig.incident(), action))
    await eventually(lambda: len(rig.fake.calls_to("views.open")) > before)
    view = rig.fake.calls_to("views.open")[-1].args["view"]
    await submit(rig, seen, view, {"note": typed(HOSTILE)}, COMMANDER)
    await command(rig, seen, f"gate accept evidence {HOSTILE}", channel=channel, user=SEV3_LEAD)
    for again in ("evidence", "guardrails"):  # refused, repeating the reason / part four
        answer = await command(rig, seen, f"gate accept {again} x", channel=channel, user=SEV3_LEAD)
        assert "accepted already" in str(answer) or "Rein judges it met" in str(answer), answer
    answer = await command(rig, seen, f"gate approve shadow {HOSTILE}", channel=channel, user=OWNER)
    assert "shadow" in str(answer), answer

    # Run reports: the run id and summary are the agent's words; a flagged run contains it.
    for run_id, outcome in ((TITLE_A, "ok"), (TITLE_B, "flagged")):
        body = {"run_id": run_id, "outcome": outcome, "summary": HOSTILE_3000}
        async with rig.http.post(
            f"{rig.base}/v1/agents/crm-writer/runs", json=body, headers=AUTH
        ) as answer:
            assert answer.status == 201, await answer.text()
    await eventually(lambda: "is contained again" in _channel_text(rig, channel), timeout=8)
    await command(rig, seen, f"gate retire {HOSTILE}", channel=channel, user=SEV3_LEAD)
    await eventually(lambda: status_is(rig, 1, IncidentStatus.CLOSED))
    seen.shows("&lt;!channel&gt;", "&lt;#C0SECRET&gt;", "&lt;!subteam^S0EVIL&gt;")
    seen.check()

    doc = await document(rig, "INC-1")
    holds(doc, HOSTILE, HOSTILE_LONG, HOSTILE_3000, TITLE_A, TITLE_B[:100])
    postmortem = doc["postmortem"]
    assert [postmortem[p] for p in parts] == [HOSTILE_3000] * 4
    assert postmortem["scorecard_updates"] == HOSTILE
    runs = [e for e in doc["timeline"] if e["kind"] == "run"]
    assert {r["data"].get("run_id") for r in runs} >= {TITLE_A, TITLE_B}
    code, out, err = await export_json(rig, "INC-1")
    assert code == 0, err
    holds(json.loads(out), HOSTILE, HOSTILE_LONG, HOSTILE_3000, TITLE_A)


# ---------------------------------------------------------------------------- the scanner


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<!channel>", "live token"),
        ("<!here|here>", "live token"),
        ("<@U0BOSS>", "live token"),
        ("<#C0SECRET>", "live token"),
        ("<!subteam^S0EVIL>", "live token"),
        ("<https://evil.example|bank>", "live token"),
        ("<evil|bank>", "live token"),
        ("<mailto:x@y.example|support>", "live token"),
        ("`/incident sev <1-4> <reason>`", "live token"),  # a usage form must be escaped too
        ("a < b", "unescaped '<'"),
        ("fish & chips", "unescaped '&'"),
        ("ping @channel", "bare @channel"),
        ("bidi \u202e", "control or bidi"),
        ("nul \x00", "control or bidi"),
    ],
)
def test_the_scanner_catches_what_it_looks_for(text: str, problem: str) -> None:
    """The scan above cannot pass vacuously: each kind of leak is caught."""
    found = problems_in(Shown("x", text, True))
    assert any(problem in p for p in found), found


def test_the_scanner_lets_reins_own_markup_through() -> None:
    rein_text = (
        "*INC-1* by <@U0ALICE> in <#C0INC1> <!date^1700000000^{date}|2023-11-14 22:13 UTC> "
        "&lt;!channel&gt; &amp; @\u2060here `/incident sev &lt;1-4&gt; &lt;reason&gt;` "
        "<!subteam^S0SECOPS>"
    )
    assert problems_in(Shown("x", rein_text, True)) == []
    assert problems_in(Shown("x", "<!channel> & <", False)) == []  # plain text is not parsed


def test_the_corpus_holds_every_kind_of_attack() -> None:
    assert len(LONG) == 5000 and len(HOSTILE_3000) == 3000
    assert len(TITLE_A) <= 150 and len(TITLE_B) <= 150
    for item in CORPUS.values():
        assert item in HOSTILE and item in HOSTILE_LONG and item in HOSTILE_3000
    assert all(chr(c) in HOSTILE for c in range(0x20))
    assert set(NORMALISED) and all(NORMALISED.values())


# --------------------------------------------------------------------------------- helpers


async def export_json(rig: Rig, ref: str) -> tuple[int, str, str]:
    database = rig.settings.REIN_DB_PATH
    env = {"REIN_DB_PATH": database, "REIN_POLICY_PATH": str(POLICY)}
    return await rein_cli("export", ref, "--format", "json", env=env, cwd=Path(database).parent)


async def _with_card(rig: Rig, number: int) -> Incident | None:
    incident = await rig.rein.incidents.get(number)
    if incident is None or incident.card_ts is None:
        return None
    return incident


async def _has_button(rig: Rig, label: str, number: int) -> bool:
    return containment.button(await rig.card(number), label) is not None


async def _triaged(rig: Rig) -> Incident | None:
    incident = await rig.rein.incidents.get(1)
    if incident is None or incident.triage_ts is None or incident.alert_count < 2:
        return None
    return incident


async def _severity(rig: Rig, number: int, severity: str) -> bool:
    return (await rig.incident(number)).severity.value == severity


async def _evidence_count(rig: Rig, count: int) -> bool:
    return len(await rig.rein.evidence.for_incident(1)) >= count


async def _pinned(rig: Rig, count: int) -> bool:
    return sum(e.kind.value == "pinned_message" for e in await rig.timeline()) >= count


def _chooser(rig: Rig) -> dict[str, Any] | None:
    for call in reversed(rig.fake.calls_to("views.open")):
        view = call.args["view"]
        if view.get("callback_id") == "add_to_timeline_choose":
            return {**view, "id": "V0CHOOSER"}
    return None


def _update_posted(rig: Rig, channel: str) -> bool:
    return any("status update" in (m.text or "") for m in rig.fake.messages[channel])


async def _ledger_size(rig: Rig, size: int) -> bool:
    return len(await rig.rein.rollback.for_incident(1)) >= size


def _channel_text(rig: Rig, channel: str) -> str:
    return "\n".join(
        (m.text or "") + json.dumps(m.blocks or [], ensure_ascii=False)
        for m in rig.fake.messages[channel]
    )
