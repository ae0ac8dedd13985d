"""Changing an incident's severity and closing it: authorised and recorded. The caller then
publishes the change with `refresh_surfaces` (after answering Slack, which allows 3 s)."""

from bot.clock import Clock
from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.domain.lifecycle import transition
from bot.domain.models import Incident, TimelineEntry
from bot.domain.policy import Policy
from bot.domain.roles import may_steer
from bot.render.text import user as mention
from bot.slack_gateway import SlackGateway
from storage.incidents import IncidentRepo


class Refused(Exception):
    """An action the user may not take, or that makes no sense now; the message says why."""


async def _authorise(
    user: str,
    incident: Incident,
    action: str,
    severities: set[Severity],
    *,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> None:
    approvers: set[str] = set()
    for severity in severities:
        approvers |= await slack.expand_approvers(policy.approvers(severity))
    if may_steer(user, incident, policy, approvers):
        return
    labels = "/".join(s.label for s in sorted(severities))
    who = [f"the commander ({mention(incident.commander)})"]
    agent = policy.agent(incident.agent_id)
    if agent is not None:
        who.append(f"the agent owner ({mention(agent.owner)})")
    message = f"Only {', '.join(who)} or a {labels} approver can {action} {incident.ref}."
    await incidents.append(
        incident.number,
        [
            TimelineEntry(
                at=clock(),
                actor=user,
                kind=TimelineKind.REFUSED,
                text=f"Refused: {mention(user)} tried to {action}",
                data={"action": action},
            )
        ],
    )
    raise Refused(message)


async def change_severity(
    number: int,
    severity: Severity,
    reason: str,
    *,
    actor: str,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> Incident:
    current = await _current(number, incidents)
    await _authorise(
        actor,
        current,
        "change the severity of",
        {current.severity, severity},
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    async with incidents.edit(number) as edit:
        before = edit.incident
        if not before.status.is_open:
            raise Refused(f"{before.ref} is {before.status}; its severity no longer changes.")
        if before.severity is severity:
            raise Refused(f"{before.ref} is already {severity.label}.")
        now = clock()
        changed = before.model_copy(update={"severity": severity, "updated_at": now})
        await edit.save(
            changed,
            [
                TimelineEntry(
                    at=now,
                    actor=actor,
                    kind=TimelineKind.SEVERITY_CHANGED,
                    text=f"Severity {before.severity.label} → {severity.label}: {reason}",
                    data={"from": before.severity.value, "to": severity.value, "reason": reason},
                )
            ],
        )
    return changed


async def close_incident(
    number: int,
    note: str,
    *,
    actor: str,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> Incident:
    """Closing with a learning note; the lifecycle decides whether it may close now."""
    current = await _current(number, incidents)
    await _authorise(
        actor,
        current,
        "close",
        {current.severity},
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    async with incidents.edit(number) as edit:
        moved = transition(
            edit.incident, IncidentStatus.CLOSED, actor=actor, at=clock(), reason=note
        )
        await edit.save(moved.incident, [moved.entry])
    return moved.incident


async def _current(number: int, incidents: IncidentRepo) -> Incident:
    incident = await incidents.get(number)
    if incident is None:
        raise Refused(f"There is no incident INC-{number}.")
    return incident
