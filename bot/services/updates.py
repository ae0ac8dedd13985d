"""Status updates (the playbook's five prompts) and the timeline as Slack pages.

An update is recorded on the timeline (committed before Slack hears back), then posted in the
incident channel and as a reply in the digest's thread; the caller then edits the digest with
`refresh_surfaces`, which shows the latest update."""

from dataclasses import dataclass

from bot.clock import Clock
from bot.domain.enums import IncidentStatus, TimelineKind
from bot.domain.models import Incident, TimelineEntry
from bot.domain.policy import Policy
from bot.domain.updates import StatusUpdate, update_entry, update_from
from bot.render import updates as render
from bot.services.authorise import (
    Refused,
    authorise,
    authorised_incident,
    known_incident,
    still_authorised,
)
from bot.slack_gateway import SlackGateway, SlackProblem
from storage.incidents import IncidentRepo
from storage.timeline import TimelineRepo

ACTION = "post a status update for"


def _check_open(incident: Incident) -> None:
    if incident.status is IncidentStatus.TRIAGE:
        raise Refused(
            f"{incident.ref} is still in triage: declare it first (Declare incident); "
            "updates are for declared incidents."
        )
    if not incident.status.is_open:
        raise Refused(
            f"{incident.ref} is {incident.status}; its record is final. "
            "Anything learned since belongs in a new incident or the postmortem."
        )


async def update_form(
    number: int,
    *,
    actor: str,
    incidents: IncidentRepo,
    timeline: TimelineRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> tuple[Incident, StatusUpdate | None]:
    """May `actor` post an update now? Checked before the form opens, so nobody writes five
    answers to be refused; returns the incident and its previous update to start from."""
    incident = await known_incident(number, incidents)
    _check_open(incident)
    await authorise(
        actor,
        incident,
        ACTION,
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    previous = await timeline.latest(number, TimelineKind.STATUS_UPDATE)
    return incident, update_from(previous) if previous is not None else None


async def record_update(
    number: int,
    update: StatusUpdate,
    *,
    actor: str,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> tuple[Incident, TimelineEntry]:
    """Authorise (commander, agent owner or an approver of the severity) and record the update
    on the timeline with its five parts; the incident counts as updated."""
    authorised = await authorised_incident(
        number,
        actor,
        ACTION,
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    async with incidents.edit(number) as edit:
        _check_open(edit.incident)
        still_authorised(actor, authorised, edit.incident, policy)
        now = clock()
        changed = edit.incident.model_copy(update={"updated_at": now})
        entry = update_entry(update, actor=actor, at=now)
        await edit.save(changed, [entry])
    return changed, entry


async def publish_update(
    incident: Incident,
    update: StatusUpdate,
    entry: TimelineEntry,
    *,
    incidents: IncidentRepo,
    slack: SlackGateway,
    clock: Clock,
    announce_channel: str | None,
) -> list[str]:
    """Post the update in the incident channel (or where its card is) and reply with it in the
    digest's thread; return what Slack would not do, also recorded on the timeline."""
    text = render.update_text(incident, update)
    blocks = render.update_blocks(incident, update, actor=entry.actor, at=entry.at)
    problems: list[str] = []
    channel = incident.channel_id or incident.card_channel
    try:
        if channel:
            await slack.post(channel, text, blocks)
    except SlackProblem as problem:
        problems.append(str(problem))
    try:
        if announce_channel and incident.digest_ts:
            await slack.reply(announce_channel, incident.digest_ts, text, blocks)
    except SlackProblem as problem:
        problems.append(f"{problem} (the digest's thread)")
    if problems:
        await incidents.append(
            incident.number,
            [
                TimelineEntry(
                    at=clock(), actor="rein", kind=TimelineKind.SLACK_PROBLEM, text=problem
                )
                for problem in problems
            ],
        )
    return problems


PAGE_SIZE = render.TIMELINE_PAGE_SIZE


@dataclass(frozen=True)
class TimelinePage:
    incident: Incident
    entries: list[TimelineEntry]
    page: int  # 1 is the oldest
    pages: int
    first: int  # 1-based position of the first entry shown
    total: int


async def timeline_page(
    number: int,
    page: int | None,
    *,
    incidents: IncidentRepo,
    timeline: TimelineRepo,
    size: int = PAGE_SIZE,
) -> TimelinePage:
    """Page `page` of the timeline, oldest first (None: the latest page). Pages are counted
    from the oldest entry, so a page keeps its entries while the incident goes on."""
    incident = await known_incident(number, incidents)
    extent = await timeline.extent(number)
    total = extent[0]
    pages = max(1, -(-total // size))
    chosen = pages if page is None else min(max(page, 1), pages)
    offset = (chosen - 1) * size
    entries = await timeline.page(number, offset, size, extent)
    return TimelinePage(incident, entries, chosen, pages, offset + 1, total)
