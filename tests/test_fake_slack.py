"""The fake Slack server, driven by slack_sdk's real async clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.slack_api import (
    METHODS_DIR,
    FakeSlack,
    blocks_problem,
    fits_schema,
    running_fake,
)

CHANNEL = "C0INCIDENT"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with running_fake() as server:
        server.add_channel(CHANNEL, "inc-1", members=["U0ALICE"])
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.token, base_url=fake.api_url)


async def slack_error(call: Any) -> str:
    """The Slack error code a failing client call raises."""
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value.response["error"]


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def modal(title: str = "Declare incident") -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "declare",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Declare"},
        "blocks": [
            {
                "type": "input",
                "block_id": "summary",
                "label": {"type": "plain_text", "text": "Summary"},
                "element": {"type": "plain_text_input", "action_id": "value"},
            }
        ],
    }


# ------------------------------------------------------------------ basics


def test_method_descriptions_are_found() -> None:
    assert (METHODS_DIR / "chat.postMessage.json").is_file()


async def test_api_url_has_slack_sdk_form(fake: FakeSlack) -> None:
    assert fake.api_url == f"http://127.0.0.1:{fake.port}/api/"


async def test_auth_test_describes_the_bot(fake: FakeSlack, client: AsyncWebClient) -> None:
    response = await client.auth_test()

    assert response["user_id"] == "UREINBOT"
    assert response["bot_id"] == "BREINBOT"
    assert response["team_id"] == "T0000TEAM"
    assert response["team"] == "Test Team"
    assert response["user"] == "rein"
    assert fake.last("auth.test").args == {}
    assert fake.violations == []


async def test_wrong_token_is_invalid_auth_without_violation(fake: FakeSlack) -> None:
    intruder = AsyncWebClient(token="xoxb-wrong", base_url=fake.api_url)

    assert await slack_error(intruder.auth_test()) == "invalid_auth"
    assert len(fake.calls_to("auth.test")) == 1
    assert fake.violations == []


async def test_unknown_method_is_a_violation(fake: FakeSlack, client: AsyncWebClient) -> None:
    assert await slack_error(client.api_call("chat.shout", json={"text": "hi"})) == (
        "unknown_method"
    )
    assert fake.violations == ["chat.shout: unknown method (no chat.shout.json)"]


async def test_other_methods_answer_their_documented_example(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    response = await client.users_list()

    assert response["ok"] is True
    assert response["members"]
    assert fake.violations == []


# ----------------------------------------------------------- contract checks


async def test_missing_required_argument_is_a_violation(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    error = await slack_error(client.api_call("chat.postMessage", json={"text": "hi"}))

    assert error == "invalid_arguments"
    assert fake.violations == ["chat.postMessage: missing required argument 'channel'"]


async def test_unknown_argument_is_a_violation_but_answered(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    response = await client.chat_postMessage(channel=CHANNEL, text="hi", colour="red")

    assert response["ok"] is True
    assert fake.violations == ["chat.postMessage: unknown argument 'colour'"]


async def test_slack_sdk_default_team_id_is_not_a_violation(fake: FakeSlack) -> None:
    client = AsyncWebClient(token=fake.token, base_url=fake.api_url, team_id=fake.team_id)

    await client.auth_test()

    assert fake.last("auth.test").args == {"team_id": "T0000TEAM"}
    assert fake.violations == []


async def test_ill_typed_argument_is_a_violation(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.conversations_info(channel=CHANNEL, include_num_members="maybe")

    assert len(fake.violations) == 1
    assert "'include_num_members'='maybe' does not fit type boolean" in fake.violations[0]


async def test_form_values_fit_boolean_and_integer(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.conversations_info(channel=CHANNEL, include_num_members=True)
    await client.conversations_history(channel=CHANNEL, limit=10)

    assert fake.last("conversations.info").args["include_num_members"] == "1"
    assert fake.violations == []


async def test_form_encoded_json_args_are_decoded(fake: FakeSlack, client: AsyncWebClient) -> None:
    blocks = [section("*hello*")]
    body = {"channel": CHANNEL, "text": "hello", "blocks": json.dumps(blocks)}

    await client.api_call("chat.postMessage", data=body)

    assert fake.last("chat.postMessage").args["blocks"] == blocks
    assert fake.messages[CHANNEL][0].blocks == blocks
    assert fake.violations == []


def button(text: str, **extra: str) -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, **extra}


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ({"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}, "more than 150"),
        ({"type": "header", "text": {"type": "mrkdwn", "text": "h"}}, "plain_text"),
        ({"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}, "2001"),
        ({"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}, "at most 10"),
        ({"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}, "11 elements"),
        ({"type": "actions", "elements": [button("b")] * 26}, "26 elements"),
        ({"type": "actions", "elements": [button("b" * 76)]}, "76 characters"),
        ({"type": "actions", "elements": [button("b", action_id="a" * 256)]}, "action_id"),
        ({"type": "actions", "elements": [button("b", value="v" * 2001)]}, "value"),
        ({"type": "section", "text": {"type": "mrkdwn", "text": ""}}, "non-empty"),
        ({"type": "sektion"}, "unknown block type"),
    ],
)
def test_blocks_problem_spots_what_slack_refuses(block: dict[str, Any], problem: str) -> None:
    found = blocks_problem([block], 50)

    assert found is not None
    assert problem in found


def test_blocks_problem_accepts_limits() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3000}},
        {"type": "actions", "elements": [button("b" * 75, action_id="a", value="v")] * 25},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10},
        {"type": "divider"},
    ]

    assert blocks_problem(blocks, 50) is None


@pytest.mark.parametrize(
    ("value", "schema", "fits"),
    [
        ("true", {"type": "boolean"}, True),
        ("yes", {"type": "boolean"}, False),
        ("42", {"type": "integer"}, True),
        (4.2, {"type": "integer"}, False),
        ([{"type": "divider"}], {"anyOf": [{"type": "string"}, {"type": "null"}]}, True),
        ('{"type": "modal"}', {"allOf": [{"type": "object"}, {"schema": "modal"}]}, True),
        ("U1", {"subtype": "user", "schema": "user_id"}, True),
        (3, {"type": "string"}, False),
    ],
)
def test_fits_schema(value: Any, schema: dict[str, Any], fits: bool) -> None:
    assert fits_schema(value, schema) is fits


# ------------------------------------------------------------- conversations


async def test_create_channel_then_name_taken(fake: FakeSlack, client: AsyncWebClient) -> None:
    created = await client.conversations_create(name="inc-2-db-outage")

    channel = created["channel"]
    assert channel["id"].startswith("C")
    assert channel["is_member"] is True
    assert fake.channels[channel["id"]].name == "inc-2-db-outage"
    assert await slack_error(client.conversations_create(name="inc-2-db-outage")) == "name_taken"


@pytest.mark.parametrize(
    ("name", "error"),
    [("Inc 2", "invalid_name_specials"), ("x" * 81, "invalid_name_maxlength")],
)
async def test_create_channel_refuses_invalid_names(
    client: AsyncWebClient, name: str, error: str
) -> None:
    assert await slack_error(client.conversations_create(name=name)) == error


async def test_invite_adds_members(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.conversations_invite(channel=CHANNEL, users=["U0BOB", "U0CAROL"])

    assert {"U0ALICE", "U0BOB", "U0CAROL"} <= fake.channels[CHANNEL].members
    assert fake.last("conversations.invite").args["users"] == "U0BOB,U0CAROL"
    assert fake.violations == []


async def test_invite_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_channel("C0OTHER", "other", bot_is_member=False)

    assert await slack_error(client.conversations_invite(channel=CHANNEL, users="UREINBOT")) == (
        "cant_invite_self"
    )
    assert await slack_error(client.conversations_invite(channel=CHANNEL, users="U0ALICE")) == (
        "already_in_channel"
    )
    assert await slack_error(client.conversations_invite(channel="C0OTHER", users="U0BOB")) == (
        "not_in_channel"
    )
    assert await slack_error(client.conversations_invite(channel="C0NOPE", users="U0BOB")) == (
        "channel_not_found"
    )


async def test_set_topic(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.conversations_setTopic(channel=CHANNEL, topic="SEV1: db down")

    assert fake.channels[CHANNEL].topic == "SEV1: db down"
    info = await client.conversations_info(channel=CHANNEL)
    assert info["channel"]["topic"]["value"] == "SEV1: db down"
    assert await slack_error(client.conversations_setTopic(channel=CHANNEL, topic="x" * 251)) == (
        "too_long"
    )


async def test_archived_channel_refuses_writes(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.archive(CHANNEL)

    assert await slack_error(client.chat_postMessage(channel=CHANNEL, text="hi")) == "is_archived"
    assert await slack_error(client.conversations_setTopic(channel=CHANNEL, topic="t")) == (
        "is_archived"
    )


# ------------------------------------------------------------------ messages


async def test_post_update_and_pin(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel=CHANNEL, text="declared", blocks=[section("v1")])
    second = await client.chat_postMessage(channel=CHANNEL, text="reply", thread_ts=posted["ts"])

    assert posted["ts"] == "1700000000.000100"
    assert float(second["ts"]) > float(posted["ts"])
    assert posted["message"]["text"] == "declared"

    await client.chat_update(
        channel=CHANNEL, ts=posted["ts"], text="updated", blocks=[section("v2")]
    )
    message = fake.messages[CHANNEL][0]
    assert (message.text, message.blocks) == ("updated", [section("v2")])
    assert fake.messages[CHANNEL][1].thread_ts == posted["ts"]

    await client.pins_add(channel=CHANNEL, timestamp=posted["ts"])
    assert fake.pins == [(CHANNEL, posted["ts"])]
    assert await slack_error(client.pins_add(channel=CHANNEL, timestamp=posted["ts"])) == (
        "already_pinned"
    )
    assert fake.violations == []


async def test_message_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_channel("C0OTHER", "other", bot_is_member=False)

    assert await slack_error(client.chat_postMessage(channel="C0NOPE", text="x")) == (
        "channel_not_found"
    )
    assert await slack_error(client.chat_postMessage(channel="C0OTHER", text="x")) == (
        "not_in_channel"
    )
    assert await slack_error(client.chat_update(channel=CHANNEL, ts="1.2", text="x")) == (
        "message_not_found"
    )
    assert await slack_error(client.pins_add(channel=CHANNEL, timestamp="1.2")) == (
        "message_not_found"
    )


async def test_section_over_3000_chars_is_invalid_blocks(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    call = client.chat_postMessage(channel=CHANNEL, text="x", blocks=[section("a" * 3001)])

    assert await slack_error(call) == "invalid_blocks"
    assert fake.rejections == [
        "chat.postMessage: blocks[0] (section): text text is 3001 characters, more than 3000"
    ]
    assert fake.messages[CHANNEL] == []
    assert fake.violations == []


async def test_51_blocks_are_invalid_blocks(fake: FakeSlack, client: AsyncWebClient) -> None:
    call = client.chat_postMessage(channel=CHANNEL, text="x", blocks=[section("a")] * 51)

    assert await slack_error(call) == "invalid_blocks"
    assert fake.rejections == ["chat.postMessage: 51 blocks, more than 50"]


async def test_history_permalink_and_delete(fake: FakeSlack, client: AsyncWebClient) -> None:
    first = await client.chat_postMessage(channel="#inc-1", text="one")
    await client.chat_postMessage(channel=CHANNEL, text="two")

    history = await client.conversations_history(channel=CHANNEL)
    assert [m["text"] for m in history["messages"]] == ["two", "one"]
    link = await client.chat_getPermalink(channel=CHANNEL, message_ts=first["ts"])
    assert link["permalink"].endswith(f"/archives/{CHANNEL}/p1700000000000100")
    await client.chat_delete(channel=CHANNEL, ts=first["ts"])
    assert [m.text for m in fake.messages[CHANNEL]] == ["two"]


async def test_join_members_and_archive(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_channel("C0OTHER", "other", members=["U0BOB"], bot_is_member=False)

    await client.conversations_join(channel="C0OTHER")
    members = await client.conversations_members(channel="C0OTHER")
    await client.conversations_archive(channel="C0OTHER")

    assert members["members"] == ["U0BOB", "UREINBOT"]
    assert fake.channels["C0OTHER"].is_archived
    assert await slack_error(client.conversations_archive(channel="C0OTHER")) == (
        "already_archived"
    )


async def test_post_ephemeral(fake: FakeSlack, client: AsyncWebClient) -> None:
    response = await client.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="psst")

    assert fake.ephemerals[0].message_ts == response["message_ts"]
    assert (fake.ephemerals[0].user, fake.ephemerals[0].text) == ("U0ALICE", "psst")


# ------------------------------------------------------------ users and views


async def test_usergroup_members(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.add_usergroup("S0ONCALL", ["U0ALICE", "U0BOB"])

    response = await client.usergroups_users_list(usergroup="S0ONCALL")

    assert response["users"] == ["U0ALICE", "U0BOB"]
    assert await slack_error(client.usergroups_users_list(usergroup="S0NOPE")) == (
        "no_such_subteam"
    )


async def test_users_info(client: AsyncWebClient) -> None:
    response = await client.users_info(user="U0ALICE")

    assert response["user"]["id"] == "U0ALICE"
    assert response["user"]["tz"] == "Europe/Paris"


async def test_views_open(fake: FakeSlack, client: AsyncWebClient) -> None:
    response = await client.views_open(trigger_id="123.456.abc", view=modal())

    assert response["view"]["id"].startswith("V")
    assert response["view"]["callback_id"] == "declare"
    assert fake.views == [response["view"]]


async def test_views_open_with_expired_trigger(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.expire_trigger("123.456.old")

    error = await slack_error(client.views_open(trigger_id="123.456.old", view=modal()))

    assert error == "expired_trigger_id"
    assert fake.views == []


async def test_views_open_refuses_long_title(fake: FakeSlack, client: AsyncWebClient) -> None:
    call = client.views_open(trigger_id="123.456.abc", view=modal(title="t" * 25))

    assert await slack_error(call) == "invalid_arguments"
    assert fake.rejections == ["views.open: title text is 25 characters, more than 24"]
    assert fake.violations == []


async def test_views_update_replaces_view(fake: FakeSlack, client: AsyncWebClient) -> None:
    opened = await client.views_open(trigger_id="123.456.abc", view=modal())

    await client.views_update(view_id=opened["view"]["id"], view=modal(title="Updated"))

    assert len(fake.views) == 1
    assert fake.views[0]["title"]["text"] == "Updated"


async def test_views_publish_home_tab(fake: FakeSlack, client: AsyncWebClient) -> None:
    home = {"type": "home", "blocks": [section("Open incidents: 0")]}

    first = await client.views_publish(user_id="U0ALICE", view=home)
    again = await client.views_publish(user_id="U0ALICE", view=home)

    assert first["view"]["id"] == again["view"]["id"]
    assert fake.home_views["U0ALICE"]["blocks"] == home["blocks"]
    error = await slack_error(client.views_publish(user_id="U0ALICE", view=modal()))
    assert error == "invalid_arguments"
    assert fake.rejections == ["views.publish: view type must be home"]


# ------------------------------------------------------------ fault injection


async def test_rate_limit_is_retried_by_slack_sdk(fake: FakeSlack) -> None:
    retrying = AsyncWebClient(
        token=fake.token,
        base_url=fake.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    fake.fail("chat.postMessage", retry_after=0)

    response = await retrying.chat_postMessage(channel=CHANNEL, text="eventually")

    assert response["ok"] is True
    assert len(fake.calls_to("chat.postMessage")) == 2
    assert len(fake.messages[CHANNEL]) == 1


async def test_rate_limit_without_handler_surfaces(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail("auth.test", retry_after=7)

    with pytest.raises(SlackApiError) as caught:
        await client.auth_test()

    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert caught.value.response["error"] == "ratelimited"


async def test_server_error_surfaces_without_retry_handler(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.fail("chat.postMessage", status=503)

    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel=CHANNEL, text="x")

    assert caught.value.response.status_code == 503
    assert len(fake.calls_to("chat.postMessage")) == 1
    assert (await client.chat_postMessage(channel=CHANNEL, text="x"))["ok"] is True


async def test_error_fault_for_several_calls(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail("auth.test", error="internal_error", times=2)

    assert await slack_error(client.auth_test()) == "internal_error"
    assert await slack_error(client.auth_test()) == "internal_error"
    assert (await client.auth_test())["ok"] is True


async def test_delay_fault_times_out_the_client(fake: FakeSlack) -> None:
    impatient = AsyncWebClient(token=fake.token, base_url=fake.api_url, timeout=0.2)
    fake.fail("auth.test", delay=30)

    with pytest.raises(asyncio.TimeoutError):
        await impatient.auth_test()


# -------------------------------------------------- socket mode, response_url


async def test_socket_mode_handshake_and_ack(fake: FakeSlack) -> None:
    received: list[dict[str, Any]] = []
    socket = SocketModeClient(
        app_token=fake.app_token,
        web_client=AsyncWebClient(token=fake.token, base_url=fake.api_url),
        auto_reconnect_enabled=False,
    )

    async def remember(_: SocketModeClient, message: dict[str, Any], __: str | None) -> None:
        received.append(message)

    async def ack(client: SocketModeClient, request: SocketModeRequest) -> None:
        answer = SocketModeResponse(envelope_id=request.envelope_id, payload={"text": "on it"})
        await client.send_socket_mode_response(answer)

    socket.message_listeners.append(remember)
    socket.socket_mode_request_listeners.append(ack)
    await socket.connect()
    try:
        await fake.wait_socket_connected(timeout=5)
        reply = await fake.socket_deliver("slash_commands", {"command": "/rein"}, timeout=5)
    finally:
        await socket.close()

    assert reply["payload"] == {"text": "on it"}
    assert received[0]["type"] == "hello"
    assert received[1]["payload"] == {"command": "/rein"}
    assert fake.last("apps.connections.open").args == {}
    assert fake.violations == []


async def test_socket_deliver_needs_an_ack(fake: FakeSlack) -> None:
    socket = SocketModeClient(
        app_token=fake.app_token,
        web_client=AsyncWebClient(token=fake.token, base_url=fake.api_url),
        auto_reconnect_enabled=False,
    )
    await socket.connect()
    try:
        with pytest.raises(TimeoutError):
            await fake.socket_deliver("events_api", {"event": {}}, timeout=0.3)
    finally:
        await socket.close()


async def test_connections_open_wants_the_app_token(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    assert await slack_error(client.apps_connections_open(app_token=fake.token)) == (
        "not_allowed_token_type"
    )


async def test_response_url_posts_are_recorded(fake: FakeSlack) -> None:
    webhook = AsyncWebhookClient(fake.response_url("cmd-1"))

    response = await webhook.send(text="ack", response_type="ephemeral")

    assert response.status_code == 200
    assert fake.responses == [("cmd-1", {"text": "ack", "response_type": "ephemeral"})]


async def test_response_url_refuses_invalid_blocks(fake: FakeSlack) -> None:
    webhook = AsyncWebhookClient(fake.response_url("cmd-2"))

    response = await webhook.send(text="x", blocks=[section("a" * 3001)])

    assert response.status_code == 400
    assert len(fake.responses) == 1
    assert fake.rejections[0].startswith("response_url cmd-2: blocks[0] (section)")


async def test_running_fake_leaves_violations_to_the_caller() -> None:
    async with running_fake(token="xoxb-other") as server:
        client = AsyncWebClient(token="xoxb-other", base_url=server.api_url)
        assert await slack_error(client.api_call("no.such.method")) == "unknown_method"

    assert server.violations == ["no.such.method: unknown method (no no.such.method.json)"]


async def test_json_body_for_a_method_without_json_input_is_a_violation() -> None:
    async with running_fake() as fake:
        client = AsyncWebClient(token=fake.token, base_url=fake.api_url)
        with pytest.raises(SlackApiError):  # S1 is unknown; the encoding is what matters here
            await client.api_call("usergroups.users.list", json={"usergroup": "S1"})
        assert any("does not accept" in v for v in fake.violations)


async def test_external_file_upload(fake: FakeSlack, client: AsyncWebClient) -> None:
    """files.getUploadURLExternal → the bytes to its upload URL → files.completeUploadExternal,
    as slack_sdk's files_upload_v2 does it."""
    done = await client.files_upload_v2(
        channel=CHANNEL, filename="INC-1.md", title="INC-1", content=b"# INC-1\n"
    )
    [uploaded] = fake.files.values()
    assert done["files"][0]["id"] == uploaded.id
    assert uploaded.content == b"# INC-1\n" and uploaded.channel == CHANNEL
    assert uploaded.title == "INC-1" and uploaded.completed
    # Completing a file whose bytes never came (or twice), or into an unknown channel, fails.
    ticket = await client.files_getUploadURLExternal(filename="x.md", length=3)
    unsent = [{"id": ticket["file_id"]}]
    assert await slack_error(client.files_completeUploadExternal(files=unsent)) == "file_not_found"
    again = [{"id": uploaded.id}]
    assert await slack_error(client.files_completeUploadExternal(files=again)) == "file_not_found"
    assert fake.violations == [] and fake.rejections == []
