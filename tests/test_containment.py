"""Containment through the real path: signed Slack requests through Bolt over HTTP, the
autonomy API over real HTTP, and a real kill-switch receiver that checks every delivery's
signature byte for byte (tests/fakes/kill_switch.py)."""

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bot.app import DeliveryTimings, Runtime, build_runtime
from bot.config import Settings
from bot.context import Rein
from bot.domain.enums import DeliveryState, TimelineKind
from bot.domain.models import Delivery, Incident, TimelineEntry
from tests.conftest import API_TOKEN, POLICY, eventually, make_settings
from tests.fakes.kill_switch import TRUNCATED_200, FakeKillSwitch, running_kill_switch
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import TEAM, SlackSender

SECRET_ENV = "REIN_KS_CRM"
SECRET = "kill-switch-secret-for-crm-writer-0123456789"
ENVIRON = {SECRET_ENV: SECRET}
DELAYS = (0.1, 0.15, 0.2)
TIMEOUT = 0.5
ATTEMPTS = len(DELAYS) + 1
SETTLE = 0.35  # longer than every retry delay: nothing more can arrive after it
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ALL_MOVES = ["pause_runs", "revoke_writes", "disable_schedules", "freeze_outbound"]
SEV3_GROUP = "S0SEV3"  # SEV-3 approvers: not invited at declaration, read first at approval
SEV3_LEAD = "U0SEV3LEAD"
CONFIRMED = "confirmed by the kill switch"
NOT_CONFIRMED = "NOT CONFIRMED"


def precise_now() -> datetime:
    """Rein's clock with its microseconds. The default clock (bot/clock.py utc_now) cuts them
    off, which makes every sub-second retry delay of these tests fall due at once."""
    return datetime.now(UTC)


def timings(*delays: float, timeout: float = TIMEOUT) -> DeliveryTimings:
    return DeliveryTimings(
        retry_delays=tuple(timedelta(seconds=s) for s in delays), timeout_seconds=timeout
    )


FAST = timings(*DELAYS)


# ------------------------------------------------------------------------------ the rig


def write_policy(directory: Path, kill_switch_url: str) -> Path:
    """The tests' policy, with a kill switch for crm-writer (page-publisher has none) and a
    user group approving SEV-3."""
    policy = yaml.safe_load(POLICY.read_text())
    for agent in policy["agents"]:
        if agent["id"] == "crm-writer":
            agent["kill_switch"] = {"url": kill_switch_url, "secret_env": SECRET_ENV}
    policy["severities"]["sev3"]["approvers"] = [SEV3_GROUP]
    path = directory / "rein-containment.yml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


