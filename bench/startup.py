"""Start-up with a big database: time until Rein answers its health check with every pending
reminder armed, and its memory then.

    python -m bench.startup [--incidents 100000] [--reminders 10000] [--runs 5]
                            [--settle 4] [--no-write] [--output FILE]

1. Build. A database in a temporary directory, its schema made by Rein's own migrations
   (`Database.open` + `Database.migrate()`), then filled in one transaction with
   `--incidents` incidents in a mix of statuses, each with its first timeline entry as Rein
   writes it (`_declaration_entry` of bot/services/declare.py; for an alert in triage, the
   entry bot/services/alerts.py records), the status changes of the open ones that were
   contained or recovered (`transition`) and the channel status line that told of them
   (`posted_entry`), and `--reminders` pending reminders: exactly those Rein's planner
   (`plan` with the policy's `cadence`) wants for those incidents, all due in the future. The
   rows go in with the INSERTs of the repositories (`IncidentRepo.create`, `set_slack_refs`,
   `storage/incidents.py: _append`, `storage/reminders.py: _insert`) run as `executemany`
   on a plain sqlite3 connection: the repositories commit each incident on its own, which
   would take most of the run's time (timed on a sample and reported). Then the database
   is checked with Rein's repositories: `ReminderRepo.live()` finds every reminder and none
   is due before the run ends, `ReminderRepo.reconcile` changes nothing for a sample of
   incidents with reminders and for every open incident that wants none (so the start-up
   sweep plans nothing new), and the channel status catch-up of the newest open incidents
   has no news.
   The same schema with no rows is the baseline. Both are built once and copied for each
   start.
2. Starts. The fake Slack Web API on loopback (bench/servers.py `fake`), then, one start
   after the other, Rein as bench/servers.py starts it (`rein run`'s log set-up,
   `build_runtime`, `Runtime.start`) on a fresh copy of the database. Time runs from just
   before the process is spawned until `/healthz` answers 200. `Runtime.start` arms the
   reminders (`Reminders.start`: every live row gets its APScheduler job, logged as `armed
   N pending reminders`) before it starts the HTTP server, so a health check that answers
   means the jobs are armed; the log line's time and count are checked on every start.
   Memory is the Rein process's VmRSS and VmHWM (/proc/<pid>/status) when `/healthz`
   first answers, and again `--settle` seconds later, after the work start-up leaves to the
   background (planning open incidents that have no reminder, the channel status catch-up
   three seconds after start), which is also counted in CPU.
3. Where it goes. An interpreter that only imports what Rein's does, once a round; then, in
   this process, on a copy of the big database, `ReminderRepo.live()`, arming the jobs
   (`ReminderRunner.start`), and the other start-up queries, timed; their memory with
   tracemalloc.

The figures go into docs/benchmarks.md, between this benchmark's markers.
"""

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from bench import servers
from bench.ack_latency import DOC, ROOT, fake_stats, start_server, stop_server
from bench.report import (
    command_line,
    machine_busy_seconds,
    provenance,
    verdict_lines,
    write_section,
)
from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.domain.lifecycle import transition
from bot.domain.models import Incident, NewIncident, TimelineEntry
from bot.domain.policy import Policy
from bot.domain.reminders import ReminderFacts, ReminderState, Wanted, cadence, plan
from bot.domain.severity import Impact
from bot.domain.updates import NEWS_KINDS, merge_news, posted_entry
from bot.policy import load_policy
from bot.scheduler import ReminderRunner
from bot.services.declare import _declaration_entry
from storage.db import Database, from_db_time, to_db_time
from storage.incidents import IncidentRepo
from storage.reminders import ReminderRepo
from storage.timeline import TimelineRepo

START = "<!-- startup:start -->"
END = "<!-- startup:end -->"

READY_TARGET_S = 3.0
RSS_TARGET_MB = 200.0
HEALTH_TIMEOUT = 30.0
# Every reminder is due at least this long after the database is built: longer than a run.
DUE_MARGIN = timedelta(minutes=15)
CATCH_UP_SAMPLE = 100  # Runtime.start: `incidents.newest("open")`, whose default limit is 100
RECONCILE_SAMPLE = 300  # incidents with reminders that `reconcile` checks after the build
REPO_SAMPLE = 200  # incidents created through `IncidentRepo.create`, to time that route
SAMPLE_EVERY = 0.05  # seconds between CPU samples of Rein after ready
ARMED = re.compile(r"^(\S+ \S+) INFO bot\.scheduler: armed (\d+) pending reminders")
LISTENING = re.compile(r"^(\S+ \S+) INFO bot\.app: Rein listening on")
S, V = IncidentStatus, Severity

# The open incidents that have reminders, as shares of `--reminders` (one reminder each: the
# planner keeps one per series, and these statuses have one series).
WITH_REMINDERS: tuple[tuple[IncidentStatus, Severity, float], ...] = (
    (S.DECLARED, V.SEV1, 0.10),
    (S.DECLARED, V.SEV2, 0.25),
    (S.DECLARED, V.SEV3, 0.15),
    (S.CONTAINED, V.SEV1, 0.05),
    (S.CONTAINED, V.SEV2, 0.12),
    (S.CONTAINED, V.SEV3, 0.08),
    (S.RECOVERED, V.SEV1, 0.08),
    (S.RECOVERED, V.SEV2, 0.17),
)
# The rest, as shares of `--incidents` less those: mostly closed; open ones that want no
# reminder (SEV-4 has no update cadence, a recovered SEV-3/4 no postmortem deadline).
WITHOUT_REMINDERS: tuple[tuple[IncidentStatus, tuple[Severity, ...], float], ...] = (
    (S.TRIAGE, (V.SEV4, V.SEV3), 0.005),
    (S.DECLARED, (V.SEV4,), 0.005),
    (S.CONTAINED, (V.SEV4,), 0.0025),
    (S.RECOVERED, (V.SEV3, V.SEV4), 0.0125),
    (S.POSTMORTEM, (V.SEV1, V.SEV2), 0.03),
    (S.DISMISSED, (V.SEV4, V.SEV3), 0.045),
    (S.CLOSED, (V.SEV1, V.SEV2, V.SEV3, V.SEV3, V.SEV4, V.SEV4), 0.9),  # the remainder
)
TITLES = (
    "Wrong CRM field on 300 records",
    "Billing contact overwritten on enterprise accounts",
    "Duplicate refunds issued to customers",
    "Draft pages published before review",
    "Outbound e-mails sent to the wrong segment",
    "Scheduled job deleted archived tickets",
    "Support replies quoting internal notes",
    "Price list updated with test values",
    "Customer addresses merged across accounts",
    "Cost spike from a retry loop",
)
IMPACTS = (
    Impact(),
    Impact(customer_visible=True, records_touched=300),
    Impact(money=True, irreversible=True, records_touched=42),
    Impact(external_exposure=True, sensitive_data=True, customer_visible=True),
)
ALERT_KINDS = ("cost_spike", "anomaly", "failed_scorecard", "customer_complaint")
PEOPLE = tuple(f"U0RESP{i:03d}" for i in range(40))

