"""Evidence in Slack: the card's completeness section, the **Add evidence** modal, and the
private answer after an addition. Evidence is outside text (an agent's prompt or output may
carry prompt injection): it is always escaped, and Slack only ever shows a trimmed preview."""

from collections.abc import Iterable, Sequence

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
    UrlInputElement,
)
from slack_sdk.models.views import View

from bot.domain.enums import EvidenceKind, IncidentStatus
from bot.domain.evidence import (
    KIND_LABELS,
    NOTE_MAX,
    PLAYBOOK_KINDS,
    EvidenceBrief,
    EvidenceItem,
    human_size,
    missing,
    preview,
    required,
)
from bot.domain.models import CardFacts, Incident
from bot.render import text as t

ADD_EVIDENCE = "incident_add_evidence"  # the card button's action id
EVIDENCE_VIEW = "add_evidence"  # the modal's callback id
VALUE = "value"  # the action id of every input's element (as in bot/render/views.py)
KIND_BLOCK, CONTENT_BLOCK, URL_BLOCK, NOTE_BLOCK = "kind", "content", "url", "note"
MODAL_CONTENT_MAX = 3000  # Slack's limit for a plain-text input
LATEST_SHOWN = 3
CARD_PREVIEW_MAX = 120
ANSWER_PREVIEW_MAX = 300
OPTION_TEXT_MAX = 75


def _kinds(kinds: Iterable[EvidenceKind]) -> str:
    return ", ".join(f"`{k.value}`" for k in kinds)


def _items(count: int) -> str:
    return "1 item" if count == 1 else f"{count} items"


def completeness_text(incident: Incident, present: frozenset[EvidenceKind], count: int) -> str:
    """Which kinds are present and missing; those the restart gate requires for this
    severity first. Only Rein's own words and kind names: no outside text."""
    sev = incident.severity
    needed = required(sev)
    gate_missing = missing(present, sev)
    lines = [
        f"*Evidence* · {_items(count)} · restart gate for {sev.label}: "
        f"{len(needed) - len(gate_missing)} of {len(needed)} required kinds"
    ]
    have_needed = [k for k in needed if k in present]
    if have_needed:
        lines.append(f":white_check_mark: Required, present: {_kinds(have_needed)}")
    if gate_missing:
        lines.append(f":x: Required, missing: {_kinds(gate_missing)}")
    else:
        lines.append(f":tada: Everything the {sev.label} restart gate requires is preserved.")
    others = [k for k in EvidenceKind if k not in needed]
    also_present = [k for k in others if k in present]
    also_missing = [k for k in others if k not in present and k in PLAYBOOK_KINDS]
    if also_present:
        lines.append(f":heavy_check_mark: Also present: {_kinds(also_present)}")
    if also_missing:
        lines.append(f":white_circle: Also worth preserving: {_kinds(also_missing)}")
    return t.cut("\n".join(lines), t.SECTION_TEXT_MAX)


def _brief_line(brief: EvidenceBrief) -> str:
    shown = preview(brief.preview, CARD_PREVIEW_MAX) if brief.preview else ""
    if shown and not shown.endswith("…") and brief.size > len(brief.preview.encode("utf-8")):
        shown += "…"
    what = f"“{t.escape(shown)}”" if shown else ""
    if brief.url:
        # A long address is shown cut, as code: never as a link to somewhere else.
        cut = len(brief.url) > CARD_PREVIEW_MAX
        link = t.escape(preview(brief.url, CARD_PREVIEW_MAX))
        link = f"`{link}`" if cut else link
        what = f"{what} {link}" if what else link
    size = f" ({human_size(brief.size)})" if brief.size else ""
    return (
        f"`{brief.kind.value}`{size} · {t.user(brief.added_by)} · {t.date(brief.added_at)}: {what}"
    )


