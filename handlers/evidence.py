"""Evidence from Slack: the card's **Add evidence** button and its modal, and
`/incident evidence <kind> <text or url>` (wired into `/incident` in incident_command.py)."""

import re
from collections.abc import Awaitable, Callable
from typing import Any

from bot.context import Rein
from bot.domain.evidence import InvalidEvidence, new_evidence, parse_evidence_command
from bot.domain.models import parse_ref
from bot.render import text as t
from bot.render.evidence import (
    ADD_EVIDENCE,
    CONTENT_BLOCK,
    EVIDENCE_VIEW,
    KIND_BLOCK,
    NOTE_BLOCK,
    URL_BLOCK,
    added_text,
    evidence_modal,
)
from bot.render.replies import report
from bot.services.evidence import Added, add_evidence
from bot.services.surfaces import refresh_surfaces
from bot.slack_gateway import SlackProblem
from handlers.payloads import selected, user_and_channel
from storage.incidents import UnknownIncident

Ack = Callable[..., Awaitable[None]]
_BLOCK_OF_FIELD = {
    "kind": KIND_BLOCK,
    "content": CONTENT_BLOCK,
    "url": URL_BLOCK,
    "note": NOTE_BLOCK,
}
_REF_FIRST = re.compile(r"\s*(inc-?\d+)(?:\s+|$)(.*)$", re.IGNORECASE | re.DOTALL)
NOT_AN_INCIDENT_CHANNEL = (
    "This is not an incident channel. Run it in one, or name the incident first: "
    "`/incident evidence INC-12 tool_calls https://traces.example.com/run/981`. "
    "`/incident list` shows open incidents."
)


def _raw(view: dict, block_id: str) -> str | None:
    """An input's value exactly as typed (evidence is kept verbatim), None when empty."""
    block = view.get("state", {}).get("values", {}).get(block_id) or {}
    state = next(iter(block.values()), {}) if block else {}
    return state.get("value") or None


async def _shown(rein: Rein, added: Added) -> str:
    return added_text(added.incident, added.item, await rein.evidence.kinds(added.incident.number))


async def evidence_command(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    """`/incident evidence [INC-12] <kind> <text or url>`: recorded, committed, then answered."""
    user = command["user_id"]
    try:
        named = _REF_FIRST.match(rest)
        if named:
            number, rest = parse_ref(named.group(1)), named.group(2)
        else:
            incident = await rein.incidents.by_channel(command.get("channel_id", ""))
            if incident is None:
                await ack(text=NOT_AN_INCIDENT_CHANNEL)
                return
            number = incident.number
        new = parse_evidence_command(rest)
        added = await add_evidence(
            number,
            new,
            actor=user,
            incidents=rein.incidents,
            evidence=rein.evidence,
            clock=rein.clock,
        )
    except (InvalidEvidence, UnknownIncident, ValueError) as exc:
        await ack(text=t.cut(t.escape(str(exc)), t.FALLBACK_TEXT_MAX))
        return
    await ack(text=await _shown(rein, added))
    problems = await refresh_surfaces(added.incident, **rein.surfaces)
    if problems:
        await respond(
            text=report("The card could not be updated.", problems), response_type="ephemeral"
        )


def register(app: Any, rein: Rein) -> None:
    @app.action(ADD_EVIDENCE)
    async def add_clicked(ack: Any, body: dict, action: dict) -> None:
        await ack()
        user, channel = user_and_channel(body)
        incident = await rein.incidents.get(int(action["value"]))
        if incident is None:
            await rein.slack.tell(user, "That incident no longer exists.", channel)
            return
        view = evidence_modal(incident, await rein.evidence.kinds(incident.number))
        try:
            await rein.slack.open_view(body["trigger_id"], view)
        except SlackProblem as problem:
            await rein.slack.tell(user, str(problem), channel)

    @app.view(EVIDENCE_VIEW)
    async def submitted(ack: Any, body: dict, view: dict) -> None:
        user = body["user"]["id"]
        kind = selected(view, KIND_BLOCK)
        if kind is None:
            await ack(response_action="errors", errors={KIND_BLOCK: "Choose a kind."})
            return
        try:
            new = new_evidence(
                kind,
                content=_raw(view, CONTENT_BLOCK),
                url=_raw(view, URL_BLOCK),
                note=_raw(view, NOTE_BLOCK),
            )
            added = await add_evidence(
                int(view["private_metadata"]),
                new,
                actor=user,
                incidents=rein.incidents,
                evidence=rein.evidence,
                clock=rein.clock,
            )
        except InvalidEvidence as exc:
            block = _BLOCK_OF_FIELD.get(exc.field, CONTENT_BLOCK)
            await ack(response_action="errors", errors={block: str(exc)})
            return
        except UnknownIncident as exc:
            await ack(response_action="errors", errors={KIND_BLOCK: str(exc)})
            return
        await ack()
        incident = added.incident
        await rein.slack.tell(
            user, await _shown(rein, added), incident.channel_id or incident.card_channel
        )
        await refresh_surfaces(incident, **rein.surfaces)
