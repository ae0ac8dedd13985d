"""The five-part postmortem: its form, saving drafts, completing it, and sharing its document.

- Anyone may open the form and save a draft (learning is never gated): the person who knows
  what the agent did is often not the commander. Every save is a `postmortem` timeline entry
  with the parts it changed, committed with the row.
- Completing it is a decision (it ends the review and moves the incident `recovered →
  postmortem`, in the same transaction): the commander, the agent owner or an approver of the
  incident's severity. A refusal is recorded. A completed postmortem is final.
- Two completions racing (a double click) store one: the second finds it completed and
  changes nothing. A draft saved over a newer one (someone else saved after the form opened)
  is refused with who saved when, never silently overwritten.
- Sharing uploads the Markdown document `rein export INC-n --format md` writes into the
  incident channel (commander, agent owner or approver: it carries the evidence whole).
- The restart gate reads part four through `guardrail_changes`."""

from dataclasses import dataclass

from bot.clock import Clock
from bot.domain.enums import IncidentStatus, TimelineKind
from bot.domain.evidence import EvidenceBrief, EvidenceItem
from bot.domain.lifecycle import IllegalTransition, allowed, refusal, transition
from bot.domain.models import Incident, LedgerCounts, PostmortemCard, TimelineEntry
from bot.domain.policy import Policy
from bot.domain.postmortem import (
    Postmortem,
    PostmortemParts,
    card,
    draft_agent_path,
    save_entry,
    why_not_writable,
)
from bot.domain.rollback import RollbackItem
from bot.export import incident_markdown
from bot.render import postmortem as render
from bot.services.authorise import Refused, authorise, authorised_incident, known_incident
from bot.services.streamed_export import open_record
from bot.slack_gateway import SlackGateway, SlackProblem
from storage.evidence import EvidenceRepo
from storage.incidents import IncidentRepo
from storage.postmortems import PostmortemRepo
from storage.rollback import RollbackRepo
from storage.timeline import TimelineRepo

COMPLETE_ACTION = "complete the postmortem of"
SHARE_ACTION = "share the postmortem of"
EVIDENCE_DRAFTED = 50  # the newest items the agent's path is drafted from


@dataclass(frozen=True)
class Form:
    incident: Incident
    postmortem: Postmortem | None
    initial: PostmortemParts  # what the form shows: the draft, the agent's path drafted if empty
    drafted: bool  # the agent's path was drafted by Rein for this form
    card: PostmortemCard
    ledger: LedgerCounts


@dataclass(frozen=True)
class Saved:
    incident: Incident  # as it is after the save
    postmortem: Postmortem
    changed: tuple[str, ...]  # part keys this save changed
    completed_now: bool  # this save completed it (and moved the incident)
    already_completed: bool  # it was completed before: nothing was stored
    unchanged: bool  # a draft saved again as it was (a double click): nothing was stored


class StaleDraft(Refused):
    """Someone saved the postmortem after this form opened; nothing was overwritten."""


@dataclass(frozen=True)
class IncidentRecord:
    """Everything the incident's document holds (the export and Share postmortem)."""

    incident: Incident
    timeline: list[TimelineEntry]
    evidence: list[EvidenceItem]
    rollback: list[RollbackItem]
    postmortem: Postmortem | None

    def markdown(self) -> str:
        return incident_markdown(
            self.incident,
            self.timeline,
            evidence=self.evidence,
            rollback=self.rollback,
            postmortem=self.postmortem,
        )


@dataclass(frozen=True)
class Shared:
    incident: Incident
    postmortem: Postmortem
    channel: str
    file_id: str
    size: int  # bytes uploaded


async def postmortem_card(
    number: int, *, postmortems: PostmortemRepo, policy: Policy
) -> PostmortemCard | None:
    """The card's postmortem line: state, and the deadline once recovered."""
    found = await postmortems.for_card(number)
    if found is None:
        return None
    severity, recovered_at, postmortem = found
    return card(postmortem, severity=severity, recovered_at=recovered_at, policy=policy)


async def guardrail_changes(number: int, *, postmortems: PostmortemRepo) -> str | None:
    """Part four of the *completed* postmortem, for the restart gate: what changes in the
    workflow before the agent runs again. None while there is none or it is still a draft
    (`PostmortemRepo.get` has the draft)."""
    postmortem = await postmortems.get(number)
    if postmortem is None or not postmortem.completed:
        return None
    return postmortem.parts.guardrail_changes


async def postmortem_form(
    number: int,
    *,
    incidents: IncidentRepo,
    postmortems: PostmortemRepo,
    evidence: EvidenceRepo,
    rollback: RollbackRepo,
    policy: Policy,
) -> Form:
    """What the form opens with, or a refusal that says what must happen first. An empty
    agent's path is drafted from the timeline and evidence (not stored until saved)."""
    incident = await known_incident(number, incidents)
    postmortem = await postmortems.get(number)
    why = why_not_writable(incident, postmortem)
    if why is not None:
        raise Refused(why)
    ledger = await rollback.counts(number)
    initial = postmortem.parts if postmortem else PostmortemParts()
    drafted = not initial.agent_path
    if drafted:
        briefs: list[EvidenceBrief] = await evidence.latest(number, EVIDENCE_DRAFTED)
        path = draft_agent_path(incident, await incidents.timeline(number), briefs, ledger)
        initial = initial.model_copy(update={"agent_path": path})
    shown = await postmortem_card(number, postmortems=postmortems, policy=policy)
    return Form(incident, postmortem, initial, drafted, shown or PostmortemCard(), ledger)


