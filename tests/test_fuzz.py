"""Property-based fuzz (hypothesis) of the HTTP API's request bodies, sent over real HTTP to the
running app, and of the slash-command parsers (pure, and through signed Slack requests).

Every answer is a documented status (never a 500), every error is JSON with "error", and a
refused request writes nothing: every table holds the same rows before and after."""

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.api_models import AGENT_ID_MAX, FINGERPRINT_MAX, MAX_BODY, RUN_ID_MAX
from bot.app import Runtime
from bot.domain.commands import (
    CommandError,
    EmergencyStop,
    QuickDeclare,
    SeverityChange,
    parse_emergency_stop,
    parse_quick_declare,
    parse_severity_change,
    split_subcommand,
)
from bot.domain.evidence import NOTE_MAX, SOURCE_MAX, URL_MAX
from bot.domain.models import REASON_MAX, SUMMARY_MAX, TITLE_MAX, parse_ref
from bot.domain.rollback import RECORD_MAX, SYSTEM_MAX, VALUE_MAX
from tests.conftest import API_TOKEN
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SlackSender
from tests.test_evidence import declared

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
TABLES = (
    "incidents",
    "timeline",
    "agent_autonomy",
    "deliveries",
    "evidence",
    "rollback_items",
    "reminders",
    "postmortems",
    "restarts",
    "gate_checks",
    "runs",
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
AGENTS = ("crm-writer", "page-publisher")

# ------------------------------------------------------------------------ strategies

HOSTILE_TEXT = (
    "",
    " ",
    "\t\n\r",
    "\x00",
    "\x00\x01\x1b[31m\x7f",
    "\u202e\u200b\ufeff",
    "<!channel> <@U0CEO> <http://evil.example|bank.example.com> @here",
    "'; DROP TABLE incidents; --",
    "Robert'); DELETE FROM evidence; --",
    "\ud800",  # a lone surrogate: JSON can carry it as an escape, UTF-8 cannot
    "ok \udfff text",
    "😀" * 50,
    "sev2",
    "SEV-9",
    "INC-1",
    "http://example.com/x",
    "javascript:alert(1)",
)


def near(limit: int) -> st.SearchStrategy[str]:
    """Strings just under, at and over a length limit, ASCII and multi-byte."""
    return st.sampled_from((limit - 1, limit, limit + 1)).flatmap(
        lambda n: st.sampled_from(("x" * n, "é" * n, " " * n, "x" * (n - 1) + "\x00"))
    )


texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
anything_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


def field(valid: st.SearchStrategy[Any], limit: int | None = None) -> st.SearchStrategy[Any]:
    """Mostly plausible values of the field's type, hostile strings, and wrong types."""
    options = [valid, valid, st.sampled_from(HOSTILE_TEXT), texts, anything_json]
    if limit is not None:
        options.append(near(limit))
    return st.one_of(*options)


def shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """The request's fields, each maybe missing, plus maybe some that are not fields."""
    return st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda body: st.dictionaries(
            st.sampled_from(("extra", "id", "__proto__", "Agent", "")), anything_json, max_size=2
        ).map(lambda extra: {**extra, **body})
    )


ALERT_FIELDS = {
    "agent": field(st.sampled_from(AGENTS), AGENT_ID_MAX),
    "kind": field(st.sampled_from(("cost_spike", "error_rate", "failed_scorecard", "nope"))),
    "summary": field(st.just("Token spend 40x baseline"), SUMMARY_MAX),
    "details": field(texts, None),
    "fingerprint": field(texts, FINGERPRINT_MAX),
    "severity": field(st.sampled_from(("sev1", "SEV-2", "sev-3", "4", "sev5", 2))),
}
EVIDENCE_FIELDS = {
    "kind": field(st.sampled_from(("logs", "tool_calls", "diff", "screenshot", "other", "x"))),
    "content": field(texts),
    "url": field(st.sampled_from(("https://example.com/log", "ftp://x", "not a url")), URL_MAX),
    "source": field(texts, SOURCE_MAX),
    "note": field(texts, NOTE_MAX),
}
ROLLBACK_FIELDS = {
    "system": field(st.sampled_from(("crm", "billing")), SYSTEM_MAX),
    "record": field(st.text(min_size=1, max_size=20), RECORD_MAX),
    "before": field(texts, VALUE_MAX),
    "after": field(texts, VALUE_MAX),
}
RUN_FIELDS = {
    "run_id": field(st.text(min_size=1, max_size=20), RUN_ID_MAX),
    "outcome": field(st.sampled_from(("ok", "failed", "flagged", "OK", "crashed"))),
    "summary": field(texts, SUMMARY_MAX),
    "cost": field(st.floats(allow_nan=True, allow_infinity=True) | st.integers(), None),
}


