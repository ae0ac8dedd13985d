"""Every agent's autonomy, in memory and in step with the database: the autonomy API is on
every agent's hot path, so it answers from here with bytes prepared when the state changed."""

import json
from collections.abc import Iterable

from bot.domain.models import AgentAutonomy, format_ref
from storage.db import to_db_time


def autonomy_document(state: AgentAutonomy) -> dict:
    return {
        "agent": state.agent_id,
        "mode": state.mode.value,
        "runs": state.runs,
        "writes": state.writes,
        "outbound": state.outbound,
        "schedules": state.schedules,
        "incident": format_ref(state.incident) if state.incident is not None else None,
        "updated_at": to_db_time(state.updated_at),
    }


class AutonomyBoard:
    def __init__(self) -> None:
        self._states: dict[str, AgentAutonomy] = {}
        self._bodies: dict[str, bytes] = {}

    def load(self, states: Iterable[AgentAutonomy]) -> None:
        for state in states:
            self.set(state)

    def set(self, state: AgentAutonomy) -> None:
        """Called after the change committed, before Slack is answered."""
        self._states[state.agent_id] = state
        self._bodies[state.agent_id] = json.dumps(autonomy_document(state)).encode()

    def get(self, agent_id: str) -> AgentAutonomy | None:
        return self._states.get(agent_id)

    def body(self, agent_id: str) -> bytes | None:
        return self._bodies.get(agent_id)
