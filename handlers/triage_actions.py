"""The triage message's buttons: **Declare incident** and **Dismiss**."""

from typing import Any

from bot.context import Rein
from bot.domain.lifecycle import IllegalTransition
from bot.render.replies import declared_text, report
from bot.render.triage import DECLARE_ALERT, DISMISS_ALERT
from bot.services.alerts import declare_alert, dismiss_alert, show_triage
from bot.services.authorise import Refused
from bot.services.declare import open_room
from handlers.payloads import user_and_channel


def register(app: Any, rein: Rein) -> None:
    async def show(number: int) -> list[str]:
        return await show_triage(
            number, incidents=rein.incidents, slack=rein.slack, policy=rein.policy
        )

    @app.action(DECLARE_ALERT)
    async def declare_clicked(ack: Any, body: dict, action: dict) -> None:
        user, channel = user_and_channel(body)
        try:
            # Committed before Slack hears back: a second click finds it declared.
            declared = await declare_alert(
                int(action["value"]), actor=user, incidents=rein.incidents, clock=rein.clock
            )
        except (Refused, IllegalTransition) as exc:
            await ack()
            await rein.slack.tell(user, str(exc), channel)
            return
        await ack()
        room = await open_room(declared, origin_channel=channel, **rein.room)
        problems = [*room.problems, *await show(declared.number)]
        done = f"{declared_text(room.incident)} You are its commander."
        await rein.slack.tell(user, report(done, problems), channel)

    @app.action(DISMISS_ALERT)
    async def dismiss_clicked(ack: Any, body: dict, action: dict) -> None:
        user, channel = user_and_channel(body)
        try:
            dismissed = await dismiss_alert(int(action["value"]), actor=user, **rein.steering)
        except (Refused, IllegalTransition) as exc:
            await ack()
            await rein.slack.tell(user, str(exc), channel)
            return
        await ack()
        problems = await show(dismissed.number)
        if problems:
            await rein.slack.tell(user, report(f"{dismissed.ref} is dismissed.", problems), channel)
