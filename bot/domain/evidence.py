"""Evidence: the playbook's kinds, what the restart gate requires per severity, and what an
item must be to be recorded. Pure: no Slack, no SQL, no clock.

Evidence comes from outside (an agent's prompt, its output, a pasted log) and may carry prompt
injection: it is stored verbatim, never interpreted, and escaped wherever it is shown."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from bot.domain.enums import EvidenceKind, Severity

CONTENT_MAX_BYTES = 1024 * 1024  # one item's content, UTF-8, stored whole
URL_MAX = 4096  # presigned object-store links are long
SOURCE_MAX = 200
NOTE_MAX = 3000
ENTRY_PREVIEW_MAX = 200  # of the content, on the timeline entry

E = EvidenceKind

# The playbook's list, in its order; `other` is accepted but never "missing".
PLAYBOOK_KINDS: tuple[EvidenceKind, ...] = tuple(k for k in EvidenceKind if k is not E.OTHER)

# What the restart gate's "evidence archived" needs, per severity. Every severity needs the
# input and the output (what was asked, what came out). From SEV-3 on (a wrong record, a cost
# loop) the path from input to consequence must be reconstructable: which model, which tool
# calls, which records. From SEV-2 on (customer-visible, external) add the instructions the
# agent ran under, when each step happened, and what a human saw when approving (or that no
# human approved). SEV-1 (legal, security, money) adds what the agent read and which outside
# sources it used. The conditional kinds (handoff contract, verifier result) and the
# bookkeeping kinds (cost, retries, reviewer notes) are recommended but never block a restart.
RESTART_REQUIRES: dict[Severity, tuple[EvidenceKind, ...]] = {
    Severity.SEV4: (E.PROMPT, E.FINAL_OUTPUT),
    Severity.SEV3: (E.PROMPT, E.MODEL_VERSION, E.TOOL_CALLS, E.RECORDS_CHANGED, E.FINAL_OUTPUT),
    Severity.SEV2: (
        E.PROMPT,
        E.SYSTEM_INSTRUCTIONS,
        E.MODEL_VERSION,
        E.TOOL_CALLS,
        E.RECORDS_CHANGED,
        E.TIMESTAMPS,
        E.FINAL_OUTPUT,
        E.APPROVAL_CONTEXT,
    ),
    Severity.SEV1: (
        E.PROMPT,
        E.SYSTEM_INSTRUCTIONS,
        E.MODEL_VERSION,
        E.TOOL_CALLS,
        E.FILES_READ,
        E.RECORDS_CHANGED,
        E.EXTERNAL_URLS,
        E.TIMESTAMPS,
        E.FINAL_OUTPUT,
        E.APPROVAL_CONTEXT,
    ),
}

KIND_LABELS: dict[EvidenceKind, str] = {
    E.PROMPT: "Prompt",
    E.SYSTEM_INSTRUCTIONS: "System instructions",
    E.MODEL_VERSION: "Model version and settings",
    E.TOOL_CALLS: "Tool calls",
    E.FILES_READ: "Files read",
    E.RECORDS_CHANGED: "Records changed",
    E.EXTERNAL_URLS: "External URLs used",
    E.REVIEWER_NOTES: "Reviewer notes",
    E.TIMESTAMPS: "Timestamps",
    E.COST: "Cost",
    E.RETRIES: "Retries",
    E.FINAL_OUTPUT: "Final output",
    E.HANDOFF_CONTRACT: "Handoff contract",
    E.VERIFIER_RESULT: "Verifier result",
    E.APPROVAL_CONTEXT: "Approval context",
    E.OTHER: "Other",
}

KINDS_TEXT = ", ".join(k.value for k in EvidenceKind)


def required(severity: Severity) -> tuple[EvidenceKind, ...]:
    return RESTART_REQUIRES[severity]


def missing(kinds_present: Iterable[EvidenceKind], severity: Severity) -> tuple[EvidenceKind, ...]:
    """The kinds the restart gate requires for `severity` that no item has yet."""
    present = set(kinds_present)
    return tuple(k for k in RESTART_REQUIRES[severity] if k not in present)


def absent(kinds_present: Iterable[EvidenceKind]) -> tuple[EvidenceKind, ...]:
    """Every playbook kind that no item has yet, in the playbook's order (never `other`)."""
    present = set(kinds_present)
    return tuple(k for k in PLAYBOOK_KINDS if k not in present)


