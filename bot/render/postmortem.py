"""The postmortem in Slack: its line and buttons on the card, the five-part form, the private
answers, and what the shared file says. Parts are shown in plain-text inputs (Slack never
parses those); anywhere else outside text is escaped."""

import json
from datetime import datetime

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.domain.enums import IncidentStatus, PostmortemState
from bot.domain.models import Incident, LedgerCounts, PostmortemCard
from bot.domain.postmortem import PART_MAX, PARTS, Postmortem, PostmortemParts
from bot.domain.rollback import progress
from bot.render import text as t

START_POSTMORTEM = "incident_start_postmortem"
SHARE_POSTMORTEM = "incident_share_postmortem"
POSTMORTEM_VIEW = "postmortem"
COMPLETE_BLOCK = "complete"
COMPLETE = "complete"  # the checkbox option's value
VALUE = "value"  # the action id of every input's element, as in bot/render/views.py
PLACEHOLDER_MAX = 150
OPTION_DESCRIPTION_MAX = 75
FILE_TITLE_MAX = 200
GUARDRAILS_SHOWN = 400  # of part four on the card; the document has it whole

# Where the card has a postmortem line: from recovery on (a closed SEV-3/4 without one: none).
_SHOWN = (IncidentStatus.RECOVERED, IncidentStatus.POSTMORTEM)


# ------------------------------------------------------------------------------ the card


def _hours(card: PostmortemCard) -> str:
    if card.due_at is None or card.recovered_at is None:
        return ""
    hours = round((card.due_at - card.recovered_at).total_seconds() / 3600)
    return f" ({hours} h after recovery)"


def postmortem_line(incident: Incident, card: PostmortemCard) -> str | None:
    if card.state is None and incident.status not in _SHOWN:
        return None
    due = f" · due {t.date(card.due_at)}{_hours(card)}" if card.due_at else ""
    if card.state is PostmortemState.COMPLETED:
        who = t.user(card.completed_by or "?")
        when = t.date(card.completed_at) if card.completed_at else ""
        return f":white_check_mark: *Postmortem* — completed by {who} {when}"
    if card.state is PostmortemState.DRAFT:
        who = t.user(card.updated_by or "?")
        when = t.date(card.updated_at) if card.updated_at else ""
        return (
            f":memo: *Postmortem* — draft (revision {card.revision}), last saved by {who} "
            f"{when}{due}"
        )
    if card.due_at is None:
        return (
            f":memo: *Postmortem* — not started; optional at {incident.severity.label} "
            "(Start postmortem)"
        )
    return f":memo: *Postmortem* — not started{due}"


def postmortem_blocks(incident: Incident, card: PostmortemCard | None) -> list[Block]:
    card = card or PostmortemCard()
    line = postmortem_line(incident, card)
    if line is None:
        return []
    blocks: list[Block] = [
        SectionBlock(block_id="postmortem", text=t.cut(line, t.SECTION_TEXT_MAX))
    ]
    if card.guardrails:
        shown = t.mrkdwn(" ".join(card.guardrails.split()), GUARDRAILS_SHOWN)
        text = f"*Guardrail changes before restart:* {shown}"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=text)]))
    return blocks


def postmortem_buttons(incident: Incident, card: PostmortemCard | None) -> list[ButtonElement]:
    """**Start postmortem** while it can be written (recovered; a draft is continued), and
    **Share postmortem** once there is one."""
    card = card or PostmortemCard()
    value = str(incident.number)
    buttons: list[ButtonElement] = []
    writable = incident.status is IncidentStatus.RECOVERED or (
        incident.status is IncidentStatus.POSTMORTEM and card.state is not PostmortemState.COMPLETED
    )
    if writable:
        buttons.append(
            ButtonElement(
                text="Start postmortem", action_id=START_POSTMORTEM, value=value, style="primary"
            )
        )
    if card.state is not None and incident.status is not IncidentStatus.DISMISSED:
        buttons.append(
            ButtonElement(text="Share postmortem", action_id=SHARE_POSTMORTEM, value=value)
        )
    return buttons


# ------------------------------------------------------------------------------ the form


def modal_metadata(number: int, revision: int, channel: str | None) -> str:
    """The incident, the revision the form opened at (to refuse overwriting a newer draft)
    and where to answer privately."""
    return json.dumps({"incident": number, "revision": revision, "channel": channel})


def read_metadata(raw: str) -> tuple[int, int, str | None]:
    data = json.loads(raw)
    return int(data["incident"]), int(data["revision"]), data.get("channel")


def _status_line(
    incident: Incident, postmortem: Postmortem | None, card: PostmortemCard, drafted: bool
) -> str:
    if postmortem is None:
        state = "New postmortem"
    else:
        state = (
            f"Draft, revision {postmortem.revision}, last saved by "
            f"{t.user(postmortem.updated_by)} {t.date(postmortem.updated_at)}"
        )
    parts = [state]
    if card.due_at is not None:
        parts.append(f"due {t.date(card.due_at)}")
    text = " · ".join(parts) + "."
    if drafted:
        text += (
            " Rein drafted *the agent's path* from the timeline and evidence: check and edit it."
        )
    return text


