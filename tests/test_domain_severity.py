"""The playbook's severity table, severity parsing, and Rein's suggestion from impact factors."""

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.domain.enums import Severity
from bot.domain.severity import (
    IMPACT_LABELS,
    MAX_RECORDS_TOUCHED,
    SEVERITY_TABLE,
    Impact,
    parse_severity,
    suggest_severity,
)

PLAYBOOK = Path(__file__).resolve().parents[2] / "shared" / "reference" / "playbook-article.txt"

# The playbook's table, written out by hand: severity -> (example, required response).
PLAYBOOK_TABLE: dict[Severity, tuple[str, tuple[str, ...]]] = {
    Severity.SEV4: (
        "Low-quality draft, duplicated internal note, failed formatting check",
        ("Pause run", "Fix prompt or input", "Log learning"),
    ),
    Severity.SEV3: (
        "Wrong CRM field, unsupported recommendation, excessive cost loop",
        ("Contain workflow", "Restore record", "Notify owner", "Add guardrail"),
    ),
    Severity.SEV2: (
        "External email error, incorrect published claim, customer-visible defect",
        ("Disable agent", "Rollback", "Communicate", "Postmortem within 48 hours"),
    ),
    Severity.SEV1: (
        "Financial, legal, health, security, privacy, or reputation-critical action",
        (
            "Immediate human incident command",
            "Executive/legal/security involvement",
            "No restart without approval",
        ),
    ),
}

FACTORS = tuple(IMPACT_LABELS)  # the boolean impact factors


def _capitalised(item: str) -> str:
    return item[:1].upper() + item[1:]


# --- the table -------------------------------------------------------------------------------


def test_severity_table_is_the_playbooks_table() -> None:
    assert set(SEVERITY_TABLE) == set(Severity)
    for severity, (example, response) in PLAYBOOK_TABLE.items():
        rule = SEVERITY_TABLE[severity]
        assert rule.severity is severity
        assert rule.example == example
        assert rule.required_response == response


@pytest.mark.skipif(not PLAYBOOK.exists(), reason="the shared playbook is not next to the repo")
def test_severity_table_matches_the_playbook_file() -> None:
    rows = re.findall(
        r"^\| (SEV-[1-4]) \| (.+?) \| (.+?) \|$", PLAYBOOK.read_text("utf-8"), re.MULTILINE
    )
    assert len(rows) == 4
    for label, example, response in rows:
        rule = SEVERITY_TABLE[Severity(f"sev{label[-1]}")]
        assert rule.example == example
        assert rule.required_response == tuple(_capitalised(p) for p in response.split(", "))


def test_severity_labels_and_levels() -> None:
    assert [s.label for s in Severity] == ["SEV-1", "SEV-2", "SEV-3", "SEV-4"]
    assert [s.level for s in Severity] == [1, 2, 3, 4]


# --- parse_severity --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sev2", Severity.SEV2),
        ("SEV-2", Severity.SEV2),
        ("sev-2", Severity.SEV2),
        ("Sev-2", Severity.SEV2),
        ("SEV2", Severity.SEV2),
        ("2", Severity.SEV2),
        (" sev2 ", Severity.SEV2),
        ("sev1", Severity.SEV1),
        ("SEV-1", Severity.SEV1),
        ("1", Severity.SEV1),
        ("sev3", Severity.SEV3),
        ("3", Severity.SEV3),
        ("sev-4", Severity.SEV4),
        ("4", Severity.SEV4),
    ],
)
def test_parse_severity_accepts(text: str, expected: Severity) -> None:
    assert parse_severity(text) is expected


