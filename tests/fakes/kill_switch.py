"""A fake agent kill switch: a real aiohttp server on loopback that Rein delivers to.

Every request is checked, byte for byte, against PRODUCT.md's "Kill-switch delivery" scheme,
computed here independently of Rein's own code (``bot.killswitch`` is deliberately not
imported): ``X-Rein-Timestamp`` holds Unix seconds, ``X-Rein-Signature`` is ``v1=`` and the
hex HMAC-SHA256 of ``v1:{timestamp}:{raw body}`` under the agent's secret, and the body is a
JSON object with exactly ``delivery_id, event, incident, agent, actions, mode, issued_at``.
A bad signature is answered 401, a malformed delivery 400; both land in ``violations``
(tests assert it stays empty). Everything received is kept in ``requests``.

What the next requests get is scripted::

    async with running_kill_switch("s3cret") as ks:
        ks.fail(times=2)        # the next two requests: HTTP 500
        ks.hang(times=1)        # then one that answers only after the client gave up
        ks.garbage(times=1)     # then bytes that are not HTTP, and the connection closed
        ks.succeed(204)         # once those are used up: 204
        await ks.refuse()       # stop listening: connections are refused
        await ks.recover()      # listen again (same port) and answer 200

Every response closes its connection, so a refused kill switch has no kept-alive
connection left that a client could still reach it through.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

PATH = "/rein/kill"
FIELDS = frozenset({"delivery_id", "event", "incident", "agent", "actions", "mode", "issued_at"})
EVENTS = frozenset({"containment", "autonomy_changed"})
MOVES = ("pause_runs", "revoke_writes", "disable_schedules", "freeze_outbound")
MODES = frozenset({"paused", "shadow", "read_only", "supervised", "autonomous"})
MAX_CLOCK_SKEW = 300  # seconds a timestamp may be off before the request counts as stale

_SIGNATURE = re.compile(r"v1=[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_REF = re.compile(r"INC-[1-9][0-9]*")
_ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")

# Not HTTP at all: what a misconfigured proxy or a TLS port might send back.
GARBAGE = b"\x16\x03\x01\x00\xa5 this is not HTTP \x00\xff\r\n\r\n"
# Looks like a 200 but the body is cut off by the closed connection: not a confirmation.
TRUNCATED_200 = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{"ok": tr'
)

Kind = Literal["succeed", "fail", "hang", "garbage"]


@dataclass(frozen=True)
class Behaviour:
    kind: Kind
    status: int = 200
    seconds: float = 0.0
    payload: bytes = b""


@dataclass
class Received:
    """One request as the kill switch saw it, and what it answered."""

    at: float  # time.time() on arrival
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any] | None  # parsed JSON, when it parsed to an object
    signature_ok: bool
    problems: list[str]
    answer: str = ""  # "200", "500", "hang", "garbage", "401", "400"

    @property
    def delivery_id(self) -> str | None:
        return self.body.get("delivery_id") if self.body else None

    @property
    def valid(self) -> bool:
        return self.signature_ok and not self.problems


def expected_signature(secret: str, timestamp: str, raw: bytes) -> str:
    """PRODUCT.md's scheme, computed independently of Rein."""
    message = b"v1:" + timestamp.encode("ascii") + b":" + raw
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def body_problems(body: Any) -> list[str]:
    """Why a delivery body does not fit PRODUCT.md, or [] when it does."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    problems: list[str] = []
    keys = set(body)
    if keys != FIELDS:
        missing, extra = sorted(FIELDS - keys), sorted(keys - FIELDS)
        problems.append(f"fields differ: missing {missing}, unexpected {extra}")
    checks: dict[str, tuple[bool, str]] = {
        "delivery_id": (
            isinstance(body.get("delivery_id"), str) and bool(body["delivery_id"]),
            "a non-empty string",
        ),
        "event": (body.get("event") in EVENTS, f"one of {sorted(EVENTS)}"),
        "incident": (
            isinstance(body.get("incident"), str) and _REF.fullmatch(body["incident"]) is not None,
            "an incident ref like INC-12",
        ),
        "agent": (isinstance(body.get("agent"), str) and bool(body["agent"]), "an agent id"),
        "actions": (
            isinstance(body.get("actions"), list)
            and all(a in MOVES for a in body["actions"])
            and len(set(body["actions"])) == len(body["actions"]),
            f"a list of distinct moves from {list(MOVES)}",
        ),
        "mode": (body.get("mode") in MODES, f"one of {sorted(MODES)}"),
        "issued_at": (
            isinstance(body.get("issued_at"), str)
            and _ISO_UTC.fullmatch(body["issued_at"]) is not None,
            "an ISO 8601 UTC time ending in Z",
        ),
    }
    for name, (ok, wanted) in checks.items():
        if name in body and not ok:
            problems.append(f"{name}={body[name]!r} is not {wanted}")
    return problems


@dataclass
class FakeKillSwitch:
    secret: str
    host: str = "127.0.0.1"
    hang_seconds: float = 2.0  # how long a hanging answer takes; longer than Rein's timeout
    requests: list[Received] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._script: deque[Behaviour] = deque()
        self._default = Behaviour("succeed", 200)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port = 0
        self._release = asyncio.Event()  # ends every hang (at stop)
        self._transports: set[asyncio.BaseTransport] = set()
        self.listening = False

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await self._listen()

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.listening = False

    async def __aenter__(self) -> FakeKillSwitch:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _listen(self) -> None:
        assert self._runner is not None, "start() first"
        self._site = web.TCPSite(self._runner, self.host, self._port)
        await self._site.start()
        server = self._site._server  # aiohttp keeps the bound socket here
        self._port = int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        self.listening = True

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}{PATH}"

    # ---------------------------------------------------------------- scripting

    def _plan(self, behaviour: Behaviour, times: int | None) -> None:
        """With `times`, queue it for the next requests; without, it answers every request
        once the queue is used up."""
        if times is None:
            self._default = behaviour
        else:
            if times < 1:
                raise ValueError("times must be >= 1 (or None: until told otherwise)")
            self._script.extend([behaviour] * times)

    def succeed(self, status: int = 200, *, times: int | None = None) -> None:
        """Answer 2xx (200 or 204); without `times`, after the queued answers."""
        if not 200 <= status < 300:
            raise ValueError("succeed() answers 2xx")
        self._plan(Behaviour("succeed", status), times)

    def fail(self, *, times: int | None = None, status: int = 500) -> None:
        """Answer an HTTP error (500 unless told); without `times`, after the queued answers
        and until told otherwise."""
        self._plan(Behaviour("fail", status), times)

    def hang(self, *, times: int | None = None, seconds: float | None = None) -> None:
        """Answer 200 only after `seconds` (longer than the client's timeout)."""
        wait = self.hang_seconds if seconds is None else seconds
        self._plan(Behaviour("hang", 200, seconds=wait), times)

    def garbage(self, *, times: int | None = None, payload: bytes = GARBAGE) -> None:
        """Write `payload` (not valid HTTP) on the raw connection and close it."""
        self._plan(Behaviour("garbage", payload=payload), times)

    async def refuse(self) -> None:
        """Stop listening, and drop open connections: every connection is refused."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        for transport in list(self._transports):
            transport.close()
        self._transports.clear()
        self.listening = False

    async def recover(self, status: int = 200) -> None:
        """Listen again on the same port, forget the queue, and answer `status` (2xx)."""
        self._script.clear()
        self.succeed(status)
        if not self.listening:
            await self._listen()

    # ---------------------------------------------------------------- reading

    @property
    def deliveries(self) -> list[Received]:
        """Requests that were correctly signed and shaped."""
        return [r for r in self.requests if r.valid]

    def delivery_ids(self) -> list[str]:
        """The delivery_id of every valid request, in arrival order (repeats kept)."""
        return [r.delivery_id for r in self.deliveries if r.delivery_id is not None]

    # ---------------------------------------------------------------- serving

    def _next(self) -> Behaviour:
        return self._script.popleft() if self._script else self._default

    def _verify(self, request: web.Request, raw: bytes) -> tuple[bool, list[str]]:
        problems: list[str] = []
        if request.method != "POST":
            problems.append(f"method {request.method}, not POST")
        if request.path != PATH:
            problems.append(f"path {request.path!r}, not {PATH!r}")
        if request.content_type != "application/json":
            problems.append(f"Content-Type {request.content_type!r}, not application/json")
        timestamp = request.headers.get("X-Rein-Timestamp", "")
        signature = request.headers.get("X-Rein-Signature", "")
        signature_ok = False
        if not _TIMESTAMP.fullmatch(timestamp):
            problems.append(f"X-Rein-Timestamp {timestamp!r} is not Unix seconds")
        else:
            skew = abs(time.time() - int(timestamp))
            if skew > MAX_CLOCK_SKEW:
                problems.append(f"X-Rein-Timestamp is {skew:.0f} s away from now")
            if not _SIGNATURE.fullmatch(signature):
                problems.append(f"X-Rein-Signature {signature!r} is not v1=<64 hex digits>")
            signature_ok = hmac.compare_digest(
                signature.encode(), expected_signature(self.secret, timestamp, raw).encode()
            )
        if not signature_ok:
            problems.append("X-Rein-Signature does not match v1:{timestamp}:{body}")
        return signature_ok, problems

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            self._transports.add(request.transport)
        raw = await request.read()
        signature_ok, problems = self._verify(request, raw)
        body: dict[str, Any] | None = None
        try:
            parsed = json.loads(raw)
        except ValueError:
            problems.append("the body is not JSON")
        else:
            if isinstance(parsed, dict):
                body = parsed
            problems += body_problems(parsed)
        record = Received(
            at=time.time(),
            method=request.method,
            path=request.path,
            headers=dict(request.headers),
            raw=raw,
            body=body,
            signature_ok=signature_ok,
            problems=problems,
        )
        self.requests.append(record)
        if problems:
            self.violations += [f"request {len(self.requests)}: {p}" for p in problems]
            record.answer = "401" if not signature_ok else "400"
            return self._respond(int(record.answer), {"error": "; ".join(problems)})
        behaviour = self._next()
        record.answer = "hang" if behaviour.kind == "hang" else behaviour.kind
        if behaviour.kind == "garbage":
            return await self._garbage(request, behaviour.payload)
        if behaviour.kind == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), behaviour.seconds)
            return self._respond(200, {"ok": True, "late": True})
        record.answer = str(behaviour.status)
        if behaviour.status == 204:
            return self._respond(204, None)
        return self._respond(behaviour.status, {"ok": behaviour.kind == "succeed"})

    @staticmethod
    def _respond(status: int, body: dict[str, Any] | None) -> web.Response:
        response = (
            web.Response(status=status) if body is None else web.json_response(body, status=status)
        )
        response.force_close()  # no kept-alive connection outlives a refuse()
        return response

    async def _garbage(self, request: web.Request, payload: bytes) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        transport.write(payload)
        transport.close()
        # aiohttp must not write a real response on the closed connection: end the handler
        # with a response that is never sent.
        raise asyncio.CancelledError


@asynccontextmanager
async def running_kill_switch(secret: str, **kw: Any) -> AsyncIterator[FakeKillSwitch]:
    fake = FakeKillSwitch(secret, **kw)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
