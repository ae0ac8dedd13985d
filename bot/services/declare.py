"""Declaring an incident: recorded first (and committed before Slack is answered), then the
room is set up: channel, topic, invites, card, pin, digest."""

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bot.clock import Clock
from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.domain.models import Incident, NewIncident, TimelineEntry
from bot.domain.policy import Agent, Policy
from bot.domain.severity import suggest_severity
from bot.foreground import Foreground
from bot.render import incident as render
from bot.render.replies import report, resumed_text
from bot.services.surfaces import FactsLoader
from bot.slack_gateway import SlackGateway, SlackProblem
from storage.incidents import IncidentRepo

logger = logging.getLogger(__name__)
T = TypeVar("T")

DUPLICATE_WINDOW = timedelta(minutes=1)


class UnknownAgent(ValueError):
    def __init__(self, agent_id: str, policy: Policy) -> None:
        known = ", ".join(f"`{a.id}`" for a in policy.agents)
        super().__init__(f"There is no agent `{agent_id}` in the policy file. Agents: {known}.")


class PossibleDuplicate(Exception):
    def __init__(self, existing: Incident) -> None:
        super().__init__(f"You declared {existing.ref} with the same agent and title just now.")
        self.existing = existing


@dataclass(frozen=True)
class Declared:
    incident: Incident
    created: bool  # False when a retried submission found the incident it created before


@dataclass
class Room:
    incident: Incident
    foreground: Foreground
    problems: list[str] = field(default_factory=list)


async def declare(
    new: NewIncident,
    *,
    incidents: IncidentRepo,
    policy: Policy,
    clock: Clock,
    allow_duplicate: bool = True,
) -> Declared:
    if policy.agent(new.agent_id) is None:
        raise UnknownAgent(new.agent_id, policy)
    now = clock()
    if not allow_duplicate:
        recent = await incidents.recent_by_declarer(
            new.declared_by, new.agent_id, new.title, now - DUPLICATE_WINDOW
        )
        if recent is not None:
            raise PossibleDuplicate(recent)
    incident, created = await incidents.create(
        new,
        status=IncidentStatus.DECLARED,
        commander=new.declared_by,
        entry=_declaration_entry(new, now),
    )
    if created:
        logger.info("declared %s (%s, agent %s)", incident.ref, incident.severity, new.agent_id)
    return Declared(incident, created)


def _declaration_entry(new: NewIncident, now: datetime) -> TimelineEntry:
    suggestion = suggest_severity(new.impact)
    data = {
        "severity": new.severity.value,
        "suggested": suggestion.severity.value,
        "suggested_reason": suggestion.reason,
        "impact": new.impact.model_dump(),
        "agent": new.agent_id,
    }
    text = f"Declared {new.severity.label}: {new.title}"
    if new.override_reason:
        data["override_reason"] = new.override_reason
        text += (
            f" (Rein suggested {suggestion.severity.label}; chosen because: {new.override_reason})"
        )
    return TimelineEntry(
        at=now, actor=new.declared_by, kind=TimelineKind.DECLARED, text=text, data=data
    )


