"""Keeping what Slack shows about an incident current: card, digest and channel topic."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from bot.domain.enums import TimelineKind
from bot.domain.models import CardFacts, Incident, RestartCard
from bot.domain.policy import Policy
from bot.render import incident as render
from bot.render.evidence import LATEST_SHOWN
from bot.services.channel_status import SurfaceDesk
from bot.services.postmortem import postmortem_card
from bot.slack_gateway import SlackGateway, SlackProblem
from storage.deliveries import DeliveryRepo
from storage.evidence import EvidenceRepo
from storage.incidents import IncidentRepo
from storage.postmortems import PostmortemRepo
from storage.restarts import RestartRepo
from storage.rollback import RollbackRepo
from storage.timeline import TimelineRepo

logger = logging.getLogger(__name__)

FactsLoader = Callable[[int], Awaitable[CardFacts]]


async def load_card_facts(
    number: int,
    *,
    deliveries: DeliveryRepo,
    evidence: EvidenceRepo,
    rollback: RollbackRepo,
    timeline: TimelineRepo | None = None,
    postmortems: PostmortemRepo | None = None,
    policy: Policy | None = None,
    restarts: RestartRepo | None = None,
) -> CardFacts:
    """Everything the card shows besides the incident row. Capabilities add their part here."""
    return CardFacts(
        deliveries=tuple(await deliveries.for_incident(number)),
        evidence_kinds=await evidence.kinds(number),
        evidence_count=await evidence.count(number),
        evidence_latest=tuple(await evidence.latest(number, LATEST_SHOWN)),
        ledger=await rollback.counts(number),
        latest_update=(
            await timeline.latest(number, TimelineKind.STATUS_UPDATE) if timeline else None
        ),
        postmortem=(
            await postmortem_card(number, postmortems=postmortems, policy=policy)
            if postmortems is not None and policy is not None
            else None
        ),
        restart=await _restart_card(number, restarts) if restarts is not None else None,
    )


async def _restart_card(number: int, restarts: RestartRepo) -> RestartCard | None:
    restart = await restarts.get(number)
    return restart.card() if restart is not None else None


async def refresh_surfaces(
    incident: Incident,
    *,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    announce_channel: str | None,
    facts: FactsLoader,
    locks: Mapping[int, asyncio.Lock],
    desk: SurfaceDesk | None = None,
) -> list[str]:
    """Edit the card and the digest, set the topic; return what could not be done. Refreshes
    of one incident run one at a time and each renders the state stored when it runs, so a
    slow edit never overwrites a newer one with older news. With `desk` (bot/services/
    channel_status.py), requests that queue behind a refresh share one more refresh, the topic
    is set only when it changes, and a one-line channel status follows, debounced."""
    number = incident.number
    ticket = desk.ask(number) if desk else 0
    async with locks[incident.number]:
        if desk is not None and (shared := desk.covered(number, ticket)) is not None:
            return shared  # a refresh that started after this request showed it already
        covers = desk.begin(number) if desk else 0
        incident = await incidents.get(incident.number) or incident
        agent = policy.agent(incident.agent_id)
        text = render.headline(incident)
        problems: list[str] = []
        shown = await facts(incident.number)
        if incident.card_channel and incident.card_ts:
            card = render.card_blocks(incident, agent, shown)
            await _edit(problems, slack.update(incident.card_channel, incident.card_ts, text, card))
        if announce_channel and incident.digest_ts:
            digest = render.digest_blocks(incident, agent, shown.latest_update)
            await _edit(problems, slack.update(announce_channel, incident.digest_ts, text, digest))
        topic = render.topic(incident)
        if incident.channel_id and (desk is None or desk.topic_is_new(number, topic)):
            before = len(problems)
            await _edit(problems, slack.set_topic(incident.channel_id, topic))
            if desk is not None and len(problems) == before:
                desk.topic_set(number, topic)
        if desk is not None:
            desk.done(number, covers, problems)
            desk.changed(number)
        return problems


async def _edit(problems: list[str], call: Awaitable[None]) -> None:
    try:
        await call
    except SlackProblem as problem:
        problems.append(str(problem))


SUPERSEDED = "This card is out of date: the current one is further down the channel."


async def repost_card(
    number: int,
    *,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    facts: FactsLoader,
    locks: Mapping[int, asyncio.Lock],
) -> Incident:
    """Post the card again at the bottom of the incident channel and make it the live one;
    the old card loses its buttons so nobody acts on stale state. Under the incident's card
    lock, like `refresh_surfaces`: two reposts at once would each supersede the same old card
    and leave one new card live but forgotten, and a refresh that read the old card's ts would
    bring it back to life after it was superseded."""
    async with locks[number]:
        incident = await incidents.get(number)
        if incident is None:
            raise LookupError(f"There is no incident INC-{number}.")
        channel = incident.channel_id or incident.card_channel
        if channel is None:
            raise LookupError(f"{incident.ref} has no channel to post its card in.")
        agent = policy.agent(incident.agent_id)
        card = render.card_blocks(incident, agent, await facts(number))
        ts = await slack.post(channel, render.headline(incident), card)
        await incidents.set_slack_refs(number, card_channel=channel, card_ts=ts)
        if incident.card_channel and incident.card_ts:
            try:
                await slack.update(
                    incident.card_channel, incident.card_ts, SUPERSEDED, render.superseded_blocks()
                )
            except SlackProblem:
                logger.warning("could not mark the old card of %s as superseded", incident.ref)
    return incident.model_copy(update={"card_channel": channel, "card_ts": ts})
