"""The policy file: loading, and refusals that name the file, the field and the problem."""

from pathlib import Path
from textwrap import dedent

import pytest

from bot.domain.enums import AutonomyMode, Severity
from bot.domain.policy import Policy
from bot.policy import PolicyError, load_policy, missing_kill_switch_secrets

TESTS = Path(__file__).parent
EXAMPLE_FOR_TESTS = TESTS / "policy.example.yml"
REIN_EXAMPLE = TESTS.parent / "rein.example.yml"

GOOD = """\
agents:
  - id: crm-writer
    name: CRM enrichment agent
    owner: U0123OWNER
    writes_to: [crm]
    outbound: true
    scheduled: true
    kill_switch: {url: "https://agents.example.com/rein/kill", secret_env: REIN_KS_CRM_WRITER}
    clean_runs_per_stage: 5
    normal_mode: autonomous
  - id: page-publisher
    name: Page publisher
    owner: U0PUBLISH
severities:
  sev1: {approvers: [S0123SECOPS, U0123CTO], update_every_minutes: 30, postmortem_due_hours: 48}
  sev2: {approvers: [U0123HEADOPS], update_every_minutes: 60, postmortem_due_hours: 48}
  sev3: {approvers: [], update_every_minutes: 240}
  sev4: {approvers: []}
alerts:
  - {kind: cost_spike, agents: [crm-writer], severity: sev3, declare: true, contain: true}
  - {kind: failed_scorecard, agents: ["*"], severity: sev4}
"""


