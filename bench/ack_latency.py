"""Slash-command acknowledgement latency of the quick declare, Rein against a bare Bolt app.

    python -m bench.ack_latency [--levels 1:300,10:1000,50:1000] [--no-write] [--profile FILE]

Three server processes (bench/servers.py): the fake Slack Web API, Rein, and a bare Bolt
AsyncApp that only acknowledges `/incident`, built and mounted like Rein's (aiohttp route,
HTTP mode, request verification on, same signing secret). This process is the client: for each
concurrency level it sends the same number of signed `/incident declare sev2 agent:crm-writer
Wrong CRM field on 300 records` commands to the bare app, then to Rein, from `concurrency`
closed-loop workers, timing each request from send to the whole response read. Every request
has its own user id, so Rein's one-minute duplicate guard never answers instead of declaring;
every Rein answer must start with "Declared INC-". After each Rein level the client waits until
Rein has finished the work it does after the ack (channel, topic, invites, card, pin, digest,
the private answer on response_url) so the next measurement starts from an idle Rein.

The figures go into docs/benchmarks.md, between this benchmark's markers.
"""

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import pstats
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import aiohttp

from bench import servers
from tests.slack_requests import TEAM, sign

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START = "<!-- ack_latency:start -->"
END = "<!-- ack_latency:end -->"

COMMAND_TEXT = "declare sev2 agent:crm-writer Wrong CRM field on 300 records"
REIN_ACK_PREFIX = "Declared INC-"
DEFAULT_LEVELS = "1:300,10:1000,50:1000"
P99_TARGET_MS = 150.0
P99_TARGET_CONCURRENCY = 50
P50_RATIO_TARGET = 2.0
READY_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0
DRAIN_TIMEOUT = 300.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------- requests


class Declares:
    """Signed quick-declare slash commands, each from a user of its own."""

    def __init__(self, tag: str, response_base: str) -> None:
        self.tag = tag
        self.response_base = response_base
        self.n = 0

    def batch(self, count: int) -> list[tuple[bytes, dict[str, str]]]:
        """`count` requests signed now (Slack accepts a timestamp for five minutes)."""
        ts = int(time.time())
        out = []
        for _ in range(count):
            self.n += 1
            user = f"U{self.tag}{self.n:07d}"
            form = {
                "token": "legacy-verification-token",
                "team_id": TEAM["id"],
                "team_domain": TEAM["domain"],
                "channel_id": servers.ORIGIN,
                "channel_name": "general",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/incident",
                "text": COMMAND_TEXT,
                "api_app_id": "A0REIN",
                "response_url": f"{self.response_base}{self.tag.lower()}{self.n:07d}",
                "trigger_id": f"{self.n}.{self.tag}.bench",
            }
            body = urlencode(form)
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": str(ts),
                "X-Slack-Signature": sign(body, ts),
            }
            out.append((body.encode(), headers))
        return out


@dataclass
class Level:
    target: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    drain_s: float | None = None

    def pct(self, p: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return math.nan
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    @property
    def cpu_per_request_ms(self) -> float:
        """CPU of the measured server process per answered request."""
        done = len(self.latencies_ms)
        return self.cpu_s.get(self.target, math.nan) / done * 1000 if done else math.nan

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s else math.nan


async def load(
    session: aiohttp.ClientSession,
    url: str,
    requests: list[tuple[bytes, dict[str, str]]],
    concurrency: int,
    accept: Callable[[int, str], bool],
    level: Level,
    max_seconds: float,
) -> None:
    """`concurrency` closed-loop workers share the requests; each is timed send-to-body."""
    queue: Iterator[tuple[bytes, dict[str, str]]] = iter(requests)
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker() -> None:
        for body, headers in queue:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    text = await response.text()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                level.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            if accept(status, text):
                level.latencies_ms.append(elapsed)
            else:
                level.errors.append(f"HTTP {status}: {text[:120]!r}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    level.wall_s = time.perf_counter() - started


def rein_accepts(status: int, text: str) -> bool:
    return status == 200 and text.startswith(REIN_ACK_PREFIX)


def bare_accepts(status: int, text: str) -> bool:
    return status == 200 and text == servers.BARE_ACK


# -------------------------------------------------------------------------------- servers


@dataclass
class Server:
    role: str
    process: asyncio.subprocess.Process
    info: dict[str, Any]
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU of the process (all its threads) so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def start_server(role: str, workdir: Path, *extra: str) -> Server:
    log = workdir / f"{role}.log"
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.servers",
            role,
            "--watch-stdin",
            *extra,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
        )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT)
    except TimeoutError:
        line = b""
    if not line.startswith(b"READY "):
        process.kill()
        await process.wait()
        raise RuntimeError(f"{role} server did not start; see {log}:\n{log.read_text()[-2000:]}")
    return Server(role, process, json.loads(line[len(b"READY ") :]), log)


