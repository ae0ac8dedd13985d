"""`/agent list` and `/agent status`."""

from collections.abc import Mapping, Sequence

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.domain.models import AgentAutonomy, format_ref
from bot.domain.policy import Agent
from bot.render import text as t

_SWITCHES = ("runs", "writes", "outbound", "schedules")


def _switches(state: AgentAutonomy) -> str:
    return " · ".join(
        f"{name} {':white_check_mark:' if getattr(state, name) else ':no_entry:'}"
        for name in _SWITCHES
    )


def _agent_text(agent: Agent, state: AgentAutonomy | None) -> str:
    head = f"*{t.escape(agent.name)}* (`{agent.id}`) — owner {t.user(agent.owner)}"
    if state is None:
        return f"{head}\nmode unknown: Rein has not started with this agent yet"
    line = f"{head}\nmode *{state.mode}* · {_switches(state)}"
    if state.incident is not None:
        line += f"\nheld by {format_ref(state.incident)}"
    return line


def agent_list_blocks(agents: Sequence[Agent], states: Mapping[str, AgentAutonomy]) -> list[dict]:
    blocks: list[Block] = [SectionBlock(text=f"*Agents: {len(agents)}*")]
    shown = agents[: t.MESSAGE_BLOCKS_MAX - 2]
    blocks += [SectionBlock(text=_agent_text(a, states.get(a.id))) for a in shown]
    if len(agents) > len(shown):
        blocks.append(
            ContextBlock(
                elements=[MarkdownTextObject(text=f"…and {len(agents) - len(shown)} more")]
            )
        )
    return t.to_dicts(blocks)


def agent_status_blocks(agent: Agent, state: AgentAutonomy | None) -> list[dict]:
    details = [
        f"writes to: {', '.join(t.escape(s) for s in agent.writes_to) or 'nothing'}",
        f"outbound: {'yes' if agent.outbound else 'no'}",
        f"scheduled: {'yes' if agent.scheduled else 'no'}",
        f"normal mode: {agent.normal_mode}",
        "kill switch: "
        + ("configured" if agent.kill_switch else "none (contained through the autonomy API only)"),
    ]
    return t.to_dicts(
        [
            SectionBlock(text=_agent_text(agent, state)),
            ContextBlock(elements=[MarkdownTextObject(text=t.cut(" · ".join(details), 3000))]),
        ]
    )
