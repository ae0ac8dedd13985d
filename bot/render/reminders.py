"""Reminders in Slack: the update reminder with **Post update** and snooze buttons, the
postmortem reminders and overdue notice, and the restart gate's scheduled ones. Every time is
`<!date>` (each reader's own time zone) with a UTC fallback; the incident's title and anything
else from outside is escaped. The first block's id is the reminder's marker, by which a send
cut short is found again in the channel's history."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.domain.models import Incident
from bot.domain.reminders import SNOOZE_MINUTES, Reminder, ReminderKind
from bot.render import text as t
from bot.render.incident import POST_UPDATE
from bot.render.postmortem import START_POSTMORTEM

SNOOZE = "reminder_snooze"  # + ":<minutes>"; the value is the incident's number
TEXT_MAX = 300


@dataclass(frozen=True)
class Occasion:
    """What a reminder says, looked up when it is sent."""

    since: datetime | None = None  # update: the latest status update, or the declaration
    every: timedelta | None = None  # update: the severity's interval
    postmortem_due: datetime | None = None
    window: timedelta | None = None
    approvers: Sequence[str] = field(default_factory=tuple)  # users (U…) and groups (S…)
    late: bool = False


@dataclass(frozen=True)
class Composed:
    text: str  # notification and fallback text: one line
    blocks: list[dict]


def snooze_action(minutes: int) -> str:
    return f"{SNOOZE}:{minutes}"


def compose(reminder: Reminder, incident: Incident, occasion: Occasion) -> Composed:
    if reminder.kind is ReminderKind.UPDATE:
        return _update(reminder, incident, occasion)
    if reminder.kind in (ReminderKind.POSTMORTEM_HALF, ReminderKind.POSTMORTEM_NINETY):
        return _postmortem_soon(reminder, incident, occasion)
    if reminder.kind is ReminderKind.POSTMORTEM_OVERDUE:
        return _postmortem_overdue(reminder, incident, occasion)
    return _scheduled(reminder, incident, occasion)


def _head(incident: Incident) -> str:
    return f"*{incident.ref}* · {incident.severity.label} · {t.escape(incident.title)}"


def _minutes(every: timedelta | None) -> str:
    minutes = int(every.total_seconds() // 60) if every else 0
    if minutes % 60:
        return f"{minutes} minutes"
    hours = minutes // 60
    return "hour" if hours == 1 else f"{hours} hours"


def _hours(window: timedelta | None) -> str:
    hours = window.total_seconds() / 3600 if window else 0
    return f"{hours:g}-hour"


def _context(reminder: Reminder, occasion: Occasion, *extra: str) -> list[Block]:
    notes = list(extra)
    if occasion.late:
        notes.append(f"late: due at {t.date(reminder.due_at)}")
    if not notes:
        return []
    return [ContextBlock(elements=[MarkdownTextObject(text=" · ".join(notes))])]


def _section(reminder: Reminder, body: str) -> SectionBlock:
    return SectionBlock(block_id=reminder.marker, text=t.cut(body, t.SECTION_TEXT_MAX))


def update_buttons(number: int) -> list[ButtonElement]:
    value = str(number)
    buttons = [
        ButtonElement(text="Post update", action_id=POST_UPDATE, value=value, style="primary")
    ]
    buttons += [
        ButtonElement(text=f"Snooze {m} min", action_id=snooze_action(m), value=value)
        for m in SNOOZE_MINUTES
    ]
    return buttons


def _update(reminder: Reminder, incident: Incident, occasion: Occasion) -> Composed:
    since = t.date(occasion.since) if occasion.since else "its declaration"
    body = (
        f":alarm_clock: {_head(incident)}\n"
        f"No status update since {since}; a {incident.severity.label} gets one every "
        f"{_minutes(occasion.every)}. {t.user(incident.commander)}, please post one."
    )
    blocks: list[Block] = [
        _section(reminder, body),
        *_context(reminder, occasion),
        ActionsBlock(block_id="reminder_actions", elements=update_buttons(incident.number)),
    ]
    text = f"{incident.ref}: a status update is due ({t.escape(incident.title)})"
    return Composed(t.cut(text, TEXT_MAX), t.to_dicts(blocks))


def _start(incident: Incident) -> ActionsBlock:
    """The card's own button: it opens the postmortem (or its draft)."""
    button = ButtonElement(
        text="Start postmortem",
        action_id=START_POSTMORTEM,
        value=str(incident.number),
        style="primary",
    )
    return ActionsBlock(block_id="reminder_actions", elements=[button])


