"""Making outside text safe for Slack, and cutting it to Slack's limits with a visible '…'."""

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from slack_sdk.models.blocks import Block

ELLIPSIS = "…"
MESSAGE_BLOCKS_MAX = 50
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
HEADER_TEXT_MAX = 150
BUTTON_TEXT_MAX = 75
TOPIC_MAX = 250
FALLBACK_TEXT_MAX = 3000

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
WORD_JOINER = "\u2060"


def clean(text: str) -> str:
    """Drop control and bidi-override characters that could disguise what a reader sees."""
    return _CONTROL.sub("", text)


def escape(text: str) -> str:
    """Outside text for mrkdwn: `<!channel>`, `<@U…>` and `<http://x|y>` show as typed, and a
    bare @channel cannot notify anyone."""
    text = clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub(lambda m: f"@{WORD_JOINER}{m.group(1)}", text)


def unescape(text: str) -> str:
    """The inverse of Slack's encoding of `&`, `<` and `>`, the only three it encodes (in a
    slash command's text, and in Rein's own mrkdwn shown as plain text). `&amp;` goes last:
    `&amp;lt;` is the typed `&lt;`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def cut(text: str, limit: int) -> str:
    """At most `limit` characters; a cut text ends with a visible '…' and no half entity."""
    if len(text) <= limit:
        return text
    head = _PARTIAL_ENTITY.sub("", text[: limit - len(ELLIPSIS)])
    return head + ELLIPSIS


def mrkdwn(text: str, limit: int = SECTION_TEXT_MAX) -> str:
    return cut(escape(text), limit)


def plain(text: str, limit: int) -> str:
    """For plain_text objects, which Slack never parses for mentions or links."""
    return cut(" ".join(clean(text).split()), limit)


def user(user_id: str) -> str:
    return f"<@{user_id}>" if _SLACK_USER.match(user_id) else escape(user_id)


_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")


def approver(approver_id: str) -> str:
    """A user (`<@U…>`) or a user group (`<!subteam^S…>`), as Slack shows them."""
    if _SLACK_GROUP.match(approver_id):
        return f"<!subteam^{approver_id}>"
    return user(approver_id)


def channel(channel_id: str | None) -> str:
    if channel_id and _SLACK_CHANNEL.match(channel_id):
        return f"<#{channel_id}>"
    return "no channel"


def date(at: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """Shown in each reader's own time zone; the fallback is UTC."""
    fallback = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{fmt}|{fallback}>"


def age(since: datetime, now: datetime) -> str:
    elapsed = max(now - since, timedelta(0))
    minutes = int(elapsed.total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    return f"{hours // 24}d {hours % 24}h"


def to_dicts(blocks: Sequence[Block], limit: int = MESSAGE_BLOCKS_MAX) -> list[dict]:
    """Serialise through slack_sdk's models, which raise on any Block Kit limit."""
    if len(blocks) > limit:
        raise ValueError(f"{len(blocks)} blocks, more than Slack's {limit}")
    return [block.to_dict() for block in blocks]
