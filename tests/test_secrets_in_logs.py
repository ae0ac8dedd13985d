"""No token or secret in any log line, process output or database file, and the database
created private to its owner (issue 7, "Security").

Every test of the suite runs under tests/conftest.py's `log_scan`: each log record at DEBUG
(slack_sdk's request and response lines, Bolt's, Rein's own; aiosqlite's per-call trace only
in the test below that turns it on), with its exception and stack text, is scanned for the
tests' secrets and for anything shaped like a Slack token, and the test fails if one is found.
The real processes' output is scanned too (tests/test_cli.py `rein_cli`,
tests/test_reminders_crash.py). The scan sees records as they are made, before
any redaction: it proves the secrets are never written, not only that they are hidden.

Here the paths most likely to leak are provoked on purpose: Slack errors on calls that carry
the bot token, Slack unreachable (aiohttp's connection errors), 429s and 5xx, API requests
with right and wrong bearer tokens, kill-switch deliveries that fail in every way (each signed
with the agent's secret), Socket Mode with its app-level token, configuration mistakes, and an
unhandled exception in a Slack listener whose text carries secrets, through the production
log set-up `rein run` installs (bot/logs.py: RedactSecrets), slack_sdk at DEBUG included.
"""

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Runtime
from bot.clock import utc_now
from bot.config import secrets_of
from bot.domain.enums import DeliveryState, IncidentStatus, Severity, TimelineKind
from bot.domain.models import NewIncident, TimelineEntry
from bot.logs import REDACTED, configure_logging
from storage.db import Database
from storage.incidents import IncidentRepo
from tests import test_alerts as alerts
from tests import test_containment as containment
from tests.conftest import (
    API_TOKEN,
    KILL_SWITCH_SECRETS,
    SECRETS,
    SecretScan,
    assert_no_secrets,
    eventually,
    secrets_in,
)
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SIGNING_SECRET, SlackSender
from tests.test_cli import full_env, rein_cli
from tests.test_containment import AUTH, Rig

# The containment tests' rig: Rein, the fake Slack and a real HMAC-checking kill switch.
kill_switch = containment.kill_switch
timings_used = containment.timings_used
rig = containment.rig


class Collected(logging.Handler):
    """The records of one test, to show that the scan had something to scan."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, logger: str, level: int = logging.DEBUG) -> list[str]:
        return [
            r.getMessage() for r in self.records if r.name.startswith(logger) and r.levelno == level
        ]


@pytest.fixture
def collected() -> Iterator[Collected]:
    handler = Collected()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


def any_secret_in(records: list[logging.LogRecord]) -> list[str]:
    found: list[str] = []
    for record in records:
        text = record.getMessage() + (record.exc_text or "") + (record.stack_info or "")
        found += secrets_in(text)
    return found


# ------------------------------------------------------------------------------ the scan


def test_the_scan_knows_every_secret_the_tests_configure() -> None:
    fake = FakeSlack()  # not started: its default tokens are the ones every test uses
    assert {fake.token, fake.app_token, SIGNING_SECRET, API_TOKEN} <= set(SECRETS)
    assert {containment.SECRET, alerts.SECRET} <= set(KILL_SWITCH_SECRETS) <= set(SECRETS)


def test_the_scan_finds_secrets_in_messages_arguments_exceptions_and_stacks() -> None:
    """conftest's scan cannot pass vacuously: each place a secret can hide is looked at."""
    scan = SecretScan()
    logger = logging.getLogger("tests.test_secrets_in_logs.scan")
    logger.handlers[:] = [scan]
    logger.propagate = False  # these records carry secrets on purpose: not for the suite
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("INC-%d declared by %s", 12, "U0ALICE")
        logger.debug("calling Slack with %s", FakeSlack().token)
        logger.info(f"Authorization: Bearer {API_TOKEN}")
        try:
            raise RuntimeError(f"signing failed: {SIGNING_SECRET}")
        except RuntimeError:
            logger.warning("delivery failed", exc_info=True)
        sinfo = f'Stack (most recent call last):\n  secret = "{containment.SECRET}"'
        logger.handle(
            logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "x", None, None, sinfo=sinfo)
        )
        logger.info("someone's user token xoxp-1234-5678-abcdef")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    assert scan.records == 6
    assert len(scan.found) == 5, scan.found
    shown = " ".join(scan.found)
    assert not any(secret in shown for secret in SECRETS)  # a failure never prints one


