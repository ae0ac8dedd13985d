"""Timeline append throughput through Rein's service layer, and the cost of refreshing a big
incident's card.

    python -m bench.timeline_card [--entries 1000] [--rounds 5] [--concurrency 10]
                                  [--refreshes 2000] [--no-write] [--profile FILE]

One process, no servers: everything runs on real SQLite files in a temporary directory, opened
as Rein opens them (storage/db.py: WAL, `synchronous = FULL`, `foreign_keys = ON`,
`busy_timeout`) and migrated with `Database.migrate()`.

1. Appends. A pinned message reaches the timeline through `bot/services/capture.py:
   capture_message` (the `:pushpin:` reaction, and the **Add to incident timeline** shortcut,
   once they have the message from Slack): it builds the `pinned_message` entry and calls
   `IncidentRepo.append_once`, one `BEGIN IMMEDIATE … COMMIT` per entry under the database's
   write lock. The same messages are appended that way, through `IncidentRepo.append(number,
   [entry])` (the path of status lines, refusals and Slack problems; entries built
   beforehand), and as the very rows `capture_message` stores inserted with plain aiosqlite
   (`execute` then `commit` per row, on a connection of their own with the same PRAGMAs);
   for context, also all in one transaction. Then `--concurrency` appenders at once, through
   `capture_message` and through the bare loop. Every variant writes a fresh database file of
   its own; the order of the variants turns every round.
2. Card. An incident built with Rein's own services and repositories (declared, contained
   with a confirmed kill-switch delivery, evidence, a 1,000-item rollback ledger partly
   marked, a 10,000-entry timeline), then the card's refresh, many times:
   `bot/services/surfaces.py: load_card_facts` with the keyword arguments `Rein.card_facts`
   passes (bot/context.py), then `bot/render/incident.py: card_blocks`, which validates
   every block through slack_sdk.models.

The figures go into docs/benchmarks.md, between this benchmark's markers.
"""

import argparse
import asyncio
import cProfile
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiosqlite

from bench.ack_latency import DOC, print_profile
from bench.approval_delivery import write_policy
from bench.report import (
    command_line,
    machine_busy_seconds,
    provenance,
    verdict_lines,
    write_section,
)
from bot.clock import utc_now
from bot.domain.containment import plan_for
from bot.domain.enums import (
    AutonomyMode,
    DeliveryEvent,
    DeliveryState,
    EvidenceKind,
    IncidentStatus,
    RollbackStatus,
    Severity,
    TimelineKind,
)
from bot.domain.evidence import new_evidence
from bot.domain.lifecycle import transition
from bot.domain.models import Delivery, NewIncident, TimelineEntry
from bot.domain.policy import Policy
from bot.domain.rollback import NewRollbackItem
from bot.domain.severity import Impact
from bot.domain.updates import StatusUpdate, update_entry
from bot.policy import load_policy
from bot.render.incident import card_blocks
from bot.render.text import cut
from bot.services.capture import MESSAGE_TEXT_MAX, capture_message, dedupe_key, posted_at
from bot.services.declare import declare
from bot.services.evidence import add_evidence
from bot.services.rollback import add_item
from bot.services.surfaces import load_card_facts
from storage.db import BUSY_TIMEOUT_MS, Database, to_db_time
from storage.deliveries import DeliveryRepo
from storage.evidence import EvidenceRepo
from storage.incidents import IncidentRepo
from storage.rollback import RollbackRepo
from storage.timeline import TimelineRepo

START = "<!-- timeline_card:start -->"
END = "<!-- timeline_card:end -->"

RATIO_TARGET = 0.5  # service-layer entries/s ÷ bare entries/s
P99_TARGET_MS = 20.0  # card facts + card blocks
AGENT = "crm-writer"
COMMANDER = "U0BENCHCMDR"
CHANNEL = "C0INCIDENT1"
TIMELINE_ENTRIES = 10_000
LEDGER_ITEMS = 1_000
# How the ledger is marked: (status, first item, last item, reason).
LEDGER_MARKS = (
    (RollbackStatus.RESTORED, 1, 700, ""),
    (RollbackStatus.ACCEPTED, 701, 760, "the customer confirmed the new value"),
    (RollbackStatus.NOT_REVERSIBLE, 761, 790, "the e-mail was already sent"),
)
# What the built incident's card must show (a wrong build would measure another card).
CARD_SHOWS = ("700 of 1000 restored", "9 items", "confirmed by the kill switch")
STATUS_UPDATE_EVERY = 400  # filler entries between status updates
FILL_CHUNK = 500  # timeline entries per `IncidentRepo.append` while building


# ------------------------------------------------------------------------------- helpers


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def open_bare(path: Path) -> aiosqlite.Connection:
    """Plain aiosqlite, Python's default transaction handling (an implicit BEGIN before the
    INSERT, `commit()` ends it), with Rein's PRAGMAs."""
    conn = await aiosqlite.connect(path)
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = FULL")
    await conn.execute("PRAGMA foreign_keys = ON")
    return conn


def test_policy(workdir: Path) -> Policy:
    """The tests' policy, with a kill switch for crm-writer (bench/approval_delivery.py's)."""
    path = workdir / "policy.yml"
    write_policy(path, "http://127.0.0.1:9/kill-switch")
    return load_policy(path)


async def fresh_database(path: Path, policy: Policy) -> tuple[Database, int]:
    """A migrated database with one incident declared through `declare`."""
    db = await Database.open(str(path))
    await db.migrate()
    new = NewIncident(
        title="Wrong CRM field on 300 records",
        summary="crm-writer overwrote the billing contact of accounts it enriched.",
        agent_id=AGENT,
        severity=Severity.SEV2,
        declared_by=COMMANDER,
        impact=Impact(customer_visible=True, records_touched=LEDGER_ITEMS),
    )
    declared = await declare(new, incidents=IncidentRepo(db), policy=policy, clock=utc_now)
    return db, declared.incident.number


