"""Per-key debouncing: work runs once things have settled, never twice at once for a key."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.foreground import Foreground

logger = logging.getLogger(__name__)


class Debouncer:
    """`poke(key)` asks for `work(key)`. The work runs after `delay` seconds without another
    poke for that key, and at the latest `max_delay` seconds after the first poke, so a
    steady stream of changes still gets through. One run per key at a time: a poke that falls
    due while its key is running makes one more run right after. `stop` cancels what is
    waiting; `flush` runs it now. With a `foreground`, each run first steps aside for the
    Slack requests awaiting their acknowledgement."""

    def __init__(
        self,
        work: Callable[[int], Awaitable[None]],
        delay: float,
        max_delay: float | None = None,
        foreground: Foreground | None = None,
    ) -> None:
        self._work = work
        self._foreground = foreground
        self._delay = delay
        self._max_delay = max(delay, max_delay if max_delay is not None else 4 * delay)
        self._first: dict[int, float] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._running: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()
        self._stopped = False

    def poke(self, key: int) -> None:
        if self._stopped:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        first = self._first.setdefault(key, now)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        due = min(now + self._delay, first + self._max_delay)
        self._timers[key] = loop.call_at(due, self._due, key)

    @property
    def waiting(self) -> set[int]:
        return set(self._timers) | self._again

    def _due(self, key: int) -> None:
        self._timers.pop(key, None)
        self._first.pop(key, None)
        if key in self._running:
            self._again.add(key)
            return
        self._start(key)

    def _start(self, key: int) -> None:
        task = asyncio.get_running_loop().create_task(self._run(key))
        self._running[key] = task

    async def _run(self, key: int) -> None:
        try:
            if self._foreground is not None:
                await self._foreground.step_aside()
            await self._work(key)
        except Exception:
            logger.exception("debounced work for %s failed", key)
        finally:
            del self._running[key]
            if key in self._again and not self._stopped:
                self._again.discard(key)
                self._start(key)

    async def flush(self, timeout: float) -> None:
        """Run everything waiting now and wait (at most `timeout`) for all runs to end."""
        for key in list(self._timers):
            self._timers.pop(key).cancel()
            self._first.pop(key, None)
            if key in self._running:
                self._again.add(key)
            else:
                self._start(key)
        await self._wait(timeout)

    async def stop(self, timeout: float, *, flush: bool = True) -> None:
        """No more pokes; what is waiting runs now (or, with `flush=False`, is dropped), and
        runs under way may finish within `timeout`."""
        if flush:
            await self.flush(timeout)
        self._stopped = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._first.clear()
        await self._wait(timeout)

    async def _wait(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self._running:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                logger.warning("%d debounced runs still under way", len(self._running))
                return
            await asyncio.wait(set(self._running.values()), timeout=left)
