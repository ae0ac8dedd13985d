"""Crash safety (issue 7): about 500 quick declarations and containment approvals are sent,
20 at a time, to a real Rein process (`python -m bot run`, HTTP mode) while it is killed with
SIGKILL at a random moment; then Rein is started again on the same database and the rest of
the requests go to the new process.

What it proves, read back with Rein's own repositories:
- every request Rein answered 200 is in the database: each acknowledged declaration with its
  `declared` entry, each acknowledged approval as a contained incident with its transition,
  its paused agent and (for an agent with a kill switch) its delivery row;
- no transition is half-applied, whichever requests were answered: each incident's status is
  the one its timeline's transitions lead to, a delivery exists exactly when containment was
  approved, each agent's stored autonomy is that of its latest containment;
- pending kill-switch deliveries resume: every delivery reaches the real kill-switch receiver
  (HMAC checked byte for byte), always with the same delivery_id and body, at most once more
  than Rein recorded (the attempt cut short by the kill), and ends confirmed;
- reminders resume: every open incident has its update reminder planned (the ones declared
  just before the kill are planned at start-up), and the first update reminder of each
  incident declared before the kill, due a minute after its declaration, is sent by the new
  process exactly once.

The kill moment comes from a seeded `random.Random`; each assertion names the seed. Replay a
failure with `REIN_CRASH_SEED=<seed> pytest tests/test_crash_safety.py`."""

import asyncio
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bot.app import Runtime, build_runtime
from bot.clock import utc_now
from bot.context import ROOMS_AT_ONCE
from bot.domain.enums import DeliveryState, IncidentStatus, Severity, TimelineKind
from bot.domain.models import Delivery, Incident, NewIncident, TimelineEntry
from bot.domain.reminders import ReminderKind, ReminderState, update_reminder_key
from bot.render.incident import APPROVE_CONTAINMENT
from storage.agents import AgentRepo
from storage.db import Database
from storage.deliveries import DeliveryRepo
from storage.incidents import IncidentRepo
from storage.reminders import ReminderRepo
from tests.conftest import API_TOKEN, POLICY, eventually, make_settings
from tests.fakes.kill_switch import FakeKillSwitch, running_kill_switch
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SlackSender
from tests.test_cli import full_env
from tests.test_reminders_crash import healthy, reminder_posts, start

REQUESTS = 500
IN_FLIGHT = 20
APPROVAL_SHARE = 0.45  # the rest are declarations
SECRET_ENV = "REIN_KS_CRM"
SECRET = "crash-kill-switch-secret-0123456789abcdef"
DELIVERY_HOLD = 0.4  # the kill switch answers 200 after this: deliveries are in flight
UPDATE_EVERY = 1  # minutes: the first update reminder falls due a minute after declaring
DECLARERS = ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE")
OWNERS = {"crm-writer": "U0OWNER", "page-publisher": "U0PUBLISH"}  # tests/policy.example.yml
SEV2_APPROVER = "U0HEADOPS"
NORMAL_MODES = {"crm-writer": "autonomous", "page-publisher": "supervised"}
DECLARED = re.compile(r"^Declared INC-(\d+)\.")


def write_policy(directory: Path, kill_switch_url: str) -> Path:
    """The tests' policy with a kill switch for crm-writer (page-publisher has none) and
    SEV-2 update reminders every minute."""
    policy = yaml.safe_load(POLICY.read_text())
    for agent in policy["agents"]:
        if agent["id"] == "crm-writer":
            agent["kill_switch"] = {"url": kill_switch_url, "secret_env": SECRET_ENV}
    policy["severities"]["sev2"]["update_every_minutes"] = UPDATE_EVERY
    path = directory / "rein-crash.yml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


@dataclass
class Request:
    """One signed Slack request, and what came of it."""

    index: int
    kind: str  # "declare" or "approve"
    form: str  # "command" (`/incident contain INC-n`) or "button" (Approve containment)
    user: str = ""
    agent: str = ""
    title: str = ""
    number: int | None = None  # the incident declared (from the ack) or approved
    phase: int = 0  # 1: to the process that is killed; 2: to the restarted one
    status: int | None = None  # HTTP status; None when no answer came (Rein died)
    answer: str = ""
    error: str = ""

    @property
    def acked(self) -> bool:
        return self.status == 200


