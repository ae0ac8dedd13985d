"""An incident as JSON (the HTTP API's shape, also `rein export --format json`) and as Markdown."""

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from bot.domain.enums import EvidenceKind, Severity, TimelineKind
from bot.domain.evidence import EvidenceItem, absent, missing
from bot.domain.models import Incident, LedgerCounts, TimelineEntry
from bot.domain.postmortem import PARTS, Phases, Postmortem, duration, phases
from bot.domain.rollback import RollbackItem, counts_of, progress
from bot.domain.severity import IMPACT_LABELS
from bot.render.text import clean
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


def timeline_item(entry: TimelineEntry) -> dict[str, Any]:
    return {
        "at": _time(entry.at),
        "actor": entry.actor,
        "kind": entry.kind.value,
        "text": entry.text,
        "data": entry.data,
    }


def incident_document(
    incident: Incident,
    timeline: Sequence[TimelineEntry],
    *,
    evidence: Sequence[EvidenceItem] = (),
    rollback: Sequence[RollbackItem] = (),
    postmortem: Postmortem | None = None,
) -> dict[str, Any]:
    phase = phases(incident, timeline)
    return {
        **incident_summary(incident),
        "summary": incident.summary,
        "impact": incident.impact.model_dump(),
        "phases": {f"{name}_at": _time(at) for name, at in phase.points()},
        "postmortem": postmortem_item(postmortem) if postmortem else None,
        "timeline": [timeline_item(e) for e in timeline],
        "evidence": [evidence_item(item) for item in evidence],
        **evidence_completeness(incident, (item.kind for item in evidence)),
        "rollback": [rollback_item(item) for item in rollback],
    }


# Outside text in Markdown is shown as typed: these are backslash-escaped, and `&`, `<`, `>`
# become entities, so no text can open a code span, a link, HTML, a table cell or a fence.
_MD_INLINE = re.compile(r"([\\`*_\[\]|~])")
# At the start of a line these would make a heading, a list, a quote or a setext underline.
_MD_LINE_START = re.compile(r"^(\s*)([#=+-]|\d+(?=[.)]))")


