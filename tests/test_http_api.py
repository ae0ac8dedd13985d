"""The HTTP API over real HTTP: health, bearer tokens, incidents, limits."""

import aiohttp
import pytest

from bot.app import Runtime
from tests.conftest import API_TOKEN, eventually
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SlackSender

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


async def test_healthz_needs_no_token(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base_url}/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {API_TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {API_TOKEN}x"},
    ],
)
async def test_v1_refuses_missing_or_wrong_tokens(
    base_url: str, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    for path in ("/v1/incidents", "/v1/incidents/1"):
        async with http.get(f"{base_url}{path}", headers=headers) as response:
            assert response.status == 401
            assert "bearer token" in (await response.json())["error"]


async def test_incidents_with_timeline(
    rein: Runtime,
    base_url: str,
    http: aiohttp.ClientSession,
    slack: SlackSender,
    fake_slack: FakeSlack,
) -> None:
    await slack.command("declare sev2 agent:crm-writer Wrong CRM field on 300 records")
    await slack.command("declare sev4 agent:page-publisher Typos")
    await eventually(lambda: len(fake_slack.responses) == 2)
    channel = (await rein.rein.incidents.get(2)).channel_id  # type: ignore[union-attr]
    await slack.command("close fixed", channel=channel)
    await eventually(lambda: len(fake_slack.responses) == 3)

    for ref in ("INC-1", "inc-1", "1"):
        async with http.get(f"{base_url}/v1/incidents/{ref}", headers=AUTH) as response:
            assert response.status == 200
            body = await response.json()
        assert body["ref"] == "INC-1" and body["number"] == 1
        assert (body["severity"], body["status"], body["agent"]) == (
            "sev2",
            "declared",
            "crm-writer",
        )
        assert body["declared_at"].endswith("Z") and body["commander"] == "U0ALICE"
        assert [e["kind"] for e in body["timeline"]] == ["declared"]
        assert body["timeline"][0]["actor"] == "U0ALICE"
        assert (
            body["evidence"] == []
            and body["rollback"] == []
            and "prompt" in body["evidence_missing"]
        )

    async with http.get(f"{base_url}/v1/incidents?status=open", headers=AUTH) as response:
        assert [i["ref"] for i in (await response.json())["incidents"]] == ["INC-1"]
    async with http.get(f"{base_url}/v1/incidents", headers=AUTH) as response:
        listed = (await response.json())["incidents"]
        assert [i["ref"] for i in listed] == ["INC-2", "INC-1"]
        assert "timeline" not in listed[0]
    async with http.get(f"{base_url}/v1/incidents?status=closed", headers=AUTH) as response:
        assert [i["ref"] for i in (await response.json())["incidents"]] == ["INC-2"]


async def test_unknown_and_malformed_references(base_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base_url}/v1/incidents/INC-404", headers=AUTH) as response:
        assert response.status == 404 and "INC-404" in (await response.json())["error"]
    async with http.get(f"{base_url}/v1/incidents/drop%20table", headers=AUTH) as response:
        assert response.status == 404 and (await response.json())["field"] == "ref"
    async with http.get(f"{base_url}/v1/incidents?status=burning", headers=AUTH) as response:
        body = await response.json()
        assert response.status == 422 and body["field"] == "status" and "open" in body["error"]
    async with http.get(f"{base_url}/v1/nothing", headers=AUTH) as response:
        assert response.status == 404 and "error" in await response.json()


async def test_a_body_over_one_mebibyte_gets_413(
    base_url: str, http: aiohttp.ClientSession
) -> None:
    body = b"x" * (1024 * 1024 + 1)
    headers = {"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=00"}
    async with http.post(f"{base_url}/slack/events", data=body, headers=headers) as response:
        assert response.status == 413
        assert "larger than" in (await response.json())["error"]
