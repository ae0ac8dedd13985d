"""The playbook's five-part postmortem: its parts and their limits, what completing it needs,
its deadline, and the first draft of the agent's path. Pure: no Slack, no SQL, no clock.

"Postmortems should change the workflow, not just the prompt": business impact, the agent's
path, failed controls, guardrail changes before restart, scorecard updates. Parts are written
by people (and may quote an agent's output): stored verbatim, escaped wherever shown."""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.domain.enums import (
    DeliveryState,
    EvidenceKind,
    IncidentStatus,
    PostmortemState,
    Severity,
    TimelineKind,
)
from bot.domain.evidence import KIND_LABELS, EvidenceBrief, missing, preview
from bot.domain.models import Incident, LedgerCounts, PostmortemCard, TimelineEntry
from bot.domain.policy import DEFAULT_POSTMORTEM_HOURS, Policy
from bot.domain.rollback import progress

PART_MAX = 3000  # Slack's largest max_length for a plain_text_input: a part fits one text box
DUE_BY_DEFAULT = (Severity.SEV1, Severity.SEV2)  # PRODUCT.md: due 48 hours after `recovered`


@dataclass(frozen=True)
class Part:
    key: str  # the modal's block id, the stored column, the key in JSON
    label: str
    hint: str  # the text box's placeholder (at most 150 characters)


PARTS: tuple[Part, ...] = (
    Part(
        "business_impact",
        "Business impact",
        "Who and what was affected, how many, for how long: customers, records, money, exposure",
    ),
    Part(
        "agent_path",
        "The agent's path",
        "What the agent was asked, what it read, which tools it called, what it changed",
    ),
    Part(
        "failed_controls",
        "Failed controls",
        "What should have caught it and did not: task, permissions, evidence, verifier, approval",
    ),
    Part(
        "guardrail_changes",
        "Guardrail changes before restart",
        "What changes in the workflow before the agent runs again; a prompt tweak alone rarely is",
    ),
    Part(
        "scorecard_updates",
        "Scorecard updates",
        "What future reviews check so that this failure mode is caught next time",
    ),
)
PART_LABELS = {part.key: part.label for part in PARTS}
GUARDRAILS = "guardrail_changes"  # part four: the restart gate reads it


class PostmortemParts(BaseModel):
    """The five parts as written (surrounding whitespace trimmed, nothing else changed)."""

    model_config = ConfigDict(frozen=True)

    business_impact: str = ""
    agent_path: str = ""
    failed_controls: str = ""
    guardrail_changes: str = ""
    scorecard_updates: str = ""

    def items(self) -> list[tuple[Part, str]]:
        return [(part, getattr(self, part.key)) for part in PARTS]

    def changed_from(self, before: "PostmortemParts | None") -> dict[str, str]:
        """The parts that differ from `before` (none yet: the parts written), with their text."""
        was = before or PostmortemParts()
        return {part.key: text for part, text in self.items() if getattr(was, part.key) != text}


class Postmortem(BaseModel):
    """One incident's postmortem: a draft anyone may edit, then completed, once, for good."""

    model_config = ConfigDict(frozen=True)

    incident: int
    parts: PostmortemParts
    state: PostmortemState
    revision: int  # 1 at the first save, one more at each save
    started_by: str
    started_at: datetime
    updated_by: str
    updated_at: datetime
    completed_by: str | None = None
    completed_at: datetime | None = None

    @property
    def completed(self) -> bool:
        return self.state is PostmortemState.COMPLETED


