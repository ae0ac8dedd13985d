"""A fake Slack Web API (plus Socket Mode and response_url endpoints) on loopback.

Point slack_sdk at it with ``AsyncWebClient(token=fake.token, base_url=fake.api_url)``.
Every call is recorded in ``fake.calls`` and checked against the method descriptions in
``shared/slack/methods``; contract breaches land in ``fake.violations`` (the project's
conftest asserts it stays empty), while payloads Slack itself would refuse (over-long
blocks, malformed modals) are answered like Slack and noted in ``fake.rejections``.

    async with running_fake() as fake:
        fake.add_channel("C1", "incidents")
        client = AsyncWebClient(token=fake.token, base_url=fake.api_url)
        await client.chat_postMessage(channel="C1", text="hello")
        assert fake.messages["C1"][0].text == "hello"
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

METHODS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "slack" / "methods"

BOT_ID = "BREINBOT"
APP_ID = "A0REIN"
TEAM_NAME = "Test Team"
TEAM_URL = "https://test-team.slack.com/"
BASE_TIME = 1_700_000_000

MAX_MESSAGE_TEXT = 40_000
MAX_MESSAGE_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_TOPIC = 250
MAX_CHANNEL_NAME = 80

# Arguments that carry JSON documents (form bodies send them as JSON strings).
JSON_ARGS = frozenset(
    {"attachments", "blocks", "metadata", "profile", "unfurled_attachments", "unfurls", "view"}
)
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
# slack_sdk adds its client-level default params (Bolt sets team_id) to every call.
IMPLICIT_ARGS = frozenset({"team_id"})

_METHOD_NAME = re.compile(r"[a-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)+")
_CHANNEL_NAME = re.compile(r"[a-z0-9_-]+")
_INTEGER = re.compile(r"-?\d+")
_BOOL_STRINGS = frozenset({"true", "false", "1", "0"})
_DM_PREFIXES = ("U", "W", "D")


# --------------------------------------------------------------------------- records


@dataclass
class Call:
    method: str
    args: dict[str, Any]


@dataclass
class Message:
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    user: str
    attachments: list[dict[str, Any]] | None = None


@dataclass
class Ephemeral:
    channel: str
    user: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    message_ts: str


@dataclass
class UploadedFile:
    """A file of the external upload flow: announced, its bytes received, then shared."""

    id: str
    filename: str
    length: int  # as announced to files.getUploadURLExternal
    content: bytes | None = None  # what was POSTed to its upload URL
    title: str | None = None
    channel: str | None = None  # where files.completeUploadExternal shared it
    initial_comment: str | None = None
    completed: bool = False


@dataclass
class Channel:
    id: str
    name: str
    members: set[str] = field(default_factory=set)
    is_private: bool = False
    is_archived: bool = False
    topic: str = ""
    purpose: str = ""
    creator: str = ""
    created: int = BASE_TIME

    def to_dict(self, viewer: str) -> dict[str, Any]:
        """The conversation object as Slack returns it to ``viewer`` (the bot)."""
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_general": False,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_pending_ext_shared": False,
            "pending_shared": [],
            "unlinked": 0,
            "created": self.created,
            "creator": self.creator,
            "is_member": viewer in self.members,
            "topic": {"value": self.topic, "creator": self.creator, "last_set": 0},
            "purpose": {"value": self.purpose, "creator": self.creator, "last_set": 0},
            "previous_names": [],
        }


@dataclass
class _Fault:
    error: str | None
    status: int
    retry_after: int | None
    delay: float
    remaining: int


class _SlackError(Exception):
    """Ends a handler with ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, **self.extra}


