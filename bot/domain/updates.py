"""Plain communication: the playbook's five-part status update, and which timeline entries
make news for the incident channel's one-line automated status. Pure."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.domain.enums import DeliveryState, IncidentStatus, TimelineKind
from bot.domain.models import TimelineEntry

PART_MAX = 3000  # Slack's largest max_length for a plain_text_input


@dataclass(frozen=True)
class Prompt:
    key: str  # the modal's block id and the key in the timeline entry's data
    label: str
    hint: str
    required: bool


# "What happened, what was affected, what was done, what is being checked, and what changes
# before restart." The last two may honestly be unknown early in an incident.
PROMPTS: tuple[Prompt, ...] = (
    Prompt("what_happened", "What happened", "What the agent did: facts, not hopes", True),
    Prompt(
        "what_was_affected",
        "What was affected",
        "Systems, records, customers or money touched, and how many",
        True,
    ),
    Prompt(
        "what_was_done",
        "What was done",
        "Containment, rollback, who decided; “nothing yet” is an answer",
        True,
    ),
    Prompt(
        "what_is_being_checked",
        "What is being checked",
        "What is still uncertain, and who is checking it",
        False,
    ),
    Prompt(
        "what_changes_before_restart",
        "What changes before restart",
        "Guardrails, permissions, tests or approvals that change first",
        False,
    ),
)


class StatusUpdate(BaseModel):
    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    what_happened: str = Field(min_length=1, max_length=PART_MAX)
    what_was_affected: str = Field(min_length=1, max_length=PART_MAX)
    what_was_done: str = Field(min_length=1, max_length=PART_MAX)
    what_is_being_checked: str = Field(default="", max_length=PART_MAX)
    what_changes_before_restart: str = Field(default="", max_length=PART_MAX)

    def parts(self) -> list[tuple[Prompt, str]]:
        """The prompts answered, in the playbook's order."""
        return [(p, getattr(self, p.key)) for p in PROMPTS if getattr(self, p.key)]


class UpdateError(ValueError):
    """What is wrong with a submitted update, by prompt key, in words for the form."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def parse_update(values: dict[str, str]) -> StatusUpdate:
    """The five answers as typed (Slack enforces max_length in its client; a forged or stale
    submission is refused here all the same)."""
    errors: dict[str, str] = {}
    for prompt in PROMPTS:
        text = (values.get(prompt.key) or "").strip()
        if prompt.required and not text:
            errors[prompt.key] = f"Say {prompt.label.lower()}."
        elif len(text) > PART_MAX:
            errors[prompt.key] = f"At most {PART_MAX} characters; this is {len(text)}."
    if errors:
        raise UpdateError(errors)
    return StatusUpdate(**{p.key: (values.get(p.key) or "") for p in PROMPTS})


def update_entry(update: StatusUpdate, *, actor: str, at: datetime) -> TimelineEntry:
    first = " ".join(update.what_happened.split())
    return TimelineEntry(
        at=at,
        actor=actor,
        kind=TimelineKind.STATUS_UPDATE,
        text=f"Status update: {first[:200]}{'…' if len(first) > 200 else ''}",
        data=update.model_dump(),
    )


def update_from(entry: TimelineEntry) -> StatusUpdate | None:
    """The update a STATUS_UPDATE entry recorded (None for anything else)."""
    if entry.kind is not TimelineKind.STATUS_UPDATE:
        return None
    return StatusUpdate.model_construct(
        **{p.key: str(entry.data.get(p.key) or "") for p in PROMPTS}
    )


# --- the automated one-line status --------------------------------------------------------

# Kinds that can make news; `newsworthy` decides entry by entry.
NEWS_KINDS = (TimelineKind.STATUS_CHANGED, TimelineKind.SEVERITY_CHANGED, TimelineKind.DELIVERY)
_OUTCOMES = (DeliveryState.CONFIRMED.value, DeliveryState.UNCONFIRMED.value)


def newsworthy(entry: TimelineEntry) -> bool:
    """Transitions (but the declaration: the card announces it), severity changes, and a
    kill-switch delivery's outcome (confirmed or not confirmed; not each attempt)."""
    if entry.kind is TimelineKind.STATUS_CHANGED:
        return entry.data.get("to") != IncidentStatus.DECLARED.value
    if entry.kind is TimelineKind.SEVERITY_CHANGED:
        return True
    if entry.kind is TimelineKind.DELIVERY:
        return entry.data.get("state") in _OUTCOMES
    return False


@dataclass(frozen=True)
class Chain:
    """Consecutive values of one field (status or severity) across merged changes."""

    values: tuple[str, ...]
    last: TimelineEntry

    @property
    def changes(self) -> int:
        return len(self.values) - 1


@dataclass(frozen=True)
class News:
    """What changed since the last status line, merged."""

    status: Chain | None
    severity: Chain | None
    deliveries: tuple[TimelineEntry, ...]

    def __bool__(self) -> bool:
        return bool(self.status or self.severity or self.deliveries)


def merge_news(entries: list[TimelineEntry]) -> News:
    news = [e for e in entries if newsworthy(e)]
    return News(
        status=_chain([e for e in news if e.kind is TimelineKind.STATUS_CHANGED]),
        severity=_chain([e for e in news if e.kind is TimelineKind.SEVERITY_CHANGED]),
        deliveries=tuple(e for e in news if e.kind is TimelineKind.DELIVERY),
    )


def _chain(entries: list[TimelineEntry]) -> Chain | None:
    if not entries:
        return None
    values = [str(entries[0].data.get("from", "?"))]
    for entry in entries:
        values.append(str(entry.data.get("to", "?")))
    return Chain(tuple(values), entries[-1])


def summary(news: News) -> str:
    """The news in plain words, for the timeline entry that records the post."""
    parts = []
    if news.status:
        parts.append("status " + " → ".join(news.status.values))
    if news.severity:
        labels = [f"SEV-{v[-1]}" for v in news.severity.values]
        parts.append("severity " + " → ".join(labels))
    for entry in news.deliveries:
        parts.append(f"kill switch {entry.data.get('state')}")
    return "; ".join(parts)


def posted_entry(news: News, *, through: int, ts: str, at: datetime) -> TimelineEntry:
    """Rein's record that it told the channel: `through` is the last timeline id it covered,
    so that after a restart the next line starts where this one stopped."""
    data: dict[str, Any] = {"through": through, "ts": ts}
    return TimelineEntry(
        at=at,
        actor="rein",
        kind=TimelineKind.STATUS_POSTED,
        text=f"Status posted in the channel: {summary(news)}",
        data=data,
    )
