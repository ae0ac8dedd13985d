"""Declaring through Slack: signed requests through Bolt over HTTP, fake Slack on loopback."""

import asyncio
import json
import time
from urllib.parse import urlencode

from bot.app import Runtime
from bot.domain.enums import TimelineKind
from tests.conftest import ANNOUNCE, ORIGIN, eventually
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SlackSender, chosen, number, sign, ticked, typed

QUICK = "declare sev2 agent:crm-writer Wrong CRM field on 300 records"


def texts_of(blocks: list[dict]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


async def test_quick_declare_sets_up_the_whole_room(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    status, answer = await slack.command(QUICK)
    assert status == 200
    assert answer.startswith("Declared INC-1")
    # Committed before the ack: the incident exists as soon as Slack hears back.
    incident = await rein.rein.incidents.get(1)
    assert incident is not None
    assert (incident.severity, incident.status, incident.commander) == (
        "sev2",
        "declared",
        "U0ALICE",
    )

    await eventually(lambda: fake_slack.responses)
    created = fake_slack.last("conversations.create").args["name"]
    assert created == "inc-1-wrong-crm-field-on-300-records"
    channel = next(c for c in fake_slack.channels.values() if c.name == created)
    assert channel.topic.startswith("SEV-2 · declared · commander <@U0ALICE>")
    # Commander, agent owner and (SEV-2) the approvers.
    assert {"U0ALICE", "U0OWNER", "U0HEADOPS"} <= set(channel.members)
    card = fake_slack.messages[channel.id][0]
    assert (channel.id, card.ts) in fake_slack.pins
    assert "Disable agent" in texts_of(card.blocks) and "Change severity" in texts_of(card.blocks)
    digest = fake_slack.messages[ANNOUNCE][0]
    assert "INC-1" in digest.text and f"<#{channel.id}>" in texts_of(digest.blocks)
    stored = await rein.rein.incidents.get(1)
    assert stored is not None
    assert (stored.channel_id, stored.card_ts, stored.digest_ts) == (channel.id, card.ts, digest.ts)
    timeline = await rein.rein.incidents.timeline(1)
    assert [e.kind for e in timeline] == [TimelineKind.DECLARED]
    assert timeline[0].actor == "U0ALICE"
    _, reply = fake_slack.responses[-1]
    assert f"<#{channel.id}>" in reply["text"] and reply["response_type"] == "ephemeral"


async def test_sev1_invites_expand_user_groups(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    await slack.command("declare SEV-1 agent:crm-writer Refunds sent to the wrong customers")
    await eventually(lambda: fake_slack.responses)
    invited = fake_slack.last("conversations.invite").args["users"].split(",")
    assert {"U0SEC1", "U0SEC2", "U0CTO", "U0OWNER", "U0ALICE"} <= set(invited)
    assert "UREINBOT" not in invited


async def test_sev3_does_not_invite_approvers(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    await slack.command("declare sev3 agent:crm-writer Duplicate notes")
    await eventually(lambda: fake_slack.responses)
    assert fake_slack.last("conversations.invite").args["users"] == "U0ALICE,U0OWNER"


async def test_taken_channel_name_gets_a_suffix(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    fake_slack.add_channel("COLD", "inc-1-wrong-crm-field-on-300-records")
    await slack.command(QUICK)
    await eventually(lambda: fake_slack.responses)
    incident = await rein.rein.incidents.get(1)
    assert (
        incident is not None and incident.channel_name == "inc-1-wrong-crm-field-on-300-records-2"
    )


async def test_channel_refused_keeps_the_incident_and_posts_the_card_where_typed(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    fake_slack.fail("conversations.create", error="restricted_action")
    status, answer = await slack.command(QUICK)
    assert status == 200 and answer.startswith("Declared INC-1")
    await eventually(lambda: fake_slack.responses)
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.channel_id is None
    assert incident.card_channel == ORIGIN
    assert "Disable agent" in texts_of(fake_slack.messages[ORIGIN][0].blocks)
    _, reply = fake_slack.responses[-1]
    assert "workspace setting stops Rein from creating channels" in reply["text"]
    kinds = [e.kind for e in await rein.rein.incidents.timeline(1)]
    assert kinds == [TimelineKind.DECLARED, TimelineKind.SLACK_PROBLEM]


async def test_slack_rate_limit_is_retried_and_server_errors_reported(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    fake_slack.fail("chat.postMessage", retry_after=1)
    fake_slack.fail("conversations.setTopic", status=500, times=10)
    await slack.command(QUICK)
    await eventually(lambda: fake_slack.responses, timeout=10)
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.card_ts is not None  # 429 retried after Retry-After
    _, reply = fake_slack.responses[-1]
    assert "Could not set the channel topic" in reply["text"]


async def test_malformed_and_unknown_inputs_get_a_private_answer_and_store_nothing(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    cases = {
        "declare sev2 Wrong field": "missing an agent",
        "declare agent:crm-writer Wrong field": "missing a severity",
        "declare sev9 agent:crm-writer Wrong field": "not a severity",
        "declare sev2 agent:crm-writer": "missing a title",
        "declare sev2 agent:nobody Wrong field": "no agent `nobody`",
        f"declare sev2 agent:crm-writer {'x' * 151}": "keep it to 150",
        "frobnicate": "not a subcommand",
    }
    for text, expected in cases.items():
        status, answer = await slack.command(text)
        assert status == 200
        assert expected in answer, (text, answer)
    assert "/incident declare sev2 agent:crm-writer" in (await slack.command("declare sev2 x"))[1]
    assert await rein.rein.incidents.newest() == []
    assert fake_slack.calls_to("conversations.create") == []


async def test_same_quick_declare_within_a_minute_asks_first(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    await slack.command(QUICK)
    await eventually(lambda: fake_slack.responses)
    status, answer = await slack.command(QUICK)
    assert status == 200
    assert "Declare another incident anyway?" in texts_of(answer["blocks"])
    assert len(await rein.rein.incidents.newest()) == 1
    button = answer["blocks"][1]["elements"][0]
    # A double click on "Declare another" declares one more incident, not two.
    await asyncio.gather(
        slack.click(button["action_id"], button["value"], message_ts="1700000001.000001"),
        slack.click(button["action_id"], button["value"], message_ts="1700000001.000001"),
    )
    await eventually(lambda: len(fake_slack.calls_to("conversations.create")) == 2)
    await eventually(lambda: len(fake_slack.responses) == 2)
    assert [i.number for i in await rein.rein.incidents.newest()] == [2, 1]
    # A different person declaring the same thing is not asked.
    _, answer = await slack.command(QUICK, user="U0BOB")
    assert answer.startswith("Declared INC-3")


async def test_twenty_people_declaring_at_once_get_twenty_incidents(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    answers = await asyncio.gather(
        *(
            slack.command(f"declare sev3 agent:crm-writer Loop {i}", user=f"U0P{i:03d}")
            for i in range(20)
        )
    )
    assert all(status == 200 and body.startswith("Declared INC-") for status, body in answers)
    await eventually(lambda: len(fake_slack.responses) == 20, timeout=15)
    incidents = await rein.rein.incidents.newest()
    assert sorted(i.number for i in incidents) == list(range(1, 21))
    assert len({i.channel_id for i in incidents}) == 20


async def test_outside_text_is_escaped_and_cut_never_rejected(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    title = "<!channel> <@U0CEO> <http://evil.example|your bank> & " + "<" * 90
    await slack.command(f"declare sev3 agent:crm-writer {title}")
    await eventually(lambda: fake_slack.responses)
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.title == title  # stored verbatim
    shown = texts_of(fake_slack.messages[ANNOUNCE][0].blocks)
    assert "<!channel>" not in shown and "<@U0CEO>" not in shown and "<http://evil" not in shown
    assert "&lt;!channel&gt;" in shown and "&lt;@U0CEO&gt;" in shown
    assert "…" in shown  # the escaped title outgrew its room and was cut visibly
    assert fake_slack.rejections == []


async def test_a_title_with_slacks_entity_characters_is_stored_as_typed_and_escaped_once(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    """Slack sends `A & B <C>` as `A &amp; B &lt;C&gt;`: Rein stores what was typed, shows it
    escaped exactly once in mrkdwn (the announcement, the topic; never `&amp;amp;`) and as
    typed in plain text (the card's header)."""
    status, answer = await slack.command("declare sev3 agent:crm-writer A & B <C>")
    assert status == 200 and answer.startswith("Declared INC-1"), answer
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.title == "A & B <C>"
    timeline = await rein.rein.incidents.timeline(1)
    assert "A & B <C>" in timeline[0].text
    await eventually(lambda: fake_slack.responses)  # the room is set up after the ack
    stored = await rein.rein.incidents.get(1)
    assert stored is not None and stored.channel_id is not None
    header = (fake_slack.messages[stored.channel_id][0].blocks or [])[0]
    assert header["type"] == "header"
    assert header["text"] == {
        "type": "plain_text",
        "text": "INC-1 · SEV-3 · A & B <C>",
        "emoji": True,
    }
    digest = texts_of(fake_slack.messages[ANNOUNCE][0].blocks)
    topic = fake_slack.channels[stored.channel_id].topic
    for shown in (digest, topic):
        assert "A &amp; B &lt;C&gt;" in shown
        assert "&amp;amp;" not in shown and "&amp;lt;" not in shown and "<C>" not in shown
    assert fake_slack.rejections == []


async def test_declare_modal_opens_and_suggests_severity_live(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    status, _ = await slack.command("declare")
    assert status == 200
    await eventually(lambda: fake_slack.calls_to("views.open"))
    view = fake_slack.last("views.open").args["view"]
    labels = [b["label"]["text"] for b in view["blocks"] if b["type"] == "input"]
    for wanted in ("Title", "Agent", "What happened", "Impact", "Records touched", "Severity"):
        assert wanted in labels
    opened = {**view, "id": fake_slack.views[-1]["id"]}
    # Ticking "customer-visible" re-renders the form with Rein's new suggestion.
    await slack.interaction(
        {
            "type": "block_actions",
            "user": {"id": "U0ALICE"},
            "team": {"id": "T0000TEAM"},
            "api_app_id": "A0REIN",
            "trigger_id": "trigger.x",
            "view": {
                **opened,
                "hash": "h1",
                "state": {
                    "values": {"impact": {"declare_impact_changed": ticked("customer_visible")}}
                },
            },
            "actions": [
                {"type": "checkboxes", "action_id": "declare_impact_changed", "block_id": "impact"}
            ],
        }
    )
    await eventually(lambda: fake_slack.calls_to("views.update"))
    updated = fake_slack.last("views.update").args["view"]
    assert "Rein suggests SEV-2" in texts_of(updated["blocks"])


async def test_modal_submission_declares_once_and_requires_a_reason_to_override(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    await slack.command("declare")
    await eventually(lambda: fake_slack.calls_to("views.open"))
    view = {**fake_slack.last("views.open").args["view"], "id": "V0DECLARE1"}
    values = {
        "title": typed("Published an unsupported claim"),
        "agent": chosen("page-publisher"),
        "summary": typed("The agent published a pricing claim with no source."),
        "impact": ticked("external_exposure", "customer_visible"),
        "records": number("12"),
        "severity": chosen("sev4"),
        "override": typed(""),
    }
    status, answer = await slack.submit(view, values)
    assert status == 200 and answer["response_action"] == "errors"
    assert "Rein suggests SEV-2" in answer["errors"]["override"]
    assert await rein.rein.incidents.newest() == []

    values["override"] = typed("Internal preview only, nobody outside saw it")
    first, second = await asyncio.gather(slack.submit(view, values), slack.submit(view, values))
    assert first[0] == second[0] == 200
    await eventually(lambda: fake_slack.calls_to("conversations.create"))
    await asyncio.sleep(0.2)
    incidents = await rein.rein.incidents.newest()
    assert len(incidents) == 1 and incidents[0].severity == "sev4"
    assert len(fake_slack.calls_to("conversations.create")) == 1
    entry = (await rein.rein.incidents.timeline(1))[0]
    assert entry.data["suggested"] == "sev2"
    assert entry.data["override_reason"] == "Internal preview only, nobody outside saw it"


async def test_forged_and_stale_signatures_are_refused_and_store_nothing(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    body = urlencode(
        {"command": "/incident", "text": QUICK, "user_id": "U0EVE", "channel_id": ORIGIN}
    )
    assert (await slack.post(body, signature="v0=" + "0" * 64))[0] == 401
    stale = int(time.time()) - 6 * 60
    assert (await slack.post(body, timestamp=stale, signature=sign(body, stale)))[0] == 401
    assert (await slack.post(body, headers={"X-Slack-Request-Timestamp": "soon"}))[0] == 401
    assert await rein.rein.incidents.newest() == []
    assert fake_slack.calls_to("conversations.create") == []
