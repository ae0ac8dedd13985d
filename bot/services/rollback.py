"""The rollback ledger and recovery ("rollback is a product feature").

- Anyone may report an affected record: a person in Slack, or an agent platform through the
  API (`api:<token name>`). The same system and record on an incident is one item: a second
  report changes nothing and answers with the item already there (`duplicate`).
- Marking items restored, accepted, not reversible (or pending again, a correction) is a
  decision about the business: the commander, the agent owner or an approver of the
  incident's severity. Accepted, not reversible and pending again need a reason.
- **Mark recovered** (`contained → recovered`) needs every item restored, accepted or not
  reversible, or the commander accepting the pending rest, with a reason: those items are
  then marked accepted with it. Otherwise the refusal says what is still pending.

Every change is an update of the items plus one `rollback` timeline entry (the history: who,
when, which items, from which status), committed together. Nothing is ever deleted."""

from dataclasses import dataclass

from bot.clock import Clock
from bot.domain.enums import IncidentStatus, RollbackStatus, TimelineKind
from bot.domain.lifecycle import IllegalTransition, allowed, refusal, transition
from bot.domain.models import REASON_MAX, Incident, LedgerCounts, TimelineEntry
from bot.domain.policy import Policy
from bot.domain.rollback import (
    STATUS_LABELS,
    LedgerError,
    NewRollbackItem,
    RollbackItem,
    Selection,
    check_reason,
    progress,
    ranges,
)
from bot.render.rollback import PENDING_NAMED, pending_refusal
from bot.render.text import user as mention
from bot.services.authorise import Refused, authorised_incident, still_authorised
from bot.slack_gateway import SlackGateway
from storage.incidents import IncidentRepo
from storage.rollback import RollbackRepo

MARK_ACTION = "mark the rollback ledger of"
RECOVER_ACTION = "mark the recovery of"
ACCEPT_ACTION = "accept the pending records of"


@dataclass(frozen=True)
class Added:
    incident: Incident
    item: RollbackItem
    duplicate: bool


@dataclass(frozen=True)
class Marked:
    incident: Incident
    status: RollbackStatus
    changed: tuple[int, ...]  # the items whose status changed
    already: int  # items named that had this status already
    counts: LedgerCounts  # the ledger afterwards


@dataclass(frozen=True)
class Recovered:
    incident: Incident
    counts: LedgerCounts  # the ledger afterwards
    accepted: int  # pending items the commander accepted as they are


class LedgerPending(Refused):
    """Mark recovered while records are pending; the message names them and the ways on."""

    def __init__(
        self,
        incident: Incident,
        counts: LedgerCounts,
        named: list[RollbackItem],
        ids: list[int],
    ) -> None:
        super().__init__(pending_refusal(incident, counts, named, ids))
        self.incident = incident
        self.counts = counts
        self.named = named
        self.ids = ids


def _final(incident: Incident) -> None:
    if not incident.status.is_open:
        raise Refused(
            f"{incident.ref} is {incident.status}; its rollback ledger is final. "
            "Record anything new on a new incident."
        )


async def add_item(
    number: int,
    new: NewRollbackItem,
    *,
    actor: str,
    incidents: IncidentRepo,
    rollback: RollbackRepo,
    clock: Clock,
) -> Added:
    """Raises `UnknownIncident` (a LookupError) for a number that is not an incident."""
    async with incidents.edit(number) as edit:
        _final(edit.incident)
        now = clock()
        item, created = await rollback.add_in(edit.conn, number, new, actor=actor, at=now)
        if created:
            await edit.append(
                [
                    TimelineEntry(
                        at=now,
                        actor=actor,
                        kind=TimelineKind.ROLLBACK,
                        text=f"Affected record #{item.id} added: {item.system} {item.record}",
                        data={
                            "action": "added",
                            "item": item.id,
                            "system": item.system,
                            "record": item.record,
                        },
                    )
                ]
            )
    return Added(edit.incident, item, duplicate=not created)


