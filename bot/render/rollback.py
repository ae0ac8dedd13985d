"""The rollback ledger in Slack: the card's progress line and buttons, the modals, the
ledger listing and the private answers. Every system, record and value came from outside:
each is escaped (and cut) wherever it is shown."""

import json
from collections.abc import Sequence

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.domain.enums import IncidentStatus, RollbackStatus
from bot.domain.models import REASON_MAX, Incident, LedgerCounts
from bot.domain.policy import Agent
from bot.domain.rollback import (
    RECORD_MAX,
    STATUS_LABELS,
    SYSTEM_MAX,
    RollbackItem,
    progress,
    ranges,
)
from bot.render import text as t

ADD_RECORD = "incident_add_record"
MARK_RECORDS = "incident_mark_records"
MARK_RECOVERED = "incident_mark_recovered"
ADD_RECORD_VIEW = "rollback_add_record"
MARK_RECORDS_VIEW = "rollback_mark_records"
RECOVER_VIEW = "rollback_recover"
VALUE = "value"  # the action id of every input's element, as in bot/render/views.py
MODAL_VALUE_MAX = 3000  # Slack's limit for a plain-text input; the API takes more
PENDING_NAMED = 10  # pending items a refusal or a modal names one by one
LIST_ITEMS_MAX = 400  # items `/incident rollback list` shows; the API and export have all
VALUE_SHOWN = 60

# The statuses a person sets from the modal (`pending` again is the command's correction).
_MODAL_STATUSES = (RollbackStatus.RESTORED, RollbackStatus.ACCEPTED, RollbackStatus.NOT_REVERSIBLE)
_ICON = {
    RollbackStatus.PENDING: ":hourglass_flowing_sand:",
    RollbackStatus.RESTORED: ":white_check_mark:",
    RollbackStatus.ACCEPTED: ":ballot_box_with_check:",
    RollbackStatus.NOT_REVERSIBLE: ":no_entry_sign:",
}
# Where people add records: while responders are working on it.
_ADDING = (
    IncidentStatus.DECLARED,
    IncidentStatus.CONTAINED,
    IncidentStatus.RECOVERED,
    IncidentStatus.POSTMORTEM,
)


# ------------------------------------------------------------------------------ the card


def rollback_buttons(incident: Incident) -> list[ButtonElement]:
    """**Add affected record** while responders work on it; **Mark recovered** once contained."""
    value = str(incident.number)
    buttons: list[ButtonElement] = []
    if incident.status in _ADDING:
        buttons.append(ButtonElement(text="Add affected record", action_id=ADD_RECORD, value=value))
    if incident.status is IncidentStatus.CONTAINED:
        buttons.append(
            ButtonElement(
                text="Mark recovered", action_id=MARK_RECOVERED, value=value, style="primary"
            )
        )
    return buttons


def ledger_blocks(incident: Incident, counts: LedgerCounts) -> list[Block]:
    """The progress line: `212 of 300 restored · 3 accepted · 1 not reversible · 84 pending`."""
    if counts.total == 0:
        if incident.status is not IncidentStatus.CONTAINED:
            return []
        note = (
            "*Rollback ledger* — no affected records yet. Add them with *Add affected record*, "
            f"`/incident rollback`, or `POST /v1/incidents/{incident.ref}/rollback`."
        )
        return [ContextBlock(elements=[MarkdownTextObject(text=note)])]
    icon = ":white_check_mark:" if counts.pending == 0 else ":leftwards_arrow_with_hook:"
    text = f"{icon} *Rollback ledger*\n{progress(counts)}"
    accessory = None
    if counts.pending and incident.status.is_open:
        accessory = ButtonElement(
            text="Mark records", action_id=MARK_RECORDS, value=str(incident.number)
        )
    return [SectionBlock(block_id="rollback_ledger", text=text, accessory=accessory)]


# ---------------------------------------------------------------------------- item text


def _value(value: str | None) -> str:
    if value is None:
        return "_(none)_"
    one_line = " ".join(value.split())
    return t.mrkdwn(one_line, VALUE_SHOWN) if one_line else "_(empty)_"


def item_label(item: RollbackItem, limit: int = 120) -> str:
    """`#12 crm ACC-0042`, escaped."""
    return f"#{item.id} " + t.mrkdwn(" ".join(f"{item.system} {item.record}".split()), limit)


def item_line(item: RollbackItem) -> str:
    line = (
        f"{_ICON[item.status]} {item_label(item)}: {_value(item.before)} → {_value(item.after)}"
        f" · {STATUS_LABELS[item.status]}"
    )
    if item.status is not RollbackStatus.PENDING:
        line += f" by {t.user(item.by)}"
    if item.reason:
        line += f" ({t.mrkdwn(' '.join(item.reason.split()), 120)})"
    return line


