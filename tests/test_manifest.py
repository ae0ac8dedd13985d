"""manifest.yml is a valid Slack app manifest and matches the code, both ways.

- It validates against Slack's manifest schema (../shared/slack/manifest-schema).
- Every slash command, shortcut and event the handlers register is declared, and nothing
  else is (a declared command nobody listens to makes Slack show "dispatch_failed").
- Its bot scopes are exactly what the code needs: every Slack method the code calls has one
  of its bot scopes (from ../shared/slack/methods/<method>.json), and every scope is the only
  one that satisfies some need, so a redundant or unused scope fails the test.
"""

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
import yaml

import handlers

ROOT = Path(__file__).resolve().parents[1]
SHARED_SLACK = Path(__file__).resolve().parents[1].parent / "shared" / "slack"
METHODS_DIR = SHARED_SLACK / "methods"
SCHEMA_PATH = SHARED_SLACK / "manifest-schema" / "manifest.schema.1.0.0.json"
MANIFEST_PATH = ROOT / "manifest.yml"
CODE_DIRS = ("bot", "handlers")

# The scope Slack requires before it delivers a bot event. Add a row when the code starts
# listening to a new event type.
EVENT_SCOPES: dict[str, set[str]] = {
    "reaction_added": {"reactions:read"},
    "reaction_removed": {"reactions:read"},
    "pin_added": {"pins:read"},
    "message.channels": {"channels:history"},
    "message.groups": {"groups:history"},
    "message.im": {"im:history"},
    "message.mpim": {"mpim:history"},
    "app_mention": {"app_mentions:read"},
    "member_joined_channel": {"channels:read", "groups:read"},
    "channel_archive": {"channels:read"},
    "app_home_opened": set(),
    "app_uninstalled": set(),
    "tokens_revoked": set(),
}

# Scopes no method file lists for the calls Rein makes, kept on purpose:
# chat:write.public lets chat.postMessage post to a public channel Rein is not a member of.
# Rein posts the incident digest in REIN_ANNOUNCE_CHANNEL and alerts in REIN_TRIAGE_CHANNEL;
# nobody is asked to /invite Rein there first, and a digest that silently fails with
# `not_in_channel` would defeat the point of the announcements channel.
EXTRA_SCOPES: dict[str, str] = {
    "chat:write.public": "chat.postMessage to the announcements/triage channel without joining",
}

_QUOTED_METHOD = re.compile(r"""["']([a-z]+(?:\.[a-zA-Z]+)+)["']""")
_SDK_METHOD = re.compile(r"\.([a-z]+(?:_[a-zA-Z]+)+)\(")  # client.conversations_history(


# --- helpers -------------------------------------------------------------------------------


def load_manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST_PATH.read_text(encoding="utf-8"))


def bot_scopes(method: str) -> set[str]:
    spec = yaml.safe_load((METHODS_DIR / f"{method}.json").read_text(encoding="utf-8"))
    return set((spec.get("scope") or {}).get("bot") or [])


def called_methods() -> set[str]:
    """Slack Web API methods named in the code: quoted (`"chat.postMessage"`, as passed to
    `api_call`) or as slack_sdk methods (`client.chat_postMessage(`)."""
    found: set[str] = set()
    for folder in CODE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            candidates = set(_QUOTED_METHOD.findall(source))
            candidates |= {name.replace("_", ".") for name in _SDK_METHOD.findall(source)}
            found |= {m for m in candidates if (METHODS_DIR / f"{m}.json").is_file()}
    # Bolt itself calls auth.test when it starts; it needs no scope, listed for completeness.
    return found | {"auth.test"}


def _name(constraint: Any, key: str) -> str:
    """The exact name a listener matches; the manifest cannot declare a regex."""
    if isinstance(constraint, dict):
        constraint = constraint.get(key)
    if not isinstance(constraint, str):
        raise AssertionError(
            f"a listener matches {constraint!r}; manifest.yml needs exact {key} names"
        )
    return constraint


