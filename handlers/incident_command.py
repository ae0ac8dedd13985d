"""`/incident`: help, declare (form or quick), list, status, sev, close."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

from bot.context import Rein
from bot.domain.commands import (
    CommandError,
    parse_quick_declare,
    parse_severity_change,
    split_subcommand,
)
from bot.domain.lifecycle import IllegalTransition
from bot.domain.models import NewIncident
from bot.render import incident as render
from bot.render.help import INCIDENT_HELP
from bot.render.replies import confirm_duplicate_blocks, contained_text, declared_text, report
from bot.render.text import escape, unescape
from bot.render.views import declare_modal
from bot.services.containment import approve_containment
from bot.services.declare import PossibleDuplicate, UnknownAgent, declare, open_room
from bot.services.steering import Refused, change_severity, close_incident
from bot.services.surfaces import refresh_surfaces, repost_card
from bot.slack_gateway import SlackProblem
from handlers.evidence import evidence_command as _evidence
from handlers.payloads import named_or_here
from handlers.postmortem import postmortem_subcommand as _postmortem
from handlers.restart_gate import gate_subcommand as _gate
from handlers.rollback_actions import recovered_subcommand as _recovered
from handlers.rollback_actions import rollback_subcommand as _rollback
from handlers.status_updates import timeline_command as _timeline
from handlers.status_updates import update_command as _update

Ack = Callable[..., Awaitable[None]]
Subcommand = Callable[[Rein, str, dict, Ack, Any], Awaitable[None]]
SEV_EXAMPLE = "/incident sev INC-12 2 customers saw it"


def register(app: Any, rein: Rein) -> None:
    @app.command("/incident")
    async def incident(ack: Ack, command: dict, respond: Any) -> None:
        # Slack sends `&`, `<` and `>` as entities: every subcommand sees what was typed.
        sub, rest = split_subcommand(unescape(command.get("text", "")))
        handler = SUBCOMMANDS.get(sub or "help")
        if handler is None:
            await ack(text=f"`/incident {escape(sub)}` is not a subcommand.\n\n{INCIDENT_HELP}")
            return
        await handler(rein, rest, command, ack, respond)


async def _help(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    await ack(text=INCIDENT_HELP)


async def _declare(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    if not rest:
        await ack()
        view = declare_modal(rein.policy.agents, origin_channel=command.get("channel_id"))
        try:
            await rein.slack.open_view(command["trigger_id"], view)
        except SlackProblem as problem:
            await respond(text=str(problem), response_type="ephemeral")
        return
    try:
        quick = parse_quick_declare(rest)
        new = NewIncident(
            title=quick.title,
            agent_id=quick.agent_id,
            severity=quick.severity,
            declared_by=command["user_id"],
        )
        # Committed before Slack hears back: an acknowledged declaration is never lost.
        declared = await declare(
            new,
            incidents=rein.incidents,
            policy=rein.policy,
            clock=rein.clock,
            allow_duplicate=False,
        )
    except (CommandError, UnknownAgent) as exc:  # plain text that may repeat what was typed
        await ack(text=escape(str(exc)))
        return
    except PossibleDuplicate as dup:
        payload = json.dumps(
            {"severity": quick.severity.value, "agent": quick.agent_id, "title": quick.title}
        )
        await ack(text=str(dup), blocks=confirm_duplicate_blocks(dup.existing, payload))
        return
    incident = declared.incident
    await ack(text=f"Declared {incident.ref}. Setting up its channel…")
    room = await open_room(incident, origin_channel=command.get("channel_id"), **rein.room)
    await respond(
        text=report(declared_text(room.incident), room.problems), response_type="ephemeral"
    )


async def _list(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    await ack()
    incidents = await rein.incidents.newest("open", limit=render.LIST_LINES_MAX)
    blocks = render.list_blocks(incidents, rein.clock())
    await respond(
        text=f"Open incidents: {len(incidents)}", blocks=blocks, response_type="ephemeral"
    )


async def _status(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    await ack()
    try:
        number, _ = await named_or_here(rein, rest, command, SEV_EXAMPLE)
        incident = await repost_card(
            number,
            incidents=rein.incidents,
            slack=rein.slack,
            policy=rein.policy,
            facts=rein.card_facts,
            locks=rein.card_locks,
        )
    except (Refused, LookupError, SlackProblem) as exc:
        await respond(text=str(exc), response_type="ephemeral")
        return
    await respond(text=f"{incident.ref}'s card is below.", response_type="ephemeral")


async def _sev(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    await ack()
    try:
        number, rest = await named_or_here(rein, rest, command, SEV_EXAMPLE)
        wanted = parse_severity_change(rest)
        changed = await change_severity(
            number, wanted.severity, wanted.reason, actor=command["user_id"], **rein.steering
        )
    except (CommandError, Refused) as exc:  # a CommandError is plain text; Refused is mrkdwn
        text = escape(str(exc)) if isinstance(exc, CommandError) else str(exc)
        await respond(text=text, response_type="ephemeral")
        return
    problems = await refresh_surfaces(changed, **rein.surfaces)
    done = f"{changed.ref} is now {changed.severity.label}."
    await respond(text=report(done, problems), response_type="ephemeral")


async def _contain(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    try:
        number, _ = await named_or_here(rein, rest, command, SEV_EXAMPLE)
        # Committed, and the autonomy API already answers `paused`, before Slack hears back.
        contained = await approve_containment(number, actor=command["user_id"], **rein.containment)
    except (Refused, IllegalTransition) as exc:
        await ack(text=str(exc))
        return
    await ack(text=contained_text(contained.incident))
    if contained.delivery is not None:
        rein.deliver(contained.delivery.id)
    problems = await refresh_surfaces(contained.incident, **rein.surfaces)
    if problems:
        await respond(
            text=report("The card could not be updated.", problems), response_type="ephemeral"
        )


async def _close(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    await ack()
    try:
        number, note = await named_or_here(rein, rest, command, SEV_EXAMPLE)
        if not note:
            raise Refused(
                "Add a learning note: `/incident close &lt;what was fixed and learned&gt;`."
            )
        closed = await close_incident(number, note, actor=command["user_id"], **rein.steering)
    except (Refused, IllegalTransition) as exc:
        await respond(text=str(exc), response_type="ephemeral")
        return
    problems = await refresh_surfaces(closed, **rein.surfaces)
    await respond(text=report(f"{closed.ref} is closed.", problems), response_type="ephemeral")


SUBCOMMANDS: dict[str, Subcommand] = {
    "help": _help,
    "declare": _declare,
    "list": _list,
    "status": _status,
    "sev": _sev,
    "severity": _sev,
    "close": _close,
    "contain": _contain,
    "evidence": _evidence,
    "rollback": _rollback,
    "recovered": _recovered,
    "update": _update,
    "timeline": _timeline,
    "postmortem": _postmortem,
    "gate": _gate,
}
