"""Communication in Slack: the Post update form, the update as posted, its place on the
digest, the automated one-line channel status, and `/incident timeline` pages.
Everything people or agents wrote is escaped; times are `<!date>` with a UTC fallback."""

import json
from collections.abc import Sequence
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.domain.enums import DeliveryState
from bot.domain.models import Incident, TimelineEntry
from bot.domain.updates import PART_MAX, PROMPTS, Chain, News, StatusUpdate, update_from
from bot.render import text as t

UPDATE_VIEW = "status_update"
VALUE = "value"  # the action id of every input's element (as in bot/render/views.py)
TIMELINE_PAGE = "incident_timeline_page"
TIMELINE_PAGE_SIZE = 20
ENTRY_TEXT_MAX = 700  # per timeline entry in Slack; the export has every character
DIGEST_PART_MAX = 300
REASON_SHOWN_MAX = 300
PLACEHOLDER_MAX = 150
_ENTITY_START = "&"


# --- the form -----------------------------------------------------------------------------


def update_modal(incident: Incident, previous: StatusUpdate | None = None) -> dict:
    """The playbook's five prompts. The previous update, if any, is filled in to be edited:
    what was affected rarely changes between two updates."""
    where = t.channel(incident.channel_id) if incident.channel_id else "the incident's card"
    blocks: list[Block] = [
        SectionBlock(
            text=t.cut(
                f"*{incident.ref}* · {incident.severity.label} · {incident.status} — "
                f"{t.escape(incident.title)}",
                t.SECTION_TEXT_MAX,
            )
        ),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"Say what happened, not what you hope happened. Posted in {where}, "
                    "on the announcement digest and in its thread."
                )
            ]
        ),
    ]
    for prompt in PROMPTS:
        initial = getattr(previous, prompt.key, "") if previous is not None else ""
        blocks.append(
            InputBlock(
                block_id=prompt.key,
                label=prompt.label,
                optional=not prompt.required,
                element=PlainTextInputElement(
                    action_id=VALUE,
                    multiline=True,
                    max_length=PART_MAX,
                    initial_value=initial[:PART_MAX] or None,
                    placeholder=t.plain(prompt.hint, PLACEHOLDER_MAX),
                ),
            )
        )
    return View(
        type="modal",
        callback_id=UPDATE_VIEW,
        title="Post update",
        submit="Post",
        close="Cancel",
        private_metadata=str(incident.number),
        blocks=blocks,
    ).to_dict()


# --- the update as posted -----------------------------------------------------------------


def update_text(incident: Incident, update: StatusUpdate) -> str:
    """The message's `text` (notifications, screen readers): escaped, one line."""
    first = t.escape(" ".join(update.what_happened.split()))
    return t.cut(f"{incident.ref} status update: {first}", 300)


def update_blocks(
    incident: Incident, update: StatusUpdate, *, actor: str, at: datetime
) -> list[dict]:
    head = (
        f":memo: *{incident.ref} status update* · {incident.severity.label} · "
        f"{incident.status} · from {t.user(actor)}, {t.date(at)}"
    )
    blocks: list[Block] = [SectionBlock(text=t.cut(head, t.SECTION_TEXT_MAX))]
    for prompt, answer in update.parts():
        blocks += _long_sections(f"*{prompt.label}*\n", answer)
    return t.to_dicts(blocks)


def _long_sections(label: str, raw: str) -> list[Block]:
    """Escaped text over as many sections as it needs: an update is never cut in Slack."""
    remaining = t.escape(raw)
    blocks: list[Block] = []
    head = label
    while remaining:
        budget = t.SECTION_TEXT_MAX - len(head)
        piece = remaining[:budget]
        if len(piece) < len(remaining):
            amp = piece.rfind(_ENTITY_START)
            if amp != -1 and ";" not in piece[amp:]:
                piece = piece[:amp]  # never split &amp; &lt; &gt;
            space = max(piece.rfind(" ", len(piece) - 200), piece.rfind("\n", len(piece) - 200))
            if space > 0:
                piece = piece[: space + 1]
        if not piece:  # cannot happen with Slack's limits; never loop forever
            piece = remaining[:budget]
        blocks.append(SectionBlock(text=head + piece))
        remaining = remaining[len(piece) :]
        head = ""
    return blocks


