"""An incident as JSON (the HTTP API's shape, also `rein export --format json`) and as Markdown."""

import re
from collections.abc import Iterable, Sequence
from typing import Any

from bot.domain.enums import EvidenceKind
from bot.domain.evidence import EvidenceItem, absent, missing
from bot.domain.models import Incident, TimelineEntry
from bot.domain.rollback import RollbackItem, counts_of, progress
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


def evidence_item(item: EvidenceItem) -> dict[str, Any]:
    """One item, whole and verbatim (JSON needs no escaping; Slack never sees this)."""
    return {
        "id": item.id,
        "kind": item.kind.value,
        "content": item.content,
        "url": item.url,
        "source": item.source,
        "note": item.note,
        "bytes": item.size,
        "added_by": item.added_by,
        "added_at": _time(item.added_at),
    }


def evidence_completeness(incident: Incident, kinds: Iterable[EvidenceKind]) -> dict[str, Any]:
    """`evidence_missing`: every playbook kind no item has yet; `evidence_missing_for_restart`:
    those of them the restart gate requires at the incident's severity."""
    present = frozenset(kinds)
    return {
        "evidence_missing": [k.value for k in absent(present)],
        "evidence_missing_for_restart": [k.value for k in missing(present, incident.severity)],
    }


def evidence_recorded(
    incident: Incident, item: EvidenceItem, kinds: Iterable[EvidenceKind]
) -> dict[str, Any]:
    """What `POST /v1/incidents/{ref}/evidence` answers."""
    return {
        "incident": incident.ref,
        **evidence_item(item),
        **evidence_completeness(incident, kinds),
    }


def rollback_item(item: RollbackItem) -> dict[str, Any]:
    """One ledger item, verbatim; `by` and `at`: who set its status, and when."""
    return {
        "id": item.id,
        "system": item.system,
        "record": item.record,
        "before": item.before,
        "after": item.after,
        "status": item.status.value,
        "reason": item.reason,
        "by": item.by,
        "at": _time(item.at),
    }


def incident_document(
    incident: Incident,
    timeline: Sequence[TimelineEntry],
    *,
    evidence: Sequence[EvidenceItem] = (),
    rollback: Sequence[RollbackItem] = (),
) -> dict[str, Any]:
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
        "evidence": [evidence_item(item) for item in evidence],
        **evidence_completeness(incident, (item.kind for item in evidence)),
        "rollback": [rollback_item(item) for item in rollback],
    }


def _md_cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _fence(text: str) -> str:
    """A fenced block that the text itself cannot close: longer than any backtick run in it."""
    runs = [len(run) for run in re.findall(r"`+", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return f"{fence}text\n{text}\n{fence}"


def _code(text: str) -> str:
    """One line of outside text as an inline code span, so Markdown never interprets it."""
    line = " ".join(text.split())
    runs = [len(run) for run in re.findall(r"`+", line)]
    ticks = "`" * (max(runs, default=0) + 1)
    return f"{ticks} {line} {ticks}"


def evidence_markdown(incident: Incident, evidence: Sequence[EvidenceItem]) -> list[str]:
    """The evidence section of the export: completeness, then every item whole."""
    present = frozenset(item.kind for item in evidence)
    needed = missing(present, incident.severity)
    others = [k for k in absent(present) if k not in needed]
    lines = ["## Evidence", ""]
    lines.append(
        f"- Missing for the {incident.severity.label} restart gate: "
        + (", ".join(k.value for k in needed) if needed else "nothing")
    )
    if others:
        lines.append(f"- Also missing: {', '.join(k.value for k in others)}")
    lines.append(f"- Items: {len(evidence)}")
    lines.append("")
    for item in evidence:
        lines += [f"### Evidence {item.id}: {item.kind.value}", ""]
        lines.append(f"- Added: {_time(item.added_at)} by {_md_cell(item.added_by)}")
        if item.source:
            lines.append(f"- Source: {_code(item.source)}")
        if item.url:
            lines.append(f"- URL: {_code(item.url)}")
        if item.content is not None:
            lines.append(f"- Content: {item.size} bytes")
        lines.append("")
        if item.content is not None:
            lines += [_fence(item.content), ""]
        if item.note:
            lines += ["Note:", "", _fence(item.note), ""]
    return lines


def ledger_markdown(rollback: Sequence[RollbackItem]) -> list[str]:
    """The rollback ledger section of the export: progress, then every item, values whole."""
    lines = ["## Rollback ledger", "", f"- {progress(counts_of(rollback))}", ""]
    if not rollback:
        return lines
    lines += [
        "| # | system | record | before | after | status | by | when | reason |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for item in rollback:
        cells = [item.system, item.record, item.before, item.after]
        shown = [_code(c).replace("|", "\\|") if c and c.strip() else "—" for c in cells]
        reason = _code(item.reason).replace("|", "\\|") if item.reason else ""
        lines.append(
            f"| {item.id} | {' | '.join(shown)} | {item.status.value} | {_md_cell(item.by)} "
            f"| {_time(item.at)} | {reason} |"
        )
    return [*lines, ""]


def incident_markdown(
    incident: Incident,
    timeline: Sequence[TimelineEntry],
    *,
    evidence: Sequence[EvidenceItem] = (),
    rollback: Sequence[RollbackItem] = (),
) -> str:
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
    lines += ["", *evidence_markdown(incident, evidence)]
    lines += ["", *ledger_markdown(rollback)]
    return "\n".join(lines) + "\n"
