"""Adding evidence to an incident, from the card's modal, `/incident evidence` and the HTTP API.

Anyone may add evidence (in Slack: any workspace member; through the API: any token holder,
recorded as `api:<token name>`): preserving the trail is never gated. Nothing is ever changed
or deleted; a correction is a new item. The caller then shows it with `refresh_surfaces`."""

from dataclasses import dataclass

from bot.clock import Clock
from bot.domain.evidence import EvidenceItem, NewEvidence
from bot.domain.models import Incident
from storage.evidence import EvidenceRepo
from storage.incidents import IncidentRepo, UnknownIncident


@dataclass(frozen=True)
class Added:
    incident: Incident  # as it was read before the item was added
    item: EvidenceItem


async def add_evidence(
    number: int,
    new: NewEvidence,
    *,
    actor: str,
    incidents: IncidentRepo,
    evidence: EvidenceRepo,
    clock: Clock,
) -> Added:
    """Record `new` (already checked by `new_evidence`) with its timeline entry, committed
    before this returns. `UnknownIncident` when there is no such incident."""
    incident = await incidents.get(number)
    if incident is None:
        raise UnknownIncident(number)
    item = await evidence.add(number, new, added_by=actor, at=clock())
    return Added(incident, item)
