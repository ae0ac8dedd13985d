"""Keeping what Slack shows about an incident current: card, digest and channel topic."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from bot.domain.models import CardFacts, Incident
from bot.domain.policy import Policy
from bot.render import incident as render
from bot.slack_gateway import SlackGateway, SlackProblem
from storage.deliveries import DeliveryRepo
from storage.incidents import IncidentRepo

logger = logging.getLogger(__name__)

FactsLoader = Callable[[int], Awaitable[CardFacts]]


async def load_card_facts(number: int, *, deliveries: DeliveryRepo) -> CardFacts:
    """Everything the card shows besides the incident row. Capabilities add their part here."""
    return CardFacts(deliveries=tuple(await deliveries.for_incident(number)))


async def refresh_surfaces(
    incident: Incident,
    *,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    announce_channel: str | None,
    facts: FactsLoader,
    locks: Mapping[int, asyncio.Lock],
) -> list[str]:
    """Edit the card and the digest, set the topic; return what could not be done. Refreshes
    of one incident run one at a time and each renders the state stored when it runs, so a
    slow edit never overwrites a newer one with older news."""
    async with locks[incident.number]:
        incident = await incidents.get(incident.number) or incident
        agent = policy.agent(incident.agent_id)
        text = render.headline(incident)
        problems: list[str] = []
        if incident.card_channel and incident.card_ts:
            card = render.card_blocks(incident, agent, await facts(incident.number))
            await _edit(problems, slack.update(incident.card_channel, incident.card_ts, text, card))
        if announce_channel and incident.digest_ts:
            digest = render.digest_blocks(incident, agent)
            await _edit(problems, slack.update(announce_channel, incident.digest_ts, text, digest))
        if incident.channel_id:
            await _edit(problems, slack.set_topic(incident.channel_id, render.topic(incident)))
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
) -> Incident:
    """Post the card again at the bottom of the incident channel and make it the live one;
    the old card loses its buttons so nobody acts on stale state."""
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