class InvalidEvidence(ValueError):
    """An item Rein will not record; `field` names what is wrong, the message how to fix it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class EvidenceTooLarge(InvalidEvidence):
    def __init__(self, size: int) -> None:
        super().__init__(
            f"That content is {human_size(size)}; Rein stores up to "
            f"{human_size(CONTENT_MAX_BYTES)} an item. Store the artefact elsewhere and add "
            "its URL, or split it into several items.",
            "content",
        )
        self.size = size


def parse_kind(text: str) -> EvidenceKind:
    """`tool_calls`, `Tool-Calls` and `tool calls` are the same kind."""
    wanted = "_".join(text.strip().lower().replace("-", " ").split())
    try:
        return EvidenceKind(wanted)
    except ValueError:
        shown = text.strip()[:40] or "(nothing)"
        raise InvalidEvidence(
            f"`{shown}` is not an evidence kind. The kinds are: {KINDS_TEXT}.", "kind"
        ) from None


_UNSAFE_URL = re.compile(r"[\s\x00-\x1f\x7f<>|\"`]")


def check_url(url: str) -> str:
    """An http(s) address with a host, nothing else: no `javascript:`, `file:` or `data:`,
    and nothing that could break out of a Slack link."""
    refusal = InvalidEvidence(
        "url must be an http:// or https:// address with a host, without spaces, <, > or | "
        "(javascript:, file:, data: and every other scheme are refused).",
        "url",
    )
    if len(url) > URL_MAX:
        raise InvalidEvidence(f"url is longer than {URL_MAX} characters.", "url")
    if _UNSAFE_URL.search(url):
        raise refusal
    try:
        parts = urlsplit(url)
    except ValueError:
        raise refusal from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise refusal
    return url


@dataclass(frozen=True)
class NewEvidence:
    """An item as it will be recorded; build it with `new_evidence`, which checks the rules."""

    kind: EvidenceKind
    content: str | None = None
    url: str | None = None
    source: str | None = None
    note: str | None = None

    @property
    def size(self) -> int:
        return len(self.content.encode("utf-8")) if self.content else 0


def new_evidence(
    kind: str | EvidenceKind,
    *,
    content: str | None = None,
    url: str | None = None,
    source: str | None = None,
    note: str | None = None,
) -> NewEvidence:
    """Content is kept verbatim (whitespace and all) unless it is blank; it and the url may
    both be given, one of them must be."""
    parsed = kind if isinstance(kind, EvidenceKind) else parse_kind(kind)
    if content is not None and not content.strip():
        content = None
    if content is not None:
        try:
            size = len(content.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidEvidence(
                "content is not valid text (broken Unicode).", "content"
            ) from None
        if size > CONTENT_MAX_BYTES:
            raise EvidenceTooLarge(size)
    url = (url or "").strip() or None
    if url is not None:
        check_url(url)
    if content is None and url is None:
        raise InvalidEvidence(
            "Give the evidence itself (content), a url where it is kept, or both.", "content"
        )
    source = (source or "").strip() or None
    if source is not None and len(source) > SOURCE_MAX:
        raise InvalidEvidence(f"source is longer than {SOURCE_MAX} characters.", "source")
    note = (note or "").strip() or None
    if note is not None and len(note) > NOTE_MAX:
        raise InvalidEvidence(f"note is longer than {NOTE_MAX} characters.", "note")
    return NewEvidence(kind=parsed, content=content, url=url, source=source, note=note)


class EvidenceItem(BaseModel):
    """One recorded item. Never changed or deleted: a correction is a new item."""

    model_config = ConfigDict(frozen=True)

    id: int
    incident: int
    kind: EvidenceKind
    content: str | None = None
    url: str | None = None
    source: str | None = None
    note: str | None = None
    added_by: str  # Slack user id or `api:<token name>`
    added_at: datetime
    size: int = 0  # bytes of content


class EvidenceBrief(BaseModel):
    """An item as the card shows it: the start of its content only."""

    model_config = ConfigDict(frozen=True)

    id: int
    kind: EvidenceKind
    preview: str  # the first characters of the content, '' when there is none
    url: str | None = None
    source: str | None = None
    added_by: str
    added_at: datetime
    size: int = 0


def preview(text: str, limit: int) -> str:
    """One line: whitespace collapsed, at most `limit` characters, a cut shown with '…'."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MiB"


def entry_text(item: NewEvidence) -> str:
    """The timeline entry's text: what was added, and the start of it. Stored raw, like all
    timeline text; renderers escape it."""
    facts = [item.kind.value]
    if item.content is not None:
        facts.append(human_size(item.size))
    if item.source:
        facts.append(f"from {preview(item.source, 60)}")
    text = f"Evidence added ({', '.join(facts)})"
    if item.content is not None:
        text += f": {preview(item.content, ENTRY_PREVIEW_MAX)}"
    if item.url:
        text += f" — {item.url}"
    if item.note:
        text += f" — note: {preview(item.note, ENTRY_PREVIEW_MAX)}"
    return text


COMMAND_FORM = "/incident evidence <kind> <text or url>"
_SCHEME_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(.*)$", re.DOTALL)
# Schemes that are an address even without `//`: refused, never taken for text.
_ADDRESS_SCHEMES = frozenset({"javascript", "vbscript", "data", "file", "blob", "about"})
_HEAD = re.compile(r"\s*(\S+)\s*(.*)$", re.DOTALL)


def _is_address(token: str) -> bool:
    match = _SCHEME_PREFIX.match(token)
    if match is None:
        return False
    return match.group(2).startswith("//") or match.group(1).lower() in _ADDRESS_SCHEMES


def parse_evidence_command(text: str) -> NewEvidence:
    """`<kind> <text>` records the text verbatim; `<kind> <url> [note]` records an http(s)
    address (and the words after it as the note). A lone address of another scheme
    (`javascript:…`, `file:///…`) is refused, not stored as text."""
    head = _HEAD.match(text)
    if head is None:
        raise InvalidEvidence(
            f"Say which kind of evidence and what it is: `{COMMAND_FORM}`. "
            f"The kinds are: {KINDS_TEXT}.",
            "kind",
        )
    kind, body = parse_kind(head.group(1)), head.group(2)
    if not body.strip():
        raise InvalidEvidence(
            f"Add the evidence after its kind: `{COMMAND_FORM}`, for example "
            f"`/incident evidence {kind.value} https://traces.example.com/run/981`.",
            "content",
        )
    words = body.split(maxsplit=1)
    if re.match(r"^https?://", words[0], re.IGNORECASE):
        note = words[1] if len(words) > 1 else None
        return new_evidence(kind, url=words[0], note=note)
    if len(words) == 1 and _is_address(words[0]):
        return new_evidence(kind, url=words[0])
    return new_evidence(kind, content=body)