async def stop_server(server: Server) -> None:
    if server.process.returncode is not None:
        return
    server.process.terminate()
    if server.process.stdin is not None:
        server.process.stdin.close()
    try:
        await asyncio.wait_for(server.process.wait(), 30)
    except TimeoutError:
        server.process.kill()
        await server.process.wait()


@contextlib.asynccontextmanager
async def running(workdir: Path, profile: Path | None) -> AsyncIterator[dict[str, Server]]:
    started: dict[str, Server] = {}
    try:
        started["fake"] = fake = await start_server("fake", workdir)
        api_url = fake.info["api_url"]
        started["bare"] = await start_server("bare", workdir, "--api-url", api_url)
        rein_args = ["--api-url", api_url, "--workdir", str(workdir)]
        if profile is not None:
            rein_args += ["--profile", str(profile)]
        started["rein"] = await start_server("rein", workdir, *rein_args)
        yield started
    finally:
        # Rein first: it finishes acknowledged work against the fake Slack before it exits.
        for role in ("rein", "bare", "fake"):
            if role in started:
                await stop_server(started[role])


async def fake_stats(session: aiohttp.ClientSession, fake: Server) -> dict[str, Any]:
    async with session.get(f"http://{servers.HOST}:{fake.info['control_port']}/stats") as r:
        return dict(await r.json())


async def drain(session: aiohttp.ClientSession, fake: Server, declared: int) -> float:
    """Seconds until Rein has sent the private answer (its last step) for every declare."""
    started = time.perf_counter()
    while (await fake_stats(session, fake))["responses"] < declared:
        if time.perf_counter() - started > DRAIN_TIMEOUT:
            raise RuntimeError(f"Rein did not finish its after-ack work in {DRAIN_TIMEOUT} s")
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------- run


@dataclass
class Result:
    levels: list[tuple[Level, Level]]  # (bare, rein) per concurrency
    fake: dict[str, Any]
    rein_declared: int
    run_s: float
    rein_log_problems: list[str]  # WARNING and worse lines of Rein's log


def parse_levels(spec: str) -> list[tuple[int, int]]:
    levels = []
    for part in spec.split(","):
        concurrency, _, count = part.partition(":")
        levels.append((int(concurrency), int(count)))
    return levels


async def bench(
    levels: list[tuple[int, int]], warmup: int, max_seconds: float, profile: Path | None
) -> Result:
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="rein-bench-"))
    keep = False
    try:
        async with running(workdir, profile) as procs, aiohttp.ClientSession() as control:
            fake, bare, rein = procs["fake"], procs["bare"], procs["rein"]
            response_base = f"http://{servers.HOST}:{fake.info['port']}/response/"
            makers = {"B": Declares("B", response_base), "R": Declares("R", response_base)}
            urls = {
                "B": f"http://{servers.HOST}:{bare.info['port']}/slack/events",
                "R": f"http://{servers.HOST}:{rein.info['port']}/slack/events",
            }
            accepts = {"B": bare_accepts, "R": rein_accepts}
            declared = 0

            async def measure(tag: str, concurrency: int, count: int) -> Level:
                nonlocal declared
                level = Level("bare" if tag == "B" else "rein", concurrency)
                requests = makers[tag].batch(count)
                connector = aiohttp.TCPConnector(limit=concurrency)
                timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
                before = {role: proc.cpu_seconds() for role, proc in procs.items()}
                client_before = time.process_time()
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                    await load(
                        session, urls[tag], requests, concurrency, accepts[tag], level, max_seconds
                    )
                if tag == "R":
                    # CPU is counted until the after-ack work is done: it is the declare's too.
                    declared += len(level.latencies_ms)
                    level.drain_s = await drain(control, fake, declared)
                level.cpu_s = {
                    role: proc.cpu_seconds() - before[role] for role, proc in procs.items()
                }
                level.cpu_s["client"] = time.process_time() - client_before
                return level

            # Warm-up: imports, Bolt's cached auth.test, SQLite's cache, connection pools.
            for concurrency in (1, 10):
                for tag in ("B", "R"):
                    await measure(tag, concurrency, warmup)
            results = []
            for concurrency, count in levels:
                bare_level = await measure("B", concurrency, count)
                rein_level = await measure("R", concurrency, count)
                results.append((bare_level, rein_level))
                _print_level(bare_level)
                _print_level(rein_level)
            stats = await fake_stats(control, fake)
        # Read after Rein has stopped: its shutdown reports listeners it had to abandon.
        problems = [
            line
            for line in (workdir / "rein.log").read_text(errors="replace").splitlines()
            if any(f" {level} " in line for level in ("WARNING", "ERROR", "CRITICAL"))
            or line.startswith("Traceback")
        ]
        return Result(results, stats, declared, time.perf_counter() - started, problems)
    except BaseException:
        keep = True
        print(f"logs kept in {workdir}", file=sys.stderr)
        raise
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _print_level(level: Level) -> None:
    drained = f"  after-ack work done {level.drain_s:.1f} s later" if level.drain_s else ""
    print(
        f"{level.target:>4} c={level.concurrency:<3} n={len(level.latencies_ms):<5}"
        f" p50={level.pct(50):7.1f} ms  p99={level.pct(99):7.1f} ms"
        f"  max={max(level.latencies_ms, default=math.nan):7.1f} ms"
        f"  {level.rate:6.0f} req/s  CPU {level.cpu_per_request_ms:4.1f} ms/req"
        f"  errors={len(level.errors)}{drained}",
        flush=True,
    )