class _Rejected(_SlackError):
    """A payload Slack refuses; the reason is kept in ``fake.rejections``."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(error, response_metadata={"messages": [f"[ERROR] {reason}"]})
        self.reason = reason


# --------------------------------------------------------------------- method schemas


@cache
def load_method_spec(method: str, methods_dir: Path = METHODS_DIR) -> dict[str, Any] | None:
    """The shared description of ``method``, or None when Slack has no such method."""
    if not _METHOD_NAME.fullmatch(method):
        return None
    path = methods_dir / f"{method}.json"
    if not path.is_file():
        return None
    spec = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or not isinstance(spec.get("args"), dict):
        return None
    return spec


def _declared_types(schema: Any) -> set[str]:
    """Every JSON type named in a property schema, through anyOf/oneOf/allOf."""
    if not isinstance(schema, dict):
        return set()
    declared = schema.get("type")
    types = set(declared) if isinstance(declared, list) else {declared} if declared else set()
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            types |= _declared_types(option)
    return types


def _json_object(value: str) -> bool:
    try:
        return isinstance(json.loads(value), dict)
    except ValueError:
        return False


def _is_string(value: Any) -> bool:
    # JSON bodies carry "JSON-encoded string" arguments (blocks, view...) as structures.
    return isinstance(value, str | list | dict)


def _is_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return value in (0, 1)
    return isinstance(value, str) and value.lower() in _BOOL_STRINGS


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, str) and _INTEGER.fullmatch(value.strip()) is not None


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_array(value: Any) -> bool:
    # Form bodies send arrays as JSON or comma-separated strings.
    return isinstance(value, list) or (isinstance(value, str) and not _json_object(value))


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, str) and _json_object(value))


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": _is_string,
    "boolean": _is_boolean,
    "integer": _is_integer,
    "number": _is_number,
    "array": _is_array,
    "object": _is_object,
    "null": lambda value: value is None,
}


def fits_schema(value: Any, schema: Any) -> bool:
    """Whether ``value`` (as sent in a form or JSON body) fits a property schema.

    Tolerant of the forms the method descriptions use: anyOf/oneOf/allOf, "subtype",
    "schema" references (not checked) and type lists.
    """
    if not isinstance(schema, dict):
        return True
    for key in ("anyOf", "oneOf"):
        if key in schema and not any(fits_schema(value, o) for o in schema[key]):
            return False
    if "allOf" in schema and not all(fits_schema(value, o) for o in schema["allOf"]):
        return False
    declared = schema.get("type")
    if declared is None:
        return True
    names = declared if isinstance(declared, list) else [declared]
    return any(_TYPE_CHECKS.get(name, lambda _: True)(value) for name in names)


def contract_problems(spec: dict[str, Any], args: dict[str, Any]) -> tuple[list[str], bool]:
    """Breaches of the method's argument schema; the flag is set when one is fatal."""
    schema = spec["args"]
    properties: dict[str, Any] = schema.get("properties", {})
    missing = [
        name for name in schema.get("required", []) if name != "token" and args.get(name) is None
    ]
    problems = [f"missing required argument {name!r}" for name in missing]
    for name, value in args.items():
        if name not in properties:
            if name in IMPLICIT_ARGS:
                continue
            problems.append(f"unknown argument {name!r}")
        elif not fits_schema(value, properties[name]):
            wanted = "/".join(sorted(_declared_types(properties[name])))
            problems.append(f"argument {name!r}={value!r:.60} does not fit type {wanted}")
    return problems, bool(missing)


def decode_args(raw: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    """Arguments with JSON-string values (blocks, view, attachments...) parsed."""
    properties = spec["args"].get("properties", {}) if spec else {}
    return {name: _decode_value(name, value, properties.get(name)) for name, value in raw.items()}


def _decode_value(name: str, value: Any, schema: Any) -> Any:
    holds_json = name in JSON_ARGS or bool(_declared_types(schema) & {"object", "array"})
    if not holds_json or not isinstance(value, str):
        return value
    if not value.lstrip().startswith(("[", "{")):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str | int) and str(value).lower() in ("1", "true"))


def _is_user_id(value: str) -> bool:
    return len(value) > 1 and value[0] in "UW" and value.isalnum()


# ----------------------------------------------------------------- block validation


def _text_problem(obj: Any, limit: int, *, plain_only: bool = False) -> str | None:
    kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        return f"must be a {' or '.join(kinds)} text object"
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return "text must be a non-empty string"
    if len(text) > limit:
        return f"text is {len(text)} characters, more than {limit}"
    return None


def _length_problem(obj: dict[str, Any], key: str, limit: int) -> str | None:
    value = obj.get(key)
    if value is not None and len(str(value)) > limit:
        return f"{key} is {len(str(value))} characters, more than {limit}"
    return None


def _button_problem(button: dict[str, Any]) -> str | None:
    problem = _text_problem(button.get("text"), 75, plain_only=True)
    if problem:
        return f"button text {problem}"
    for key, limit in (("action_id", 255), ("value", 2000), ("url", 3000)):
        problem = _length_problem(button, key, limit)
        if problem:
            return f"button {problem}"
    return None


def _element_problem(element: Any) -> str | None:
    if not isinstance(element, dict) or "type" not in element:
        return "element must be an object with a type"
    if element["type"] == "button":
        return _button_problem(element)
    return _length_problem(element, "action_id", 255)


