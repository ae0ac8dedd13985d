"""The triage message: an alert from the HTTP API, posted in the triage channel with
**Declare incident** and **Dismiss**, then edited to show the counter and what people decided.
Everything in an alert came from outside: it is escaped and cut before it is shown."""

from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    MarkdownTextObject,
    SectionBlock,
)

from bot.domain.enums import IncidentStatus
from bot.domain.models import Incident, TimelineEntry
from bot.domain.policy import Agent
from bot.render import text as t
from bot.render.incident import _SEVERITY_ICON as SEVERITY_ICON  # one icon per severity
from bot.render.incident import agent_label

DECLARE_ALERT = "triage_declare"
DISMISS_ALERT = "triage_dismiss"
ACTIONS_BLOCK = "triage_actions"
FINGERPRINT_SHOWN = 200

KIND_LABELS = {
    "cost_spike": "Cost spike",
    "failed_scorecard": "Failed scorecard",
    "anomaly": "Anomaly",
    "human_report": "Human report",
    "customer_complaint": "Customer complaint",
}


def kind_label(kind: str | None) -> str:
    return KIND_LABELS.get(kind or "", "Alert")


def triage_text(incident: Incident, alert: TimelineEntry | None) -> str:
    """The message's `text` (notifications): escaped like the blocks, since Slack parses it."""
    summary = _alert(alert).get("summary") or incident.title
    line = " ".join(str(summary).split())
    return t.cut(
        f"{incident.ref} · {kind_label(incident.alert_kind)} alert from "
        f"{t.escape(incident.agent_id)} · {incident.status}: {t.escape(line)}",
        t.FALLBACK_TEXT_MAX,
    )


def triage_blocks(
    incident: Incident,
    agent: Agent | None,
    alert: TimelineEntry | None,
    decision: TimelineEntry | None,
) -> list[dict]:
    """`alert`: the incident's first alert entry (its fields as sent); `decision`: the move
    out of triage (declared or dismissed), once someone or something made it."""
    fields = _alert(alert)
    summary = str(fields.get("summary") or incident.title)
    details = str(fields.get("details") or "").strip()
    blocks: list[Block] = [
        SectionBlock(
            text=t.cut(
                f":rotating_light: *{incident.ref}* · *{kind_label(incident.alert_kind)} alert* "
                f"from {agent_label(incident.agent_id, agent)}",
                t.SECTION_TEXT_MAX,
            )
        ),
        SectionBlock(text=t.cut(f"*Summary*\n{t.escape(summary)}", t.SECTION_TEXT_MAX)),
    ]
    if details:
        blocks.append(
            SectionBlock(text=t.cut(f"*Details*\n{t.escape(details)}", t.SECTION_TEXT_MAX))
        )
    blocks.append(SectionBlock(fields=_facts(incident, agent, fields)))
    if incident.status is IncidentStatus.TRIAGE:
        blocks.append(_buttons(incident))
    else:
        blocks.append(SectionBlock(text=t.cut(_outcome(incident, decision), t.SECTION_TEXT_MAX)))
    return t.to_dicts(blocks)


def _alert(entry: TimelineEntry | None) -> dict[str, Any]:
    return entry.data if entry is not None else {}


def _facts(incident: Incident, agent: Agent | None, alert: dict[str, Any]) -> list[Any]:
    sev = incident.severity
    if incident.status is IncidentStatus.TRIAGE:
        reason = alert.get("suggested_reason")
        why = f"\n_{t.escape(str(reason))}_" if reason else ""
        severity = f"*Suggested severity*\n{SEVERITY_ICON[sev]} {sev.label}{why}"
    else:
        severity = f"*Severity*\n{SEVERITY_ICON[sev]} {sev.label}"
    times = "once" if incident.alert_count <= 1 else f"*{incident.alert_count}* times"
    facts = [
        t.cut(severity, t.FIELD_TEXT_MAX),
        f"*Received*\n{times} · first {t.date(incident.created_at)}",
    ]
    if agent is not None:
        facts.append(f"*Agent owner*\n{t.user(agent.owner)}")
    if incident.fingerprint:
        facts.append(f"*Fingerprint*\n{t.mrkdwn(incident.fingerprint, FINGERPRINT_SHOWN)}")
    return [MarkdownTextObject(text=text) for text in facts]


def _buttons(incident: Incident) -> ActionsBlock:
    value = str(incident.number)
    return ActionsBlock(
        block_id=ACTIONS_BLOCK,
        elements=[
            ButtonElement(
                text="Declare incident", action_id=DECLARE_ALERT, value=value, style="primary"
            ),
            ButtonElement(
                text="Dismiss",
                action_id=DISMISS_ALERT,
                value=value,
                confirm=ConfirmObject(
                    title="Dismiss this alert?",
                    text=f"{incident.ref} is recorded as a false alarm and closed for good. "
                    "If the same alert comes again, it opens a new incident.",
                    confirm="Dismiss",
                    deny="Keep it",
                ),
            ),
        ],
    )


def _outcome(incident: Incident, decision: TimelineEntry | None) -> str:
    when = f" {t.date(decision.at)}" if decision is not None else ""
    where = t.channel(incident.channel_id) if incident.channel_id else "no channel of its own"
    if incident.status is IncidentStatus.DISMISSED:
        who = t.user(decision.actor) if decision is not None else "someone"
        return f":no_entry_sign: *Dismissed* as a false alarm by {who}{when}."
    if incident.automatic and (decision is None or decision.actor == "rein"):
        line = (
            f":robot_face: *Rein declared {incident.ref} by itself*{when} "
            f"({t.mrkdwn(incident.automatic, 500)})"
        )
        if incident.containment_plan is not None:
            line += f" and paused `{t.escape(incident.agent_id)}`"
        line += f". Commander: {t.user(incident.commander)} · {where}"
    else:
        who = t.user(decision.actor) if decision is not None else t.user(incident.commander)
        line = f":white_check_mark: *Declared* by {who}{when} · {where}"
    if incident.status is not IncidentStatus.DECLARED:
        line += f"\nNow *{incident.status}*."
    return line