def _postmortem_soon(reminder: Reminder, incident: Incident, occasion: Occasion) -> Composed:
    share = "Half" if reminder.kind is ReminderKind.POSTMORTEM_HALF else "90%"
    due = t.date(occasion.postmortem_due) if occasion.postmortem_due else "soon"
    body = (
        f":hourglass_flowing_sand: {_head(incident)}\n"
        f"The postmortem is due {due}. {share} of its {_hours(occasion.window)} window has "
        f"passed. {t.user(incident.commander)}, start it with *Start postmortem* or "
        "`/incident postmortem`."
    )
    blocks = [_section(reminder, body), *_context(reminder, occasion), _start(incident)]
    text = f"{incident.ref}: postmortem due soon ({t.escape(incident.title)})"
    return Composed(t.cut(text, TEXT_MAX), t.to_dicts(blocks))


def _postmortem_overdue(reminder: Reminder, incident: Incident, occasion: Occasion) -> Composed:
    due = t.date(occasion.postmortem_due) if occasion.postmortem_due else "earlier"
    people = [t.user(incident.commander)] + [
        t.approver(a) for a in occasion.approvers if a != incident.commander
    ]
    body = (
        f":rotating_light: {_head(incident)}\n"
        f"The postmortem is overdue: it was due {due}. {' '.join(people)}: complete it with "
        "*Start postmortem* or `/incident postmortem`. Rein reminds you daily until it is "
        "done."
    )
    blocks = [_section(reminder, body), *_context(reminder, occasion), _start(incident)]
    text = f"{incident.ref}: postmortem overdue ({t.escape(incident.title)})"
    return Composed(t.cut(text, TEXT_MAX), t.to_dicts(blocks))


def _scheduled(reminder: Reminder, incident: Incident, occasion: Occasion) -> Composed:
    """A scheduled reminder's own words (`payload.text`, Rein's mrkdwn: whoever schedules
    it escapes what came from outside) and whom it mentions (`payload.mention`)."""
    said = str(reminder.payload.get("text") or "A reminder.")
    mention = " ".join(t.approver(str(p)) for p in reminder.payload.get("mention") or [])
    body = f":bell: {_head(incident)}\n{said}" + (f"\n{mention}" if mention else "")
    blocks = [_section(reminder, body), *_context(reminder, occasion)]
    first = " ".join(t.clean(said).split())
    return Composed(t.cut(f"{incident.ref}: {first}", TEXT_MAX), t.to_dicts(blocks))


def marked(reminder: Reminder, composed: Composed) -> Composed:
    """Someone else's words for a reminder, with its marker on the first block."""
    blocks = list(composed.blocks) or [
        SectionBlock(text=t.cut(composed.text, t.SECTION_TEXT_MAX)).to_dict()
    ]
    blocks[0] = {**blocks[0], "block_id": reminder.marker}
    return Composed(composed.text, blocks)


def snoozed_blocks(incident: Incident, actor: str, minutes: int, until: datetime) -> list[dict]:
    """The update reminder once someone snoozed it: who, until when, and Post update."""
    body = (
        f":zzz: {_head(incident)}\n{t.user(actor)} snoozed the update reminder for "
        f"{minutes} minutes: the next one comes {t.date(until)}."
    )
    return t.to_dicts(
        [
            SectionBlock(text=t.cut(body, t.SECTION_TEXT_MAX)),
            ActionsBlock(block_id="reminder_actions", elements=update_buttons(incident.number)[:1]),
        ]
    )


def snoozed_text(incident: Incident, until: datetime) -> str:
    return f"{incident.ref}: update reminders snoozed until {t.date(until)}."


def sent_entry_text(reminder: Reminder, incident: Incident, late: bool) -> str:
    """The timeline's words for a sent reminder (UTC: the timeline is read everywhere)."""
    what = {
        ReminderKind.UPDATE: "status update due",
        ReminderKind.POSTMORTEM_HALF: "postmortem: half the window passed",
        ReminderKind.POSTMORTEM_NINETY: "postmortem: 90% of the window passed",
        ReminderKind.POSTMORTEM_OVERDUE: "postmortem overdue (commander and approvers)",
    }.get(reminder.kind, reminder.kind.value.replace("_", " "))
    text = f"Reminder sent: {what}"
    if late:
        text += f" (late: due at {reminder.due_at.strftime('%Y-%m-%d %H:%M:%S UTC')})"
    return text
