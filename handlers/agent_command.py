"""`/agent list`, `/agent status <id>`, and the emergency stop `/agent pause <id> <reason>`."""

from typing import Any

from bot.context import Rein
from bot.domain.commands import CommandError, parse_emergency_stop, split_subcommand
from bot.render.agents import agent_list_blocks, agent_status_blocks
from bot.render.help import AGENT_HELP
from bot.render.replies import contained_text, report
from bot.render.text import escape, unescape
from bot.services.authorise import Refused
from bot.services.containment import emergency_stop
from bot.services.declare import open_room
from bot.services.surfaces import refresh_surfaces


def register(app: Any, rein: Rein) -> None:
    @app.command("/agent")
    async def agent(ack: Any, command: dict, respond: Any) -> None:
        # Slack sends `&`, `<` and `>` as entities: every subcommand sees what was typed.
        sub, rest = split_subcommand(unescape(command.get("text", "")))
        if sub in ("", "help"):
            await ack(text=AGENT_HELP)
        elif sub == "pause":
            await _pause(rein, rest, command, ack, respond)
        elif sub in ("list", "status"):
            await ack()
            await _show(rein, sub, rest.strip(), respond)
        else:
            await ack(text=f"`/agent {escape(sub)}` is not a subcommand.\n\n{AGENT_HELP}")


async def _show(rein: Rein, sub: str, agent_id: str, respond: Any) -> None:
    states = {state.agent_id: state for state in await rein.agents.all()}
    if sub == "list":
        blocks = agent_list_blocks(rein.policy.agents, states)
        await respond(text="Agents", blocks=blocks, response_type="ephemeral")
        return
    found = rein.policy.agent(agent_id)
    if found is None:
        known = ", ".join(f"`{a.id}`" for a in rein.policy.agents)
        text = f"There is no agent `{escape(agent_id)}`. Agents: {known}."
        await respond(text=text, response_type="ephemeral")
        return
    blocks = agent_status_blocks(found, states.get(found.id))
    await respond(text=f"Agent {found.id}", blocks=blocks, response_type="ephemeral")


async def _pause(rein: Rein, rest: str, command: dict, ack: Any, respond: Any) -> None:
    try:
        stop = parse_emergency_stop(rest)
        # Declared, contained and paused before Slack hears back.
        contained = await emergency_stop(
            stop.agent_id, stop.reason, stop.severity, actor=command["user_id"], **rein.containment
        )
    except (CommandError, Refused) as exc:  # a CommandError may repeat what was typed
        await ack(text=escape(str(exc)) if isinstance(exc, CommandError) else str(exc))
        return
    await ack(
        text=f"{contained.incident.ref}: `{stop.agent_id}` is paused. Setting up the channel…"
    )
    if contained.delivery is not None:
        rein.deliver(contained.delivery.id)
    room = await open_room(
        contained.incident, origin_channel=command.get("channel_id"), **rein.room
    )
    if contained.delivery is not None:
        # The first attempt may have finished before the card existed: show its outcome now.
        await refresh_surfaces(room.incident, **rein.surfaces)
    await respond(
        text=report(contained_text(room.incident), room.problems), response_type="ephemeral"
    )
