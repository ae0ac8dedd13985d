"""Time from the signed Approve containment click to the kill switch getting the delivery.

    python -m bench.approval_delivery [--approvals 200] [--warmup 10] [--no-write]
                                      [--profile FILE]

Server processes (bench/servers.py): the fake Slack Web API, and Rein started as `rein run`
starts it, with the test policy in which `crm-writer` has a kill switch
(`kill_switch: {url: <the receiver>, secret_env: REIN_KS_CRM}`, the variable set in Rein's
environment). This process is the client and the kill-switch receiver: a small aiohttp server
that checks each delivery's signature (PRODUCT.md, "Kill-switch delivery"), answers 200, and
notes `time.perf_counter()` once the whole body is read, on the same clock as the client's.

First every incident is declared, each with the quick declare `/incident declare sev3
agent:crm-writer …` from a user of its own (a few at a time), and the benchmark waits until
Rein has set up each room (its private answer on `response_url`, the declare's last step).
Then, one approval at a time (sequentially, no concurrency), the commander who declared it
clicks **Approve containment** (a signed `block_actions` request, as
tests/slack_requests.py `SlackSender.click` sends it) and the time runs from just before the
request is sent until the receiver has the delivery for that incident. Before the next click
the benchmark waits until Rein has recorded the confirmation and the Slack calls that follow
(card, digest, topic) have stopped, so each approval starts from an idle Rein.

The figures go into docs/benchmarks.md, between this benchmark's markers.
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import math
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from bench import servers
from bench.ack_latency import (
    DOC,
    Level,
    Server,
    drain,
    fake_stats,
    print_profile,
    start_server,
    stop_server,
)
from bench.report import command_line, provenance, verdict_lines, write_section
from tests.slack_requests import SlackSender

START = "<!-- approval_delivery:start -->"
END = "<!-- approval_delivery:end -->"

AGENT = "crm-writer"
APPROVE = "incident_approve_containment"  # bot/render/incident.py: APPROVE_CONTAINMENT
SECRET_ENV = "REIN_KS_CRM"  # noqa: S105  (the variable's name, not a secret)
SECRET = "bench-kill-switch-secret-0123456789"  # noqa: S105  (loopback only)
KILL_PATH = "/rein/kill"
P50_TARGET_MS = 50.0
DECLARES_AT_ONCE = 4
DELIVERY_TIMEOUT = 30.0
SETTLE_TIMEOUT = 30.0
QUIET_MS = 50  # Rein is idle once the fake Slack has seen no call for this long
DECLARED = re.compile(r"Declared INC-(\d+)")


# ------------------------------------------------------------------------------ receiver


class Receiver:
    """The agent's kill switch: checks each delivery, answers 200, notes when it arrived."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.waiting: dict[str, asyncio.Future[float]] = {}  # incident ref -> arrival
        self.received: Counter[str] = Counter()  # delivery_id -> times received
        self.problems: list[str] = []  # bad signatures, malformed or unexpected deliveries

    def expect(self, ref: str) -> asyncio.Future[float]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[ref] = future
        return future

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        arrived = time.perf_counter()
        timestamp = request.headers.get("X-Rein-Timestamp", "")
        message = f"v1:{timestamp}:".encode() + raw
        expected = "v1=" + hmac.new(self.secret, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Rein-Signature", ""), expected):
            self.problems.append(f"bad signature: {raw[:120]!r}")
            return web.json_response({"error": "bad signature"}, status=401)
        try:
            delivery = json.loads(raw)
            ref, delivery_id = delivery["incident"], delivery["delivery_id"]
        except (ValueError, KeyError, TypeError):
            self.problems.append(f"malformed delivery: {raw[:120]!r}")
            return web.json_response({"error": "malformed"}, status=400)
        self.received[delivery_id] += 1
        wanted = {"event": "containment", "agent": AGENT, "mode": "paused"}
        if any(delivery.get(k) != v for k, v in wanted.items()):
            self.problems.append(f"unexpected delivery: {raw[:160]!r}")
        future = self.waiting.get(ref)
        if future is not None and not future.done():
            future.set_result(arrived)
        return web.json_response({"ok": True})


class ResponseUrls:
    """What SlackSender asks its `fake` for: the fake Slack runs in a process of its own."""

    def __init__(self, base: str) -> None:
        self.base = base

    def response_url(self, key: str) -> str:
        return f"{self.base}{key}"


def write_policy(path: Path, kill_switch_url: str) -> None:
    """The test policy, with a kill switch for crm-writer."""
    policy = yaml.safe_load(servers.POLICY.read_text())
    for agent in policy["agents"]:
        if agent["id"] == AGENT:
            agent["kill_switch"] = {"url": kill_switch_url, "secret_env": SECRET_ENV}
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


# ---------------------------------------------------------------------------------- run


@dataclass
class Result:
    delivered: Level  # click sent -> delivery received, per approval
    acked: Level  # click sent -> Slack's request answered (Rein's ack), per approval
    approvals: int
    warmup: int
    declare_s: float
    run_s: float
    rein_cpu_per_approval_ms: float
    slack_calls_per_approval: dict[str, float]
    receiver_problems: list[str]
    repeated_deliveries: int  # deliveries received more than once (retries)
    rein_log_problems: list[str]
    errors: list[str] = field(default_factory=list)


async def declare_all(sender: SlackSender, count: int) -> list[tuple[int, str]]:
    """`count` quick declares, each from a user of its own: (incident number, declarer)."""
    slots = asyncio.Semaphore(DECLARES_AT_ONCE)

    async def one(i: int) -> tuple[int, str]:
        user = f"UAPPROVE{i:05d}"
        async with slots:
            status, answer = await sender.command(
                f"declare sev3 agent:{AGENT} Wrong CRM field on run {i}",
                user=user,
                channel=servers.ORIGIN,
            )
        found = DECLARED.search(str(answer))
        if status != 200 or found is None:
            raise RuntimeError(f"declare {i} answered {status}: {str(answer)[:200]!r}")
        return int(found.group(1)), user

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def settle(session: aiohttp.ClientSession, rein_url: str, fake: Server, number: int) -> int:
    """Wait until Rein has recorded the confirmation and the fake Slack has been quiet for
    QUIET_MS; return how many Slack calls it has seen in all."""
    started = time.perf_counter()
    url = f"{rein_url}/v1/incidents/INC-{number}"
    headers = {"Authorization": f"Bearer {servers.API_TOKEN}"}
    while True:
        async with session.get(url, headers=headers) as response:
            timeline = (await response.json())["timeline"]
        if any(
            e["kind"] == "delivery" and (e.get("data") or {}).get("state") == "confirmed"
            for e in timeline
        ):
            break
        if time.perf_counter() - started > SETTLE_TIMEOUT:
            raise RuntimeError(f"Rein did not record the confirmation of INC-{number}")
        await asyncio.sleep(0.005)
    calls, quiet_since = -1, time.perf_counter()
    while True:
        now_calls = sum((await fake_stats(session, fake))["calls"].values())
        now = time.perf_counter()
        if now_calls != calls:
            calls, quiet_since = now_calls, now
        elif now - quiet_since >= QUIET_MS / 1000:
            return calls
        if now - started > SETTLE_TIMEOUT:
            raise RuntimeError(f"Rein's Slack calls for INC-{number} did not stop")
        await asyncio.sleep(0.01)


async def bench(approvals: int, warmup: int, profile: Path | None) -> Result:
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="rein-bench-"))
    keep = False
    procs: dict[str, Server] = {}
    receiver = Receiver(SECRET)
    kill_app = web.Application()
    kill_app.router.add_post(KILL_PATH, receiver.handle)
    kill_runner, kill_port = await servers._listen(kill_app)
    try:
        policy = workdir / "policy.yml"
        write_policy(policy, f"http://{servers.HOST}:{kill_port}{KILL_PATH}")
        procs["fake"] = fake = await start_server("fake", workdir)
        rein_args = ["--api-url", fake.info["api_url"], "--workdir", str(workdir)]
        rein_args += ["--policy", str(policy), "--env", f"{SECRET_ENV}={SECRET}"]
        if profile is not None:
            rein_args += ["--profile", str(profile)]
        procs["rein"] = rein = await start_server("rein", workdir, *rein_args)
        rein_url = f"http://{servers.HOST}:{rein.info['port']}"
        response_base = f"http://{servers.HOST}:{fake.info['port']}/response/"
        delivered, acked = Level("rein", 1), Level("rein", 1)
        errors: list[str] = []
        timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            sender = SlackSender(f"{rein_url}/slack/events", ResponseUrls(response_base), session)
            declare_started = time.perf_counter()
            incidents = await declare_all(sender, warmup + approvals)
            await drain(session, fake, len(incidents))  # every room set up
            declare_s = time.perf_counter() - declare_started
            print(f"declared {len(incidents)} incidents in {declare_s:.1f} s", flush=True)
            calls_before: dict[str, int] = {}
            cpu_before = 0.0
            for i, (number, user) in enumerate(incidents):
                if i == warmup:  # the measured approvals start here
                    calls_before = (await fake_stats(session, fake))["calls"]
                    cpu_before = rein.cpu_seconds()
                arrival = receiver.expect(f"INC-{number}")
                t0 = time.perf_counter()
                status, answer = await sender.click(APPROVE, str(number), user=user)
                t_ack = time.perf_counter()
                try:
                    t_delivered = await asyncio.wait_for(arrival, DELIVERY_TIMEOUT)
                except TimeoutError:
                    errors.append(f"INC-{number}: no delivery within {DELIVERY_TIMEOUT:g} s")
                    continue
                if status != 200:
                    errors.append(f"INC-{number}: the click answered {status}: {answer!r:.120}")
                elif i >= warmup:
                    delivered.latencies_ms.append((t_delivered - t0) * 1000)
                    acked.latencies_ms.append((t_ack - t0) * 1000)
                await settle(session, rein_url, fake, number)
                if (i + 1) % 50 == 0:
                    print(f"approved {i + 1}", flush=True)
            done = max(1, len(delivered.latencies_ms))
            rein_cpu = (rein.cpu_seconds() - cpu_before) / done * 1000
            calls_after = (await fake_stats(session, fake))["calls"]
            per_approval = {
                method: (n - calls_before.get(method, 0)) / done
                for method, n in sorted(calls_after.items())
                if n != calls_before.get(method, 0)
            }
        for role in ("rein", "fake"):
            await stop_server(procs.pop(role))
        problems = [
            line
            for line in (workdir / "rein.log").read_text(errors="replace").splitlines()
            if any(f" {level} " in line for level in ("WARNING", "ERROR", "CRITICAL"))
            or line.startswith("Traceback")
        ]
        return Result(
            delivered=delivered,
            acked=acked,
            approvals=approvals,
            warmup=warmup,
            declare_s=declare_s,
            run_s=time.perf_counter() - started,
            rein_cpu_per_approval_ms=rein_cpu,
            slack_calls_per_approval=per_approval,
            receiver_problems=receiver.problems,
            repeated_deliveries=sum(1 for n in receiver.received.values() if n > 1),
            rein_log_problems=problems,
            errors=errors,
        )
    except BaseException:
        keep = True
        print(f"logs kept in {workdir}", file=sys.stderr)
        raise
    finally:
        for server in procs.values():
            await stop_server(server)
        await kill_runner.cleanup()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------- report


