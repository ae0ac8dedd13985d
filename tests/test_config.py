"""Configuration from the environment, and the log filter that keeps secrets out of logs."""

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import (
    README_CONFIGURATION,
    README_SLACK_APP,
    ConfigError,
    Settings,
    StorageSettings,
    load_settings,
    parse_api_tokens,
    secrets_of,
)
from bot.logs import REDACTED, RedactSecrets, configure_logging

BOT_TOKEN = "xoxb-1111-2222-BotTokenValue"
APP_TOKEN = "xapp-1-A0-3333-AppTokenValue"
SIGNING_SECRET = "f00dfeedsigningsecret0123"
API_TOKEN = "ops-dashboard-token-0123456789"
OTHER_API_TOKEN = "monitoring-token-abcdefghijkl"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of Rein's from the developer's shell, and no .env from the checkout."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def configure(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def config_error(**overrides: object) -> str:
    with pytest.raises(ConfigError) as refused:
        load_settings(**overrides)
    return str(refused.value)


# --- required variables and modes -------------------------------------------------------------


def test_empty_environment_names_the_bot_token_and_the_readme() -> None:
    message = config_error()
    assert "SLACK_BOT_TOKEN is not set" in message
    assert README_SLACK_APP in message
    assert "README.md" in message
    assert ".env" in message  # where to put it


def test_empty_environment_without_env_file_too() -> None:
    message = config_error(_env_file=None)
    assert "SLACK_BOT_TOKEN" in message


def test_env_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"SLACK_BOT_TOKEN={BOT_TOKEN}\nSLACK_APP_TOKEN={APP_TOKEN}\nREIN_PORT=3100\n",
        encoding="utf-8",
    )
    settings = load_settings()
    assert settings.SLACK_BOT_TOKEN.get_secret_value() == BOT_TOKEN
    assert settings.slack_mode == "socket"
    assert settings.REIN_PORT == 3100


def test_environment_wins_over_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        f"SLACK_BOT_TOKEN={BOT_TOKEN}\nSLACK_APP_TOKEN={APP_TOKEN}\nREIN_PORT=3100\n",
        encoding="utf-8",
    )
    configure(monkeypatch, REIN_PORT="3200")
    assert load_settings().REIN_PORT == 3200


def test_socket_mode_is_the_default_with_an_app_token(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN)
    settings = load_settings()
    assert settings.slack_mode == "socket"
    assert settings.SLACK_SIGNING_SECRET is None


def test_http_mode_is_the_default_without_an_app_token(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET)
    assert load_settings().slack_mode == "http"


def test_an_empty_app_token_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(
        monkeypatch,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN="",
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
    )
    settings = load_settings()
    assert settings.SLACK_APP_TOKEN is None and settings.slack_mode == "http"


def test_explicit_http_mode_with_an_app_token(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(
        monkeypatch,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        REIN_SLACK_MODE="http",
    )
    assert load_settings().slack_mode == "http"


def test_http_mode_without_signing_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, SLACK_BOT_TOKEN=BOT_TOKEN)
    message = config_error()
    assert "SLACK_SIGNING_SECRET is required in HTTP mode" in message
    assert "SLACK_APP_TOKEN" in message  # the other way out
    assert README_SLACK_APP in message


def test_explicit_http_mode_without_signing_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(
        monkeypatch, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN, REIN_SLACK_MODE="http"
    )
    assert "SLACK_SIGNING_SECRET" in config_error()


def test_socket_mode_without_app_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(
        monkeypatch,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        REIN_SLACK_MODE="socket",
    )
    message = config_error()
    assert "SLACK_APP_TOKEN is required" in message and README_SLACK_APP in message


