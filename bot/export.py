"""An incident as JSON (the HTTP API's shape, also `rein export --format json`) and as Markdown."""

from collections.abc import Sequence
from typing import Any

from bot.domain.enums import EvidenceKind
from bot.domain.models import Incident, TimelineEntry
from bot.domain.severity import IMPACT_LABELS
from storage.db import to_db_time


def _time(value: Any) -> str | None:
    return to_db_time(value) if value is not None else None


def incident_summary(incident: Incident) -> dict[str, Any]:
    return {
        "ref": incident.ref,
        "number": incident.number,
        "title": incident.title,
        "status": incident.status.value,
        "severity": incident.severity.value,
        "agent": incident.agent_id,
        "commander": incident.commander,
        "channel": incident.channel_id,
        "declared_at": _time(incident.declared_at),
        "updated_at": _time(incident.updated_at),
    }


def incident_document(incident: Incident, timeline: Sequence[TimelineEntry]) -> dict[str, Any]:
    return {
        **incident_summary(incident),
        "summary": incident.summary,
        "impact": incident.impact.model_dump(),
        "timeline": [
            {
                "at": _time(e.at),
                "actor": e.actor,
                "kind": e.kind.value,
                "text": e.text,
                "data": e.data,
            }
            for e in timeline
        ],
        # Evidence and the rollback ledger arrive with their own capability; until then an
        # incident truthfully has none, and every kind is missing.
        "evidence": [],
        "evidence_missing": [kind.value for kind in EvidenceKind if kind is not EvidenceKind.OTHER],
        "rollback": [],
    }


def _md_cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def incident_markdown(incident: Incident, timeline: Sequence[TimelineEntry]) -> str:
    impact = incident.impact
    ticked = [label for name, label in IMPACT_LABELS.items() if getattr(impact, name)]
    if impact.records_touched:
        ticked.append(f"{impact.records_touched} records touched")
    lines = [
        f"# {incident.ref}: {_md_cell(incident.title)}",
        "",
        f"- Severity: {incident.severity.label}",
        f"- Status: {incident.status}",
        f"- Agent: {incident.agent_id}",
        f"- Commander: {incident.commander}",
        f"- Declared: {_time(incident.declared_at) or 'not declared'}",
        f"- Updated: {_time(incident.updated_at)}",
        f"- Channel: {incident.channel_name or incident.channel_id or 'none'}",
        f"- Impact: {', '.join(ticked) or 'none recorded'}",
        "",
    ]
    if incident.summary:
        lines += ["## What happened", "", incident.summary, ""]
    lines += ["## Timeline (UTC)", "", "| when | who | what | |", "|---|---|---|---|"]
    lines += [
        f"| {_time(e.at)} | {_md_cell(e.actor)} | {e.kind} | {_md_cell(e.text)} |" for e in timeline
    ]
    return "\n".join(lines) + "\n"