def verdicts(result: Result) -> list[tuple[str, bool]]:
    p50 = result.delivered.pct(50)
    return [
        (
            f"approval → kill-switch delivery p50: {p50:.1f} ms over "
            f"{len(result.delivered.latencies_ms)} approvals (target < {P50_TARGET_MS:.0f} ms)",
            p50 < P50_TARGET_MS,
        )
    ]


def _row(name: str, level: Level) -> str:
    values = level.latencies_ms
    mean = sum(values) / len(values) if values else math.nan
    return (
        f"| {name} | {len(values)} | {level.pct(50):.1f} ms | {level.pct(90):.1f} ms"
        f" | {level.pct(99):.1f} ms | {max(values, default=math.nan):.1f} ms | {mean:.1f} ms |"
    )


def render(result: Result, command: str) -> str:
    rows = [
        "| From the click's request being sent to | Approvals | p50 | p90 | p99 | max | mean |",
        "|---|---:|---:|---:|---:|---:|---:|",
        _row("the kill switch having the delivery", result.delivered),
        _row("Rein's answer to the click (the ack)", result.acked),
    ]
    calls = ", ".join(f"{m} {n:g}" for m, n in result.slack_calls_per_approval.items())
    problems = len(result.errors) + len(result.receiver_problems)
    return f"""{START}
## Approve containment → kill-switch delivery

The commander clicks **Approve containment** on an incident's card: Slack's signed
`block_actions` request (`action_id` `{APPROVE}`, value the incident's number) goes to
`/slack/events`; Rein commits the containment (incident `contained`, agent `paused`,
delivery queued), acknowledges, and delivers to the agent's kill switch: a signed `POST` with
the JSON of PRODUCT.md's "Kill-switch delivery". Timed from just before the click's request
is sent until the receiver has read the delivery's whole body, both in the benchmark's
process, on one `time.perf_counter()` clock.

{provenance(command, "bench/approval_delivery.py")}
- Whole run: {result.run_s:.0f} s, of which {result.declare_s:.0f} s declaring and setting up
  the {result.approvals + result.warmup} incidents; {problems} failed approvals or bad
  deliveries; {len(result.rein_log_problems)} warnings or errors in Rein's log

How it was measured:

- Processes: the benchmark (the client sending Slack's requests, and the kill-switch receiver,
  a small aiohttp server checking each delivery's signature and answering 200), Rein and the
  fake Slack Web API, one process each, on loopback, sharing the machine's CPUs. Rein is
  started as `rein run` starts it, with the test policy in which `{AGENT}` has
  `kill_switch: {{url: <the receiver>, secret_env: {SECRET_ENV}}}` and `{SECRET_ENV}` set in
  its environment.
- Incidents: {result.approvals + result.warmup} declared first with the quick declare
  `/incident declare sev3 agent:{AGENT} …`, each from a user of its own, {DECLARES_AT_ONCE}
  at a time; the benchmark waited until every room was set up (Rein's private answer on
  `response_url`, the declare's last step). Each incident is approved once.
- Approvals: sequential, one at a time (no concurrency), by the incident's commander (who
  declared it); the first {result.warmup} are a warm-up, not counted. After each one the
  benchmark waited until Rein had recorded the confirmation on the timeline and the fake Slack
  had seen no call for {QUIET_MS} ms, so every approval starts from an idle Rein.
- Percentiles: nearest rank over the {result.approvals} measured approvals.

{chr(10).join(rows)}

{verdict_lines(verdicts(result))}

Rein acknowledges before it delivers, yet the kill switch usually has the delivery before
the click's request is answered: with `process_before_response=False` Bolt runs the listener
in a task of its own and looks for its ack every 10 ms (`slack_bolt/listener/
asyncio_runner.py`), so the HTTP answer waits for that poll while the delivery does not.

Per measured approval, Rein used {result.rein_cpu_per_approval_ms:.1f} ms of CPU (click,
delivery, and the card, digest and topic edits that follow) and the fake Slack saw {calls}.
The receiver got {result.repeated_deliveries} deliveries more than once (retries) and
{len(result.receiver_problems)} with a bad signature or unexpected content.
{END}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.approval_delivery", description=__doc__)
    parser.add_argument("--approvals", type=int, default=200, help="measured approvals")
    parser.add_argument("--warmup", type=int, default=10, help="approvals not counted")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run Rein's server under cProfile, write the stats here and print the top "
        "functions (implies --no-write: profiled figures are not representative)",
    )
    parser.add_argument("--output", type=Path, default=DOC, help="the Markdown file to update")
    args = parser.parse_args(argv)
    profile = args.profile.resolve() if args.profile else None

    result = asyncio.run(bench(args.approvals, args.warmup, profile))
    for line in result.errors[:5] + result.receiver_problems[:5]:
        print(line, file=sys.stderr)
    for line in result.rein_log_problems[:10]:
        print(f"rein log: {line}", file=sys.stderr)
    for name, level in (("delivered", result.delivered), ("acked", result.acked)):
        print(
            f"{name:>9}: n={len(level.latencies_ms)} p50={level.pct(50):.1f} ms"
            f" p99={level.pct(99):.1f} ms max={max(level.latencies_ms, default=math.nan):.1f} ms"
        )
    for text, ok in verdicts(result):
        print(f"{'met   ' if ok else 'MISSED'} {text}")
    print(f"whole run {result.run_s:.0f} s")
    if profile is not None:
        print_profile(profile, sys.stdout)
    elif not args.no_write:
        write_section(
            render(result, command_line("bench.approval_delivery", argv)), START, END, args.output
        )
        print(f"wrote {args.output}")
    return 1 if result.errors or result.receiver_problems else 0


if __name__ == "__main__":
    sys.exit(main())
