"""Changing an incident's severity and closing it: authorised and recorded. The caller then
publishes the change with `refresh_surfaces` (after answering Slack, which allows 3 s)."""

from bot.clock import Clock
from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.domain.gate import close_refusal
from bot.domain.lifecycle import transition
from bot.domain.models import Incident, TimelineEntry
from bot.domain.policy import Policy
from bot.services.authorise import Refused, authorised_incident, still_authorised
from bot.slack_gateway import SlackGateway
from storage.incidents import IncidentRepo
from storage.restarts import RestartRepo


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
    authorised = await authorised_incident(
        number,
        actor,
        "change the severity of",
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
        also={severity},
    )
    async with incidents.edit(number) as edit:
        before = edit.incident
        if not before.status.is_open:
            raise Refused(f"{before.ref} is {before.status}; its severity no longer changes.")
        if before.severity is severity:
            raise Refused(f"{before.ref} is already {severity.label}.")
        still_authorised(actor, authorised, before, policy, also={severity})
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
    authorised = await authorised_incident(
        number,
        actor,
        "close",
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    async with incidents.edit(number) as edit:
        still_authorised(actor, authorised, edit.incident, policy)
        moved = transition(
            edit.incident, IncidentStatus.CLOSED, actor=actor, at=clock(), reason=note
        )
        # An incident whose agent was contained closes through its restart gate's decision.
        needs = close_refusal(edit.incident, await RestartRepo.get_in(edit.conn, number))
        if needs is not None:
            raise Refused(needs)
        await edit.save(moved.incident, [moved.entry])
    return moved.incident
