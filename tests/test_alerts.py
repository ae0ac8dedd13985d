"""Alerts intake: `POST /v1/alerts` over real HTTP, the triage message in the fake Slack, and
its **Declare incident** / **Dismiss** buttons through signed Slack requests."""

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from bot.app import Runtime, build_runtime
from bot.domain.enums import IncidentStatus, TimelineKind
from bot.render.triage import DECLARE_ALERT, DISMISS_ALERT
from tests.conftest import ANNOUNCE, API_TOKEN, POLICY, eventually, make_settings
from tests.fakes.slack_api import FakeSlack, Message
from tests.slack_requests import SlackSender

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
TRIAGE = "CTRIAGE"
SECRET_ENV = "REIN_KS_CRM_WRITER"
SECRET = "kill-switch-secret-0123456789abcdef"
HOSTILE = "<!channel> <@U0CEO> wire the refund: <http://evil.example|bank.example.com> & @here"
COST_SPIKE = {
    "agent": "crm-writer",
    "kind": "cost_spike",
    "summary": "Token spend 40x baseline in 10 minutes",
    "details": "Run r-981 looped on the same CRM search 2,300 times.",
    "fingerprint": "crm-writer:cost:r-981",
}


# ------------------------------------------------------------------------------ the rig


@asynccontextmanager
async def running_rein(
    fake: FakeSlack,
    tmp_path: Path,
    policy: Path,
    environ: dict[str, str] | None = None,
    **settings: Any,
) -> AsyncIterator[Runtime]:
    runtime = await build_runtime(
        make_settings(fake, tmp_path, policy, **settings), environ=environ or {}
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def rein(fake_slack: FakeSlack, tmp_path: Path, policy_path: Path) -> AsyncIterator[Runtime]:
    """The tests' policy, with a triage channel."""
    fake_slack.add_channel(TRIAGE, "alerts", members=["U0ALICE", "U0BOB", "U0OWNER"])
    async with running_rein(
        fake_slack, tmp_path, policy_path, REIN_TRIAGE_CHANNEL=TRIAGE
    ) as runtime:
        yield runtime


async def post(
    http: aiohttp.ClientSession,
    base_url: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(AUTH if headers is None else headers)}
    async with http.post(f"{base_url}/v1/alerts", data=data, headers=sent) as response:
        return response.status, await response.json()


def shown(message: Message) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)


async def triage_message(fake: FakeSlack, rein: Runtime, number: int = 1) -> Message:
    """The incident's triage message, once it is posted."""

    async def posted() -> Message | None:
        incident = await rein.rein.incidents.get(number)
        if incident is None or incident.triage_ts is None:
            return None
        return next((m for m in fake.messages[TRIAGE] if m.ts == incident.triage_ts), None)

    return await eventually(posted)


