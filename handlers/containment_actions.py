"""Containment on the card: the plan's moves, Approve containment, Retry delivery."""

from typing import Any

from bot.context import Rein
from bot.domain.lifecycle import IllegalTransition
from bot.render.incident import APPROVE_CONTAINMENT, CONTAINMENT_PLAN, PLAN_BLOCK, RETRY_DELIVERY
from bot.services.authorise import Refused
from bot.services.containment import approve_containment, set_plan
from bot.services.deliveries import retry_delivery
from bot.services.surfaces import refresh_surfaces
from handlers.payloads import user_and_channel


def register(app: Any, rein: Rein) -> None:
    @app.action(APPROVE_CONTAINMENT)
    async def approve(ack: Any, body: dict, action: dict) -> None:
        user, channel = user_and_channel(body)
        try:
            # Committed, and the autonomy API already answers `paused`, before Slack hears back.
            contained = await approve_containment(
                int(action["value"]), actor=user, **rein.containment
            )
        except (Refused, IllegalTransition) as exc:
            await ack()
            await rein.slack.tell(user, str(exc), channel)
            return
        await ack()
        if contained.delivery is not None:
            rein.deliver(contained.delivery.id)
        await refresh_surfaces(contained.incident, **rein.surfaces)

    @app.action(CONTAINMENT_PLAN)
    async def plan_changed(ack: Any, body: dict, action: dict) -> None:
        await ack()
        user, channel = user_and_channel(body)
        number = int(action["block_id"].removeprefix(PLAN_BLOCK))
        moves = [option["value"] for option in action.get("selected_options") or []]
        try:
            changed = await set_plan(number, moves, actor=user, **rein.steering)
        except Refused as exc:
            await rein.slack.tell(user, str(exc), channel)
            changed = await rein.incidents.get(number)
        if changed is not None:  # re-render: a refused or normalised plan shows as it stands
            await refresh_surfaces(changed, **rein.surfaces)

    @app.action(RETRY_DELIVERY)
    async def retry(ack: Any, body: dict, action: dict) -> None:
        await ack()
        user, channel = user_and_channel(body)
        try:
            delivery = await retry_delivery(
                action["value"], actor=user, deliveries=rein.deliveries, **rein.steering
            )
        except Refused as exc:
            await rein.slack.tell(user, str(exc), channel)
            return
        rein.deliver(delivery.id)
        incident = await rein.incidents.get(delivery.incident)
        if incident is not None:
            await refresh_surfaces(incident, **rein.surfaces)
