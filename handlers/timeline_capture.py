"""Putting a message on the timeline: the "Add to incident timeline" message shortcut (with an
incident chooser outside incident channels) and the :pushpin: reaction in an incident channel."""

from typing import Any

from bot.context import Rein
from bot.render.capture import (
    ADD_TO_TIMELINE,
    CHOOSE_VIEW,
    INCIDENT_BLOCK,
    NO_OPEN_INCIDENTS,
    captured_text,
    choose_incident_modal,
    read_metadata,
)
from bot.render.views import SELECT_OPTIONS_MAX
from bot.services.capture import capture_chosen, capture_in_channel, capture_pinned
from bot.slack_gateway import SlackProblem
from bot.slack_reads import message_from
from handlers.payloads import selected

PUSHPIN = "pushpin"
PIN_AGAIN = "It is not on the timeline: pin it again, or use Add to incident timeline on it."


def register(app: Any, rein: Rein) -> None:
    @app.shortcut(ADD_TO_TIMELINE)
    async def add_to_timeline(ack: Any, body: dict) -> None:
        await ack()
        user, channel = body["user"]["id"], body["channel"]["id"]
        message = message_from(channel, body["message"])
        captured = await capture_in_channel(
            message, captured_by=user, incidents=rein.incidents, clock=rein.clock
        )
        if captured is not None:
            await rein.slack.tell(user, captured_text(captured), channel)
            return
        # One more than fits, so the chooser can say that it shows only the newest.
        found = await rein.incidents.newest("open", limit=SELECT_OPTIONS_MAX + 1)
        if not found:
            await rein.slack.tell(user, NO_OPEN_INCIDENTS, channel)
            return
        try:
            await rein.slack.open_view(body["trigger_id"], choose_incident_modal(found, message))
        except SlackProblem as problem:
            await rein.slack.tell(user, str(problem), channel)

    @app.view(CHOOSE_VIEW)
    async def incident_chosen(ack: Any, body: dict, view: dict) -> None:
        choice = selected(view, INCIDENT_BLOCK) or ""
        if not choice.isdigit() or await rein.incidents.get(int(choice)) is None:
            await ack(response_action="errors", errors={INCIDENT_BLOCK: "Choose an incident."})
            return
        await ack()
        user = body["user"]["id"]
        message, complete = read_metadata(view["private_metadata"])
        captured = await capture_chosen(
            int(choice),
            message,
            text_complete=complete,
            captured_by=user,
            incidents=rein.incidents,
            slack=rein.slack,
            clock=rein.clock,
        )
        await rein.slack.tell(user, captured_text(captured), message.channel)

    @app.event("reaction_added")
    async def reaction_added(event: dict) -> None:
        # Bolt acknowledges events itself. Another emoji, a file, or a channel that is not an
        # incident's: nothing happens and nothing is said.
        item = event.get("item") or {}
        if event.get("reaction") != PUSHPIN or item.get("type") != "message":
            return
        user, channel = str(event.get("user", "")), str(item.get("channel", ""))
        try:
            captured = await capture_pinned(
                channel,
                str(item.get("ts", "")),
                pinned_by=user,
                incidents=rein.incidents,
                slack=rein.slack,
                clock=rein.clock,
            )
        except SlackProblem as problem:  # Slack would not give the message back to read
            await rein.slack.tell(user, f"{problem} {PIN_AGAIN}", channel)
            return
        if captured is not None and captured.added:  # a retry or a second pin stays quiet
            await rein.slack.tell(user, captured_text(captured), channel)
