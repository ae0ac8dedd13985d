"""Signed deliveries to an agent's kill switch (PRODUCT.md: "Kill-switch delivery")."""

import hashlib
import hmac
import json
from dataclasses import dataclass

import aiohttp

from bot.domain.containment import DELIVERY_TIMEOUT
from bot.domain.models import Delivery, format_ref
from storage.db import to_db_time


def delivery_body(delivery: Delivery) -> bytes:
    """The same bytes on every attempt: only the timestamp header changes."""
    return json.dumps(
        {
            "delivery_id": delivery.id,
            "event": delivery.event.value,
            "incident": format_ref(delivery.incident),
            "agent": delivery.agent_id,
            "actions": [a.value for a in delivery.actions],
            "mode": delivery.mode.value,
            "issued_at": to_db_time(delivery.issued_at),
        },
        separators=(",", ":"),
    ).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` and the hex HMAC-SHA256 of `v1:{timestamp}:{body}` under the agent's secret."""
    message = f"v1:{timestamp}:".encode() + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Outcome:
    confirmed: bool
    detail: str  # what happened, for the timeline and the card


class KillSwitchClient:
    """One HTTP session for every delivery; started and closed with Rein."""

    def __init__(self, timeout_seconds: float = DELIVERY_TIMEOUT.total_seconds()) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def send(self, url: str, secret: str, body: bytes, timestamp: int) -> Outcome:
        headers = {
            "Content-Type": "application/json",
            "X-Rein-Timestamp": str(timestamp),
            "X-Rein-Signature": signature(secret, timestamp, body),
        }
        seconds = self._timeout.total
        try:
            async with self._http().post(url, data=body, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return Outcome(True, f"HTTP {response.status}")
                return Outcome(False, f"HTTP {response.status}")
        except TimeoutError:
            return Outcome(False, f"no answer within {seconds:g} s")
        except aiohttp.ClientResponseError as exc:
            return Outcome(False, f"invalid HTTP response ({exc.message or exc.status})")
        except aiohttp.ClientError as exc:
            return Outcome(False, f"unreachable ({type(exc).__name__})")
