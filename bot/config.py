"""Deployment configuration from the environment (and `.env`). Read when the bot starts,
never at import time. Secrets are SecretStr so they never reach a log by accident."""

from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

API_TOKEN_MIN_LENGTH = 16
README_SLACK_APP = "README.md, section 'Create the Slack app'"
README_CONFIGURATION = "README.md, section 'Configuration'"


class ConfigError(Exception):
    """Configuration that cannot run; the message names the variable and where to read more."""


class StorageSettings(BaseSettings):
    """What `rein migrate` and `rein export` need: no Slack tokens."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    REIN_DB_PATH: str = "./data/rein.db"


class Settings(StorageSettings):
    SLACK_BOT_TOKEN: SecretStr
    SLACK_APP_TOKEN: SecretStr | None = None
    SLACK_SIGNING_SECRET: SecretStr | None = None
    REIN_SLACK_MODE: Literal["socket", "http"] | None = None
    REIN_SLACK_API_URL: str = "https://slack.com/api/"
    REIN_HOST: str = "127.0.0.1"
    REIN_PORT: int = Field(default=3000, ge=0, le=65535)
    REIN_POLICY_PATH: str = "./rein.yml"
    REIN_API_TOKENS: SecretStr = SecretStr("")
    REIN_ANNOUNCE_CHANNEL: str | None = None
    REIN_TRIAGE_CHANNEL: str | None = None

    @field_validator(
        "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
        "REIN_SLACK_MODE",
        "REIN_ANNOUNCE_CHANNEL",
        "REIN_TRIAGE_CHANNEL",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("SLACK_BOT_TOKEN")
    @classmethod
    def _bot_token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value

    @field_validator("SLACK_APP_TOKEN")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value

    @field_validator("REIN_SLACK_API_URL")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _mode_has_its_secret(self) -> "Settings":
        if self.slack_mode == "socket" and self.SLACK_APP_TOKEN is None:
            raise ValueError("SLACK_APP_TOKEN is required for REIN_SLACK_MODE=socket")
        if self.slack_mode == "http" and self.SLACK_SIGNING_SECRET is None:
            raise ValueError(
                "SLACK_SIGNING_SECRET is required in HTTP mode "
                "(or set SLACK_APP_TOKEN to use Socket Mode)"
            )
        parse_api_tokens(self.REIN_API_TOKENS.get_secret_value())
        return self

    @property
    def slack_mode(self) -> Literal["socket", "http"]:
        if self.REIN_SLACK_MODE is not None:
            return self.REIN_SLACK_MODE
        return "socket" if self.SLACK_APP_TOKEN is not None else "http"

    @property
    def api_tokens(self) -> dict[str, str]:
        """token -> name, for the HTTP API."""
        return parse_api_tokens(self.REIN_API_TOKENS.get_secret_value())


def parse_api_tokens(raw: str) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for index, pair in enumerate(p.strip() for p in raw.split(",") if p.strip()):
        name, sep, token = pair.partition(":")
        if not sep or not name.strip() or not token.strip():
            raise ValueError(f"REIN_API_TOKENS entry {index + 1} must be name:token")
        if len(token.strip()) < API_TOKEN_MIN_LENGTH:
            # The name only when it cannot be a token: written `token:name` by mistake, the
            # "name" is the token, and this message is printed to the terminal unredacted.
            short = len(name.strip()) < API_TOKEN_MIN_LENGTH
            named = f" ({name.strip()!r})" if short else ""
            raise ValueError(
                f"REIN_API_TOKENS entry {index + 1}{named}: its token is shorter than "
                f"{API_TOKEN_MIN_LENGTH} characters (entries are name:token)"
            )
        tokens[token.strip()] = name.strip()
    return tokens


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and `.env`, or a ConfigError that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def secrets_of(
    settings: Settings, environ: Mapping[str, str], secret_envs: Iterable[str]
) -> list[str]:
    """Every secret value Rein holds, for the log filter to redact."""
    values = [settings.SLACK_BOT_TOKEN, settings.SLACK_APP_TOKEN, settings.SLACK_SIGNING_SECRET]
    found = [v.get_secret_value() for v in values if v is not None]
    found += list(settings.api_tokens)
    found += [environ[name] for name in secret_envs if environ.get(name)]
    return found


def _explain(exc: ValidationError) -> str:
    lines = ["Rein cannot start: its configuration is incomplete or wrong."]
    for error in exc.errors(include_input=False, include_url=False):
        variable = ".".join(str(part) for part in error["loc"])
        problem = "is not set" if error["type"] == "missing" else error["msg"]
        problem = problem.removeprefix("Value error, ")
        line = f"{variable} {problem}" if variable else problem
        where = README_SLACK_APP if line.startswith("SLACK_") else README_CONFIGURATION
        lines.append(f"- {line}. See {where}.")
    lines.append("Put the variables in .env (copy .env.example) or in the environment.")
    return "\n".join(lines)
