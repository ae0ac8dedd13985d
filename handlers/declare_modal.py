"""The declare form: live severity suggestion, submission, and the duplicate confirmation."""

import json
from typing import Any

from pydantic import ValidationError

from bot.context import Rein
from bot.domain.enums import Severity
from bot.domain.models import NewIncident
from bot.domain.severity import IMPACT_LABELS, Impact, suggest_severity
from bot.render.replies import DECLARE_ANYWAY, DECLARE_CANCEL, declared_text, report
from bot.render.views import DECLARE_VIEW, IMPACT_CHANGED, declare_modal
from bot.services.declare import UnknownAgent, declare, open_room
from bot.slack_gateway import SlackProblem
from handlers.payloads import selected, selected_many, text_value, user_and_channel

STALE_SUGGESTION = (
    "The form's severity suggestion may be out of date; Rein checks it again when you submit."
)


def _impact(view: dict) -> Impact:
    ticked = {name: True for name in selected_many(view, "impact") if name in IMPACT_LABELS}
    records = text_value(view, "records")
    try:
        return Impact(**ticked, records_touched=int(records or 0))
    except (ValueError, ValidationError):
        return Impact(**ticked)


def _form_errors(view: dict, rein: Rein) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not text_value(view, "title"):
        errors["title"] = "Give the incident a title."
    agent_id = selected(view, "agent")
    if agent_id is None or rein.policy.agent(agent_id) is None:
        errors["agent"] = "Choose one of the agents in the policy file."
    records = text_value(view, "records")
    if records and (not records.isdigit() or int(records) > 1_000_000_000):
        errors["records"] = "A whole number of records, 0 or more."
    chosen = selected(view, "severity")
    suggested = suggest_severity(_impact(view)).severity
    if chosen is None:
        errors["severity"] = "Choose a severity."
    elif chosen != suggested.value and not text_value(view, "override"):
        errors["override"] = (
            f"Rein suggests {suggested.label} from the impact above; "
            "say why you choose another severity."
        )
    return errors


def register(app: Any, rein: Rein) -> None:
    @app.action(IMPACT_CHANGED)
    async def impact_changed(ack: Any, body: dict) -> None:
        await ack()
        view = body["view"]
        origin = json.loads(view.get("private_metadata") or "{}").get("channel")
        refreshed = declare_modal(
            rein.policy.agents,
            origin_channel=origin,
            impact=_impact(view),
            chosen=None,  # follow the suggestion until the declarer has chosen otherwise
            title=text_value(view, "title") or None,
            agent_id=selected(view, "agent"),
            summary=text_value(view, "summary") or None,
        )
        try:
            await rein.slack.update_view(view["id"], refreshed, view.get("hash"))
        except SlackProblem as problem:
            if problem.code == "hash_conflict":
                return  # the declarer changed the form again: that change redraws it
            await rein.slack.tell(body["user"]["id"], f"{problem} {STALE_SUGGESTION}", origin)

    @app.view(DECLARE_VIEW)
    async def submitted(ack: Any, body: dict, view: dict) -> None:
        errors = _form_errors(view, rein)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        user = body["user"]["id"]
        new = NewIncident(
            title=text_value(view, "title"),
            summary=text_value(view, "summary"),
            agent_id=selected(view, "agent") or "",
            severity=Severity(selected(view, "severity")),
            declared_by=user,
            impact=_impact(view),
            override_reason=text_value(view, "override"),
            idempotency_key=f"view:{view['id']}",
        )
        try:
            declared = await declare(
                new, incidents=rein.incidents, policy=rein.policy, clock=rein.clock
            )
        except UnknownAgent as exc:
            await ack(response_action="errors", errors={"agent": str(exc)})
            return
        await ack()
        if not declared.created:
            return  # a repeated submission: the first one set the room up
        origin = json.loads(view.get("private_metadata") or "{}").get("channel")
        room = await open_room(declared.incident, origin_channel=origin, **rein.room)
        await rein.slack.tell(user, report(declared_text(room.incident), room.problems), origin)

    @app.action(DECLARE_ANYWAY)
    async def declare_anyway(ack: Any, body: dict, action: dict, respond: Any) -> None:
        await ack()
        user, channel = user_and_channel(body)
        form = json.loads(action["value"])
        new = NewIncident(
            title=form["title"],
            agent_id=form["agent"],
            severity=Severity(form["severity"]),
            declared_by=user,
            # One confirmation click (or its double) declares one incident.
            idempotency_key=f"confirm:{body['container'].get('message_ts') or action['action_ts']}",
        )
        declared = await declare(
            new, incidents=rein.incidents, policy=rein.policy, clock=rein.clock
        )
        if not declared.created:
            return
        room = await open_room(declared.incident, origin_channel=channel, **rein.room)
        done = report(declared_text(room.incident), room.problems)
        await respond(text=done, replace_original=True, response_type="ephemeral")

    @app.action(DECLARE_CANCEL)
    async def cancel(ack: Any, respond: Any) -> None:
        await ack()
        await respond(text="Nothing declared.", replace_original=True, response_type="ephemeral")