async def mark_items(
    number: int,
    selection: Selection,
    status: RollbackStatus,
    reason: str,
    *,
    actor: str,
    incidents: IncidentRepo,
    rollback: RollbackRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> Marked:
    try:
        reason = check_reason(status, reason)
    except LedgerError as exc:
        raise Refused(str(exc)) from None
    authorised = await authorised_incident(
        number,
        actor,
        MARK_ACTION,
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    async with incidents.edit(number) as edit:
        incident = edit.incident
        _final(incident)
        still_authorised(actor, authorised, incident, policy)
        ids = None if selection.all_pending else selection.ids
        found = await rollback.statuses_in(edit.conn, number, ids)
        if ids is not None and len(found) < len(ids):
            counts = await rollback.counts_in(edit.conn, number)
            missing = sorted(set(ids) - set(found))
            has = f"it has items #1–#{counts.total}" if counts.total else "it has no items yet"
            raise Refused(
                f"{incident.ref}'s ledger has no {ranges(missing, 200)}: {has}. Nothing was marked."
            )
        if selection.all_pending and not found:
            raise Refused(f"Nothing is pending in {incident.ref}'s rollback ledger.")
        changed = [i for i, was in found.items() if was is not status]
        if changed:
            now = clock()
            await rollback.mark_in(
                edit.conn, number, changed, status, reason or None, actor=actor, at=now
            )
            previous: dict[str, list[int]] = {}
            for i in changed:
                previous.setdefault(found[i].value, []).append(i)
            label = STATUS_LABELS[status]
            text = f"{len(changed)} ledger item(s) marked {label}: {ranges(changed, 400)}"
            await edit.append(
                [
                    TimelineEntry(
                        at=now,
                        actor=actor,
                        kind=TimelineKind.ROLLBACK,
                        text=f"{text} — {reason}" if reason else text,
                        data={
                            "action": "marked",
                            "status": status.value,
                            "reason": reason,
                            "items": changed,
                            "previous": previous,
                        },
                    )
                ]
            )
        counts = await rollback.counts_in(edit.conn, number)
    return Marked(incident, status, tuple(changed), len(found) - len(changed), counts)


async def mark_recovered(
    number: int,
    *,
    actor: str,
    accept: str | None = None,
    incidents: IncidentRepo,
    rollback: RollbackRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> Recovered:
    """`accept`: the commander's reason for accepting the records still pending as they are."""
    current = await authorised_incident(
        number,
        actor,
        RECOVER_ACTION,
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    if accept is not None:
        accept = accept.strip()
        if not accept:
            raise Refused("Say why the pending records are accepted as they are.")
        if len(accept) > REASON_MAX:
            raise Refused(f"Keep the reason to {REASON_MAX} characters.")
        if actor != current.commander:
            await _refuse_acceptance(actor, current, incidents, clock)
    async with incidents.edit(number) as edit:
        incident = edit.incident
        still_authorised(actor, current, incident, policy)
        if not allowed(incident, IncidentStatus.RECOVERED):
            raise IllegalTransition(refusal(incident, IncidentStatus.RECOVERED))
        counts = await rollback.counts_in(edit.conn, number)
        now = clock()
        entries: list[TimelineEntry] = []
        accepted: list[int] = []
        if counts.pending:
            pending = await rollback.statuses_in(edit.conn, number, None)
            if accept is None or actor != incident.commander:
                named = await rollback.pending_in(edit.conn, number, PENDING_NAMED)
                raise LedgerPending(incident, counts, named, list(pending))
            accepted = list(pending)
            await rollback.mark_in(
                edit.conn,
                number,
                accepted,
                RollbackStatus.ACCEPTED,
                accept,
                actor=actor,
                at=now,
            )
            entries.append(
                TimelineEntry(
                    at=now,
                    actor=actor,
                    kind=TimelineKind.ROLLBACK,
                    text=f"The commander accepted the {len(accepted)} pending ledger item(s) as "
                    f"they are ({ranges(accepted, 400)}) — {accept}",
                    data={
                        "action": "accepted_remainder",
                        "status": RollbackStatus.ACCEPTED.value,
                        "reason": accept,
                        "items": accepted,
                        "previous": {RollbackStatus.PENDING.value: accepted},
                    },
                )
            )
            counts = counts.model_copy(update={"accepted": counts.accepted + len(accepted)})
        moved = transition(
            incident,
            IncidentStatus.RECOVERED,
            actor=actor,
            at=now,
            reason=_why_recovered(counts, len(accepted), accept),
        )
        entry = moved.entry.model_copy(
            update={
                "data": {
                    **moved.entry.data,
                    "ledger": {**counts.model_dump(), "pending": counts.pending},
                    "accepted_remainder": accepted,
                }
            }
        )
        await edit.save(moved.incident, [*entries, entry])
    return Recovered(moved.incident, counts, len(accepted))


def _why_recovered(counts: LedgerCounts, accepted: int, accept: str | None) -> str:
    if accepted:
        return (
            f"the commander accepted the last {accepted} pending record(s) as they are: "
            f"{accept} (ledger: {progress(counts)})"
        )
    if counts.total == 0:
        why = "no affected records in the rollback ledger"
    else:
        why = f"rollback complete: {progress(counts)}"
    return f"{why} — {accept}" if accept else why


async def _refuse_acceptance(
    actor: str, incident: Incident, incidents: IncidentRepo, clock: Clock
) -> None:
    """Accepting the rest is the commander's call alone; the refusal is recorded."""
    await incidents.append(
        incident.number,
        [
            TimelineEntry(
                at=clock(),
                actor=actor,
                kind=TimelineKind.REFUSED,
                text=f"Refused: {mention(actor)} tried to accept the pending records as they are",
                data={"action": ACCEPT_ACTION},
            )
        ],
    )
    raise Refused(
        f"Only the commander ({mention(incident.commander)}) can accept the pending records of "
        f"{incident.ref} as they are."
    )