def pending_summary(counts: LedgerCounts, named: Sequence[RollbackItem], ids: Sequence[int]) -> str:
    """`88 of 300 records still pending: #213 crm ACC-0213, … and 78 more (pending: #213–#300)`."""
    shown = ", ".join(item_label(item, 80) for item in named[:PENDING_NAMED])
    more = counts.pending - min(len(named), PENDING_NAMED)
    text = f"{counts.pending} of {counts.total} records still pending: {shown}"
    if more > 0:
        text += f", … and {more} more (pending: {ranges(ids, 600)})"
    return text


def pending_refusal(
    incident: Incident, counts: LedgerCounts, named: Sequence[RollbackItem], ids: Sequence[int]
) -> str:
    return t.cut(
        f"{incident.ref} cannot be marked recovered yet: "
        f"{pending_summary(counts, named, ids)}.\n"
        "Mark them restored, accepted or not reversible (*Mark records* on the card, or "
        "`/incident rollback restored &lt;items|all&gt;`), or the commander "
        f"({t.user(incident.commander)}) accepts the rest as it is, with a reason: "
        "*Mark recovered*, or `/incident recovered accept &lt;reason&gt;`.",
        t.FALLBACK_TEXT_MAX,
    )


# ----------------------------------------------------------------------------- answers


def added_text(incident: Incident, item: RollbackItem, duplicate: bool) -> str:
    if duplicate:
        return (
            f"{item_label(item)} is already in {incident.ref}'s ledger "
            f"({STATUS_LABELS[item.status]}); nothing was changed."
        )
    return f"Added {item_label(item)} to {incident.ref}'s rollback ledger (pending)."


def marked_text(
    incident: Incident,
    status: RollbackStatus,
    changed: Sequence[int],
    already: int,
    counts: LedgerCounts,
) -> str:
    label = STATUS_LABELS[status]
    if changed:
        text = f"Marked {len(changed)} {_items(len(changed))} {label}: {ranges(changed, 300)}."
    else:
        text = "Nothing changed."
    if already:
        text += f" {already} {_items(already)} already {label}."
    return f"{text}\n{incident.ref}'s ledger: {progress(counts)}."


def recovered_text(incident: Incident, counts: LedgerCounts, accepted: int) -> str:
    text = f"{incident.ref} is recovered."
    if accepted:
        text += f" You accepted the last {accepted} pending {_items(accepted)} as they are."
    if counts.total:
        text += f" Ledger: {progress(counts)}."
    return text


def count_of(counts: LedgerCounts, status: RollbackStatus) -> int:
    return {
        RollbackStatus.PENDING: counts.pending,
        RollbackStatus.RESTORED: counts.restored,
        RollbackStatus.ACCEPTED: counts.accepted,
        RollbackStatus.NOT_REVERSIBLE: counts.not_reversible,
    }[status]


def _items(n: int) -> str:
    return "item" if n == 1 else "items"


def ledger_list_blocks(
    incident: Incident,
    counts: LedgerCounts,
    items: Sequence[RollbackItem],
    status: RollbackStatus | None,
) -> list[dict]:
    """`/incident rollback list`: the progress line, then items (pending first) in sections."""
    head = f"*{incident.ref} rollback ledger* · {progress(counts)}"
    if not items:
        what = f"no {STATUS_LABELS[status]} items" if status else "no items yet"
        return t.to_dicts([SectionBlock(text=f"{head}\n_{what}._")])
    sections: list[list[str]] = [[]]
    size = 0
    for item in items[:LIST_ITEMS_MAX]:
        line = item_line(item)
        if sections[-1] and size + len(line) + 1 > t.SECTION_TEXT_MAX:
            if len(sections) == t.MESSAGE_BLOCKS_MAX - 2:  # room for the head and "…more"
                break
            sections.append([])
            size = 0
        sections[-1].append(line)
        size += len(line) + 1
    shown = sum(len(lines) for lines in sections)
    blocks: list[Block] = [SectionBlock(text=head)]
    blocks += [SectionBlock(text="\n".join(lines)) for lines in sections]
    total = counts.total if status is None else count_of(counts, status)
    if shown < total:
        more = (
            f"…{total - shown} more: `GET /v1/incidents/{incident.ref}` or "
            f"`rein export {incident.ref}` have every item."
        )
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=more)]))
    return t.to_dicts(blocks)


# ------------------------------------------------------------------------------ modals


def _metadata(incident: Incident, channel: str | None) -> str:
    return json.dumps({"incident": incident.number, "channel": channel})


def _input(
    block_id: str,
    label: str,
    *,
    max_length: int,
    multiline: bool = False,
    optional: bool = False,
    initial: str | None = None,
    placeholder: str | None = None,
    hint: str | None = None,
) -> InputBlock:
    return InputBlock(
        block_id=block_id,
        label=label,
        optional=optional,
        hint=PlainTextObject(text=hint) if hint else None,
        element=PlainTextInputElement(
            action_id=VALUE,
            multiline=multiline,
            max_length=max_length,
            initial_value=initial or None,
            placeholder=placeholder,
        ),
    )


