"""Containment: the plan, the approval that takes autonomy away at once, and the emergency stop.

On approval, one transaction moves the incident to `contained`, pauses the agent and queues
the kill-switch delivery; the in-memory autonomy board is updated before Slack hears back."""

import uuid
from dataclasses import dataclass

from bot.autonomy import AutonomyBoard
from bot.clock import Clock
from bot.domain.containment import MOVE_LABELS, contained_switches, normalise_plan, plan_for
from bot.domain.enums import (
    AutonomyMode,
    DeliveryEvent,
    IncidentStatus,
    Severity,
    TimelineKind,
)
from bot.domain.lifecycle import transition
from bot.domain.models import AgentAutonomy, Delivery, Incident, NewIncident, TimelineEntry
from bot.domain.policy import Policy
from bot.render.text import date, escape
from bot.render.text import user as mention
from bot.services.authorise import (
    Refused,
    authorise,
    authorised_incident,
    known_incident,
    named_approvers,
    still_authorised,
)
from bot.services.declare import declare
from bot.slack_gateway import SlackGateway
from storage.agents import AgentRepo
from storage.deliveries import DeliveryRepo
from storage.incidents import IncidentRepo

_LATER = (IncidentStatus.RECOVERED, IncidentStatus.POSTMORTEM, IncidentStatus.CLOSED)


@dataclass(frozen=True)
class Contained:
    incident: Incident
    autonomy: AgentAutonomy
    delivery: Delivery | None  # None when the agent has no kill switch


async def set_plan(
    number: int,
    moves: list[str],
    *,
    actor: str,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> Incident:
    authorised = await authorised_incident(
        number,
        actor,
        "adjust the containment plan of",
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    async with incidents.edit(number) as edit:
        if edit.incident.status is not IncidentStatus.DECLARED:
            raise Refused(f"{edit.incident.ref} is {edit.incident.status}; the plan is fixed.")
        still_authorised(actor, authorised, edit.incident, policy)
        plan = normalise_plan(moves, policy.agent(edit.incident.agent_id))
        now = clock()
        changed = edit.incident.model_copy(update={"containment_plan": plan, "updated_at": now})
        labels = ", ".join(MOVE_LABELS[m] for m in plan)
        entry = TimelineEntry(
            at=now,
            actor=actor,
            kind=TimelineKind.PLAN_CHANGED,
            text=f"Containment plan set to: {labels}",
            data={"moves": [m.value for m in plan]},
        )
        await edit.save(changed, [entry])
    return changed


async def approve_containment(
    number: int,
    *,
    actor: str,
    incidents: IncidentRepo,
    agents: AgentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
    board: AutonomyBoard,
    automatic: str | None = None,
) -> Contained:
    """`automatic` names the rule when Rein contains by itself (no person to authorise)."""
    current = await known_incident(number, incidents)
    if automatic is None:
        await authorise(
            actor,
            current,
            "approve containment of",
            incidents=incidents,
            slack=slack,
            policy=policy,
            clock=clock,
        )
    async with incidents.edit(number) as edit:
        incident = edit.incident
        if incident.status is IncidentStatus.CONTAINED or incident.status in _LATER:
            raise Refused(await _already(incident, incidents))
        if automatic is None:
            still_authorised(actor, current, incident, policy)
        plan = plan_for(incident, policy.agent(incident.agent_id))
        now = clock()
        labels = ", ".join(MOVE_LABELS[m] for m in plan)
        moved = transition(
            incident,
            IncidentStatus.CONTAINED,
            actor=actor,
            at=now,
            reason=f"containment approved: {labels}"
            + (f" (automatic: {automatic})" if automatic else ""),
        )
        before = board.get(incident.agent_id)  # the restart gate asks: could it write?
        entry = moved.entry.model_copy(
            update={
                "data": {
                    **moved.entry.data,
                    "moves": [m.value for m in plan],
                    "autonomy_before": (
                        {"mode": before.mode.value, "writes": before.writes} if before else None
                    ),
                }
            }
        )
        contained = moved.incident.model_copy(
            update={"containment_plan": plan, "automatic": automatic or incident.automatic}
        )
        autonomy = AgentAutonomy(
            agent_id=incident.agent_id,
            mode=AutonomyMode.PAUSED,
            **contained_switches(),
            incident=number,
            updated_at=now,
        )
        await agents.set_in(edit.conn, autonomy)
        delivery = None
        agent = policy.agent(incident.agent_id)
        if agent is not None and agent.kill_switch is not None:
            delivery = Delivery(
                id=uuid.uuid4().hex,
                incident=number,
                agent_id=incident.agent_id,
                event=DeliveryEvent.CONTAINMENT,
                actions=plan,
                mode=AutonomyMode.PAUSED,
                issued_at=now,
                next_attempt_at=now,
                updated_at=now,
            )
            await DeliveryRepo.insert_in(edit.conn, delivery)
        await edit.save(contained, [entry])
    board.set(autonomy)  # the autonomy API answers `paused` from here on
    return Contained(contained, autonomy, delivery)


async def _already(incident: Incident, incidents: IncidentRepo) -> str:
    entry = await incidents.last_transition_to(incident.number, IncidentStatus.CONTAINED)
    if entry is None:
        return f"{incident.ref} is already {incident.status}."
    return (
        f"{incident.ref} is already contained: {mention(entry.actor)} approved it {date(entry.at)}."
    )


async def emergency_stop(
    agent_id: str,
    reason: str,
    severity: Severity,
    *,
    actor: str,
    incidents: IncidentRepo,
    agents: AgentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
    board: AutonomyBoard,
) -> Contained:
    """`/agent pause`: the agent owner or any approver declares and contains in one go."""
    agent = policy.agent(agent_id)
    if agent is None:
        known = ", ".join(f"`{a.id}`" for a in policy.agents)
        raise Refused(f"There is no agent `{escape(agent_id)}`. Agents: {known}.")
    approvers: set[str] = set()
    for level in Severity:
        approvers |= await slack.expand_approvers(policy.approvers(level))
    if actor != agent.owner and actor not in approvers:
        # Name the approvers, as every other refusal does (README: "naming who can").
        named = list(dict.fromkeys(a for level in Severity for a in policy.approvers(level)))
        who = f" ({named_approvers(named)})" if named else ""
        raise Refused(
            f"Only the agent owner ({mention(agent.owner)}) or an approver{who} can pause "
            f"`{agent_id}` at once. Anyone can `/incident declare` it."
        )
    new = NewIncident(
        title=f"Emergency stop: {reason}"[:150],
        agent_id=agent_id,
        severity=severity,
        declared_by=actor,
    )
    declared = await declare(new, incidents=incidents, policy=policy, clock=clock)
    return await approve_containment(
        declared.incident.number,
        actor=actor,
        incidents=incidents,
        agents=agents,
        slack=slack,
        policy=policy,
        clock=clock,
        board=board,
    )
