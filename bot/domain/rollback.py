"""The rollback ledger: each affected record, its values before and after, and what became of
it. Pure: parsing of what people type, the rules for marking, and the recovery check."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.domain.enums import RollbackStatus
from bot.domain.models import REASON_MAX, LedgerCounts

SYSTEM_MAX = 100
RECORD_MAX = 500
VALUE_MAX = 65_536  # a value before or after: a CRM field, a page's text, a price list
ITEMS_PER_MARK_MAX = 100_000  # ids one mark may name (ranges make this easy to reach)

# Statuses a person may set. `pending` again is a correction ("the restore did not hold").
MARKABLE = (
    RollbackStatus.RESTORED,
    RollbackStatus.ACCEPTED,
    RollbackStatus.NOT_REVERSIBLE,
    RollbackStatus.PENDING,
)
# Setting these says something the ledger must explain: a reason is required.
NEEDS_REASON = frozenset(
    {RollbackStatus.ACCEPTED, RollbackStatus.NOT_REVERSIBLE, RollbackStatus.PENDING}
)
STATUS_LABELS = {
    RollbackStatus.PENDING: "pending",
    RollbackStatus.RESTORED: "restored",
    RollbackStatus.ACCEPTED: "accepted",
    RollbackStatus.NOT_REVERSIBLE: "not reversible",
}

ADD_FORM = "/incident rollback crm ACC-0042 old value -> new value"
MARK_FORM = "/incident rollback restored 1-212,250 [reason]"


class LedgerError(ValueError):
    """Something a person typed or chose that the ledger cannot take; the message says why."""


class NewRollbackItem(BaseModel):
    """An affected record as reported. System and record are references: surrounding blanks
    are dropped. The values are kept exactly as sent, and escaped wherever they are shown."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: str = Field(min_length=1, max_length=SYSTEM_MAX)
    record: str = Field(min_length=1, max_length=RECORD_MAX)
    before: str | None = Field(default=None, max_length=VALUE_MAX)
    after: str | None = Field(default=None, max_length=VALUE_MAX)

    @field_validator("system", "record", mode="after")
    @classmethod
    def _reference(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must name something, not only whitespace")
        return value


class RollbackItem(BaseModel):
    """One ledger row. `id` numbers the items of one incident from 1; `by` and `at` tell who
    set the current status and when (for a pending item: who reported it)."""

    model_config = ConfigDict(frozen=True)

    id: int
    incident: int
    system: str
    record: str
    before: str | None = None
    after: str | None = None
    status: RollbackStatus = RollbackStatus.PENDING
    reason: str | None = None
    by: str
    at: datetime
    created_by: str
    created_at: datetime

    @property
    def label(self) -> str:
        """`#12 crm ACC-0042`, unescaped: render escapes it."""
        return f"#{self.id} {self.system} {self.record}"


@dataclass(frozen=True)
class Selection:
    """Which items a mark applies to: every pending item, or the ids named."""

    all_pending: bool = False
    ids: tuple[int, ...] = ()


ALL_PENDING = Selection(all_pending=True)


@dataclass(frozen=True)
class AddCommand:
    item: NewRollbackItem


@dataclass(frozen=True)
class MarkCommand:
    status: RollbackStatus
    selection: Selection
    reason: str


@dataclass(frozen=True)
class ListCommand:
    status: RollbackStatus | None = None


RollbackCommand = AddCommand | MarkCommand | ListCommand

_ARROW = re.compile(r"\s*(?:->|→|=>)\s*")
_STATUS_WORDS = {
    "restored": RollbackStatus.RESTORED,
    "restore": RollbackStatus.RESTORED,
    "accepted": RollbackStatus.ACCEPTED,
    "accept": RollbackStatus.ACCEPTED,
    "not_reversible": RollbackStatus.NOT_REVERSIBLE,
    "not-reversible": RollbackStatus.NOT_REVERSIBLE,
    "notreversible": RollbackStatus.NOT_REVERSIBLE,
    "irreversible": RollbackStatus.NOT_REVERSIBLE,
    "pending": RollbackStatus.PENDING,
    "reopen": RollbackStatus.PENDING,
}
_RANGE = re.compile(r"^#?([0-9]{1,9})(?:-#?([0-9]{1,9}))?$")
_ITEM = r"#?[0-9]{1,9}(?:\s*[-–]\s*#?[0-9]{1,9})?"
_ITEMS = re.compile(rf"^\s*(all|{_ITEM}(?:(?:\s*,\s*|\s+){_ITEM})*),?(?=\s|$)", re.IGNORECASE)


def parse_status(word: str) -> RollbackStatus:
    status = _STATUS_WORDS.get(word.strip().lower())
    if status is None:
        raise LedgerError(
            f"`{word}` is not a ledger status: use restored, accepted, not_reversible or pending."
        )
    return status


def parse_selection(text: str) -> Selection:
    """`all` (every pending item), or numbers and ranges: `12`, `#12`, `1-212, 250 251`."""
    text = text.strip()
    if text.lower() in ("all", "all pending", "pending"):
        return ALL_PENDING
    ids: set[int] = set()
    for part in re.split(r"[,\s]+", re.sub(r"\s*[-–]\s*", "-", text)):
        if not part:
            continue
        match = _RANGE.match(part)
        if not match:
            raise LedgerError(
                f"`{part}` is not an item number. Name items as `12`, `1-212` or `all`."
            )
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if first < 1 or last < first:
            raise LedgerError(f"`{part}` is not a range of item numbers: write it low-high.")
        if len(ids) + last - first + 1 > ITEMS_PER_MARK_MAX:
            raise LedgerError(f"Name at most {ITEMS_PER_MARK_MAX} items at once.")
        ids.update(range(first, last + 1))
    if not ids:
        raise LedgerError("Name the items: `all` for every pending item, or `12`, `1-212`.")
    return Selection(ids=tuple(sorted(ids)))


def check_reason(status: RollbackStatus, reason: str) -> str:
    reason = reason.strip()
    if status in NEEDS_REASON and not reason:
        raise LedgerError(
            f"Say why the records are {STATUS_LABELS[status]}: a reason is required for "
            "accepted, not_reversible and pending."
        )
    if len(reason) > REASON_MAX:
        raise LedgerError(f"Keep the reason to {REASON_MAX} characters.")
    return reason


def parse_rollback(text: str) -> RollbackCommand:
    """What follows `/incident rollback` (after an optional `INC-12`):
    - nothing, `list` or `list <status>`: show the ledger;
    - `<status> <items|all> [reason]`: mark items;
    - `[add] <system> <record> [before -> after]`: add an affected record.
    `text` is what was typed: the `/incident` handler decodes Slack's entities once."""
    words = text.split()
    if not words or words[0].lower() == "list":
        status = parse_status(words[1]) if len(words) > 1 else None
        return ListCommand(status)
    head = words[0].lower()
    if head in _STATUS_WORDS:
        return _parse_mark(_STATUS_WORDS[head], text.strip()[len(words[0]) :].strip())
    if head == "add":
        text = text.strip()[len(words[0]) :]
    return AddCommand(_parse_add(text))


def _parse_mark(status: RollbackStatus, rest: str) -> MarkCommand:
    """The items are the leading numbers and ranges (or `all`); the reason is what follows."""
    match = _ITEMS.match(rest)
    if not match:
        first = rest.split()[0] if rest.split() else ""
        raise LedgerError(
            (f"`{first}` is not an item number. " if first else "Name the items to mark. ")
            + f"Write `{MARK_FORM}`, or `all` for every pending item."
        )
    selection = parse_selection(match.group(1))
    return MarkCommand(status, selection, check_reason(status, rest[match.end() :]))


def _parse_add(text: str) -> NewRollbackItem:
    words = text.split(maxsplit=2)
    if len(words) < 2:
        raise LedgerError(
            f"Name the system and the record: `{ADD_FORM}` (the values are optional), or use "
            "the card's Add affected record button."
        )
    system, record = words[0], words[1]
    rest = words[2] if len(words) > 2 else ""
    before: str | None = None
    after: str | None = None
    if rest:
        parts = _ARROW.split(rest, maxsplit=1)
        if len(parts) != 2:
            raise LedgerError(
                f"Write the values as `before -> after`: `{ADD_FORM}`. Leave a side empty "
                "when there was no value (`-> created`)."
            )
        before, after = parts[0] or None, parts[1] or None
    try:
        return NewRollbackItem(system=system, record=record, before=before, after=after)
    except ValueError as exc:
        raise LedgerError(_first_problem(exc)) from None


def _first_problem(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        return f"The {field} {first['msg'].removeprefix('Value error, ').lower()}."
    return str(exc)


def ranges(ids: Sequence[int], limit: int = 1000) -> str:
    """`#1–#212, #250` for a sorted list of item numbers, cut at about `limit` characters."""
    spans: list[tuple[int, int]] = []
    for n in ids:
        if spans and n == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], n)
        else:
            spans.append((n, n))
    shown: list[str] = []
    length = 0
    for a, b in spans:
        part = f"#{a}" if a == b else f"#{a}–#{b}"
        if shown and length + len(part) > limit:
            return ", ".join(shown) + ", …"
        shown.append(part)
        length += len(part) + 2
    return ", ".join(shown)


def progress(counts: LedgerCounts) -> str:
    """`212 of 300 restored · 3 accepted · 1 not reversible · 84 pending`."""
    parts = [f"{counts.restored} of {counts.total} restored"]
    if counts.accepted:
        parts.append(f"{counts.accepted} accepted")
    if counts.not_reversible:
        parts.append(f"{counts.not_reversible} not reversible")
    parts.append(f"{counts.pending} pending" if counts.pending else "nothing pending")
    return " · ".join(parts)


def counts_of(items: Sequence[RollbackItem]) -> LedgerCounts:
    """The ledger in numbers, from its items (the export; the card counts in SQL)."""
    statuses = [item.status for item in items]
    return LedgerCounts(
        total=len(statuses),
        restored=statuses.count(RollbackStatus.RESTORED),
        accepted=statuses.count(RollbackStatus.ACCEPTED),
        not_reversible=statuses.count(RollbackStatus.NOT_REVERSIBLE),
    )
