"""Socket Mode: apps.connections.open on the fake, a local websocket delivering envelopes."""

import aiohttp

from bot.app import Runtime
from tests.conftest import eventually, socket_command
from tests.fakes.slack_api import FakeSlack


async def test_slash_command_over_the_socket_is_acknowledged(
    socket_rein: Runtime, fake_slack: FakeSlack
) -> None:
    await fake_slack.wait_socket_connected()
    ack = await fake_slack.socket_deliver("slash_commands", socket_command("help", fake_slack))
    assert "/incident declare" in ack["payload"]["text"]

    ack = await fake_slack.socket_deliver(
        "slash_commands",
        socket_command("declare sev3 agent:crm-writer Loop burning tokens", fake_slack),
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
