"""`/agent list` and `/agent status <id>`."""

from typing import Any

from bot.context import Rein
from bot.domain.commands import split_subcommand
from bot.render.agents import agent_list_blocks, agent_status_blocks
from bot.render.help import AGENT_HELP


def register(app: Any, rein: Rein) -> None:
    @app.command("/agent")
    async def agent(ack: Any, command: dict, respond: Any) -> None:
        sub, rest = split_subcommand(command.get("text", ""))
        if sub in ("", "help"):
            await ack(text=AGENT_HELP)
            return
        if sub not in ("list", "status"):
            await ack(text=f"`/agent {sub}` is not a subcommand.\n\n{AGENT_HELP}")
            return
        await ack()
        states = {state.agent_id: state for state in await rein.agents.all()}
        if sub == "list":
            blocks = agent_list_blocks(rein.policy.agents, states)
            await respond(text="Agents", blocks=blocks, response_type="ephemeral")
            return
        found = rein.policy.agent(rest.strip())
        if found is None:
            known = ", ".join(f"`{a.id}`" for a in rein.policy.agents)
            await respond(
                text=f"There is no agent `{rest.strip()}`. Agents: {known}.",
                response_type="ephemeral",
            )
            return
        blocks = agent_status_blocks(found, states.get(found.id))
        await respond(text=f"Agent {found.id}", blocks=blocks, response_type="ephemeral")
