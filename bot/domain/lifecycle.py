"""The incident lifecycle: one transition table, and refusals that say what must happen first."""

from dataclasses import dataclass
from datetime import datetime

from bot.domain.enums import IncidentStatus as S
from bot.domain.enums import Severity, TimelineKind
from bot.domain.models import Incident, TimelineEntry

# (from, to) -> severities for which the move is allowed (None: any severity).
TRANSITIONS: dict[tuple[S, S], frozenset[Severity] | None] = {
    (S.TRIAGE, S.DECLARED): None,
    (S.TRIAGE, S.DISMISSED): None,
    (S.DECLARED, S.CONTAINED): None,
    (S.DECLARED, S.CLOSED): frozenset({Severity.SEV4}),
    (S.CONTAINED, S.RECOVERED): None,
    (S.RECOVERED, S.POSTMORTEM): None,
    (S.RECOVERED, S.CLOSED): frozenset({Severity.SEV3, Severity.SEV4}),
    (S.POSTMORTEM, S.CLOSED): None,
}

# What each status needs to have happened, in the words a responder acts on.
_HOW_TO_REACH: dict[S, str] = {
    S.DECLARED: "declare it (Declare incident)",
    S.CONTAINED: "approve containment (Approve containment)",
    S.RECOVERED: "restore or accept the affected records and mark it recovered (Mark recovered)",
    S.POSTMORTEM: "complete the postmortem (Start postmortem)",
}


_ORDER = (S.TRIAGE, S.DECLARED, S.CONTAINED, S.RECOVERED, S.POSTMORTEM)


class IllegalTransition(Exception):
    """A move the lifecycle does not allow; the message tells the user what must happen first."""


@dataclass(frozen=True)
class Transition:
    incident: Incident
    entry: TimelineEntry


def allowed(incident: Incident, to: S) -> bool:
    if (incident.status, to) not in TRANSITIONS:
        return False
    severities = TRANSITIONS[(incident.status, to)]
    return severities is None or incident.severity in severities


def transition(
    incident: Incident, to: S, *, actor: str, at: datetime, reason: str = ""
) -> Transition:
    if not allowed(incident, to):
        raise IllegalTransition(refusal(incident, to))
    moved = incident.model_copy(update={"status": to, "updated_at": at})
    text = f"{incident.ref} moved from {incident.status} to {to}"
    if reason:
        text += f": {reason}"
    entry = TimelineEntry(
        at=at,
        actor=actor,
        kind=TimelineKind.STATUS_CHANGED,
        text=text,
        data={"from": incident.status.value, "to": to.value, "reason": reason},
    )
    return Transition(moved, entry)


def refusal(incident: Incident, to: S) -> str:
    """Why `incident` cannot move to `to`, and what must happen first."""
    ref, now = incident.ref, incident.status
    if now is to:
        return f"{ref} is already {now}."
    if not now.is_open:
        return f"{ref} is {now}; nothing moves it any more. Declare a new incident instead."
    if to is S.TRIAGE:
        return f"{ref} is {now}; an incident never goes back to triage."
    if to is S.DISMISSED:
        return (
            f"Only an alert still in triage can be dismissed; {ref} is {now}. "
            "Close it through its lifecycle instead."
        )
    if to is S.DECLARED:
        return f"{ref} has been declared already; it is {now}."
    if to is S.CLOSED:
        return _closing_refusal(incident)
    if _ORDER.index(to) < _ORDER.index(now):
        return f"{ref} is {now} already; it cannot go back to {to}."
    return f"{ref} is {now}; first {_HOW_TO_REACH[_ORDER[_ORDER.index(now) + 1]]}."


def _closing_refusal(incident: Incident) -> str:
    ref, now, sev = incident.ref, incident.status, incident.severity
    if now is S.TRIAGE:
        return f"{ref} is still in triage: declare it, or dismiss it as a false alarm."
    if now is S.DECLARED:
        return (
            f"{ref} is a {sev.label}; only a SEV-4 closes straight from declared. "
            f"First {_HOW_TO_REACH[S.CONTAINED]}."
        )
    if now is S.CONTAINED:
        return f"{ref} is contained but not recovered; first {_HOW_TO_REACH[S.RECOVERED]}."
    # recovered, SEV-1/2
    return (
        f"{ref} is a {sev.label}; it needs its postmortem before it closes: "
        f"{_HOW_TO_REACH[S.POSTMORTEM]}."
    )


_ORDER = (S.TRIAGE, S.DECLARED, S.CONTAINED, S.RECOVERED, S.POSTMORTEM)
