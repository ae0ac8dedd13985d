"""Declaring through Slack: signed requests through Bolt over HTTP, fake Slack on loopback."""

from bot.app import Runtime
from tests.conftest import eventually
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SlackSender


async def test_quick_declare_sets_up_the_whole_room(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    status, answer = await slack.command(
        "declare sev2 agent:crm-writer Wrong CRM field on 300 records"
    )
    assert status == 200
    assert answer.startswith("Declared INC-1")
    incident = await rein.rein.incidents.get(1)
    assert incident is not None and incident.severity == "sev2"

    await eventually(lambda: fake_slack.responses)
    channel = fake_slack.last("conversations.create").args["name"]
    assert channel == "inc-1-wrong-crm-field-on-300-records"
