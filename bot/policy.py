"""Loading the versioned policy file. A wrong file stops start-up with file, field and problem."""

from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from bot.domain.policy import Policy


class PolicyError(Exception):
    """The policy file cannot be used; the message names the file, the field and the problem."""


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(
            f"{path}: the policy file does not exist. Copy rein.example.yml to {path} "
            "and describe your agents (README.md, section 'Configuration')."
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: expected a mapping with agents:, severities: and alerts:")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(_explain(path, raw, exc)) from None


def _explain(path: Path, raw: dict, exc: ValidationError) -> str:
    lines = [f"{path}: the policy file is wrong:"]
    for error in exc.errors(include_url=False):
        field = _field_path(raw, error["loc"])
        problem = error["msg"].removeprefix("Value error, ")
        lines.append(f"- {field}: {problem}" if field else f"- {problem}")
    return "\n".join(lines)


def _field_path(raw: object, loc: tuple) -> str:
    """`agents[0].owner` rather than pydantic's tuple; names the agent id when it has one."""
    parts: list[str] = []
    node = raw
    for part in loc:
        if part == "[key]":  # pydantic's marker for a bad mapping key: the key is named already
            continue
        if isinstance(part, int):
            label = f"[{part}]"
            if isinstance(node, list) and part < len(node) and isinstance(node[part], dict):
                agent_id = node[part].get("id")
                if isinstance(agent_id, str) and parts and parts[-1] == "agents":
                    label = f"[{part}] (id {agent_id})"
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(part))
        node = _child(node, part)
    return "".join(parts)


def _child(node: object, part: object) -> object:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def missing_kill_switch_secrets(policy: Policy, environ: Mapping[str, str]) -> list[str]:
    """One line per agent whose kill-switch secret variable is not set."""
    return [
        f"agent {agent.id}: kill_switch.secret_env {agent.kill_switch.secret_env} is not set"
        for agent in policy.agents
        if agent.kill_switch is not None and not environ.get(agent.kill_switch.secret_env)
    ]
