"""Timing for work that must survive restarts. The database holds what is due (rows); the
APScheduler jobs are only rebuilt from those rows, at start-up and as rows change."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.domain.enums import DeliveryState
from bot.domain.models import Delivery

logger = logging.getLogger(__name__)


class DeliveryRunner:
    """Runs kill-switch attempts when they are due."""

    def __init__(
        self,
        attempt: Callable[[str], Awaitable[Delivery | None]],
        on_change: Callable[[Delivery], Awaitable[None]],
    ) -> None:
        self._attempt = attempt
        self._on_change = on_change
        self._running: set[asyncio.Task] = set()
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            # A job that is late (Rein was busy or down) still runs, once.
            job_defaults={"misfire_grace_time": None, "coalesce": True},
        )

    def start(self, pending: list[Delivery]) -> None:
        self._scheduler.start()
        for delivery in pending:
            self.schedule(delivery.id, delivery.attempts, delivery.next_attempt_at)
        if pending:
            logger.info("resuming %d pending kill-switch deliveries", len(pending))

    async def stop(self, grace_seconds: float) -> None:
        """Let attempts under way finish (their outcome is a row to save), then stop."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if self._running:
            _, late = await asyncio.wait(self._running, timeout=grace_seconds)
            if late:
                logger.warning("%d kill-switch attempts cut short by shutdown", len(late))

    def schedule(
        self, delivery_id: str, attempts_made: int = 0, at: datetime | None = None
    ) -> None:
        """One job per attempt: the next attempt never waits on the previous one's
        aftermath (showing it in Slack), and scheduling the same attempt twice is one job."""
        self._scheduler.add_job(
            self._run,
            "date",
            run_date=at or datetime.now(UTC),
            args=[delivery_id],
            id=f"delivery:{delivery_id}:{attempts_made}",
            replace_existing=True,
        )

    async def _run(self, delivery_id: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            after = await self._attempt(delivery_id)
            if after is None:
                return
            if after.state is DeliveryState.PENDING:
                self.schedule(after.id, after.attempts, after.next_attempt_at)
            try:
                await self._on_change(after)
            except Exception:  # showing the outcome must never stop the next attempt
                logger.exception("could not show the outcome of delivery %s", delivery_id)
        finally:
            self._running.discard(task)