class PostmortemError(ValueError):
    """What is wrong with submitted parts, by part key, in words for the form."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def too_long(text: str) -> str:
    return (
        f"At most {PART_MAX} characters (Slack's limit for a text box); this part is "
        f"{len(text)}. Put the detail in evidence (Add evidence) and refer to it here."
    )


def parse_parts(values: Mapping[str, str | None], *, complete: bool) -> PostmortemParts:
    """The parts as typed. Slack's client enforces the limit; a forged or stale submission is
    refused here all the same. Completing needs all five parts, and part four must change the
    workflow, not just the prompt."""
    errors: dict[str, str] = {}
    texts = {part.key: (values.get(part.key) or "").strip() for part in PARTS}
    for part in PARTS:
        text = texts[part.key]
        if len(text) > PART_MAX:
            errors[part.key] = too_long(text)
        elif complete and not text:
            errors[part.key] = (
                f"Write the {part.label.lower()} to complete the postmortem, "
                "or untick Complete to save a draft."
            )
    guardrails = texts[GUARDRAILS]
    if complete and GUARDRAILS not in errors and only_the_prompt(guardrails):
        errors[GUARDRAILS] = (
            "This changes only the prompt. Postmortems should change the workflow: permissions, "
            "evidence, verifier checks, approvals, tests or metrics. Name the workflow change, "
            "or say why there is none."
        )
    if errors:
        raise PostmortemError(errors)
    return PostmortemParts(**texts)


_PROMPT = re.compile(r"\bprompts?\b", re.IGNORECASE)
# Words that name a change beyond the prompt (or say plainly that the workflow stays).
_WORKFLOW = re.compile(
    r"permission|access|scope|tool|verif|check|test|approv|review|evidence|escalat|metric|"
    r"scorecard|shadow|read.only|limit|budget|monitor|alert|gate|contract|retriev|source|"
    r"schedul|rate|human|workflow|process|owner|threshold|rollback|kill.switch",
    re.IGNORECASE,
)
_SHORT = 200


def only_the_prompt(text: str) -> bool:
    """The playbook's weak postmortem, "improved the prompt": a short part four that names the
    prompt and nothing else that counts as a control. Longer texts are the writer's judgement."""
    return len(text) <= _SHORT and bool(_PROMPT.search(text)) and not _WORKFLOW.search(text)


# --- deadline -----------------------------------------------------------------------------


def due_hours(policy: Policy, severity: Severity) -> int | None:
    """`postmortem_due_hours` of the severity (`null`: no deadline); when the policy leaves it
    out, 48 for SEV-1/2 and no deadline for SEV-3/4 (their postmortem is optional)."""
    configured = policy.severities.get(severity)
    if configured is not None and "postmortem_due_hours" in configured.model_fields_set:
        return configured.postmortem_due_hours
    return DEFAULT_POSTMORTEM_HOURS if severity in DUE_BY_DEFAULT else None


def due_at(recovered_at: datetime, hours: int | None) -> datetime | None:
    """Real hours in UTC: a daylight-saving change in between does not move it."""
    return recovered_at + timedelta(hours=hours) if hours is not None else None


def card(
    postmortem: Postmortem | None,
    *,
    severity: Severity,
    recovered_at: datetime | None,
    policy: Policy,
) -> PostmortemCard:
    return PostmortemCard(
        state=postmortem.state if postmortem else None,
        revision=postmortem.revision if postmortem else 0,
        updated_by=postmortem.updated_by if postmortem else None,
        updated_at=postmortem.updated_at if postmortem else None,
        completed_by=postmortem.completed_by if postmortem else None,
        completed_at=postmortem.completed_at if postmortem else None,
        recovered_at=recovered_at,
        due_at=due_at(recovered_at, due_hours(policy, severity)) if recovered_at else None,
        guardrails=postmortem.parts.guardrail_changes
        if postmortem and postmortem.completed
        else "",
    )


# --- the incident's phases, for the document ------------------------------------------


@dataclass(frozen=True)
class Phases:
    """When the incident entered each phase (None: not yet, or skipped), from its record."""

    detected: datetime
    declared: datetime | None
    contained: datetime | None
    recovered: datetime | None
    postmortem: datetime | None
    closed: datetime | None

    def points(self) -> list[tuple[str, datetime]]:
        named = [
            ("detected", self.detected),
            ("declared", self.declared),
            ("contained", self.contained),
            ("recovered", self.recovered),
            ("postmortem", self.postmortem),
            ("closed", self.closed),
        ]
        return [(name, at) for name, at in named if at is not None]