def write(tmp_path: Path, text: str, name: str = "rein.yml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text), encoding="utf-8")
    return path


def refusal(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    message = str(refused.value)
    assert str(path) in message, "the message names the file"
    return message


# --- files that load --------------------------------------------------------------------------


def test_the_tests_policy_loads() -> None:
    policy = load_policy(EXAMPLE_FOR_TESTS)
    assert [a.id for a in policy.agents] == ["crm-writer", "page-publisher"]
    crm = policy.agent("crm-writer")
    assert crm is not None and crm.owner == "U0OWNER" and crm.clean_runs_per_stage == 3
    assert policy.approvers(Severity.SEV1) == ["S0SECOPS", "U0CTO"]
    assert policy.approvers(Severity.SEV3) == []
    assert policy.agent("ghost") is None


@pytest.mark.skipif(not REIN_EXAMPLE.exists(), reason="rein.example.yml is not written yet")
def test_rein_example_loads() -> None:
    policy = load_policy(REIN_EXAMPLE)
    assert policy.agents
    assert missing_kill_switch_secrets(policy, {}) == [
        f"agent {a.id}: kill_switch.secret_env {a.kill_switch.secret_env} is not set"
        for a in policy.agents
        if a.kill_switch is not None
    ]


def test_the_products_example_loads(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    crm = policy.agent("crm-writer")
    assert crm is not None and crm.kill_switch is not None
    assert str(crm.kill_switch.url) == "https://agents.example.com/rein/kill"
    assert crm.writes_to == ["crm"] and crm.outbound and crm.scheduled
    pages = policy.agent("page-publisher")
    assert pages is not None
    assert pages.kill_switch is None
    assert pages.normal_mode is AutonomyMode.AUTONOMOUS and pages.clean_runs_per_stage == 5
    assert pages.writes_to == [] and not pages.outbound and not pages.scheduled
    assert [r.kind for r in policy.alerts] == ["cost_spike", "failed_scorecard"]
    assert policy.alerts[0].declare and policy.alerts[0].contain
    assert not policy.alerts[1].declare


def test_update_reminders_follow_the_file_then_the_defaults(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.update_every_minutes(Severity.SEV1) == 30
    assert policy.update_every_minutes(Severity.SEV3) == 240
    assert policy.update_every_minutes(Severity.SEV4) is None  # no reminders for SEV-4
    minimal = Policy.model_validate({"agents": [{"id": "a", "name": "A", "owner": "U0A"}]})
    assert minimal.update_every_minutes(Severity.SEV1) == 30
    assert minimal.update_every_minutes(Severity.SEV2) == 60
    assert minimal.approvers(Severity.SEV1) == []


# --- files that do not ------------------------------------------------------------------------


def test_bad_owner_id(tmp_path: Path) -> None:
    message = refusal(tmp_path, GOOD.replace("owner: U0123OWNER", "owner: alice"))
    assert "agents[0] (id crm-writer).owner" in message
    assert "Slack user id" in message


def test_bad_owner_id_of_the_second_agent(tmp_path: Path) -> None:
    message = refusal(tmp_path, GOOD.replace("owner: U0PUBLISH", "owner: '@bob'"))
    assert "agents[1] (id page-publisher).owner" in message


def test_duplicate_agent_ids(tmp_path: Path) -> None:
    message = refusal(tmp_path, GOOD.replace("id: page-publisher", "id: crm-writer"))
    assert "unique" in message and "crm-writer" in message


def test_unknown_severity_key(tmp_path: Path) -> None:
    message = refusal(tmp_path, GOOD.replace("  sev4: {approvers: []}", "  sev5: {approvers: []}"))
    assert "severities.sev5" in message
    assert "sev4" in message  # says which keys are allowed


def test_alert_rule_naming_an_unknown_agent(tmp_path: Path) -> None:
    message = refusal(tmp_path, GOOD.replace("agents: [crm-writer]", "agents: [crm-writer, ghost]"))
    assert "alerts[0]" in message and "ghost" in message and "unknown" in message


@pytest.mark.parametrize("severity", ["sev1", "sev2"])
def test_auto_declare_at_sev1_or_sev2_needs_an_approver(tmp_path: Path, severity: str) -> None:
    text = GOOD.replace(
        "  sev1: {approvers: [S0123SECOPS, U0123CTO], update_every_minutes: 30, "
        "postmortem_due_hours: 48}",
        "  sev1: {approvers: []}",
    ).replace(
        "  sev2: {approvers: [U0123HEADOPS], update_every_minutes: 60, postmortem_due_hours: 48}",
        "  sev2: {approvers: []}",
    )
    text = text.replace("severity: sev3, declare: true", f"severity: {severity}, declare: true")
    message = refusal(tmp_path, text)
    assert "alerts[0]" in message
    assert f"severities.{severity}.approvers" in message
    assert "approver" in message


def test_auto_declare_at_sev2_with_an_approver_loads(tmp_path: Path) -> None:
    text = GOOD.replace("severity: sev3, declare: true", "severity: sev2, declare: true")
    assert load_policy(write(tmp_path, text)).alerts[0].severity is Severity.SEV2


def test_triage_only_rule_at_sev1_needs_no_approver(tmp_path: Path) -> None:
    text = GOOD.replace(
        '{kind: failed_scorecard, agents: ["*"], severity: sev4}',
        '{kind: failed_scorecard, agents: ["*"], severity: sev1}',
    )
    text = text.replace("approvers: [S0123SECOPS, U0123CTO]", "approvers: []")
    assert load_policy(write(tmp_path, text)).alerts[1].severity is Severity.SEV1


@pytest.mark.parametrize(
    "url", ["ftp://agents.example.com/kill", "file:///etc/passwd", "agents.example.com", "''"]
)
def test_kill_switch_url_must_be_http(tmp_path: Path, url: str) -> None:
    message = refusal(tmp_path, GOOD.replace('"https://agents.example.com/rein/kill"', url))
    assert "agents[0] (id crm-writer).kill_switch.url" in message
    assert "URL" in message or "url" in message


def test_kill_switch_secret_env_must_be_a_variable_name(tmp_path: Path) -> None:
    message = refusal(
        tmp_path, GOOD.replace("secret_env: REIN_KS_CRM_WRITER", "secret_env: s3cr3t!")
    )
    assert "agents[0] (id crm-writer).kill_switch.secret_env" in message
    assert "environment variable" in message


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (("normal_mode: autonomous", "normal_mode: paused"), "normal_mode", "cannot be paused"),
        (("normal_mode: autonomous", "normal_mode: yolo"), "normal_mode", "autonomous"),
        (("clean_runs_per_stage: 5", "clean_runs_per_stage: 0"), "clean_runs_per_stage", "1"),
        (("outbound: true", "outbound: maybe"), "outbound", "bool"),
        (("id: crm-writer", "id: CRM Writer"), "id", "lowercase"),
        (("    scheduled: true\n", "    scheduled: true\n    colour: blue\n"), "colour", "Extra"),
    ],
)
def test_agent_fields(tmp_path: Path, change: tuple[str, str], field: str, problem: str) -> None:
    message = refusal(tmp_path, GOOD.replace(*change))
    assert f"agents[0] (id {'CRM Writer' if field == 'id' else 'crm-writer'}).{field}" in message
    assert problem in message


def test_bad_approver(tmp_path: Path) -> None:
    message = refusal(tmp_path, GOOD.replace("[U0123HEADOPS]", "[U0123HEADOPS, '#ops']"))
    assert "severities.sev2.approvers" in message and "'#ops'" in message


def test_unknown_alert_kind(tmp_path: Path) -> None:
    message = refusal(tmp_path, GOOD.replace("kind: cost_spike", "kind: vibes"))
    assert "alerts[0].kind" in message and "cost_spike" in message


def test_contain_needs_declare(tmp_path: Path) -> None:
    message = refusal(tmp_path, GOOD.replace("declare: true, contain: true", "contain: true"))
    assert "alerts[0]" in message and "declare: true" in message


def test_no_agents(tmp_path: Path) -> None:
    message = refusal(tmp_path, "agents: []\n")
    assert "agents" in message


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = GOOD.replace("owner: U0123OWNER", "owner: alice").replace(
        "owner: U0PUBLISH", "owner: bob"
    )
    message = refusal(tmp_path, text)
    assert "agents[0] (id crm-writer).owner" in message
    assert "agents[1] (id page-publisher).owner" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "rein.yml"
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    message = str(refused.value)
    assert str(path) in message and "does not exist" in message
    assert "rein.example.yml" in message


def test_invalid_yaml(tmp_path: Path) -> None:
    message = refusal(tmp_path, "agents:\n  - id: [unclosed\n")
    assert "not valid YAML" in message


@pytest.mark.parametrize("text", ["- id: crm-writer\n- id: other\n", "just a string\n", "", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    message = refusal(tmp_path, text)
    assert "mapping" in message


# --- kill-switch secrets ----------------------------------------------------------------------


def test_missing_kill_switch_secrets(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    expected = ["agent crm-writer: kill_switch.secret_env REIN_KS_CRM_WRITER is not set"]
    assert missing_kill_switch_secrets(policy, {}) == expected
    assert missing_kill_switch_secrets(policy, {"REIN_KS_CRM_WRITER": ""}) == expected
    assert missing_kill_switch_secrets(policy, {"REIN_KS_CRM_WRITER": "s3cret-value"}) == []


def test_agents_without_kill_switch_need_no_secret() -> None:
    policy = load_policy(EXAMPLE_FOR_TESTS)
    assert missing_kill_switch_secrets(policy, {}) == []
