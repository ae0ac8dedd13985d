"""The collaborators every handler passes on to the services. Built once, in bot/app.py."""

from dataclasses import dataclass
from typing import Any

from bot.clock import Clock
from bot.domain.policy import Policy
from bot.slack_gateway import SlackGateway
from storage.agents import AgentRepo
from storage.db import Database
from storage.incidents import IncidentRepo


@dataclass
class Rein:
    policy: Policy
    db: Database
    incidents: IncidentRepo
    agents: AgentRepo
    slack: SlackGateway
    clock: Clock
    announce_channel: str | None = None

    @property
    def steering(self) -> dict[str, Any]:
        """The keyword arguments that the steering services share."""
        return {
            "incidents": self.incidents,
            "slack": self.slack,
            "policy": self.policy,
            "clock": self.clock,
        }

    @property
    def room(self) -> dict[str, Any]:
        """The keyword arguments of `open_room`, but for the incident and where it came from."""
        return {**self.steering, "announce_channel": self.announce_channel}

    @property
    def surfaces(self) -> dict[str, Any]:
        """The keyword arguments of `refresh_surfaces`."""
        return {
            "slack": self.slack,
            "policy": self.policy,
            "announce_channel": self.announce_channel,
        }