# ---------------------------------------------------------------- leaks provoked on purpose


async def test_slack_errors_retries_and_api_tokens_at_debug_log_no_secret(
    rein: Runtime,
    slack: SlackSender,
    fake_slack: FakeSlack,
    base_url: str,
    http: aiohttp.ClientSession,
    collected: Collected,
    log_scan: SecretScan,
) -> None:
    """Every call to the fake carries the bot token in its Authorization header; slack_sdk
    logs each request's headers at DEBUG. Refusals, 5xx and 429s are logged and retried."""
    fake_slack.fail("conversations.create", error="invalid_auth")
    fake_slack.fail("chat.postMessage", status=500, times=2)
    fake_slack.fail("conversations.setTopic", retry_after=1)
    fake_slack.fail("pins.add", error="not_authed")
    status, answer = await slack.command("declare sev3 agent:crm-writer Loop burning tokens")
    assert status == 200 and answer.startswith("Declared INC-1"), answer
    await eventually(lambda: fake_slack.responses, timeout=10)
    # The HTTP API with the right bearer token, a wrong one, and the bot token by mistake.
    alert = {"agent": "crm-writer", "kind": "anomaly", "summary": "cost x10"}
    for token, expected in ((API_TOKEN, 201), ("not-the-token-0123456789", 401)):
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{base_url}/v1/alerts", json=alert, headers=headers) as answer:
            assert answer.status == expected
    headers = {"Authorization": f"Bearer {fake_slack.token}"}
    async with http.get(f"{base_url}/v1/incidents/INC-1", headers=headers) as answer:
        assert answer.status == 401

    requests = collected.messages("slack_sdk")
    assert any("Sending a request" in m and "headers" in m for m in requests), requests[:3]
    assert any("(redacted)" in m for m in requests)  # slack_sdk's own masking of Authorization
    assert collected.messages("slack_bolt")  # Bolt's DEBUG lines were written and scanned
    warnings = collected.messages("bot", logging.WARNING)
    assert any("invalid_auth" in m or "not_authed" in m for m in warnings), warnings
    assert log_scan.records >= len(collected.records)
    assert any_secret_in(collected.records) == []


async def test_slack_unreachable_logs_connection_errors_without_the_token(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, collected: Collected
) -> None:
    """aiohttp's connection errors, raised and retried inside slack_sdk, then reported."""
    status, _ = await slack.command("declare sev3 agent:crm-writer First loop")
    assert status == 200
    await eventually(lambda: fake_slack.responses)
    await fake_slack.stop()  # Slack is gone: every call now fails to connect
    status, answer = await slack.command("declare sev3 agent:crm-writer Second loop")
    assert status == 200 and answer.startswith("Declared INC-2"), answer
    incident = await eventually(lambda: _has_timeline(rein, 2, TimelineKind.SLACK_PROBLEM), 15)
    assert incident
    problems = collected.messages("bot", logging.WARNING)
    assert any("unreachable" in m for m in problems), problems
    assert any_secret_in(collected.records) == []


async def _has_timeline(rein: Runtime, number: int, kind: TimelineKind) -> bool:
    return any(e.kind is kind for e in await rein.rein.incidents.timeline(number))


