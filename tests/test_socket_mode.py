"""Socket Mode: apps.connections.open on the fake, a local websocket delivering envelopes."""

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.app import Runtime, build_runtime
from tests.conftest import eventually, make_settings
from tests.fakes.slack_api import FakeSlack


@pytest.fixture
async def socket_rein(
    fake_slack: FakeSlack, tmp_path: Path, policy_path: Path
) -> AsyncIterator[Runtime]:
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


def command_payload(text: str, fake: FakeSlack) -> dict:
    return {
        "token": "legacy",
        "team_id": "T0000TEAM",
        "channel_id": "CGENERAL",
        "user_id": "U0ALICE",
        "command": "/incident",
        "text": text,
        "api_app_id": "A0REIN",
        "response_url": fake.response_url("socket-cmd"),
        "trigger_id": "trigger.socket",
    }


async def test_slash_command_over_the_socket_is_acknowledged(
    socket_rein: Runtime, fake_slack: FakeSlack
) -> None:
    await fake_slack.wait_socket_connected()
    ack = await fake_slack.socket_deliver("slash_commands", command_payload("help", fake_slack))
    assert "/incident declare" in ack["payload"]["text"]

    ack = await fake_slack.socket_deliver(
        "slash_commands",
        command_payload("declare sev3 agent:crm-writer Loop burning tokens", fake_slack),
    )
    assert ack["payload"]["text"].startswith("Declared INC-1")
    await eventually(lambda: fake_slack.responses)
    incident = await socket_rein.rein.incidents.get(1)
    assert incident is not None and incident.channel_id is not None


async def test_socket_mode_still_serves_the_http_api_but_not_slack_events(
    socket_rein: Runtime,
) -> None:
    base = f"http://127.0.0.1:{socket_rein.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with http.post(f"{base}/slack/events", data=b"{}") as response:
            assert response.status == 404
