"""The lifecycle table of PRODUCT.md, pair by pair and severity by severity.

The table below is written out from PRODUCT.md, not imported from the code, so a change to
`bot.domain.lifecycle.TRANSITIONS` that drifts from the contract fails here.
"""

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.enums import IncidentStatus as S
from bot.domain.enums import Severity, TimelineKind
from bot.domain.lifecycle import TRANSITIONS, IllegalTransition, allowed, transition
from bot.domain.models import Incident

ALL = frozenset(Severity)

# PRODUCT.md, "Incident lifecycle": (from, to) -> severities for which the move is allowed.
PRODUCT_TABLE: dict[tuple[S, S], frozenset[Severity]] = {
    (S.TRIAGE, S.DECLARED): ALL,
    (S.TRIAGE, S.DISMISSED): ALL,
    (S.DECLARED, S.CONTAINED): ALL,
    (S.DECLARED, S.CLOSED): frozenset({Severity.SEV4}),
    (S.CONTAINED, S.RECOVERED): ALL,
    (S.RECOVERED, S.POSTMORTEM): ALL,
    (S.RECOVERED, S.CLOSED): frozenset({Severity.SEV3, Severity.SEV4}),
    (S.POSTMORTEM, S.CLOSED): ALL,
}

# The path an incident walks, to tell "skipping ahead" from "going back".
WALK = (S.TRIAGE, S.DECLARED, S.CONTAINED, S.RECOVERED, S.POSTMORTEM)

# The step that must happen first to leave each status forwards, as the user reads it
# (the button label where there is one).
NEXT_STEP = {
    S.TRIAGE: "declare",
    S.DECLARED: "approve containment",
    S.CONTAINED: "mark recovered",
}

CASES = [(frm, to, sev) for frm, to, sev in itertools.product(S, S, Severity)]  # 7 x 7 x 4 = 196
ALLOWED_CASES = [c for c in CASES if c[2] in PRODUCT_TABLE.get((c[0], c[1]), frozenset())]
REFUSED_CASES = [c for c in CASES if c not in ALLOWED_CASES]

T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
LATER = T0 + timedelta(hours=2)


def make_incident(status: S, severity: Severity, number: int = 7) -> Incident:
    return Incident(
        number=number,
        title="Wrong CRM field on 300 records",
        agent_id="crm-writer",
        severity=severity,
        status=status,
        commander="U0ALICE",
        declared_by="U0ALICE",
        declared_at=T0,
        created_at=T0,
        updated_at=T0,
    )


def expected_hints(frm: S, to: S, sev: Severity) -> list[str]:
    """Fragments (lower case) a refusal of frm -> to must contain: what must happen first,
    or why nothing can."""
    if frm is to:
        return ["already"]
    if frm in (S.CLOSED, S.DISMISSED):
        return ["new incident"]
    if to is S.TRIAGE:
        return ["triage"]
    if to is S.DISMISSED:
        return ["triage"]  # only an alert still in triage can be dismissed
    if to is S.DECLARED:
        return ["declared already"]
    if to is S.CLOSED:
        if frm is S.TRIAGE:
            return ["declare", "dismiss"]
        if frm is S.DECLARED:
            return ["sev-4", "approve containment"]
        if frm is S.CONTAINED:
            return ["mark recovered"]
        assert frm is S.RECOVERED and sev in (Severity.SEV1, Severity.SEV2)
        return [sev.label.lower(), "postmortem"]
    if WALK.index(to) < WALK.index(frm):
        return ["back"]
    return [NEXT_STEP[frm]]


def test_the_code_table_is_the_product_table() -> None:
    as_code = {
        pair: (ALL if severities is None else frozenset(severities))
        for pair, severities in TRANSITIONS.items()
    }
    assert as_code == PRODUCT_TABLE


def test_every_pair_is_covered() -> None:
    assert len(CASES) == len(S) * len(S) * len(Severity) == 196
    # Each severity has exactly its allowed moves; SEV-4 has the most, SEV-1/2 the fewest.
    per_severity = {sev: sum(1 for _, _, s in ALLOWED_CASES if s is sev) for sev in Severity}
    assert per_severity == {
        Severity.SEV1: 6,
        Severity.SEV2: 6,
        Severity.SEV3: 7,
        Severity.SEV4: 8,
    }


@pytest.mark.parametrize(("frm", "to", "sev"), ALLOWED_CASES, ids=str)
def test_allowed_move_succeeds(frm: S, to: S, sev: Severity) -> None:
    incident = make_incident(frm, sev)
    assert allowed(incident, to)

    moved = transition(incident, to, actor="U0BOB", at=LATER, reason="checked by hand")

    assert moved.incident.status is to
    assert moved.incident.updated_at == LATER
    # Nothing else about the incident changes, and the original is untouched.
    assert moved.incident.model_dump(exclude={"status", "updated_at"}) == incident.model_dump(
        exclude={"status", "updated_at"}
    )
    assert incident.status is frm and incident.updated_at == T0

    entry = moved.entry
    assert entry.kind is TimelineKind.STATUS_CHANGED
    assert entry.actor == "U0BOB"
    assert entry.at == LATER
    assert entry.data["from"] == frm.value and entry.data["to"] == to.value
    assert entry.data["reason"] == "checked by hand"
    assert "INC-7" in entry.text
    assert frm.value in entry.text and to.value in entry.text
    assert "checked by hand" in entry.text