@pytest.mark.parametrize(
    "text",
    ["sev0", "sev5", "", "   ", "severe", "sev", "0", "5", "sev12", "22", "sev 2x", "SEV-2!", "s2"],
)
def test_parse_severity_refuses(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_severity(text)
    message = str(refused.value)
    assert "sev1" in message and "sev4" in message  # shows what to write instead


# --- suggest_severity ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("impact", "severity", "reason_fragment"),
    [
        # SEV-1: money, law, sensitive data outside, mass external reach
        (Impact(money=True), Severity.SEV1, "money"),
        (Impact(legal_regulatory=True), Severity.SEV1, "legal"),
        (Impact(sensitive_data=True, external_exposure=True), Severity.SEV1, "sensitive data"),
        (Impact(external_exposure=True, records_touched=1000), Severity.SEV1, "1000 records"),
        (Impact(money=True, customer_visible=True), Severity.SEV1, "money"),
        # SEV-2: outside, customers, sensitive data, many irreversible or mass records
        (Impact(external_exposure=True), Severity.SEV2, "external"),
        (Impact(customer_visible=True), Severity.SEV2, "customer-visible"),
        (Impact(sensitive_data=True), Severity.SEV2, "sensitive data"),
        (Impact(irreversible=True, records_touched=100), Severity.SEV2, "100 records"),
        (Impact(records_touched=1000), Severity.SEV2, "1000 records"),
        (Impact(external_exposure=True, records_touched=999), Severity.SEV2, "external"),
        # SEV-3: business records touched, or something irreversible
        (Impact(records_touched=300), Severity.SEV3, "300 business records"),
        (Impact(records_touched=1), Severity.SEV3, "1 business record touched"),
        (Impact(records_touched=999), Severity.SEV3, "999"),
        (Impact(irreversible=True), Severity.SEV3, "irreversible"),
        (Impact(irreversible=True, records_touched=99), Severity.SEV3, "irreversible"),
        # SEV-4: internal, reversible, nothing touched
        (Impact(), Severity.SEV4, "internal"),
    ],
)
def test_suggest_severity_examples(
    impact: Impact, severity: Severity, reason_fragment: str
) -> None:
    suggestion = suggest_severity(impact)
    assert suggestion.severity is severity
    assert suggestion.reasons, "a suggestion always says why"
    assert reason_fragment in suggestion.reason
    assert suggestion.reason == "; ".join(suggestion.reasons)


def test_one_record_is_singular() -> None:
    assert "1 business record touched" in suggest_severity(Impact(records_touched=1)).reason
    assert "2 business records touched" in suggest_severity(Impact(records_touched=2)).reason


def test_suggestion_lists_every_sev1_reason() -> None:
    suggestion = suggest_severity(
        Impact(money=True, legal_regulatory=True, sensitive_data=True, external_exposure=True)
    )
    assert suggestion.severity is Severity.SEV1
    assert len(suggestion.reasons) == 3


impacts = st.builds(
    Impact,
    **{name: st.booleans() for name in FACTORS},
    records_touched=st.one_of(
        st.integers(min_value=0, max_value=2000),
        st.integers(min_value=0, max_value=MAX_RECORDS_TOUCHED),
    ),
)


@given(impact=impacts, factor=st.sampled_from(FACTORS))
def test_ticking_a_factor_never_lowers_the_severity(impact: Impact, factor: str) -> None:
    before = suggest_severity(impact)
    after = suggest_severity(impact.model_copy(update={factor: True}))
    assert after.severity.level <= before.severity.level  # 1 is the most severe
    assert after.reasons and before.reasons


@given(impact=impacts, more=st.integers(min_value=0, max_value=MAX_RECORDS_TOUCHED))
def test_more_records_never_lowers_the_severity(impact: Impact, more: int) -> None:
    raised = min(impact.records_touched + more, MAX_RECORDS_TOUCHED)
    before = suggest_severity(impact)
    after = suggest_severity(impact.model_copy(update={"records_touched": raised}))
    assert after.severity.level <= before.severity.level
    assert isinstance(after.reason, str) and after.reason


@given(impact=impacts)
def test_suggestion_always_has_a_severity_and_a_reason(impact: Impact) -> None:
    suggestion = suggest_severity(impact)
    assert suggestion.severity in Severity
    assert all(isinstance(r, str) and r for r in suggestion.reasons)


# --- Impact ----------------------------------------------------------------------------------


@pytest.mark.parametrize("records", [-1, -1000])
def test_impact_refuses_negative_records(records: int) -> None:
    with pytest.raises(ValidationError, match="records_touched"):
        Impact(records_touched=records)


def test_impact_refuses_absurd_records_and_unknown_factors() -> None:
    with pytest.raises(ValidationError):
        Impact(records_touched=MAX_RECORDS_TOUCHED + 1)
    with pytest.raises(ValidationError):
        Impact(reputation=True)  # type: ignore[call-arg]


def test_impact_labels_name_every_boolean_factor() -> None:
    booleans = {name for name, field in Impact.model_fields.items() if field.annotation is bool}
    assert set(IMPACT_LABELS) == booleans
    assert "records_touched" in Impact.model_fields