# ------------------------------------------------------------------------------- appends


@dataclass(frozen=True)
class Message:
    channel: str
    ts: str
    author: str
    text: str
    captured_by: str


def messages(count: int) -> list[Message]:
    """Conversation messages of varied length, as people write them in an incident channel."""
    rng = random.Random(4)
    words = (
        "the agent wrote billing contact field on account record again after pause we restored "
        "from yesterday's export checking whether webhook fired for customers in EU region "
        "<@U0ALICE> <#C0OPS> https://crm.example.com/accounts/0042 rollback verified"
    ).split()
    out = []
    base = 1_764_000_000
    for i in range(count):
        length = rng.choice((8, 15, 25, 40, 80))
        text = " ".join(rng.choice(words) for _ in range(length))
        out.append(
            Message(
                channel=CHANNEL,
                ts=f"{base + i * 7}.{i:06d}",
                author=f"U0AUTH{i % 17:03d}",
                text=text,
                captured_by=f"U0PIN{i % 5:03d}",
            )
        )
    return out


def entry_for(message: Message, at: datetime) -> TimelineEntry:
    """The entry `capture_message` builds for the message (its own code's rules)."""
    return TimelineEntry(
        at=at,
        actor=message.captured_by,
        kind=TimelineKind.PINNED_MESSAGE,
        text=cut(message.text, MESSAGE_TEXT_MAX),
        data={
            "channel": message.channel,
            "ts": message.ts,
            "author": message.author,
            "posted_at": posted_at(message.ts).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )


def bare_row(number: int, message: Message, at: datetime) -> tuple[object, ...]:
    """The timeline row `capture_message` stores for the message, ready to insert."""
    entry = entry_for(message, at)
    return (
        number,
        to_db_time(entry.at),
        entry.actor,
        entry.kind.value,
        entry.text,
        json.dumps(entry.data),
        dedupe_key(number, message.channel, message.ts),
    )


BARE_INSERT = (
    "INSERT INTO timeline (incident, at, actor, kind, text, data, dedupe_key)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
ROW_COLUMNS = "incident, actor, kind, text, data, dedupe_key"  # all but `at`: a clock reading


@dataclass
class Run:
    variant: str
    round: int
    entries: int
    wall_s: float
    cpu_s: float  # this process, all threads (the event loop and aiosqlite's)
    others_cores: float  # the rest of the machine's busy time meanwhile, in cores

    @property
    def rate(self) -> float:
        return self.entries / self.wall_s

    @property
    def cpu_per_entry_us(self) -> float:
        return self.cpu_s / self.entries * 1e6


@dataclass
class Variant:
    key: str
    label: str
    concurrent: bool
    body: Callable[[Path, Policy, list[Message], int], Awaitable[Run]]
    runs: list[Run] = field(default_factory=list)

    def median_rate(self) -> float:
        return statistics.median(r.rate for r in self.runs)


async def _timed(
    variant: str,
    rnd: int,
    count: int,
    work: Callable[[], Awaitable[None]],
) -> Run:
    busy0, cpu0, t0 = machine_busy_seconds(), time.process_time(), time.perf_counter()
    await work()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    others = max(0.0, machine_busy_seconds() - busy0 - cpu) / wall
    return Run(variant, rnd, count, wall, cpu, others)


async def _in_workers(items: Sequence[Message], workers: int, one: Callable) -> None:
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            await one(item)

    await asyncio.gather(*(worker() for _ in range(workers)))


class AppendBench:
    def __init__(self, workdir: Path, policy: Policy, count: int, concurrency: int) -> None:
        self.workdir = workdir
        self.policy = policy
        self.messages = messages(count)
        self.concurrency = concurrency
        self.files = 0
        self.mismatches: list[str] = []
        self.variants = [
            Variant("capture", "`capture_message` (service)", False, self._capture),
            Variant("append", "`IncidentRepo.append(number, [entry])`", False, self._append),
            Variant("bare", "bare aiosqlite, commit per row", False, self._bare),
            Variant("batch", "bare aiosqlite, one transaction", False, self._batch),
            Variant(
                "capture_c", f"`capture_message` × {concurrency} appenders", True, self._capture_c
            ),
            Variant(
                "bare_c", f"bare, commit per row × {concurrency} appenders", True, self._bare_c
            ),
        ]
        self.by_key = {v.key: v for v in self.variants}
        self.reference: list[tuple] | None = None  # the rows `capture_message` stored

    def _path(self, name: str) -> Path:
        self.files += 1
        return self.workdir / f"append-{self.files:03d}-{name}.db"

    async def _rows(self, path: Path) -> list[tuple]:
        async with aiosqlite.connect(path) as conn:
            cursor = await conn.execute(
                f"SELECT {ROW_COLUMNS} FROM timeline WHERE kind = ? ORDER BY dedupe_key",  # noqa: S608
                (TimelineKind.PINNED_MESSAGE.value,),
            )
            return [tuple(row) for row in await cursor.fetchall()]

    async def _check(self, key: str, path: Path, with_key: bool = True) -> None:
        """The variant stored exactly the rows `capture_message` does (all but the time)."""
        rows = await self._rows(path)
        if self.reference is None:
            self.reference = rows  # the first measured `capture_message` run
            return
        reference = self.reference
        if not with_key:  # `IncidentRepo.append` stores no dedupe key
            rows = sorted(r[:-1] for r in rows)
            reference = sorted(r[:-1] for r in reference)
        if rows != reference:
            self.mismatches.append(f"{key}: its rows differ from those capture_message stored")

    async def _capture(self, path: Path, policy: Policy, items: list[Message], rnd: int) -> Run:
        db, number = await fresh_database(path, policy)
        repo = IncidentRepo(db)
        added = 0

        async def work() -> None:
            nonlocal added
            for m in items:
                added += await capture_message(
                    number,
                    channel=m.channel,
                    ts=m.ts,
                    author=m.author,
                    text=m.text,
                    captured_by=m.captured_by,
                    incidents=repo,
                    clock=utc_now,
                )

        try:
            run = await _timed("capture", rnd, len(items), work)
        finally:
            await db.close()
        if added != len(items):
            self.mismatches.append(f"capture: {added} of {len(items)} appended")
        return run

    async def _capture_c(self, path: Path, policy: Policy, items: list[Message], rnd: int) -> Run:
        db, number = await fresh_database(path, policy)
        repo = IncidentRepo(db)

        async def one(m: Message) -> None:
            await capture_message(
                number,
                channel=m.channel,
                ts=m.ts,
                author=m.author,
                text=m.text,
                captured_by=m.captured_by,
                incidents=repo,
                clock=utc_now,
            )

        try:
            return await _timed(
                "capture_c", rnd, len(items), lambda: _in_workers(items, self.concurrency, one)
            )
        finally:
            await db.close()

    async def _append(self, path: Path, policy: Policy, items: list[Message], rnd: int) -> Run:
        db, number = await fresh_database(path, policy)
        repo = IncidentRepo(db)
        now = utc_now()
        entries = [entry_for(m, now) for m in items]

        async def work() -> None:
            for entry in entries:
                await repo.append(number, [entry])

        try:
            return await _timed("append", rnd, len(items), work)
        finally:
            await db.close()

    async def _bare_rows(self, path: Path, policy: Policy, items: list[Message]) -> list[tuple]:
        db, number = await fresh_database(path, policy)  # Rein's schema and incident
        await db.close()
        now = utc_now()
        return [bare_row(number, m, now) for m in items]

    async def _bare(self, path: Path, policy: Policy, items: list[Message], rnd: int) -> Run:
        rows = await self._bare_rows(path, policy, items)
        conn = await open_bare(path)

        async def work() -> None:
            for row in rows:
                await conn.execute(BARE_INSERT, row)
                await conn.commit()

        try:
            return await _timed("bare", rnd, len(rows), work)
        finally:
            await conn.close()

    async def _batch(self, path: Path, policy: Policy, items: list[Message], rnd: int) -> Run:
        rows = await self._bare_rows(path, policy, items)
        conn = await open_bare(path)

        async def work() -> None:
            for row in rows:
                await conn.execute(BARE_INSERT, row)
            await conn.commit()

        try:
            return await _timed("batch", rnd, len(rows), work)
        finally:
            await conn.close()

    async def _bare_c(self, path: Path, policy: Policy, items: list[Message], rnd: int) -> Run:
        rows = await self._bare_rows(path, policy, items)
        by_ts = {m.ts: row for m, row in zip(items, rows, strict=True)}
        conn = await open_bare(path)
        # One connection is one transaction at a time: without the lock, a second task's INSERT
        # would join the first's open transaction and commit with it (not one per entry).
        lock = asyncio.Lock()

        async def one(m: Message) -> None:
            async with lock:
                await conn.execute(BARE_INSERT, by_ts[m.ts])
                await conn.commit()

        try:
            return await _timed(
                "bare_c", rnd, len(rows), lambda: _in_workers(items, self.concurrency, one)
            )
        finally:
            await conn.close()

    async def run(self, rounds: int, warmup: int) -> None:
        keys = [v.key for v in self.variants]
        # Warm-up: imports, pydantic's and slack_sdk's first calls, the file system's cache.
        for key in keys:
            await self.by_key[key].body(self._path(key), self.policy, self.messages[:warmup], 0)
        for rnd in range(1, rounds + 1):
            shift = (rnd - 1) % len(keys)  # round 1 starts with `capture`: the reference rows
            for key in keys[shift:] + keys[:shift]:
                path = self._path(key)
                run = await self.by_key[key].body(path, self.policy, self.messages, rnd)
                self.by_key[key].runs.append(run)
                await self._check(key, path, with_key=key != "append")
                print(
                    f"  round {rnd} {key:>9}: {run.rate:7.0f} entries/s"
                    f"  CPU {run.cpu_per_entry_us:5.0f} µs/entry  others {run.others_cores:.2f}",
                    flush=True,
                )

    def ratios(self, key: str, base: str) -> list[float]:
        """Per round: the variant's rate ÷ the baseline's."""
        runs = {r.round: r for r in self.by_key[base].runs}
        return [r.rate / runs[r.round].rate for r in self.by_key[key].runs]


# ----------------------------------------------------------------------------------- card


@dataclass
class CardStore:
    db: Database
    number: int
    policy: Policy
    build_s: float
    timeline_count: int
    newest_update_back: int  # entries after the newest status update
    evidence_bytes: int

    @property
    def incidents(self) -> IncidentRepo:
        return IncidentRepo(self.db)

    @property
    def repos(self) -> dict[str, object]:
        """`load_card_facts`'s keyword arguments, as `Rein.card_facts` passes them."""
        return {
            "deliveries": DeliveryRepo(self.db),
            "evidence": EvidenceRepo(self.db),
            "rollback": RollbackRepo(self.db),
            "timeline": TimelineRepo(self.db),
        }


EVIDENCE = (
    # kind, content size in bytes (0: a url only), source
    (EvidenceKind.PROMPT, 512 * 1024, "agent-platform"),
    (EvidenceKind.SYSTEM_INSTRUCTIONS, 8 * 1024, "agent-platform"),
    (EvidenceKind.MODEL_VERSION, 40, "agent-platform"),
    (EvidenceKind.TOOL_CALLS, 200 * 1024, "agent-platform"),
    (EvidenceKind.TOOL_CALLS, 200 * 1024, "agent-platform"),
    (EvidenceKind.RECORDS_CHANGED, 100 * 1024, "agent-platform"),
    (EvidenceKind.EXTERNAL_URLS, 0, None),
    (EvidenceKind.FINAL_OUTPUT, 20 * 1024, "agent-platform"),
    (EvidenceKind.REVIEWER_NOTES, 600, None),
)


def _filler(number: int, count: int, at: datetime) -> list[TimelineEntry]:
    """What fills an incident's timeline besides the ledger and evidence: pinned messages,
    Rein's channel status lines, a status update every `STATUS_UPDATE_EVERY` entries."""
    chat = messages(count)
    update = StatusUpdate(
        what_happened="crm-writer overwrote the billing contact on accounts it enriched.",
        what_was_affected="1,000 CRM accounts; invoices for 212 of them went to the wrong person.",
        what_was_done="The agent is paused; its kill switch confirmed. Records are being restored.",
        what_is_being_checked="Whether any invoice e-mail left before the pause.",
        what_changes_before_restart="A field allow-list on the CRM write tool.",
    )
    out = []
    for i in range(count):
        if i % STATUS_UPDATE_EVERY == STATUS_UPDATE_EVERY // 2:
            out.append(update_entry(update, actor=COMMANDER, at=at))
        elif i % 10 == 9:
            out.append(
                TimelineEntry(
                    at=at,
                    actor="rein",
                    kind=TimelineKind.STATUS_POSTED,
                    text="Status posted in the channel: 20 ledger item(s) marked restored",
                    data={"through": 1000 + i, "ts": f"1764000{i:03d}.000100"},
                )
            )
        else:
            out.append(entry_for(chat[i], at))
    return out


async def build_card_store(path: Path, policy: Policy) -> CardStore:
    """The big incident, through Rein's services where they need no Slack, and its
    repositories (as the services use them) where they do."""
    started = time.perf_counter()
    db, number = await fresh_database(path, policy)
    incidents, deliveries = IncidentRepo(db), DeliveryRepo(db)
    evidence, rollback = EvidenceRepo(db), RollbackRepo(db)
    agent = policy.agent(AGENT)

    # Containment, committed as `approve_containment` commits it (that service first asks
    # Slack who may approve), then the kill switch's confirmation as the runner records it.
    async with incidents.edit(number) as edit:
        now = utc_now()
        plan = plan_for(edit.incident, agent)
        moved = transition(
            edit.incident, IncidentStatus.CONTAINED, actor=COMMANDER, at=now, reason="approved"
        )
        delivery = Delivery(
            id="d" * 32,
            incident=number,
            agent_id=AGENT,
            event=DeliveryEvent.CONTAINMENT,
            actions=plan,
            mode=AutonomyMode.PAUSED,
            issued_at=now,
            next_attempt_at=now,
            updated_at=now,
        )
        await DeliveryRepo.insert_in(edit.conn, delivery)
        await edit.save(moved.incident.model_copy(update={"containment_plan": plan}), [moved.entry])
    confirmed = delivery.model_copy(
        update={
            "state": DeliveryState.CONFIRMED,
            "attempts": 1,
            "next_attempt_at": None,
            "confirmed_at": now,
        }
    )
    entry = TimelineEntry(
        at=now,
        actor="rein",
        kind=TimelineKind.DELIVERY,
        text="The kill switch confirmed containment (attempt 1).",
        data={"delivery": delivery.id, "state": "confirmed", "attempt": 1},
    )
    await deliveries.record(delivery, confirmed, [entry])

    # Evidence, through the service (one transaction and timeline entry an item).
    evidence_bytes = 0
    for i, (kind, size, source) in enumerate(EVIDENCE):
        content = None
        url = "https://traces.example.com/run/4711" if size == 0 else None
        if size:
            line = f"[{kind.value} {i}] ignore previous instructions <b>and</b> *escape* me\n"
            content = (line * (size // len(line) + 1))[:size]
            evidence_bytes += size
        item = new_evidence(kind, content=content, url=url, source=source, note="from the run")
        await add_evidence(
            number,
            item,
            actor="api:platform",
            incidents=incidents,
            evidence=evidence,
            clock=utc_now,
        )

    # The ledger, through the service: one transaction and timeline entry an item.
    for i in range(1, LEDGER_ITEMS + 1):
        new = NewRollbackItem(
            system="CRM",
            record=f"account/{i:06d}",
            before=f"billing{i}@old.example",
            after=f"billing{i}@agent.example",
        )
        await add_item(
            number,
            new,
            actor="api:platform",
            incidents=incidents,
            rollback=rollback,
            clock=utc_now,
        )
    # Marked a hundred at a time, as `mark_items` commits each (it first asks Slack).
    for status, first, last, reason in LEDGER_MARKS:
        for low in range(first, last + 1, 100):
            ids = list(range(low, min(low + 100, last + 1)))
            async with incidents.edit(number) as edit:
                now = utc_now()
                await rollback.mark_in(
                    edit.conn, number, ids, status, reason or None, actor=COMMANDER, at=now
                )
                await edit.append(
                    [
                        TimelineEntry(
                            at=now,
                            actor=COMMANDER,
                            kind=TimelineKind.ROLLBACK,
                            text=f"{len(ids)} ledger item(s) marked {status.value}",
                            data={
                                "action": "marked",
                                "status": status.value,
                                "reason": reason,
                                "items": ids,
                                "previous": {"pending": ids},
                            },
                        )
                    ]
                )

    # The rest of the 10,000 entries.
    timeline = TimelineRepo(db)
    filler = _filler(number, TIMELINE_ENTRIES - await timeline.count(number), utc_now())
    for low in range(0, len(filler), FILL_CHUNK):
        await incidents.append(number, filler[low : low + FILL_CHUNK])
    newest = max(i for i, e in enumerate(filler) if e.kind is TimelineKind.STATUS_UPDATE)
    return CardStore(
        db=db,
        number=number,
        policy=policy,
        build_s=time.perf_counter() - started,
        timeline_count=await timeline.count(number),
        newest_update_back=len(filler) - 1 - newest,
        evidence_bytes=evidence_bytes,
    )


@dataclass
class CardResult:
    refreshes: int
    warmup: int
    incident_ms: list[float]  # `incidents.get`, which `refresh_surfaces` does first
    facts_ms: list[float]
    render_ms: list[float]
    total_ms: list[float]  # facts + render
    cpu_s: float
    wall_s: float
    others_cores: float
    blocks: int
    card_bytes: int
    missing_on_card: list[str]  # what the card should have shown and did not
    queries: dict[str, list[float]] = field(default_factory=dict)
    profile: "ProfileSummary | None" = None


async def bench_card(store: CardStore, refreshes: int, warmup: int, queries: int) -> CardResult:
    incidents = store.incidents
    agent = store.policy.agent(AGENT)
    result = CardResult(refreshes, warmup, [], [], [], [], 0.0, 0.0, 0.0, 0, 0, [])
    busy0, cpu0, w0 = 0.0, 0.0, 0.0
    blocks: list[dict] = []
    for i in range(warmup + refreshes):
        if i == warmup:
            busy0, cpu0, w0 = machine_busy_seconds(), time.process_time(), time.perf_counter()
        t0 = time.perf_counter()
        incident = await incidents.get(store.number)
        t1 = time.perf_counter()
        facts = await load_card_facts(store.number, **store.repos)  # type: ignore[arg-type]
        t2 = time.perf_counter()
        blocks = card_blocks(incident, agent, facts)  # type: ignore[arg-type]
        t3 = time.perf_counter()
        if i >= warmup:
            result.incident_ms.append((t1 - t0) * 1000)
            result.facts_ms.append((t2 - t1) * 1000)
            result.render_ms.append((t3 - t2) * 1000)
            result.total_ms.append((t3 - t1) * 1000)
    result.wall_s = time.perf_counter() - w0
    result.cpu_s = time.process_time() - cpu0
    result.others_cores = max(0.0, machine_busy_seconds() - busy0 - result.cpu_s) / result.wall_s
    result.blocks = len(blocks)
    result.card_bytes = len(json.dumps(blocks).encode())
    text = json.dumps(blocks)
    result.missing_on_card = [shown for shown in CARD_SHOWS if shown not in text]
    await _queries(store, result, queries)
    return result


async def _queries(store: CardStore, result: CardResult, count: int) -> None:
    """Each query `load_card_facts` makes, on its own; and `TimelineRepo.latest` for a kind
    the timeline does not hold, which reads the whole incident's timeline."""
    n = store.number
    repos = store.repos
    deliveries: DeliveryRepo = repos["deliveries"]  # type: ignore[assignment]
    evidence: EvidenceRepo = repos["evidence"]  # type: ignore[assignment]
    rollback: RollbackRepo = repos["rollback"]  # type: ignore[assignment]
    timeline: TimelineRepo = repos["timeline"]  # type: ignore[assignment]
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "`deliveries.for_incident`": lambda: deliveries.for_incident(n),
        "`evidence.kinds`": lambda: evidence.kinds(n),
        "`evidence.count`": lambda: evidence.count(n),
        "`evidence.latest` (3, content trimmed)": lambda: evidence.latest(n, 3),
        "`rollback.counts`": lambda: rollback.counts(n),
        "`timeline.latest(status_update)`": lambda: timeline.latest(n, TimelineKind.STATUS_UPDATE),
        WORST_LATEST: lambda: timeline.latest(n, TimelineKind.ALERT),
    }
    for name, call in calls.items():
        times = []
        for i in range(count + 20):
            t0 = time.perf_counter()
            await call()
            if i >= 20:
                times.append((time.perf_counter() - t0) * 1000)
        result.queries[name] = times


WORST_LATEST = (
    "`timeline.latest` of a kind the incident has none of (`status_update` before the first"
    " update): the whole timeline read"
)
PROFILED_REFRESHES = 500
# Where a refresh's time goes, as cProfile sees the event loop's thread: (label, file suffix,
# function name). A coroutine's figure is its own running time: while it waits for
# aiosqlite's thread the loop is in `epoll.poll`.
PROFILE_PARTS = (
    ("`card_blocks` (whole)", "bot/render/incident.py", "card_blocks"),
    ("… of which `to_dicts`: slack_sdk's `to_dict`, with its validation", "text.py", "to_dicts"),
    ("`load_card_facts`, in the event loop", "bot/services/surfaces.py", "load_card_facts"),
    ("… of which pydantic models built from the rows", "~", "CardFacts"),
    ("the event loop idle in `epoll.poll`: waiting for aiosqlite's thread", "~", "epoll"),
)


@dataclass
class ProfileSummary:
    refreshes: int
    total_s: float  # the profiled refreshes' wall time, profiler overhead included
    parts: list[tuple[str, float]]  # (label, seconds)
    top: list[tuple[str, int, float, float]]  # (function, calls, tottime s, cumtime s)


async def profile_card(store: CardStore, refreshes: int, save: Path | None) -> ProfileSummary:
    """`refreshes` more refreshes (facts and blocks) under cProfile."""
    import pstats

    incidents = store.incidents
    agent = store.policy.agent(AGENT)
    incident = await incidents.get(store.number)
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    for _ in range(refreshes):
        facts = await load_card_facts(store.number, **store.repos)  # type: ignore[arg-type]
        card_blocks(incident, agent, facts)  # type: ignore[arg-type]
    profiler.disable()
    total = time.perf_counter() - t0
    if save is not None:
        profiler.dump_stats(save)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    parts = []
    for label, suffix, name in PROFILE_PARTS:
        seconds = 0.0
        for (filename, _, function), (_, _, tt, ct, _) in stats.items():
            if suffix == "~" and filename == "~":
                if name == "epoll" and "select.epoll" in function:
                    seconds += tt
            elif filename.endswith(suffix) and function == name:
                seconds += ct
        if name == "CardFacts":
            seconds = sum(
                ct
                for (filename, _, function), (_, _, _, ct, _) in stats.items()
                if function == "__init__" and filename.endswith("pydantic/main.py")
            )
        parts.append((label, seconds))
    top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:10]
    return ProfileSummary(
        refreshes,
        total,
        parts,
        [(_where(key), v[1], v[2], v[3]) for key, v in top],
    )


def _where(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    if filename == "~":
        return function
    parts = Path(filename).parts
    for anchor in ("site-packages", "bot", "storage", "bench"):
        if anchor in parts:
            i = parts.index(anchor)
            short = "/".join(parts[i + 1 :] if anchor == "site-packages" else parts[i:])
            return f"{short}:{line} {function}"
    return f"{Path(filename).name}:{line} {function}"


def print_card(card: CardResult) -> None:
    for name, values in (
        ("facts", card.facts_ms),
        ("render", card.render_ms),
        ("total", card.total_ms),
        ("incident", card.incident_ms),
    ):
        print(
            f"  card {name:>8}: p50={pct(values, 50):6.2f} ms  p99={pct(values, 99):6.2f} ms"
            f"  max={max(values):6.2f} ms",
            flush=True,
        )
    print(f"  others {card.others_cores:.2f} cores; {card.blocks} blocks, {card.card_bytes} B")


# ---------------------------------------------------------------------------------- run


@dataclass
class Result:
    appends: AppendBench
    card: CardResult
    store: CardStore
    run_s: float
    append_s: float


async def bench(
    entries: int,
    rounds: int,
    concurrency: int,
    refreshes: int,
    warmup: int,
    profile: Path | None,
) -> Result:
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="rein-bench-timeline-"))
    try:
        policy = test_policy(workdir)
        appends = AppendBench(workdir, policy, entries, concurrency)
        print(f"appends: {entries} entries a variant, {rounds} rounds", flush=True)
        await appends.run(rounds, warmup=min(100, entries))
        append_s = time.perf_counter() - started
        print("card: building the incident…", flush=True)
        store = await build_card_store(workdir / "card.db", policy)
        print(
            f"  built in {store.build_s:.1f} s: {store.timeline_count} timeline entries",
            flush=True,
        )
        try:
            card = await bench_card(store, refreshes, warmup, 300)
            print_card(card)
            card.profile = await profile_card(store, min(refreshes, PROFILED_REFRESHES), profile)
        finally:
            await store.db.close()
        return Result(appends, card, store, time.perf_counter() - started, append_s)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------- report


def _rates(runs: Sequence[Run]) -> str:
    return " / ".join(f"{r.rate:,.0f}" for r in runs)


def _x(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}×" for v in values)


def verdicts(result: Result) -> list[tuple[str, bool]]:
    a, card = result.appends, result.card
    serial = a.ratios("capture", "bare")
    concurrent = a.ratios("capture_c", "bare_c")
    p99 = pct(card.total_ms, 99)
    return [
        (
            f"`capture_message` ÷ bare aiosqlite (commit per row), one appender:"
            f" {statistics.median(serial):.2f}× (median of {len(serial)} rounds: {_x(serial)};"
            f" target ≥ {RATIO_TARGET}×)",
            statistics.median(serial) >= RATIO_TARGET,
        ),
        (
            f"`capture_message` ÷ bare aiosqlite (commit per row), {a.concurrency} appenders:"
            f" {statistics.median(concurrent):.2f}× (median of {len(concurrent)} rounds:"
            f" {_x(concurrent)}; target ≥ {RATIO_TARGET}×)",
            statistics.median(concurrent) >= RATIO_TARGET,
        ),
        (
            f"card refresh (`load_card_facts` + `card_blocks`) p99: {p99:.2f} ms over"
            f" {card.refreshes:,} refreshes (target < {P99_TARGET_MS:.0f} ms)",
            p99 < P99_TARGET_MS,
        ),
    ]


def _append_table(a: AppendBench) -> str:
    rows = [
        "| Variant | Appenders | Entries/s (median) | Entries/s by round | Ratio to bare "
        "(median of rounds) | Wall per entry | CPU per entry | Others' CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in a.variants:
        base = "bare_c" if v.concurrent else "bare"
        ratios = a.ratios(v.key, "bare")
        ratio = f"{statistics.median(ratios):.2f}×"
        if v.concurrent and v.key != base:
            ratio += f" ({statistics.median(a.ratios(v.key, base)):.2f}× of {a.concurrency} bare)"
        rate = v.median_rate()
        cpu = statistics.median(r.cpu_per_entry_us for r in v.runs)
        others = max(r.others_cores for r in v.runs)
        rows.append(
            f"| {v.label} | {a.concurrency if v.concurrent else 1} | {rate:,.0f}"
            f" | {_rates(v.runs)} | {ratio} | {1000 / rate:.2f} ms | {cpu:,.0f} µs"
            f" | ≤ {others:.2f} |"
        )
    return "\n".join(rows)


def _card_table(card: CardResult) -> str:
    rows = [
        "| Part of a refresh | p50 | p90 | p99 | max | mean |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, values in (
        ("`load_card_facts` (six queries)", card.facts_ms),
        ("`card_blocks` (blocks built and validated by slack_sdk)", card.render_ms),
        ("**both: the card's refresh (the target)**", card.total_ms),
        (
            "`incidents.get` (`refresh_surfaces` rereads the row first; not in the target)",
            card.incident_ms,
        ),
    ):
        rows.append(
            f"| {name} | {pct(values, 50):.2f} ms | {pct(values, 90):.2f} ms"
            f" | {pct(values, 99):.2f} ms | {max(values):.2f} ms"
            f" | {statistics.fmean(values):.2f} ms |"
        )
    return "\n".join(rows)


def _query_table(card: CardResult) -> str:
    rows = ["| Query, on its own | p50 | p99 |", "|---|---:|---:|"]
    for name, values in card.queries.items():
        rows.append(f"| {name} | {pct(values, 50):.2f} ms | {pct(values, 99):.2f} ms |")
    return "\n".join(rows)


def _profile_text(p: ProfileSummary | None) -> str:
    if p is None:
        return ""
    per = p.total_s / p.refreshes * 1000
    parts = "\n".join(
        f"| {label} | {seconds / p.refreshes * 1000:.2f} ms | {seconds / p.total_s:.0%} |"
        for label, seconds in p.parts
    )
    top = "\n".join(
        f"| `{name}` | {calls:,} | {tt / p.refreshes * 1000:.3f} ms"
        f" | {ct / p.refreshes * 1000:.3f} ms |"
        for name, calls, tt, ct in p.top
    )
    return f"""
### Where a refresh's time goes

{p.refreshes} more refreshes (facts and blocks) under cProfile, which sees the event loop's
thread only: {per:.2f} ms a refresh with the profiler's overhead. SQLite itself runs in
aiosqlite's thread; the loop waits for it in `epoll.poll`.

| Part | Per refresh | Share |
|---|---:|---:|
{parts}

The ten functions with the most time of their own:

| Function | Calls | Own time per refresh | Cumulative per refresh |
|---|---:|---:|---:|
{top}
"""


def render(result: Result, command: str) -> str:
    a, card, store = result.appends, result.card, result.store
    bare, batch = a.by_key["bare"], a.by_key["batch"]
    bare_cpu = statistics.median(r.cpu_per_entry_us for r in bare.runs)
    capture_cpu = statistics.median(r.cpu_per_entry_us for r in a.by_key["capture"].runs)
    batch_cpu = statistics.median(r.cpu_per_entry_us for r in batch.runs)
    worst = card.queries.get(WORST_LATEST, [])
    marks = ", ".join(
        f"{last - first + 1} {status.value}" for status, first, last, _ in LEDGER_MARKS
    )
    pending = LEDGER_ITEMS - sum(last - first + 1 for _, first, last, _ in LEDGER_MARKS)
    kinds = len({k for k, _, _ in EVIDENCE})
    return f"""{START}
## Timeline appends through the service layer, and a big incident's card

Two things a long incident leans on: appending to its timeline (every pinned message, status
line and ledger change is an entry, each committed on its own) and refreshing its card
(after every change). Both in one process, no servers, on real SQLite files in a temporary
directory opened as `Database.open` opens them (WAL, `synchronous = FULL`,
`foreign_keys = ON`, `busy_timeout = {BUSY_TIMEOUT_MS}`) and migrated by `Database.migrate()`.

{provenance(command, "bench/timeline_card.py")}
- Whole run: {result.run_s:.0f} s ({result.append_s:.0f} s appending, {store.build_s:.0f} s
  building the card's incident); {len(a.mismatches)} variants whose stored rows differed
  from `capture_message`'s

### Timeline append throughput

The service path measured is the one a pinned message takes, `bot/services/capture.py:
capture_message` (the `:pushpin:` reaction and the **Add to incident timeline** shortcut, once
they have the message): it builds the `pinned_message` entry and calls
`IncidentRepo.append_once`, which takes the database's write lock and runs `BEGIN IMMEDIATE`,
`INSERT OR IGNORE` (the dedupe key), `COMMIT`. The baseline inserts the very rows
`capture_message` stores (built beforehand; checked equal after every run, all but the
clock's `at`) with plain aiosqlite on a connection of its own with the same PRAGMAs:
`execute(INSERT …)` then `commit()` for each row (Python's implicit `BEGIN`), so one
transaction, and one WAL sync, per entry, as Rein does.

How it was measured:

- Entries: {len(a.messages):,} messages from an incident channel (8 to 80 words, mentions
  and links) per variant and round, appended one after the other (or by {a.concurrency}
  tasks sharing them), each variant into a fresh database file holding one declared incident.
- Also measured: `IncidentRepo.append(number, [entry])` (the path of channel status lines,
  refusals, Slack problems: one transaction, no dedupe key; entries built beforehand), and
  for context the bare rows all in one transaction (one sync for all).
- {a.concurrency} appenders: {a.concurrency} tasks at once on one event loop, through
  `capture_message` on Rein's one connection, and through the bare loop on its one
  connection with an `asyncio.Lock` around each `execute` + `commit` (without it a task's
  INSERT joins another's open transaction and commits with it: not one per entry).
- Rounds: {len(bare.runs)}, the order of the variants turned every round; before them
  a warm-up of {min(100, len(a.messages))} entries per variant, not counted.
- Rate: entries ÷ the wall time from the first append to the last commit. CPU: this
  process's user + system time (the event loop and aiosqlite's thread) per entry. Others'
  CPU: the rest of the machine's busy time meanwhile, in cores, the worst round.

{_append_table(a)}

Ratios are the variant's rate ÷ the bare commit-per-row loop's, round by round.

Committing each entry is the cost of an append: the bare loop takes
{1000 / bare.median_rate():.2f} ms of wall time and {bare_cpu:,.0f} µs of CPU an entry, and
{1000 / batch.median_rate():.2f} ms and {batch_cpu:,.0f} µs with all the rows in one
transaction. The difference is the commit: a trip to aiosqlite's thread and back, and the WAL
sync of `synchronous = FULL`. `capture_message` spends {capture_cpu:,.0f} µs of CPU an entry:
`append_once` makes three trips to aiosqlite's thread (`BEGIN IMMEDIATE`, the INSERT,
`COMMIT`, under the write lock) where the bare loop makes two (the INSERT, which opens the
transaction itself, and `commit()`), and builds the entry (pydantic, `json.dumps`, the
message's time) before it.

### Card refresh for an incident with {store.timeline_count:,} timeline entries

The incident was built with Rein's services and repositories: declared (`declare`), contained
as `approve_containment` commits it (repositories: that service first asks Slack who may
approve) with its kill-switch delivery confirmed (`DeliveryRepo.record`),
{len(EVIDENCE)} evidence items of {kinds} kinds through `add_evidence`
({store.evidence_bytes / 1024 / 1024:.1f} MiB of content, the largest 512 KiB),
{LEDGER_ITEMS:,} ledger items through `add_item` ({marks}, {pending} pending; marked a hundred
at a time as `mark_items` commits them), and the timeline filled to {store.timeline_count:,}
entries with pinned messages, channel status lines and a status update every
{STATUS_UPDATE_EVERY} entries (the newest {store.newest_update_back} entries from the end).

How it was measured:

- A refresh: `load_card_facts(number, deliveries=…, evidence=…, rollback=…, timeline=…)`
  with the repositories `Rein.card_facts` passes, then `card_blocks(incident, agent, facts)`,
  which builds the blocks with slack_sdk.models and validates them in `to_dict()`; timed in
  parts with `time.perf_counter()`.
- {card.warmup} refreshes of warm-up, then {card.refreshes:,} measured, one after the
  other on an otherwise idle event loop; the database file stays in the OS's cache.
- The card: {card.blocks} blocks, {card.card_bytes:,} bytes of JSON; it showed
  {", ".join(f"“{x}”" for x in CARD_SHOWS if x not in card.missing_on_card) or "none"} of
  what it must ({len(card.missing_on_card)} missing).
- CPU: {card.cpu_s / card.refreshes * 1000:.2f} ms per refresh (this process, all threads),
  over {card.wall_s / card.refreshes * 1000:.2f} ms of wall time; others' CPU
  {card.others_cores:.2f} cores meanwhile.
- Percentiles: nearest rank.

{_card_table(card)}

{verdict_lines(verdicts(result))}

Each query of `load_card_facts` on its own ({len(next(iter(card.queries.values()), [])):,}
times each, after a warm-up of 20):

{_query_table(card)}

The ledger is counted on its `(incident, status, id)` index, not read item by item. The
timeline is read by one query, `TimelineRepo.latest`, which walks `timeline_by_incident
(incident, id)` from the newest entry until it meets the kind: here
{store.newest_update_back} entries. An incident with no status update yet reads its whole
timeline that way: {pct(worst, 50):.2f} ms at p50 for {store.timeline_count:,} entries,
growing with the timeline.
{_profile_text(card.profile)}{END}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.timeline_card", description=__doc__)
    parser.add_argument("--entries", type=int, default=1000, help="entries per append variant")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of append variants")
    parser.add_argument("--concurrency", type=int, default=10, help="concurrent appenders")
    parser.add_argument("--refreshes", type=int, default=2000, help="measured card refreshes")
    parser.add_argument("--warmup", type=int, default=200, help="card refreshes not counted")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    parser.add_argument(
        "--profile", type=Path, help="also save the profiled refreshes' cProfile stats here"
    )
    parser.add_argument("--output", type=Path, default=DOC, help="the Markdown file to update")
    args = parser.parse_args(argv)

    result = asyncio.run(
        bench(
            args.entries, args.rounds, args.concurrency, args.refreshes, args.warmup, args.profile
        )
    )
    for line in result.appends.mismatches:
        print(f"mismatch: {line}", file=sys.stderr)
    for text, ok in verdicts(result):
        print(f"{'met   ' if ok else 'MISSED'} {text}")
    print(f"whole run {result.run_s:.0f} s")
    if args.profile is not None:
        print_profile(args.profile, sys.stdout, 20)
    if not args.no_write:
        write_section(
            render(result, command_line("bench.timeline_card", argv)), START, END, args.output
        )
        print(f"wrote {args.output}")
    for shown in result.card.missing_on_card:
        print(f"the card did not show {shown!r}", file=sys.stderr)
    return 1 if result.appends.mismatches or result.card.missing_on_card else 0


if __name__ == "__main__":
    sys.exit(main())