def _elements_problem(block: dict[str, Any], limit: int, *, texts: bool = False) -> str | None:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        return "elements must be a non-empty array"
    if len(elements) > limit:
        return f"{len(elements)} elements, more than {limit}"
    for i, element in enumerate(elements):
        is_text = texts and isinstance(element, dict) and element.get("type") != "image"
        problem = _text_problem(element, 3000) if is_text else _element_problem(element)
        if problem:
            return f"elements[{i}]: {problem}"
    return None


def _section_problem(block: dict[str, Any]) -> str | None:
    text, fields = block.get("text"), block.get("fields")
    if text is None and not fields:
        return "section needs text or fields"
    if text is not None and (problem := _text_problem(text, 3000)):
        return f"text {problem}"
    if fields is not None:
        if not isinstance(fields, list) or len(fields) > 10:
            return "fields must be an array of at most 10 text objects"
        for i, item in enumerate(fields):
            if problem := _text_problem(item, 2000):
                return f"fields[{i}] {problem}"
    accessory = block.get("accessory")
    return None if accessory is None else _element_problem(accessory)


def _header_problem(block: dict[str, Any]) -> str | None:
    problem = _text_problem(block.get("text"), 150, plain_only=True)
    return f"header text {problem}" if problem else None


def _input_problem(block: dict[str, Any]) -> str | None:
    problem = _text_problem(block.get("label"), 2000, plain_only=True)
    if problem:
        return f"label {problem}"
    if "element" not in block:
        return "input needs an element"
    return _element_problem(block["element"])


def _markdown_problem(block: dict[str, Any]) -> str | None:
    text = block.get("text")
    if not isinstance(text, str) or not 0 < len(text) <= 12_000:
        return "markdown text must be 1..12000 characters"
    return None


_BLOCK_CHECKS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "section": _section_problem,
    "header": _header_problem,
    "context": lambda block: _elements_problem(block, 10, texts=True),
    "actions": lambda block: _elements_problem(block, 25),
    "input": _input_problem,
    "markdown": _markdown_problem,
    "divider": lambda _: None,
    "image": lambda _: None,
    "rich_text": lambda _: None,
    "file": lambda _: None,
    "video": lambda _: None,
    "table": lambda _: None,
    "context_actions": lambda _: None,
}


def block_problem(block: Any) -> str | None:
    """Why Slack would refuse one block, or None."""
    if not isinstance(block, dict):
        return "block must be an object"
    check = _BLOCK_CHECKS.get(block.get("type"))  # type: ignore[arg-type]
    if check is None:
        return f"unknown block type {block.get('type')!r}"
    return _length_problem(block, "block_id", 255) or check(block)


def blocks_problem(blocks: Any, limit: int) -> str | None:
    """Why Slack would refuse a list of blocks (``limit`` 50 in messages, 100 in views)."""
    if not isinstance(blocks, list):
        return "blocks must be an array"
    if len(blocks) > limit:
        return f"{len(blocks)} blocks, more than {limit}"
    for i, block in enumerate(blocks):
        if problem := block_problem(block):
            kind = block.get("type") if isinstance(block, dict) else None
            return f"blocks[{i}] ({kind}): {problem}"
    return None


def view_problem(view: Any, kinds: tuple[str, ...] = ("modal",)) -> str | None:
    """Why Slack would refuse a view whose type should be one of ``kinds``."""
    if not isinstance(view, dict):
        return "view must be an object"
    if view.get("type") not in kinds:
        return f"view type must be {' or '.join(kinds)}"
    problem = blocks_problem(view.get("blocks"), MAX_MODAL_BLOCKS)
    if problem or view["type"] == "home":
        return problem
    return _modal_problem(view)


def _modal_problem(view: dict[str, Any]) -> str | None:
    if problem := _text_problem(view.get("title"), 24, plain_only=True):
        return f"title {problem}"
    for key in ("submit", "close"):
        if view.get(key) is not None and (problem := _text_problem(view[key], 24, plain_only=True)):
            return f"{key} {problem}"
    has_input = any(block.get("type") == "input" for block in view["blocks"])
    if has_input and view.get("submit") is None:
        return "submit is required when the modal has input blocks"
    for key, limit in (("callback_id", 255), ("private_metadata", 3000), ("external_id", 255)):
        if problem := _length_problem(view, key, limit):
            return problem
    return None