def digest_update_block(entry: TimelineEntry | None) -> list[Block]:
    """The latest update on the announcement digest, shortened; the thread has it whole."""
    update = update_from(entry) if entry is not None else None
    if entry is None or update is None:
        return []
    lines = [f"*Latest update* from {t.user(entry.actor)}, {t.date(entry.at)}"]
    for prompt, answer in update.parts():
        lines.append(f"*{prompt.label}:* {t.mrkdwn(' '.join(answer.split()), DIGEST_PART_MAX)}")
    return [SectionBlock(text=t.cut("\n".join(lines), t.SECTION_TEXT_MAX))]


# --- the automated channel status ---------------------------------------------------------


def status_line(incident: Incident, news: News) -> str:
    """One plain line for what changed since the last one, changes merged."""
    parts: list[str] = []
    if news.status is not None:
        parts.append(f"Status {' → '.join(news.status.values)}{_by(news.status)}")
    if news.severity is not None:
        labels = [f"SEV-{value[-1]}" for value in news.severity.values]
        parts.append(f"Severity {' → '.join(labels)}{_by(news.severity)}")
    for entry in news.deliveries:
        parts.append(_delivery(entry))
    head = f"*{incident.ref}* is {incident.severity.label} · {incident.status}"
    return t.cut(f"{head} — {'; '.join(parts)}.", t.FALLBACK_TEXT_MAX)


def _by(chain: Chain) -> str:
    last = chain.last
    reason = str(last.data.get("reason") or "")
    said = f": {t.mrkdwn(' '.join(reason.split()), REASON_SHOWN_MAX)}" if reason else ""
    count = f"{chain.changes} changes; last " if chain.changes > 1 else ""
    return f" ({count}by {t.user(last.actor)}{said})"


def _delivery(entry: TimelineEntry) -> str:
    attempt = entry.data.get("attempt", "?")
    if entry.data.get("state") == DeliveryState.CONFIRMED.value:
        return f":white_check_mark: the kill switch confirmed (attempt {attempt})"
    detail = t.mrkdwn(str(entry.data.get("detail") or "unknown"), REASON_SHOWN_MAX)
    return (
        f":rotating_light: *NOT CONFIRMED* by the kill switch after {attempt} attempts "
        f"(last: {detail}); make sure the agent really stopped"
    )


# --- /incident timeline -------------------------------------------------------------------


def page_value(number: int, page: int) -> str:
    return json.dumps({"incident": number, "page": page})


def read_page_value(value: str) -> tuple[int, int]:
    data = json.loads(value)
    return int(data["incident"]), int(data["page"])


def timeline_blocks(
    incident: Incident,
    entries: Sequence[TimelineEntry],
    *,
    page: int,
    pages: int,
    first: int,
    total: int,
) -> list[dict]:
    """Page `page` of `pages` (1 is the oldest); `first` is the 1-based position of the
    first entry shown."""
    if total == 0:
        shown = "no entries"
    else:
        shown = f"entries {first}–{first + len(entries) - 1} of {total}, oldest first"
    blocks: list[Block] = [
        SectionBlock(
            text=t.cut(
                f"*{incident.ref} timeline* — {t.escape(incident.title)}\n"
                f"Page {page} of {pages}: {shown}.",
                t.SECTION_TEXT_MAX,
            )
        )
    ]
    blocks += [SectionBlock(text=_entry_line(entry)) for entry in entries]
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text="Times in your time zone (UTC when Slack cannot show it). Every entry "
                    f"whole: `rein export {incident.ref} --format md` or "
                    f"`GET /v1/incidents/{incident.ref}`."
                )
            ]
        )
    )
    buttons = []
    if page > 1:
        buttons.append(
            ButtonElement(
                text="Earlier",
                action_id=f"{TIMELINE_PAGE}:earlier",
                value=page_value(incident.number, page - 1),
            )
        )
    if page < pages:
        buttons.append(
            ButtonElement(
                text="Later",
                action_id=f"{TIMELINE_PAGE}:later",
                value=page_value(incident.number, page + 1),
            )
        )
    if buttons:
        blocks.append(ActionsBlock(block_id="timeline_pages", elements=buttons))
    return t.to_dicts(blocks)


def _entry_line(entry: TimelineEntry) -> str:
    when = t.date(entry.at, "{date_num} {time_secs}")
    kind = entry.kind.value.replace("_", " ")
    text = t.mrkdwn(entry.text, ENTRY_TEXT_MAX)
    return t.cut(f"{when} · {t.user(entry.actor)} · _{kind}_\n{text}", t.SECTION_TEXT_MAX)


def timeline_text(incident: Incident, page: int, pages: int) -> str:
    return f"{incident.ref} timeline, page {page} of {pages}"