@dataclass
class Load:
    """IN_FLIGHT workers send REQUESTS requests; the `kill_at`-th answer kills Rein."""

    rng: random.Random
    seed: int
    url: str
    fake: FakeSlack
    kill_at: int
    process: asyncio.subprocess.Process | None = None
    requests: list[Request] = field(default_factory=list)
    declared: list[int] = field(default_factory=list)  # acknowledged declarations
    approved: set[int] = field(default_factory=set)  # incidents an approval was sent for
    phase: int = 1
    answered: int = 0
    killed_at: float = 0.0
    restarted_at: float = 0.0
    up: asyncio.Event = field(default_factory=asyncio.Event)
    killed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        # What each request will be is drawn up front: only the incident an approval
        # targets depends on which declarations were answered by then.
        self._plan = [
            (
                self.rng.random() < APPROVAL_SHARE,
                self.rng.random() < 0.5,
                self.rng.random(),
                self.rng.random(),
            )
            for _ in range(REQUESTS)
        ]
        self._next = 0

    def _build(self, index: int) -> Request:
        approve, by_button, pick, who = self._plan[index]
        candidates = [n for n in self.declared if n not in self.approved]
        if approve and candidates:
            number = candidates[int(pick * len(candidates))]
            self.approved.add(number)
            declaration = next(r for r in self.requests if r.number == number)
            people = [declaration.user, OWNERS[declaration.agent], SEV2_APPROVER]
            return Request(
                index,
                "approve",
                "button" if by_button else "command",
                user=people[int(who * len(people))],
                agent=declaration.agent,
                number=number,
            )
        agent = "page-publisher" if pick < 0.2 else "crm-writer"
        return Request(
            index,
            "declare",
            "command",
            user=DECLARERS[int(who * len(DECLARERS))],
            agent=agent,
            title=f"Crash {self.seed} request {index:03d}: wrong CRM field",
        )

    async def worker(self, http: aiohttp.ClientSession) -> None:
        sender = SlackSender(self.url, self.fake, http)
        while self._next < REQUESTS:
            await self.up.wait()
            if self._next >= REQUESTS:
                return
            request = self._build(self._next)
            self._next += 1
            request.phase = self.phase
            self.requests.append(request)
            try:
                status, body = await self._send(sender, request)
            except (aiohttp.ClientError, TimeoutError) as exc:
                request.error = f"{type(exc).__name__}: {exc}"
            else:
                request.status = status
                request.answer = body.get("text", "") if isinstance(body, dict) else str(body)
                found = DECLARED.match(request.answer) if request.kind == "declare" else None
                if status == 200 and found:
                    request.number = int(found.group(1))
                    self.declared.append(request.number)
            self.answered += 1
            if self.answered == self.kill_at:
                self.kill()

    async def _send(self, sender: SlackSender, request: Request) -> tuple[int, Any]:
        if request.kind == "declare":
            text = f"declare sev2 agent:{request.agent} {request.title}"
            return await sender.command(text, user=request.user)
        if request.form == "command":
            return await sender.command(f"contain INC-{request.number}", user=request.user)
        return await sender.click(APPROVE_CONTAINMENT, str(request.number), user=request.user)

    def kill(self) -> None:
        """SIGKILL now, with the other workers' requests in flight."""
        assert self.process is not None
        self.up.clear()
        self.process.send_signal(signal.SIGKILL)
        self.killed_at = time.time()
        self.phase = 2
        self.killed.set()


@dataclass(frozen=True)
class AtKill:
    """The database as the killed process left it."""

    pending_deliveries: list[str]
    open_incidents: list[Incident]
    unplanned: list[int]


async def read_at_kill(db_path: str) -> AtKill:
    db = await Database.open(db_path)
    try:
        incidents = await IncidentRepo(db).newest(limit=10 * REQUESTS)
        return AtKill(
            pending_deliveries=[d.id for d in await DeliveryRepo(db).pending()],
            open_incidents=[i for i in incidents if i.status.is_open],
            unplanned=await ReminderRepo(db).unplanned_incidents(),
        )
    finally:
        await db.close()


