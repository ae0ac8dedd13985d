"""`rein run | check | migrate | export`."""

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from typing import TextIO

from bot.config import ConfigError, Settings, StorageSettings, load_settings, secrets_of
from bot.domain.models import parse_ref
from bot.logs import configure_logging
from bot.policy import PolicyError, load_policy, missing_kill_switch_secrets
from bot.services.streamed_export import open_record
from bot.slack_gateway import SlackGateway, SlackProblem, make_client
from storage.db import Database
from storage.evidence import EvidenceRepo
from storage.incidents import IncidentRepo
from storage.postmortems import PostmortemRepo
from storage.rollback import RollbackRepo
from storage.timeline import TimelineRepo

EXIT_CONFIG = 2


async def _run() -> int:
    from bot.app import build_runtime, load_checked_policy, quieten_collector

    settings = load_settings()
    policy = load_checked_policy(settings, os.environ)
    secret_envs = [a.kill_switch.secret_env for a in policy.agents if a.kill_switch]
    configure_logging(secrets_of(settings, os.environ, secret_envs))
    runtime = await build_runtime(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    quieten_collector()
    try:
        await stop.wait()
    finally:
        await runtime.stop()
    return 0


async def _check() -> int:
    """One verdict per part, so an operator sees everything that is wrong at once."""
    verdicts: list[tuple[str, bool, str]] = []
    try:
        settings = load_settings()
        verdicts.append(("configuration", True, f"Slack {settings.slack_mode} mode"))
    except ConfigError as exc:
        verdicts.append(("configuration", False, str(exc)))
        settings = None
    policy_path = (
        settings.REIN_POLICY_PATH if settings else os.environ.get("REIN_POLICY_PATH", "./rein.yml")
    )
    try:
        policy = load_policy(policy_path)
        missing = missing_kill_switch_secrets(policy, os.environ)
        detail = f"{len(policy.agents)} agents in {policy_path}"
        verdicts.append(("policy", not missing, "; ".join(missing) or detail))
    except PolicyError as exc:
        verdicts.append(("policy", False, str(exc)))
    db_path = settings.REIN_DB_PATH if settings else StorageSettings().REIN_DB_PATH
    try:
        db = await Database.open(db_path)
        try:
            pending = await db.pending_migrations()
            ok = await db.ping()
        finally:
            await db.close()
        detail = f"{db_path}: " + (
            f"migrations pending {pending} (rein migrate)" if pending else "up to date"
        )
        verdicts.append(("database", ok, detail))
    except (OSError, ValueError, sqlite3.Error) as exc:
        verdicts.append(("database", False, f"{db_path}: {exc}"))
    verdicts.append(await _check_slack(settings))
    for name, ok, detail in verdicts:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return 0 if all(ok for _, ok, _ in verdicts) else 1


async def _check_slack(settings: Settings | None) -> tuple[str, bool, str]:
    if settings is None:
        return ("slack auth.test", False, "skipped: the configuration is incomplete")
    client = make_client(settings.SLACK_BOT_TOKEN.get_secret_value(), settings.REIN_SLACK_API_URL)
    try:
        data = await SlackGateway(client).identity()
    except SlackProblem as problem:
        return ("slack auth.test", False, str(problem))
    return ("slack auth.test", True, f"bot {data.get('user')} in team {data.get('team')}")


async def _migrate() -> int:
    path = StorageSettings().REIN_DB_PATH
    db = await Database.open(path)
    try:
        applied = await db.migrate()
    finally:
        await db.close()
    print(f"{path}: applied {applied}" if applied else f"{path}: already up to date")
    return 0


async def _export(ref: str, fmt: str, output: str | None) -> int:
    try:
        number = parse_ref(ref)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    db = await Database.open(StorageSettings().REIN_DB_PATH)
    try:
        # One state of the record, read and written a batch of rows at a time, so memory does
        # not grow with the incident; the same bytes as Share postmortem's document.
        async with db.snapshot():
            record = await open_record(
                number,
                incidents=IncidentRepo(db),
                timeline=TimelineRepo(db),
                evidence=EvidenceRepo(db),
                rollback=RollbackRepo(db),
                postmortems=PostmortemRepo(db),
            )
            if record is None:
                print(f"There is no incident INC-{number}.", file=sys.stderr)
                return 1
            if fmt == "json":
                pieces = record.json(indent=2, ensure_ascii=False)
            else:
                pieces = record.markdown()
            end = "\n" if fmt == "json" else ""
            if output:
                # Written beside it, then put in its place: a failed export leaves the file
                # that was there as it was.
                partial = f"{output}.partial"
                handle = await asyncio.to_thread(_private_file, partial)
                try:
                    async for piece in pieces:
                        await asyncio.to_thread(handle.write, piece)
                    await asyncio.to_thread(handle.write, end)
                except BaseException:
                    handle.close()
                    os.unlink(partial)
                    raise
                await asyncio.to_thread(handle.close)
                os.replace(partial, output)
            else:
                async for piece in pieces:
                    sys.stdout.write(piece)
                sys.stdout.write(end)
    finally:
        await db.close()
    return 0


def _private_file(path: str) -> TextIO:
    """The export holds the incident's evidence: readable by its owner only."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file left there before keeps its mode otherwise
    return open(fd, "w", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rein", description="Incident response for AI agents")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the bot and its HTTP API")
    commands.add_parser("check", help="check configuration, policy, database and Slack")
    commands.add_parser("migrate", help="apply database migrations")
    export = commands.add_parser(
        "export", help="write an incident's postmortem document (md) or whole record (json)"
    )
    export.add_argument("ref", help="INC-12 or 12")
    export.add_argument("--format", choices=("md", "json"), default="md")
    export.add_argument("--output", help="a file to write instead of standard output")
    args = parser.parse_args(argv)
    actions: dict[str, Callable[[], object]] = {
        "run": _run,
        "check": _check,
        "migrate": _migrate,
        "export": lambda: _export(args.ref, args.format, args.output),
    }
    try:
        return asyncio.run(actions[args.command]())  # type: ignore[arg-type]
    except (ConfigError, PolicyError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            print("stopped", file=sys.stderr)
        return 0