def _channel_name_error(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return "invalid_name_required"
    if len(name) > MAX_CHANNEL_NAME:
        return "invalid_name_maxlength"
    if not _CHANNEL_NAME.fullmatch(name):
        return "invalid_name_specials"
    if not name.strip("-_"):
        return "invalid_name_punctuation"
    return None


def _example_answer(spec: dict[str, Any]) -> dict[str, Any]:
    example = spec.get("examples", {}).get("success", {}).get("example")
    body = copy.deepcopy(example) if isinstance(example, dict) else {}
    body["ok"] = True
    return body


# ------------------------------------------------------------------------ the server

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class FakeSlack:
    """Fake Slack Web API, Socket Mode and response_url server on 127.0.0.1."""

    def __init__(
        self,
        token: str = "xoxb-test-token",  # noqa: S107
        bot_user_id: str = "UREINBOT",
        team_id: str = "T0000TEAM",
        app_token: str = "xapp-test-token",  # noqa: S107
        methods_dir: Path = METHODS_DIR,
    ) -> None:
        self.token = token
        self.app_token = app_token
        self.bot_user_id = bot_user_id
        self.team_id = team_id
        self.methods_dir = methods_dir

        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.rejections: list[str] = []
        self.channels: dict[str, Channel] = {}
        self.messages: defaultdict[str, list[Message]] = defaultdict(list)
        self.ephemerals: list[Ephemeral] = []
        self.pins: list[tuple[str, str]] = []
        self.usergroups: dict[str, list[str]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.views: list[dict[str, Any]] = []
        self.home_views: dict[str, dict[str, Any]] = {}
        self.responses: list[tuple[str, Any]] = []
        self.socket_messages: list[dict[str, Any]] = []
        self.files: dict[str, UploadedFile] = {}

        self._faults: defaultdict[str, list[_Fault]] = defaultdict(list)
        self._expired_triggers: set[str] = set()
        self._counter = 0
        self._ts_counter = 0
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = asyncio.Event()
        self._sockets: set[web.WebSocketResponse] = set()
        self._socket: web.WebSocketResponse | None = None
        self._socket_connected = asyncio.Event()
        self._pending_acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "conversations.create": self._conversations_create,
            "conversations.invite": self._conversations_invite,
            "conversations.setTopic": self._conversations_set_topic,
            "conversations.info": self._conversations_info,
            "conversations.join": self._conversations_join,
            "conversations.archive": self._conversations_archive,
            "conversations.members": self._conversations_members,
            "conversations.history": self._conversations_history,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "pins.add": self._pins_add,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/api/{method}", self._handle_api)
        app.router.add_route("GET", "/api/{method}", self._handle_api)
        app.router.add_get("/socket", self._handle_socket)
        app.router.add_post("/response/{key}", self._handle_response_url)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._stopping.set()
        for ws in list(self._sockets):
            await ws.close()
        for future in self._pending_acks.values():
            future.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeSlack is not started")
        return self._port

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def socket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket"

    def response_url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.port}/response/{key}"

    def upload_url(self, file_id: str) -> str:
        return f"http://127.0.0.1:{self.port}/upload/{file_id}"

    # ------------------------------------------------------------- test helpers

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def last(self, method: str) -> Call:
        calls = self.calls_to(method)
        if not calls:
            seen = sorted({call.method for call in self.calls})
            raise AssertionError(f"no call to {method!r}; methods called: {seen}")
        return calls[-1]

    def add_channel(
        self,
        channel_id: str,
        name: str,
        members: Iterable[str] = (),
        bot_is_member: bool = True,
        *,
        is_private: bool = False,
        topic: str = "",
    ) -> Channel:
        channel = Channel(channel_id, name, set(members), is_private=is_private, topic=topic)
        if bot_is_member:
            channel.members.add(self.bot_user_id)
        self.channels[channel_id] = channel
        return channel

    def archive(self, channel_id: str) -> None:
        self.channels[channel_id].is_archived = True

    def add_usergroup(self, group_id: str, user_ids: Iterable[str]) -> None:
        self.usergroups[group_id] = list(user_ids)

    def add_user(self, user_id: str, **fields: Any) -> None:
        """Override fields of the user object users.info answers for ``user_id``."""
        self.users[user_id] = fields

    def expire_trigger(self, trigger_id: str) -> None:
        self._expired_triggers.add(trigger_id)

    def fail(
        self,
        method: str,
        *,
        error: str | None = None,
        status: int = 200,
        retry_after: int | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """Fault the next ``times`` calls to ``method``.

        After ``delay`` seconds: HTTP 429 + Retry-After if ``retry_after`` is set, else the
        HTTP ``status`` with a plain body if >= 500, else ``{"ok": false, "error": error}``.
        With neither (a delay alone) the call is then answered normally.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        self._faults[method].append(_Fault(error, status, retry_after, delay, times))

    # ---------------------------------------------------------------- socket mode

    async def wait_socket_connected(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._socket_connected.wait(), timeout)

    async def socket_send(self, message: dict[str, Any]) -> None:
        """Send one raw JSON message to the connected Socket Mode client."""
        if self._socket is None or self._socket.closed:
            raise RuntimeError("no Socket Mode client is connected")
        await self._socket.send_json(message)

    async def socket_deliver(
        self,
        type_: str,
        payload: dict[str, Any],
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Deliver an envelope and return the client's ack (the message echoing its id)."""
        await self.wait_socket_connected(timeout)
        envelope_id = str(uuid.uuid4())
        ack: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending_acks[envelope_id] = ack
        envelope = {
            "envelope_id": envelope_id,
            "type": type_,
            "payload": payload,
            "accepts_response_payload": True,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        try:
            await self.socket_send(envelope)
            return await asyncio.wait_for(ack, timeout)
        except TimeoutError:
            raise TimeoutError(f"no ack for {type_} envelope {envelope_id} in {timeout}s") from None
        finally:
            self._pending_acks.pop(envelope_id, None)

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        self._socket = ws
        self._socket_connected.set()
        try:
            await ws.send_json(self._hello())
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_socket_text(message.data)
        finally:
            self._sockets.discard(ws)
            if self._socket is ws:
                self._socket = None
                self._socket_connected.clear()
        return ws

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {
                "host": "fake-slack",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": APP_ID},
        }

    def _on_socket_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self.violations.append(f"socket: client sent non-JSON text {data[:80]!r}")
            return
        self.socket_messages.append(message)
        ack = self._pending_acks.get(message.get("envelope_id", ""))
        if ack is not None and not ack.done():
            ack.set_result(message)

    # ------------------------------------------------------------------ file uploads

    async def _handle_upload(self, request: web.Request) -> web.Response:
        """The upload URL files.getUploadURLExternal hands out: the bytes, raw or as the
        `file` field of a multipart form."""
        upload = self.files.get(request.match_info["file_id"])
        if upload is None or upload.completed:
            return web.Response(status=404, text="unknown or finished upload")
        if request.content_type.startswith("multipart/"):
            part = (await request.post()).get("file")
            content = part.file.read() if isinstance(part, web.FileField) else str(part).encode()
        else:
            content = await request.read()
        if len(content) != upload.length:
            self.rejections.append(
                f"upload {upload.id}: {len(content)} bytes, announced {upload.length}"
            )
            return web.Response(status=400, text="length does not match")
        upload.content = content
        return web.Response(text=f"OK - {len(content)}")

    # ---------------------------------------------------------------- response_url

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        text = await request.text()
        try:
            body: Any = json.loads(text) if text else {}
        except ValueError:
            body = text
        key = request.match_info["key"]
        self.responses.append((key, body))
        blocks = body.get("blocks") if isinstance(body, dict) else None
        if blocks is not None and (problem := blocks_problem(blocks, MAX_MESSAGE_BLOCKS)):
            self.rejections.append(f"response_url {key}: {problem}")
            return web.json_response({"ok": False, "error": "invalid_blocks"}, status=400)
        return web.json_response({"ok": True})

    # ------------------------------------------------------------------ web api

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw = await self._read_args(request, method)
        token_arg = raw.pop("token", None)
        token = self._bearer(request) or token_arg
        spec = load_method_spec(method, self.methods_dir)
        args = decode_args(raw, spec)
        self.calls.append(Call(method, copy.deepcopy(args)))
        fatal = self._check_contract(method, spec, raw)
        fault = self._take_fault(method)
        if fault is not None and (faulted := await self._faulted(fault)) is not None:
            return faulted
        return web.json_response(self._answer(method, spec, token, args, fatal))

    async def _read_args(self, request: web.Request, method: str) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.method != "POST" or not request.can_read_body:
            return args
        if request.content_type == "application/json":
            spec = load_method_spec(method, self.methods_dir)
            if spec is not None and not spec.get("json_input_supported"):
                # Slack ignores JSON arguments for these methods: the call would silently
                # run without them.
                self.violations.append(f"{method}: sent as JSON, which it does not accept")
            try:
                body = await request.json()
            except ValueError:
                self.violations.append(f"{method}: request body is not valid JSON")
                return args
            if isinstance(body, dict):
                args.update(body)
            return args
        form = await request.post()
        for name, value in form.items():
            args[name] = value if isinstance(value, str) else getattr(value, "filename", "")
        return args

    @staticmethod
    def _bearer(request: web.Request) -> str | None:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer":
            return None
        return credentials.strip() or None

    def _check_contract(
        self, method: str, spec: dict[str, Any] | None, raw: dict[str, Any]
    ) -> bool:
        if spec is None:
            self.violations.append(f"{method}: unknown method (no {method}.json)")
            return True
        problems, fatal = contract_problems(spec, raw)
        self.violations.extend(f"{method}: {problem}" for problem in problems)
        return fatal

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining == 0:
            queue.pop(0)
        return fault

    async def _faulted(self, fault: _Fault) -> web.Response | None:
        if fault.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.delay)
        if fault.retry_after is not None:
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(fault.retry_after)},
            )
        if fault.status >= 500:
            return web.Response(status=fault.status, text=f"fake Slack server error {fault.status}")
        if fault.error is not None:
            return web.json_response({"ok": False, "error": fault.error}, status=fault.status)
        return None

    def _answer(
        self,
        method: str,
        spec: dict[str, Any] | None,
        token: str | None,
        args: dict[str, Any],
        fatal: bool,
    ) -> dict[str, Any]:
        if spec is None:
            return {"ok": False, "error": "unknown_method"}
        if auth_error := self._auth_error(method, token):
            return {"ok": False, "error": auth_error}
        if fatal:
            return {"ok": False, "error": "invalid_arguments"}
        handler = self._handlers.get(method)
        if handler is None:
            return _example_answer(spec)
        try:
            return {"ok": True, **handler(args)}
        except _Rejected as exc:
            self.rejections.append(f"{method}: {exc.reason}")
            return exc.body()
        except _SlackError as exc:
            return exc.body()

    def _auth_error(self, method: str, token: str | None) -> str | None:
        expected = self.app_token if method in APP_TOKEN_METHODS else self.token
        if token == expected:
            return None
        if token in (self.token, self.app_token):
            return "not_allowed_token_type"
        return "invalid_auth"

    # ----------------------------------------------------------------- id makers

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:08d}"

    def _next_ts(self) -> str:
        self._ts_counter += 1
        micros = BASE_TIME * 1_000_000 + self._ts_counter * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # ---------------------------------------------------------- auth and sockets

    def _auth_test(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": TEAM_URL,
            "team": TEAM_NAME,
            "user": "rein",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.socket_url}

    # ------------------------------------------------------------ conversations

    def _find_channel(self, ref: Any) -> Channel | None:
        if not isinstance(ref, str):
            return None
        if ref in self.channels:
            return self.channels[ref]
        name = ref.removeprefix("#")
        return next((c for c in self.channels.values() if c.name == name), None)

    def _channel(
        self, args: dict[str, Any], *, write: bool = False, member: bool = False
    ) -> Channel:
        channel = self._find_channel(args.get("channel"))
        if channel is None:
            raise _SlackError("channel_not_found")
        if write and channel.is_archived:
            raise _SlackError("is_archived")
        if member and self.bot_user_id not in channel.members:
            raise _SlackError("not_in_channel")
        return channel

    def _conversation(self, channel: Channel) -> dict[str, Any]:
        return {"channel": channel.to_dict(self.bot_user_id)}

    def _conversations_create(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        if error := _channel_name_error(name):
            raise _SlackError(error)
        if self._find_channel(name) is not None:
            raise _SlackError("name_taken")
        private = _truthy(args.get("is_private"))
        channel = self.add_channel(self._next_id("C"), name, is_private=private)
        channel.creator = self.bot_user_id
        return self._conversation(channel)

    def _conversations_invite(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args, write=True, member=True)
        users = [u.strip() for u in str(args.get("users", "")).split(",") if u.strip()]
        if not users:
            raise _SlackError("no_user")
        errors: list[dict[str, Any]] = []
        new: list[str] = []
        for user in users:
            if user == self.bot_user_id:
                errors.append({"user": user, "ok": False, "error": "cant_invite_self"})
            elif not _is_user_id(user):
                errors.append({"user": user, "ok": False, "error": "user_not_found"})
            elif user not in channel.members:
                new.append(user)
        if errors and not _truthy(args.get("force")):
            raise _SlackError(errors[0]["error"], errors=errors)
        if not new and not errors:
            raise _SlackError("already_in_channel")
        channel.members.update(new)
        return {**self._conversation(channel), **({"errors": errors} if errors else {})}

    def _conversations_set_topic(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args, write=True, member=True)
        topic = str(args.get("topic", ""))
        if len(topic) > MAX_TOPIC:
            raise _SlackError("too_long")
        channel.topic = topic
        return self._conversation(channel)

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        answer = self._conversation(channel)
        if _truthy(args.get("include_num_members")):
            answer["channel"]["num_members"] = len(channel.members)
        return answer

    def _conversations_join(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args, write=True)
        channel.members.add(self.bot_user_id)
        return self._conversation(channel)

    def _conversations_archive(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if channel.is_archived:
            raise _SlackError("already_archived")
        if self.bot_user_id not in channel.members:
            raise _SlackError("not_in_channel")
        channel.is_archived = True
        return {}

    def _conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        return {"members": sorted(channel.members), "response_metadata": {"next_cursor": ""}}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        top_level = [m for m in self.messages[channel.id] if m.thread_ts in (None, m.ts)]
        messages = [self._message_dict(m) for m in reversed(top_level)]
        return {"messages": messages, "has_more": False, "response_metadata": {"next_cursor": ""}}

    # ----------------------------------------------------------------- messages

    def _message_target(self, args: dict[str, Any], *, member: bool) -> str:
        """The channel id a message goes to; user and DM ids are taken as they are."""
        ref = args.get("channel")
        if isinstance(ref, str) and ref.startswith(_DM_PREFIXES) and ref not in self.channels:
            return ref
        return self._channel(args, write=True, member=member).id

    @staticmethod
    def _check_content(args: dict[str, Any], *, require: bool) -> None:
        text, blocks = args.get("text"), args.get("blocks")
        content = (text, blocks, args.get("attachments"), args.get("markdown_text"))
        if require and not any(content):
            raise _SlackError("no_text")
        if isinstance(text, str) and len(text) > MAX_MESSAGE_TEXT:
            reason = f"text is {len(text)} characters, more than {MAX_MESSAGE_TEXT}"
            raise _Rejected("msg_too_long", reason)
        if isinstance(blocks, str):
            raise _Rejected("invalid_blocks_format", "blocks is not a JSON array")
        if blocks is not None and (problem := blocks_problem(blocks, MAX_MESSAGE_BLOCKS)):
            raise _Rejected("invalid_blocks", problem)

    def _find_message(self, channel_id: str, ts: Any) -> Message:
        message = next((m for m in self.messages.get(channel_id, []) if m.ts == ts), None)
        if message is None:
            raise _SlackError("message_not_found")
        return message

    def _message_dict(self, message: Message) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "message",
            "user": message.user,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": self.team_id,
            "text": message.text or "",
            "ts": message.ts,
        }
        optional = {
            "blocks": message.blocks,
            "attachments": message.attachments,
            "thread_ts": message.thread_ts,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return body

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = self._message_target(args, member=True)
        self._check_content(args, require=True)
        message = Message(
            ts=self._next_ts(),
            text=args.get("text"),
            blocks=args.get("blocks"),
            thread_ts=args.get("thread_ts"),
            user=self.bot_user_id,
            attachments=args.get("attachments"),
        )
        self.messages[channel_id].append(message)
        return {"channel": channel_id, "ts": message.ts, "message": self._message_dict(message)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = self._message_target(args, member=False)
        message = self._find_message(channel_id, args.get("ts"))
        self._check_content(args, require=False)
        if "text" in args:
            message.text = args["text"]
        if "blocks" in args:
            message.blocks = args["blocks"]
        if "attachments" in args:
            message.attachments = args["attachments"]
        return {
            "channel": channel_id,
            "ts": message.ts,
            "text": message.text or "",
            "message": self._message_dict(message),
        }

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = self._message_target(args, member=False)
        message = self._find_message(channel_id, args.get("ts"))
        self.messages[channel_id].remove(message)
        return {"channel": channel_id, "ts": message.ts}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = self._message_target(args, member=True)
        self._check_content(args, require=True)
        ephemeral = Ephemeral(
            channel=channel_id,
            user=str(args.get("user")),
            text=args.get("text"),
            blocks=args.get("blocks"),
            thread_ts=args.get("thread_ts"),
            message_ts=self._next_ts(),
        )
        self.ephemerals.append(ephemeral)
        return {"message_ts": ephemeral.message_ts}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = self._message_target(args, member=False)
        message = self._find_message(channel_id, args.get("message_ts"))
        link = f"{TEAM_URL}archives/{channel_id}/p{message.ts.replace('.', '')}"
        return {"channel": channel_id, "permalink": link}

    def _pins_add(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args, write=True, member=True)
        timestamp = args.get("timestamp")
        if not timestamp:
            raise _SlackError("no_item_specified")
        self._find_message(channel.id, timestamp)
        if (channel.id, timestamp) in self.pins:
            raise _SlackError("already_pinned")
        self.pins.append((channel.id, timestamp))
        return {}

    # ---------------------------------------------------------------- directory

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        users = self.usergroups.get(args.get("usergroup", ""))
        if users is None:
            raise _SlackError("no_such_subteam")
        return {"users": list(users)}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args.get("user", ""))
        if not _is_user_id(user_id):
            raise _SlackError("user_not_found")
        return {"user": self._user(user_id)}

    def _user(self, user_id: str) -> dict[str, Any]:
        name = "rein" if user_id == self.bot_user_id else user_id.lower()
        real_name = "Rein" if user_id == self.bot_user_id else f"User {user_id}"
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": real_name,
            "deleted": False,
            "tz": "Europe/Paris",
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "is_admin": False,
            "is_owner": False,
            "is_bot": user_id == self.bot_user_id,
            "is_app_user": False,
            "updated": BASE_TIME,
            "profile": {
                "real_name": real_name,
                "real_name_normalized": real_name,
                "display_name": name,
                "display_name_normalized": name,
                "email": f"{name}@example.com",
                "team": self.team_id,
            },
        }
        return {**user, **self.users.get(user_id, {})}

    # -------------------------------------------------------------------- views

    def _check_trigger(self, args: dict[str, Any]) -> None:
        trigger = args.get("trigger_id") or args.get("interactivity_pointer")
        if not trigger:
            raise _Rejected("invalid_arguments", "trigger_id or interactivity_pointer is required")
        if trigger in self._expired_triggers:
            raise _SlackError("expired_trigger_id")

    @staticmethod
    def _checked_view(args: dict[str, Any], *kinds: str) -> dict[str, Any]:
        view: dict[str, Any] = args.get("view")  # type: ignore[assignment]
        if problem := view_problem(view, kinds):
            raise _Rejected("invalid_arguments", problem)
        return view

    def _view_object(self, view: dict[str, Any], view_id: str) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "callback_id": "",
            "private_metadata": "",
            "external_id": "",
            "submit": None,
            "close": None,
            "clear_on_close": False,
            "notify_on_close": False,
            "previous_view_id": None,
            "root_view_id": view_id,
        }
        return {
            **defaults,
            **copy.deepcopy(view),
            "id": view_id,
            "team_id": self.team_id,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "state": {"values": {}},
            "hash": f"{BASE_TIME}.{self._counter:08x}",
        }

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        self._check_trigger(args)
        view = self._view_object(self._checked_view(args, "modal"), self._next_id("V"))
        self.views.append(view)
        return {"view": view}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id, external_id = args.get("view_id"), args.get("external_id")
        if not view_id and not external_id:
            raise _Rejected("invalid_arguments", "view_id or external_id is required")
        checked = self._checked_view(args, "modal", "home")
        index = next(
            (
                i
                for i, view in enumerate(self.views)
                if (view_id and view["id"] == view_id)
                or (external_id and view["external_id"] == external_id)
            ),
            None,
        )
        if index is not None:
            view = self._view_object(checked, self.views[index]["id"])
            self.views[index] = view
        else:  # a view opened outside the fake (an id from a synthetic payload): adopt it
            view = self._view_object(checked, view_id or self._next_id("V"))
            self.views.append(view)
        return {"view": view}

    # -------------------------------------------------------------------- files

    def _files_get_upload_url_external(self, args: dict[str, Any]) -> dict[str, Any]:
        length = int(args["length"])
        if length < 1:
            raise _SlackError("missing_argument")
        upload = UploadedFile(self._next_id("F"), str(args["filename"]), length)
        self.files[upload.id] = upload
        return {"file_id": upload.id, "upload_url": self.upload_url(upload.id)}

    def _files_complete_upload_external(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            raise _Rejected("invalid_arguments", "files must be a non-empty JSON array")
        uploads = [self.files.get(str(f.get("id"))) if isinstance(f, dict) else None for f in files]
        if any(u is None or u.content is None or u.completed for u in uploads):
            raise _SlackError("file_not_found")  # never announced, bytes never sent, or done
        channel = None
        if args.get("channel_id"):
            target = {"channel": args["channel_id"]}
            channel = self._channel(target, write=True, member=True).id
        shared = []
        for upload, given in zip(uploads, files, strict=True):
            assert upload is not None
            upload.title = given.get("title") or upload.filename
            upload.channel, upload.completed = channel, True
            upload.initial_comment = args.get("initial_comment")
            shared.append({"id": upload.id, "title": upload.title})
        return {"files": shared}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args.get("user_id"))
        previous = self.home_views.get(user_id)
        view_id = previous["id"] if previous else self._next_id("V")
        view = self._view_object(self._checked_view(args, "home"), view_id)
        self.home_views[user_id] = view
        return {"view": view}


@asynccontextmanager
async def running_fake(**kw: Any) -> AsyncIterator[FakeSlack]:
    """Start a FakeSlack(**kw), yield it, stop it; never asserts (conftest does)."""
    fake = FakeSlack(**kw)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
