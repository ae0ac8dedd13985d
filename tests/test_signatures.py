"""Slack's request signatures, for every kind of request Rein takes in HTTP mode.

Each kind (slash command, button click, view submission, message shortcut, Events API event,
url_verification) is sent forged in every way we know, stale, with a bad timestamp header,
and replayed byte for byte. Each gets 401 with nothing secret in the answer, and nothing is
stored or said in Slack; the genuine request, sent alongside, still works. Real HTTP on
loopback, Bolt, SQLite and the fake Slack Web API.
"""

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.signature import SignatureVerifier

from bot.app import Runtime, build_runtime
from bot.render.replies import DECLARE_ANYWAY
from bot.slack_guard import BAD_SIGNATURE, BAD_TIMESTAMP, REPLAYED, EventOnce, SignatureGuard
from tests.conftest import eventually, make_settings
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SIGNING_SECRET, SlackSender, chosen, number, ticked, typed
from tests.test_timeline_capture import (
    POSTED_TS,
    declared_channel,
    pins,
    react,
    seed,
    settled,
    shortcut,
)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
CHALLENGE = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
REFUSALS = {BAD_TIMESTAMP, BAD_SIGNATURE, REPLAYED}


@pytest.fixture
async def rein(fake_slack: FakeSlack, tmp_path: Path, policy_path: Path) -> AsyncIterator[Runtime]:
    """As conftest's, with channel status lines held back: the fake Slack stays still while
    we watch it for calls that must not happen."""
    settings = make_settings(fake_slack, tmp_path, policy_path)
    runtime = await build_runtime(settings, environ={}, status_debounce=600)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


# --- building requests exactly as the tests' SlackSender would send them -----------------


@dataclass(frozen=True)
class Signed:
    body: str
    content_type: str


class Recorder(SlackSender):
    """A SlackSender that keeps the body it would send instead of sending it."""

    def __init__(self, fake: FakeSlack) -> None:
        super().__init__("http://unused.invalid/", fake, None)  # type: ignore[arg-type]
        self.kept: Signed | None = None

    async def post(self, body: str, *, content_type: str = FORM, **_: Any) -> tuple[int, str]:
        self.kept = Signed(body, content_type)
        return 200, "{}"


@dataclass
class Env:
    rein: Runtime
    slack: SlackSender
    fake: FakeSlack


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable[[Env, Recorder], Awaitable[None]]
    done: Callable[[Env, str], Awaitable[bool]]  # the genuine request's effect, seen
    stores: bool = True  # the genuine request changes Rein's state (url_verification: no)


async def _command(env: Env, rec: Recorder) -> None:
    await rec.command("declare sev3 agent:crm-writer Loop burning tokens")


async def _click(env: Env, rec: Recorder) -> None:
    form = {"title": "Loop burning tokens", "agent": "crm-writer", "severity": "sev3"}
    await rec.click(DECLARE_ANYWAY, json.dumps(form), message_ts="1700000001.000001")


async def _submission(env: Env, rec: Recorder) -> None:
    await env.slack.command("declare")  # opens the modal; stores nothing
    await eventually(lambda: env.fake.calls_to("views.open"))
    view = {**env.fake.last("views.open").args["view"], "id": "V0DECLARE1"}
    values = {
        "title": typed("Published an unsupported claim"),
        "agent": chosen("page-publisher"),
        "summary": typed("The agent published a pricing claim with no source."),
        "impact": ticked("external_exposure", "customer_visible"),
        "records": number("12"),
        "severity": chosen("sev2"),
        "override": typed(""),
    }
    await rec.submit(view, values)


async def _incident_room(env: Env) -> str:
    channel = await declared_channel(env.rein, env.slack, "sev3 agent:crm-writer Wrong field")
    seed(env.fake, channel, "Rolled back 120 of 300 rows")
    return channel


async def _shortcut(env: Env, rec: Recorder) -> None:
    await shortcut(rec, await _incident_room(env), "Rolled back 120 of 300 rows")


