"""Reading one Slack message back, for the timeline. Kept beside SlackGateway, not in it: it
goes through the gateway's AsyncWebClient and names failures with the same SlackProblem."""

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack_gateway import SLACK_FAILURES, SlackGateway, SlackProblem

logger = logging.getLogger(__name__)

READ_ACTION = "read the message"


@dataclass(frozen=True)
class SlackMessage:
    """A message as Slack holds it: `text` in Slack's own markup, not yet escaped for display.
    `author` is the user id, or the bot id of a bot's message."""

    channel: str
    ts: str
    author: str
    text: str
    thread_ts: str | None = None


def message_from(channel: str, raw: dict[str, Any]) -> SlackMessage:
    """From a message object (conversations.history, or a shortcut payload's `message`)."""
    return SlackMessage(
        channel=channel,
        ts=str(raw["ts"]),
        author=str(raw.get("user") or raw.get("bot_id") or "unknown"),
        text=str(raw.get("text") or ""),
        thread_ts=str(raw["thread_ts"]) if raw.get("thread_ts") else None,
    )


def _code(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        data = exc.response.data
        error = data.get("error") if isinstance(data, dict) else None
        return str(error or f"http_{exc.response.status_code}")
    return "unreachable"


async def _messages(client: AsyncWebClient, method: str, **args: Any) -> list[dict[str, Any]]:
    try:
        # The typed methods send form parameters: these read methods do not take JSON bodies.
        if method == "history":
            response = await client.conversations_history(**args)
        else:
            response = await client.conversations_replies(**args)
    except SLACK_FAILURES as exc:
        code = _code(exc)
        logger.warning("Slack conversations.%s failed: %s", method, code)
        raise SlackProblem(READ_ACTION, code) from exc
    messages = response.get("messages")
    return messages if isinstance(messages, list) else []


def _find(messages: list[dict[str, Any]], ts: str) -> dict[str, Any] | None:
    # `latest` + `inclusive` return the newest message at or before `ts`; only an exact
    # match is the message that was pinned.
    return next((m for m in messages if isinstance(m, dict) and m.get("ts") == ts), None)


async def fetch_message(
    slack: SlackGateway, channel: str, ts: str, thread_ts: str | None = None
) -> SlackMessage | None:
    """The message at `ts` in `channel`, or None when Slack has no such message. A thread
    reply is not in conversations.history; conversations.replies with the reply's own ts
    returns it."""
    client = slack.client
    if thread_ts is None or thread_ts == ts:
        history = await _messages(
            client, "history", channel=channel, latest=ts, inclusive=True, limit=1
        )
        found = _find(history, ts)
        if found is not None:
            return message_from(channel, found)
    try:
        replies = await _messages(client, "replies", channel=channel, ts=ts, limit=1)
    except SlackProblem as problem:
        if problem.code in ("thread_not_found", "message_not_found"):
            return None
        raise
    found = _find(replies, ts)
    return message_from(channel, found) if found is not None else None


HISTORY_PAGE = 200
HISTORY_PAGES = 5


async def find_marked(
    slack: SlackGateway, channel: str, block_id: str, oldest: float
) -> str | None:
    """The ts of a message posted in `channel` since `oldest` (Unix seconds) with a block
    whose id is `block_id`, or None. How a reminder whose send was cut short (Rein killed,
    Slack's answer lost) is found before it is posted again."""
    cursor: str | None = None
    for _ in range(HISTORY_PAGES):
        args: dict[str, Any] = {
            "channel": channel,
            "oldest": f"{oldest:.6f}",
            "limit": HISTORY_PAGE,
        }
        if cursor:
            args["cursor"] = cursor
        try:
            response = await slack.client.conversations_history(**args)
        except SLACK_FAILURES as exc:
            code = _code(exc)
            logger.warning("Slack conversations.history failed: %s", code)
            raise SlackProblem(READ_ACTION, code) from exc
        for message in response.get("messages") or []:
            blocks = message.get("blocks") if isinstance(message, dict) else None
            if any(isinstance(b, dict) and b.get("block_id") == block_id for b in blocks or []):
                return str(message["ts"])
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return None
    return None
