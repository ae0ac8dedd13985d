"""The policy file's shape: agents, severities and alert rules. Validated, never trusted."""

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from bot.domain.enums import AutonomyMode, Severity

SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
SLACK_APPROVER_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")  # S… is a user group
AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")

ALERT_KINDS = ("cost_spike", "failed_scorecard", "anomaly", "human_report", "customer_complaint")
AlertKind = Literal[
    "cost_spike", "failed_scorecard", "anomaly", "human_report", "customer_complaint"
]

DEFAULT_UPDATE_MINUTES = {Severity.SEV1: 30, Severity.SEV2: 60, Severity.SEV3: 240}
DEFAULT_POSTMORTEM_HOURS = 48


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KillSwitch(_Strict):
    url: HttpUrl
    secret_env: str

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not ENV_NAME.match(value):
            raise ValueError("must be an environment variable name such as REIN_KS_CRM_WRITER")
        return value


class Agent(_Strict):
    id: str
    name: str = Field(min_length=1, max_length=100)
    owner: str
    writes_to: list[str] = Field(default_factory=list)
    outbound: bool = False
    scheduled: bool = False
    kill_switch: KillSwitch | None = None
    clean_runs_per_stage: int = Field(default=5, ge=1, le=10_000)
    normal_mode: AutonomyMode = AutonomyMode.AUTONOMOUS

    @field_validator("id")
    @classmethod
    def _agent_id(cls, value: str) -> str:
        if not AGENT_ID.match(value):
            raise ValueError(
                "must be lowercase letters, digits, '-' or '_' (at most 63), such as crm-writer"
            )
        return value

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str) -> str:
        if not SLACK_USER_ID.match(value):
            raise ValueError("must be a Slack user id such as U0123OWNER")
        return value

    @field_validator("normal_mode")
    @classmethod
    def _normal_mode(cls, value: AutonomyMode) -> AutonomyMode:
        if value is AutonomyMode.PAUSED:
            raise ValueError("cannot be paused: an agent's normal mode is the one it runs in")
        return value


class SeverityPolicy(_Strict):
    approvers: list[str] = Field(default_factory=list)
    update_every_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    postmortem_due_hours: int | None = Field(default=None, ge=1, le=24 * 90)

    @field_validator("approvers")
    @classmethod
    def _approver_ids(cls, value: list[str]) -> list[str]:
        for item in value:
            if not SLACK_APPROVER_ID.match(item):
                raise ValueError(f"{item!r} is not a Slack user id (U…) or user-group id (S…)")
        return value


class AlertRule(_Strict):
    kind: AlertKind
    agents: list[str] = Field(min_length=1)
    severity: Severity
    declare: bool = False
    contain: bool = False


class Policy(_Strict):
    agents: list[Agent] = Field(min_length=1)
    severities: dict[Severity, SeverityPolicy] = Field(default_factory=dict)
    alerts: list[AlertRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> "Policy":
        ids = [agent.id for agent in self.agents]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"agent ids must be unique; repeated: {', '.join(duplicates)}")
        for index, rule in enumerate(self.alerts):
            unknown = [a for a in rule.agents if a != "*" and a not in ids]
            if unknown:
                raise ValueError(f"alerts[{index}] names unknown agents: {', '.join(unknown)}")
            if rule.contain and not rule.declare:
                raise ValueError(f"alerts[{index}]: contain: true needs declare: true")
            if rule.declare and rule.severity in (Severity.SEV1, Severity.SEV2):
                if not self.severity(rule.severity).approvers:
                    raise ValueError(
                        f"alerts[{index}] declares {rule.severity.label} by itself, "
                        f"so severities.{rule.severity.value}.approvers needs at least one approver"
                    )
        return self

    def agent(self, agent_id: str) -> Agent | None:
        return next((a for a in self.agents if a.id == agent_id), None)

    def severity(self, severity: Severity) -> SeverityPolicy:
        return self.severities.get(severity) or SeverityPolicy()

    def approvers(self, severity: Severity) -> list[str]:
        return list(self.severity(severity).approvers)

    def update_every_minutes(self, severity: Severity) -> int | None:
        configured = self.severities.get(severity)
        if configured is not None and "update_every_minutes" in configured.model_fields_set:
            return configured.update_every_minutes
        return DEFAULT_UPDATE_MINUTES.get(severity)
