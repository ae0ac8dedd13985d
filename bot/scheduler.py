"""Timing for work that must survive restarts. The database holds what is due (rows); the
APScheduler jobs are only rebuilt from those rows, at start-up and as rows change."""

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.domain.enums import DeliveryState
from bot.domain.models import Delivery

logger = logging.getLogger(__name__)


class DeliveryRunner:
    """Runs kill-switch attempts when they are due; one job per delivery id."""

    def __init__(
        self,
        attempt: Callable[[str], Awaitable[Delivery | None]],
        on_change: Callable[[Delivery], Awaitable[None]],
    ) -> None:
        self._attempt = attempt
        self._on_change = on_change
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            # A job that is late (Rein was busy or down) still runs, once.
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )

    def start(self, pending: list[Delivery]) -> None:
        self._scheduler.start()
        for delivery in pending:
            self.schedule(delivery.id, delivery.next_attempt_at)
        if pending:
            logger.info("resuming %d pending kill-switch deliveries", len(pending))

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def schedule(self, delivery_id: str, at: datetime | None = None) -> None:
        self._scheduler.add_job(
            self._run,
            "date",
            run_date=at or datetime.now(UTC),
            args=[delivery_id],
            id=f"delivery:{delivery_id}",
            replace_existing=True,
        )

    async def _run(self, delivery_id: str) -> None:
        after = await self._attempt(delivery_id)
        if after is None:
            return
        if after.state is DeliveryState.PENDING:
            self.schedule(after.id, after.next_attempt_at)
        try:
            await self._on_change(after)
        except Exception:  # showing the outcome must never stop the next attempt
            logger.exception("could not show the outcome of delivery %s", delivery_id)
