"""Putting a message on the timeline: the incident chooser (for the shortcut outside an
incident channel) and the private answers. Message text is outside text: always escaped."""

import json
from collections.abc import Sequence

from slack_sdk.models.blocks import (
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.domain.models import Incident
from bot.render import text as t
from bot.render.views import SELECT_OPTIONS_MAX, VALUE
from bot.services.capture import Captured, posted_at
from bot.slack_reads import SlackMessage

ADD_TO_TIMELINE = "add_to_timeline"  # the message shortcut's callback_id (manifest.yml)
CHOOSE_VIEW = "add_to_timeline_choose"
INCIDENT_BLOCK = "incident"
PRIVATE_METADATA_MAX = 3000
PREVIEW_MAX = 1500
ANSWER_PREVIEW_MAX = 300
OPTION_TEXT_MAX = 75

NO_OPEN_INCIDENTS = (
    "There is no open incident to put this message on. Declare one with "
    "`/incident declare`, then use *Add to incident timeline* again."
)


def _utf16_len(text: str) -> int:
    # Slack counts UTF-16 code units; an emoji is two of them.
    return len(text.encode("utf-16-le")) // 2


def message_metadata(message: SlackMessage) -> str:
    """The message for the chooser's private_metadata, within Slack's 3000 characters. A long
    text travels cut (`"cut": true`); the submission reads it whole again."""
    fields = {
        "channel": message.channel,
        "ts": message.ts,
        "author": message.author,
        "thread_ts": message.thread_ts,
    }
    budget = len(message.text)
    while True:
        cut = budget < len(message.text)
        document = json.dumps(
            {**fields, "text": message.text[:budget], "cut": cut}, ensure_ascii=False
        )
        over = _utf16_len(document) - PRIVATE_METADATA_MAX
        if over <= 0:
            return document
        budget = max(0, min(budget, len(message.text)) - over)


def read_metadata(raw: str) -> tuple[SlackMessage, bool]:
    """The message a chooser carried, and whether its text is complete."""
    data = json.loads(raw)
    message = SlackMessage(
        channel=str(data["channel"]),
        ts=str(data["ts"]),
        author=str(data["author"]),
        text=str(data.get("text") or ""),
        thread_ts=str(data["thread_ts"]) if data.get("thread_ts") else None,
    )
    return message, not data.get("cut")


def _quoted(text: str, limit: int) -> str:
    if not text.strip():
        return "_(no text: a file or an attachment only)_"
    lines = t.mrkdwn(text.strip(), limit).splitlines()
    return "\n".join(f">{line}" for line in lines)


def _origin(message: SlackMessage) -> str:
    return f"{t.user(message.author)} in {t.channel(message.channel)}, {_when(message)}"


def _when(message: SlackMessage) -> str:
    try:
        return t.date(posted_at(message.ts))
    except ValueError:
        return "at an unknown time"


def _option(incident: Incident) -> Option:
    label = f"{incident.ref} · {incident.severity.label} · {incident.title}"
    return Option(value=str(incident.number), text=t.plain(label, OPTION_TEXT_MAX))


def choose_incident_modal(incidents: Sequence[Incident], message: SlackMessage) -> dict:
    """Open incidents, newest first; Slack allows 100 options in a static select."""
    shown = incidents[:SELECT_OPTIONS_MAX]
    preview = f"*Message from {_origin(message)}*\n{_quoted(message.text, PREVIEW_MAX)}"
    blocks = [
        SectionBlock(block_id="message", text=t.cut(preview, t.SECTION_TEXT_MAX)),
        InputBlock(
            block_id=INCIDENT_BLOCK,
            label="Incident",
            element=StaticSelectElement(
                action_id=VALUE,
                placeholder="Which incident's timeline?",
                options=[_option(i) for i in shown],
            ),
        ),
    ]
    if len(incidents) > len(shown):
        note = f"Showing the {len(shown)} newest open incidents."
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=note)]))
    return View(
        type="modal",
        callback_id=CHOOSE_VIEW,
        title="Add to timeline",
        submit="Add",
        close="Cancel",
        private_metadata=message_metadata(message),
        blocks=blocks,
    ).to_dict()


def captured_text(captured: Captured) -> str:
    incident, message = captured.incident, captured.message
    if not captured.added:
        return f"That message is already on {incident.ref}'s timeline."
    return t.cut(
        f"Added to {incident.ref}'s timeline: the message from {_origin(message)}.\n"
        f"{_quoted(message.text, ANSWER_PREVIEW_MAX)}",
        t.FALLBACK_TEXT_MAX,
    )