async def save_postmortem(
    number: int,
    parts: PostmortemParts,
    *,
    complete: bool,
    revision: int | None,
    actor: str,
    incidents: IncidentRepo,
    postmortems: PostmortemRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> Saved:
    """Save a draft, or complete it. `revision`: the one the form was opened at (0: none yet;
    None: do not check). `parts` are checked already (`parse_parts`)."""
    current = await known_incident(number, incidents)
    if complete:
        await authorise(
            actor,
            current,
            COMPLETE_ACTION,
            incidents=incidents,
            slack=slack,
            policy=policy,
            clock=clock,
        )
    async with incidents.edit(number) as edit:
        incident = edit.incident
        before = await postmortems.get_in(edit.conn, number)
        if before is not None and before.completed:
            return Saved(incident, before, (), False, already_completed=True, unchanged=False)
        why = why_not_writable(incident, before)
        if why is not None:
            raise Refused(why)
        changed = parts.changed_from(before.parts if before else None)
        if before is None and not changed:
            raise Refused("Nothing to save yet: write at least one part.")
        if before is not None and not complete and not changed:
            return Saved(incident, before, (), False, already_completed=False, unchanged=True)
        if before is not None and revision is not None and before.revision != revision and changed:
            raise StaleDraft(render.stale_text(incident, before))
        moves = complete and incident.status is not IncidentStatus.POSTMORTEM
        if moves and not allowed(incident, IncidentStatus.POSTMORTEM):
            raise IllegalTransition(refusal(incident, IncidentStatus.POSTMORTEM))
        now = clock()
        saved = await postmortems.save_in(
            edit.conn, number, parts, complete=complete, actor=actor, at=now
        )
        entries = [save_entry(saved, changed, actor=actor, at=now)]
        if moves:
            moved = transition(
                incident,
                IncidentStatus.POSTMORTEM,
                actor=actor,
                at=now,
                reason=f"postmortem completed (revision {saved.revision})",
            )
            after = moved.incident
            entries.append(moved.entry)
        else:
            after = incident.model_copy(update={"updated_at": now})
        await edit.save(after, entries)
    return Saved(after, saved, tuple(changed), complete, False, False)


async def load_record(
    number: int,
    *,
    incidents: IncidentRepo,
    evidence: EvidenceRepo,
    rollback: RollbackRepo,
    postmortems: PostmortemRepo,
) -> IncidentRecord | None:
    """The whole record in memory: the reference that the streamed document (`rein export`,
    the API, Share postmortem: `open_record`) is checked against, byte for byte."""
    incident = await incidents.get(number)
    if incident is None:
        return None
    return IncidentRecord(
        incident=incident,
        timeline=await incidents.timeline(number),
        evidence=await evidence.for_incident(number),
        rollback=await rollback.for_incident(number),
        postmortem=await postmortems.get(number),
    )


async def share_postmortem(
    number: int,
    *,
    actor: str,
    incidents: IncidentRepo,
    evidence: EvidenceRepo,
    rollback: RollbackRepo,
    postmortems: PostmortemRepo,
    timeline: TimelineRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> Shared:
    """Upload the postmortem document into the incident channel as a Markdown file. A Slack
    failure is recorded on the timeline and refused with what Slack said."""
    await authorised_incident(
        number,
        actor,
        SHARE_ACTION,
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    # Written a batch of rows at a time: a long timeline never holds the event loop for long.
    record = await open_record(
        number,
        incidents=incidents,
        timeline=timeline,
        evidence=evidence,
        rollback=rollback,
        postmortems=postmortems,
    )
    assert record is not None  # known_incident found it; incidents are never deleted
    incident, postmortem = record.incident, record.postmortem
    if postmortem is None:
        raise Refused(f"{incident.ref} has no postmortem yet: Start postmortem first.")
    channel = incident.channel_id or incident.card_channel
    if channel is None:
        raise Refused(
            f"{incident.ref} has no channel to share it in; "
            f"`rein export {incident.ref} --format md` writes the same document."
        )
    content = "".join([piece async for piece in record.markdown()]).encode("utf-8")
    try:
        file_id = await slack.upload_file(
            channel,
            filename=render.filename(incident),
            title=render.file_title(incident, postmortem),
            content=content,
            comment=render.share_comment(incident, postmortem, actor),
        )
    except SlackProblem as problem:
        await incidents.append(
            number,
            [
                TimelineEntry(
                    at=clock(),
                    actor="rein",
                    kind=TimelineKind.SLACK_PROBLEM,
                    text=f"{problem} (sharing the postmortem)",
                )
            ],
        )
        raise Refused(str(problem)) from problem
    return Shared(incident, postmortem, channel, file_id, len(content))
