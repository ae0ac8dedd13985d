"""Who may do what. Pure: approver user groups arrive already expanded to user ids."""

from collections.abc import Collection

from bot.domain.models import Incident
from bot.domain.policy import Policy


def responsible(incident: Incident, policy: Policy) -> set[str]:
    """The commander and the agent owner."""
    people = {incident.commander}
    agent = policy.agent(incident.agent_id)
    if agent is not None:
        people.add(agent.owner)
    return people


def may_steer(user: str, incident: Incident, policy: Policy, approvers: Collection[str]) -> bool:
    """Change severity or close: the commander, the agent owner, or an approver of a severity
    involved (`approvers` holds the expanded approvers of those severities)."""
    return user in responsible(incident, policy) or user in approvers
