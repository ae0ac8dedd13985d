"""Slack's requests to Rein, signed with the real scheme and sent over HTTP."""

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
TEAM = {"id": "T0000TEAM", "domain": "test-team"}


def slack_encoded(text: str) -> str:
    """A slash command's text as Slack sends it: exactly `&`, `<` and `>` HTML-encoded."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sign(body: str, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackSender:
    """Posts to Rein's /slack/events as Slack would. `fake` supplies response_urls."""

    def __init__(self, url: str, fake: Any, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.fake = fake
        self.session = session
        self._n = 0

    def _next(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n:06d}"

    async def post(
        self,
        body: str,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        sent = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature or sign(body, ts),
            **(headers or {}),
        }
        async with self.session.post(self.url, data=body.encode(), headers=sent) as response:
            return response.status, await response.text()

    async def command(
        self,
        text: str,
        *,
        user: str = "U0ALICE",
        channel: str = "CGENERAL",
        name: str = "/incident",
    ) -> tuple[int, Any]:
        """`text` as typed; it is sent encoded, as Slack does."""
        form = {
            "token": "legacy-verification-token",
            "team_id": TEAM["id"],
            "team_domain": TEAM["domain"],
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": name,
            "text": slack_encoded(text),
            "api_app_id": "A0REIN",
            "response_url": self.fake.response_url(self._next("cmd")),
            "trigger_id": self._next("trigger."),
        }
        status, body = await self.post(urlencode(form))
        return status, _json_or_text(body)

    async def interaction(self, payload: dict[str, Any]) -> tuple[int, Any]:
        status, body = await self.post(urlencode({"payload": json.dumps(payload)}))
        return status, _json_or_text(body)

    async def click(
        self,
        action_id: str,
        value: str,
        *,
        user: str = "U0ALICE",
        channel: str = "CGENERAL",
        message_ts: str = "1700000000.000100",
    ) -> tuple[int, Any]:
        return await self.interaction(
            {
                "type": "block_actions",
                "team": TEAM,
                "user": {"id": user, "username": user.lower(), "team_id": TEAM["id"]},
                "api_app_id": "A0REIN",
                "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
                "trigger_id": self._next("trigger."),
                "channel": {"id": channel, "name": "general"},
                "response_url": self.fake.response_url(self._next("act")),
                "actions": [
                    {
                        "type": "button",
                        "action_id": action_id,
                        "block_id": "card_actions",
                        "value": value,
                        "action_ts": str(time.time()),
                    }
                ],
            }
        )

    async def submit(
        self, view: dict[str, Any], values: dict[str, dict[str, Any]], *, user: str = "U0ALICE"
    ) -> tuple[int, Any]:
        """Submit a view Rein opened, with `values` as Slack's state (block_id -> action state)."""
        submitted = {
            **view,
            "id": view.get("id") or self._next("V"),
            "hash": "1700000000.abc",
            "state": {"values": {block: {"value": state} for block, state in values.items()}},
        }
        return await self.interaction(
            {
                "type": "view_submission",
                "team": TEAM,
                "user": {"id": user, "username": user.lower(), "team_id": TEAM["id"]},
                "api_app_id": "A0REIN",
                "trigger_id": self._next("trigger."),
                "view": submitted,
            }
        )


def _json_or_text(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body


def typed(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def chosen(value: str | None) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value} if value else None}


def ticked(*values: str) -> dict[str, Any]:
    return {"type": "checkboxes", "selected_options": [{"value": v} for v in values]}


def number(value: str) -> dict[str, Any]:
    return {"type": "number_input", "value": value}