@pytest.mark.parametrize(("frm", "to", "sev"), REFUSED_CASES, ids=str)
def test_refused_move_says_what_must_happen_first(frm: S, to: S, sev: Severity) -> None:
    incident = make_incident(frm, sev, number=42)
    assert not allowed(incident, to)

    with pytest.raises(IllegalTransition) as refused:
        transition(incident, to, actor="U0BOB", at=LATER)

    message = str(refused.value)
    assert "INC-42" in message
    lowered = message.lower()
    for fragment in expected_hints(frm, to, sev):
        assert fragment in lowered, f"{frm}->{to} ({sev.label}): {message!r} lacks {fragment!r}"


def test_transition_without_reason_has_a_clean_text() -> None:
    moved = transition(make_incident(S.TRIAGE, Severity.SEV3), S.DECLARED, actor="rein", at=LATER)
    assert moved.entry.text == "INC-7 moved from triage to declared"
    assert moved.entry.data == {"from": "triage", "to": "declared", "reason": ""}


@pytest.mark.parametrize(
    ("frm", "to", "sev", "fragments"),
    [
        (S.DECLARED, S.RECOVERED, Severity.SEV2, ["Approve containment"]),
        (S.DECLARED, S.POSTMORTEM, Severity.SEV1, ["Approve containment"]),
        (S.DECLARED, S.CLOSED, Severity.SEV3, ["SEV-3", "SEV-4", "Approve containment"]),
        (S.RECOVERED, S.CLOSED, Severity.SEV2, ["SEV-2", "postmortem", "Start postmortem"]),
        (S.RECOVERED, S.CLOSED, Severity.SEV1, ["SEV-1", "postmortem"]),
        (S.CONTAINED, S.CLOSED, Severity.SEV4, ["not recovered", "Mark recovered"]),
        (S.CONTAINED, S.POSTMORTEM, Severity.SEV2, ["Mark recovered"]),
        (S.TRIAGE, S.CONTAINED, Severity.SEV2, ["Declare incident"]),
        (S.TRIAGE, S.CLOSED, Severity.SEV4, ["triage", "dismiss"]),
        (S.CLOSED, S.DECLARED, Severity.SEV3, ["closed", "Declare a new incident"]),
        (S.DISMISSED, S.TRIAGE, Severity.SEV4, ["dismissed", "Declare a new incident"]),
        (S.CONTAINED, S.DISMISSED, Severity.SEV3, ["triage"]),
        (S.RECOVERED, S.CONTAINED, Severity.SEV3, ["cannot go back"]),
        (S.POSTMORTEM, S.TRIAGE, Severity.SEV1, ["never goes back to triage"]),
        (S.DECLARED, S.DECLARED, Severity.SEV2, ["already declared"]),
    ],
)
def test_refusal_wording(frm: S, to: S, sev: Severity, fragments: list[str]) -> None:
    with pytest.raises(IllegalTransition) as refused:
        transition(make_incident(frm, sev, number=3), to, actor="U0BOB", at=LATER)
    message = str(refused.value)
    assert re.search(r"\bINC-3\b", message), message
    for fragment in fragments:
        assert fragment in message, f"{message!r} lacks {fragment!r}"


def test_refusal_names_the_right_incident_for_large_numbers() -> None:
    incident = make_incident(S.DECLARED, Severity.SEV1, number=123456)
    with pytest.raises(IllegalTransition, match=r"INC-123456\b"):
        transition(incident, S.CLOSED, actor="U0BOB", at=LATER)


def test_a_sev4_closes_from_declared_but_the_same_incident_at_sev3_does_not() -> None:
    sev4 = make_incident(S.DECLARED, Severity.SEV4)
    assert transition(sev4, S.CLOSED, actor="U0BOB", at=LATER).incident.status is S.CLOSED
    sev3 = sev4.model_copy(update={"severity": Severity.SEV3})
    with pytest.raises(IllegalTransition):
        transition(sev3, S.CLOSED, actor="U0BOB", at=LATER)


def test_a_full_walk_through_the_lifecycle() -> None:
    incident = make_incident(S.TRIAGE, Severity.SEV2)
    entries = []
    for step, to in enumerate((S.DECLARED, S.CONTAINED, S.RECOVERED, S.POSTMORTEM, S.CLOSED)):
        moved = transition(incident, to, actor="U0BOB", at=T0 + timedelta(minutes=step))
        incident = moved.incident
        entries.append(moved.entry)
    assert incident.status is S.CLOSED
    assert [(e.data["from"], e.data["to"]) for e in entries] == [
        ("triage", "declared"),
        ("declared", "contained"),
        ("contained", "recovered"),
        ("recovered", "postmortem"),
        ("postmortem", "closed"),
    ]
