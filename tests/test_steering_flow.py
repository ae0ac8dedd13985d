"""Around a declared incident: list, status, severity changes, closing, and /agent."""

import asyncio
import json

import pytest

from bot.app import Runtime
from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.services.authorise import Refused
from bot.services.containment import set_plan
from bot.services.rollback import mark_recovered
from bot.services.steering import change_severity
from tests.conftest import ANNOUNCE, eventually
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SlackSender, chosen, typed


async def declared(
    slack: SlackSender, fake: FakeSlack, rein: Runtime, text: str, user: str = "U0ALICE"
) -> str:
    """Declare and wait for the room; return the incident channel id."""
    before = len(fake.responses)
    await slack.command(f"declare {text}", user=user)
    await eventually(lambda: len(fake.responses) > before)
    newest = (await rein.rein.incidents.newest())[0]
    assert newest.channel_id is not None
    return newest.channel_id


async def last_reply(fake: FakeSlack, count: int) -> dict:
    await eventually(lambda: len(fake.responses) >= count)
    return fake.responses[count - 1][1]


async def test_list_shows_open_incidents_with_channel_and_age(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Cost loop")
    status, _ = await slack.command("list")
    assert status == 200
    reply = await last_reply(fake_slack, 2)
    shown = json.dumps(reply["blocks"])
    assert "INC-1" in shown and "SEV-3" in shown and f"<#{channel}>" in shown and "old" in shown


async def test_status_reposts_the_card_and_retires_the_old_one(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Cost loop")
    first = (await rein.rein.incidents.get(1)).card_ts  # type: ignore[union-attr]
    await slack.command("status", channel=channel)
    await last_reply(fake_slack, 2)
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.card_ts != first
    old = next(m for m in fake_slack.messages[channel] if m.ts == first)
    assert "moved" in json.dumps(old.blocks)
    await slack.command("status")  # not an incident channel
    assert "not an incident channel" in (await last_reply(fake_slack, 3))["text"]


async def test_sev_command_changes_severity_everywhere_and_records_why(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Cost loop")
    await slack.command("sev 1 customers were charged twice", channel=channel)
    assert "INC-1 is now SEV-1" in (await last_reply(fake_slack, 2))["text"]
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.severity == "sev1"
    card = next(m for m in fake_slack.messages[channel] if m.ts == incident.card_ts)
    assert "Required response for SEV-1" in json.dumps(card.blocks)
    assert fake_slack.channels[channel].topic.startswith("SEV-1")
    assert "SEV-1" in fake_slack.messages[ANNOUNCE][0].text
    entry = (await rein.rein.incidents.timeline(1))[-1]
    assert entry.kind == TimelineKind.SEVERITY_CHANGED and entry.actor == "U0ALICE"
    assert entry.data == {"from": "sev3", "to": "sev1", "reason": "customers were charged twice"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sev 5 worse", "from 1 (most severe) to 4"),
        ("sev 2", "Say why"),
        ("sev 3 same again", "already SEV-3"),
        ("sev INC-99 2 nope", "no incident INC-99"),
    ],
)
async def test_bad_severity_changes_are_explained(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, text: str, expected: str
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Cost loop")
    await slack.command(text, channel=channel)
    assert expected in (await last_reply(fake_slack, 2))["text"]
    assert (await rein.rein.incidents.get(1)).severity == "sev3"  # type: ignore[union-attr]


async def test_a_stranger_cannot_change_severity_and_the_refusal_is_recorded(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev2 agent:crm-writer Wrong emails")
    await slack.command("sev 4 looks minor", channel=channel, user="U0MALLORY")
    reply = (await last_reply(fake_slack, 2))["text"]
    assert "Only the commander (<@U0ALICE>), the agent owner (<@U0OWNER>)" in reply
    assert (await rein.rein.incidents.get(1)).severity == "sev2"  # type: ignore[union-attr]
    entry = (await rein.rein.incidents.timeline(1))[-1]
    assert entry.kind == TimelineKind.REFUSED and entry.actor == "U0MALLORY"
    # An approver of the severity involved may; so may a member of an approver user group.
    await slack.command("sev 1 it reached customers", channel=channel, user="U0HEADOPS")
    assert "now SEV-1" in (await last_reply(fake_slack, 3))["text"]
    await slack.command("sev 2 contained to one segment", channel=channel, user="U0SEC2")
    assert "now SEV-2" in (await last_reply(fake_slack, 4))["text"]


async def test_change_severity_button_opens_a_modal_whose_submission_changes_it(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Cost loop")
    await slack.click("incident_change_severity", "1", channel=channel)
    await eventually(lambda: fake_slack.calls_to("views.open"))
    view = fake_slack.last("views.open").args["view"]
    status, answer = await slack.submit(view, {"severity": chosen("sev2"), "reason": typed("")})
    assert answer["response_action"] == "errors"
    status, answer = await slack.submit(
        view, {"severity": chosen("sev2"), "reason": typed("the CRM syncs to the portal")}
    )
    assert status == 200 and answer in ("", None)
    assert (await rein.rein.incidents.get(1)).severity == "sev2"  # type: ignore[union-attr]
    await eventually(lambda: fake_slack.channels[channel].topic.startswith("SEV-2"))
    status, answer = await slack.submit(
        view, {"severity": chosen("sev4"), "reason": typed("meh")}, user="U0MALLORY"
    )
    assert (
        answer["response_action"] == "errors" and "Only the commander" in answer["errors"]["reason"]
    )


async def test_sev4_closes_from_declared_with_a_learning_note(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev4 agent:page-publisher Bad formatting")
    card = fake_slack.messages[channel][0]
    assert "Close incident" in json.dumps(card.blocks)
    await slack.command("close", channel=channel)
    assert "learning note" in (await last_reply(fake_slack, 2))["text"]
    await slack.command("close fixed the template; added a format check", channel=channel)
    assert "INC-1 is closed" in (await last_reply(fake_slack, 3))["text"]
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.status == "closed"
    entry = (await rein.rein.incidents.timeline(1))[-1]
    assert entry.kind == TimelineKind.STATUS_CHANGED
    assert entry.data["reason"] == "fixed the template; added a format check"
    updated = next(m for m in fake_slack.messages[channel] if m.ts == incident.card_ts)
    assert "Close incident" not in json.dumps(updated.blocks)
    assert "Change severity" not in json.dumps(updated.blocks)


async def test_sev2_cannot_close_from_declared(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev2 agent:crm-writer Wrong emails")
    await slack.command("close all good now", channel=channel)
    reply = (await last_reply(fake_slack, 2))["text"]
    assert "only a SEV-4 closes straight from declared" in reply
    assert (await rein.rein.incidents.get(1)).status == "declared"  # type: ignore[union-attr]


async def test_close_button_modal(rein: Runtime, slack: SlackSender, fake_slack: FakeSlack) -> None:
    channel = await declared(slack, fake_slack, rein, "sev4 agent:page-publisher Typos")
    await slack.click("incident_close", "1", channel=channel)
    await eventually(lambda: fake_slack.calls_to("views.open"))
    view = fake_slack.last("views.open").args["view"]
    _, answer = await slack.submit(view, {"learning": typed("")})
    assert answer["response_action"] == "errors"
    _, answer = await slack.submit(view, {"learning": typed("spell-check before publishing")})
    assert answer in ("", None)
    assert (await rein.rein.incidents.get(1)).status == "closed"  # type: ignore[union-attr]


async def test_agent_list_and_status(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    await slack.command("list", name="/agent")
    reply = await last_reply(fake_slack, 1)
    shown = json.dumps(reply["blocks"])
    assert "crm-writer" in shown and "page-publisher" in shown and "mode *autonomous*" in shown
    await slack.command("status page-publisher", name="/agent")
    assert "mode *supervised*" in json.dumps((await last_reply(fake_slack, 2))["blocks"])
    await slack.command("status nobody", name="/agent")
    assert "no agent `nobody`" in (await last_reply(fake_slack, 3))["text"]
    _, answer = await slack.command("dance", name="/agent")
    assert "not a subcommand" in answer
    _, answer = await slack.command("help")
    assert "/incident declare" in answer and "/incident sev" in answer


@pytest.mark.parametrize("action", ["plan", "recovered"])
async def test_an_approver_whose_severity_changed_while_they_acted_changes_nothing(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack, action: str
) -> None:
    """U0SEC1 approves SEV-1 through the S0SECOPS group. Their action is authorised while
    INC-1 is SEV-1 (the group read slowly from Slack); the commander makes it SEV-3 before the
    action is written: nothing changes, the person is told why, and the plan or status stays
    as the commander left it."""
    status, _ = await slack.command("declare sev1 agent:crm-writer Wrong field")
    assert status == 200

    async def room_set_up() -> bool:  # its invitations read the group too
        return not await rein.rein.incidents.rooms_pending()

    await eventually(room_set_up)
    if action == "recovered":
        status, answer = await slack.command("contain INC-1")
        assert "INC-1 is contained" in str(answer)
    rein.rein.slack._groups.clear()  # the group is read from Slack again, slowly
    fake_slack.fail("usergroups.users.list", delay=0.5)
    if action == "plan":
        acting = asyncio.create_task(
            set_plan(1, ["pause_runs"], actor="U0SEC1", **rein.rein.steering)
        )
    else:
        acting = asyncio.create_task(
            mark_recovered(1, actor="U0SEC1", rollback=rein.rein.rollback, **rein.rein.steering)
        )
    await asyncio.sleep(0.1)
    changed = await change_severity(
        1, Severity.SEV3, "scope narrowed", actor="U0ALICE", **rein.rein.steering
    )
    assert changed.severity is Severity.SEV3
    with pytest.raises(Refused, match="INC-1 became SEV-3 while you acted"):
        await acting
    incident = await rein.rein.incidents.get(1)
    assert incident is not None
    timeline = await rein.rein.incidents.timeline(1)
    assert not [e for e in timeline if e.kind is TimelineKind.PLAN_CHANGED]
    assert incident.status is (
        IncidentStatus.DECLARED if action == "plan" else IncidentStatus.CONTAINED
    )
