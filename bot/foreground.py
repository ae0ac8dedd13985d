"""Acknowledgements first: work Rein does after answering Slack steps aside while Slack
requests are still waiting for their answer.

Slack gives Rein three seconds to acknowledge a request. During a burst of declarations each
acknowledgement is cheap (the incident is committed), but what follows each one (the room's
Slack calls, the card, reminder planning, refreshes) is several times that work, on the same
event loop and the same database connection. Without priorities the acknowledgements queue
behind it; with them, that work follows a moment later."""

import asyncio
import contextlib
from collections.abc import Iterator

# While requests wait for their answer, after-ack steps start one at a time, one each
# PATIENCE seconds: a sustained burst still lets them advance, slowly, and once Slack is
# answered they all go.
PATIENCE = 0.05


class Foreground:
    def __init__(self, patience: float = PATIENCE) -> None:
        self.patience = patience
        self._unanswered = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._turns = asyncio.Lock()

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Around the handling of one Slack request, until its acknowledgement is ready."""
        self._unanswered += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._unanswered -= 1
            if not self._unanswered:
                self._quiet.set()

    async def step_aside(self) -> None:
        """Return at once when no Slack request awaits its answer; otherwise when none does
        or after this step's turn (one step per PATIENCE seconds) has come."""
        if not self._unanswered:
            return
        async with self._turns:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), self.patience)