def phases(incident: Incident, timeline: Sequence[TimelineEntry]) -> Phases:
    """Detected: the incident's first record (its alert, or the declaration). The others: the
    first move into `contained`, `postmortem` and `closed` (or `dismissed`), the last into
    `recovered`."""
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    for entry in timeline:
        if entry.kind is TimelineKind.STATUS_CHANGED:
            to = str(entry.data.get("to"))
            first.setdefault(to, entry.at)
            last[to] = entry.at
    return Phases(
        detected=incident.created_at,
        declared=incident.declared_at,
        contained=first.get(IncidentStatus.CONTAINED.value),
        recovered=last.get(IncidentStatus.RECOVERED.value),
        postmortem=first.get(IncidentStatus.POSTMORTEM.value),
        closed=first.get(IncidentStatus.CLOSED.value) or first.get(IncidentStatus.DISMISSED.value),
    )


def duration(seconds: float) -> str:
    """`45s`, `4m 12s`, `1h 05m`, `2d 03h 10m`."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


# --- where a postmortem may be written ----------------------------------------------------

WRITABLE = (IncidentStatus.RECOVERED, IncidentStatus.POSTMORTEM)


def why_not_writable(incident: Incident, postmortem: Postmortem | None) -> str | None:
    """None when the postmortem can be saved now; else why not, and what must happen first."""
    if postmortem is not None and postmortem.completed:
        return completed_text(incident, postmortem)
    if incident.status in WRITABLE:
        return None
    if not incident.status.is_open:
        return f"{incident.ref} is {incident.status}; its record is final."
    if incident.status is IncidentStatus.TRIAGE:
        return f"{incident.ref} is still in triage: declare it first (Declare incident)."
    return (
        f"{incident.ref} is {incident.status}; the postmortem starts once it is recovered: "
        "first restore or accept the affected records and mark it recovered (Mark recovered)."
    )


def completed_text(incident: Incident, postmortem: Postmortem) -> str:
    when = postmortem.completed_at.strftime("%Y-%m-%d %H:%M UTC") if postmortem.completed_at else ""
    return (
        f"{incident.ref}'s postmortem was completed by {postmortem.completed_by} on {when}; "
        "it is final. Share postmortem posts it in the incident channel."
    )


# --- the timeline entry of a save ---------------------------------------------------------


def save_entry(
    saved: Postmortem, changed: Mapping[str, str], *, actor: str, at: datetime
) -> TimelineEntry:
    """Every save goes on the timeline with the parts it changed, verbatim, in `data`: the
    postmortem row holds the latest text, the timeline every version."""
    names = ", ".join(PART_LABELS[key].lower() for key in changed) or "no part"
    if saved.completed:
        text = f"Postmortem completed (revision {saved.revision})"
        if changed:
            text += f"; changed: {names}"
    else:
        text = f"Postmortem draft saved (revision {saved.revision}); changed: {names}"
    data: dict[str, Any] = {
        "action": "completed" if saved.completed else "draft_saved",
        "state": saved.state.value,
        "revision": saved.revision,
        "changed": dict(changed),
    }
    return TimelineEntry(at=at, actor=actor, kind=TimelineKind.POSTMORTEM, text=text, data=data)


# --- the first draft of the agent's path --------------------------------------------------

# The agent's path in the order it runs: what it was given, what it read, what it did, what
# came out, and who or what checked it. `other` comes last.
PATH_ORDER: tuple[EvidenceKind, ...] = (
    EvidenceKind.SYSTEM_INSTRUCTIONS,
    EvidenceKind.PROMPT,
    EvidenceKind.MODEL_VERSION,
    EvidenceKind.HANDOFF_CONTRACT,
    EvidenceKind.FILES_READ,
    EvidenceKind.EXTERNAL_URLS,
    EvidenceKind.TOOL_CALLS,
    EvidenceKind.RETRIES,
    EvidenceKind.RECORDS_CHANGED,
    EvidenceKind.FINAL_OUTPUT,
    EvidenceKind.VERIFIER_RESULT,
    EvidenceKind.REVIEWER_NOTES,
    EvidenceKind.APPROVAL_CONTEXT,
    EvidenceKind.TIMESTAMPS,
    EvidenceKind.COST,
    EvidenceKind.OTHER,
)
# Timeline kinds that tell how the incident unfolded; evidence and ledger items are summed up
# on their own, refusals, Slack problems and Rein's status lines are noise here.
_STORY = frozenset(
    {
        TimelineKind.ALERT,
        TimelineKind.DECLARED,
        TimelineKind.STATUS_CHANGED,
        TimelineKind.SEVERITY_CHANGED,
        TimelineKind.PLAN_CHANGED,
        TimelineKind.AUTONOMY_CHANGED,
        TimelineKind.DELIVERY,
        TimelineKind.STATUS_UPDATE,
        TimelineKind.PINNED_MESSAGE,
        TimelineKind.NOTE,
    }
)
_OUTCOMES = frozenset({DeliveryState.CONFIRMED.value, DeliveryState.UNCONFIRMED.value})
LINE_MAX = 220
EVIDENCE_SHOWN = 12


def _told(entry: TimelineEntry) -> bool:
    if entry.kind not in _STORY:
        return False
    return entry.kind is not TimelineKind.DELIVERY or entry.data.get("state") in _OUTCOMES


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def draft_agent_path(
    incident: Incident,
    timeline: Sequence[TimelineEntry],
    evidence: Sequence[EvidenceBrief],
    ledger: LedgerCounts,
) -> str:
    """A concise, chronological first draft from the record, to be edited: what the evidence
    shows the agent did (in the order an agent works), then how the incident unfolded (UTC).
    At most PART_MAX characters: a long timeline keeps its start and its end."""
    head = [
        f"Drafted by Rein from the timeline and evidence of {incident.ref}; edit freely. "
        "Times are UTC.",
        "",
    ]
    path: list[str] = []
    order = {kind: i for i, kind in enumerate(PATH_ORDER)}
    items = sorted(evidence, key=lambda e: (order.get(e.kind, len(order)), e.id))
    for item in items[:EVIDENCE_SHOWN]:
        what = preview(item.preview, 160) if item.preview else (item.url or "")
        line = f"- {KIND_LABELS[item.kind]} (evidence #{item.id})"
        path.append(preview(f"{line}: {what}" if what else line, LINE_MAX))
    if len(items) > EVIDENCE_SHOWN:
        path.append(f"- … and {len(items) - EVIDENCE_SHOWN} more evidence items")
    gaps = missing({item.kind for item in evidence}, incident.severity)
    if path:
        path.insert(0, f"What the agent ({incident.agent_id}) did, as the evidence shows it:")
    else:
        path.append(f"No evidence shows yet what the agent ({incident.agent_id}) did.")
    if gaps:
        labels = ", ".join(KIND_LABELS[k].lower() for k in gaps)
        path.append(f"Not preserved yet: {labels}.")
    story = [
        preview(f"- {_when(e.at)} {e.text} ({e.actor})", LINE_MAX) for e in timeline if _told(e)
    ]
    tail = ["", f"Rollback ledger: {progress(ledger)}."] if ledger.total else []
    return _fit([*head, *path, "", "How it unfolded:"], story, tail, PART_MAX)


def _fit(head: list[str], middle: list[str], tail: list[str], limit: int) -> str:
    """head + middle + tail in at most `limit` characters; middle lines are dropped from its
    centre (first and latest kept), and the gap says how many."""

    def joined(lines: list[str]) -> str:
        return "\n".join([*head, *lines, *tail])

    text = joined(middle)
    if len(text) <= limit:
        return text
    keep_start, keep_end = len(middle) // 2, len(middle) - len(middle) // 2
    while keep_start + keep_end > 0:
        if keep_start >= keep_end:
            keep_start -= 1
        else:
            keep_end -= 1
        dropped = len(middle) - keep_start - keep_end
        gap = f"- … {dropped} more entries: /incident timeline or rein export"
        text = joined([*middle[:keep_start], gap, *middle[len(middle) - keep_end :]])
        if len(text) <= limit:
            return text
    return text[:limit]