def add_record_modal(incident: Incident, agent: Agent | None, channel: str | None) -> dict:
    systems = agent.writes_to if agent is not None else ()
    initial = systems[0] if len(systems) == 1 else None
    placeholder = ", ".join(systems)[:140] if systems else "crm"
    return View(
        type="modal",
        callback_id=ADD_RECORD_VIEW,
        title="Add affected record",
        submit="Add",
        close="Cancel",
        private_metadata=_metadata(incident, channel),
        blocks=[
            SectionBlock(text=t.mrkdwn(f"{incident.ref}: {incident.title}", t.SECTION_TEXT_MAX)),
            _input(
                "system",
                "System",
                max_length=SYSTEM_MAX,
                initial=initial,
                placeholder=placeholder,
            ),
            _input(
                "record",
                "Record reference",
                max_length=RECORD_MAX,
                placeholder="The record's id or URL in that system",
            ),
            _input(
                "before",
                "Value before",
                max_length=MODAL_VALUE_MAX,
                multiline=True,
                optional=True,
                placeholder="What it was before the agent changed it",
            ),
            _input(
                "after",
                "Value after",
                max_length=MODAL_VALUE_MAX,
                multiline=True,
                optional=True,
                placeholder="What the agent made of it",
            ),
        ],
    ).to_dict()


def _status_option(status: RollbackStatus) -> Option:
    return Option(value=status.value, text=STATUS_LABELS[status].capitalize())


def mark_records_modal(
    incident: Incident,
    counts: LedgerCounts,
    named: Sequence[RollbackItem],
    ids: Sequence[int],
    channel: str | None,
) -> dict:
    listing = "\n".join(item_line(item) for item in named[:PENDING_NAMED])
    pending = f"Pending: {ranges(ids, 1500)}" if ids else "Nothing is pending."
    return View(
        type="modal",
        callback_id=MARK_RECORDS_VIEW,
        title="Mark records",
        submit="Mark",
        close="Cancel",
        private_metadata=_metadata(incident, channel),
        blocks=[
            SectionBlock(
                text=t.cut(
                    f"*{incident.ref} rollback ledger* · {progress(counts)}\n{pending}",
                    t.SECTION_TEXT_MAX,
                )
            ),
            *([SectionBlock(text=t.cut(listing, t.SECTION_TEXT_MAX))] if listing else []),
            InputBlock(
                block_id="status",
                label="Mark as",
                element=StaticSelectElement(
                    action_id=VALUE,
                    options=[_status_option(s) for s in _MODAL_STATUSES],
                    initial_option=_status_option(RollbackStatus.RESTORED),
                ),
            ),
            _input(
                "items",
                "Items",
                max_length=2000,
                initial="all",
                hint="all = every pending item; or numbers and ranges such as 1-212, 250",
            ),
            _input(
                "reason",
                "Reason",
                max_length=REASON_MAX,
                multiline=True,
                optional=True,
                hint="Required for accepted and not reversible",
            ),
        ],
    ).to_dict()


def recover_modal(
    incident: Incident,
    counts: LedgerCounts,
    named: Sequence[RollbackItem],
    ids: Sequence[int],
    channel: str | None,
) -> dict:
    """For the commander, when records are still pending: accept the rest, and say why."""
    return View(
        type="modal",
        callback_id=RECOVER_VIEW,
        title="Mark recovered",
        submit="Mark recovered",
        close="Cancel",
        private_metadata=_metadata(incident, channel),
        blocks=[
            SectionBlock(
                text=t.cut(
                    f"*{incident.ref}*: {pending_summary(counts, named, ids)}.\n"
                    "Close this and mark them first (*Mark records*), or accept them as they "
                    "are: they will be marked accepted, with your reason, on the timeline.",
                    t.SECTION_TEXT_MAX,
                )
            ),
            InputBlock(
                block_id="accept",
                label="Accept the remainder",
                element=CheckboxesElement(
                    action_id=VALUE,
                    options=[
                        Option(
                            value="accept",
                            text=f"I accept the {counts.pending} pending "
                            f"{_items(counts.pending)} as they are",
                        )
                    ],
                ),
            ),
            _input(
                "reason",
                "Why",
                max_length=REASON_MAX,
                multiline=True,
                placeholder="Why these records are not restored, and who agreed",
            ),
        ],
    ).to_dict()


def modal_target(private_metadata: str) -> tuple[int, str | None]:
    """The incident and the channel a ledger modal was opened from."""
    data = json.loads(private_metadata)
    return int(data["incident"]), data.get("channel")
