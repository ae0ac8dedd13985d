"""Request bodies of the HTTP API, validated with pydantic, and the errors that name the field."""

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from bot.domain.enums import Severity
from bot.domain.models import SUMMARY_MAX
from bot.domain.policy import AlertKind
from bot.domain.rollback import NewRollbackItem
from bot.domain.severity import parse_severity

MAX_BODY = 1024 * 1024  # also the HTTP server's client_max_size
FINGERPRINT_MAX = 200
AGENT_ID_MAX = 100
RUN_ID_MAX = 200

Body = TypeVar("Body", bound=BaseModel)


class BadInput(ValueError):
    """A request body Rein refuses (422); `field` names what is wrong ("body": all of it)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class AlertRequest(BaseModel):
    """`POST /v1/alerts`. Text fields are kept as sent: they are escaped where they are shown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: str = Field(min_length=1, max_length=AGENT_ID_MAX)
    kind: AlertKind
    summary: str = Field(min_length=1, max_length=SUMMARY_MAX)
    details: str | None = Field(default=None, max_length=MAX_BODY)
    fingerprint: str | None = Field(default=None, min_length=1, max_length=FINGERPRINT_MAX)
    severity: Severity | None = None

    @field_validator("summary")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must say what happened, not only whitespace")
        return value

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Any:
        """`sev2`, `SEV-2` and `sev-2` all mean SEV-2, as everywhere else in Rein."""
        if isinstance(value, str):
            try:
                return parse_severity(value)
            except ValueError:
                raise ValueError("must be sev1, sev2, sev3 or sev4") from None
        return value


class EvidenceRequest(BaseModel):
    """`POST /v1/incidents/{ref}/evidence`. Kept exactly as sent; the kind, size and url rules
    are the domain's (`bot/domain/evidence.py: new_evidence`), applied after parsing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    content: str | None = None
    url: str | None = None
    source: str | None = None
    note: str | None = None


class RunRequest(BaseModel):
    """`POST /v1/agents/{agent_id}/runs`: `{"run_id", "outcome", "summary"?, "cost"?}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, max_length=RUN_ID_MAX)
    outcome: Literal["ok", "failed", "flagged"]
    summary: str | None = Field(default=None, max_length=SUMMARY_MAX)
    cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name the run, not only whitespace")
        return value


class RollbackRequest(NewRollbackItem):
    """`POST /v1/incidents/{ref}/rollback`: `{"system", "record", "before"?, "after"?}`. The
    limits are the ledger's (`bot/domain/rollback.py`); the values are kept exactly as sent."""


def parse_body(model: type[Body], raw: bytes) -> Body:
    """The body as `model`, or `BadInput` naming the first field that is wrong."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        raise BadInput(*_explain(first, model)) from None


def _explain(error: ErrorDetails, model: type[BaseModel]) -> tuple[str, str]:
    kind, loc = error["type"], error["loc"]
    if kind == "json_invalid":
        return f"the body is not valid JSON: {error['msg'].removeprefix('Invalid JSON: ')}", "body"
    if not loc:
        return "the body must be a JSON object", "body"
    field = ".".join(str(part) for part in loc)
    if kind == "missing":
        return f"{field} is required", field
    if kind == "extra_forbidden":
        known = ", ".join(model.model_fields)
        return f"{field} is not a field of this request; the fields are: {known}", field
    message = error["msg"].removeprefix("Value error, ")
    return f"{field}: {message[:1].lower()}{message[1:]}", field