async def open_room(
    incident: Incident,
    *,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
    announce_channel: str | None,
    origin_channel: str | None,
    facts: FactsLoader,
    slots: asyncio.Semaphore,
    foreground: Foreground,
    locks: Mapping[int, asyncio.Lock],
) -> Room:
    """Every step is attempted; each failure is recorded on the timeline and reported, and
    none of them undoes the incident. Steps whose Slack references are stored already are
    skipped, so a room whose set-up a stopped Rein cut short is resumed (`resume_rooms`).
    `slots` bounds how many rooms are set up at once and each step first lets the
    acknowledgements under way go (`foreground`), so a burst of declarations is acknowledged
    first and its rooms follow. The card and the digest are posted under the incident's card
    lock, from its stored state, and their references stored at once: a change made
    meanwhile is shown by the refresh that waits for the lock."""
    number = incident.number
    async with slots:
        room = Room(incident, foreground)
        agent = policy.agent(incident.agent_id)
        await _channel(room, agent, incidents=incidents, slack=slack, policy=policy)
        async with locks[number]:
            incident = await incidents.get(number) or room.incident
            card_channel = incident.channel_id or origin_channel
            if card_channel and not incident.card_ts:
                await foreground.step_aside()
                card = render.card_blocks(incident, agent, await facts(number))
                ts = await _step(room, slack.post(card_channel, render.headline(incident), card))
                if ts:
                    refs = {"card_channel": card_channel, "card_ts": ts}
                    await incidents.set_slack_refs(number, **refs)
                    incident = incident.model_copy(update=refs)
                    if incident.channel_id:  # pinned in the incident's own channel only
                        await _step(room, slack.pin(card_channel, ts))
            refs: dict[str, str] = {}
            if announce_channel and not incident.digest_ts:
                digest = render.digest_blocks(incident, agent)
                post = slack.post(announce_channel, render.headline(incident), digest)
                if digest_ts := await _step(room, post):
                    refs["digest_ts"] = digest_ts
            await incidents.room_ready(number, **refs)
            incident = incident.model_copy(update=refs)
        room.incident = incident
        if room.problems:
            entries = [
                TimelineEntry(at=clock(), actor="rein", kind=TimelineKind.SLACK_PROBLEM, text=p)
                for p in room.problems
            ]
            await incidents.append(number, entries)
        return room


async def resume_rooms(
    cut_short: list[Incident], *, triage_channel: str | None, slack: SlackGateway, **room: Any
) -> None:
    """Finish the rooms of incidents declared (and acknowledged) just before Rein stopped,
    and tell each declarer; one that fails is logged and the others still go."""
    for incident in cut_short:
        logger.info("setting up the room of %s, cut short when Rein stopped", incident.ref)
        try:
            opened = await open_room(
                incident,
                origin_channel=incident.triage_channel or triage_channel,
                slack=slack,
                **room,
            )
            if incident.declared_by.startswith(("U", "W")):  # a person, not the API or a rule
                text = report(resumed_text(opened.incident), opened.problems)
                await slack.tell(incident.declared_by, text)
        except SlackProblem:
            logger.warning("could not tell the declarer of %s its room is ready", incident.ref)
        except Exception:
            logger.exception("could not finish the room of %s", incident.ref)


async def _channel(
    room: Room,
    agent: Agent | None,
    *,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
) -> None:
    """Create the channel, then topic and invitations: commander, agent owner and, for SEV-1
    and SEV-2, the severity's approvers (user groups expanded)."""
    incident = room.incident
    channel_id = incident.channel_id
    if channel_id is None:
        await room.foreground.step_aside()
        try:
            channel_id, name = await slack.create_incident_channel(incident.number, incident.title)
        except SlackProblem as problem:
            room.problems.append(f"{problem} The card is posted here instead.")
            return
        # Stored at once: whatever happens next, the incident knows its channel.
        await incidents.set_slack_refs(incident.number, channel_id=channel_id, channel_name=name)
        room.incident = incident = incident.model_copy(
            update={"channel_id": channel_id, "channel_name": name}
        )
    await _step(room, slack.set_topic(channel_id, render.topic(incident)))
    people = {incident.commander} | ({agent.owner} if agent else set())
    if incident.severity in (Severity.SEV1, Severity.SEV2):
        approvers = await _step(room, slack.expand_approvers(policy.approvers(incident.severity)))
        people |= approvers or set()
    await _step(room, slack.invite(channel_id, people))


async def _step(room: Room, call: Awaitable[T]) -> T | None:
    """A Slack step whose failure is reported, not raised."""
    await room.foreground.step_aside()
    try:
        return await call
    except SlackProblem as problem:
        room.problems.append(str(problem))
        return None
