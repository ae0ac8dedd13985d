"""The three servers of a benchmark run, each started in a process of its own.

    python -m bench.servers fake                          # fake Slack Web API + a stats route
    python -m bench.servers rein --api-url URL --workdir DIR [--profile FILE]
                                 [--policy FILE] [--env NAME=VALUE ...]
    python -m bench.servers bare --api-url URL
    python -m bench.servers json --body JSON              # a bare aiohttp GET handler

Each prints one line, ``READY {json}``, on stdout once it listens on loopback, and stops on
SIGTERM or SIGINT (and, with ``--watch-stdin``, when its stdin pipe closes: the benchmark that
started it has gone). Rein is started the way `rein run` starts it (same logging set-up,
`build_runtime`, `start`, and `stop` that lets acknowledged work finish); the bare app is a
Bolt AsyncApp built and mounted the same way as Rein's, whose only listener acknowledges;
the json app is a bare aiohttp handler answering every `GET /v1/agents/{agent_id}/autonomy`
with the same constant JSON bytes (no middleware, no token check).
"""

import argparse
import asyncio
import cProfile
import json
import os
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from tests.slack_requests import SIGNING_SECRET

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "tests" / "policy.example.yml"
BOT_TOKEN = "xoxb-bench-token"  # noqa: S105  (a fake Slack's token, loopback only)
API_TOKEN = "bench-api-token-0123456789"  # noqa: S105
ANNOUNCE = "CANNOUNCE"
ORIGIN = "CGENERAL"
HOST = "127.0.0.1"
BARE_ACK = "Acknowledged."


def _ready(**info: Any) -> None:
    print("READY " + json.dumps(info), flush=True)


WATCH_STDIN = False  # set by --watch-stdin: stop when the benchmark that started us is gone


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if WATCH_STDIN:
        fd = sys.stdin.fileno()

        def on_stdin() -> None:
            if not os.read(fd, 4096):  # EOF: the parent closed the pipe or died
                loop.remove_reader(fd)
                stop.set()

        loop.add_reader(fd, on_stdin)
    await stop.wait()


async def _listen(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    return runner, int(runner.addresses[0][1])


# ------------------------------------------------------------------------------ fake Slack


async def run_fake() -> None:
    from tests.fakes.slack_api import FakeSlack

    fake = FakeSlack(token=BOT_TOKEN)
    await fake.start()
    fake.add_channel(ANNOUNCE, "incidents")
    fake.add_channel(ORIGIN, "general")
    fake.add_usergroup("S0SECOPS", ["U0SEC1", "U0SEC2"])

    async def stats(_: web.Request) -> web.Response:
        answers = [body.get("text", "") for _, body in fake.responses if isinstance(body, dict)]
        return web.json_response(
            {
                "calls": dict(Counter(call.method for call in fake.calls)),
                "responses": len(fake.responses),
                "responses_with_problems": sum("Slack would not" in a for a in answers),
                "violations": fake.violations[:5],
                "violation_count": len(fake.violations),
                "rejections": fake.rejections[:5],
                "rejection_count": len(fake.rejections),
            }
        )

    control = web.Application()
    control.router.add_get("/stats", stats)
    runner, control_port = await _listen(control)
    _ready(api_url=fake.api_url, port=fake.port, control_port=control_port)
    try:
        await _until_signalled()
    finally:
        await runner.cleanup()
        await fake.stop()


# ------------------------------------------------------------------------------------ Rein


async def run_rein(
    api_url: str,
    workdir: Path,
    profile: Path | None,
    policy_file: Path = POLICY,
    environ: dict[str, str] | None = None,
) -> None:
    """`environ` is all Rein sees of an environment (kill-switch secrets): nothing of ours."""
    from bot.app import build_runtime, load_checked_policy, quieten_collector
    from bot.config import Settings, secrets_of
    from bot.logs import configure_logging

    environ = environ or {}
    policy = workdir / "rein.yml"
    shutil.copy(policy_file, policy)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        REIN_SLACK_MODE="http",
        REIN_SLACK_API_URL=api_url,
        REIN_HOST=HOST,
        REIN_PORT=0,
        REIN_DB_PATH=str(workdir / "data" / "rein.db"),
        REIN_POLICY_PATH=str(policy),
        REIN_API_TOKENS=f"bench:{API_TOKEN}",
        REIN_ANNOUNCE_CHANNEL=ANNOUNCE,
    )
    # As `rein run` does: the same log set-up (INFO to stderr, secrets redacted).
    checked = load_checked_policy(settings, environ)
    secret_envs = [a.kill_switch.secret_env for a in checked.agents if a.kill_switch]
    configure_logging(secrets_of(settings, environ, secret_envs))
    runtime = await build_runtime(settings, environ=environ)
    await runtime.start()
    quieten_collector()  # as `rein run` does
    profiler = cProfile.Profile() if profile else None
    _ready(port=runtime.port)
    try:
        if profiler is not None:
            profiler.enable()
        await _until_signalled()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(profile))
        await runtime.stop()


# -------------------------------------------------------------------------------- bare app


def make_bare_bolt(api_url: str) -> AsyncApp:
    """Constructed with Rein's options (bot/app.py: make_bolt): only the listener differs."""
    bolt = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=api_url),
        signing_secret=SIGNING_SECRET,
        request_verification_enabled=True,
        process_before_response=False,
    )

    @bolt.command("/incident")
    async def incident(ack: Any) -> None:
        await ack(text=BARE_ACK)

    return bolt


async def run_bare(api_url: str) -> None:
    bolt = make_bare_bolt(api_url)

    async def slack_events(request: web.Request) -> web.Response:
        # The same mounting as Rein's bot/http_api.py: slack_events.
        response = await bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    app = web.Application()
    app.router.add_post("/slack/events", slack_events)
    runner, port = await _listen(app)
    _ready(port=port)
    try:
        await _until_signalled()
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------------ bare JSON handler


async def run_json(body: bytes) -> None:
    async def constant(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/agents/{agent_id}/autonomy", constant)
    runner, port = await _listen(app)
    _ready(port=port)
    try:
        await _until_signalled()
    finally:
        await runner.cleanup()


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("role", choices=["fake", "rein", "bare", "json"])
    parser.add_argument("--api-url", help="the fake Slack Web API (rein, bare)")
    parser.add_argument("--workdir", type=Path, help="database and policy file (rein)")
    parser.add_argument("--profile", type=Path, help="write cProfile stats here (rein)")
    parser.add_argument(
        "--policy", type=Path, default=POLICY, help="the policy file to copy in (rein)"
    )
    parser.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable of Rein's environment, e.g. a kill-switch secret (rein; repeatable)",
    )
    parser.add_argument("--body", help="the constant JSON to answer with (json)")
    parser.add_argument(
        "--watch-stdin", action="store_true", help="stop at end of file on stdin (a pipe)"
    )
    args = parser.parse_args(argv)
    global WATCH_STDIN
    WATCH_STDIN = args.watch_stdin
    if args.role == "fake":
        asyncio.run(run_fake())
    elif args.role == "rein":
        if not args.api_url or not args.workdir:
            parser.error("rein needs --api-url and --workdir")
        asyncio.run(run_rein(args.api_url, args.workdir, args.profile, args.policy, dict(args.env)))
    elif args.role == "json":
        if args.body is None:
            parser.error("json needs --body")
        asyncio.run(run_json(args.body.encode()))
    else:
        if not args.api_url:
            parser.error("bare needs --api-url")
        asyncio.run(run_bare(args.api_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