async def _event(env: Env, rec: Recorder) -> None:
    await react(rec, await _incident_room(env), POSTED_TS, event_id="Ev0SIGNED")


async def _url_verification(env: Env, rec: Recorder) -> None:
    body = {"token": "legacy-verification-token", "challenge": CHALLENGE}
    await rec.post(json.dumps({**body, "type": "url_verification"}), content_type=JSON)


async def _declared(env: Env, _: str) -> bool:
    return len(await env.rein.rein.incidents.newest()) == 1


async def _pinned(env: Env, _: str) -> bool:
    return len(await pins(env.rein)) == 1


async def _echoed(_: Env, answer: str) -> bool:
    return CHALLENGE in answer


KINDS = [
    Kind("slash command", _command, _declared),
    Kind("block_actions click", _click, _declared),
    Kind("view_submission", _submission, _declared),
    Kind("message shortcut", _shortcut, _pinned),
    Kind("Events API event", _event, _pinned),
    Kind("url_verification", _url_verification, _echoed, stores=False),
]


# --- forgeries ------------------------------------------------------------------------------


def signature(body: str | bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    """Slack's v0 signature over any timestamp text (slack_sdk computes it)."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    signed = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=text)
    assert signed is not None
    return signed


def headers(content_type: str, timestamp: str | None, sig: str | None) -> dict[str, str]:
    sent = {"Content-Type": content_type}
    if timestamp is not None:
        sent["X-Slack-Request-Timestamp"] = timestamp
    if sig is not None:
        sent["X-Slack-Signature"] = sig
    return sent


def forgeries(request: Signed, now: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """(what is wrong, body, headers): each must be refused."""
    body, ctype = request.body, request.content_type
    raw, ts = body.encode(), str(now)
    good = signature(body, ts)

    def signed_at(stamp: str) -> tuple[bytes, dict[str, str]]:
        return raw, headers(ctype, stamp, signature(body, stamp))

    latin1 = raw + b"\xff"
    latin1_sig = (
        "v0="
        + hmac.new(
            SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + latin1, hashlib.sha256
        ).hexdigest()
    )
    return [
        ("wrong secret", raw, headers(ctype, ts, signature(body, ts, "not-the-signing-secret"))),
        ("tampered body (one byte added)", raw + b" ", headers(ctype, ts, good)),
        ("signature of another body", raw, headers(ctype, ts, signature(body + " ", ts))),
        ("stale: six minutes old", *signed_at(str(now - 6 * 60))),
        ("stale: a day old", *signed_at(str(now - 86_400))),
        ("too far in the future: six minutes", *signed_at(str(now + 6 * 60))),
        ("timestamp in milliseconds", *signed_at(str(now * 1000))),
        ("timestamp zero", *signed_at("0")),
        ("no timestamp header", raw, headers(ctype, None, good)),
        ("empty timestamp header", raw, headers(ctype, "", good)),
        ("non-numeric timestamp", *signed_at("soon")),
        ("fractional timestamp", *signed_at(f"{now}.0")),
        ("signed timestamp", *signed_at(f"+{now}")),
        ("negative timestamp", *signed_at(f"-{now}")),
        ("digit grouping in the timestamp", *signed_at(f"{ts[:1]}_{ts[1:]}")),
        ("a non-ASCII digit for a timestamp", *signed_at("\u00b2")),
        ("timestamp header not the signed one", raw, headers(ctype, str(now - 1), good)),
        ("no signature header", raw, headers(ctype, ts, None)),
        ("empty signature header", raw, headers(ctype, ts, "")),
        ("wrong version prefix", raw, headers(ctype, ts, "v1=" + good.removeprefix("v0="))),
        ("no version prefix", raw, headers(ctype, ts, good.removeprefix("v0="))),
        ("upper-case hex", raw, headers(ctype, ts, "v0=" + good.removeprefix("v0=").upper())),
        ("truncated signature (one digit short)", raw, headers(ctype, ts, good[:-1])),
        ("truncated signature (the prefix only)", raw, headers(ctype, ts, good[:12])),
        ("signature with a digit appended", raw, headers(ctype, ts, good + "0")),
        ("body that is not UTF-8", latin1, headers(ctype, ts, latin1_sig)),
    ]


# --- observing that nothing happened --------------------------------------------------------


async def post(
    http: aiohttp.ClientSession, url: str, raw: bytes, sent: dict[str, str]
) -> tuple[int, str]:
    async with http.post(url, data=raw, headers=sent) as response:
        return response.status, await response.text()


async def quiet(fake: FakeSlack) -> None:
    """Until Bolt's listeners are done and the fake Slack has heard nothing new for a while."""
    heard = -1
    while heard != len(fake.calls):
        heard = len(fake.calls)
        await settled()
        await asyncio.sleep(0.15)


async def snapshot(rein: Runtime, fake: FakeSlack) -> dict[str, int]:
    """Rows in every table, and everything Rein has said or done in Slack."""
    db = rein.rein.db
    counts: dict[str, int] = {}
    for (table,) in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'"):
        row = await db.fetchone(f'SELECT COUNT(*) FROM "{table}"')  # noqa: S608 (schema names)
        assert row is not None
        counts[f"table {table}"] = row[0]
    counts["slack calls"] = len(fake.calls)
    counts["response_url posts"] = len(fake.responses)
    counts["ephemerals"] = len(fake.ephemerals)
    counts["messages"] = sum(len(m) for m in fake.messages.values())
    counts["views"] = len(fake.views)
    return counts


def assert_says_nothing(answer: str, request: Signed, good_signature: str, label: str) -> None:
    """A refusal is `{"error": <one of the guard's sentences>}` and nothing more: no secret,
    no expected signature (an oracle), nothing of the request echoed back."""
    assert json.loads(answer) in ({"error": r} for r in REFUSALS), (label, answer)
    for secret in (SIGNING_SECRET, good_signature, good_signature.removeprefix("v0=")):
        assert secret not in answer, label
    assert CHALLENGE not in answer and request.body not in answer, label


# --- the matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
async def test_forged_stale_and_replayed_requests_get_401_and_change_nothing(
    kind: Kind,
    rein: Runtime,
    slack: SlackSender,
    fake_slack: FakeSlack,
    http: aiohttp.ClientSession,
) -> None:
    env, rec = Env(rein, slack, fake_slack), Recorder(fake_slack)
    await kind.build(env, rec)
    assert rec.kept is not None
    request = rec.kept
    await quiet(fake_slack)
    before = await snapshot(rein, fake_slack)

    now = int(time.time())
    good = signature(request.body, str(now))
    refused = []
    for label, raw, sent in forgeries(request, now):
        status, answer = await post(http, slack.url, raw, sent)
        refused.append((label, status))
        if status == 401:
            assert_says_nothing(answer, request, good, label)
    assert [(label, s) for label, s in refused if s != 401] == []
    await quiet(fake_slack)
    assert await snapshot(rein, fake_slack) == before
    assert not await kind.done(env, "")

    # The genuine request, signed the moment before, does what it should.
    genuine = headers(request.content_type, str(now), good)
    status, answer = await post(http, slack.url, request.body.encode(), genuine)
    assert status == 200, answer
    assert await eventually(lambda: kind.done(env, answer))
    await quiet(fake_slack)
    after = await snapshot(rein, fake_slack)
    assert (after != before) is kind.stores

    # Sent again byte for byte, with or without Slack's (unsigned) retry headers: refused.
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    for extra in ({}, retry, {"X-Slack-Retry-Num": "2"}):
        status, answer = await post(http, slack.url, request.body.encode(), {**genuine, **extra})
        assert status == 401, extra
        assert json.loads(answer) == {"error": REPLAYED}
        assert_says_nothing(answer, request, good, "replay")
    await quiet(fake_slack)
    assert await snapshot(rein, fake_slack) == after


async def test_replays_racing_each_other_let_exactly_one_through(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    """Ten identical copies of a genuine slash command at once: one 200, nine 401, one
    incident."""
    rec = Recorder(fake_slack)
    await rec.command("declare sev3 agent:crm-writer Loop burning tokens")
    assert rec.kept is not None
    now = str(int(time.time()))
    sent = headers(FORM, now, signature(rec.kept.body, now))
    answers = await asyncio.gather(
        *(post(http, slack.url, rec.kept.body.encode(), sent) for _ in range(10))
    )
    assert sorted(status for status, _ in answers) == [200] + [401] * 9
    await quiet(fake_slack)
    assert len(await rein.rein.incidents.newest()) == 1
    assert len(fake_slack.calls_to("conversations.create")) == 1


async def test_a_request_just_inside_the_window_is_accepted(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    """Four minutes and a half old, or as far ahead (a skewed clock): both still Slack's.
    Two different timestamps are two different requests, not a replay."""
    rec = Recorder(fake_slack)
    await rec.command("help")
    assert rec.kept is not None
    now = int(time.time())
    for stamp in (str(now - 270), str(now + 270)):
        sent = headers(FORM, stamp, signature(rec.kept.body, stamp))
        status, answer = await post(http, slack.url, rec.kept.body.encode(), sent)
        assert status == 200 and "/incident declare" in answer


async def test_a_refused_request_is_not_remembered(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, http: aiohttp.ClientSession
) -> None:
    """Only verified requests count towards replays: a forgery sent first does not make the
    genuine request that follows it a 'replay'."""
    rec = Recorder(fake_slack)
    await rec.command("declare sev3 agent:crm-writer Loop burning tokens")
    assert rec.kept is not None
    now = str(int(time.time()))
    good = signature(rec.kept.body, now)
    forged = headers(FORM, now, good[:-1] + ("0" if good[-1] != "0" else "1"))
    assert (await post(http, slack.url, rec.kept.body.encode(), forged))[0] == 401
    genuine = headers(FORM, now, good)
    assert (await post(http, slack.url, rec.kept.body.encode(), genuine))[0] == 200
    await eventually(lambda: fake_slack.responses)
    assert len(await rein.rein.incidents.newest()) == 1


# --- the guard's memory ---------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_signature_memory_forgets_only_what_the_window_already_refuses() -> None:
    clock = Clock(1_700_000_000)
    guard = SignatureGuard(SIGNING_SECRET, clock=clock)
    body = b"command=%2Fincident&text=help"
    stamp = str(int(clock.now))
    sig = signature(body, stamp)
    assert guard.refusal(body, stamp, sig) is None
    clock.now += 300  # last second of the window: still remembered, still a replay
    assert guard.refusal(body, stamp, sig) == REPLAYED
    clock.now += 2  # out of the window: forgotten, and refused as stale all the same
    assert guard.refusal(body, stamp, sig) == BAD_SIGNATURE
    later = str(int(clock.now))
    assert guard.refusal(body, later, signature(body, later)) is None
    assert len(guard) == 1  # the new one only: the old one is gone


def test_signature_memory_is_bounded() -> None:
    clock = Clock(1_700_000_000)
    guard = SignatureGuard(SIGNING_SECRET, capacity=50, clock=clock)
    stamp = str(int(clock.now))
    for i in range(500):
        body = f"text=request-{i}".encode()
        assert guard.refusal(body, stamp, signature(body, stamp)) is None
        assert len(guard) <= 50
    last = b"text=request-499"
    assert guard.refusal(last, stamp, signature(last, stamp)) == REPLAYED


def test_event_memory_lasts_an_hour_and_is_bounded() -> None:
    clock = Clock(1000.0)
    events = EventOnce(clock=clock, capacity=100)
    assert events.claim("Ev1") and not events.claim("Ev1")
    clock.now += 59 * 60
    assert not events.claim("Ev1")
    clock.now += 2 * 60
    assert events.claim("Ev1")  # an hour on: Slack stopped retrying long ago
    for i in range(1000):
        events.claim(f"Ev{i:04d}x")
        assert len(events) <= 100
    events.release("Ev0999x")
    assert events.claim("Ev0999x")