@dataclass
class Rig:
    fake: FakeSlack
    ks: FakeKillSwitch
    settings: Settings
    http: aiohttp.ClientSession
    timings: DeliveryTimings
    runtime: Runtime | None = None
    _slack: SlackSender | None = None
    _n: int = field(default=0)

    async def start(self) -> None:
        self.runtime = await build_runtime(
            self.settings, environ=ENVIRON, timings=self.timings, clock=precise_now
        )
        await self.runtime.start()
        self._slack = SlackSender(f"{self.base}/slack/events", self.fake, self.http)

    async def stop(self) -> None:
        if self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            await runtime.stop()

    @property
    def rein(self) -> Rein:
        assert self.runtime is not None, "Rein is not running"
        return self.runtime.rein

    @property
    def base(self) -> str:
        assert self.runtime is not None, "Rein is not running"
        return f"http://127.0.0.1:{self.runtime.port}"

    @property
    def slack(self) -> SlackSender:
        assert self._slack is not None, "Rein is not running"
        return self._slack

    def next(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n:06d}"

    # -------------------------------------------------------------- reading state

    async def incident(self, number: int = 1) -> Incident:
        incident = await self.rein.incidents.get(number)
        assert incident is not None, f"INC-{number} does not exist"
        return incident

    async def timeline(self, number: int = 1) -> list[TimelineEntry]:
        return await self.rein.incidents.timeline(number)

    async def deliveries(self, number: int = 1) -> list[Delivery]:
        return await self.rein.deliveries.for_incident(number)

    async def card(self, number: int = 1) -> list[dict[str, Any]]:
        incident = await self.incident(number)
        assert incident.card_channel and incident.card_ts, f"{incident.ref} has no card"
        message = next(
            m for m in self.fake.messages[incident.card_channel] if m.ts == incident.card_ts
        )
        return message.blocks or []

    async def card_history(self, number: int = 1) -> list[str]:
        """Every version of the card Rein sent, as text: the post, then each edit."""
        incident = await self.incident(number)
        versions = [
            call.args.get("blocks")
            for call in self.fake.calls
            if call.method in ("chat.postMessage", "chat.update")
            and call.args.get("channel") == incident.card_channel
            and (call.method == "chat.postMessage" or call.args.get("ts") == incident.card_ts)
        ]
        return [texts(v) for v in versions if v]

    async def autonomy(
        self, agent: str = "crm-writer", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        url = f"{self.base}/v1/agents/{agent}/autonomy"
        async with self.http.get(url, headers=AUTH if headers is None else headers) as answer:
            return answer.status, await answer.json()

    # ---------------------------------------------------------------- acting

    async def declare(self, text: str, user: str = "U0ALICE") -> Incident:
        """Quick-declare and wait for the room (channel and card)."""
        before = len(self.fake.responses)
        status, answer = await self.slack.command(f"declare {text}", user=user)
        assert status == 200 and str(answer).startswith("Declared INC-"), answer
        await eventually(lambda: len(self.fake.responses) > before)
        newest = (await self.rein.incidents.newest())[0]
        assert newest.card_ts is not None and newest.channel_id is not None
        return newest

    async def command(
        self, text: str, *, user: str, channel: str = "CGENERAL", name: str = "/incident"
    ) -> tuple[int, Any]:
        return await self.slack.command(text, user=user, channel=channel, name=name)

    async def reply(self, count: int) -> dict[str, Any]:
        """The `count`-th answer Rein sent through a response_url."""
        await eventually(lambda: len(self.fake.responses) >= count)
        return self.fake.responses[count - 1][1]

    def block_actions(
        self, user: str, incident: Incident, action: dict[str, Any]
    ) -> dict[str, Any]:
        """A block_actions payload as Slack sends it for a click on the card."""
        return {
            "type": "block_actions",
            "team": TEAM,
            "user": {"id": user, "username": user.lower(), "team_id": TEAM["id"]},
            "api_app_id": "A0REIN",
            "container": {
                "type": "message",
                "message_ts": incident.card_ts,
                "channel_id": incident.card_channel,
                "is_ephemeral": False,
            },
            "trigger_id": self.next("trigger."),
            "channel": {"id": incident.card_channel, "name": incident.channel_name},
            "message": {"type": "message", "ts": incident.card_ts, "text": ""},
            "response_url": self.fake.response_url(self.next("act")),
            "actions": [{**action, "action_ts": f"{time.time():.6f}"}],
        }

    async def button_payload(self, label: str, user: str, number: int = 1) -> dict[str, Any]:
        """The click on the card's button labelled `label`, found on the card as it is."""
        incident = await self.incident(number)
        found = button(await self.card(number), label)
        assert found is not None, f"no {label!r} button on {incident.ref}'s card"
        block_id, element = found
        action = {
            "type": "button",
            "action_id": element["action_id"],
            "block_id": block_id,
            "text": element["text"],
            "value": element["value"],
        }
        return self.block_actions(user, incident, action)

    async def press(self, label: str, user: str, number: int = 1) -> tuple[int, Any]:
        return await self.slack.interaction(await self.button_payload(label, user, number))

    async def tick(self, values: list[str], user: str, number: int = 1) -> tuple[int, Any]:
        """Change the plan's checkboxes on the card to exactly `values`."""
        incident = await self.incident(number)
        found = checkboxes(await self.card(number))
        assert found is not None, f"no plan checkboxes on {incident.ref}'s card"
        block_id, element = found
        labels = {o["value"]: o["text"] for o in element["options"]}
        action = {
            "type": "checkboxes",
            "action_id": element["action_id"],
            "block_id": block_id,
            "selected_options": [
                {"text": labels.get(v, {"type": "plain_text", "text": v}), "value": v}
                for v in values
            ],
        }
        return await self.slack.interaction(self.block_actions(user, incident, action))


def texts(blocks: Any) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def actions_elements(blocks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (block.get("block_id", ""), element)
        for block in blocks
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    ]


def button(blocks: list[dict[str, Any]], label: str) -> tuple[str, dict[str, Any]] | None:
    return next(
        (
            (block_id, el)
            for block_id, el in actions_elements(blocks)
            if el.get("type") == "button" and el["text"]["text"] == label
        ),
        None,
    )


def checkboxes(blocks: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    return next(
        ((b, el) for b, el in actions_elements(blocks) if el.get("type") == "checkboxes"), None
    )


def private_to(fake: FakeSlack, user: str) -> list[str]:
    """What only `user` was told: ephemeral messages, and direct messages."""
    ephemeral = [e.text or "" for e in fake.ephemerals if e.user == user]
    direct = [m.text or "" for m in fake.messages.get(user, [])]
    return ephemeral + direct


def of_kind(timeline: list[TimelineEntry], kind: TimelineKind) -> list[TimelineEntry]:
    return [e for e in timeline if e.kind == kind]


def approvals(timeline: list[TimelineEntry]) -> list[TimelineEntry]:
    return [
        e for e in of_kind(timeline, TimelineKind.STATUS_CHANGED) if e.data.get("to") == "contained"
    ]


def attempts(timeline: list[TimelineEntry]) -> list[TimelineEntry]:
    """Delivery attempts (a person's retry request is a delivery entry without an attempt)."""
    return [e for e in of_kind(timeline, TimelineKind.DELIVERY) if "attempt" in e.data]


async def delivery_state(
    rig: Rig, state: DeliveryState, number: int = 1, timeout: float = 8.0
) -> Delivery:
    """The incident's latest delivery, once it is in `state`."""

    async def reached() -> Delivery | None:
        found = await rig.deliveries(number)
        return found[-1] if found and found[-1].state is state else None

    try:
        return await eventually(reached, timeout=timeout)
    except AssertionError:
        found = await rig.deliveries(number)
        seen = [(d.state.value, d.attempts) for d in found]
        raise AssertionError(
            f"no delivery reached {state.value}; (state, attempts): {seen}"
        ) from None


@pytest.fixture
async def kill_switch() -> AsyncIterator[FakeKillSwitch]:
    async with running_kill_switch(SECRET, hang_seconds=1.5) as ks:
        yield ks
    assert ks.violations == [], "Rein's deliveries broke the kill-switch contract"


@pytest.fixture
def timings_used() -> DeliveryTimings:
    """Overridden by `@pytest.mark.parametrize("timings_used", [...])` where a test needs."""
    return FAST


@pytest.fixture
async def rig(
    fake_slack: FakeSlack,
    kill_switch: FakeKillSwitch,
    tmp_path: Path,
    timings_used: DeliveryTimings,
) -> AsyncIterator[Rig]:
    fake_slack.add_usergroup(SEV3_GROUP, [SEV3_LEAD])
    policy = write_policy(tmp_path, kill_switch.url)
    settings = make_settings(fake_slack, tmp_path, policy)
    async with aiohttp.ClientSession() as http:
        rig = Rig(fake_slack, kill_switch, settings, http, timings_used)
        await rig.start()
        try:
            yield rig
        finally:
            await rig.stop()


# ------------------------------------------------------------------- the fake itself


async def test_the_fake_kill_switch_checks_the_signature_byte_for_byte(
    kill_switch: FakeKillSwitch,
) -> None:
    """The receiver would catch a wrong scheme: computed here by hand, independently."""
    body = {
        "delivery_id": "d-1",
        "event": "containment",
        "incident": "INC-7",
        "agent": "crm-writer",
        "actions": ["pause_runs"],
        "mode": "paused",
        "issued_at": "2026-11-24T09:30:00Z",
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    ts = str(int(time.time()))

    def sign(data: bytes, timestamp: str = ts, secret: str = SECRET) -> str:
        message = f"v1:{timestamp}:".encode() + data
        return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()

    async def send(data: bytes, signature: str, timestamp: str = ts) -> int:
        headers = {
            "Content-Type": "application/json",
            "X-Rein-Timestamp": timestamp,
            "X-Rein-Signature": signature,
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(kill_switch.url, data=data, headers=headers) as answer:
                return answer.status

    assert await send(raw, sign(raw)) == 200
    assert kill_switch.violations == []
    # The same JSON re-serialised (other bytes), another secret, a signature over another
    # timestamp, a stale timestamp, an extra field: each is caught.
    assert await send(json.dumps(body).encode(), sign(raw)) == 401
    assert await send(raw, sign(raw, secret="other")) == 401
    assert await send(raw, sign(raw, str(int(ts) - 1))) == 401
    old = str(int(time.time()) - 3600)
    assert await send(raw, sign(raw, old), old) == 400
    extra = json.dumps({**body, "extra": 1}).encode()
    assert await send(extra, sign(extra)) == 400
    assert len(kill_switch.violations) >= 5
    assert [r.answer for r in kill_switch.requests] == ["200", "401", "401", "401", "400", "400"]
    assert kill_switch.delivery_ids() == ["d-1"]
    kill_switch.violations.clear()  # provoked on purpose


# ------------------------------------------------------------------ the plan on the card


@pytest.mark.parametrize(
    ("declaration", "options", "planned"),
    [
        ("sev4 agent:crm-writer Slow enrichment", ALL_MOVES, ["pause_runs"]),
        ("sev3 agent:crm-writer Wrong field", ALL_MOVES, ["pause_runs", "revoke_writes"]),
        ("sev2 agent:crm-writer Wrong emails", ALL_MOVES, ALL_MOVES),
        ("sev1 agent:crm-writer Customer data leaked", ALL_MOVES, ALL_MOVES),
        (
            "sev1 agent:page-publisher Defamatory page",
            ["pause_runs", "revoke_writes"],
            ["pause_runs", "revoke_writes"],
        ),
        (
            "sev4 agent:page-publisher Typos",
            ["pause_runs", "revoke_writes"],
            ["pause_runs"],
        ),
    ],
)
async def test_the_card_shows_the_plan_for_the_severity_and_the_agent(
    rig: Rig, declaration: str, options: list[str], planned: list[str]
) -> None:
    incident = await rig.declare(declaration)
    blocks = await rig.card(incident.number)
    found = checkboxes(blocks)
    assert found is not None
    block_id, element = found
    assert block_id == f"containment:{incident.number}"
    assert [o["value"] for o in element["options"]] == options
    assert [o["value"] for o in element.get("initial_options", [])] == planned
    approve = button(blocks, "Approve containment")
    assert approve is not None and approve[1]["value"] == str(incident.number)
    shown = texts(blocks)
    if incident.agent_id == "page-publisher":
        assert "no kill switch" in shown
    else:
        assert "kill switch is told" in shown


async def test_the_commander_adjusts_the_plan_and_pausing_runs_cannot_be_removed(
    rig: Rig, fake_slack: FakeSlack
) -> None:
    await rig.declare("sev2 agent:crm-writer Wrong emails")
    status, _ = await rig.tick(["revoke_writes", "freeze_outbound", "delete_everything"], "U0ALICE")
    assert status == 200
    kept = ["pause_runs", "revoke_writes", "freeze_outbound"]

    async def plan_on_card() -> list[str]:
        found = checkboxes(await rig.card())
        assert found is not None
        return [o["value"] for o in found[1].get("initial_options", [])]

    await eventually(lambda: _equals(plan_on_card, kept))
    assert [m.value for m in (await rig.incident()).containment_plan or ()] == kept
    changed = of_kind(await rig.timeline(), TimelineKind.PLAN_CHANGED)
    assert [(e.actor, e.data["moves"]) for e in changed] == [("U0ALICE", kept)]

    # A stranger's adjustment is refused privately, recorded, and changes nothing.
    await rig.tick(["pause_runs"], "U0MALLORY")
    told = await eventually(lambda: private_to(fake_slack, "U0MALLORY"))
    assert "Only the commander (<@U0ALICE>), the agent owner (<@U0OWNER>)" in told[0]
    refused = of_kind(await rig.timeline(), TimelineKind.REFUSED)
    assert [(e.actor, e.data["action"]) for e in refused] == [
        ("U0MALLORY", "adjust the containment plan of")
    ]
    assert [m.value for m in (await rig.incident()).containment_plan or ()] == kept
    assert await plan_on_card() == kept

    # The approved containment carries the adjusted plan to the kill switch.
    await rig.press("Approve containment", "U0ALICE")
    await eventually(lambda: rig.ks.deliveries)
    assert rig.ks.deliveries[0].body is not None
    assert rig.ks.deliveries[0].body["actions"] == kept
    await eventually(lambda: _contains(rig.card, CONFIRMED))
    shown = texts(await rig.card())
    assert "Pause runs" in shown and "Freeze outbound" in shown
    assert "Disable schedules" not in shown


async def _equals(read: Callable[[], Awaitable[Any]], expected: Any) -> bool:
    return await read() == expected


async def _contains(read: Callable[[], Awaitable[Any]], needle: str) -> bool:
    return needle in texts(await read())


# ---------------------------------------------------------------- approving containment


async def test_approve_containment_pauses_the_agent_and_the_kill_switch_confirms(
    rig: Rig,
) -> None:
    await rig.declare("sev2 agent:crm-writer Wrong CRM field on 300 records")
    status, body = await rig.press("Approve containment", "U0ALICE")
    assert status == 200 and body in ("", None)

    incident = await rig.incident()
    assert incident.status == "contained"
    status, state = await rig.autonomy()
    assert status == 200
    assert {k: state[k] for k in ("agent", "mode", "runs", "writes", "outbound", "schedules")} == {
        "agent": "crm-writer",
        "mode": "paused",
        "runs": False,
        "writes": False,
        "outbound": False,
        "schedules": False,
    }
    assert state["incident"] == "INC-1"
    datetime.strptime(state["updated_at"], "%Y-%m-%dT%H:%M:%SZ")

    delivered = await delivery_state(rig, DeliveryState.CONFIRMED)
    [received] = rig.ks.deliveries
    assert received.body is not None
    body = dict(received.body)
    issued_at = body.pop("issued_at")
    assert body == {
        "delivery_id": delivered.id,
        "event": "containment",
        "incident": "INC-1",
        "agent": "crm-writer",
        "actions": ALL_MOVES,
        "mode": "paused",
    }
    assert issued_at.endswith("Z")
    issued = datetime.fromisoformat(issued_at.removesuffix("Z") + "+00:00")
    assert abs((datetime.now(UTC) - issued).total_seconds()) < 60

    timeline = await rig.timeline()
    [approval] = approvals(timeline)
    assert approval.actor == "U0ALICE" and approval.data["moves"] == ALL_MOVES
    [attempt] = attempts(timeline)
    assert attempt.actor == "rein"
    assert attempt.data["delivery_id"] == delivered.id and attempt.data["state"] == "confirmed"

    await eventually(lambda: _contains(rig.card, CONFIRMED))
    card = await rig.card()
    shown = texts(card)
    assert shown.count(CONFIRMED) == 4 and NOT_CONFIRMED not in shown
    assert button(card, "Approve containment") is None and button(card, "Retry delivery") is None
    await asyncio.sleep(SETTLE)
    assert rig.ks.delivery_ids() == [delivered.id]  # confirmed: nothing more is sent


async def test_the_autonomy_api_answers_paused_before_the_approval_is_acknowledged(
    rig: Rig, fake_slack: FakeSlack
) -> None:
    """The handler commits before it acks: once the signed POST returns, the API answers
    `paused`. Slack is made slow where the approval reads the SEV-3 approvers, so that an
    ack sent before the commit would be seen."""
    await rig.declare("sev3 agent:crm-writer Token-burning loop")
    assert (await rig.autonomy())[1]["mode"] == "autonomous"
    fake_slack.fail("usergroups.users.list", delay=0.3)
    seen: list[str] = []
    stop = asyncio.Event()

    async def poll() -> None:
        while not stop.is_set():
            seen.append((await rig.autonomy())[1]["mode"])

    poller = asyncio.create_task(poll())
    status, _ = await rig.press("Approve containment", "U0ALICE")
    status_api, state = await rig.autonomy()  # immediately: no waiting
    stop.set()
    await poller
    assert status == 200
    assert (status_api, state["mode"], state["incident"]) == (200, "paused", "INC-1")
    assert any(
        c.args.get("usergroup") == SEV3_GROUP for c in fake_slack.calls_to("usergroups.users.list")
    )
    # Agents polling meanwhile saw it flip once, and never back.
    assert seen and set(seen) <= {"autonomous", "paused"}
    flips = sum(1 for a, b in itertools.pairwise(seen) if a != b)
    assert flips <= 1 and (seen[-1] == "paused" or "paused" not in seen)


async def test_the_autonomy_api_refuses_unknown_agents_and_missing_tokens(rig: Rig) -> None:
    status, body = await rig.autonomy("no-such-agent")
    assert status == 404 and "error" in body
    status, body = await rig.autonomy("crm-writer", headers={})
    assert status == 401 and "error" in body
    status, body = await rig.autonomy("crm-writer", headers={"Authorization": "Bearer nope"})
    assert status == 401 and "error" in body
    status, body = await rig.autonomy("page-publisher")
    assert status == 200
    assert (body["mode"], body["incident"]) == ("supervised", None)
    assert all(body[s] is True for s in ("runs", "writes", "outbound", "schedules"))


async def test_ten_people_approving_at_once_contain_once(rig: Rig, fake_slack: FakeSlack) -> None:
    security = [f"U0SEC{i}" for i in range(1, 8)]
    fake_slack.add_usergroup("S0SECOPS", security)  # before declaring: groups are cached
    await rig.declare("sev1 agent:crm-writer Customer records overwritten")
    people = ["U0ALICE", "U0OWNER", "U0CTO", *security]
    clicks = [await rig.button_payload("Approve containment", who) for who in people]
    seen: list[str] = []
    stop = asyncio.Event()

    async def poll() -> None:
        while not stop.is_set():
            status, body = await rig.autonomy()
            seen.append(body["mode"] if status == 200 else f"HTTP {status}")

    poller = asyncio.create_task(poll())
    answers = await asyncio.gather(*(rig.slack.interaction(c) for c in clicks))
    stop.set()
    await poller
    assert [status for status, _ in answers] == [200] * 10

    assert (await rig.incident()).status == "contained"
    [approval] = approvals(await rig.timeline())
    winner = approval.actor
    assert winner in people
    delivered = await delivery_state(rig, DeliveryState.CONFIRMED)
    await asyncio.sleep(SETTLE)
    assert rig.ks.delivery_ids() == [delivered.id]
    assert len(await rig.deliveries()) == 1
    assert of_kind(await rig.timeline(), TimelineKind.REFUSED) == []
    for person in people:
        if person == winner:
            continue
        told = await eventually(lambda p=person: private_to(fake_slack, p))
        assert "already contained" in told[0] and f"<@{winner}>" in told[0], (person, told)
    assert not any("already contained" in t for t in private_to(fake_slack, winner))
    assert set(seen) <= {"autonomous", "paused"}


async def test_a_stranger_cannot_approve_containment(rig: Rig, fake_slack: FakeSlack) -> None:
    await rig.declare("sev2 agent:crm-writer Wrong emails")
    status, _ = await rig.press("Approve containment", "U0MALLORY")
    assert status == 200
    told = await eventually(lambda: private_to(fake_slack, "U0MALLORY"))
    assert "Only the commander (<@U0ALICE>), the agent owner (<@U0OWNER>)" in told[0]
    assert "SEV-2 approver" in told[0] and "approve containment" in told[0]
    assert not any(e.user != "U0MALLORY" for e in fake_slack.ephemerals)
    refused = of_kind(await rig.timeline(), TimelineKind.REFUSED)
    assert [(e.actor, e.data["action"]) for e in refused] == [
        ("U0MALLORY", "approve containment of")
    ]
    assert (await rig.incident()).status == "declared"
    assert (await rig.autonomy())[1]["mode"] == "autonomous"
    assert await rig.deliveries() == []
    await asyncio.sleep(SETTLE)
    assert rig.ks.requests == []
    assert button(await rig.card(), "Approve containment") is not None


async def test_a_refused_approval_names_the_severity_approvers(
    rig: Rig, fake_slack: FakeSlack
) -> None:
    await rig.declare("sev2 agent:crm-writer Wrong emails")
    await rig.press("Approve containment", "U0MALLORY")
    told = await eventually(lambda: private_to(fake_slack, "U0MALLORY"))
    assert "<@U0HEADOPS>" in told[0]


# -------------------------------------------------------------- kill-switch trouble


async def make_down(ks: FakeKillSwitch) -> None:
    await ks.refuse()


async def make_slow(ks: FakeKillSwitch) -> None:
    ks.hang()


async def make_500(ks: FakeKillSwitch) -> None:
    ks.fail()


async def make_garbage(ks: FakeKillSwitch) -> None:
    ks.garbage()


async def make_truncated(ks: FakeKillSwitch) -> None:
    ks.garbage(payload=TRUNCATED_200)


TROUBLE: dict[str, tuple[Callable[[FakeKillSwitch], Awaitable[None]], str]] = {
    "down": (make_down, "unreachable"),
    "slow": (make_slow, f"no answer within {TIMEOUT:g} s"),
    "500": (make_500, "HTTP 500"),
    "garbage": (make_garbage, "invalid HTTP"),
    "truncated 200": (make_truncated, ""),
}


@pytest.mark.parametrize("trouble", list(TROUBLE))
async def test_a_failing_kill_switch_is_retried_then_shown_not_confirmed(
    rig: Rig, trouble: str
) -> None:
    make, detail = TROUBLE[trouble]
    await make(rig.ks)
    await rig.declare("sev2 agent:crm-writer Wrong emails")
    await rig.press("Approve containment", "U0ALICE")
    assert (await rig.autonomy())[1]["mode"] == "paused"  # whatever the kill switch does

    delivery = await delivery_state(rig, DeliveryState.UNCONFIRMED)
    assert delivery.attempts == ATTEMPTS
    tried = attempts(await rig.timeline())
    assert [e.data["attempt"] for e in tried] == list(range(1, ATTEMPTS + 1))
    assert {e.data["delivery_id"] for e in tried} == {delivery.id}
    assert [e.data["state"] for e in tried] == ["pending"] * len(DELAYS) + ["unconfirmed"]
    assert all(detail in e.data["detail"] for e in tried), [e.data["detail"] for e in tried]
    assert NOT_CONFIRMED in tried[-1].text
    if trouble == "down":
        assert rig.ks.requests == []
    else:
        assert rig.ks.delivery_ids() == [delivery.id] * ATTEMPTS  # same id every time

    await eventually(lambda: _contains(rig.card, NOT_CONFIRMED))
    card = await rig.card()
    retry = button(card, "Retry delivery")
    assert retry is not None and retry[1]["value"] == delivery.id
    history = await rig.card_history()
    assert any("retrying (attempt 2 of" in version for version in history)
    assert not any(CONFIRMED in version for version in history)  # never claimed
    assert not any("confirmed" in e.text.lower().replace("not confirmed", "") for e in tried)


async def test_a_2xx_after_failures_confirms_with_the_same_delivery_id(rig: Rig) -> None:
    rig.ks.fail(times=1)
    rig.ks.garbage(times=1)
    rig.ks.succeed(204)
    await rig.declare("sev3 agent:crm-writer Wrong field")
    await rig.press("Approve containment", "U0OWNER")
    delivery = await delivery_state(rig, DeliveryState.CONFIRMED)
    assert delivery.attempts == 3
    assert rig.ks.delivery_ids() == [delivery.id] * 3
    assert [r.answer for r in rig.ks.requests] == ["500", "garbage", "204"]
    tried = attempts(await rig.timeline())
    assert [e.data["state"] for e in tried] == ["pending", "pending", "confirmed"]
    assert rig.ks.deliveries[0].body is not None
    assert rig.ks.deliveries[0].body["actions"] == ["pause_runs", "revoke_writes"]
    # Every attempt carries the same delivery: only the timestamp header may change.
    assert len({r.raw for r in rig.ks.requests}) == 1
    await eventually(lambda: _contains(rig.card, CONFIRMED))
    card = await rig.card()
    assert NOT_CONFIRMED not in texts(card) and button(card, "Retry delivery") is None


@pytest.mark.parametrize("timings_used", [timings(0.3, 0.3, 0.3)])
async def test_a_kill_switch_that_comes_back_confirms(rig: Rig) -> None:
    await rig.ks.refuse()
    await rig.declare("sev2 agent:crm-writer Wrong emails")
    await rig.press("Approve containment", "U0ALICE")
    await eventually(lambda: _has_attempts(rig, 1))
    await rig.ks.recover()
    delivery = await delivery_state(rig, DeliveryState.CONFIRMED)
    assert delivery.attempts == 2
    assert rig.ks.delivery_ids() == [delivery.id]


async def _has_attempts(rig: Rig, count: int) -> bool:
    return len(attempts(await rig.timeline())) >= count


async def test_retry_delivery_button_starts_another_round_with_the_same_id(
    rig: Rig, fake_slack: FakeSlack
) -> None:
    rig.ks.fail()
    await rig.declare("sev2 agent:crm-writer Wrong emails")
    await rig.press("Approve containment", "U0ALICE")
    delivery = await delivery_state(rig, DeliveryState.UNCONFIRMED)
    await eventually(lambda: _contains(rig.card, "Retry delivery"))

    # A stranger may not retry: told privately, recorded, nothing sent.
    await rig.press("Retry delivery", "U0MALLORY")
    told = await eventually(lambda: private_to(fake_slack, "U0MALLORY"))
    assert "retry the kill-switch delivery" in told[0]
    refused = of_kind(await rig.timeline(), TimelineKind.REFUSED)
    assert [(e.actor, e.data["action"]) for e in refused] == [
        ("U0MALLORY", "retry the kill-switch delivery of")
    ]
    assert len(rig.ks.requests) == ATTEMPTS

    await rig.ks.recover(204)
    status, _ = await rig.press("Retry delivery", "U0OWNER")
    assert status == 200
    confirmed = await delivery_state(rig, DeliveryState.CONFIRMED)
    assert confirmed.id == delivery.id
    assert rig.ks.delivery_ids() == [delivery.id] * (ATTEMPTS + 1)
    timeline = await rig.timeline()
    asked = [e for e in of_kind(timeline, TimelineKind.DELIVERY) if e.data.get("retry")]
    assert [(e.actor, e.data["delivery_id"]) for e in asked] == [("U0OWNER", delivery.id)]
    # Every attempt, of both rounds, is on the timeline.
    assert len(attempts(timeline)) == len(rig.ks.requests) == ATTEMPTS + 1
    await eventually(lambda: _contains(rig.card, CONFIRMED))
    card = await rig.card()
    assert NOT_CONFIRMED not in texts(card) and button(card, "Retry delivery") is None

    # A stale Retry button on a confirmed delivery does nothing but say so.
    incident = await rig.incident()
    stale = rig.block_actions(
        "U0OWNER",
        incident,
        {
            "type": "button",
            "action_id": "incident_retry_delivery",
            "block_id": "card_actions",
            "text": {"type": "plain_text", "text": "Retry delivery"},
            "value": delivery.id,
        },
    )
    await rig.slack.interaction(stale)
    told = await eventually(lambda: private_to(fake_slack, "U0OWNER"))
    assert "nothing to retry" in told[-1]
    await asyncio.sleep(SETTLE)
    assert len(rig.ks.requests) == ATTEMPTS + 1


async def test_a_slow_slack_never_leaves_a_stale_delivery_state_on_the_card(
    rig: Rig, fake_slack: FakeSlack
) -> None:
    await rig.declare("sev2 agent:crm-writer Wrong emails")
    fake_slack.fail("chat.update", delay=0.4)  # the approval's own card edit is slow
    await rig.press("Approve containment", "U0ALICE")
    await delivery_state(rig, DeliveryState.CONFIRMED)
    await asyncio.sleep(0.5)  # until the slow edit has landed
    assert CONFIRMED in texts(await rig.card())


@pytest.mark.parametrize("timings_used", [timings(0.3, 0.3, 0.3)])
async def test_a_slow_slack_does_not_stop_the_retries(rig: Rig, fake_slack: FakeSlack) -> None:
    rig.ks.fail()
    await rig.declare("sev2 agent:crm-writer Wrong emails")
    fake_slack.fail("chat.update", delay=0.6, times=4)  # showing each outcome takes 0.6 s
    await rig.press("Approve containment", "U0ALICE")
    delivery = await delivery_state(rig, DeliveryState.UNCONFIRMED, timeout=5.0)
    assert delivery.attempts == ATTEMPTS


# ------------------------------------------------------------------------ restarts


@pytest.mark.parametrize("timings_used", [timings(0.3, 0.3, 0.3)])
@pytest.mark.parametrize("when", ["waiting to retry", "in flight"])
async def test_a_pending_delivery_survives_a_restart(rig: Rig, when: str) -> None:
    if when == "in flight":
        rig.ks.hang()
    else:
        rig.ks.fail()
    await rig.declare("sev2 agent:crm-writer Wrong emails")
    await rig.press("Approve containment", "U0ALICE")
    await eventually(lambda: rig.ks.requests)
    if when == "waiting to retry":
        await eventually(lambda: _has_attempts(rig, 1))
    [pending] = await rig.deliveries()
    assert pending.state is DeliveryState.PENDING

    await rig.stop()
    await rig.ks.recover()
    await rig.start()  # a new Rein on the same database

    assert (await rig.autonomy())[1]["mode"] == "paused"
    delivery = await delivery_state(rig, DeliveryState.CONFIRMED)
    assert delivery.id == pending.id
    assert set(rig.ks.delivery_ids()) == {pending.id}
    assert rig.ks.requests[-1].answer == "200"
    tried = attempts(await rig.timeline())
    assert tried[-1].data == {
        "delivery_id": pending.id,
        "attempt": delivery.attempts,
        "state": "confirmed",
        "detail": "HTTP 200",
    }
    await eventually(lambda: _contains(rig.card, CONFIRMED))


# ----------------------------------------------------------------- slash commands


async def test_incident_contain_in_the_incident_channel(rig: Rig, fake_slack: FakeSlack) -> None:
    incident = await rig.declare("sev3 agent:crm-writer Wrong field")
    channel = incident.channel_id
    assert channel is not None
    # The answers are the acknowledgements themselves: plain text, which Slack shows only to
    # the person who typed the command.
    # Elsewhere it needs the incident named.
    _, answer = await rig.command("contain", user="U0ALICE")
    assert "not an incident channel" in answer
    # A stranger is refused, privately, and it is recorded.
    _, refusal = await rig.command("contain", user="U0MALLORY", channel=channel)
    assert "Only the commander" in refusal
    assert (await rig.incident()).status == "declared"

    _, done = await rig.command("contain", user=SEV3_LEAD, channel=channel)  # a SEV-3 approver
    assert "INC-1 is contained" in done and "`paused`" in done
    # Committed before the acknowledgement: no waiting needed.
    assert (await rig.incident()).status == "contained"
    [approval] = approvals(await rig.timeline())
    assert approval.actor == SEV3_LEAD
    refused = of_kind(await rig.timeline(), TimelineKind.REFUSED)
    assert [e.actor for e in refused] == ["U0MALLORY"]
    delivery = await delivery_state(rig, DeliveryState.CONFIRMED)
    assert rig.ks.delivery_ids() == [delivery.id]

    # Again: already contained, by whom.
    _, again = await rig.command("contain INC-1", user="U0ALICE")
    assert "already contained" in again and f"<@{SEV3_LEAD}>" in again


async def test_incident_contain_pauses_before_the_command_is_acknowledged(
    rig: Rig, fake_slack: FakeSlack
) -> None:
    incident = await rig.declare("sev3 agent:crm-writer Wrong field")
    assert incident.channel_id is not None
    fake_slack.fail("usergroups.users.list", delay=0.3)  # the approval reads SEV-3 approvers
    status, _ = await rig.command("contain", user="U0ALICE", channel=incident.channel_id)
    state = (await rig.autonomy())[1]  # immediately: no waiting
    assert status == 200
    assert (state["mode"], state["incident"]) == ("paused", "INC-1")


@pytest.mark.parametrize(
    ("who", "text", "severity", "moves"),
    [
        ("U0OWNER", "crm-writer sev2 writing garbage", "sev2", ALL_MOVES),
        ("U0HEADOPS", "crm-writer writing garbage", "sev3", ["pause_runs", "revoke_writes"]),
        ("U0SEC1", "crm-writer SEV-1 leaking data", "sev1", ALL_MOVES),
    ],
)
async def test_agent_pause_declares_and_contains_at_once(
    rig: Rig, fake_slack: FakeSlack, who: str, text: str, severity: str, moves: list[str]
) -> None:
    status, answer = await rig.command(f"pause {text}", user=who, name="/agent")
    state = (await rig.autonomy())[1]  # before anything else: no waiting
    assert status == 200
    assert (state["mode"], state["incident"]) == ("paused", "INC-1")
    assert str(answer).startswith("INC-1: `crm-writer` is paused")

    incident = await rig.incident()
    assert (incident.status, incident.severity, incident.commander) == (
        "contained",
        severity,
        who,
    )
    assert incident.title.startswith("Emergency stop: ")
    timeline = await rig.timeline()
    assert [e.kind for e in timeline][:2] == [TimelineKind.DECLARED, TimelineKind.STATUS_CHANGED]
    assert len(approvals(timeline)) == 1 and approvals(timeline)[0].actor == who

    delivery = await delivery_state(rig, DeliveryState.CONFIRMED)
    assert rig.ks.delivery_ids() == [delivery.id]
    assert rig.ks.deliveries[0].body is not None
    assert rig.ks.deliveries[0].body["actions"] == moves
    reply = await rig.reply(1)
    assert reply["response_type"] == "ephemeral" and "INC-1 is contained" in reply["text"]
    await eventually(lambda: _has_card(rig))
    card = await rig.card()
    assert "*Containment*" in texts(card) and button(card, "Approve containment") is None


async def _has_card(rig: Rig) -> bool:
    return (await rig.incident()).card_ts is not None


async def test_agent_pause_card_shows_a_confirmation_that_came_while_the_room_was_set_up(
    rig: Rig, fake_slack: FakeSlack
) -> None:
    """The confirmation comes while the card is being posted: the card must still show it."""
    rig.ks.hang(times=1, seconds=0.15)  # slow but in time: answers 200 after 0.15 s
    fake_slack.fail("chat.postMessage", delay=0.4)  # posting the card takes 0.4 s
    await rig.command("pause crm-writer sev2 writing garbage", user="U0OWNER", name="/agent")
    await delivery_state(rig, DeliveryState.CONFIRMED)
    await eventually(lambda: _has_card(rig))
    await asyncio.sleep(0.2)  # anything still in flight lands
    assert CONFIRMED in texts(await rig.card())


@pytest.mark.parametrize(
    ("who", "text", "expected"),
    [
        ("U0MALLORY", "pause crm-writer sev2 oops", "Only the agent owner (<@U0OWNER>)"),
        ("U0OWNER", "pause nobody sev2 oops", "There is no agent `nobody`"),
        ("U0OWNER", "pause crm-writer", "say why"),
        ("U0OWNER", "pause crm-writer sev2", "Say why the agent must stop"),
        ("U0OWNER", "pause crm-writer sev9 oops", "sev9"),
    ],
)
async def test_agent_pause_refusals_change_nothing(
    rig: Rig, who: str, text: str, expected: str
) -> None:
    status, answer = await rig.command(text, user=who, name="/agent")
    assert status == 200 and expected.lower() in str(answer).lower(), answer
    assert await rig.rein.incidents.newest() == []
    state = (await rig.autonomy())[1]
    assert (state["mode"], state["incident"]) == ("autonomous", None)
    await asyncio.sleep(SETTLE)
    assert rig.ks.requests == []


# ------------------------------------------------------------ without a kill switch


async def test_an_agent_without_a_kill_switch_is_held_by_the_autonomy_api_alone(
    rig: Rig,
) -> None:
    await rig.declare("sev2 agent:page-publisher Defamatory page")
    assert "no kill switch" in texts(await rig.card())
    status, _ = await rig.press("Approve containment", "U0PUBLISH")  # the agent owner
    assert status == 200
    assert (await rig.incident()).status == "contained"
    state = (await rig.autonomy("page-publisher"))[1]
    assert (state["mode"], state["incident"]) == ("paused", "INC-1")
    assert not any(state[s] for s in ("runs", "writes", "outbound", "schedules"))
    assert (await rig.autonomy())[1]["mode"] == "autonomous"  # the other agent is untouched
    assert await rig.deliveries() == []
    assert of_kind(await rig.timeline(), TimelineKind.DELIVERY) == []
    await eventually(lambda: _contains(rig.card, "no kill switch"))
    card = await rig.card()
    shown = texts(card)
    assert "Pause runs" in shown and "Revoke writes" in shown and "Freeze outbound" not in shown
    assert "held by the autonomy API" in shown
    assert NOT_CONFIRMED not in shown and CONFIRMED not in shown
    assert button(card, "Retry delivery") is None
    await asyncio.sleep(SETTLE)
    assert rig.ks.requests == []


# --------------------------------------------------------------------- /agent status


async def test_agent_status_shows_the_paused_mode_and_the_holding_incident(rig: Rig) -> None:
    await rig.command("status crm-writer", user="U0ALICE", name="/agent")
    before = texts((await rig.reply(1))["blocks"])
    assert "mode *autonomous*" in before and "held by" not in before
    await rig.declare("sev2 agent:crm-writer Wrong emails")
    await rig.press("Approve containment", "U0ALICE")
    count = len(rig.fake.responses)
    await rig.command("status crm-writer", user="U0ALICE", name="/agent")
    after = texts((await rig.reply(count + 1))["blocks"])
    assert "mode *paused*" in after and "held by INC-1" in after
    assert after.count(":no_entry:") == 4 and ":white_check_mark:" not in after
    count = len(rig.fake.responses)
    await rig.command("list", user="U0ALICE", name="/agent")
    listed = texts((await rig.reply(count + 1))["blocks"])
    assert "held by INC-1" in listed and "mode *supervised*" in listed