def evidence_blocks(incident: Incident, facts: CardFacts) -> list[Block]:
    """The card's evidence section: completeness, and the newest items as short previews."""
    if incident.status in (IncidentStatus.TRIAGE, IncidentStatus.DISMISSED):
        return []
    blocks: list[Block] = [
        SectionBlock(
            block_id="evidence",
            text=completeness_text(incident, facts.evidence_kinds, facts.evidence_count),
        )
    ]
    latest = facts.evidence_latest[:LATEST_SHOWN]
    if latest:
        heading = "Latest evidence" if facts.evidence_count > len(latest) else "Evidence"
        lines = "\n".join(f"• {_brief_line(b)}" for b in latest)
        text = t.cut(
            f"{heading} (previews; the items are kept whole):\n{lines}", t.SECTION_TEXT_MAX
        )
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=text)]))
    return blocks


def _kind_option(kind: EvidenceKind, needed: Sequence[EvidenceKind]) -> Option:
    mark = " · needed for restart" if kind in needed else ""
    return Option(value=kind.value, text=t.plain(f"{KIND_LABELS[kind]}{mark}", OPTION_TEXT_MAX))


def evidence_modal(incident: Incident, present: frozenset[EvidenceKind] = frozenset()) -> dict:
    """Kind, content or URL (or both), note. The kinds still missing for the restart gate are
    marked, so responders see what to look for."""
    needed = missing(present, incident.severity)
    hint = (
        f"Still missing for the {incident.severity.label} restart gate: {_kinds(needed)}."
        if needed
        else f"Everything the {incident.severity.label} restart gate requires is preserved."
    )
    return View(
        type="modal",
        callback_id=EVIDENCE_VIEW,
        title="Add evidence",
        submit="Add",
        close="Cancel",
        private_metadata=str(incident.number),
        blocks=[
            SectionBlock(text=t.mrkdwn(f"{incident.ref}: {incident.title}", t.SECTION_TEXT_MAX)),
            InputBlock(
                block_id=KIND_BLOCK,
                label="Kind",
                element=StaticSelectElement(
                    action_id=VALUE,
                    placeholder="What is it?",
                    options=[_kind_option(k, needed) for k in EvidenceKind],
                ),
            ),
            InputBlock(
                block_id=CONTENT_BLOCK,
                label="Content",
                optional=True,
                element=PlainTextInputElement(
                    action_id=VALUE,
                    multiline=True,
                    max_length=MODAL_CONTENT_MAX,
                    placeholder="Paste the prompt, tool calls, output… exactly as they were",
                ),
            ),
            InputBlock(
                block_id=URL_BLOCK,
                label="URL",
                optional=True,
                element=UrlInputElement(action_id=VALUE, placeholder="https://… where it is kept"),
            ),
            InputBlock(
                block_id=NOTE_BLOCK,
                label="Note",
                optional=True,
                element=PlainTextInputElement(
                    action_id=VALUE,
                    multiline=True,
                    max_length=NOTE_MAX,
                    placeholder="Where it came from, what it shows",
                ),
            ),
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text="Give the content, a URL (http or https), or both. Longer "
                        "artefacts (up to 1 MiB an item) come through the HTTP API; nothing "
                        f"added is ever changed or deleted. {hint}"
                    )
                ]
            ),
        ],
    ).to_dict()


def added_text(incident: Incident, item: EvidenceItem, present: frozenset[EvidenceKind]) -> str:
    """The private answer: what was recorded (a trimmed, escaped preview) and what the restart
    gate still needs."""
    facts = [f"`{item.kind.value}`"]
    if item.content is not None:
        facts.append(human_size(item.size))
    lines = [f"Added to {incident.ref}'s evidence: {' · '.join(facts)}"]
    if item.content is not None:
        lines.append(f"> {t.escape(preview(item.content, ANSWER_PREVIEW_MAX))}")
    if item.url:
        lines.append(f"URL: {t.escape(item.url)}")
    if item.note:
        lines.append(f"Note: {t.escape(preview(item.note, ANSWER_PREVIEW_MAX))}")
    needed = missing(present, incident.severity)
    lines.append(
        f"Still missing for the {incident.severity.label} restart gate: {_kinds(needed)}."
        if needed
        else f"Everything the {incident.severity.label} restart gate requires is preserved."
    )
    return t.cut("\n".join(lines), t.FALLBACK_TEXT_MAX)
