"""The example files a newcomer copies: rein.example.yml loads, and .env.example names every
variable that PRODUCT.md, the settings and the example policy use."""

import re
from pathlib import Path

import pytest

from bot.config import Settings
from bot.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ROOT.parent / "shared" / "PRODUCT.md"
POLICY_EXAMPLE = ROOT / "rein.example.yml"
ENV_EXAMPLE = ROOT / ".env.example"

_ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example() -> dict[str, tuple[bool, str]]:
    """Variable -> (set? i.e. not commented out, value)."""
    found: dict[str, tuple[bool, str]] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            found[match[2]] = (match[1] is None, match[3])
    return found


def product_variables() -> set[str]:
    """The first column of PRODUCT.md's Configuration table."""
    text = PRODUCT.read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first_cell = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def test_example_policy_loads() -> None:
    policy = load_policy(POLICY_EXAMPLE)
    assert len(policy.agents) >= 2
    assert {s.value for s in policy.severities} == {"sev1", "sev2", "sev3", "sev4"}
    assert policy.alerts
    assert any(a.kill_switch is None and not a.writes_to for a in policy.agents)


def test_every_kill_switch_secret_is_in_env_example() -> None:
    names = env_example()
    secrets = {
        a.kill_switch.secret_env for a in load_policy(POLICY_EXAMPLE).agents if a.kill_switch
    }
    assert secrets
    assert secrets - names.keys() == set()
    assert all(names[s][0] for s in secrets), "kill-switch secrets have no default: set them"


def test_env_example_lists_product_md_configuration() -> None:
    variables = product_variables()
    assert {"SLACK_BOT_TOKEN", "REIN_PORT", "REIN_TRIAGE_CHANNEL"} <= variables
    assert variables - env_example().keys() == set()


def test_env_example_lists_every_setting() -> None:
    assert set(Settings.model_fields) - env_example().keys() == set()


def test_every_env_example_variable_has_a_comment_above_it() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        match = _ENV_LINE.match(line.strip())
        if match and match[1] is None:  # a variable that is set: its comment is the line above
            above = lines[index - 1].strip()
            assert above.startswith("#") and not _ENV_LINE.match(above), line
        elif match:  # a commented-out default: a comment line above it, or above its pair
            before = [x.strip() for x in lines[:index] if x.strip()]
            assert before and before[-1].startswith("# "), line


def test_env_example_placeholders_pass_configuration_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Copying .env.example gives a configuration that starts (and then fails at Slack's
    auth.test with the fake token), not a validation error on the example itself."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
    assert settings.SLACK_BOT_TOKEN.get_secret_value().startswith("xoxb-")
    assert settings.slack_mode == "socket"
    assert len(settings.api_tokens) == 2