async def test_kill_switch_failures_and_the_database_hold_no_secret(
    rig: Rig, collected: Collected
) -> None:
    """Deliveries signed with the agent's secret, refused, answered with garbage and left
    hanging, all logged and recorded; aiosqlite's trace of every database call at DEBUG too.
    Then the database file and its WAL are read byte for byte: no secret in them either."""
    logging.getLogger("aiosqlite").setLevel(logging.DEBUG)  # conftest restores it
    rig.ks.garbage(times=1)
    rig.ks.fail(times=1, status=500)
    rig.ks.hang(times=2)
    incident = await rig.declare("sev2 agent:crm-writer Wrong industry on 300 accounts")
    status, _ = await rig.press("Approve containment", "U0ALICE", incident.number)
    assert status == 200
    await containment.delivery_state(rig, DeliveryState.UNCONFIRMED)
    assert len(rig.ks.deliveries) >= 2  # signed with the secret, each checked by the receiver
    body = {"kind": "prompt", "content": f"the agent saw Authorization: Bearer {API_TOKEN[:4]}…"}
    url = f"{rig.base}/v1/incidents/INC-1/evidence"
    async with rig.http.post(url, json=body, headers=AUTH) as answer:
        assert answer.status == 201
    assert collected.messages("aiosqlite")  # every database call was traced and scanned
    assert any_secret_in(collected.records) == []

    database = Path(rig.settings.REIN_DB_PATH)
    files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]
    assert any(p.name.endswith("-wal") for p in files)
    for path in files:
        assert_no_secrets(path.read_bytes().decode("latin-1"), path.name)
    assert (await rig.incident()).status is IncidentStatus.CONTAINED


async def test_socket_mode_at_debug_never_logs_the_app_token(
    socket_rein: Runtime, fake_slack: FakeSlack, collected: Collected
) -> None:
    """apps.connections.open carries the app-level token; the Socket Mode client logs its
    connection and every envelope at DEBUG."""
    await fake_slack.wait_socket_connected()
    payload = {
        "token": "legacy",
        "team_id": "T0000TEAM",
        "channel_id": "CGENERAL",
        "user_id": "U0ALICE",
        "command": "/incident",
        "text": "declare sev3 agent:crm-writer Loop burning tokens",
        "api_app_id": "A0REIN",
        "response_url": fake_slack.response_url("socket-cmd"),
        "trigger_id": "trigger.socket",
    }
    ack = await fake_slack.socket_deliver("slash_commands", payload)
    assert ack["payload"]["text"].startswith("Declared INC-1")
    await eventually(lambda: fake_slack.responses)
    assert fake_slack.calls_to("apps.connections.open")
    assert collected.messages("slack_sdk.socket_mode") or collected.messages("slack_bolt")
    assert any_secret_in(collected.records) == []


