"""The playbook's severity table and Rein's suggestion from business-impact factors."""

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from bot.domain.enums import Severity


@dataclass(frozen=True)
class SeverityRule:
    severity: Severity
    example: str
    required_response: tuple[str, ...]


# Exactly the playbook's table; `required_response` is shown to responders as a checklist.
SEVERITY_TABLE: dict[Severity, SeverityRule] = {
    Severity.SEV4: SeverityRule(
        Severity.SEV4,
        "Low-quality draft, duplicated internal note, failed formatting check",
        ("Pause run", "Fix prompt or input", "Log learning"),
    ),
    Severity.SEV3: SeverityRule(
        Severity.SEV3,
        "Wrong CRM field, unsupported recommendation, excessive cost loop",
        ("Contain workflow", "Restore record", "Notify owner", "Add guardrail"),
    ),
    Severity.SEV2: SeverityRule(
        Severity.SEV2,
        "External email error, incorrect published claim, customer-visible defect",
        ("Disable agent", "Rollback", "Communicate", "Postmortem within 48 hours"),
    ),
    Severity.SEV1: SeverityRule(
        Severity.SEV1,
        "Financial, legal, health, security, privacy, or reputation-critical action",
        (
            "Immediate human incident command",
            "Executive/legal/security involvement",
            "No restart without approval",
        ),
    ),
}

MAX_RECORDS_TOUCHED = 1_000_000_000


class Impact(BaseModel):
    """Business-consequence factors a declarer ticks; Rein suggests a severity from them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    external_exposure: bool = False
    irreversible: bool = False
    sensitive_data: bool = False
    money: bool = False
    legal_regulatory: bool = False
    customer_visible: bool = False
    records_touched: int = Field(default=0, ge=0, le=MAX_RECORDS_TOUCHED)


IMPACT_LABELS: dict[str, str] = {
    "external_exposure": "External exposure",
    "irreversible": "Irreversible",
    "sensitive_data": "Sensitive data",
    "money": "Money moved or committed",
    "legal_regulatory": "Legal or regulatory",
    "customer_visible": "Customer-visible",
}

# Thresholds on the number of records touched, from experience: a handful is a fix,
# hundreds are an operation, thousands reaching outside are a crisis.
MANY_RECORDS = 100
MASS_RECORDS = 1000


@dataclass(frozen=True)
class Suggestion:
    severity: Severity
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def suggest_severity(impact: Impact) -> Suggestion:
    """Judge business consequence, not model embarrassment (the playbook's rule)."""
    n = impact.records_touched
    sev1: list[str] = []
    if impact.money:
        sev1.append("money moved or committed")
    if impact.legal_regulatory:
        sev1.append("legal or regulatory exposure")
    if impact.sensitive_data and impact.external_exposure:
        sev1.append("sensitive data exposed outside")
    if impact.external_exposure and n >= MASS_RECORDS:
        sev1.append(f"{n} records reached outside")
    if sev1:
        return Suggestion(Severity.SEV1, tuple(sev1))

    sev2: list[str] = []
    if impact.external_exposure:
        sev2.append("external exposure")
    if impact.customer_visible:
        sev2.append("customer-visible")
    if impact.sensitive_data:
        sev2.append("sensitive data touched")
    if impact.irreversible and n >= MANY_RECORDS:
        sev2.append(f"{n} records changed irreversibly")
    if n >= MASS_RECORDS:
        sev2.append(f"{n} records touched")
    if sev2:
        return Suggestion(Severity.SEV2, tuple(sev2))

    sev3: list[str] = []
    if impact.irreversible:
        sev3.append("irreversible")
    if n > 0:
        sev3.append(f"{n} business record{'s' if n != 1 else ''} touched")
    if sev3:
        return Suggestion(Severity.SEV3, tuple(sev3))
    return Suggestion(Severity.SEV4, ("internal only, reversible, no records touched",))


_SEVERITY_WORD = re.compile(r"^(?:sev)?[-_ ]?([1-4])$", re.IGNORECASE)


def parse_severity(text: str) -> Severity:
    """`sev2`, `SEV-2`, `sev-2` and a bare `2` all mean SEV-2."""
    match = _SEVERITY_WORD.match(text.strip())
    if not match:
        raise ValueError(f"`{text}` is not a severity: write sev1, sev2, sev3 or sev4 (or SEV-2).")
    return Severity(f"sev{match.group(1)}")