def buttons(message: Message) -> list[str]:
    return [
        element["text"]["text"]
        for block in message.blocks or []
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def ephemerals_to(fake: FakeSlack, user: str) -> list[str]:
    return [e.text or "" for e in fake.ephemerals if e.user == user]


@asynccontextmanager
async def kill_switch() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP kill switch that checks PRODUCT.md's signature and answers 200."""
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        stamp = request.headers.get("X-Rein-Timestamp", "")
        expected = hmac.new(SECRET.encode(), f"v1:{stamp}:".encode() + raw, hashlib.sha256)
        signed = hmac.compare_digest(
            request.headers.get("X-Rein-Signature", ""), "v1=" + expected.hexdigest()
        )
        received.append({"body": json.loads(raw), "signed": signed})
        return web.json_response({"ok": True}, status=200 if signed else 401)

    app = web.Application()
    app.router.add_post("/rein/kill", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/rein/kill", received
    finally:
        await runner.cleanup()


def rule_policy(directory: Path, kill_switch_url: str) -> Path:
    """crm-writer has a kill switch; cost spikes from it declare and contain by themselves,
    anomalies from any agent declare (without containing) at SEV-4."""
    policy = yaml.safe_load(POLICY.read_text())
    policy["agents"][0]["kill_switch"] = {"url": kill_switch_url, "secret_env": SECRET_ENV}
    policy["alerts"] = [
        {"kind": "failed_scorecard", "agents": ["*"], "severity": "sev4"},
        {
            "kind": "cost_spike",
            "agents": ["crm-writer"],
            "severity": "sev3",
            "declare": True,
            "contain": True,
        },
        {"kind": "anomaly", "agents": ["*"], "severity": "sev4", "declare": True},
    ]
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump(policy))
    return path


# ------------------------------------------------------------------------- new alerts


async def test_an_alert_opens_an_incident_in_triage_and_posts_the_triage_message(
    rein: Runtime, base_url: str, http: aiohttp.ClientSession, fake_slack: FakeSlack
) -> None:
    status, answer = await post(http, base_url, COST_SPIKE)
    assert status == 201
    assert answer == {
        "incident": "INC-1",
        "number": 1,
        "status": "triage",
        "severity": "sev4",
        "agent": "crm-writer",
        "kind": "cost_spike",
        "fingerprint": "crm-writer:cost:r-981",
        "alert_count": 1,
        "duplicate": False,
        "automatic": None,
    }
    incident = await rein.rein.incidents.get(1)
    assert incident is not None
    assert incident.title == "Cost spike: Token spend 40x baseline in 10 minutes"
    assert incident.summary == COST_SPIKE["details"]
    assert (incident.status, incident.declared_by, incident.commander) == (
        IncidentStatus.TRIAGE,
        "api:dashboard",
        "U0OWNER",
    )
    assert incident.declared_at is None and incident.channel_id is None
    [entry] = await rein.rein.incidents.timeline(1)
    assert (entry.kind, entry.actor) == (TimelineKind.ALERT, "api:dashboard")
    assert {k: entry.data[k] for k in COST_SPIKE} == COST_SPIKE
    assert entry.data["suggested"] == "sev4" and "no policy rule" in entry.data["suggested_reason"]

    message = await triage_message(fake_slack, rein)
    assert buttons(message) == ["Declare incident", "Dismiss"]
    text = shown(message)
    for expected in (
        "INC-1",
        "Cost spike alert",
        "CRM enrichment agent",
        COST_SPIKE["summary"],
        COST_SPIKE["details"],
        "Suggested severity",
        "SEV-4",
        "no policy rule covers it",
        "<@U0OWNER>",
        "once",
    ):
        assert expected in text, expected
    values = {
        e["value"] for b in message.blocks or [] if b["type"] == "actions" for e in b["elements"]
    }
    assert values == {"1"}
    assert "INC-1" in (message.text or "")
    stored = await rein.rein.incidents.get(1)
    assert stored is not None and stored.triage_channel == TRIAGE
    # Nothing else is posted for an alert in triage: no channel, no card, no digest.
    assert fake_slack.calls_to("conversations.create") == []
    assert fake_slack.messages[ANNOUNCE] == []


@pytest.mark.parametrize(
    ("extra", "severity", "why"),
    [
        ({"severity": "SEV-2"}, "sev2", "the severity the alert was sent with"),
        ({"severity": "sev3"}, "sev3", "the severity the alert was sent with"),
        ({"kind": "failed_scorecard"}, "sev4", "policy rule alerts[0]"),
        ({"kind": "failed_scorecard", "severity": "sev1"}, "sev1", "sent with"),
    ],
)
async def test_the_suggested_severity_comes_from_the_alert_then_the_policy(
    rein: Runtime,
    base_url: str,
    http: aiohttp.ClientSession,
    fake_slack: FakeSlack,
    extra: dict[str, str],
    severity: str,
    why: str,
) -> None:
    status, answer = await post(http, base_url, {**COST_SPIKE, **extra})
    assert status == 201 and answer["severity"] == severity and answer["status"] == "triage"
    message = await triage_message(fake_slack, rein)
    assert f"SEV-{severity[-1]}" in shown(message) and why in shown(message)


async def test_alert_text_is_shown_as_text_and_stored_verbatim(
    rein: Runtime, base_url: str, http: aiohttp.ClientSession, fake_slack: FakeSlack
) -> None:
    details = f"{HOSTILE}\n{'x' * 5000}"
    body = {"agent": "crm-writer", "kind": "anomaly", "summary": HOSTILE, "details": details}
    status, _ = await post(http, base_url, body)
    assert status == 201
    message = await triage_message(fake_slack, rein)
    for text in (shown(message), message.text or ""):
        for live in ("<!channel>", "<@U0CEO>", "<http://evil.example", "@here"):
            assert live not in text
    assert "&lt;!channel&gt; &lt;@U0CEO&gt;" in shown(message)
    assert "&lt;http://evil.example|bank.example.com&gt; &amp;" in shown(message)
    assert "…" in shown(message)  # the long details are cut to Slack's limits
    assert fake_slack.rejections == []

    async with http.get(f"{base_url}/v1/incidents/1", headers=AUTH) as response:
        document = await response.json()
    assert document["timeline"][0]["data"]["summary"] == HOSTILE
    assert document["timeline"][0]["data"]["details"] == details
    assert document["title"] == f"Anomaly: {HOSTILE}"


# ---------------------------------------------------------------------- deduplication


async def test_the_same_fingerprint_adds_to_its_open_incident(
    rein: Runtime, base_url: str, http: aiohttp.ClientSession, fake_slack: FakeSlack
) -> None:
    assert (await post(http, base_url, COST_SPIKE))[0] == 201
    await triage_message(fake_slack, rein)
    for count in (2, 3):
        status, answer = await post(http, base_url, {**COST_SPIKE, "summary": "still burning"})
        assert status == 200
        assert (answer["incident"], answer["duplicate"], answer["alert_count"]) == (
            "INC-1",
            True,
            count,
        )
    assert len(await rein.rein.incidents.newest()) == 1
    timeline = await rein.rein.incidents.timeline(1)
    assert [e.kind for e in timeline] == [TimelineKind.ALERT] * 3
    assert [e.text for e in timeline[1:]] == [
        "Repeated alert #2: cost_spike from crm-writer",
        "Repeated alert #3: cost_spike from crm-writer",
    ]
    assert timeline[2].data["summary"] == "still burning" and timeline[2].data["count"] == 3
    # One message, its counter edited.
    await eventually(lambda: "*3* times" in shown(fake_slack.messages[TRIAGE][0]))
    assert len(fake_slack.messages[TRIAGE]) == 1
    assert fake_slack.calls_to("chat.update")
    # A different fingerprint, or none, is another incident.
    assert (await post(http, base_url, {**COST_SPIKE, "fingerprint": "other"}))[0] == 201
    assert (await post(http, base_url, {**COST_SPIKE, "fingerprint": None}))[0] == 201
    assert len(await rein.rein.incidents.newest()) == 3


async def test_identical_alerts_racing_open_one_incident(
    rein: Runtime, base_url: str, http: aiohttp.ClientSession, fake_slack: FakeSlack
) -> None:
    results = await asyncio.gather(*(post(http, base_url, COST_SPIKE) for _ in range(12)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 11 + [201]
    assert {answer["incident"] for _, answer in results} == {"INC-1"}
    assert len(await rein.rein.incidents.newest()) == 1
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.alert_count == 12
    assert len(await rein.rein.incidents.timeline(1)) == 12
    await triage_message(fake_slack, rein)
    await eventually(lambda: "*12* times" in shown(fake_slack.messages[TRIAGE][0]))
    assert len(fake_slack.messages[TRIAGE]) == 1


async def test_a_fingerprint_opens_a_new_incident_once_its_incident_is_dismissed(
    rein: Runtime,
    base_url: str,
    http: aiohttp.ClientSession,
    fake_slack: FakeSlack,
    slack: SlackSender,
) -> None:
    await post(http, base_url, COST_SPIKE)
    message = await triage_message(fake_slack, rein)
    await slack.click(DISMISS_ALERT, "1", user="U0OWNER", channel=TRIAGE, message_ts=message.ts)
    await eventually(lambda: buttons(fake_slack.messages[TRIAGE][0]) == [])
    status, answer = await post(http, base_url, COST_SPIKE)
    assert (status, answer["incident"], answer["duplicate"]) == (201, "INC-2", False)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": API_TOKEN}],
)
async def test_alerts_need_a_valid_token(
    rein: Runtime, base_url: str, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    status, answer = await post(http, base_url, COST_SPIKE, headers=headers)
    assert status == 401 and "bearer token" in answer["error"]
    assert await rein.rein.incidents.newest() == []


async def test_an_unknown_agent_gets_404(
    rein: Runtime, base_url: str, http: aiohttp.ClientSession
) -> None:
    status, answer = await post(http, base_url, {**COST_SPIKE, "agent": "ghost-writer"})
    assert status == 404
    assert answer == {"error": "there is no agent 'ghost-writer'", "field": "agent"}
    assert await rein.rein.incidents.newest() == []


async def test_a_body_over_one_mebibyte_gets_413(
    rein: Runtime, base_url: str, http: aiohttp.ClientSession
) -> None:
    body = json.dumps({**COST_SPIKE, "details": "x" * (1024 * 1024)}).encode()
    status, answer = await post(http, base_url, body)
    assert status == 413 and "larger than" in answer["error"]
    assert await rein.rein.incidents.newest() == []


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (b'{"agent": "crm-writer", "kind": ', "body", "not valid JSON"),
        (b"", "body", "not valid JSON"),
        (b'["crm-writer", "cost_spike"]', "body", "JSON object"),
        ({**COST_SPIKE, "kind": "meteor_strike"}, "kind", "cost_spike"),
        ({k: v for k, v in COST_SPIKE.items() if k != "summary"}, "summary", "required"),
        ({k: v for k, v in COST_SPIKE.items() if k != "agent"}, "agent", "required"),
        ({**COST_SPIKE, "summary": ""}, "summary", "at least 1"),
        ({**COST_SPIKE, "summary": " \n\t"}, "summary", "whitespace"),
        ({**COST_SPIKE, "summary": "s" * 3001}, "summary", "at most 3000"),
        ({**COST_SPIKE, "summary": 42}, "summary", "string"),
        ({**COST_SPIKE, "priority": "high"}, "priority", "not a field"),
        ({**COST_SPIKE, "fingerprint": "f" * 201}, "fingerprint", "at most 200"),
        ({**COST_SPIKE, "severity": "sev9"}, "severity", "sev1, sev2, sev3 or sev4"),
    ],
)
async def test_a_malformed_alert_gets_422_naming_the_field(
    rein: Runtime,
    base_url: str,
    http: aiohttp.ClientSession,
    body: Any,
    field: str,
    says: str,
) -> None:
    status, answer = await post(http, base_url, body)
    assert status == 422
    assert answer["field"] == field and says in answer["error"], answer
    assert await rein.rein.incidents.newest() == []


# ------------------------------------------------------------------------------ buttons


async def test_declare_incident_button_declares_once_and_opens_the_room(
    rein: Runtime,
    base_url: str,
    http: aiohttp.ClientSession,
    fake_slack: FakeSlack,
    slack: SlackSender,
) -> None:
    await post(http, base_url, COST_SPIKE)
    message = await triage_message(fake_slack, rein)
    status, _ = await slack.click(
        DECLARE_ALERT, "1", user="U0BOB", channel=TRIAGE, message_ts=message.ts
    )
    assert status == 200
    # Committed before the ack.
    incident = await rein.rein.incidents.get(1)
    assert incident is not None
    assert (incident.status, incident.commander) == (IncidentStatus.DECLARED, "U0BOB")
    assert incident.declared_at is not None

    await eventually(lambda: ephemerals_to(fake_slack, "U0BOB"))
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.channel_id is not None
    channel = fake_slack.channels[incident.channel_id]
    assert channel.name.startswith("inc-1-cost-spike")
    assert {"U0BOB", "U0OWNER"} <= channel.members
    assert "Required response for SEV-4" in shown(fake_slack.messages[channel.id][0])
    assert "INC-1" in (fake_slack.messages[ANNOUNCE][0].text or "")
    updated = fake_slack.messages[TRIAGE][0]
    assert buttons(updated) == []
    assert "Declared* by <@U0BOB>" in shown(updated) and f"<#{channel.id}>" in shown(updated)
    assert "You are its commander" in ephemerals_to(fake_slack, "U0BOB")[0]
    entry = (await rein.rein.incidents.timeline(1))[-1]
    assert (entry.kind, entry.actor) == (TimelineKind.STATUS_CHANGED, "U0BOB")
    assert entry.data["from"] == "triage" and entry.data["to"] == "declared"

    # A second click (a stale message, or someone a moment late) is answered privately.
    await slack.click(DECLARE_ALERT, "1", user="U0ALICE", channel=TRIAGE, message_ts=message.ts)
    await eventually(lambda: ephemerals_to(fake_slack, "U0ALICE"))
    assert "already declared by <@U0BOB>" in ephemerals_to(fake_slack, "U0ALICE")[0]
    assert len(fake_slack.calls_to("conversations.create")) == 1
    assert len(await rein.rein.incidents.timeline(1)) == 2


async def test_simultaneous_declare_clicks_declare_once(
    rein: Runtime,
    base_url: str,
    http: aiohttp.ClientSession,
    fake_slack: FakeSlack,
    slack: SlackSender,
) -> None:
    await post(http, base_url, COST_SPIKE)
    message = await triage_message(fake_slack, rein)
    users = [f"U0CLICK{i}" for i in range(6)]
    await asyncio.gather(
        *(
            slack.click(DECLARE_ALERT, "1", user=u, channel=TRIAGE, message_ts=message.ts)
            for u in users
        )
    )
    await eventually(lambda: all(ephemerals_to(fake_slack, u) for u in users))
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.commander in users
    refused = [u for u in users if "already declared" in ephemerals_to(fake_slack, u)[0]]
    assert len(refused) == 5 and incident.commander not in refused
    assert len(fake_slack.calls_to("conversations.create")) == 1
    kinds = [e.kind for e in await rein.rein.incidents.timeline(1)]
    assert kinds == [TimelineKind.ALERT, TimelineKind.STATUS_CHANGED]


async def test_dismiss_records_who_and_then_declare_is_refused(
    rein: Runtime,
    base_url: str,
    http: aiohttp.ClientSession,
    fake_slack: FakeSlack,
    slack: SlackSender,
) -> None:
    await post(http, base_url, COST_SPIKE)
    message = await triage_message(fake_slack, rein)
    # Dismissing decides nobody responds: left to the agent owner and the approvers.
    await slack.click(DISMISS_ALERT, "1", user="U0MALLORY", channel=TRIAGE, message_ts=message.ts)
    await eventually(lambda: ephemerals_to(fake_slack, "U0MALLORY"))
    assert "can dismiss INC-1" in ephemerals_to(fake_slack, "U0MALLORY")[0]
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.status is IncidentStatus.TRIAGE
    refusal = (await rein.rein.incidents.timeline(1))[-1]
    assert (refusal.kind, refusal.actor) == (TimelineKind.REFUSED, "U0MALLORY")

    await slack.click(DISMISS_ALERT, "1", user="U0OWNER", channel=TRIAGE, message_ts=message.ts)
    await eventually(lambda: buttons(fake_slack.messages[TRIAGE][0]) == [])
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.status is IncidentStatus.DISMISSED
    assert "Dismissed* as a false alarm by <@U0OWNER>" in shown(fake_slack.messages[TRIAGE][0])
    entry = (await rein.rein.incidents.timeline(1))[-1]
    assert (entry.kind, entry.actor, entry.data["to"]) == (
        TimelineKind.STATUS_CHANGED,
        "U0OWNER",
        "dismissed",
    )
    assert fake_slack.calls_to("conversations.create") == []

    await slack.click(DECLARE_ALERT, "1", user="U0BOB", channel=TRIAGE, message_ts=message.ts)
    await slack.click(DISMISS_ALERT, "1", user="U0HEADOPS", channel=TRIAGE, message_ts=message.ts)
    await eventually(lambda: ephemerals_to(fake_slack, "U0BOB"))
    await eventually(lambda: ephemerals_to(fake_slack, "U0HEADOPS"))
    assert "was dismissed as a false alarm by <@U0OWNER>" in ephemerals_to(fake_slack, "U0BOB")[0]
    assert "already" not in ephemerals_to(fake_slack, "U0BOB")[0]
    assert "dismissed" in ephemerals_to(fake_slack, "U0HEADOPS")[0]
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.status is IncidentStatus.DISMISSED
    assert fake_slack.calls_to("conversations.create") == []


async def test_a_declared_alert_cannot_be_dismissed(
    rein: Runtime,
    base_url: str,
    http: aiohttp.ClientSession,
    fake_slack: FakeSlack,
    slack: SlackSender,
) -> None:
    await post(http, base_url, COST_SPIKE)
    message = await triage_message(fake_slack, rein)
    await slack.click(DECLARE_ALERT, "1", user="U0BOB", channel=TRIAGE, message_ts=message.ts)
    await eventually(lambda: ephemerals_to(fake_slack, "U0BOB"))
    await slack.click(DISMISS_ALERT, "1", user="U0OWNER", channel=TRIAGE, message_ts=message.ts)
    await eventually(lambda: ephemerals_to(fake_slack, "U0OWNER"))
    answer = ephemerals_to(fake_slack, "U0OWNER")[0]
    assert "already declared by <@U0BOB>" in answer and "not dismissed" in answer
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.status is IncidentStatus.DECLARED
    # A repeat of the alert still counts on the declared incident, and the message shows it.
    status, answer_body = await post(http, base_url, COST_SPIKE)
    assert (status, answer_body["status"], answer_body["alert_count"]) == (200, "declared", 2)
    await eventually(lambda: "*2* times" in shown(fake_slack.messages[TRIAGE][0]))
    assert "Declared* by <@U0BOB>" in shown(fake_slack.messages[TRIAGE][0])


# ------------------------------------------------------------------- policy alert rules


async def test_a_policy_rule_declares_and_contains_by_itself(
    fake_slack: FakeSlack, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    fake_slack.add_channel(TRIAGE, "alerts")
    async with (
        kill_switch() as (url, received),
        running_rein(
            fake_slack,
            tmp_path,
            rule_policy(tmp_path, url),
            {SECRET_ENV: SECRET},
            REIN_TRIAGE_CHANNEL=TRIAGE,
        ) as runtime,
    ):
        base_url = f"http://127.0.0.1:{runtime.port}"
        rein = runtime.rein
        status, answer = await post(http, base_url, {**COST_SPIKE, "severity": "sev1"})
        why = "cost_spike alert from crm-writer, rule alerts[1]"
        assert status == 201
        assert (answer["status"], answer["severity"], answer["automatic"]) == (
            "contained",
            "sev3",  # the rule's severity, not the alert's
            why,
        )
        # Paused before the answer: the autonomy API already says so.
        async with http.get(f"{base_url}/v1/agents/crm-writer/autonomy", headers=AUTH) as r:
            autonomy = await r.json()
        assert (autonomy["mode"], autonomy["writes"], autonomy["incident"]) == (
            "paused",
            False,
            "INC-1",
        )
        incident = await rein.incidents.get(1)
        assert incident is not None
        assert (incident.commander, incident.automatic) == ("U0OWNER", why)
        assert incident.declared_at is not None
        timeline = await rein.incidents.timeline(1)
        assert [(e.kind, e.actor, e.data.get("to")) for e in timeline[:3]] == [
            (TimelineKind.ALERT, "api:dashboard", None),
            (TimelineKind.STATUS_CHANGED, "rein", "declared"),
            (TimelineKind.STATUS_CHANGED, "rein", "contained"),
        ]
        assert timeline[0].data["severity"] == "sev1"  # what the alert said, kept

        # The kill switch is told, signed.
        await eventually(lambda: received)
        assert received[0]["signed"]
        assert received[0]["body"]["incident"] == "INC-1"
        assert received[0]["body"]["event"] == "containment"
        assert "revoke_writes" in received[0]["body"]["actions"]

        # Humans are told at once: channel, card, digest, triage message.
        message = await triage_message(fake_slack, runtime)
        incident = await rein.incidents.get(1)
        assert incident is not None and incident.channel_id is not None
        assert {"U0OWNER"} <= fake_slack.channels[incident.channel_id].members
        card = shown(fake_slack.messages[incident.channel_id][0])
        assert "Rein acted by itself" in card and "rule alerts[1]" in card
        await eventually(
            lambda: (
                "confirmed by the kill switch"
                in shown(next(m for m in fake_slack.messages[incident.channel_id]))
            )
        )
        assert "INC-1" in (fake_slack.messages[ANNOUNCE][0].text or "")
        assert buttons(message) == []
        assert "Rein declared INC-1 by itself" in shown(message)
        assert "paused `crm-writer`" in shown(message)
        assert f"<#{incident.channel_id}>" in shown(message)

        # A repeat adds to it; nothing is contained twice.
        status, answer = await post(http, base_url, COST_SPIKE)
        assert (status, answer["duplicate"], answer["status"]) == (200, True, "contained")
        await asyncio.sleep(0.2)
        assert len(received) == 1
        assert len(fake_slack.calls_to("conversations.create")) == 1

        # A human clicking Declare on it is told who did.
        await SlackSender(f"{base_url}/slack/events", fake_slack, http).click(
            DECLARE_ALERT, "1", user="U0BOB", channel=TRIAGE, message_ts=message.ts
        )
        await eventually(lambda: ephemerals_to(fake_slack, "U0BOB"))
        assert "already declared by Rein itself" in ephemerals_to(fake_slack, "U0BOB")[0]


async def test_a_rule_that_only_declares_leaves_autonomy_alone(
    fake_slack: FakeSlack, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    fake_slack.add_channel(TRIAGE, "alerts")
    async with running_rein(
        fake_slack,
        tmp_path,
        rule_policy(tmp_path, "http://127.0.0.1:9/rein/kill"),
        {SECRET_ENV: SECRET},
        REIN_TRIAGE_CHANNEL=TRIAGE,
    ) as runtime:
        base_url = f"http://127.0.0.1:{runtime.port}"
        body = {"agent": "page-publisher", "kind": "anomaly", "summary": "Published 40 drafts"}
        status, answer = await post(http, base_url, body)
        assert (status, answer["status"], answer["severity"]) == (201, "declared", "sev4")
        assert answer["automatic"] == "anomaly alert from page-publisher, rule alerts[2]"
        async with http.get(f"{base_url}/v1/agents/page-publisher/autonomy", headers=AUTH) as r:
            assert (await r.json())["mode"] == "supervised"
        message = await triage_message(fake_slack, runtime)
        assert "Rein declared INC-1 by itself" in shown(message)
        assert "paused" not in shown(message)
        incident = await runtime.rein.incidents.get(1)
        assert incident is not None and incident.channel_id is not None
        assert "Approve containment" in shown(fake_slack.messages[incident.channel_id][0])


# -------------------------------------------------------------- configuration, shutdown


async def test_without_a_triage_channel_the_incident_exists_and_rein_warns_once(
    fake_slack: FakeSlack,
    tmp_path: Path,
    policy_path: Path,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.services.alerts")
    async with running_rein(fake_slack, tmp_path, policy_path) as runtime:
        base_url = f"http://127.0.0.1:{runtime.port}"
        assert (await post(http, base_url, COST_SPIKE))[0] == 201
        assert (await post(http, base_url, {**COST_SPIKE, "fingerprint": "2"}))[0] == 201
        await eventually(lambda: "REIN_TRIAGE_CHANNEL" in caplog.text)
        await asyncio.sleep(0.1)
        assert len(await runtime.rein.incidents.newest("triage")) == 2
    assert caplog.text.count("REIN_TRIAGE_CHANNEL is not set") == 1
    assert fake_slack.calls_to("chat.postMessage") == []


async def test_shutdown_waits_for_the_triage_message(
    fake_slack: FakeSlack, tmp_path: Path, policy_path: Path, http: aiohttp.ClientSession
) -> None:
    fake_slack.add_channel(TRIAGE, "alerts")
    fake_slack.fail("chat.postMessage", delay=0.5)  # a slow Slack: answered after half a second
    async with running_rein(
        fake_slack, tmp_path, policy_path, REIN_TRIAGE_CHANNEL=TRIAGE
    ) as runtime:
        base_url = f"http://127.0.0.1:{runtime.port}"
        assert (await post(http, base_url, COST_SPIKE))[0] == 201
    # Stopped right after the answer; the message was still posted, and its reference stored.
    assert len(fake_slack.messages[TRIAGE]) == 1
    assert fake_slack.calls_to("chat.postMessage")


async def test_a_triage_channel_rein_cannot_post_in_is_on_the_timeline(
    fake_slack: FakeSlack, tmp_path: Path, policy_path: Path, http: aiohttp.ClientSession
) -> None:
    fake_slack.add_channel(TRIAGE, "alerts", bot_is_member=False)
    async with running_rein(
        fake_slack, tmp_path, policy_path, REIN_TRIAGE_CHANNEL=TRIAGE
    ) as runtime:
        base_url = f"http://127.0.0.1:{runtime.port}"
        assert (await post(http, base_url, COST_SPIKE))[0] == 201

        async def problem() -> Any:
            timeline = await runtime.rein.incidents.timeline(1)
            return [e for e in timeline if e.kind is TimelineKind.SLACK_PROBLEM]

        [entry] = await eventually(problem)
        assert "triage message" in entry.text and "/invite" in entry.text
