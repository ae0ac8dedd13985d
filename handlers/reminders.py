"""The update reminder's snooze buttons (15, 30, 60 minutes). Its **Post update** button is
the card's (handlers/status_updates.py)."""

import re
from collections.abc import Awaitable, Callable
from typing import Any

from bot.context import Rein
from bot.render.reminders import SNOOZE, snoozed_blocks, snoozed_text
from bot.services.authorise import Refused
from handlers.payloads import user_and_channel

Ack = Callable[..., Awaitable[None]]
_SNOOZE = re.compile(f"^{re.escape(SNOOZE)}:([0-9]+)$")


def register(app: Any, rein: Rein) -> None:
    @app.action(_SNOOZE)
    async def snooze_clicked(ack: Ack, body: dict, action: dict, respond: Any) -> None:
        await ack()
        user, channel = user_and_channel(body)
        match = _SNOOZE.match(action["action_id"])
        assert match is not None and rein.reminders is not None
        minutes = int(match.group(1))
        try:
            incident, until = await rein.reminders.snooze(int(action["value"]), minutes, actor=user)
        except (Refused, ValueError) as exc:
            await rein.slack.tell(user, str(exc), channel)
            return
        # The reminder shows who snoozed it until when; Post update stays.
        await respond(
            text=snoozed_text(incident, until),
            blocks=snoozed_blocks(incident, user, minutes, until),
            replace_original=True,
        )
