"""What stands between Slack's HTTP requests and Rein's listeners: a signature check that also
refuses a replayed request, and Events API deduplication by `event_id`.

Bolt verifies signatures but accepts the same signed request again and again for five minutes;
the `SignatureGuard` remembers every verified signature (an HMAC over timestamp and body, so one
per request) until its timestamp leaves that window. Slack signs each delivery when it sends it,
retries included: a retry carries a fresh `X-Slack-Request-Timestamp`, so a new signature, and
is never taken for a replay. Retries are told apart by `event_id` instead (`EventOnce`): the
first delivery runs the listeners, later ones are acknowledged and dropped. Socket Mode has no
signatures; `EventOnce` serves both modes.
"""

import heapq
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from slack_bolt.response import BoltResponse
from slack_sdk.signature import Clock, SignatureVerifier

logger = logging.getLogger(__name__)

# slack_sdk's verifier refuses a timestamp more than five minutes from now, either way.
SIGNATURE_WINDOW_SECONDS = 5 * 60
# Slack retries a failed event three times, the last about six minutes after the first
# delivery (at once, after a minute, after five); an hour is a wide margin.
EVENT_MEMORY_SECONDS = 60 * 60
# Bounds on memory. Only verified requests are remembered, so nobody without the signing
# secret can fill them; when full, the entry nearest its end is forgotten first.
SIGNATURE_CAPACITY = 100_000
EVENT_CAPACITY = 100_000
# Where the deduplicating middleware leaves a way to forget the event it let through, for a
# delivery that then fails with a 5xx (Slack retries it, and the retry must run).
RELEASE_EVENT = "rein_release_event"

BAD_TIMESTAMP = "invalid or missing Slack signature timestamp"
BAD_SIGNATURE = "invalid Slack request signature"
REPLAYED = "this Slack request was already received"


class _WallClock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SignatureGuard:
    """Refuses a Slack request that is unsigned, forged, stale or replayed (HTTP mode)."""

    def __init__(
        self,
        signing_secret: str,
        *,
        capacity: int = SIGNATURE_CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = SignatureVerifier(signing_secret, clock=_WallClock(clock))
        self._clock = clock
        self._capacity = capacity
        self._seen: dict[str, float] = {}  # signature -> when it may be forgotten
        self._ends: list[tuple[float, str]] = []  # the same, soonest first

    def __len__(self) -> int:
        return len(self._seen)

    def refusal(self, body: bytes, timestamp: str | None, signature: str | None) -> str | None:
        """Why the request is refused, or None when it is Slack's and new (now remembered)."""
        # Only ASCII digits: str.isdigit() also takes "²", which int() does not.
        if not timestamp or not (timestamp.isascii() and timestamp.isdigit()):
            return BAD_TIMESTAMP
        if not signature:
            return BAD_SIGNATURE
        try:
            text = body.decode("utf-8")  # what Slack signs; anything else is not Slack's
        except UnicodeDecodeError:
            return BAD_SIGNATURE
        if not self._verifier.is_valid(text, timestamp, signature):
            return BAD_SIGNATURE
        # Valid: `signature` is exactly the one computed, so it is a canonical key.
        self._prune()
        if signature in self._seen:
            return REPLAYED
        if len(self._seen) >= self._capacity:
            self._drop_soonest()
        # After this, the verifier itself refuses the timestamp as stale.
        end = int(timestamp) + SIGNATURE_WINDOW_SECONDS + 1
        self._seen[signature] = end
        heapq.heappush(self._ends, (end, signature))
        return None

    def forget(self, signature: str) -> None:
        """The request failed before Rein did anything with it: its retry may be identical."""
        self._seen.pop(signature, None)

    def _prune(self) -> None:
        now = self._clock()
        while self._ends and self._ends[0][0] <= now:
            self._drop_soonest()

    def _drop_soonest(self) -> None:
        while self._ends:
            end, signature = heapq.heappop(self._ends)
            if self._seen.get(signature) == end:  # not forgotten or re-remembered since
                del self._seen[signature]
                return


class EventOnce:
    """Each Events API `event_id` runs Rein's listeners once, however often it is delivered."""

    def __init__(
        self,
        *,
        memory_seconds: float = EVENT_MEMORY_SECONDS,
        capacity: int = EVENT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._memory = memory_seconds
        self._capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # event_id -> end, oldest first

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, event_id: str) -> bool:
        """True for the first delivery of `event_id`: it runs. Check and mark are one step."""
        now = self._clock()
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if event_id in self._seen:
            return False
        if len(self._seen) >= self._capacity:
            self._seen.popitem(last=False)
        self._seen[event_id] = now + self._memory
        return True

    def release(self, event_id: str) -> None:
        self._seen.pop(event_id, None)

    def middleware(self) -> Callable[..., Awaitable[BoltResponse | None]]:
        """A Bolt global middleware. It runs after Bolt's own (signature, url_verification,
        authorization), so only a genuine delivery is claimed, before any listener."""

        async def once_per_event(
            body: dict[str, Any], context: Any, next_: Callable[[], Awaitable[Any]]
        ) -> BoltResponse | None:
            event_id = body.get("event_id") if body.get("type") == "event_callback" else None
            if not isinstance(event_id, str) or not event_id:
                return await next_()
            if not self.claim(event_id):
                logger.info("event %s delivered again: acknowledged, not run again", event_id)
                return BoltResponse(status=200, body="")
            context[RELEASE_EVENT] = partial(self.release, event_id)
            return await next_()

        return once_per_event
