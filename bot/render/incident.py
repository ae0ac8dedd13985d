"""The incident card, the announcement digest, the channel topic and `/incident list`."""

from collections.abc import Sequence
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.domain.enums import IncidentStatus, Severity
from bot.domain.models import Incident
from bot.domain.policy import Agent
from bot.domain.severity import IMPACT_LABELS, SEVERITY_TABLE, suggest_severity
from bot.render import text as t

CHANGE_SEVERITY = "incident_change_severity"
CLOSE_INCIDENT = "incident_close"
LIST_LINES_MAX = 400

_SEVERITY_ICON = {
    Severity.SEV1: ":red_circle:",
    Severity.SEV2: ":large_orange_circle:",
    Severity.SEV3: ":large_yellow_circle:",
    Severity.SEV4: ":white_circle:",
}


def headline(incident: Incident) -> str:
    """The message's `text`: notifications and screen readers see it, and Slack parses it as
    mrkdwn, so the title is escaped like any outside text."""
    title = t.escape(" ".join(incident.title.split()))
    return t.cut(
        f"{incident.ref} · {incident.severity.label} · {incident.status} · {title}",
        t.FALLBACK_TEXT_MAX,
    )


def agent_label(agent_id: str, agent: Agent | None) -> str:
    if agent is None:
        return f"`{t.escape(agent_id)}` (no longer in the policy file)"
    return f"{t.escape(agent.name)} (`{t.escape(agent.id)}`)"


def card_blocks(incident: Incident, agent: Agent | None) -> list[dict]:
    sev = incident.severity
    blocks: list[Block] = [
        HeaderBlock(
            text=t.plain(f"{incident.ref} · {sev.label} · {incident.title}", t.HEADER_TEXT_MAX)
        ),
        SectionBlock(
            fields=[
                MarkdownTextObject(text=f"*Status*\n{incident.status}"),
                MarkdownTextObject(text=f"*Severity*\n{_SEVERITY_ICON[sev]} {sev.label}"),
                MarkdownTextObject(
                    text=t.cut(
                        f"*Agent*\n{agent_label(incident.agent_id, agent)}", t.FIELD_TEXT_MAX
                    )
                ),
                MarkdownTextObject(text=f"*Commander*\n{t.user(incident.commander)}"),
                MarkdownTextObject(
                    text=f"*Declared*\n{t.date(incident.declared_at or incident.created_at)}"
                ),
                MarkdownTextObject(text=f"*Channel*\n{t.channel(incident.channel_id)}"),
            ]
        ),
    ]
    if incident.summary:
        blocks.append(
            SectionBlock(
                text=t.cut(f"*What happened*\n{t.escape(incident.summary)}", t.SECTION_TEXT_MAX)
            )
        )
    impact = impact_line(incident)
    if impact:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=impact)]))
    rule = SEVERITY_TABLE[sev]
    checklist = "\n".join(f"☐ {item}" for item in rule.required_response)
    blocks += [
        DividerBlock(),
        SectionBlock(text=f"*Required response for {sev.label}*\n{checklist}"),
        ContextBlock(elements=[MarkdownTextObject(text=f"{sev.label} is for: {rule.example}")]),
    ]
    buttons = card_buttons(incident)
    if buttons:
        blocks.append(ActionsBlock(block_id="card_actions", elements=buttons))
    return t.to_dicts(blocks)


def impact_line(incident: Incident) -> str:
    impact = incident.impact
    ticked = [label for name, label in IMPACT_LABELS.items() if getattr(impact, name)]
    if impact.records_touched:
        ticked.append(f"{impact.records_touched} records touched")
    if not ticked:
        return ""
    suggestion = suggest_severity(impact)
    return t.cut(
        f"*Impact:* {', '.join(ticked)} · Rein suggested {suggestion.severity.label} "
        f"({suggestion.reason})",
        t.SECTION_TEXT_MAX,
    )


def card_buttons(incident: Incident) -> list[ButtonElement]:
    """Only the moves that fit the status. Later capabilities add theirs here."""
    value = str(incident.number)
    buttons: list[ButtonElement] = []
    if incident.status.is_open and incident.status is not IncidentStatus.TRIAGE:
        buttons.append(
            ButtonElement(text="Change severity", action_id=CHANGE_SEVERITY, value=value)
        )
    if incident.status is IncidentStatus.DECLARED and incident.severity is Severity.SEV4:
        buttons.append(ButtonElement(text="Close incident", action_id=CLOSE_INCIDENT, value=value))
    return buttons


def digest_blocks(incident: Incident, agent: Agent | None) -> list[dict]:
    sev = incident.severity
    line = (
        f"{_SEVERITY_ICON[sev]} *{incident.ref}* · {sev.label} · *{incident.status}* — "
        f"{t.mrkdwn(incident.title, 200)}"
    )
    details = (
        f"Agent: {agent_label(incident.agent_id, agent)} · "
        f"Commander: {t.user(incident.commander)} · {t.channel(incident.channel_id)}"
    )
    when = (
        f"Declared {t.date(incident.declared_at or incident.created_at)} · "
        f"updated {t.date(incident.updated_at)}"
    )
    return t.to_dicts(
        [
            SectionBlock(text=t.cut(f"{line}\n{details}", t.SECTION_TEXT_MAX)),
            ContextBlock(elements=[MarkdownTextObject(text=when)]),
        ]
    )


def topic(incident: Incident) -> str:
    """Topics are plain: the commander is named by mention so Slack renders the name."""
    return t.cut(
        f"{incident.severity.label} · {incident.status} · commander <@{incident.commander}> · "
        f"{t.escape(incident.title)}",
        t.TOPIC_MAX,
    )


def list_blocks(incidents: Sequence[Incident], now: datetime) -> list[dict]:
    if not incidents:
        return t.to_dicts([SectionBlock(text="No open incidents. :white_check_mark:")])
    sections: list[list[str]] = [[]]
    for incident in incidents[:LIST_LINES_MAX]:
        line = _list_line(incident, now)
        if sections[-1] and sum(len(x) + 1 for x in sections[-1]) + len(line) > t.SECTION_TEXT_MAX:
            if len(sections) == t.MESSAGE_BLOCKS_MAX - 2:  # room for the header and "…more"
                break
            sections.append([])
        sections[-1].append(line)
    shown = sum(len(lines) for lines in sections)
    blocks: list[Block] = [SectionBlock(text=f"*Open incidents: {len(incidents)}*")]
    blocks += [SectionBlock(text="\n".join(lines)) for lines in sections]
    if shown < len(incidents):
        more = f"…and {len(incidents) - shown} more: `GET /v1/incidents?status=open`"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=more)]))
    return t.to_dicts(blocks)


def _list_line(incident: Incident, now: datetime) -> str:
    title = t.mrkdwn(" ".join(incident.title.split()), 120)  # one line per incident
    return (
        f"{_SEVERITY_ICON[incident.severity]} *{incident.ref}* {incident.severity.label} · "
        f"{incident.status} · {title} · {t.channel(incident.channel_id)} · "
        f"{t.age(incident.declared_at or incident.created_at, now)} old"
    )


def superseded_blocks() -> list[dict]:
    return t.to_dicts(
        [
            ContextBlock(
                elements=[
                    MarkdownTextObject(text="_This card moved: the current one is further down._")
                ]
            )
        ]
    )