def test_unknown_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(
        monkeypatch,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        REIN_SLACK_MODE="pigeon",
    )
    message = config_error()
    assert "REIN_SLACK_MODE" in message and "socket" in message
    assert README_CONFIGURATION in message


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SLACK_BOT_TOKEN", "xoxp-9999-UserTokenNotABot", "xoxb-"),
        ("SLACK_APP_TOKEN", "xoxb-9999-BotTokenNotAnApp", "xapp-"),
    ],
)
def test_wrong_kind_of_token_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    configure(monkeypatch, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN)
    monkeypatch.setenv(variable, value)
    message = config_error()
    assert variable in message and expected in message
    assert value not in message
    assert "9999" not in message


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN)
    settings = load_settings()
    assert settings.REIN_SLACK_API_URL == "https://slack.com/api/"
    assert (settings.REIN_HOST, settings.REIN_PORT) == ("127.0.0.1", 3000)
    assert settings.REIN_DB_PATH == "./data/rein.db"
    assert settings.REIN_POLICY_PATH == "./rein.yml"
    assert settings.api_tokens == {}
    assert settings.REIN_ANNOUNCE_CHANNEL is None and settings.REIN_TRIAGE_CHANNEL is None


def test_api_url_gets_its_slash_and_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(
        monkeypatch,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        REIN_SLACK_API_URL="http://127.0.0.1:9999/api",
    )
    assert load_settings().REIN_SLACK_API_URL == "http://127.0.0.1:9999/api/"
    monkeypatch.setenv("REIN_SLACK_API_URL", "slack.com/api")
    assert "REIN_SLACK_API_URL" in config_error()


@pytest.mark.parametrize("port", ["abc", "70000", "-1"])
def test_bad_port(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    configure(monkeypatch, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN, REIN_PORT=port)
    message = config_error()
    assert "REIN_PORT" in message and README_CONFIGURATION in message


def test_storage_settings_need_no_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    assert StorageSettings().REIN_DB_PATH == "./data/rein.db"
    monkeypatch.setenv("REIN_DB_PATH", "/var/lib/rein/rein.db")
    assert StorageSettings().REIN_DB_PATH == "/var/lib/rein/rein.db"


# --- API tokens -------------------------------------------------------------------------------


def test_api_tokens_parse() -> None:
    raw = f" dashboard:{API_TOKEN} , monitoring : {OTHER_API_TOKEN} ,,"
    assert parse_api_tokens(raw) == {API_TOKEN: "dashboard", OTHER_API_TOKEN: "monitoring"}
    assert parse_api_tokens("") == {}
    assert parse_api_tokens(" , ") == {}


def test_api_token_may_contain_a_colon() -> None:
    assert parse_api_tokens("ci:abc:defghijklmnopqrs") == {"abc:defghijklmnopqrs": "ci"}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("0123456789abcdefXYZ", "entry 1 must be name:token"),
        (f"dashboard:{API_TOKEN},0123456789abcdefXYZ", "entry 2 must be name:token"),
        (":0123456789abcdefXYZ", "entry 1 must be name:token"),
        ("dashboard:", "entry 1 must be name:token"),
        ("dashboard:tiny-tok-9", "shorter than 16"),
    ],
)
def test_bad_api_tokens_are_refused_without_echoing_them(raw: str, fragment: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_api_tokens(raw)
    message = str(refused.value)
    assert fragment in message
    for secret in ("0123456789abcdefXYZ", "tiny-tok-9", API_TOKEN):
        assert secret not in message


def test_bad_api_tokens_stop_start_up_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(
        monkeypatch,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        REIN_API_TOKENS=f"dashboard:{API_TOKEN},ops:tiny-tok-9",
    )
    message = config_error()
    assert "REIN_API_TOKENS" in message and "'ops'" in message and "16" in message
    assert "tiny-tok-9" not in message and API_TOKEN not in message
    assert README_CONFIGURATION in message


def test_api_tokens_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(
        monkeypatch,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        REIN_API_TOKENS=f"dashboard:{API_TOKEN}",
    )
    assert load_settings().api_tokens == {API_TOKEN: "dashboard"}


# --- secrets never shown ----------------------------------------------------------------------


@pytest.fixture
def full_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    configure(
        monkeypatch,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        REIN_API_TOKENS=f"dashboard:{API_TOKEN},monitoring:{OTHER_API_TOKEN}",
    )
    return load_settings()


def test_settings_never_show_a_secret(full_settings: Settings) -> None:
    shown = "\n".join(
        [
            str(full_settings),
            repr(full_settings),
            f"{full_settings}",
            full_settings.model_dump_json(),
            str(full_settings.model_dump()),
        ]
    )
    for secret in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, API_TOKEN, OTHER_API_TOKEN):
        assert secret not in shown
    assert "SLACK_BOT_TOKEN" in repr(full_settings)  # it is a real repr, just masked


