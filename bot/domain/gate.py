"""The restart gate and the staged restart. Pure: the caller passes the facts.

The playbook: "Do not restart an incident-producing agent merely because the immediate
symptom is gone." Eight criteria; four Rein judges from its own records (and says why), four
a named person checks. A criterion Rein judges not met can be accepted by an approver with a
written reason. Then an approver of the incident's severity (for SEV-3/4 also the agent owner)
approves reactivation at a first stage; each later stage is another approval, after the agent
reported `clean_runs_per_stage` clean runs. "If the agent had write access during the
incident, restart it in read-only or shadow mode first." """

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.domain.enums import AutonomyMode, ContainmentMove, EvidenceKind, IncidentStatus, Severity
from bot.domain.evidence import KIND_LABELS, missing, preview, required
from bot.domain.models import Incident, LedgerCounts, RestartCard, TimelineEntry
from bot.domain.policy import Agent
from bot.domain.rollback import progress

NOTE_MAX = 500


class Criterion(StrEnum):
    CONTAINED = "contained"
    RECORDS = "records_identified"
    ROLLBACK = "rollback"
    EVIDENCE = "evidence"
    OWNER = "owner"
    ROOT_CAUSE = "root_cause"
    GUARDRAILS = "guardrails"
    TESTS = "tests"


LABELS: dict[Criterion, str] = {
    Criterion.CONTAINED: "Incident contained",
    Criterion.RECORDS: "Affected records identified",
    Criterion.ROLLBACK: "Rollback complete or accepted",
    Criterion.EVIDENCE: "Evidence archived",
    Criterion.OWNER: "Owner assigned",
    Criterion.ROOT_CAUSE: "Root cause understood enough for remediation",
    Criterion.GUARDRAILS: "Guardrails changed",
    Criterion.TESTS: "Tests or shadow runs passed",
}
# Judged by Rein from its own records; the others are checked by a person.
DERIVED = frozenset(
    {Criterion.CONTAINED, Criterion.ROLLBACK, Criterion.EVIDENCE, Criterion.GUARDRAILS}
)


class RestartState(StrEnum):
    GATE = "gate"  # criteria being checked; no decision yet
    STAGED = "staged"  # reactivated at a stage, counting clean runs
    REACTIVATED = "reactivated"  # back in its normal mode: the incident closed
    RETIRED = "retired"  # stays paused: the incident closed

    @property
    def decided(self) -> bool:
        return self in (RestartState.REACTIVATED, RestartState.RETIRED)


class CheckState(StrEnum):
    CHECKED = "checked"  # a person checked a criterion
    ACCEPTED = "accepted"  # an approver accepted a derived criterion Rein judges not met


class RunOutcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    FLAGGED = "flagged"


STAGES: tuple[AutonomyMode, ...] = (
    AutonomyMode.SHADOW,
    AutonomyMode.READ_ONLY,
    AutonomyMode.SUPERVISED,
    AutonomyMode.AUTONOMOUS,
)
_RANK = {mode: i for i, mode in enumerate(AutonomyMode)}  # paused < shadow < … < autonomous
SAFE_FIRST = (AutonomyMode.SHADOW, AutonomyMode.READ_ONLY)


class Restart(BaseModel):
    """One incident's restart: its gate, then its stages."""

    model_config = ConfigDict(frozen=True)

    incident: int
    agent_id: str
    state: RestartState
    stage: AutonomyMode | None = None
    normal_mode: AutonomyMode
    clean_runs: int = 0
    needed: int
    round: int = 1
    stage_started_at: datetime | None = None
    offered_stage: AutonomyMode | None = None
    gate_channel: str | None = None
    gate_ts: str | None = None
    opened_by: str
    opened_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    updated_at: datetime

    @property
    def next_stage(self) -> AutonomyMode | None:
        return next_stage(self.stage, self.normal_mode) if self.stage else None

    @property
    def ready(self) -> bool:
        """The stage has its clean runs: an approver may promote it."""
        return self.state is RestartState.STAGED and self.clean_runs >= self.needed

    def card(self) -> RestartCard:
        return RestartCard(
            state=self.state.value,
            stage=self.stage,
            next_stage=self.next_stage,
            clean_runs=self.clean_runs,
            needed=self.needed,
            round=self.round,
        )