def encode(body: Any, ascii_only: bool) -> bytes:
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def bodies(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[bytes]:
    """JSON objects of roughly the right shape, other JSON, and bytes that are not JSON."""
    return st.one_of(
        st.tuples(shaped(fields), st.booleans()).map(lambda args: encode(*args)),
        st.tuples(shaped(fields), st.booleans()).map(lambda args: encode(*args)),
        st.tuples(anything_json, st.booleans()).map(lambda args: encode(*args)),
        st.binary(max_size=80),
        st.sampled_from(
            (
                b"",
                b"{",
                b"null",
                b"[]",
                b'{"agent": "\xff\xfe"}',
                b'{"summary": "\xed\xa0\x80"}',
                b"\xef\xbb\xbf{}",
                b'{"a": 1, "a": 2}',
                b'{"cost": 1e999}',
                b"[" * 5000,
            )
        ),
    )


# ---------------------------------------------------------------------------- helpers


async def counts(runtime: Runtime) -> dict[str, int]:
    found = {}
    for table in TABLES:
        row = await runtime.rein.db.fetchone(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
        assert row is not None
        found[table] = row[0]
    return found


async def send(
    http: aiohttp.ClientSession, url: str, data: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    sent = {"Content-Type": "application/json", **(AUTH if headers is None else headers)}
    async with http.post(url, data=data, headers=sent) as response:
        raw = await response.read()
        if response.status >= 400:
            assert response.content_type == "application/json", (response.status, raw[:200])
        return response.status, json.loads(raw) if raw else None


async def check(
    runtime: Runtime,
    http: aiohttp.ClientSession,
    url: str,
    data: bytes,
    allowed: set[int],
    headers: dict[str, str] | None = None,
) -> int:
    before = await counts(runtime)
    status, answer = await send(http, url, data, headers)
    assert status != 500, answer
    assert status in allowed, (status, answer, data[:300])
    if status >= 400:
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer
        assert await counts(runtime) == before, f"a refused request ({status}) wrote: {answer}"
    return status


@pytest.fixture
async def incident(slack: SlackSender, fake_slack: FakeSlack, rein: Runtime) -> str:
    """INC-1, declared through Slack, so that evidence and rollback have somewhere to go."""
    await declared(slack, fake_slack, rein)
    return "INC-1"


# -------------------------------------------------------------------- the HTTP bodies


@FUZZ
@given(data=bodies(ALERT_FIELDS))
@example(
    data=encode({"agent": "crm-writer", "kind": "cost_spike", "summary": "\x00 <!here>"}, False)
)
async def test_alert_bodies_never_crash_or_half_write(
    rein: Runtime, base_url: str, http: aiohttp.ClientSession, data: bytes
) -> None:
    await check(rein, http, f"{base_url}/v1/alerts", data, {200, 201, 404, 422})


@FUZZ
@given(data=bodies(EVIDENCE_FIELDS), ref=st.sampled_from(("INC-1", "1", "inc-1", "INC-99", "x")))
@example(data=encode({"kind": "logs", "content": "'; DROP TABLE evidence; --"}, False), ref="INC-1")
async def test_evidence_bodies_never_crash_or_half_write(
    rein: Runtime,
    incident: str,
    base_url: str,
    http: aiohttp.ClientSession,
    data: bytes,
    ref: str,
) -> None:
    url = f"{base_url}/v1/incidents/{ref}/evidence"
    await check(rein, http, url, data, {201, 404, 413, 422})


@FUZZ
@given(data=bodies(ROLLBACK_FIELDS), ref=st.sampled_from(("INC-1", "1", "INC-0", "INC-99")))
@example(data=encode({"system": "crm", "record": "acct-1", "before": "\x00"}, False), ref="INC-1")
async def test_rollback_bodies_never_crash_or_half_write(
    rein: Runtime,
    incident: str,
    base_url: str,
    http: aiohttp.ClientSession,
    data: bytes,
    ref: str,
) -> None:
    url = f"{base_url}/v1/incidents/{ref}/rollback"
    await check(rein, http, url, data, {200, 201, 404, 409, 422})


@FUZZ
@given(data=bodies(RUN_FIELDS), agent=st.sampled_from((*AGENTS, "ghost", "CRM-WRITER")))
@example(data=encode({"run_id": "r-1", "outcome": "ok", "cost": 0.5}, False), agent="crm-writer")
async def test_run_bodies_never_crash_or_half_write(
    rein: Runtime, base_url: str, http: aiohttp.ClientSession, data: bytes, agent: str
) -> None:
    url = f"{base_url}/v1/agents/{agent}/runs"
    await check(rein, http, url, data, {200, 201, 404, 422})


ROUTES = (
    "/v1/alerts",
    "/v1/incidents/INC-1/evidence",
    "/v1/incidents/INC-1/rollback",
    "/v1/agents/crm-writer/runs",
)


@FUZZ
@given(
    route=st.sampled_from(ROUTES),
    header=st.one_of(
        st.just(""),
        st.just(API_TOKEN),
        st.just(f"Basic {API_TOKEN}"),
        st.just(f"Bearer {API_TOKEN}x"),
        st.just(f"Bearer {API_TOKEN[:-1]}"),
        st.just("Bearer "),
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
    ),
)
async def test_a_wrong_token_is_401_and_writes_nothing(
    rein: Runtime,
    incident: str,
    base_url: str,
    http: aiohttp.ClientSession,
    route: str,
    header: str,
) -> None:
    body = encode({"agent": "crm-writer", "kind": "cost_spike", "summary": "x"}, True)
    headers = {"Authorization": header} if header else {}
    status = await check(rein, http, f"{base_url}{route}", body, {401}, headers=headers)
    assert status == 401


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("size", [MAX_BODY + 1, 2 * MAX_BODY])
async def test_a_body_over_the_limit_is_413_and_writes_nothing(
    rein: Runtime,
    incident: str,
    base_url: str,
    http: aiohttp.ClientSession,
    route: str,
    size: int,
) -> None:
    padding = "x" * size
    body = encode({"summary": padding, "content": padding, "record": padding}, True)
    await check(rein, http, f"{base_url}{route}", body, {413})


# ------------------------------------------------------------- the slash-command parsers

command_text = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=80),
    st.lists(
        st.sampled_from(
            (
                "sev1",
                "SEV-2",
                "sev-3",
                "sev5",
                "sev",
                "sevx",
                "4",
                "0",
                "agent:",
                "agent:crm-writer",
                "AGENT:ghost",
                "INC-1",
                "inc-",
                "inc-0",
                "\u00a0",
                "\x00",
                "\n",
                "<!channel>",
                "word",
                "x" * TITLE_MAX,
                "y" * REASON_MAX,
            )
        ),
        max_size=8,
    ).map(" ".join),
)
PURE = settings(max_examples=300, deadline=None)


@PURE
@given(text=command_text)
def test_parse_quick_declare_answers_or_refuses(text: str) -> None:
    try:
        parsed = parse_quick_declare(text)
    except CommandError:
        return
    assert isinstance(parsed, QuickDeclare)
    assert parsed.title and parsed.agent_id and len(parsed.title) <= TITLE_MAX


@PURE
@given(text=command_text)
def test_parse_severity_change_answers_or_refuses(text: str) -> None:
    try:
        parsed = parse_severity_change(text)
    except CommandError:
        return
    assert isinstance(parsed, SeverityChange)
    assert parsed.reason and len(parsed.reason) <= REASON_MAX


@PURE
@given(text=command_text)
def test_parse_emergency_stop_answers_or_refuses(text: str) -> None:
    try:
        parsed = parse_emergency_stop(text)
    except CommandError:
        return
    assert isinstance(parsed, EmergencyStop)
    assert parsed.agent_id and parsed.reason and len(parsed.reason) <= REASON_MAX


@PURE
@given(text=command_text)
def test_split_subcommand_always_answers(text: str) -> None:
    head, rest = split_subcommand(text)
    assert isinstance(head, str) and isinstance(rest, str)
    assert head == head.lower() and rest == rest.strip()


@PURE
@given(text=command_text | st.from_regex(r"(?i)(inc-?)?[0-9]{1,12}", fullmatch=True))
def test_parse_ref_answers_or_refuses(text: str) -> None:
    try:
        number = parse_ref(text)
    except ValueError:
        return
    assert isinstance(number, int) and 1 <= number < 10**9


# --------------------------------------------------- the slash commands over signed HTTP

slash_text = st.one_of(
    command_text,
    st.tuples(
        st.sampled_from(
            (
                "declare",
                "sev",
                "severity",
                "close",
                "status",
                "list",
                "help",
                "evidence",
                "rollback",
                "recovered",
                "update",
                "timeline",
                "postmortem",
                "gate",
                "contain",
                "pause",
                "DECLARE",
            )
        ),
        command_text,
    ).map(" ".join),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.sampled_from(("/incident", "/agent")), text=slash_text)
async def test_slash_commands_never_reach_the_error_handler(
    slack: SlackSender, caplog: pytest.LogCaptureFixture, name: str, text: str
) -> None:
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="handlers.errors"):
        status, answer = await slack.command(text, name=name)
        await asyncio.sleep(0.05)  # the listener may go on after the ack
    assert status == 200, answer
    crashed = [r for r in caplog.records if r.name == "handlers.errors"]
    assert not crashed, (text, crashed[0].getMessage())
