import asyncio
import inspect
import logging
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Runtime, build_runtime
from bot.config import Settings
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SIGNING_SECRET, SlackSender

POLICY = Path(__file__).parent / "policy.example.yml"
API_TOKEN = "ops-dashboard-token-0123456789"
ANNOUNCE = "CANNOUNCE"
ORIGIN = "CGENERAL"

# --- no token or secret in any log line (issue 7) -------------------------------------------

_FAKE_DEFAULTS = inspect.signature(FakeSlack.__init__).parameters
# The kill-switch secrets tests configure (tests/test_containment.py, tests/test_alerts.py).
KILL_SWITCH_SECRETS = (
    "kill-switch-secret-for-crm-writer-0123456789",
    "kill-switch-secret-0123456789abcdef",
)
SECRETS = (
    _FAKE_DEFAULTS["token"].default,
    _FAKE_DEFAULTS["app_token"].default,
    SIGNING_SECRET,
    API_TOKEN,
    *KILL_SWITCH_SECRETS,
)
_SECRET = re.compile(
    "|".join([*(re.escape(s) for s in SECRETS), r"\b(?:xox[abeposr]|xapp)-[A-Za-z0-9-]{4,}"])
)


def secrets_in(text: str) -> list[str]:
    """Secrets (the tests' own, and anything shaped like a Slack token) found in `text`, each
    shown by its first characters only, so that a failure never prints one."""
    return [f"{found.group()[:6]}…" for found in _SECRET.finditer(text)]


def assert_no_secrets(text: str, where: str) -> None:
    """For what a real process wrote (stdout, stderr, its log file)."""
    found = secrets_in(text)
    assert not found, f"{where} holds secrets: {', '.join(found)}"


class SecretScan(logging.Handler):
    """Scans each record as it is emitted: its message, exception and stack text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records = 0
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        try:
            parts = [record.getMessage()]
        except Exception:  # a malformed record still shows its parts
            parts = [str(record.msg), repr(record.args)]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        parts += [record.exc_text or "", record.stack_info or ""]
        found = secrets_in("\n".join(parts))
        if found:
            self.found.append(f"{record.name} {record.levelname}: {', '.join(found)}")


@pytest.fixture(autouse=True)
def log_scan(request: pytest.FixtureRequest) -> Iterator[SecretScan]:
    """Every log record of every test, at DEBUG, and none may hold a token or a secret.
    To keep it cheap: aiosqlite's DEBUG trace (two lines per database call) stays off
    (tests/test_secrets_in_logs.py scans it, and the database, once), and pytest's own
    capture (caplog, the log of a failed test) keeps the level it had."""
    root, sqlite = logging.getLogger(), logging.getLogger("aiosqlite")
    levels = root.level, sqlite.level
    plugin = request.config.pluginmanager.get_plugin("logging-plugin")
    pytests = [getattr(plugin, name, None) for name in ("report_handler", "caplog_handler")]
    kept = [(h, h.level) for h in pytests if isinstance(h, logging.Handler)]
    for handler, level in kept:
        handler.setLevel(max(level, root.getEffectiveLevel()))
    scan = SecretScan()
    root.addHandler(scan)
    root.setLevel(logging.DEBUG)
    sqlite.setLevel(max(sqlite.getEffectiveLevel(), logging.INFO))
    try:
        yield scan
    finally:
        root.removeHandler(scan)
        root.setLevel(levels[0])
        sqlite.setLevel(levels[1])
        for handler, level in kept:
            handler.setLevel(level)
    assert not scan.found, f"secrets in the log: {scan.found[:5]}"


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    fake.add_channel(ANNOUNCE, "incidents")
    fake.add_channel(ORIGIN, "general", members=["U0ALICE", "U0BOB"])
    fake.add_usergroup("S0SECOPS", ["U0SEC1", "U0SEC2"])
    try:
        yield fake
    finally:
        await fake.stop()
    assert fake.violations == [], "Rein called Slack against the method contract"


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    path = tmp_path / "rein.yml"
    shutil.copy(POLICY, path)
    return path


def make_settings(fake: FakeSlack, tmp_path: Path, policy: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "SLACK_BOT_TOKEN": fake.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "REIN_SLACK_MODE": "http",
        "REIN_SLACK_API_URL": fake.api_url,
        "REIN_HOST": "127.0.0.1",
        "REIN_PORT": 0,
        "REIN_DB_PATH": str(tmp_path / "data" / "rein.db"),
        "REIN_POLICY_PATH": str(policy),
        "REIN_API_TOKENS": f"dashboard:{API_TOKEN}",
        "REIN_ANNOUNCE_CHANNEL": ANNOUNCE,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def rein(fake_slack: FakeSlack, tmp_path: Path, policy_path: Path) -> AsyncIterator[Runtime]:
    runtime = await build_runtime(make_settings(fake_slack, tmp_path, policy_path), environ={})
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def socket_rein(
    fake_slack: FakeSlack, tmp_path: Path, policy_path: Path
) -> AsyncIterator[Runtime]:
    """Rein in Socket Mode: Slack's requests come over the fake's websocket."""
    settings = make_settings(
        fake_slack,
        tmp_path,
        policy_path,
        SLACK_APP_TOKEN=fake_slack.app_token,
        SLACK_SIGNING_SECRET=None,
        REIN_SLACK_MODE=None,  # the default follows SLACK_APP_TOKEN
    )
    assert settings.slack_mode == "socket"
    runtime = await build_runtime(settings, environ={})
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def socket_command(text: str, fake: FakeSlack, channel: str = ORIGIN) -> dict[str, Any]:
    """A `/incident` slash command's payload as Socket Mode delivers it."""
    return {
        "token": "legacy",
        "team_id": "T0000TEAM",
        "channel_id": channel,
        "user_id": "U0ALICE",
        "command": "/incident",
        "text": text,
        "api_app_id": "A0REIN",
        "response_url": fake.response_url("socket-cmd"),
        "trigger_id": "trigger.socket",
    }


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def base_url(rein: Runtime) -> str:
    return f"http://127.0.0.1:{rein.port}"


@pytest.fixture
def slack(rein: Runtime, fake_slack: FakeSlack, http: aiohttp.ClientSession) -> SlackSender:
    return SlackSender(f"http://127.0.0.1:{rein.port}/slack/events", fake_slack, http)


async def eventually(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]], timeout: float = 5.0
) -> Any:
    """Wait for work Rein does after acknowledging Slack (it runs on after the ack)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
