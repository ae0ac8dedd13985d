"""Card refreshes asked for by the HTTP API, done after it answered.

An agent platform may post a burst of items (a prompt, its tool calls, the output…) in a
second; each would otherwise edit the card, the digest and the topic, and wait for Slack (and
its rate limits) before answering. Here one refresh per incident runs at a time and runs once
more if more was recorded while it was writing, so a burst costs two refreshes. Each is a task
kept here, so shutdown waits for it (`drain`) before the database closes."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.domain.models import Incident

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0

Refresh = Callable[[Incident], Awaitable[list[str]]]


class CardRefresher:
    def __init__(self, refresh: Refresh) -> None:
        self._refresh = refresh
        self._tasks: set[asyncio.Task[None]] = set()
        self._again: dict[int, bool] = {}

    def request(self, incident: Incident) -> None:
        number = incident.number
        if number in self._again:
            self._again[number] = True
            return
        self._again[number] = False
        task = asyncio.get_running_loop().create_task(self._until_current(incident))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _until_current(self, incident: Incident) -> None:
        try:
            while True:
                self._again[incident.number] = False
                # `refresh_surfaces` renders the state stored when it runs, not `incident`.
                for problem in await self._refresh(incident):
                    logger.warning("%s: %s", incident.ref, problem)
                if not self._again[incident.number]:
                    return
        except Exception:
            logger.exception("could not refresh the card of %s", incident.ref)
        finally:
            del self._again[incident.number]

    async def drain(self, timeout: float = SHUTDOWN_GRACE_SECONDS) -> None:
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
        if late:
            logger.warning("%d card refreshes were still running at shutdown", len(late))
