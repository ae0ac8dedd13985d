"""Timing for work that must survive restarts. The database holds what is due (rows); the
APScheduler jobs are only rebuilt from those rows, at start-up and as rows change."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.clock import Clock, utc_now
from bot.domain.enums import DeliveryState
from bot.domain.models import Delivery
from bot.domain.reminders import Reminder, ReminderState

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
        await _wind_down(self._scheduler, self._running, grace_seconds, "kill-switch attempts")

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


REMINDERS_AT_ONCE = 8  # sends under way at once: a burst of due reminders queues here


class ReminderRunner:
    """Sends reminders when they are due. One job per live reminder row, armed at start-up
    from the rows and again whenever a row changes (`arm`, `disarm`); a job only names the
    row, and `fire` claims the row before it sends anything.

    Due times are Rein's clock (`clock`, injectable); the jobs run on the machine's. With the
    production clock the two agree; with a test's controllable clock a job is armed at the
    same distance from now as its row is from the clock's now, and `rearm` re-arms every job
    after the test moves the clock."""

    def __init__(
        self,
        fire: Callable[[int], Awaitable[None]],
        clock: Clock = utc_now,
        at_once: int = REMINDERS_AT_ONCE,
    ) -> None:
        self._fire = fire
        self._clock = clock
        self._slots = asyncio.Semaphore(at_once)
        self._running: set[asyncio.Task] = set()
        self._armed: set[int] = set()
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            # A job that is late (Rein was busy or down) still runs, once.
            job_defaults={"misfire_grace_time": None, "coalesce": True},
        )

    def start(self, live: Iterable[Reminder]) -> None:
        count = 0
        for reminder in live:
            self.arm(reminder)
            count += 1
        self._scheduler.start()
        if count:
            logger.info("armed %d pending reminders", count)

    async def stop(self, grace_seconds: float) -> None:
        """Let sends under way finish (their outcome is a row to save), then stop."""
        await _wind_down(self._scheduler, self._running, grace_seconds, "reminder sends")

    @property
    def armed(self) -> frozenset[int]:
        return frozenset(self._armed)

    def arm(self, reminder: Reminder) -> None:
        """(Re)arm the job of a pending reminder; any other state drops its job."""
        if reminder.state is not ReminderState.PENDING:
            self.disarm(reminder.id)
            return
        wait = max(reminder.fires_at - self._clock(), timedelta(0))
        self._scheduler.add_job(
            self._run,
            "date",
            run_date=datetime.now(UTC) + wait,
            args=[reminder.id],
            id=_job_id(reminder.id),
            replace_existing=True,
        )
        self._armed.add(reminder.id)

    def arm_in(self, reminder_id: int, wait: timedelta) -> None:
        """Try a reminder again after `wait` (its row could not be read or claimed)."""
        self._scheduler.add_job(
            self._run,
            "date",
            run_date=datetime.now(UTC) + wait,
            args=[reminder_id],
            id=_job_id(reminder_id),
            replace_existing=True,
        )
        self._armed.add(reminder_id)

    def disarm(self, reminder_id: int) -> None:
        self._armed.discard(reminder_id)
        try:
            self._scheduler.remove_job(_job_id(reminder_id))
        except JobLookupError:
            pass

    def rearm(self, live: Iterable[Reminder]) -> None:
        """Rebuild every job from the rows, as at start-up."""
        for reminder_id in list(self._armed):
            self.disarm(reminder_id)
        for reminder in live:
            self.arm(reminder)

    async def _run(self, reminder_id: int) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        self._armed.discard(reminder_id)
        try:
            async with self._slots:
                await self._fire(reminder_id)
        except Exception:  # one reminder's trouble must not stop the others
            logger.exception("reminder %s could not be handled", reminder_id)
        finally:
            self._running.discard(task)


async def _wind_down(
    scheduler: AsyncIOScheduler, running: set[asyncio.Task], grace_seconds: float, what: str
) -> None:
    """APScheduler's shutdown cancels the jobs it is running, whatever `wait` says: pause it
    first (no new job starts), let the jobs under way finish, then shut it down."""
    if not scheduler.running:
        return
    scheduler.pause()
    await asyncio.sleep(0)  # a job task created just before the pause registers itself
    if running:
        _, late = await asyncio.wait(set(running), timeout=grace_seconds)
        if late:
            logger.warning("%d %s cut short by shutdown", len(late), what)
    scheduler.shutdown(wait=False)


def _job_id(reminder_id: int) -> str:
    return f"reminder:{reminder_id}"