def test_secrets_of_lists_every_secret(full_settings: Settings) -> None:
    environ = {"REIN_KS_CRM_WRITER": "kill-switch-hmac-secret", "REIN_KS_EMPTY": ""}
    found = secrets_of(full_settings, environ, ["REIN_KS_CRM_WRITER", "REIN_KS_EMPTY", "UNSET"])
    assert set(found) == {
        BOT_TOKEN,
        APP_TOKEN,
        SIGNING_SECRET,
        API_TOKEN,
        OTHER_API_TOKEN,
        "kill-switch-hmac-secret",
    }


# --- RedactSecrets ----------------------------------------------------------------------------


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactSecrets([SIGNING_SECRET, "kill-switch-hmac-secret"]))
    logger = logging.getLogger("tests.test_config.redaction")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.handlers.clear()


@pytest.mark.parametrize(
    "token",
    [
        BOT_TOKEN,
        APP_TOKEN,
        "xoxp-1234-5678-UserToken",
        "xoxa-2-Another",
    ],
)
def test_slack_tokens_are_redacted_from_messages(
    capture: tuple[logging.Logger, io.StringIO], token: str
) -> None:
    logger, stream = capture
    logger.warning(f"calling Slack with {token} failed")
    output = stream.getvalue()
    assert token not in output
    assert f"calling Slack with {REDACTED} failed" in output


def test_tokens_in_args_are_redacted(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info("token %s and secret %s", BOT_TOKEN, SIGNING_SECRET)
    logger.info("mapping %(token)s", {"token": APP_TOKEN})
    output = stream.getvalue()
    assert BOT_TOKEN not in output and SIGNING_SECRET not in output and APP_TOKEN not in output
    assert f"token {REDACTED} and secret {REDACTED}" in output
    assert f"mapping {REDACTED}" in output


def test_configured_secrets_are_redacted(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.error("signing with kill-switch-hmac-secret!")
    assert stream.getvalue() == f"ERROR signing with {REDACTED}!\n"


def test_exception_text_is_redacted(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    try:
        raise RuntimeError(f"auth failed for {BOT_TOKEN} with {SIGNING_SECRET}")
    except RuntimeError:
        logger.exception("Slack call failed")
    output = stream.getvalue()
    assert "Traceback" in output and "RuntimeError: auth failed for" in output
    assert BOT_TOKEN not in output and SIGNING_SECRET not in output
    assert output.count(REDACTED) == 2


def test_clean_records_are_left_alone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "INC-%d declared", (12,), None)
    assert RedactSecrets([SIGNING_SECRET]).filter(record) is True
    assert record.msg == "INC-%d declared" and record.args == (12,)


def test_short_and_empty_secrets_do_not_mangle_logs() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "about abc", None, None)
    RedactSecrets(["", "ab", "abc"]).filter(record)
    assert record.getMessage() == "about abc"


def test_longer_secret_is_redacted_whole() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key abcdefghij end", None, None)
    RedactSecrets(["abcdef", "abcdefghij"]).filter(record)
    assert record.getMessage() == f"key {REDACTED} end"


def test_configure_logging_installs_the_filter() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    slack_level = logging.getLogger("slack_sdk").level
    try:
        configure_logging([SIGNING_SECRET], level=logging.DEBUG)
        assert len(root.handlers) == 1
        assert any(isinstance(f, RedactSecrets) for f in root.handlers[0].filters)
        assert logging.getLogger("slack_sdk").getEffectiveLevel() >= logging.INFO
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.getLogger("slack_sdk").setLevel(slack_level)
