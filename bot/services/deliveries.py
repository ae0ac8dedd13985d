"""Kill-switch delivery attempts: each attempt's outcome is saved with its timeline entry."""

from collections.abc import Mapping, Sequence
from datetime import timedelta

from bot.clock import Clock
from bot.domain.containment import RETRY_DELAYS, retry_delay
from bot.domain.enums import DeliveryState, TimelineKind
from bot.domain.models import Delivery, TimelineEntry
from bot.domain.policy import Policy
from bot.killswitch import KillSwitchClient, delivery_body
from bot.render.text import user as mention
from bot.services.authorise import Refused, authorise
from bot.slack_gateway import SlackGateway
from storage.deliveries import DeliveryRepo
from storage.incidents import IncidentRepo


async def attempt_delivery(
    delivery_id: str,
    *,
    deliveries: DeliveryRepo,
    policy: Policy,
    sender: KillSwitchClient,
    secrets: Mapping[str, str],
    clock: Clock,
    delays: Sequence[timedelta] = RETRY_DELAYS,
) -> Delivery | None:
    """One attempt. Returns the saved outcome, or None when there was nothing to do (already
    confirmed, given up, or changed meanwhile by a manual retry)."""
    delivery = await deliveries.get(delivery_id)
    if delivery is None or delivery.state is not DeliveryState.PENDING:
        return None
    agent = policy.agent(delivery.agent_id)
    kill_switch = agent.kill_switch if agent else None
    secret = secrets.get(delivery.agent_id)
    attempt = delivery.attempts + 1
    if kill_switch is None or secret is None:
        outcome_ok, detail = False, "the agent has no kill switch configured any more"
    else:
        outcome = await sender.send(
            str(kill_switch.url), secret, delivery_body(delivery), int(clock().timestamp())
        )
        outcome_ok, detail = outcome.confirmed, outcome.detail
    now = clock()
    what = delivery.event.value.replace("_", " ")
    if outcome_ok:
        after = delivery.model_copy(
            update={
                "state": DeliveryState.CONFIRMED,
                "attempts": attempt,
                "next_attempt_at": None,
                "last_error": None,
                "confirmed_at": now,
                "updated_at": now,
            }
        )
        text = f"Kill switch confirmed the {what} delivery ({detail}, attempt {attempt})"
    else:
        delay = retry_delay(attempt, delays) if kill_switch and secret else None
        if delay is not None:
            after = delivery.model_copy(
                update={
                    "attempts": attempt,
                    "next_attempt_at": now + delay,
                    "last_error": detail,
                    "updated_at": now,
                }
            )
            text = (
                f"Kill switch attempt {attempt} of {len(delays) + 1} failed: {detail}; "
                f"retrying in {_seconds(delay)}"
            )
        else:
            after = delivery.model_copy(
                update={
                    "state": DeliveryState.UNCONFIRMED,
                    "attempts": attempt,
                    "next_attempt_at": None,
                    "last_error": detail,
                    "updated_at": now,
                }
            )
            text = (
                f"NOT CONFIRMED: the kill switch did not confirm the {what} after {attempt} "
                f"attempts (last: {detail}). The autonomy API answers {delivery.mode.value}."
            )
    entry = TimelineEntry(
        at=now,
        actor="rein",
        kind=TimelineKind.DELIVERY,
        text=text,
        data={
            "delivery_id": delivery.id,
            "attempt": attempt,
            "state": after.state.value,
            "detail": detail,
        },
    )
    return after if await deliveries.record(delivery, after, [entry]) else None


async def retry_delivery(
    delivery_id: str,
    *,
    actor: str,
    deliveries: DeliveryRepo,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> Delivery:
    """A person asks for another round of attempts for a delivery that was not confirmed."""
    delivery = await deliveries.get(delivery_id)
    if delivery is None:
        raise Refused("That delivery no longer exists.")
    incident = await incidents.get(delivery.incident)
    assert incident is not None
    await authorise(
        actor,
        incident,
        "retry the kill-switch delivery of",
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    if delivery.state is not DeliveryState.UNCONFIRMED:
        raise Refused(f"That delivery is {delivery.state.value}; there is nothing to retry.")
    now = clock()
    after = delivery.model_copy(
        update={
            "state": DeliveryState.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "updated_at": now,
        }
    )
    entry = TimelineEntry(
        at=now,
        actor=actor,
        kind=TimelineKind.DELIVERY,
        text=f"{mention(actor)} asked Rein to retry the kill-switch delivery",
        data={"delivery_id": delivery.id, "state": "pending", "retry": True},
    )
    if not await deliveries.record(delivery, after, [entry]):
        raise Refused("That delivery changed meanwhile; look at the card again.")
    return after


def _seconds(delay: timedelta) -> str:
    return f"{int(delay.total_seconds())} s"
