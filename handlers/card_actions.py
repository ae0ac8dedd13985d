"""Buttons on the incident card, and the modals they open."""

from typing import Any

from bot.context import Rein
from bot.domain.enums import Severity
from bot.domain.lifecycle import IllegalTransition
from bot.render.incident import CHANGE_SEVERITY, CLOSE_INCIDENT
from bot.render.replies import report
from bot.render.views import CLOSE_VIEW, SEVERITY_VIEW, close_modal, severity_modal
from bot.services.steering import Refused, change_severity, close_incident
from bot.services.surfaces import refresh_surfaces
from bot.slack_gateway import SlackProblem
from handlers.payloads import selected, text_value, user_and_channel


def register(app: Any, rein: Rein) -> None:
    async def open_modal(body: dict, action: dict, render: Any) -> None:
        user, channel = user_and_channel(body)
        incident = await rein.incidents.get(int(action["value"]))
        if incident is None:
            await rein.slack.tell(user, "That incident no longer exists.", channel)
            return
        try:
            await rein.slack.open_view(body["trigger_id"], render(incident))
        except SlackProblem as problem:
            await rein.slack.tell(user, str(problem), channel)

    @app.action(CHANGE_SEVERITY)
    async def change_severity_clicked(ack: Any, body: dict, action: dict) -> None:
        await ack()
        await open_modal(body, action, severity_modal)

    @app.action(CLOSE_INCIDENT)
    async def close_clicked(ack: Any, body: dict, action: dict) -> None:
        await ack()
        await open_modal(body, action, close_modal)

    @app.view(SEVERITY_VIEW)
    async def severity_submitted(ack: Any, body: dict, view: dict) -> None:
        chosen, reason = selected(view, "severity"), text_value(view, "reason")
        if chosen is None or not reason:
            await ack(response_action="errors", errors={"reason": "Choose a severity and say why."})
            return
        user = body["user"]["id"]
        try:
            changed = await change_severity(
                int(view["private_metadata"]), Severity(chosen), reason, actor=user, **rein.steering
            )
        except Refused as exc:
            await ack(response_action="errors", errors={"reason": str(exc)})
            return
        await ack()
        problems = await refresh_surfaces(changed, **rein.surfaces)
        if problems:
            await rein.slack.tell(
                user, report(f"{changed.ref} is now {changed.severity.label}.", problems)
            )

    @app.view(CLOSE_VIEW)
    async def close_submitted(ack: Any, body: dict, view: dict) -> None:
        note, user = text_value(view, "learning"), body["user"]["id"]
        try:
            if not note:
                raise Refused("Write what was fixed and what was learned.")
            closed = await close_incident(
                int(view["private_metadata"]), note, actor=user, **rein.steering
            )
        except (Refused, IllegalTransition) as exc:
            await ack(response_action="errors", errors={"learning": str(exc)})
            return
        await ack()
        problems = await refresh_surfaces(closed, **rein.surfaces)
        if problems:
            await rein.slack.tell(user, report(f"{closed.ref} is closed.", problems))