def _md_inline(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_INLINE.sub(r"\\\1", text)


def _md_cell(text: str) -> str:
    """One line of outside text in a table cell, a heading or a list item."""
    return _md_inline(" ".join(clean(text).split()))


def _md_prose(text: str) -> str:
    """Outside text as paragraphs that keep their line breaks, every character shown as
    typed (the JSON export has it verbatim)."""
    raw = clean(text).split("\n")
    lines = [_MD_LINE_START.sub(_escape_start, _md_inline(line.rstrip())) for line in raw]
    shown = []
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        hard_break = line.strip() and following.strip()
        shown.append(line + "\\" if hard_break else line)
    return "\n".join(shown).strip("\n")


def _escape_start(match: re.Match[str]) -> str:
    indent, mark = match.group(1), match.group(2)
    if mark[0].isdigit():  # `1.` or `1)`: escape the punctuation after the number
        return f"{indent}{mark}\\"
    return f"{indent}\\{mark}"


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
    lines = evidence_heading(incident, present, len(evidence))
    for item in evidence:
        lines += evidence_item_markdown(item)
    return lines


def evidence_heading(incident: Incident, present: frozenset[EvidenceKind], count: int) -> list[str]:
    """The evidence section up to its first item: completeness and the number of items."""
    needed = missing(present, incident.severity)
    others = [k for k in absent(present) if k not in needed]
    lines = ["## Evidence", ""]
    lines.append(
        f"- Missing for the {incident.severity.label} restart gate: "
        + (", ".join(k.value for k in needed) if needed else "nothing")
    )
    if others:
        lines.append(f"- Also missing: {', '.join(k.value for k in others)}")
    lines.append(f"- Items: {count}")
    lines.append("")
    return lines


def evidence_item_markdown(item: EvidenceItem) -> list[str]:
    """One evidence item, whole, in a fence its content cannot close."""
    lines = [f"### Evidence {item.id}: {item.kind.value}", ""]
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
    lines = ledger_heading(counts_of(rollback))
    if not rollback:
        return lines
    return [*lines, *(ledger_row(item) for item in rollback), ""]


def ledger_heading(counts: LedgerCounts) -> list[str]:
    """The ledger section up to its first item: progress, and the table's header if any."""
    lines = ["## Rollback ledger", "", f"- {progress(counts)}", ""]
    if not counts.total:
        return lines
    return [
        *lines,
        "| # | system | record | before | after | status | by | when | reason |",
        "|---|---|---|---|---|---|---|---|---|",
    ]


def ledger_row(item: RollbackItem) -> str:
    cells = [item.system, item.record, item.before, item.after]
    shown = [_code(c).replace("|", "\\|") if c and c.strip() else "—" for c in cells]
    reason = _code(item.reason).replace("|", "\\|") if item.reason else ""
    return (
        f"| {item.id} | {' | '.join(shown)} | {item.status.value} | {_md_cell(item.by)} "
        f"| {_time(item.at)} | {reason} |"
    )


def postmortem_item(postmortem: Postmortem) -> dict[str, Any]:
    """The postmortem, its five parts verbatim."""
    return {
        "state": postmortem.state.value,
        "revision": postmortem.revision,
        **{part.key: getattr(postmortem.parts, part.key) for part in PARTS},
        "started_by": postmortem.started_by,
        "started_at": _time(postmortem.started_at),
        "updated_by": postmortem.updated_by,
        "updated_at": _time(postmortem.updated_at),
        "completed_by": postmortem.completed_by,
        "completed_at": _time(postmortem.completed_at),
    }


def severity_markdown(incident: Incident, timeline: Sequence[TimelineEntry]) -> list[str]:
    """The severity now, and every change with who, when and why."""
    changes = [e for e in timeline if e.kind is TimelineKind.SEVERITY_CHANGED]
    first = Severity(changes[0].data["from"]) if changes else incident.severity
    start = incident.declared_at or incident.created_at
    lines = ["## Severity", "", f"- Now: {incident.severity.label}"]
    lines.append(f"- {_time(start)}: {first.label} when declared")
    for entry in changes:
        before, after = Severity(entry.data["from"]), Severity(entry.data["to"])
        reason = str(entry.data.get("reason") or "")
        why = f": {_md_cell(reason)}" if reason else ""
        lines.append(
            f"- {_time(entry.at)}: {before.label} → {after.label} by {_md_cell(entry.actor)}{why}"
        )
    return [*lines, ""]


def _no_triage(phase: Phases) -> bool:
    """Declared at once (no alert waited in triage): detection and declaration are one."""
    return phase.declared is not None and phase.declared == phase.detected


_SPANS = (
    ("detected", "declared", "Detected → declared"),
    ("declared", "contained", "Declared → contained"),
    ("contained", "recovered", "Contained → recovered"),
    ("detected", "recovered", "Detected → recovered (impact over)"),
    ("recovered", "postmortem", "Recovered → postmortem completed"),
    ("postmortem", "closed", "Postmortem → closed"),
)


def durations_markdown(phase: Phases) -> list[str]:
    """How long each step took; a step not reached yet says so (no clock in the document)."""
    at = dict(phase.points())
    lines = ["## Key durations", "", "| from | to | took |", "|---|---|---|"]
    for start, end, label in _SPANS:
        if start not in at or ((start, end) == ("detected", "declared") and _no_triage(phase)):
            continue
        took = duration((at[end] - at[start]).total_seconds()) if end in at else "not yet"
        until = _time(at.get(end)) or "—"
        lines.append(f"| {label}: {_time(at[start])} | {until} | {took} |")
    return [*lines, ""]


# Each bar is named for the status the incident was in (plain words: a Mermaid task name
# must not hold `:`, `#` or `;`).
_PHASE_LABELS = {
    "detected": "Triage",
    "declared": "Declared",
    "contained": "Contained",
    "recovered": "Recovered",
    "postmortem": "Postmortem",
    "closed": "Closed",
}


def _gantt_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def mermaid_markdown(incident: Incident, phase: Phases) -> list[str]:
    """A Mermaid gantt chart of the phases (UTC). Its labels are Rein's own words, never
    outside text, so nothing a user typed can break the diagram."""
    points = [p for p in phase.points() if p[0] != "detected" or not _no_triage(phase)]
    lines = [
        "## Phases (UTC)",
        "",
        "```mermaid",
        "gantt",
        f"    title {incident.ref} phases (UTC)",
        "    dateFormat YYYY-MM-DD HH:mm:ss",
        "    axisFormat %m-%d %H:%M",
        f"    section {incident.ref}",
    ]
    for i, (name, start) in enumerate(points):
        label = _PHASE_LABELS[name]
        if i + 1 < len(points):
            end = points[i + 1][1]
            lines.append(f"    {label} :done, p{i + 1}, {_gantt_time(start)}, {_gantt_time(end)}")
        else:
            lines.append(f"    {label} :milestone, p{i + 1}, {_gantt_time(start)}, 0m")
    return [*lines, "```", ""]


def postmortem_markdown(postmortem: Postmortem | None) -> list[str]:
    """The five parts, each as written (escaped so that it shows as typed)."""
    lines = ["## Postmortem", ""]
    if postmortem is None:
        return [*lines, "- Not started.", ""]
    if postmortem.completed:
        state = (
            f"completed by {_md_cell(postmortem.completed_by or '')} at "
            f"{_time(postmortem.completed_at)}"
        )
    else:
        state = (
            f"draft, last saved by {_md_cell(postmortem.updated_by)} at "
            f"{_time(postmortem.updated_at)}"
        )
    lines += [
        f"- State: {state} (revision {postmortem.revision})",
        f"- Started by {_md_cell(postmortem.started_by)} at {_time(postmortem.started_at)}",
        "",
    ]
    for number, part in enumerate(PARTS, start=1):
        text = getattr(postmortem.parts, part.key)
        lines += [f"### {number}. {part.label}", "", _md_prose(text) if text else "_Not written._"]
        lines.append("")
    return lines


def incident_markdown(
    incident: Incident,
    timeline: Sequence[TimelineEntry],
    *,
    evidence: Sequence[EvidenceItem] = (),
    rollback: Sequence[RollbackItem] = (),
    postmortem: Postmortem | None = None,
) -> str:
    """The postmortem document: summary, severity and its history, key durations, the phases
    as a Mermaid chart, the five parts, the full timeline (UTC), evidence, rollback ledger.
    It reads the record only (no clock): the same record always gives the same bytes."""
    lines = markdown_head(incident, timeline, postmortem)
    lines += [timeline_row(e) for e in timeline]
    lines += ["", *evidence_markdown(incident, evidence)]
    lines += ["", *ledger_markdown(rollback)]
    return "\n".join(lines) + "\n"


def markdown_head(
    incident: Incident, timeline: Sequence[TimelineEntry], postmortem: Postmortem | None
) -> list[str]:
    """The document up to the timeline's first row. Of the timeline it reads only the status
    and severity changes (bot/services/streamed_export.py passes only those)."""
    impact = incident.impact
    ticked = [label for name, label in IMPACT_LABELS.items() if getattr(impact, name)]
    if impact.records_touched:
        ticked.append(f"{impact.records_touched} records touched")
    phase = phases(incident, timeline)
    lines = [
        f"# {incident.ref}: {_md_cell(incident.title)}",
        "",
        "## Summary",
        "",
        f"- Severity: {incident.severity.label}",
        f"- Status: {incident.status}",
        f"- Agent: {_md_cell(incident.agent_id)}",
        f"- Commander: {_md_cell(incident.commander)}",
        f"- Detected: {_time(phase.detected)}",
        f"- Declared: {_time(incident.declared_at) or 'not declared'}",
        f"- Updated: {_time(incident.updated_at)}",
        f"- Channel: {_md_cell(incident.channel_name or incident.channel_id or 'none')}",
        f"- Impact: {', '.join(ticked) or 'none recorded'}",
        "",
    ]
    if incident.summary:
        lines += ["### What happened", "", _md_prose(incident.summary), ""]
    lines += severity_markdown(incident, timeline)
    lines += durations_markdown(phase)
    lines += mermaid_markdown(incident, phase)
    lines += postmortem_markdown(postmortem)
    return [*lines, "## Timeline (UTC)", "", "| when | who | what | |", "|---|---|---|---|"]


def timeline_row(entry: TimelineEntry) -> str:
    return (
        f"| {_time(entry.at)} | {_md_cell(entry.actor)} | {entry.kind} | {_md_cell(entry.text)} |"
    )
