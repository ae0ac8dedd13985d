import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
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