async def poll(check: Any, timeout: float, every: float = 0.5) -> bool:
    """Like tests.conftest.eventually, but gentle on a database another process writes."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)


async def first_update_sent(reminders: ReminderRepo, incident: Incident) -> bool:
    assert incident.declared_at is not None
    key = update_reminder_key(incident.declared_at + timedelta(minutes=UPDATE_EVERY))
    return any(
        r.kind is ReminderKind.UPDATE and r.key == key and r.state is ReminderState.SENT
        for r in await reminders.for_incident(incident.number)
    )


@pytest.mark.soak
async def test_sigkill_under_500_declares_and_approvals_loses_nothing_acknowledged(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    """Killed mid-load and restarted: what was acknowledged is stored whole, nothing is
    half-applied, deliveries and reminders resume (the module docstring has the details)."""
    seed = int(os.environ.get("REIN_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    why = f"seed {seed}: replay with REIN_CRASH_SEED={seed}"
    print(f"crash-safety {why}")
    kill_at = rng.randint(REQUESTS // 10, REQUESTS * 3 // 5)
    log = tmp_path / "rein.log"

    async with running_kill_switch(SECRET) as ks:
        ks.hang(seconds=DELIVERY_HOLD)  # every answer is 200, DELIVERY_HOLD s late
        env = full_env(
            fake_slack,
            tmp_path,
            REIN_POLICY_PATH=str(write_policy(tmp_path, ks.url)),
            REIN_API_TOKENS=f"crash:{API_TOKEN}",
            **{SECRET_ENV: SECRET},
        )
        db_path, port = env["REIN_DB_PATH"], env["REIN_PORT"]
        load = Load(rng, seed, f"http://127.0.0.1:{port}/slack/events", fake_slack, kill_at)
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT, force_close=True)  # no stale sockets
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            workers: list[asyncio.Task[None]] = []
            first = await start(env, log)
            try:
                await healthy(port)
                load.process = first
                load.up.set()
                workers += [asyncio.create_task(load.worker(http)) for _ in range(IN_FLIGHT)]
                await asyncio.wait_for(load.killed.wait(), 90)
                await asyncio.wait_for(first.wait(), 10)
            finally:
                if first.returncode is None:
                    first.kill()
                    await first.wait()
                    for worker in workers:
                        worker.cancel()
            assert first.returncode == -signal.SIGKILL, why
            # Let what was in flight fail (or arrive: an answer Rein wrote before dying).
            await eventually(lambda: load.answered == len(load.requests), timeout=60)
            at_kill = await read_at_kill(db_path)

            load.restarted_at = time.time()  # what reaches the kill switch from now on is new
            second = await start(env, log)
            try:
                await healthy(port)
                load.up.set()
                await asyncio.wait_for(asyncio.gather(*workers), 120)

                db = await Database.open(db_path)
                try:
                    deliveries, reminders = DeliveryRepo(db), ReminderRepo(db)

                    async def delivered() -> bool:
                        return not await deliveries.pending()

                    assert await poll(delivered, 60), f"deliveries still pending ({why})"

                    async def rooms_set_up() -> bool:
                        return not await IncidentRepo(db).rooms_pending()

                    assert await poll(rooms_set_up, 60), f"rooms still to set up ({why})"

                    async def reminded() -> bool:
                        for incident in at_kill.open_incidents:
                            if not await first_update_sent(reminders, incident):
                                return False
                        return True

                    wait = max(30.0, load.killed_at + 60 * UPDATE_EVERY + 30 - time.time())
                    assert await poll(reminded, wait, every=1.0), (
                        f"update reminders of incidents declared before the kill not sent ({why})"
                    )
                    autonomy_api = await read_autonomy(http, port)
                finally:
                    await db.close()
                await asyncio.sleep(1.0)  # nothing more may arrive
            finally:
                second.send_signal(signal.SIGTERM)
                await asyncio.wait_for(second.wait(), 30)
        assert second.returncode == 0, f"{why}\n{log.read_text()[-3000:]}"
        assert ks.violations == [], f"deliveries broke the kill-switch contract ({why})"

    db = await Database.open(db_path)
    try:
        await check_everything(db, load, at_kill, ks, fake_slack, autonomy_api, why)
    finally:
        await db.close()
    text = log.read_text()
    assert "unhandled error" not in text and "Traceback" not in text, f"{why}\n{text[-3000:]}"


async def read_autonomy(http: aiohttp.ClientSession, port: str) -> dict[str, dict[str, Any]]:
    found = {}
    for agent in NORMAL_MODES:
        url = f"http://127.0.0.1:{port}/v1/agents/{agent}/autonomy"
        async with http.get(url, headers={"Authorization": f"Bearer {API_TOKEN}"}) as answer:
            assert answer.status == 200
            found[agent] = await answer.json()
    return found


async def check_everything(
    db: Database,
    load: Load,
    at_kill: AtKill,
    ks: FakeKillSwitch,
    fake: FakeSlack,
    autonomy_api: dict[str, dict[str, Any]],
    why: str,
) -> None:
    incidents_repo, deliveries_repo = IncidentRepo(db), DeliveryRepo(db)
    reminders_repo, agents_repo = ReminderRepo(db), AgentRepo(db)
    requests = load.requests
    assert len(requests) == REQUESTS, why
    phase1 = [r for r in requests if r.phase == 1]
    lost = [r for r in phase1 if r.status is None]
    assert lost, f"the kill found no request in flight ({why})"
    assert at_kill.pending_deliveries, f"the kill found no kill-switch delivery pending ({why})"
    assert all(r.acked for r in requests if r.phase == 2), (
        why,
        [(r.index, r.status, r.error) for r in requests if r.phase == 2 and not r.acked],
    )

    incidents = await incidents_repo.newest(limit=10 * REQUESTS)
    by_title: dict[str, list[Incident]] = {}
    for incident in incidents:
        by_title.setdefault(incident.title, []).append(incident)
    by_number = {i.number: i for i in incidents}
    titles = {r.title for r in requests if r.kind == "declare"}
    assert set(by_title) <= titles, f"incidents nobody declared ({why})"
    assert all(len(found) == 1 for found in by_title.values()), f"a declaration twice ({why})"

    # Every acknowledged declaration is there, with its `declared` entry.
    timelines = {i.number: await incidents_repo.timeline(i.number) for i in incidents}
    for request in requests:
        if request.kind != "declare" or not request.acked:
            continue
        assert request.title in by_title, f"request {request.index} acked, not stored ({why})"
        [incident] = by_title[request.title]
        assert incident.number == request.number, why
        assert (incident.agent_id, incident.declared_by) == (request.agent, request.user), why
        first = timelines[incident.number][0]
        assert first.kind is TimelineKind.DECLARED and request.title in first.text, why

    # Every incident has its room: those the kill cut short were set up after the restart.
    # A channel Slack created just as Rein died, before Rein stored it, is left behind: at
    # most one per room being set up at that moment.
    for incident in incidents:  # (no REIN_ANNOUNCE_CHANNEL here: no digests)
        problems = [
            e.text for e in timelines[incident.number] if e.kind is TimelineKind.SLACK_PROBLEM
        ]
        room = (incident.channel_id, incident.card_ts)
        assert all(room), (incident.ref, room, problems, why)
    assert len({i.channel_id for i in incidents}) == len(incidents), why
    created = [c for c in fake.channels.values() if c.creator == fake.bot_user_id]
    assert len(incidents) <= len(created) <= len(incidents) + ROOMS_AT_ONCE, why

    # Every acknowledged approval: its incident is contained, whoever's request did it.
    for request in requests:
        if request.kind != "approve" or not request.acked:
            continue
        assert request.number is not None
        incident = by_number[request.number]
        assert incident.status is IncidentStatus.CONTAINED, (request, why)
        contained = [e for e in timelines[incident.number] if e.data.get("to") == "contained"]
        assert len(contained) == 1, (incident.ref, why)
        if request.form == "command":  # the answer says whether this request contained it
            mine = request.answer.startswith(f"{incident.ref} is contained")
            assert mine or "already contained" in request.answer, (request, why)
            assert (contained[0].actor == request.user) or not mine, (request, why)

    # No transition half-applied, acknowledged or not.
    stored_deliveries = {}
    for incident in incidents:
        timeline = timelines[incident.number]
        kinds = [e.kind for e in timeline]
        assert kinds[0] is TimelineKind.DECLARED and kinds.count(TimelineKind.DECLARED) == 1
        status = IncidentStatus.DECLARED
        moves = None
        for entry in timeline:
            if entry.kind is TimelineKind.STATUS_CHANGED:
                assert entry.data["from"] == status, (incident.ref, why)
                status = IncidentStatus(entry.data["to"])
                moves = entry.data.get("moves")
        assert incident.status is status, (incident.ref, incident.status, status, why)
        assert status in (IncidentStatus.DECLARED, IncidentStatus.CONTAINED), why
        assert incident.declared_at is not None, why
        delivered = await deliveries_repo.for_incident(incident.number)
        has_switch = incident.agent_id == "crm-writer"
        if status is IncidentStatus.CONTAINED:
            assert incident.containment_plan is not None, why
            assert [m.value for m in incident.containment_plan] == moves, why
            assert len(delivered) == (1 if has_switch else 0), (incident.ref, delivered, why)
        else:
            assert delivered == [], (incident.ref, why)
        for delivery in delivered:
            assert delivery.state is DeliveryState.CONFIRMED, (delivery, why)
            assert [m.value for m in delivery.actions] == moves, why
            tried = [
                e
                for e in timeline
                if e.kind is TimelineKind.DELIVERY and e.data.get("delivery_id") == delivery.id
            ]
            # Each recorded attempt with its entry, committed together.
            assert [e.data["attempt"] for e in tried] == list(range(1, delivery.attempts + 1))
            assert tried[-1].data["state"] == "confirmed", why
            stored_deliveries[delivery.id] = (incident, delivery)
        refusals = [e for e in timeline if e.kind is TimelineKind.REFUSED]
        assert refusals == [], (incident.ref, refusals, why)  # every approver was entitled

    # Each agent is held by its latest containment, in the database and in the API.
    for agent in await agents_repo.all():
        row = await db.fetchone(
            "SELECT t.incident FROM timeline t JOIN incidents i ON i.number = t.incident"
            " WHERE t.kind = ? AND json_extract(t.data, '$.to') = ? AND i.agent_id = ?"
            " ORDER BY t.id DESC LIMIT 1",
            (TimelineKind.STATUS_CHANGED.value, IncidentStatus.CONTAINED.value, agent.agent_id),
        )
        holder = int(row[0]) if row else None
        expected_mode = "paused" if holder else NORMAL_MODES[agent.agent_id]
        assert (agent.mode, agent.incident) == (expected_mode, holder), (agent, why)
        api = autonomy_api[agent.agent_id]
        assert (api["mode"], api["incident"]) == (
            expected_mode,
            f"INC-{holder}" if holder else None,
        ), (api, why)

    # Deliveries resumed: each reached the kill switch, same id and bytes on every attempt.
    received: dict[str, list[Any]] = {}
    for r in ks.deliveries:
        assert r.delivery_id is not None
        received.setdefault(r.delivery_id, []).append(r)
    assert set(received) == set(stored_deliveries), f"sent and stored deliveries differ ({why})"
    for delivery_id, copies in received.items():
        incident, delivery = stored_deliveries[delivery_id]
        assert len({c.raw for c in copies}) == 1, f"{delivery_id}: bodies differ ({why})"
        body = copies[0].body
        assert body is not None
        assert (body["incident"], body["agent"], body["event"], body["mode"]) == (
            incident.ref,
            incident.agent_id,
            "containment",
            "paused",
        ), why
        # At most one more than recorded: the attempt the kill cut short, by the dead process.
        assert len(copies) <= delivery.attempts + 1, (delivery_id, len(copies), why)
        if len(copies) > delivery.attempts:
            assert copies[0].at < load.restarted_at, (delivery_id, why)
    resumed = [d for d in at_kill.pending_deliveries if d in stored_deliveries]
    assert resumed == at_kill.pending_deliveries, why

    # Reminders: every open incident has its next update reminder, none sent twice, and each
    # one sent is on its incident's timeline.
    posts = reminder_posts(fake)
    assert len(posts) == len(set(posts)), f"a reminder was posted twice ({why})"
    for incident in incidents:
        rows = await reminders_repo.for_incident(incident.number)
        live = [r for r in rows if r.state in (ReminderState.PENDING, ReminderState.SENDING)]
        assert [r.kind for r in live] == [ReminderKind.UPDATE], (incident.ref, rows, why)
        sent = {r.id for r in rows if r.state is ReminderState.SENT}
        noted = {
            e.data["reminder"]
            for e in timelines[incident.number]
            if e.kind is TimelineKind.REMINDER
        }
        assert sent == noted, (incident.ref, why)
    for incident in at_kill.open_incidents:
        assert await first_update_sent(reminders_repo, by_number[incident.number]), why
    counts = Counter(r.kind for r in requests if r.acked)
    print(
        f"crash-safety {why}: killed after {load.kill_at} answers; {len(lost)} requests lost "
        f"in flight; acked {dict(counts)}; {len(incidents)} incidents; "
        f"{len(at_kill.pending_deliveries)} deliveries pending at the kill; "
        f"{len(at_kill.unplanned)} incidents unplanned at the kill; "
        f"{sum(len(c) for c in received.values()) - len(received)} deliveries sent again"
    )


# ------------------------------------------------------------------ a graceful stop


@dataclass
class InProcess:
    """Rein in-process with a kill switch for crm-writer; the test stops it itself."""

    runtime: Runtime
    ks: FakeKillSwitch
    stopped: bool = False

    async def stop(self) -> None:
        self.stopped = True
        await self.runtime.stop()


@pytest.fixture
async def in_process(tmp_path: Path, fake_slack: FakeSlack) -> AsyncIterator[InProcess]:
    async with running_kill_switch(SECRET) as ks:
        settings = make_settings(fake_slack, tmp_path, write_policy(tmp_path, ks.url))
        rein = InProcess(await build_runtime(settings, environ={SECRET_ENV: SECRET}), ks)
        await rein.runtime.start()
        try:
            yield rein
        finally:
            if not rein.stopped:
                await rein.stop()
    assert ks.violations == []


async def test_a_graceful_stop_lets_a_kill_switch_attempt_under_way_finish(
    in_process: InProcess, fake_slack: FakeSlack
) -> None:
    """SIGTERM while the kill switch is answering: the attempt ends and its outcome is saved
    (APScheduler's shutdown used to cancel it, leaving the delivery to be sent again)."""
    runtime, ks = in_process.runtime, in_process.ks
    ks.hang(seconds=0.5)
    async with aiohttp.ClientSession() as http:
        slack = SlackSender(f"http://127.0.0.1:{runtime.port}/slack/events", fake_slack, http)
        status, _ = await slack.command("declare sev2 agent:crm-writer Wrong field")
        assert status == 200
        status, answer = await slack.command("contain INC-1", user="U0ALICE")
        assert status == 200 and "INC-1 is contained" in str(answer)
        await eventually(lambda: ks.requests)  # the attempt is in flight
    await in_process.stop()
    [delivery] = await read_deliveries(runtime.settings.REIN_DB_PATH, 1)
    assert (delivery.state, delivery.attempts) == (DeliveryState.CONFIRMED, 1)
    assert len(ks.requests) == 1


async def test_a_graceful_stop_lets_a_reminder_send_under_way_finish(
    in_process: InProcess, fake_slack: FakeSlack
) -> None:
    """SIGTERM while Slack is posting a reminder: it is saved as sent, not left claimed."""
    runtime = in_process.runtime
    async with aiohttp.ClientSession() as http:
        slack = SlackSender(f"http://127.0.0.1:{runtime.port}/slack/events", fake_slack, http)
        status, _ = await slack.command("declare sev2 agent:crm-writer Wrong field")
        assert status == 200
    reminders = runtime.rein.reminders
    assert reminders is not None
    await eventually(lambda: _has_card(runtime))
    fake_slack.fail("chat.postMessage", delay=0.5)  # the reminder's post takes half a second
    posts = len(fake_slack.calls_to("chat.postMessage"))
    reminder = await reminders.schedule(
        1, ReminderKind.GATE_STAGE, "stage:1:shadow", utc_now(), payload={"text": "Due now"}
    )
    assert reminder is not None
    await eventually(lambda: len(fake_slack.calls_to("chat.postMessage")) > posts)
    await in_process.stop()
    db = await Database.open(runtime.settings.REIN_DB_PATH)
    try:
        stored = await ReminderRepo(db).get(reminder.id)
    finally:
        await db.close()
    assert stored is not None and stored.state is ReminderState.SENT


async def _has_card(runtime: Runtime) -> bool:
    incident = await runtime.rein.incidents.get(1)
    return incident is not None and incident.card_ts is not None


async def read_deliveries(db_path: str, number: int) -> list[Delivery]:
    db = await Database.open(db_path)
    try:
        return await DeliveryRepo(db).for_incident(number)
    finally:
        await db.close()


# ------------------------------------------------------------------ rooms cut short


async def test_rooms_cut_short_are_set_up_at_start_without_repeating_done_steps(
    tmp_path: Path, fake_slack: FakeSlack, policy_path: Path
) -> None:
    """Two incidents a stopped Rein had acknowledged: one before any Slack step, one after its
    channel was created and stored. At start-up both get their rooms; the second keeps its
    channel (no second conversations.create) and gets its card, pin and digest."""
    settings = make_settings(fake_slack, tmp_path, policy_path)
    db = await Database.open(settings.REIN_DB_PATH)
    try:
        await db.migrate()
        incidents = IncidentRepo(db)
        now = utc_now()
        for title in ("Nothing set up", "Channel only"):
            await incidents.create(
                NewIncident(
                    title=title,
                    agent_id="crm-writer",
                    severity=Severity.SEV3,
                    declared_by="U0ALICE",
                ),
                status=IncidentStatus.DECLARED,
                commander="U0ALICE",
                entry=TimelineEntry(
                    at=now, actor="U0ALICE", kind=TimelineKind.DECLARED, text=title
                ),
            )
        fake_slack.add_channel("C0HALFWAY", "inc-2-channel-only", members=["U0ALICE"])
        await incidents.set_slack_refs(2, channel_id="C0HALFWAY", channel_name="inc-2-channel-only")
        assert [i.number for i in await incidents.rooms_pending()] == [1, 2]
    finally:
        await db.close()

    runtime = await build_runtime(settings, environ={})
    await runtime.start()
    try:

        async def set_up() -> bool:
            return not await runtime.rein.incidents.rooms_pending()

        await eventually(set_up)
        first, second = [await runtime.rein.incidents.get(n) for n in (1, 2)]
    finally:
        await runtime.stop()
    assert first is not None and second is not None
    assert [c.args["name"] for c in fake_slack.calls_to("conversations.create")] == [
        first.channel_name
    ]
    assert second.channel_id == "C0HALFWAY" and second.card_channel == "C0HALFWAY"
    for incident in (first, second):
        assert incident.card_ts and incident.digest_ts
        assert (incident.channel_id, incident.card_ts) in fake_slack.pins
    told = [
        c.args["text"]
        for c in fake_slack.calls_to("chat.postMessage")
        if c.args["channel"] == "U0ALICE"
    ]
    assert told == [
        f"Rein was restarted while setting up {i.ref}. {i.ref} is declared as SEV-3: "
        f"<#{i.channel_id}>."
        for i in (first, second)
    ]


async def test_a_room_set_up_is_not_resumed_at_the_next_start(
    rein: Runtime, slack: SlackSender
) -> None:
    """Declared, room done: nothing is pending for a later start."""
    status, _ = await slack.command("declare sev3 agent:crm-writer Wrong field")
    assert status == 200
    await eventually(lambda: _has_card(rein))

    async def none_pending() -> bool:
        return not await rein.rein.incidents.rooms_pending()

    await eventually(none_pending)
