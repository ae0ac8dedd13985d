"""The incident card, the announcement digest, the channel topic and `/incident list`."""

from collections.abc import Sequence
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
)

from bot.domain.containment import MAX_ATTEMPTS, MOVE_LABELS, applicable_moves, plan_for
from bot.domain.enums import DeliveryEvent, DeliveryState, IncidentStatus, Severity
from bot.domain.models import CardFacts, Delivery, Incident, PostmortemCard, TimelineEntry
from bot.domain.policy import Agent
from bot.domain.severity import IMPACT_LABELS, SEVERITY_TABLE, suggest_severity
from bot.render import text as t
from bot.render.evidence import ADD_EVIDENCE, evidence_blocks
from bot.render.gate import restart_blocks, restart_buttons
from bot.render.postmortem import postmortem_blocks, postmortem_buttons
from bot.render.rollback import ledger_blocks, rollback_buttons
from bot.render.updates import digest_update_block

CHANGE_SEVERITY = "incident_change_severity"
CLOSE_INCIDENT = "incident_close"
POST_UPDATE = "incident_post_update"
APPROVE_CONTAINMENT = "incident_approve_containment"
CONTAINMENT_PLAN = "incident_containment_plan"
RETRY_DELIVERY = "incident_retry_delivery"
PLAN_BLOCK = "containment:"  # + the incident number: checkboxes carry no value of their own
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


def card_blocks(
    incident: Incident,
    agent: Agent | None,
    facts: CardFacts = CardFacts(),  # noqa: B008 (frozen)
) -> list[dict]:
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
    if incident.automatic:
        note = f":robot_face: Rein acted by itself: {t.mrkdwn(incident.automatic, 500)}"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=note)]))
    rule = SEVERITY_TABLE[sev]
    checklist = "\n".join(f"☐ {item}" for item in rule.required_response)
    blocks += [
        DividerBlock(),
        SectionBlock(text=f"*Required response for {sev.label}*\n{checklist}"),
        ContextBlock(elements=[MarkdownTextObject(text=f"{sev.label} is for: {rule.example}")]),
        *containment_blocks(incident, agent, facts.deliveries),
    ]
    blocks += evidence_blocks(incident, facts)
    blocks += ledger_blocks(incident, facts.ledger)
    blocks += postmortem_blocks(incident, facts.postmortem)
    blocks += restart_blocks(incident, facts.restart)
    buttons = card_buttons(incident, facts.deliveries, facts.postmortem)
    buttons += restart_buttons(incident, facts.restart)
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


def containment_blocks(
    incident: Incident, agent: Agent | None, deliveries: Sequence[Delivery]
) -> list[Block]:
    if incident.status is IncidentStatus.DECLARED:
        return _plan_blocks(incident, agent)
    if incident.containment_plan is None:  # never contained (triage, dismissed, SEV-4 closed)
        return []
    return _containment_state_blocks(incident, agent, deliveries)


def _plan_blocks(incident: Incident, agent: Agent | None) -> list[Block]:
    plan = plan_for(incident, agent)
    options = [Option(value=m.value, text=MOVE_LABELS[m]) for m in applicable_moves(agent)]
    how = (
        "the autonomy API alone holds it: this agent has no kill switch"
        if agent is not None and agent.kill_switch is None
        else "its kill switch is told"
    )
    return [
        SectionBlock(
            text=f"*Containment plan* — approving pauses the agent at once and {how}. "
            "Adjust the moves before approving if needed."
        ),
        ActionsBlock(
            block_id=f"{PLAN_BLOCK}{incident.number}",
            elements=[
                CheckboxesElement(
                    action_id=CONTAINMENT_PLAN,
                    options=options,
                    initial_options=[o for o in options if o.value in plan] or None,
                ),
                ButtonElement(
                    text="Approve containment",
                    action_id=APPROVE_CONTAINMENT,
                    value=str(incident.number),
                    style="danger",
                ),
            ],
        ),
    ]


def _containment_state_blocks(
    incident: Incident, agent: Agent | None, deliveries: Sequence[Delivery]
) -> list[Block]:
    delivery = _latest(deliveries, DeliveryEvent.CONTAINMENT)
    icon, state = _delivery_state(delivery, agent is not None and agent.kill_switch is None)
    lines = "\n".join(f"{icon} {MOVE_LABELS[m]} — {state}" for m in plan_for(incident, agent))
    blocks: list[Block] = [SectionBlock(text=t.cut(f"*Containment*\n{lines}", t.SECTION_TEXT_MAX))]
    if delivery is not None and delivery.state is DeliveryState.UNCONFIRMED:
        last = t.escape(delivery.last_error or "unknown")
        warning = (
            ":rotating_light: *Containment NOT CONFIRMED.* The kill switch did not acknowledge "
            f"after {delivery.attempts} attempts (last: {last}). The autonomy API already "
            f"answers `{delivery.mode.value}`; make sure the agent really stopped."
        )
        blocks.append(SectionBlock(text=t.cut(warning, t.SECTION_TEXT_MAX)))
    return blocks


def _latest(deliveries: Sequence[Delivery], event: DeliveryEvent) -> Delivery | None:
    matching = [d for d in deliveries if d.event is event]
    return matching[-1] if matching else None


def _delivery_state(delivery: Delivery | None, no_kill_switch: bool) -> tuple[str, str]:
    if delivery is None:
        if no_kill_switch:
            return ":lock:", "held by the autonomy API (no kill switch)"
        return ":lock:", "held by the autonomy API"
    if delivery.state is DeliveryState.CONFIRMED:
        return ":white_check_mark:", "confirmed by the kill switch"
    if delivery.state is DeliveryState.UNCONFIRMED:
        return ":rotating_light:", "*NOT CONFIRMED* by the kill switch"
    if delivery.attempts == 0:
        return ":hourglass_flowing_sand:", "delivering to the kill switch…"
    return (
        ":repeat:",
        f"retrying (attempt {delivery.attempts + 1} of {MAX_ATTEMPTS}; "
        f"last: {t.escape(delivery.last_error or 'unknown')})",
    )


def card_buttons(
    incident: Incident,
    deliveries: Sequence[Delivery] = (),
    postmortem: PostmortemCard | None = None,
) -> list[ButtonElement]:
    """Only the moves that fit the status. Later capabilities add theirs here."""
    value = str(incident.number)
    buttons: list[ButtonElement] = []
    unconfirmed = [d for d in deliveries if d.state is DeliveryState.UNCONFIRMED]
    if unconfirmed and incident.status.is_open:
        buttons.append(
            ButtonElement(
                text="Retry delivery",
                action_id=RETRY_DELIVERY,
                value=unconfirmed[-1].id,
                style="danger",
            )
        )
    if incident.status.is_open and incident.status is not IncidentStatus.TRIAGE:
        buttons.append(
            ButtonElement(text="Change severity", action_id=CHANGE_SEVERITY, value=value)
        )
        buttons.append(ButtonElement(text="Add evidence", action_id=ADD_EVIDENCE, value=value))
        buttons.append(ButtonElement(text="Post update", action_id=POST_UPDATE, value=value))
    buttons += rollback_buttons(incident)
    buttons += postmortem_buttons(incident, postmortem)
    if incident.status is IncidentStatus.DECLARED and incident.severity is Severity.SEV4:
        buttons.append(ButtonElement(text="Close incident", action_id=CLOSE_INCIDENT, value=value))
    return buttons


def digest_blocks(
    incident: Incident, agent: Agent | None, latest_update: TimelineEntry | None = None
) -> list[dict]:
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
            *digest_update_block(latest_update),
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
