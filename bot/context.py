"""The collaborators every handler passes on to the services. Built once, in bot/app.py."""

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bot.autonomy import AutonomyBoard
from bot.clock import Clock
from bot.domain.models import CardFacts
from bot.domain.policy import Policy
from bot.foreground import Foreground
from bot.scheduler import DeliveryRunner
from bot.services.channel_status import SurfaceDesk
from bot.services.reminders import Reminders
from bot.services.surfaces import load_card_facts
from bot.slack_gateway import SlackGateway
from storage.agents import AgentRepo
from storage.db import Database
from storage.deliveries import DeliveryRepo
from storage.evidence import EvidenceRepo
from storage.incidents import IncidentRepo
from storage.postmortems import PostmortemRepo
from storage.restarts import RestartRepo
from storage.rollback import RollbackRepo
from storage.timeline import TimelineRepo

# Rooms set up at once. Each is seven Slack calls; during a burst of declarations the
# acknowledgements (which commit the incidents) go first and the rooms follow a few at a time.
ROOMS_AT_ONCE = 2


@dataclass
class Rein:
    policy: Policy
    db: Database
    incidents: IncidentRepo
    agents: AgentRepo
    deliveries: DeliveryRepo
    evidence: EvidenceRepo
    rollback: RollbackRepo
    slack: SlackGateway
    clock: Clock
    board: AutonomyBoard
    runner: DeliveryRunner | None = None  # set once the runtime has its scheduler
    reminders: Reminders | None = None  # set by the runtime (bot/services/reminders.py)
    announce_channel: str | None = None
    triage_channel: str | None = None
    room_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(ROOMS_AT_ONCE))
    # Slack requests awaiting their acknowledgement; rooms step aside for them.
    foreground: Foreground = field(default_factory=Foreground)
    # One lock per incident: its card, digest and topic are edited one refresh at a time.
    card_locks: defaultdict[int, asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )
    # Coalesced refreshes, topics set once, and the debounced one-line channel status.
    desk: SurfaceDesk = field(default_factory=SurfaceDesk)

    @property
    def timeline(self) -> TimelineRepo:
        return TimelineRepo(self.db)

    @property
    def postmortems(self) -> PostmortemRepo:
        return PostmortemRepo(self.db)

    @property
    def steering(self) -> dict[str, Any]:
        """Services that authorise a person against an incident."""
        return {
            "incidents": self.incidents,
            "slack": self.slack,
            "policy": self.policy,
            "clock": self.clock,
        }

    @property
    def containment(self) -> dict[str, Any]:
        """`approve_containment` and `emergency_stop`."""
        return {**self.steering, "agents": self.agents, "board": self.board}

    @property
    def room(self) -> dict[str, Any]:
        """`open_room`, but for the incident and where it came from."""
        return {
            **self.steering,
            "announce_channel": self.announce_channel,
            "facts": self.card_facts,
            "slots": self.room_slots,
            "foreground": self.foreground,
            "locks": self.card_locks,
        }

    @property
    def surfaces(self) -> dict[str, Any]:
        """`refresh_surfaces`."""
        return {
            "incidents": self.incidents,
            "locks": self.card_locks,
            "slack": self.slack,
            "policy": self.policy,
            "announce_channel": self.announce_channel,
            "facts": self.card_facts,
            "desk": self.desk,
        }

    async def card_facts(self, number: int) -> CardFacts:
        return await load_card_facts(
            number,
            deliveries=self.deliveries,
            evidence=self.evidence,
            rollback=self.rollback,
            timeline=self.timeline,
            postmortems=self.postmortems,
            policy=self.policy,
            restarts=RestartRepo(self.db),
        )

    def deliver(self, delivery_id: str) -> None:
        """Start delivering to a kill switch now; attempts and retries follow on their own."""
        assert self.runner is not None, "the runtime starts the delivery runner"
        self.runner.schedule(delivery_id, attempts_made=0)