def postmortem_modal(
    incident: Incident,
    postmortem: Postmortem | None,
    initial: PostmortemParts,
    *,
    card: PostmortemCard,
    ledger: LedgerCounts,
    drafted: bool,
    channel: str | None,
) -> dict:
    """The five parts, each one plain-text box of up to 3000 characters, and a checkbox to
    complete it; without the tick the form saves a draft."""
    head = (
        f"*{incident.ref}* · {incident.severity.label} · {incident.status} — "
        f"{t.escape(' '.join(incident.title.split()))}"
    )
    facts = _status_line(incident, postmortem, card, drafted)
    if ledger.total:
        facts += f" Rollback ledger: {progress(ledger)}."
    blocks: list[Block] = [
        SectionBlock(text=t.cut(head, t.SECTION_TEXT_MAX)),
        ContextBlock(elements=[MarkdownTextObject(text=t.cut(facts, t.SECTION_TEXT_MAX))]),
    ]
    for part in PARTS:
        text = getattr(initial, part.key)
        blocks.append(
            InputBlock(
                block_id=part.key,
                label=part.label,
                optional=True,  # a draft may leave parts empty; completing needs all five
                element=PlainTextInputElement(
                    action_id=VALUE,
                    multiline=True,
                    max_length=PART_MAX,
                    initial_value=text[:PART_MAX] or None,
                    placeholder=t.plain(part.hint, PLACEHOLDER_MAX),
                ),
            )
        )
    who = f"Commander, owner or {incident.severity.label} approver"
    blocks += [
        InputBlock(
            block_id=COMPLETE_BLOCK,
            label="Complete",
            optional=True,
            element=CheckboxesElement(
                action_id=VALUE,
                options=[
                    Option(
                        value=COMPLETE,
                        text="Complete the postmortem",
                        description=t.plain(
                            f"Final: {incident.ref} moves to postmortem. {who}.",
                            OPTION_DESCRIPTION_MAX,
                        ),
                    )
                ],
            ),
        ),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text="Without the tick, *Save* keeps a draft that any responder may edit. "
                    "Postmortems should change the workflow, not just the prompt."
                )
            ]
        ),
    ]
    title = t.plain(f"Postmortem {incident.ref}", 24)
    return View(
        type="modal",
        callback_id=POSTMORTEM_VIEW,
        title=title,
        submit="Save",
        close="Cancel",
        private_metadata=modal_metadata(
            incident.number, postmortem.revision if postmortem else 0, channel
        ),
        blocks=blocks,
    ).to_dict()


# ------------------------------------------------------------------------ private answers


def _utc(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "?"


def stale_text(incident: Incident, newer: Postmortem) -> str:
    """Plain text (modal errors are): nothing to escape but the user id, which is an id."""
    return (
        f"{newer.updated_by} saved {incident.ref}'s postmortem at {_utc(newer.updated_at)}, "
        "after this form opened; your changes were not saved. Copy them, close the form and "
        "press Start postmortem again to see the newer draft."
    )


def already_completed_text(incident: Incident, postmortem: Postmortem) -> str:
    return (
        f"{incident.ref}'s postmortem was completed by {postmortem.completed_by} at "
        f"{_utc(postmortem.completed_at)}; it is final and your changes were not saved."
    )


def saved_text(incident: Incident, postmortem: Postmortem, completed_now: bool) -> str:
    if completed_now:
        return (
            f":white_check_mark: {incident.ref}'s postmortem is complete (revision "
            f"{postmortem.revision}); {incident.ref} is now {incident.status}. "
            "Share postmortem posts the document in the incident channel."
        )
    return (
        f":memo: Saved the draft of {incident.ref}'s postmortem (revision {postmortem.revision}). "
        "Anyone may continue it with Start postmortem."
    )


# -------------------------------------------------------------------------- the shared file


def filename(incident: Incident) -> str:
    return f"{incident.ref}-postmortem.md"


def file_title(incident: Incident, postmortem: Postmortem) -> str:
    """A file title is plain text in Slack; the incident title is cleaned and cut."""
    return t.plain(
        f"{incident.ref} postmortem ({postmortem.state}): {incident.title}", FILE_TITLE_MAX
    )


def share_comment(incident: Incident, postmortem: Postmortem, actor: str) -> str:
    return (
        f":memo: {incident.ref} postmortem ({postmortem.state}, revision {postmortem.revision}), "
        f"shared by {t.user(actor)}: summary, durations, phases, the five parts, the full "
        "timeline (UTC), evidence and rollback ledger."
    )


def shared_text(incident: Incident, channel: str, size: int) -> str:
    return f"Shared {incident.ref}'s postmortem document ({size} bytes) in {t.channel(channel)}."