class Check(BaseModel):
    model_config = ConfigDict(frozen=True)

    criterion: Criterion
    state: CheckState
    note: str = ""
    by: str
    at: datetime


@dataclass(frozen=True)
class GateFacts:
    """What Rein knows that the derived criteria are judged from."""

    severity: Severity
    contained: TimelineEntry | None  # the latest transition to `contained`, if any
    mode: AutonomyMode | None  # the agent's mode now
    held_by_this: bool  # the agent's autonomy is held by this incident
    ledger: LedgerCounts
    evidence_kinds: frozenset[EvidenceKind]
    guardrails: str | None  # part four of the completed postmortem
    checks: Mapping[Criterion, Check]


@dataclass(frozen=True)
class Judgement:
    criterion: Criterion
    met: bool
    how: str  # "rein" (judged met), "checked", "accepted", or "open"
    why: str  # Rein's reason (derived), or the person's note
    by: str | None = None
    at: datetime | None = None

    @property
    def derived(self) -> bool:
        return self.criterion in DERIVED

    @property
    def label(self) -> str:
        return LABELS[self.criterion]


@dataclass(frozen=True)
class Gate:
    """The gate as it stands: the criteria judged, and where reactivation may start."""

    incident: Incident
    restart: Restart | None
    judgements: list[Judgement]
    writer: bool  # the agent could write during the incident
    first: tuple[AutonomyMode, ...]  # the stages reactivation may start at
    postmortem_done: bool

    @property
    def ready(self) -> bool:
        return all(j.met for j in self.judgements)


def evaluate(facts: GateFacts) -> list[Judgement]:
    """Every criterion in the playbook's order, met or not, and why."""
    out: list[Judgement] = []
    for criterion in Criterion:
        check = facts.checks.get(criterion)
        if criterion in DERIVED:
            met, why = _derive(criterion, facts)
            if met:
                out.append(Judgement(criterion, True, "rein", why))
            elif check is not None and check.state is CheckState.ACCEPTED:
                out.append(
                    Judgement(
                        criterion,
                        True,
                        "accepted",
                        f"{why} — accepted: {check.note}",
                        check.by,
                        check.at,
                    )
                )
            else:
                out.append(Judgement(criterion, False, "open", why))
        elif check is not None:
            out.append(Judgement(criterion, True, "checked", check.note, check.by, check.at))
        else:
            out.append(Judgement(criterion, False, "open", _hint(criterion, facts)))
    return out


def _derive(criterion: Criterion, facts: GateFacts) -> tuple[bool, str]:
    if criterion is Criterion.CONTAINED:
        if facts.contained is None:
            return False, "the incident was never contained (Approve containment)"
        since = f"contained {facts.contained.at.strftime('%Y-%m-%d %H:%M UTC')}"
        if facts.mode is AutonomyMode.PAUSED and facts.held_by_this:
            return True, f"{since}; the agent is paused now"
        now = facts.mode.value if facts.mode else "unknown"
        return False, f"{since}, but the agent is {now} now"
    if criterion is Criterion.ROLLBACK:
        ledger = facts.ledger
        if ledger.total == 0:
            return True, "no affected records in the rollback ledger"
        if ledger.pending == 0:
            return True, f"ledger: {progress(ledger)}"
        return False, f"ledger: {progress(ledger)}"
    if criterion is Criterion.EVIDENCE:
        gaps = missing(facts.evidence_kinds, facts.severity)
        wanted = len(required(facts.severity))
        if not gaps:
            return True, f"all {wanted} kinds {facts.severity.label} requires are archived"
        names = ", ".join(KIND_LABELS[k].lower() for k in gaps)
        return (
            False,
            f"missing {len(gaps)} of {wanted} kinds {facts.severity.label} requires: {names}",
        )
    # guardrails
    if facts.guardrails and facts.guardrails.strip():
        return True, f"postmortem, part four: {preview(facts.guardrails, 200)}"
    return False, "no completed postmortem names its guardrail changes (part four)"


