"""The one error handler: log with the traceback, and never leave the user in silence."""

import logging
from typing import Any

from bot.context import Rein

logger = logging.getLogger(__name__)

SORRY = (
    "Rein hit an unexpected error and could not finish that. What was already recorded "
    "stays recorded; the details are in Rein's log. Try again, or tell whoever runs Rein."
)


def register(app: Any, rein: Rein) -> None:
    @app.error
    async def on_error(error: Exception, body: dict, respond: Any) -> None:
        logger.error("unhandled error in a Slack listener", exc_info=error)
        user = (body.get("user") or {}).get("id") or body.get("user_id")
        channel = (body.get("channel") or {}).get("id") or body.get("channel_id")
        try:
            if body.get("response_url") or body.get("response_urls"):
                await respond(text=SORRY, response_type="ephemeral", replace_original=False)
            elif user:
                await rein.slack.tell(user, SORRY, channel)
        except Exception:
            logger.exception("could not tell the user about the error")