# ---------------------------------------------------------------------------------- report


def verdicts(result: Result) -> list[tuple[str, bool]]:
    out = []
    for _, rein in result.levels:
        if rein.concurrency == P99_TARGET_CONCURRENCY:
            p99 = rein.pct(99)
            out.append(
                (
                    f"Rein p99 at concurrency {rein.concurrency}: {p99:.1f} ms"
                    f" (target < {P99_TARGET_MS:.0f} ms)",
                    p99 < P99_TARGET_MS,
                )
            )
    for bare, rein in result.levels:
        ratio = rein.pct(50) / bare.pct(50)
        out.append(
            (
                f"Rein p50 / bare p50 at concurrency {rein.concurrency}: {ratio:.2f}×"
                f" (target ≤ {P50_RATIO_TARGET:.0f}×)",
                ratio <= P50_RATIO_TARGET,
            )
        )
    return out


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _interpreter() -> str:
    """The Python that ran the benchmark, relative to the repository when it is inside it."""
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return str(exe.relative_to(ROOT))
    return exe.name


def _git_revision() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        rev = subprocess.run(  # noqa: S603
            [git, "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603
            [git, "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{rev}{' (with uncommitted changes)' if dirty else ''}" if rev else "unknown"


def render(result: Result, command: str, warmup: int) -> str:
    rows = [
        "| Concurrency | Requests (bare / Rein) | Bare p50 | Bare p99 | Rein p50 | Rein p99 "
        "| p50 ratio | p99 ratio | Bare req/s | Rein req/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for bare, rein in result.levels:
        rows.append(
            f"| {rein.concurrency} | {len(bare.latencies_ms)} / {len(rein.latencies_ms)}"
            f" | {bare.pct(50):.1f} ms | {bare.pct(99):.1f} ms"
            f" | {rein.pct(50):.1f} ms | {rein.pct(99):.1f} ms"
            f" | {rein.pct(50) / bare.pct(50):.2f}× | {rein.pct(99) / bare.pct(99):.2f}×"
            f" | {bare.rate:.0f} | {rein.rate:.0f} |"
        )
    cpu = [
        "| Concurrency | Rein CPU per declare | fake Slack CPU per declare "
        "| client CPU per request | Rein's after-ack work done | Bare app CPU per request |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for bare, rein in result.levels:
        done = max(1, len(rein.latencies_ms))
        cpu.append(
            f"| {rein.concurrency} | {rein.cpu_per_request_ms:.1f} ms"
            f" | {rein.cpu_s['fake'] / done * 1000:.1f} ms"
            f" | {rein.cpu_s['client'] / done * 1000:.1f} ms"
            f" | {rein.drain_s or 0:.1f} s after the last ack"
            f" | {bare.cpu_per_request_ms:.1f} ms |"
        )
    checks = "\n".join(
        f"- {'✅ met' if ok else '❌ missed'}: {text}" for text, ok in verdicts(result)
    )
    fake = result.fake
    errors = sum(len(b.errors) + len(r.errors) for b, r in result.levels)
    calls = ", ".join(f"{m} {n}" for m, n in sorted(fake["calls"].items()))
    return f"""{START}
## Slash-command acknowledgement latency: quick declare

The quick declare, `/incident {COMMAND_TEXT}`,
sent as Slack sends it (a signed form POST to `/slack/events`) and timed by the client from
sending the request to reading the whole answer, which for Rein is the ack
`Declared INC-<n>. Setting up its channel…`. The baseline is a bare Bolt `AsyncApp` whose
only listener acknowledges `/incident`, built with Rein's options (HTTP mode, request
verification on, the same signing secret, `process_before_response=False`) and mounted the
same way (aiohttp route → `async_dispatch(to_bolt_request(request))`), measured in the same
run by the same client.

- Command: `{command}` (`make bench`); written by `bench/ack_latency.py`
- Machine: `nproc` {len(os.sched_getaffinity(0))}; {_cpu_model()};
  {platform.system()} {platform.release()}; Python {platform.python_version()}
- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; revision {_git_revision()}
- Whole run: {result.run_s:.0f} s; {errors} failed or wrong answers;
  {len(result.rein_log_problems)} warnings or errors in Rein's log

How it was measured:

- Processes: the client (this script, aiohttp), Rein, the bare app and the fake Slack Web
  API, one process each, on loopback, sharing the machine's CPUs.
- Load: closed loop, `concurrency` workers each sending its next request as soon as the
  previous answer is in, over keep-alive connections.
- Warm-up: {warmup} requests at concurrency 1, then {warmup} at 10, to each app; not counted.
- Order: at each level the bare app, then Rein, then a wait until Rein has finished its
  after-ack work, so every level starts from an idle Rein.
- Requests: each from a user id of its own, so Rein's one-minute duplicate guard never asks
  instead of declaring; every Rein answer must start with `{REIN_ACK_PREFIX}`.
- Rein: started as `rein run` starts it (INFO log on stderr, to a file); SQLite in WAL with
  `synchronous = FULL`, on the disk of the system temp dir.
- Percentiles: nearest rank over the level's requests.

{chr(10).join(rows)}

Ratios are Rein ÷ bare app at the same concurrency.

{checks}

In a closed loop, latency ≈ concurrency ÷ throughput: a p99 under 150 ms at concurrency
50 asks Rein to sustain about 330 declares a second, and a p50 within 2× of the bare app's
asks for about half the bare app's request rate.

### What competes with the ack

Rein answers Slack as soon as the incident is committed, then sets up the room in the same
process: channel, topic, invites, card, pin, digest (Web API calls), SQLite writes, reminder
planning, and the private answer on `response_url`. That work shares the event loop and the
database connection with the next acknowledgements, so it steps aside while requests wait for
their answer (`bot/foreground.py`: one step every 50 ms until none waits), which is why it
ends seconds after the last ack. The fake Slack that answers it shares the machine's CPUs:
both are part of what was measured. CPU time (all threads of each process) from the start of
each level until Rein's after-ack work was done, per request:

{chr(10).join(cpu)}

Over the whole run, warm-up included, the fake Slack saw {calls};
{fake["responses"]} `response_url` answers ({fake["responses_with_problems"]} reporting a
Slack problem); {fake["violation_count"]} contract violations and
{fake["rejection_count"]} rejected payloads.
{END}
"""


def write_doc(section: str, path: Path = DOC) -> None:
    if path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        text = (
            "# Benchmarks\n\n"
            "Measured with `make bench` on the project's 2-CPU machine. Each benchmark\n"
            "rewrites only its own section, between its markers.\n"
        )
    if START in text and END in text:
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        text = head + section.strip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def print_profile(path: Path, out: IO[str], lines: int = 35) -> None:
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ack_latency", description=__doc__)
    parser.add_argument(
        "--levels",
        default=DEFAULT_LEVELS,
        help=f"concurrency:requests, comma-separated (default {DEFAULT_LEVELS})",
    )
    parser.add_argument("--warmup", type=int, default=100, help="warm-up requests per app")
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="time cap per level and app"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run Rein's server under cProfile, write the stats here and print the top "
        "functions (implies --no-write: profiled figures are not representative)",
    )
    parser.add_argument("--output", type=Path, default=DOC, help="the Markdown file to update")
    args = parser.parse_args(argv)
    levels = parse_levels(args.levels)
    profile = args.profile.resolve() if args.profile else None

    result = asyncio.run(bench(levels, args.warmup, args.max_seconds, profile))
    failures = [(b, r) for b, r in result.levels if b.errors or r.errors]
    for bare, rein in failures:
        for level in (bare, rein):
            for error in level.errors[:3]:
                print(f"{level.target} c={level.concurrency}: {error}", file=sys.stderr)
    for line in result.rein_log_problems[:10]:
        print(f"rein log: {line}", file=sys.stderr)
    for text, ok in verdicts(result):
        print(f"{'met   ' if ok else 'MISSED'} {text}")
    print(f"whole run {result.run_s:.0f} s")
    if profile is not None:
        print_profile(profile, sys.stdout)
    elif not args.no_write:
        command = shlex.join([_interpreter(), "-m", "bench.ack_latency", *(argv or sys.argv[1:])])
        write_doc(render(result, command, args.warmup), args.output)
        print(f"wrote {args.output}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