class RecordingApp:
    """Stands in for Bolt's AsyncApp: records what `register_all` registers."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.shortcuts: list[str] = []
        self.events: list[str] = []
        self.actions: list[Any] = []
        self.views: list[Any] = []
        self.options_: list[Any] = []
        self.error_handlers: list[Callable] = []
        self.middlewares: list[Callable] = []

    @staticmethod
    def _keep(func: Callable) -> Callable:
        return func

    def _recording(self, into: list, item: Any) -> Callable[[Callable], Callable]:
        into.append(item)
        return self._keep

    def command(self, command: Any, **_: Any) -> Callable[[Callable], Callable]:
        return self._recording(self.commands, _name(command, "command"))

    def shortcut(self, constraints: Any, **_: Any) -> Callable[[Callable], Callable]:
        return self._recording(self.shortcuts, _name(constraints, "callback_id"))

    global_shortcut = shortcut
    message_shortcut = shortcut

    def event(self, event: Any, **_: Any) -> Callable[[Callable], Callable]:
        return self._recording(self.events, _name(event, "type"))

    def message(self, keyword: Any = "", **_: Any) -> Callable[[Callable], Callable]:
        return self._recording(self.events, "message")

    def action(self, constraints: Any, **_: Any) -> Callable[[Callable], Callable]:
        return self._recording(self.actions, constraints)

    block_action = action

    def view(self, constraints: Any, **_: Any) -> Callable[[Callable], Callable]:
        return self._recording(self.views, constraints)

    view_submission = view
    view_closed = view

    def options(self, constraints: Any, **_: Any) -> Callable[[Callable], Callable]:
        return self._recording(self.options_, constraints)

    block_suggestion = options

    def error(self, func: Callable) -> Callable:
        self.error_handlers.append(func)
        return func

    def middleware(self, *args: Callable) -> Callable | None:
        if not args:  # used as @app.middleware()
            return lambda func: self.middleware(func)
        self.middlewares.extend(args)
        return args[0]

    use = middleware


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return load_manifest()


@pytest.fixture(scope="module")
def registered() -> RecordingApp:
    recorder = RecordingApp()
    # Register functions only capture `rein` in closures; nothing is read from it here.
    handlers.register_all(recorder, SimpleNamespace())  # type: ignore[arg-type]
    return recorder


def manifest_events(manifest: dict[str, Any]) -> set[str]:
    return set(manifest.get("settings", {}).get("event_subscriptions", {}).get("bot_events", []))


def manifest_scopes(manifest: dict[str, Any]) -> list[str]:
    return list(manifest["oauth_config"]["scopes"]["bot"])


# --- (a) the schema ------------------------------------------------------------------------


def _validator() -> jsonschema.protocols.Validator:
    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)  # draft-07, as the schema declares
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_manifest_validates_against_slacks_schema(manifest: dict[str, Any]) -> None:
    errors = sorted(_validator().iter_errors(manifest), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


def test_the_schema_check_is_not_vacuous(manifest: dict[str, Any]) -> None:
    broken = {**manifest, "features": {**manifest["features"], "bot_usr": {}}}
    assert list(_validator().iter_errors(broken))


def test_manifest_settings_rein_relies_on(manifest: dict[str, Any]) -> None:
    # The schema spells this rule as "regex", which JSON Schema ignores: check it here.
    color = manifest["display_information"]["background_color"]
    assert re.fullmatch(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", color)
    assert manifest["display_information"]["name"] == "Rein"
    assert manifest["features"]["bot_user"] == {"display_name": "Rein", "always_online": True}
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is True
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    urls = [c.get("url") for c in manifest["features"]["slash_commands"]]
    urls += [settings["event_subscriptions"]["request_url"]]
    urls += [settings["interactivity"]["request_url"]]
    assert all(url and url.endswith("/slack/events") for url in urls), urls
    shortcut = next(s for s in manifest["features"]["shortcuts"])
    assert (shortcut["name"], shortcut["type"]) == ("Add to incident timeline", "message")


# --- (b) registrations <-> manifest --------------------------------------------------------


def _both_ways(code: Iterable[str], declared: Iterable[str], what: str) -> None:
    code, declared = set(code), set(declared)
    lacking, unused = sorted(code - declared), sorted(declared - code)
    assert not lacking, f"{what} the code registers but manifest.yml lacks: {lacking}"
    assert not unused, f"{what} manifest.yml declares but no handler registers: {unused}"


def test_slash_commands_match(manifest: dict[str, Any], registered: RecordingApp) -> None:
    declared = [c["command"] for c in manifest["features"].get("slash_commands", [])]
    _both_ways(registered.commands, declared, "slash commands")


def test_shortcuts_match(manifest: dict[str, Any], registered: RecordingApp) -> None:
    declared = [s["callback_id"] for s in manifest["features"].get("shortcuts", [])]
    _both_ways(registered.shortcuts, declared, "shortcut callback_ids")


def test_events_match(manifest: dict[str, Any], registered: RecordingApp) -> None:
    declared = manifest_events(manifest)
    # Bolt's app.message() is one "message" listener; Slack subscribes per conversation type.
    code = {e for e in registered.events if e != "message"}
    if "message" in registered.events:
        assert any(e.startswith("message.") for e in declared), "app.message() needs message.*"
        declared = {e for e in declared if not e.startswith("message.")}
    _both_ways(code, declared, "bot events")


def test_the_recorder_sees_every_registration(registered: RecordingApp) -> None:
    assert registered.commands and registered.actions and registered.views
    assert registered.error_handlers


# --- (c) scopes ----------------------------------------------------------------------------


def _needs(registered: RecordingApp) -> dict[str, set[str]]:
    """Each need of the code -> the bot scopes any one of which satisfies it."""
    needs = {f"method {m}": bot_scopes(m) for m in called_methods() if bot_scopes(m)}
    if registered.commands or registered.shortcuts:
        needs["slash commands and shortcuts"] = {"commands"}
    for event in set(registered.events):
        subscriptions = ["message.channels"] if event == "message" else [event]
        for name in subscriptions:
            assert name in EVENT_SCOPES, f"add {name}'s required scope to EVENT_SCOPES"
            if EVENT_SCOPES[name]:
                needs[f"event {name}"] = EVENT_SCOPES[name]
    for scope, why in EXTRA_SCOPES.items():
        needs[why] = {scope}
    return needs


def test_the_code_calls_the_methods_we_expect() -> None:
    methods = called_methods()
    # A sanity floor, so a broken regex cannot make the scope checks pass vacuously.
    assert {"chat.postMessage", "conversations.create", "pins.add", "views.open"} <= methods
    unknown = methods - {p.stem for p in METHODS_DIR.glob("*.json")}
    assert not unknown


def test_every_called_method_has_a_scope(
    manifest: dict[str, Any], registered: RecordingApp
) -> None:
    scopes = set(manifest_scopes(manifest))
    missing = {
        need: sorted(allowed)
        for need, allowed in _needs(registered).items()
        if allowed and not allowed & scopes
    }
    assert not missing, f"manifest.yml lacks a scope for: {missing}"


def test_every_scope_is_needed_and_none_is_redundant(
    manifest: dict[str, Any], registered: RecordingApp
) -> None:
    scopes = manifest_scopes(manifest)
    assert len(scopes) == len(set(scopes)), "a scope is listed twice"
    needs = _needs(registered)
    # A scope earns its place only if some need is met by it and by no other declared scope:
    # channels:write.topic beside channels:manage, say, would be redundant and fail here.
    unjustified = [
        scope
        for scope in scopes
        if not any(allowed & set(scopes) == {scope} for allowed in needs.values())
    ]
    assert not unjustified, (
        f"bot scopes nothing needs (or another scope already covers): {unjustified}"
    )


def test_chat_write_public_is_only_kept_while_rein_posts_messages(
    manifest: dict[str, Any],
) -> None:
    if "chat:write.public" in manifest_scopes(manifest):
        assert "chat.postMessage" in called_methods()