INCIDENT_INSERT = (
    # IncidentRepo.create's INSERT, with the number given and set_slack_refs' channel.
    "INSERT INTO incidents (number, title, summary, agent_id, severity, status, commander,"
    " declared_by, impact, idempotency_key, declared_at, created_at, updated_at, alert_kind,"
    " fingerprint, alert_count, channel_id, channel_name)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
TIMELINE_INSERT = (
    # storage/incidents.py: _append, with the id given (a status line names the id it covers).
    "INSERT INTO timeline (id, incident, at, actor, kind, text, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
REMINDER_INSERT = (
    # storage/reminders.py: _insert.
    "INSERT INTO reminders (incident, kind, key, due_at, state, payload,"
    " repeat_seconds, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


# ---------------------------------------------------------------------------------- build


@dataclass
class Planned:
    """One incident as it goes into the database."""

    status: IncidentStatus
    severity: Severity
    at: datetime  # created (declared, or the alert's arrival)
    declared_at: datetime | None = None
    contained_at: datetime | None = None
    recovered_at: datetime | None = None
    updated_at: datetime | None = None
    alert: bool = False


@dataclass
class Built:
    path: Path
    incidents: int
    by_status: Counter[str]
    reminders: int
    by_kind: Counter[str]
    timeline: int
    due_first: datetime | None
    due_last: datetime | None
    swept: int  # open incidents that want no reminder: planned again at every start
    size_bytes: int
    build_s: float
    check_s: float
    repo_create_ms: float  # one incident through IncidentRepo.create (sample), for context
    problems: list[str] = field(default_factory=list)


def counts(incidents: int, reminders: int) -> list[tuple[IncidentStatus, Severity | None, int]]:
    """(status, severity or None for a mix, count) of every slice; sums to `incidents`."""
    out: list[tuple[IncidentStatus, Severity | None, int]] = []
    given = 0
    for status, severity, share in WITH_REMINDERS:
        n = round(reminders * share)
        out.append((status, severity, n))
        given += n
    if given != reminders:  # rounding: the largest slice takes the difference
        status, severity, n = out[1]
        out[1] = (status, severity, n + reminders - given)
    rest = incidents - reminders
    if rest < 0:
        raise ValueError("more reminders than incidents: one reminder per incident here")
    taken = 0
    for status, _, share in WITHOUT_REMINDERS[:-1]:
        n = round(rest * share)
        out.append((status, None, n))
        taken += n
    out.append((S.CLOSED, None, rest - taken))
    return out


def plan_incidents(policy: Policy, incidents: int, reminders: int, now: datetime) -> list[Planned]:
    """Times such that every reminder the planner wants is due after `now + DUE_MARGIN`: an
    update reminder is due one cadence (the policy's) after the declaration, there being no
    status update since; a postmortem one at half the 48-hour window after recovery."""
    rng = random.Random(5)
    mixes = {status: sevs for status, sevs, _ in WITHOUT_REMINDERS}
    out: list[Planned] = []
    for status, severity, n in counts(incidents, reminders):
        for _ in range(n):
            sev = severity or rng.choice(mixes[status])
            if status in (S.DECLARED, S.CONTAINED):
                every = cadence(policy, sev).update_every or timedelta(hours=4)  # SEV-4: none
                ago = (
                    timedelta(minutes=1)
                    + (every - DUE_MARGIN - timedelta(minutes=2)) * rng.random()
                )
                p = Planned(status, sev, now - ago, declared_at=now - ago)
                if status is S.CONTAINED:
                    p.contained_at = p.at + (now - p.at) * rng.uniform(0.2, 0.8)
            elif status is S.RECOVERED:
                recovered = now - timedelta(hours=rng.uniform(0.5, 20))
                declared = recovered - timedelta(hours=rng.uniform(1, 8))
                p = Planned(status, sev, declared, declared_at=declared, recovered_at=recovered)
                p.contained_at = declared + (recovered - declared) * rng.uniform(0.1, 0.5)
            elif status is S.TRIAGE:
                p = Planned(status, sev, now - timedelta(hours=rng.uniform(0.1, 48)), alert=True)
            elif status is S.DISMISSED:
                p = Planned(status, sev, now - timedelta(days=rng.uniform(1, 730)), alert=True)
            else:  # closed, postmortem: declared some time in the last two years
                days = rng.uniform(2, 730) if status is S.CLOSED else rng.uniform(2, 30)
                at = now - timedelta(days=days)
                p = Planned(status, sev, at, declared_at=at)
            p.updated_at = max(t for t in (p.at, p.contained_at, p.recovered_at) if t is not None)
            out.append(p)
    out.sort(key=lambda p: p.at)  # numbers follow time, as AUTOINCREMENT gives them
    return out


class Rows:
    """Incident, timeline and reminder rows, as Rein's repositories would write them."""

    def __init__(self, policy: Policy, now: datetime) -> None:
        self.policy = policy
        self.now = now
        self.agents = [a.id for a in policy.agents]
        self.owners = {a.id: a.owner for a in policy.agents}
        self.incidents: list[tuple[object, ...]] = []
        self.timeline: list[tuple[object, ...]] = []
        self.reminders: list[tuple[object, ...]] = []
        self.wanted: dict[int, list[Wanted]] = {}
        self._declared: dict[tuple[int, str, Severity, int], tuple[str, str]] = {}
        self._rng = random.Random(6)

    def _entry(self, number: int, entry: TimelineEntry) -> int:
        entry_id = len(self.timeline) + 1
        self.timeline.append(
            (
                entry_id,
                number,
                to_db_time(entry.at),
                entry.actor,
                entry.kind.value,
                entry.text,
                json.dumps(entry.data),
            )
        )
        return entry_id

    def _declaration(self, number: int, new: NewIncident, key: tuple, at: datetime) -> None:
        """`_declaration_entry`'s text and data depend on the declaration, not its number or
        time: built once per kind of declaration."""
        if key not in self._declared:
            entry = _declaration_entry(new, at)
            self._declared[key] = (entry.text, json.dumps(entry.data))
        text, data = self._declared[key]
        self.timeline.append(
            (
                len(self.timeline) + 1,
                number,
                to_db_time(at),
                new.declared_by,
                TimelineKind.DECLARED.value,
                text,
                data,
            )
        )

    def add(self, number: int, p: Planned) -> None:
        rng = self._rng
        t = rng.randrange(len(TITLES))
        agent = rng.choice(self.agents)
        who = rng.choice(PEOPLE)
        i = rng.randrange(len(IMPACTS))
        impact = IMPACTS[i]
        title = TITLES[t]
        if p.alert:
            kind = rng.choice(ALERT_KINDS)
            summary = f"{title} (seen by the {kind.replace('_', ' ')} check)"
            fingerprint = f"{agent}:{kind}:{number}"
            self.incidents.append(
                (
                    number,
                    f"{kind.replace('_', ' ').capitalize()}: {summary}",
                    summary,
                    agent,
                    p.severity.value,
                    p.status.value,
                    self.owners[agent],
                    "monitoring",
                    Impact().model_dump_json(),
                    None,
                    None,
                    to_db_time(p.at),
                    to_db_time(p.updated_at or p.at),
                    kind,
                    fingerprint,
                    1,
                    None,
                    None,
                )
            )
            # bot/services/alerts.py: _record's entry for an alert with no rule matching.
            self._entry(
                number,
                TimelineEntry(
                    at=p.at,
                    actor="monitoring",
                    kind=TimelineKind.ALERT,
                    text=f"{kind} alert from {agent}: {summary}",
                    data={
                        "agent": agent,
                        "kind": kind,
                        "summary": summary,
                        "details": None,
                        "fingerprint": fingerprint,
                        "severity": p.severity.value,
                        "count": 1,
                        "suggested": p.severity.value,
                        "suggested_reason": "the severity the alert was sent with",
                        "rule": None,
                    },
                ),
            )
            return
        new = NewIncident(
            title=title,
            summary=f"{agent} changed what it should not have; see the timeline.",
            agent_id=agent,
            severity=p.severity,
            declared_by=who,
            impact=impact,
        )
        channel = f"C0INC{number:06d}"
        self.incidents.append(
            (
                number,
                new.title,
                new.summary,
                agent,
                p.severity.value,
                p.status.value,
                who,
                who,
                impact.model_dump_json(),
                None,
                to_db_time(p.declared_at or p.at),
                to_db_time(p.at),
                to_db_time(p.updated_at or p.at),
                None,
                None,
                0,
                channel,
                f"inc-{number}-{agent}",
            )
        )
        self._declaration(number, new, (t, agent, p.severity, i), p.at)
        if p.contained_at is not None:
            self._moves(number, p, new, channel)
        self._plan(number, p)

    def _moves(self, number: int, p: Planned, new: NewIncident, channel: str) -> None:
        """An open incident that moved on: its transitions, and the channel status line Rein
        posted about them (so the start-up catch-up finds no news)."""
        incident = Incident(
            number=number,
            title=new.title,
            agent_id=new.agent_id,
            severity=p.severity,
            status=S.DECLARED,
            commander=new.declared_by,
            declared_by=new.declared_by,
            channel_id=channel,
            declared_at=p.declared_at,
            created_at=p.at,
            updated_at=p.at,
        )
        entries: list[TimelineEntry] = []
        through = 0
        for to, at in ((S.CONTAINED, p.contained_at), (S.RECOVERED, p.recovered_at)):
            if at is None:
                continue
            moved = transition(incident, to, actor=new.declared_by, at=at)
            incident = moved.incident
            entries.append(moved.entry)
            through = self._entry(number, moved.entry)
        last = entries[-1].at
        posted = posted_entry(
            merge_news(entries), through=through, ts=f"{last.timestamp():.6f}", at=last
        )
        self._entry(number, posted)

    def _plan(self, number: int, p: Planned) -> None:
        """Rein's planner on the facts `ReminderRepo` would read back for the incident."""
        if p.status not in (S.DECLARED, S.CONTAINED, S.RECOVERED):
            return
        facts = ReminderFacts(
            status=p.status,
            severity=p.severity,
            declared_at=(p.declared_at or p.at).replace(microsecond=0),
            recovered_at=p.recovered_at.replace(microsecond=0) if p.recovered_at else None,
        )
        wanted = plan(facts, cadence(self.policy, p.severity), self.now)
        self.wanted[number] = wanted
        planned_at = to_db_time(p.updated_at or p.at)
        for want in wanted:
            self.reminders.append(
                (
                    number,
                    want.kind.value,
                    want.key,
                    to_db_time(want.due_at),
                    ReminderState.PENDING.value,
                    json.dumps({}),
                    None,
                    planned_at,
                    planned_at,
                )
            )


async def repo_create_ms(path: Path, policy: Policy, count: int) -> float:
    """Milliseconds per incident through `IncidentRepo.create` (one commit each, as Rein
    declares), on a scratch database: why the build does not go that way."""
    db = await Database.open(str(path))
    try:
        await db.migrate()
        repo = IncidentRepo(db)
        agent = policy.agents[0].id
        started = time.perf_counter()
        for i in range(count):
            new = NewIncident(
                title=TITLES[i % len(TITLES)], agent_id=agent, severity=V.SEV3, declared_by="U0A"
            )
            now = datetime.now(UTC)
            await repo.create(
                new,
                status=S.DECLARED,
                commander=new.declared_by,
                entry=_declaration_entry(new, now),
            )
        return (time.perf_counter() - started) / count * 1000
    finally:
        await db.close()


async def migrated(path: Path) -> None:
    """An empty database with Rein's schema, made by Rein's migrations."""
    db = await Database.open(str(path))
    try:
        await db.migrate()
    finally:
        await db.close()


def _checkpoint(path: Path) -> int:
    """Everything in the main file, so that copying it copies the database; its size."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path.stat().st_size


async def build(path: Path, policy: Policy, incidents: int, reminders: int) -> Built:
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    await migrated(path)
    planned = plan_incidents(policy, incidents, reminders, now)
    rows = Rows(policy, now)
    for number, p in enumerate(planned, start=1):
        rows.add(number, p)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INCIDENT_INSERT, rows.incidents)
        conn.executemany(TIMELINE_INSERT, rows.timeline)
        conn.executemany(REMINDER_INSERT, rows.reminders)
        conn.execute("COMMIT")
    finally:
        conn.close()
    build_s = time.perf_counter() - started

    checked = time.perf_counter()
    problems = await check(path, policy, now, rows, planned, reminders)
    size = _checkpoint(path)
    check_s = time.perf_counter() - checked
    repo_ms = await repo_create_ms(path.with_name("repo-sample.db"), policy, REPO_SAMPLE)
    dues = sorted(r[3] for r in rows.reminders)
    swept = sum(1 for wanted in rows.wanted.values() if not wanted)
    return Built(
        path=path,
        incidents=len(rows.incidents),
        by_status=Counter(p.status.value for p in planned),
        reminders=len(rows.reminders),
        by_kind=Counter(str(r[1]) for r in rows.reminders),
        timeline=len(rows.timeline),
        due_first=datetime.strptime(dues[0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if dues
        else None,
        due_last=datetime.strptime(dues[-1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if dues
        else None,
        swept=swept,
        size_bytes=size,
        build_s=build_s,
        check_s=check_s,
        repo_create_ms=repo_ms,
        problems=problems,
    )


async def check(
    path: Path,
    policy: Policy,
    now: datetime,
    rows: Rows,
    planned: Sequence[Planned],
    reminders: int,
) -> list[str]:
    """The built database read back through Rein's repositories."""
    problems = []
    db = await Database.open(str(path))
    try:
        if await db.pending_migrations():
            problems.append("migrations pending after the build")
        repo = ReminderRepo(db)
        live = await repo.live()
        if len(live) != reminders:
            problems.append(f"ReminderRepo.live() found {len(live)} of {reminders} reminders")
        if live and min(r.fires_at for r in live) < now + DUE_MARGIN:
            problems.append("a reminder falls due within the run")

        def planner(facts: ReminderFacts) -> list[Wanted]:
            return plan(facts, cadence(policy, facts.severity), now)

        unplanned = await repo.unplanned_incidents()
        expected = sorted(n for n, wanted in rows.wanted.items() if not wanted)
        if unplanned != expected:
            problems.append(
                f"{len(unplanned)} open incidents without reminders, {len(expected)} expected"
            )
        with_reminders = [n for n, wanted in rows.wanted.items() if wanted]
        sample = random.Random(7).sample(with_reminders, min(RECONCILE_SAMPLE, len(with_reminders)))
        for number in [*unplanned, *sample]:
            changes = await repo.reconcile(number, planner, now)
            if changes.added or changes.cancelled:
                problems.append(f"INC-{number}: reconcile changed its reminders: {changes}")
                break
        incidents = IncidentRepo(db)
        timeline = TimelineRepo(db)
        newest = await incidents.newest("open", limit=CATCH_UP_SAMPLE)
        for incident in newest:
            found = await timeline.after(
                incident.number, await timeline.status_cursor(incident.number), NEWS_KINDS
            )
            if merge_news([entry for _, entry in found]):
                problems.append(f"{incident.ref}: the status catch-up would post a line")
                break
        await incidents.newest(None, limit=1000)  # rows parse as Rein's models
        total = await db.fetchone("SELECT count(*) FROM incidents")
        if total is None or total[0] != len(planned):
            problems.append(f"{total[0] if total else 0} incidents stored of {len(planned)}")
    finally:
        await db.close()
    return problems


# --------------------------------------------------------------------------------- starts


@dataclass
class Start:
    database: str  # "big" or "empty"
    ready_s: float  # spawn → READY line (Runtime.start returned: listening, jobs armed)
    health_s: float  # spawn → first /healthz 200
    armed_s: float | None  # spawn → the "armed N pending reminders" log line (ms resolution)
    listening_s: float | None  # spawn → the "Rein listening" log line
    armed: int
    rss_kb: int  # VmRSS when /healthz first answered
    hwm_kb: int  # VmHWM then
    cpu_ready_s: float  # Rein's CPU until then
    settle_rss_kb: int
    settle_hwm_kb: int
    settle_cpu_s: float  # Rein's CPU in the settle window after ready
    busy_until_s: float  # the last CPU tick in the settle window, after ready
    others_cores: float  # the rest of the machine's busy time during the start, in cores
    problems: list[str] = field(default_factory=list)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM, kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def _log_time(stamp: str) -> float:
    """The logging module's asctime (local time, milliseconds) as a Unix time."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


async def one_start(
    database: str, source: Path, workdir: Path, api_url: str, settle: float
) -> Start:
    (workdir / "data").mkdir(parents=True)
    target = workdir / "data" / "rein.db"
    shutil.copyfile(source, target)
    target.chmod(0o600)
    os.sync()  # the copy's writeback is not part of the start
    busy0, own0 = machine_busy_seconds(), time.process_time()
    wall0 = time.time()
    t0 = time.perf_counter()
    server = await start_server("rein", workdir, "--api-url", api_url, "--workdir", str(workdir))
    try:
        ready = time.perf_counter() - t0
        url = f"http://{servers.HOST}:{server.info['port']}/healthz"
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                if time.perf_counter() - t0 > HEALTH_TIMEOUT:
                    raise RuntimeError(f"/healthz did not answer 200 in {HEALTH_TIMEOUT} s")
                await asyncio.sleep(0.005)
        health = time.perf_counter() - t0
        mem = proc_status(server.process.pid)
        cpu_ready = server.cpu_seconds()
        busy_ready, own = machine_busy_seconds(), time.process_time() - own0
        last_cpu, busy_until = cpu_ready, 0.0
        settled_at = time.perf_counter() + settle
        while time.perf_counter() < settled_at:
            await asyncio.sleep(SAMPLE_EVERY)
            cpu = server.cpu_seconds()
            if cpu > last_cpu:
                last_cpu, busy_until = cpu, time.perf_counter() - t0 - health
        after = proc_status(server.process.pid)
        cpu_settled = server.cpu_seconds()
    finally:
        await stop_server(server)
    others = max(0.0, busy_ready - busy0 - cpu_ready - own) / max(health, 1e-9)
    start = Start(
        database=database,
        ready_s=ready,
        health_s=health,
        armed_s=None,
        listening_s=None,
        armed=0,
        rss_kb=mem["VmRSS"],
        hwm_kb=mem["VmHWM"],
        cpu_ready_s=cpu_ready,
        settle_rss_kb=after["VmRSS"],
        settle_hwm_kb=after["VmHWM"],
        settle_cpu_s=cpu_settled - cpu_ready,
        busy_until_s=busy_until,
        others_cores=others,
    )
    for line in server.log.read_text(errors="replace").splitlines():
        if m := ARMED.match(line):
            start.armed_s, start.armed = _log_time(m.group(1)) - wall0, int(m.group(2))
        elif m := LISTENING.match(line):
            start.listening_s = _log_time(m.group(1)) - wall0
        if any(f" {level} " in line for level in ("WARNING", "ERROR", "CRITICAL")) or (
            line.startswith("Traceback")
        ):
            start.problems.append(line)
    return start


# ----------------------------------------------------------------------- where it goes


@dataclass
class Phase:
    key: str
    label: str
    seconds: float
    mb: float | None = None  # tracemalloc: allocated by the step and still held after it


@dataclass
class Phases:
    imports_s: float
    imports_rss_mb: float
    steps: list[Phase]


IMPORTS = (
    "import time, pathlib; import bench.servers, bot.app, bot.config, bot.logs;"
    " done = time.perf_counter(); rss = [l for l in"
    " pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS')]"
    "; print(done, rss[0].split()[1])"
)


def imports() -> tuple[float, float]:
    """From spawning an interpreter that imports what bench/servers.py's Rein imports until
    its imports are done (its `time.perf_counter()`: the same monotonic clock as ours); and
    its RSS then (MB)."""
    t0 = time.perf_counter()
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", IMPORTS], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]) - t0, int(out[1]) * 1024 / 1e6


async def _fire(_: int) -> None:
    raise AssertionError("nothing is due")


async def steps(path: Path, traced: bool) -> list[Phase]:
    """`Runtime.start`'s reads and the reminders' work, then the start-up sweep's (in the
    background, after ready), one at a time, each timed; with `traced`, the Python memory
    each step allocated and still held after it."""
    out: list[Phase] = []
    if traced:
        tracemalloc.start()
    clock = {"t0": 0.0, "held": 0}

    def begin() -> None:
        clock["held"] = tracemalloc.get_traced_memory()[0] if traced else 0
        clock["t0"] = time.perf_counter()

    def mark(key: str, label: str) -> None:
        seconds = time.perf_counter() - clock["t0"]
        held = tracemalloc.get_traced_memory()[0] - clock["held"] if traced else 0
        out.append(Phase(key, label, seconds, held / 1e6 if traced else None))

    begin()
    db = await Database.open(str(path))
    await db.migrate()
    mark("open", "`Database.open` + `migrate()` (nothing to apply)")
    runner = None
    try:
        repo = ReminderRepo(db)
        begin()
        await repo.release_stale_claims(datetime.now(UTC))
        mark("release", "`ReminderRepo.release_stale_claims`")
        begin()
        live = await repo.live()
        mark("live", f"`ReminderRepo.live()`: {len(live):,} rows → `Reminder` models")
        stamps = [to_db_time(t) for r in live for t in (r.due_at, r.created_at, r.updated_at)]
        begin()
        parsed = [from_db_time(stamp) for stamp in stamps]
        mark("parse", f"… of which `from_db_time` of the rows' {len(parsed):,} times (`strptime`)")
        del stamps, parsed
        runner = ReminderRunner(_fire)
        begin()
        runner.start(live)
        mark("arm", f"`ReminderRunner.start`: {len(runner.armed):,} APScheduler jobs")
        begin()
        await IncidentRepo(db).newest("open")
        mark("newest", "`IncidentRepo.newest('open')` (status catch-up)")
        begin()
        numbers = await repo.unplanned_incidents()
        mark(
            "unplanned",
            f"After ready, `ReminderRepo.unplanned_incidents()`: {len(numbers):,} incidents",
        )
        policy = load_policy(str(servers.POLICY))
        now = datetime.now(UTC)

        def planner(facts: ReminderFacts) -> list[Wanted]:
            return plan(facts, cadence(policy, facts.severity), now)

        if traced:  # its memory is not kept; under tracemalloc it would take many seconds
            return out
        begin()
        for number in numbers:  # Reminders.sync, less `_apply` (nothing changes)
            await repo.reconcile(number, planner, now)
        mark("sweep", f"After ready, `ReminderRepo.reconcile` of each of those {len(numbers):,}")
    finally:
        if runner is not None:
            await runner.stop(1)
        await db.close()
        if traced:
            tracemalloc.stop()
    return out


async def phases(source: Path, workdir: Path, imported: list[tuple[float, float]]) -> Phases:
    imports_s = statistics.median(seconds for seconds, _ in imported)
    imports_rss = statistics.median(rss for _, rss in imported)
    path = workdir / "phases.db"
    shutil.copyfile(source, path)
    timed = await steps(path, traced=False)
    shutil.copyfile(source, path)
    traced = await steps(path, traced=True)
    held = {step.key: step.mb for step in traced}
    for step in timed:
        step.mb = held.get(step.key)
    return Phases(imports_s, imports_rss, timed)


# ---------------------------------------------------------------------------------- run


@dataclass
class Result:
    built: Built
    starts: list[Start]
    warmup: Start
    phases: Phases
    fake: dict
    settle: float
    run_s: float

    def of(self, database: str) -> list[Start]:
        return [s for s in self.starts if s.database == database]

    @property
    def problems(self) -> list[str]:
        out = list(self.built.problems)
        for s in self.starts:
            out += [f"{s.database} start: {p}" for p in s.problems]
            if s.database == "big" and s.armed != self.built.reminders:
                out.append(f"big start: armed {s.armed} of {self.built.reminders} reminders")
            if s.armed_s is not None and s.listening_s is not None and s.armed_s > s.listening_s:
                out.append(f"{s.database} start: listening before the reminders were armed")
        sent = {m: n for m, n in self.fake.get("calls", {}).items() if m != "auth.test"}
        if sent:
            out.append(f"Rein called Slack during the starts: {sent}")
        return out


async def bench(incidents: int, reminders: int, runs: int, settle: float) -> Result:
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="rein-bench-startup-"))
    keep = False
    try:
        policy = load_policy(str(servers.POLICY))
        big = workdir / "big.db"
        built = await build(big, policy, incidents, reminders)
        print(
            f"built {built.incidents:,} incidents, {built.reminders:,} reminders,"
            f" {built.timeline:,} timeline entries, {built.size_bytes / 1e6:.0f} MB"
            f" in {built.build_s:.1f} s (checked in {built.check_s:.1f} s)",
            flush=True,
        )
        for problem in built.problems:
            print(f"build: {problem}", file=sys.stderr)
        empty = workdir / "empty.db"
        await migrated(empty)
        _checkpoint(empty)
        sources = {"big": big, "empty": empty}
        fake = await start_server("fake", workdir)
        try:
            api_url = fake.info["api_url"]
            # Not counted: the interpreter's and libraries' files into the page cache.
            warmup = await one_start("empty", empty, workdir / "warmup", api_url, 0.0)
            starts: list[Start] = []
            imported: list[tuple[float, float]] = []
            for i in range(runs):
                for name in ("empty", "big") if i % 2 == 0 else ("big", "empty"):
                    s = await one_start(
                        name, sources[name], workdir / f"{name}-{i}", api_url, settle
                    )
                    starts.append(s)
                    _print_start(s)
                imported.append(imports())  # in the same rounds, under the same conditions
            async with aiohttp.ClientSession() as session:
                stats = await fake_stats(session, fake)
        finally:
            await stop_server(fake)
        where = await phases(big, workdir, imported)
        return Result(built, starts, warmup, where, stats, settle, time.perf_counter() - started)
    except BaseException:
        keep = True
        print(f"files kept in {workdir}", file=sys.stderr)
        raise
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _print_start(s: Start) -> None:
    armed = f"armed {s.armed} at {s.armed_s:.2f} s" if s.armed_s is not None else "no reminders"
    print(
        f"{s.database:>5}: READY {s.ready_s:.2f} s  healthz {s.health_s:.2f} s  {armed}"
        f"  RSS {_mb(s.rss_kb):.0f} MB (peak {_mb(s.hwm_kb):.0f})"
        f"  +{s.busy_until_s:.1f} s busy, RSS then {_mb(s.settle_rss_kb):.0f} MB"
        f"  others {s.others_cores:.2f} cores",
        flush=True,
    )


# ---------------------------------------------------------------------------------- report


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _mb(kb: float) -> float:
    """/proc's kB (KiB) in MB (10^6 bytes), the unit of the target."""
    return kb * 1024 / 1e6


def verdicts(result: Result) -> list[tuple[str, bool]]:
    big = result.of("big")
    ready = [s.health_s for s in big]
    rss = [_mb(s.rss_kb) for s in big]
    peak = [_mb(max(s.settle_hwm_kb, s.settle_rss_kb)) for s in big]
    b = result.built
    size = f"{b.incidents:,} incidents, {b.reminders:,} pending reminders"
    return [
        (
            f"time to ready with {size}: median {_median(ready):.2f} s, max {max(ready):.2f} s"
            f" (target < {READY_TARGET_S:.0f} s)",
            max(ready) < READY_TARGET_S,
        ),
        (
            f"RSS at that size when ready: median {_median(rss):.0f} MB, max {max(rss):.0f} MB;"
            f" peak (VmHWM, up to {result.settle:.0f} s after ready) at most {max(peak):.0f} MB"
            f" (target < {RSS_TARGET_MB:.0f} MB)",
            max(peak) < RSS_TARGET_MB,
        ),
    ]


def _time_table(result: Result) -> str:
    rows = [
        "| Database | Starts | To READY, median / max | To `/healthz` 200, median / max "
        "| Jobs armed (log), median | Rein CPU to ready, median | Others' CPU, worst |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("empty", "empty (schema only)"), ("big", _big_label(result))):
        runs = result.of(name)
        armed = [s.armed_s for s in runs if s.armed_s is not None]
        armed_text = f"{_median(armed):.2f} s ({runs[0].armed:,} jobs)" if armed else "none to arm"
        rows.append(
            f"| {label} | {len(runs)}"
            f" | {_median([s.ready_s for s in runs]):.2f} s / {max(s.ready_s for s in runs):.2f} s"
            f" | **{_median([s.health_s for s in runs]):.2f} s**"
            f" / {max(s.health_s for s in runs):.2f} s"
            f" | {armed_text}"
            f" | {_median([s.cpu_ready_s for s in runs]):.2f} s"
            f" | {max(s.others_cores for s in runs):.2f} cores |"
        )
    return "\n".join(rows)


def _memory_table(result: Result) -> str:
    rows = [
        "| Database | RSS at ready, median / max | Peak (VmHWM) at ready, median / max "
        f"| {result.settle:.0f} s later: RSS, median / max | VmHWM then, max "
        "| Rein CPU in those seconds, median | Busy until, median |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("empty", "empty (schema only)"), ("big", _big_label(result))):
        runs = result.of(name)

        def mm(values: list[float]) -> str:
            return f"{_median(values):.0f} / {max(values):.0f} MB"

        rows.append(
            f"| {label}"
            f" | **{mm([_mb(s.rss_kb) for s in runs])}**"
            f" | {mm([_mb(s.hwm_kb) for s in runs])}"
            f" | {mm([_mb(s.settle_rss_kb) for s in runs])}"
            f" | {max(_mb(s.settle_hwm_kb) for s in runs):.0f} MB"
            f" | {_median([s.settle_cpu_s for s in runs]):.2f} s"
            f" | {_median([s.busy_until_s for s in runs]):.1f} s after ready |"
        )
    still = [s for s in result.starts if s.busy_until_s > result.settle - 2 * SAMPLE_EVERY]
    if still:
        rows.append(
            f"\n{len(still)} starts were still busy at the end of the window: their background"
            " work is counted only in part."
        )
    return "\n".join(rows)


def _big_label(result: Result) -> str:
    b = result.built
    return f"{b.incidents:,} incidents, {b.reminders:,} reminders"


def _phase_table(p: Phases) -> str:
    rows = [
        "| Step | Time | Memory held after it (tracemalloc) |",
        "|---|---:|---:|",
        f"| Interpreter + imports (`bench.servers`, `bot.app`): spawn → imports done, in a"
        " process of its own, median of the rounds"
        f" | {p.imports_s:.2f} s | RSS {p.imports_rss_mb:.0f} MB |",
    ]
    for step in p.steps:
        mem = f"{step.mb:.1f} MB" if step.mb is not None else "–"
        rows.append(f"| {step.label} | {step.seconds * 1000:.0f} ms | {mem} |")
    return "\n".join(rows)


def render(result: Result, command: str) -> str:
    b = result.built
    big, empty = result.of("big"), result.of("empty")
    statuses = ", ".join(f"{status} {n:,}" for status, n in b.by_status.most_common())
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(b.by_kind.items()))
    d_ready = _median([s.health_s for s in big]) - _median([s.health_s for s in empty])
    d_rss = _median([_mb(s.rss_kb) for s in big]) - _median([_mb(s.rss_kb) for s in empty])
    calls = ", ".join(f"{m} {n}" for m, n in sorted(result.fake.get("calls", {}).items()))
    due = (
        f"from {b.due_first:%H:%M} to {b.due_last:%Y-%m-%d %H:%M} UTC, at least"
        f" {DUE_MARGIN.seconds // 60} minutes after the build"
        if b.due_first and b.due_last
        else "none"
    )
    return f"""{START}
## Start-up with {b.incidents:,} incidents and {b.reminders:,} pending reminders

How long a restart takes to be ready when the database is big, and how much memory Rein then
holds. Ready means `/healthz` answers 200 with every pending reminder armed as an
APScheduler job: `Runtime.start` (bot/app.py) arms the reminders (`Reminders.start`:
`ReminderRepo.live()` then `ReminderRunner.start`, which logs `armed N pending reminders`)
before it starts the HTTP server, so the first 200 comes after the jobs are armed; every
start's log was checked for that line, its count, and its place before `Rein listening`.

{provenance(command, "bench/startup.py")}
- Whole run: {result.run_s:.0f} s, {b.build_s:.0f} s of it building the database and
  {b.check_s:.0f} s checking it; {len(result.problems)} problems

How it was measured:

- Database: {b.incidents:,} incidents ({statuses}), {b.timeline:,} timeline entries,
  {b.reminders:,} pending reminders ({kinds}); {b.size_bytes / 1e6:.0f} MB, built once
  in a temporary directory and copied for each start. The schema is Rein's migrations'
  (`Database.migrate()`). Rows: each incident with its first timeline entry as Rein writes it
  (the declaration's, `_declaration_entry`; an alert's for those in triage or dismissed); the
  open ones that were contained or recovered also with their status changes (`transition`)
  and the channel status line that told of them (`posted_entry`); closed and postmortem
  incidents with their first entry only. Inserted in one transaction with the repositories'
  INSERTs as `executemany`. Through `IncidentRepo.create` itself, one commit an incident
  (`synchronous = FULL`), a sample of {REPO_SAMPLE} took {b.repo_create_ms:.1f} ms each:
  {b.repo_create_ms * b.incidents / 1000:.0f} s for the incidents alone.
- Reminders: exactly what Rein's planner (`plan`, the policy's `cadence`) wants for those
  incidents: the next update reminder of each declared or contained SEV-1 to SEV-3
  (declared less than one cadence ago, no status update since) and the half-window
  postmortem reminder of each recovered SEV-1/2 (recovered in the last 20 hours). All are
  due in the future ({due}), so nothing is sent during the measurement: the fake Slack saw
  {calls or "no call"} in all the starts. Checked through Rein's repositories before the
  starts: `ReminderRepo.live()` returns all of them; `ReminderRepo.reconcile` changes
  nothing for {RECONCILE_SAMPLE} incidents with reminders nor for the {b.swept:,} open
  incidents that want none (SEV-4, recovered SEV-3/4), which the start-up sweep
  (`_plan_unplanned`, in the background) plans again at every start; the channel status
  catch-up of the {CATCH_UP_SAMPLE} newest open incidents finds no news to post.
- Baseline: the same start with an empty database (Rein's schema, no rows), in the same run.
- A start: Rein in a process of its own as bench/servers.py starts it (`rein run`'s log
  set-up, `build_runtime`, `Runtime.start`; HTTP mode; the test policy), the fake Slack Web
  API in another, on loopback, the database file in the OS's page cache (just copied).
  Timed from just before the process is spawned to its `READY` line (`Runtime.start` has
  returned) and to the first `/healthz` 200 (polled from `READY`; the port is chosen by
  the OS). Jobs armed: the time of the log line (millisecond resolution).
- Memory: VmRSS and VmHWM of Rein's process from /proc/<pid>/status when `/healthz` first
  answered, and again {result.settle:.0f} s later, after the background work of start-up
  (the sweep; the channel status catch-up three seconds after start).
- Starts: {len(empty)} with each database, alternating, after one start with the empty
  database that is not counted (the interpreter's and libraries' files into the page cache).
  Others' CPU: the rest of the machine's busy time during a start, in cores.

{_time_table(result)}

{_memory_table(result)}

{verdict_lines(verdicts(result))}

### Where the time and memory go

The big database costs {d_ready:.2f} s and {d_rss:.0f} MB more than the empty one
(medians). Rein's start-up reads, one at a time in this process on a copy of the big
database (the same code as `Runtime.start` calls; memory in a second pass under
tracemalloc, Python allocations only):

{_phase_table(result.phases)}

{_findings(result)}
{END}
"""


def _findings(result: Result) -> str:
    b, p = result.built, result.phases
    big, empty = result.of("big"), result.of("empty")
    step = {s.key: s for s in p.steps}
    live, parse, arm = step.get("live"), step.get("parse"), step.get("arm")
    newest, unplanned, sweep = step.get("newest"), step.get("unplanned"), step.get("sweep")
    if not (live and parse and arm and newest and unplanned and sweep):
        return ""
    n = max(b.reminders, 1)
    e_ready = _median([s.health_s for s in empty])
    d_ready = _median([s.health_s for s in big]) - e_ready
    e_rss = _median([_mb(s.rss_kb) for s in empty])
    rss = _median([_mb(s.rss_kb) for s in big])
    hwm = _median([_mb(s.hwm_kb) for s in big])
    return f"""- The fixed cost, the same with any database: the interpreter and the imports. With
  an empty database Rein is ready in {e_ready:.2f} s; a process that only imports what Rein's
  does has done so {p.imports_s:.2f} s after it was spawned, with {p.imports_rss_mb:.0f} MB of
  RSS (of the {e_rss:.0f} MB at ready); medians, one such process in each round of starts.
- The reminders are the big database's extra {d_ready:.2f} s. Reading the live rows takes
  {live.seconds * 1000:.0f} ms ({live.seconds / n * 1e6:.0f} µs a row), of which
  {parse.seconds * 1000:.0f} ms is `from_db_time`'s `strptime` (three times a row); arming
  takes {arm.seconds * 1000:.0f} ms ({arm.seconds / n * 1e6:.0f} µs a job, in APScheduler's
  `add_job`). Their Python objects: {live.mb or 0:.1f} MB for the `Reminder` list, which
  `Reminders.start` drops once the jobs are armed, and {arm.mb or 0:.1f} MB for the jobs,
  which stay. The peak (VmHWM {hwm:.0f} MB, median) is reached during this work; RSS at
  ready is {rss:.0f} MB, {rss - e_rss:.0f} MB above the empty database's.
- The incidents cost little at start-up: `Runtime.start` reads only the newest open ones
  ({newest.seconds * 1000:.0f} ms), and the sweep's query takes
  {unplanned.seconds * 1000:.0f} ms; SQLite reads the {b.size_bytes / 1e6:.0f} MB file
  through its page cache (2 MB by default), so the file's size does not show in RSS.
- After ready, not counted above: the sweep (`Reminders._plan_unplanned`) reconciles the
  {b.swept:,} open incidents that want no reminder, at every start, since they never get a
  live one: {sweep.seconds:.2f} s in this process ({sweep.seconds / max(b.swept, 1) * 1000:.2f} ms
  each, a handful of queries through aiosqlite), and in Rein
  {_median([s.settle_cpu_s for s in big]):.2f} s of CPU in the {result.settle:.0f} s after
  ready (median), on the event loop that answers Slack meanwhile."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--incidents", type=int, default=100_000, help="incidents in the database")
    parser.add_argument("--reminders", type=int, default=10_000, help="pending reminders")
    parser.add_argument("--runs", type=int, default=5, help="measured starts per database")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds after ready before memory is read again"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    parser.add_argument("--output", type=Path, default=DOC, help="the Markdown file to update")
    args = parser.parse_args(argv)

    result = asyncio.run(bench(args.incidents, args.reminders, args.runs, args.settle))
    for problem in result.problems:
        print(f"problem: {problem}", file=sys.stderr)
    for text, ok in verdicts(result):
        print(f"{'met   ' if ok else 'MISSED'} {text}")
    for step in result.phases.steps:
        print(f"  {step.seconds * 1000:7.1f} ms  {step.mb or 0:6.1f} MB  {step.label}")
    print(f"whole run {result.run_s:.0f} s")
    if not args.no_write:
        write_section(render(result, command_line("bench.startup", argv)), START, END, args.output)
        print(f"wrote {args.output}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