def _hint(criterion: Criterion, facts: GateFacts) -> str:
    if criterion is Criterion.RECORDS:
        return f"the rollback ledger lists {facts.ledger.total} record(s)"
    if criterion is Criterion.TESTS:
        return "tests or shadow runs of the remediated workflow passed"
    return "not checked yet"


def all_met(judgements: Iterable[Judgement]) -> bool:
    return all(j.met for j in judgements)


def open_criteria(judgements: Iterable[Judgement]) -> list[Judgement]:
    return [j for j in judgements if not j.met]


def parse_criterion(text: str) -> Criterion:
    """`tests`, `root_cause`, `root-cause`, or the label's first word (`guardrails`)."""
    word = text.strip().lower().replace("-", "_")
    aliases = {"records": Criterion.RECORDS, "root": Criterion.ROOT_CAUSE}
    for criterion in Criterion:
        if word == criterion.value:
            return criterion
    if word in aliases:
        return aliases[word]
    known = ", ".join(f"`{c.value}`" for c in Criterion)
    raise ValueError(f"`{text}` is not a gate criterion. Criteria: {known}.")


# --- stages ---------------------------------------------------------------------------------


def stages_for(normal_mode: AutonomyMode) -> tuple[AutonomyMode, ...]:
    """shadow → read_only → supervised → autonomous, up to the agent's normal mode."""
    return tuple(m for m in STAGES if _RANK[m] <= _RANK[normal_mode])


def next_stage(stage: AutonomyMode, normal_mode: AutonomyMode) -> AutonomyMode | None:
    later = [m for m in stages_for(normal_mode) if _RANK[m] > _RANK[stage]]
    return later[0] if later else None


def parse_stage(text: str) -> AutonomyMode:
    word = text.strip().lower().replace("-", "_").replace(" ", "_")
    for mode in STAGES:
        if word == mode.value:
            return mode
    known = ", ".join(f"`{m.value}`" for m in STAGES)
    raise ValueError(f"`{text}` is not a stage. Stages: {known}.")


def could_write(agent: Agent | None, before: Mapping[str, Any] | None) -> bool:
    """The agent could write during the incident: it has systems to write to, and its writes
    were not already blocked when the incident took its autonomy (`before`: the autonomy
    then, recorded on the containment's timeline entry). Unknown: assume it could."""
    if agent is not None and not agent.writes_to:
        return False
    if before is None or "writes" not in before:
        return True
    return bool(before["writes"])


def first_stages(normal_mode: AutonomyMode, writer: bool) -> tuple[AutonomyMode, ...]:
    stages = stages_for(normal_mode)
    if writer:
        safe = tuple(m for m in stages if m in SAFE_FIRST)
        return safe or stages[:1]
    return stages


def held_moves(
    mode: AutonomyMode, applicable: Collection[ContainmentMove]
) -> tuple[ContainmentMove, ...]:
    """The containment moves still in force at `mode`, for the kill switch's `actions`."""
    M = ContainmentMove
    if mode is AutonomyMode.PAUSED:
        held: tuple[ContainmentMove, ...] = tuple(M)
    elif mode in SAFE_FIRST:
        held = (M.REVOKE_WRITES, M.FREEZE_OUTBOUND)
    else:
        held = ()
    return tuple(m for m in held if m in applicable)


def may_reactivate(
    user: str, severity: Severity, owner: str | None, approvers: Collection[str]
) -> bool:
    """An approver of the incident's severity; for SEV-3/4 the agent owner too."""
    if user in approvers:
        return True
    return severity in (Severity.SEV3, Severity.SEV4) and owner is not None and user == owner


# --- closing ------------------------------------------------------------------------------

_GATED = (IncidentStatus.RECOVERED, IncidentStatus.POSTMORTEM)


def close_refusal(incident: Incident, restart: Restart | None) -> str | None:
    """An incident whose agent was contained (every incident past `contained`) closes
    through a restart decision — reactivated to its normal mode, or retired — never by hand."""
    if incident.status not in _GATED or (restart is not None and restart.state.decided):
        return None
    return (
        f"{incident.ref}'s agent was contained, so it closes with a restart decision: open the "
        "restart gate (Open restart gate, `/incident gate`), then approve reactivation (it "
        "closes when the agent is back in its normal mode) or retire the agent (Retire agent)."
    )
