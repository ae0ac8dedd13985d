"""Parsing of slash-command text. Pure: the handlers turn results and errors into answers."""

from dataclasses import dataclass

from bot.domain.enums import Severity
from bot.domain.models import REASON_MAX, TITLE_MAX
from bot.domain.severity import parse_severity

QUICK_DECLARE_FORM = "/incident declare sev2 agent:crm-writer Wrong CRM field on 300 records"


class CommandError(ValueError):
    """Text the user typed that Rein cannot act on; the message shows the right form."""


@dataclass(frozen=True)
class QuickDeclare:
    severity: Severity
    agent_id: str
    title: str


@dataclass(frozen=True)
class SeverityChange:
    severity: Severity
    reason: str


def split_subcommand(text: str) -> tuple[str, str]:
    head, _, rest = text.strip().partition(" ")
    return head.lower(), rest.strip()


def parse_quick_declare(text: str) -> QuickDeclare:
    """`sev2 agent:crm-writer Wrong CRM field` (severity and agent in either order)."""
    words = text.split()
    severity: Severity | None = None
    agent: str | None = None
    while words and (severity is None or agent is None):
        word = words[0]
        if word.lower().startswith("agent:") and agent is None:
            agent = word[len("agent:") :]
        elif severity is None and word.lower().startswith("sev"):
            try:
                severity = parse_severity(word)
            except ValueError as exc:
                raise CommandError(f"{exc}\nThe quick form is: `{QUICK_DECLARE_FORM}`") from None
        else:
            break
        words.pop(0)
    title = " ".join(words)
    missing = [
        name
        for name, value in (("a severity", severity), ("an agent", agent), ("a title", title))
        if not value
    ]
    if missing:
        raise CommandError(
            f"That declaration is missing {_and_list(missing)}. The quick form is:\n"
            f"`{QUICK_DECLARE_FORM}`\nor type `/incident declare` alone to open the form."
        )
    if len(title) > TITLE_MAX:
        raise CommandError(
            f"The title is {len(title)} characters; keep it to {TITLE_MAX} and put the "
            "details in the incident channel."
        )
    assert severity is not None and agent is not None
    return QuickDeclare(severity=severity, agent_id=agent, title=title)


@dataclass(frozen=True)
class EmergencyStop:
    agent_id: str
    severity: Severity
    reason: str


EMERGENCY_STOP_FORM = "/agent pause crm-writer [sev2] writing garbage into the CRM"


def parse_emergency_stop(text: str) -> EmergencyStop:
    """`crm-writer [sev2] <reason>`: SEV-3 unless a severity is given."""
    words = text.split()
    if len(words) < 2:
        raise CommandError(f"Name the agent and say why: `{EMERGENCY_STOP_FORM}`.")
    agent_id, rest = words[0], words[1:]
    severity = Severity.SEV3
    if rest[0].lower().startswith("sev"):
        try:
            severity = parse_severity(rest[0])
        except ValueError as exc:
            raise CommandError(f"{exc} `{EMERGENCY_STOP_FORM}`") from None
        rest = rest[1:]
    reason = " ".join(rest)
    if not reason:
        raise CommandError(f"Say why the agent must stop: `{EMERGENCY_STOP_FORM}`.")
    if len(reason) > REASON_MAX:
        raise CommandError(f"Keep the reason to {REASON_MAX} characters.")
    return EmergencyStop(agent_id=agent_id, severity=severity, reason=reason)


def parse_severity_change(text: str) -> SeverityChange:
    """`2 wider than we thought` or `sev2 wider than we thought`."""
    word, _, reason = text.strip().partition(" ")
    form = "`/incident sev <1-4> <reason>`, for example `/incident sev 2 customers saw it`"
    try:
        severity = parse_severity(word)
    except ValueError:
        raise CommandError(f"Severity goes from 1 (most severe) to 4. Write {form}.") from None
    reason = reason.strip()
    if not reason:
        raise CommandError(f"Say why the severity changes: {form}.")
    if len(reason) > REASON_MAX:
        raise CommandError(f"Keep the reason to {REASON_MAX} characters.")
    return SeverityChange(severity=severity, reason=reason)


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
