"""Domain records. Times are timezone-aware UTC datetimes; storage keeps them as ISO text."""

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.domain.enums import (
    AutonomyMode,
    ContainmentMove,
    DeliveryEvent,
    DeliveryState,
    EvidenceKind,
    IncidentStatus,
    PostmortemState,
    Severity,
    TimelineKind,
)
from bot.domain.evidence import EvidenceBrief
from bot.domain.severity import Impact

TITLE_MAX = 150
SUMMARY_MAX = 3000
REASON_MAX = 500

_REF = re.compile(r"^(?:inc-?)?([0-9]{1,9})$", re.IGNORECASE)


def parse_ref(ref: str) -> int:
    """`INC-12`, `inc-12` and `12` are the same incident."""
    match = _REF.match(ref.strip())
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"`{ref}` is not an incident reference: write INC-12 or 12.")
    return int(match.group(1))


def format_ref(number: int) -> str:
    return f"INC-{number}"


class TimelineEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    actor: str  # Slack user id, `api:<token name>` or `rein`
    kind: TimelineKind
    text: str
    data: dict[str, Any] = Field(default_factory=dict)


class Incident(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int
    title: str
    summary: str = ""
    agent_id: str
    severity: Severity
    status: IncidentStatus
    commander: str
    declared_by: str
    impact: Impact = Field(default_factory=Impact)
    channel_id: str | None = None
    channel_name: str | None = None
    card_channel: str | None = None
    card_ts: str | None = None
    digest_ts: str | None = None
    declared_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    containment_plan: tuple[ContainmentMove, ...] | None = None  # None: the default plan
    automatic: str | None = None  # why Rein declared or contained by itself
    alert_kind: str | None = None
    fingerprint: str | None = None
    alert_count: int = 0
    triage_channel: str | None = None
    triage_ts: str | None = None

    @property
    def ref(self) -> str:
        return format_ref(self.number)


class Delivery(BaseModel):
    """One message to an agent's kill switch, retried under the same id until confirmed."""

    model_config = ConfigDict(frozen=True)

    id: str
    incident: int
    agent_id: str
    event: DeliveryEvent
    actions: tuple[ContainmentMove, ...]
    mode: AutonomyMode
    issued_at: datetime
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    confirmed_at: datetime | None = None
    updated_at: datetime


class NewIncident(BaseModel):
    """What a declaration records before the incident has a number."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=TITLE_MAX)
    summary: str = Field(default="", max_length=SUMMARY_MAX)
    agent_id: str = Field(min_length=1)
    severity: Severity
    declared_by: str = Field(min_length=1)
    impact: Impact = Field(default_factory=Impact)
    override_reason: str = Field(default="", max_length=REASON_MAX)
    idempotency_key: str | None = None
    alert_kind: str | None = None
    fingerprint: str | None = None


class LedgerCounts(BaseModel):
    """The rollback ledger in numbers, for the card's progress line."""

    model_config = ConfigDict(frozen=True)

    total: int = 0
    restored: int = 0
    accepted: int = 0
    not_reversible: int = 0

    @property
    def pending(self) -> int:
        return self.total - self.restored - self.accepted - self.not_reversible


class PostmortemCard(BaseModel):
    """The postmortem as the card shows it: its state, and for SEV-1/2 its deadline."""

    model_config = ConfigDict(frozen=True)

    state: PostmortemState | None = None  # None: nobody has saved one yet
    revision: int = 0
    updated_by: str | None = None
    updated_at: datetime | None = None
    completed_by: str | None = None
    completed_at: datetime | None = None
    recovered_at: datetime | None = None
    due_at: datetime | None = None  # recovered + postmortem_due_hours; None: no deadline
    guardrails: str = ""  # part four of the completed postmortem (what the restart gate reads)


class RestartCard(BaseModel):
    """The restart gate and staged restart as the card shows them (bot/domain/gate.py)."""

    model_config = ConfigDict(frozen=True)

    state: str  # gate, staged, reactivated, retired
    stage: AutonomyMode | None = None
    next_stage: AutonomyMode | None = None  # None: the stage is the agent's normal mode
    clean_runs: int = 0
    needed: int = 1
    round: int = 1


class CardFacts(BaseModel):
    """What the incident card shows beyond the incident row itself, loaded in one place
    (`bot/services/surfaces.py: load_card_facts`) so every capability adds its part there."""

    model_config = ConfigDict(frozen=True)

    deliveries: tuple[Delivery, ...] = ()
    evidence_kinds: frozenset[EvidenceKind] = frozenset()  # the kinds present
    evidence_count: int = 0
    evidence_latest: tuple[EvidenceBrief, ...] = ()  # newest first, content trimmed
    ledger: LedgerCounts = Field(default_factory=lambda: LedgerCounts())
    latest_update: TimelineEntry | None = None  # the newest status update (shown on the digest)
    postmortem: PostmortemCard | None = None  # None: not loaded (or no postmortem phase yet)
    restart: RestartCard | None = None  # None: no restart gate opened yet


class AgentAutonomy(BaseModel):
    model_config = ConfigDict(frozen=True)

    agent_id: str
    mode: AutonomyMode
    runs: bool
    writes: bool
    outbound: bool
    schedules: bool
    incident: int | None = None
    updated_at: datetime


def switches_for(mode: AutonomyMode) -> dict[str, bool]:
    """PRODUCT.md: paused blocks all; shadow and read_only block writes and outbound."""
    if mode is AutonomyMode.PAUSED:
        return {"runs": False, "writes": False, "outbound": False, "schedules": False}
    if mode in (AutonomyMode.SHADOW, AutonomyMode.READ_ONLY):
        return {"runs": True, "writes": False, "outbound": False, "schedules": True}
    return {"runs": True, "writes": True, "outbound": True, "schedules": True}
