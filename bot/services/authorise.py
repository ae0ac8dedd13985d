"""Who may act on an incident, checked with user groups expanded; refusals are recorded."""

from bot.clock import Clock
from bot.domain.enums import Severity, TimelineKind
from bot.domain.models import Incident, TimelineEntry
from bot.domain.policy import Policy
from bot.domain.roles import may_steer, responsible
from bot.render.text import approver
from bot.render.text import user as mention
from bot.slack_gateway import SlackGateway
from storage.incidents import IncidentRepo


class Refused(Exception):
    """An action the user may not take, or that makes no sense now; the message says why."""


async def known_incident(number: int, incidents: IncidentRepo) -> Incident:
    """The incident, or a refusal that says it does not exist."""
    incident = await incidents.get(number)
    if incident is None:
        raise Refused(f"There is no incident INC-{number}.")
    return incident


async def authorised_incident(
    number: int,
    user: str,
    action: str,
    *,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
    also: set[Severity] | None = None,
) -> Incident:
    """The incident, once `user` is allowed to `action` it (approvers of its severity, and of
    `also`); else a recorded refusal."""
    incident = await known_incident(number, incidents)
    severities = {incident.severity} | (also or set())
    await authorise(
        user,
        incident,
        action,
        severities,
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    return incident


async def authorise(
    user: str,
    incident: Incident,
    action: str,
    severities: set[Severity] | None = None,
    *,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> None:
    """`severities`: whose approvers may act; the incident's own by default."""
    severities = severities if severities is not None else {incident.severity}
    approvers: set[str] = set()
    for severity in severities:
        approvers |= await slack.expand_approvers(policy.approvers(severity))
    if may_steer(user, incident, policy, approvers):
        return
    message = f"Only {who_may(incident, policy, severities)} can {action} {incident.ref}."
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


def still_authorised(
    user: str,
    authorised: Incident,
    current: Incident,
    policy: Policy,
    also: set[Severity] | None = None,
) -> None:
    """Inside the change's transaction: the authority `authorise` found on `authorised` (read
    before the transaction, with user groups expanded through Slack) still holds on `current`.
    Only a severity changed meanwhile can take an approver's authority away; then nothing is
    done and the person is asked to look again (the commander and the agent owner keep theirs
    at every severity)."""
    if user in responsible(current, policy) or current.severity in {
        authorised.severity,
        *(also or ()),
    }:
        return
    raise Refused(
        f"{current.ref} became {current.severity.label} while you acted, so nothing was done. "
        "Look at the card and try again."
    )


APPROVERS_NAMED_MAX = 10


def who_may(incident: Incident, policy: Policy, severities: set[Severity]) -> str:
    """The people a refusal names: commander, agent owner, and the approvers by name."""
    who = [f"the commander ({mention(incident.commander)})"]
    agent = policy.agent(incident.agent_id)
    if agent is not None:
        who.append(f"the agent owner ({mention(agent.owner)})")
    for severity in sorted(severities):
        named = policy.approvers(severity)
        if named:
            who.append(f"a {severity.label} approver ({named_approvers(named)})")
    return ", ".join(who[:-1]) + " or " + who[-1] if len(who) > 1 else who[0]


def named_approvers(named: list[str]) -> str:
    """Approvers as a refusal names them: the first ten, then how many more."""
    shown = ", ".join(approver(a) for a in named[:APPROVERS_NAMED_MAX])
    more = len(named) - APPROVERS_NAMED_MAX
    return f"{shown} and {more} more" if more > 0 else shown