async def test_the_production_log_redacts_unhandled_errors_stacks_and_slack_debug(
    rein: Runtime,
    slack: SlackSender,
    fake_slack: FakeSlack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The log set-up `rein run` installs (configure_logging with every configured secret),
    here at DEBUG with slack_sdk at DEBUG as well (an operator chasing a Slack problem): an
    unhandled exception in a listener whose message and cause carry secrets, a record with a
    stack carrying one, and Slack traffic with a refusal. The log names them all, redacted.
    (This test replaces the suite's root handlers for a while, as `rein run` does, so the
    conftest scan does not see these records: the captured log itself is scanned.)"""
    kill_secret = containment.SECRET
    secrets = secrets_of(rein.settings, {containment.SECRET_ENV: kill_secret}, ["REIN_KS_CRM"])
    assert {fake_slack.token, SIGNING_SECRET, API_TOKEN, kill_secret} <= set(secrets)

    async def broken(*_: Any, **__: Any) -> Any:
        try:
            raise ConnectionError(f"pool for {SIGNING_SECRET} is closed")
        except ConnectionError as cause:
            raise RuntimeError(f"query failed for {fake_slack.token} and {API_TOKEN}") from cause

    monkeypatch.setattr(rein.rein.incidents, "newest", broken)
    root, sdk = logging.getLogger(), logging.getLogger("slack_sdk")
    saved = root.handlers[:], root.level, sdk.level
    written: list[str] = []

    def log() -> str:
        written.append(capsys.readouterr().err)
        return "".join(written)

    try:
        configure_logging(secrets, level=logging.DEBUG)
        sdk.setLevel(logging.DEBUG)
        # The listener raises after its ack. (Bolt may then answer 404 "unhandled request":
        # its runner drops the ack of a listener that fails in the same instant.)
        await slack.command("list")
        await eventually(lambda: "unhandled error in a Slack listener" in log())
        monkeypatch.undo()  # the repository works again
        sinfo = f'Stack (most recent call last):\n  key = "{kill_secret}"'
        logger = logging.getLogger("bot.test_secrets_in_logs")
        logger.handle(
            logger.makeRecord(logger.name, logging.INFO, __file__, 1, "x", None, None, sinfo=sinfo)
        )
        fake_slack.fail("conversations.create", error="invalid_auth")
        status, answer = await slack.command("declare sev3 agent:crm-writer Loop burning tokens")
        assert status == 200, (answer, log()[-3000:])
        await eventually(lambda: fake_slack.responses)
        await eventually(lambda: "invalid_auth" in log())
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        sdk.setLevel(saved[2])
    text = log()
    assert "RuntimeError: query failed for" in text and "ConnectionError: pool for" in text
    assert "Sending a request" in text  # slack_sdk's DEBUG request lines were written
    assert_no_secrets(text, "the production log")
    assert text.count(REDACTED) >= 4  # the token, the API token, the signing and ks secrets


# ------------------------------------------------------------------------- configuration


async def test_configuration_mistakes_never_print_a_secret(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    """`rein run` with tokens of the wrong kind, then with an API token pair written the
    wrong way round (`token:name`): it stops naming the variable, never its value. (rein_cli
    scans the output of every run, as it does for every test.)"""
    swapped = {
        "SLACK_BOT_TOKEN": fake_slack.app_token,  # an app-level token where the bot token goes
        "SLACK_APP_TOKEN": fake_slack.token,
        "REIN_PORT": "not-a-port",
    }
    code, out, err = await rein_cli(
        "run", env=full_env(fake_slack, tmp_path, **swapped), cwd=tmp_path
    )
    assert code == 2 and "SLACK_BOT_TOKEN must be a bot token" in err, err
    assert "SLACK_APP_TOKEN must be an app-level token" in err
    backwards = full_env(fake_slack, tmp_path, REIN_API_TOKENS=f"{API_TOKEN}:dashboard")
    code, out, err = await rein_cli("run", env=backwards, cwd=tmp_path)
    assert code == 2 and "REIN_API_TOKENS entry 1" in err, err
    code, out, _ = await rein_cli("check", env=backwards, cwd=tmp_path)
    assert code == 1 and "REIN_API_TOKENS entry 1" in out
    assert_no_secrets(out + err, "rein's answers to a wrong configuration")


# ----------------------------------------------------------------------- the database file


async def test_the_database_and_its_directory_are_private_even_under_an_open_umask(
    tmp_path: Path,
) -> None:
    """Created 0600 (and its -wal and -shm files, which SQLite makes with the database's
    mode), in a directory of its own created 0700: whatever the umask. (tests/test_storage.py
    checks the file under the usual umask; tests/test_cli.py the file `rein run` makes.)"""
    path = tmp_path / "data" / "rein.db"
    previous = os.umask(0)  # the most permissive: nothing masked off
    try:
        db = await Database.open(str(path))
        try:
            await db.migrate()
            await IncidentRepo(db).create(
                NewIncident(
                    title="Wrong field",
                    agent_id="crm-writer",
                    severity=Severity.SEV3,
                    declared_by="U0ALICE",
                ),
                status=IncidentStatus.DECLARED,
                commander="U0ALICE",
                entry=TimelineEntry(
                    at=utc_now(), actor="U0ALICE", kind=TimelineKind.DECLARED, text="Declared"
                ),
            )
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in path.parent.iterdir()
                if p.name.startswith(path.name)
            }
        finally:
            await db.close()
    finally:
        os.umask(previous)
    assert set(modes) == {"rein.db", "rein.db-wal", "rein.db-shm"}, modes
    assert all(mode == 0o600 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
