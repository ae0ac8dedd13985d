"""Scale: the incident list, the card, the export and the incident API with 100,000 incidents
and 1,000,000 timeline entries, as ratios against a small database measured in the same run.

    python -m bench.scale [--incidents 100000] [--entries 1000000] [--small-incidents 1000]
                          [--small-entries 10000] [--quick] [--rebuild] [--no-write]
                          [--output FILE]

1. Seed. Two databases, each made by Rein's migrations (`Database.migrate()`): the big one
   (`--incidents`, `--entries`) and the baseline (`--small-incidents`, `--small-entries`),
   shaped alike. The incidents, their statuses, times and first timeline entries are
   bench/startup.py's (`plan_incidents`, `Rows`: every incident as Rein declares it or as an
   alert opens it, open ones with their status changes and channel status line). Then, as
   Rein's services write them: evidence items with their `evidence` entries (`entry_text`),
   rollback ledgers with an `added` entry per item and `marked` entries a hundred items at a
   time, confirmed kill-switch deliveries, completed postmortems (`save_entry`), and filler
   entries (pinned messages as `capture_message` stores them, with their dedupe keys, and
   status updates) until the timeline holds exactly `--entries`: one incident holds a tenth
   of them (the biggest: 100,000 entries, 10,000 ledger items in the big database), 0.5 % of
   incidents are long (50 to 1,000 entries), the others hold a handful each. All timeline
   entries are numbered in time order, so an incident's entries are spread over the table as
   they would be. Rows go in with `executemany` on a plain sqlite3 connection in one
   transaction (bench-only seeding: the repositories commit each row on its own), then are
   checked through Rein's repositories (bench/startup.py's `check`, counts, and
   `load_record` of the incidents measured). The file is cached under
   `$REIN_BENCH_CACHE` (default /tmp/rein-bench-cache), keyed by the migrations, this
   seeding's version and the shape; each run measures fresh copies.
2. Card, timeline page and export, in this process and in `rein export` processes, on the
   copies. Card: `IncidentRepo.get`, `load_card_facts` with the keyword arguments
   `Rein.card_facts` passes, `card_blocks`. Timeline page: `timeline_page` (the latest page
   `/incident timeline` shows, and the first), and for the biggest incident the latest page
   as it was read before (count, then OFFSET from the oldest). Export: `python -m bot export
   INC-n --format md|json --output FILE`, timed from spawn to exit, peak memory its VmHWM
   as it exits (`PEAK_PROLOGUE`); for the biggest incident also the export as it was before
   (the whole record in memory, `load_record`, kept as the reference), in a process of its
   own, whose file must be the same bytes.
3. HTTP. The fake Slack Web API and two Reins (bench/servers.py, as `rein run` starts them),
   one on each copy. Once both are idle after start-up: `GET /v1/incidents` (all, `open`,
   `closed`, `triage`), `/incident list` as a signed slash command through Bolt (timed until
   its answer reaches a response_url served by this process), `GET /v1/incidents/{ref}`
   (for the biggest incident with `/healthz` asked every 20 ms meanwhile: how long another
   request waits behind it), then `POST /v1/incidents/{ref}/evidence` and `/rollback`. One
   request at a time, alternating between the two Reins in small batches so both see the
   same machine.

Figures: p50 and p99 (nearest rank) of each, and big ÷ small. The figures go into
docs/benchmarks.md, between this benchmark's markers.
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from operator import itemgetter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench import servers, startup
from bench.ack_latency import DOC, ROOT, Server, start_server, stop_server
from bench.report import command_line, machine_busy_seconds, provenance, write_section
from bench.timeline_card import EVIDENCE as BIG_EVIDENCE
from bench.timeline_card import Message, entry_for, messages, pct
from bot.domain.enums import (
    EvidenceKind,
    IncidentStatus,
    PostmortemState,
    RollbackStatus,
    Severity,
    TimelineKind,
)
from bot.domain.evidence import entry_text, new_evidence
from bot.domain.policy import Policy
from bot.domain.postmortem import PARTS, Postmortem, PostmortemParts, save_entry
from bot.domain.updates import StatusUpdate, update_entry
from bot.export import incident_document
from bot.http_api import LIST_LIMIT
from bot.policy import load_policy
from bot.render.incident import LIST_LINES_MAX, card_blocks
from bot.render.text import cut
from bot.services.capture import MESSAGE_TEXT_MAX, dedupe_key
from bot.services.postmortem import load_record
from bot.services.surfaces import load_card_facts
from bot.services.updates import PAGE_SIZE, timeline_page
from storage.db import Database, to_db_time
from storage.deliveries import DeliveryRepo
from storage.evidence import EvidenceRepo
from storage.incidents import IncidentRepo
from storage.postmortems import PostmortemRepo
from storage.restarts import RestartRepo
from storage.rollback import RollbackRepo
from storage.timeline import TimelineRepo
from tests.slack_requests import SlackSender

START = "<!-- scale:start -->"
END = "<!-- scale:end -->"

SEED_VERSION = 1  # bump when the seeding below changes: the cached databases are rebuilt
CACHE_DIR = Path(
    os.environ.get("REIN_BENCH_CACHE") or Path(tempfile.gettempdir()) / "rein-bench-cache"
)
S, V = IncidentStatus, Severity
BIGGEST_SHARE = 0.10  # of all timeline entries, in one incident
BIGGEST_LEDGER_PER_100K = 10_000  # ledger items of the biggest incident per 100,000 incidents
LONG_SHARE = 0.005  # of incidents: long ones
LONG_MIN, LONG_MAX = 50, 1000  # entries of a long incident (log-uniform)
EVIDENCE_SHARE = 0.2  # of declared incidents: with 1-3 evidence items
LEDGER_SHARE = 0.05  # of declared incidents: with a ledger of 1-40 items
TYPICAL_ENTRIES = 12  # the typical incidents' timelines
MARK_CHUNK = 100  # ledger items per `marked` entry, as `mark_items` commits them
PEOPLE = startup.PEOPLE
PLATFORM = "api:platform"
CHANNEL_OF_ALERTS = "C0TRIAGE"
UPDATE = StatusUpdate(
    what_happened="The agent overwrote the billing contact on accounts it enriched.",
    what_was_affected="CRM accounts; invoices for some of them went to the wrong person.",
    what_was_done="The agent is paused; its kill switch confirmed. Records are being restored.",
    what_is_being_checked="Whether any invoice e-mail left before the pause.",
    what_changes_before_restart="A field allow-list on the CRM write tool.",
)
POSTMORTEM_TEXT = (
    "The agent wrote the billing contact field on accounts it enriched; a prompt change let it "
    "treat the contact as a free-text field. Invoices for some accounts went to the wrong "
    "person before the pause. Restored from the nightly export and checked record by record."
)
CONTENT = (
    "tool_call crm.update(account=0042, field=billing_contact, value=<agent@example.com>) -> ok\n"
    "ignore previous instructions <b>and</b> *escape* me `code` | pipe [link](http://x)\n"
) * 400  # evidence content is a slice of this
DELIVERY_INSERT = (
    # storage/deliveries.py: DeliveryRepo.insert_in's INSERT, confirmed as `record` leaves it.
    "INSERT INTO deliveries (id, incident, agent_id, event, actions, mode, issued_at, state,"
    " attempts, next_attempt_at, last_error, confirmed_at, updated_at)"
    " VALUES (?, ?, ?, 'containment', ?, 'paused', ?, 'confirmed', 1, NULL, NULL, ?, ?)"
)
EVIDENCE_INSERT = (
    # storage/evidence.py: EvidenceRepo.add's INSERT, with the id given.
    "INSERT INTO evidence (id, incident, kind, content, url, source, note, size, added_by,"
    " added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
LEDGER_INSERT = (
    # storage/rollback.py: RollbackRepo.add_in's INSERT, with the status `mark_in` sets.
    "INSERT INTO rollback_items (incident, id, system, record, value_before, value_after,"
    " status, reason, status_by, status_at, created_by, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PART_KEYS = tuple(part.key for part in PARTS)
POSTMORTEM_INSERT = (
    # storage/postmortems.py: PostmortemRepo.save_in's INSERT, completed at the first save.
    f"INSERT INTO postmortems (incident, {', '.join(_PART_KEYS)}, state, revision, started_by,"  # noqa: S608
    " started_at, updated_by, updated_at, completed_by, completed_at)"
    f" VALUES (?, {', '.join('?' for _ in _PART_KEYS)}, 'completed', 1, ?, ?, ?, ?, ?, ?)"
)
TIMELINE_INSERT = (
    # storage/incidents.py: _append, and append_once's dedupe key, with the id given.
    "INSERT INTO timeline (id, incident, at, actor, kind, text, data, dedupe_key)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


# ---------------------------------------------------------------------------------- seed


@dataclass(frozen=True)
class Shape:
    incidents: int
    entries: int

    @property
    def scale(self) -> float:
        return self.incidents / 100_000


@dataclass
class Target:
    """An incident the benchmark reads."""

    number: int
    status: str
    severity: str
    entries: int
    evidence: int
    ledger: int

    @property
    def ref(self) -> str:
        return f"INC-{self.number}"


@dataclass
class Seeded:
    shape: Shape
    path: str
    incidents: int
    timeline: int
    evidence: int
    evidence_bytes: int
    ledger: int
    deliveries: int
    postmortems: int
    open: int
    by_status: dict[str, int]
    biggest: Target
    typical: Target  # closed, a handful of entries: the usual export
    typical_open: Target  # open, a handful: the usual card, and where API writes go
    long_entries: int  # entries of the long incidents, all together
    long_count: int
    size_bytes: int
    build_s: float
    built_at: str
    problems: list[str] = field(default_factory=list)
    cached: bool = False

    @classmethod
    def load(cls, path: Path) -> "Seeded":
        raw = json.loads(path.read_text())
        raw["shape"] = Shape(**raw["shape"])
        for key in ("biggest", "typical", "typical_open"):
            raw[key] = Target(**raw[key])
        return cls(**raw)


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def _stamp(epoch: float) -> str:
    """`to_db_time` for a Unix time (the seeding formats over a million of them)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class Extras:
    """Everything the seeding adds to bench/startup.py's rows, as Rein's services store it."""

    def __init__(self, policy: Policy, now: datetime, rng: random.Random) -> None:
        self.policy = policy
        self.now = _epoch(now)
        self.rng = rng
        self.timeline: list[tuple[Any, ...]] = []  # (None, incident, at, actor, kind, ...)
        self.evidence: list[tuple[Any, ...]] = []  # (at, incident, kind, content, url, ...)
        self.ledger: list[tuple[Any, ...]] = []
        self.deliveries: list[tuple[Any, ...]] = []
        self.postmortems: list[tuple[Any, ...]] = []
        self.per_incident: Counter[int] = Counter()
        chat = messages(600)
        self.chat = [(m.captured_by, m.author, cut(m.text, MESSAGE_TEXT_MAX)) for m in chat]
        update = update_entry(UPDATE, actor="U0", at=now)
        self.update_text, self.update_data = update.text, json.dumps(update.data)

    def _entry(
        self, number: int, at: float, actor: str, kind: TimelineKind, text: str, data: str
    ) -> None:
        self.timeline.append((None, number, _stamp(at), actor, kind.value, text, data, None))
        self.per_incident[number] += 1

    def times(self, start: int, end: int, count: int) -> list[int]:
        return sorted(self.rng.randint(start, max(start, end)) for _ in range(count))

    def add_evidence(
        self,
        number: int,
        items: Sequence[tuple[EvidenceKind, int, str | None]],
        start: int,
        end: int,
    ) -> None:
        """Items as `EvidenceRepo.add` stores them; their entries once ids are known."""
        for (kind, size, source), at in zip(items, self.times(start, end, len(items)), strict=True):
            content = None
            if size:
                offset = self.rng.randrange(0, len(CONTENT) // 2)
                content = (CONTENT * (1 + (offset + size) // len(CONTENT)))[offset : offset + size]
            url = "https://traces.example.com/run/4711" if not size else None
            self.evidence.append((at, number, kind, content, url, source, "from the run"))

    def evidence_entries(self) -> list[tuple[Any, ...]]:
        """The evidence rows in time order with their ids, and each one's `evidence` entry
        (EvidenceRepo.add's)."""
        self.evidence.sort(key=itemgetter(0))
        rows = []
        for item_id, (at, number, kind, content, url, source, note) in enumerate(
            self.evidence, start=1
        ):
            new = new_evidence(kind, content=content, url=url, source=source, note=note)
            rows.append(
                (
                    item_id,
                    number,
                    kind.value,
                    content,
                    url,
                    source,
                    note,
                    new.size,
                    PLATFORM,
                    _stamp(at),
                )
            )
            data = {
                "evidence_id": item_id,
                "kind": kind.value,
                "bytes": new.size,
                "url": url,
                "source": source,
            }
            self._entry(
                number, at, PLATFORM, TimelineKind.EVIDENCE, entry_text(new), json.dumps(data)
            )
        return rows

    def add_ledger(self, number: int, count: int, start: int, end: int, closed: bool) -> None:
        """Items as `add_item` adds them (one `added` entry each), then marked a hundred at a
        time as `mark_items` marks them (one `marked` entry each)."""
        if count == 0:
            return
        created = self.times(start, start + (end - start) // 2, count)
        if closed:
            shares = ((RollbackStatus.RESTORED, 0.9), (RollbackStatus.ACCEPTED, 0.1))
        else:
            shares = (
                (RollbackStatus.RESTORED, 0.70),
                (RollbackStatus.ACCEPTED, 0.06),
                (RollbackStatus.NOT_REVERSIBLE, 0.03),
            )
        statuses: list[tuple[RollbackStatus, str | None]] = []
        for status, share in shares:
            reason = None if status is RollbackStatus.RESTORED else "the customer confirmed it"
            statuses += [(status, reason)] * round(count * share)
        statuses = statuses[:count]
        statuses += [(RollbackStatus.PENDING, None)] * (count - len(statuses))
        commander = self.rng.choice(PEOPLE)
        marked_at = created[-1] + max(60, (end - created[-1]) // 2)
        for item_id, at in enumerate(created, start=1):
            status, reason = statuses[item_id - 1]
            pending = status is RollbackStatus.PENDING
            system, record = "CRM", f"account/{number:06d}-{item_id:06d}"
            self.ledger.append(
                (
                    number,
                    item_id,
                    system,
                    record,
                    f"billing{item_id}@old.example",
                    f"billing{item_id}@agent.example",
                    status.value,
                    reason,
                    PLATFORM if pending else commander,
                    _stamp(at if pending else marked_at),
                    PLATFORM,
                    _stamp(at),
                )
            )
            data = {"action": "added", "item": item_id, "system": system, "record": record}
            text = f"Affected record #{item_id} added: {system} {record}"
            self._entry(number, at, PLATFORM, TimelineKind.ROLLBACK, text, json.dumps(data))
        for status, _ in shares:
            ids = [i for i, (s, _) in enumerate(statuses, start=1) if s is status]
            for low in range(0, len(ids), MARK_CHUNK):
                chunk = ids[low : low + MARK_CHUNK]
                reason = statuses[chunk[0] - 1][1]
                data = {
                    "action": "marked",
                    "status": status.value,
                    "reason": reason,
                    "items": chunk,
                    "previous": {"pending": chunk},
                }
                text = f"{len(chunk)} ledger item(s) marked {status.value}"
                self._entry(
                    number, marked_at, commander, TimelineKind.ROLLBACK, text, json.dumps(data)
                )

    def add_delivery(self, number: int, agent: str, at: int, entry: bool) -> None:
        """A confirmed containment delivery (`DeliveryRepo.record`'s result) and, for a
        closed incident, the entry the runner writes (an open one's would be news after its
        last channel status line, and Rein would post it at start)."""
        delivery_id = f"{number:032x}"
        actions = json.dumps(["pause_runs", "revoke_writes"])
        self.deliveries.append(
            (delivery_id, number, agent, actions, _stamp(at), _stamp(at + 2), _stamp(at + 2))
        )
        if entry:
            data = {"delivery": delivery_id, "state": "confirmed", "attempt": 1}
            text = "The kill switch confirmed containment (attempt 1)."
            self._entry(number, at + 2, "rein", TimelineKind.DELIVERY, text, json.dumps(data))

    def add_postmortem(self, number: int, at: int) -> None:
        """A completed postmortem, saved once (`save_in`), with its `postmortem` entry."""
        who = self.rng.choice(PEOPLE)
        parts = PostmortemParts(**{key: POSTMORTEM_TEXT for key in _PART_KEYS})
        when = datetime.fromtimestamp(at, UTC)
        saved = Postmortem(
            incident=number,
            parts=parts,
            state=PostmortemState.COMPLETED,
            revision=1,
            started_by=who,
            started_at=when,
            updated_by=who,
            updated_at=when,
            completed_by=who,
            completed_at=when,
        )
        stamp = _stamp(at)
        self.postmortems.append(
            (number, *(POSTMORTEM_TEXT for _ in _PART_KEYS), who, stamp, who, stamp, who, stamp)
        )
        entry = save_entry(saved, {key: POSTMORTEM_TEXT for key in _PART_KEYS}, actor=who, at=when)
        self._entry(number, at, who, entry.kind, entry.text, json.dumps(entry.data))

    def fill(self, number: int, channel: str, count: int, start: int, end: int) -> None:
        """Pinned messages (as `capture_message` stores them, dedupe key included) and a
        status update every 25 entries."""
        for i, at in enumerate(self.times(start, end, count)):
            if i % 25 == 12:
                self._entry(
                    number,
                    at,
                    self.rng.choice(PEOPLE),
                    TimelineKind.STATUS_UPDATE,
                    self.update_text,
                    self.update_data,
                )
                continue
            captured_by, author, text = self.chat[self.rng.randrange(len(self.chat))]
            ts = f"{at}.{i:06d}"
            data = {"channel": channel, "ts": ts, "author": author, "posted_at": _stamp(at)}
            self.timeline.append(
                (
                    None,
                    number,
                    _stamp(at),
                    captured_by,
                    TimelineKind.PINNED_MESSAGE.value,
                    text,
                    json.dumps(data),
                    dedupe_key(number, channel, ts),
                )
            )
            self.per_incident[number] += 1


def _spread(total: int, count: int, rng: random.Random) -> list[int]:
    """`count` non-negative numbers around total/count that sum to `total`."""
    if count == 0:
        return []
    mean = total / count
    out = [rng.randint(0, max(0, round(2 * mean))) for _ in range(count)]
    diff = total - sum(out)
    while diff:
        i = rng.randrange(count)
        if diff > 0:
            out[i] += 1
            diff -= 1
        elif out[i] > 0:
            out[i] -= 1
            diff += 1
    return out


def _pick(
    planned: Sequence[startup.Planned],
    wanted: Callable[[startup.Planned], bool],
    near: float,
    taken: set[int],
) -> int:
    """The number of the incident that `wanted` accepts nearest to `near` × the count."""
    goal = near * len(planned)
    found = [n for n, p in enumerate(planned, start=1) if wanted(p) and n not in taken]
    if not found:
        raise ValueError("no incident of the kind wanted: the database is too small")
    return min(found, key=lambda n: abs(n - goal))


async def seed(path: Path, shape: Shape, policy: Policy) -> Seeded:
    """Build the database at `path` (see the module's docstring)."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    await startup.migrated(path)
    planned = startup.plan_incidents(policy, shape.incidents, 0, now)
    rows = startup.Rows(policy, now)
    for number, p in enumerate(planned, start=1):
        rows.add(number, p)
    rng = random.Random(12)
    x = Extras(policy, now, rng)
    base = Counter(int(r[1]) for r in rows.timeline)
    channel = {int(r[0]): r[16] for r in rows.incidents}
    agent = {int(r[0]): str(r[3]) for r in rows.incidents}

    taken: set[int] = set()
    biggest = _pick(planned, lambda p: p.status is S.RECOVERED and p.severity is V.SEV3, 0.5, taken)
    taken.add(biggest)
    typical = _pick(planned, lambda p: p.status is S.CLOSED and p.severity is V.SEV2, 0.6, taken)
    taken.add(typical)
    typical_open = _pick(
        planned, lambda p: p.status is S.RECOVERED and p.severity is V.SEV4, 0.5, taken
    )
    taken.add(typical_open)

    def window(number: int) -> tuple[int, int]:
        """From the incident's creation to now (open) or to a few days later (closed)."""
        p = planned[number - 1]
        start = _epoch(p.at)
        if p.status.is_open:
            return start, x.now
        return start, min(x.now, start + rng.randint(2 * 3600, 5 * 86400))

    declared = [n for n, p in enumerate(planned, start=1) if not p.alert and n not in taken]
    for number, p in enumerate(planned, start=1):
        start, end = window(number)
        closed = not p.status.is_open
        if number == biggest:
            items = [(kind, size, source) for kind, size, source in BIG_EVIDENCE]
            x.add_evidence(number, items, start, end)
            ledger = max(1, round(BIGGEST_LEDGER_PER_100K * shape.scale))
            x.add_ledger(number, ledger, start, end, closed)
        elif number in (typical, typical_open):
            items = [
                (EvidenceKind.MODEL_VERSION, 40, "agent-platform"),
                (EvidenceKind.TOOL_CALLS, 2048, "agent-platform"),
            ]
            x.add_evidence(number, items, start, end)
            x.add_ledger(number, 3, start, end, closed)
        elif not p.alert:
            if rng.random() < EVIDENCE_SHARE:
                kinds = rng.sample(list(EvidenceKind), rng.randint(1, 3))
                x.add_evidence(
                    number, [(k, rng.randint(100, 1500), None) for k in kinds], start, end
                )
            if rng.random() < LEDGER_SHARE:
                x.add_ledger(number, rng.randint(1, 40), start, end, closed)
        if not p.alert and (
            p.contained_at is not None or (closed and p.severity in (V.SEV1, V.SEV2))
        ):
            at = _epoch(p.contained_at) if p.contained_at else start + 600
            x.add_delivery(number, agent[number], at, entry=closed)
        if p.status in (S.POSTMORTEM, S.CLOSED) and p.severity in (V.SEV1, V.SEV2):
            x.add_postmortem(number, start + (end - start) * 3 // 4)
    evidence_rows = x.evidence_entries()

    # Filler, to exactly `shape.entries`.
    def has(number: int) -> int:
        return base[number] + x.per_incident[number]

    biggest_total = round(shape.entries * BIGGEST_SHARE)
    fills = {biggest: biggest_total - has(biggest)}
    fills[typical] = TYPICAL_ENTRIES - has(typical)
    fills[typical_open] = TYPICAL_ENTRIES - has(typical_open)
    long_count = max(1, round(shape.incidents * LONG_SHARE))
    longs = rng.sample(declared, long_count)
    top = min(LONG_MAX, biggest_total // 2)
    for number in longs:
        size = round(math.exp(rng.uniform(math.log(LONG_MIN), math.log(top))))
        fills[number] = max(0, size - has(number))
    rest = [n for n in range(1, shape.incidents + 1) if n not in fills]
    left = shape.entries - sum(base.values()) - len(x.timeline) - sum(fills.values())
    if min(fills.values()) < 0 or left < 0:
        raise ValueError(f"{shape}: too few entries for the incidents and their records")
    fills.update(zip(rest, _spread(left, len(rest), rng), strict=True))
    for number, count in fills.items():
        if count:
            start, end = window(number)
            x.fill(number, channel[number] or CHANNEL_OF_ALERTS, count, start, end)

    # Every entry numbered in time order; a channel status line names the renumbered entry.
    merged = [(*r, None) for r in rows.timeline] + x.timeline
    merged.sort(key=itemgetter(2))
    renumbered: dict[int, int] = {}
    timeline: list[tuple[Any, ...]] = []
    posted = TimelineKind.STATUS_POSTED.value
    for new_id, row in enumerate(merged, start=1):
        if row[0] is not None:
            renumbered[row[0]] = new_id
        data = row[6]
        if row[4] == posted:
            loaded = json.loads(data)
            loaded["through"] = renumbered[loaded["through"]]
            data = json.dumps(loaded)
        timeline.append((new_id, row[1], row[2], row[3], row[4], row[5], data, row[7]))
    del merged

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -400000")  # the build's index inserts, not Rein's
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(startup.INCIDENT_INSERT, rows.incidents)
        conn.executemany(TIMELINE_INSERT, timeline)
        conn.executemany(EVIDENCE_INSERT, evidence_rows)
        conn.executemany(LEDGER_INSERT, x.ledger)
        conn.executemany(DELIVERY_INSERT, x.deliveries)
        conn.executemany(POSTMORTEM_INSERT, x.postmortems)
        conn.execute("COMMIT")
    finally:
        conn.close()
    counts = Counter(int(r[1]) for r in timeline)
    evidence_count = Counter(int(r[1]) for r in evidence_rows)
    ledger_count = Counter(int(r[0]) for r in x.ledger)

    def target(number: int) -> Target:
        p = planned[number - 1]
        return Target(
            number,
            p.status.value,
            p.severity.value,
            counts[number],
            evidence_count[number],
            ledger_count[number],
        )

    problems = await startup.check(path, policy, now, rows, planned, 0)
    seeded = Seeded(
        shape=shape,
        path=str(path),
        incidents=len(rows.incidents),
        timeline=len(timeline),
        evidence=len(evidence_rows),
        evidence_bytes=sum(int(r[7]) for r in evidence_rows),
        ledger=len(x.ledger),
        deliveries=len(x.deliveries),
        postmortems=len(x.postmortems),
        open=sum(1 for p in planned if p.status.is_open),
        by_status=dict(Counter(p.status.value for p in planned).most_common()),
        biggest=target(biggest),
        typical=target(typical),
        typical_open=target(typical_open),
        long_entries=sum(counts[n] for n in longs),
        long_count=long_count,
        size_bytes=0,
        build_s=0.0,
        built_at=to_db_time(now),
        problems=problems,
    )
    seeded.problems += await verify(seeded, x)
    seeded.size_bytes = startup._checkpoint(path)
    seeded.build_s = time.perf_counter() - started
    return seeded


async def verify(seeded: Seeded, x: Extras) -> list[str]:
    """The seeded rows read back through Rein's repositories."""
    problems = []
    if seeded.timeline != seeded.shape.entries:
        problems.append(f"{seeded.timeline} timeline entries, {seeded.shape.entries} wanted")
    # A filler entry is what `capture_message` stores for that message (its own `entry_for`).
    sample = next(r for r in x.timeline if r[4] == TimelineKind.PINNED_MESSAGE.value)
    data = json.loads(sample[6])
    message = next(
        m
        for m in messages(600)
        if m.captured_by == sample[3] and cut(m.text, MESSAGE_TEXT_MAX) == sample[5]
    )
    stored = entry_for(
        Message(data["channel"], data["ts"], data["author"], message.text, message.captured_by),
        datetime.fromisoformat(sample[2]),
    )
    if (stored.text, stored.data) != (sample[5], data):
        problems.append("a filler entry differs from what capture_message stores")
    db = await Database.open(seeded.path)
    try:
        incidents, timeline = IncidentRepo(db), TimelineRepo(db)
        for t in (seeded.biggest, seeded.typical, seeded.typical_open):
            if await timeline.count(t.number) != t.entries:
                problems.append(f"{t.ref}: the timeline count differs")
            record = await load_record(
                t.number,
                incidents=incidents,
                evidence=EvidenceRepo(db),
                rollback=RollbackRepo(db),
                postmortems=PostmortemRepo(db),
            )
            if record is None or len(record.timeline) != t.entries:
                problems.append(f"{t.ref}: load_record did not read its timeline")
                continue
            if len(record.evidence) != t.evidence or len(record.rollback) != t.ledger:
                problems.append(f"{t.ref}: evidence or ledger differ")
            incident_document(
                record.incident,
                record.timeline,
                evidence=record.evidence,
                rollback=record.rollback,
                postmortem=record.postmortem,
            )
            record.markdown()
    finally:
        await db.close()
    return problems


def cache_key(shape: Shape) -> str:
    """The migrations, the seeding's version and bench/startup.py (whose rows it reuses)."""
    digest = hashlib.sha256()
    migrations = resources.files("storage.migrations")
    names = sorted(e.name for e in migrations.iterdir() if e.name.endswith(".sql"))
    for name in names:
        digest.update(name.encode() + (migrations / name).read_bytes())
    digest.update((ROOT / "bench" / "startup.py").read_bytes())
    digest.update(f"{SEED_VERSION}:{shape.incidents}:{shape.entries}".encode())
    schema = names[-1].split("_", 1)[0] if names else "0000"
    return f"scale-s{schema}-{shape.incidents}-{shape.entries}-{digest.hexdigest()[:12]}"


def _cached(shape: Shape, rebuild: bool) -> tuple[Path, Path, Seeded | None]:
    """The cache's files for `shape` and what they hold, if they are there and wanted. Files
    of this shape made for other migrations or another seeding are removed."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    key = cache_key(shape)
    db, meta = CACHE_DIR / f"{key}.db", CACHE_DIR / f"{key}.json"
    for old in CACHE_DIR.glob(f"scale-s*-{shape.incidents}-{shape.entries}-*"):
        if not old.name.startswith(f"{key}."):
            old.unlink(missing_ok=True)
    if db.exists() and meta.exists() and not rebuild:
        seeded = Seeded.load(meta)
        seeded.cached = True
        return db, meta, seeded
    for stale in (db, meta, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    return db, meta, None


def _store(building: Path, db: Path, meta: Path, seeded: Seeded) -> None:
    """The built file into the cache, under its key, with what it holds beside it."""
    for ext in ("-wal", "-shm"):
        building.with_name(building.name + ext).unlink(missing_ok=True)
    os.replace(building, db)
    seeded.path = str(db)
    meta.write_text(json.dumps(asdict(seeded), indent=1))


async def seeded_database(shape: Shape, policy: Policy, rebuild: bool) -> Seeded:
    """The cached database for `shape`, built when the cache has none for this schema."""
    db, meta, seeded = _cached(shape, rebuild)
    if seeded is not None:
        return seeded
    building = db.with_name(f"{db.stem}.building-{os.getpid()}.db")
    try:
        seeded = await seed(building, shape, policy)
        _store(building, db, meta, seeded)
    finally:
        for ext in ("", "-wal", "-shm"):
            building.with_name(building.name + ext).unlink(missing_ok=True)
    return seeded


# ------------------------------------------------------------------------------- measure

SIDES = ("small", "big")
SETTLE_QUIET = 1.0  # seconds without CPU in a Rein before it counts as idle after start
SETTLE_MIN = 4.0  # the channel status catch-up runs three seconds after start
SETTLE_TIMEOUT = 90.0
NO_SUCH = "INC-999999999"


@dataclass
class Plan:
    """How many samples of each kind: (warm-up, rounds, per side and round)."""

    cheap: tuple[int, int, int] = (10, 10, 20)  # card, timeline page, GET typical
    lists: tuple[int, int, int] = (5, 10, 10)  # GET /v1/incidents, /incident list
    writes: tuple[int, int, int] = (2, 10, 5)  # POST evidence / rollback
    biggest_get: tuple[int, int, int] = (1, 5, 1)  # GET the biggest incident
    exports: int = 3  # `rein export` processes per side, incident and format
    exports_biggest: int = 2  # … of the biggest incident

    @classmethod
    def quick(cls) -> "Plan":
        return cls((2, 2, 5), (2, 2, 5), (1, 2, 2), (0, 2, 1), 1, 1)


@dataclass
class Op:
    """One operation measured on both databases: milliseconds per side."""

    key: str
    group: str
    label: str
    target: str  # "typical", "typical_open", "biggest" or "" (the whole database)
    ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SIDES})
    peak_mb: dict[str, float] = field(default_factory=dict)  # export processes: max RSS
    answered: dict[str, int] = field(default_factory=dict)  # lists: incidents in the answer
    size: dict[str, int] = field(default_factory=dict)  # bytes answered or written

    def p(self, side: str, q: float) -> float:
        return pct(self.ms[side], q)

    def ratio(self, q: float) -> float:
        return self.p("big", q) / self.p("small", q)


@dataclass
class Side:
    name: str
    seeded: Seeded
    copy: Path  # the database this run reads and writes
    workdir: Path
    db: Database | None = None
    server: Server | None = None
    sender: SlackSender | None = None
    peak_kb: dict[str, int] = field(default_factory=dict)  # Rein's VmHWM after each group

    def target(self, key: str) -> Target:
        return getattr(self.seeded, key)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{servers.HOST}:{self.server.info['port']}"


Sample = Callable[[Side], Awaitable[float]]


async def alternate(
    op: Op, sides: Sequence[Side], sample: Sample, counts: tuple[int, int, int]
) -> Op:
    """Warm-up, then rounds of samples, the two databases in turn (the order flips every
    round), so both see the same machine."""
    warmup, rounds, each = counts
    for side in sides:
        for _ in range(warmup):
            await sample(side)
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            for _ in range(each):
                op.ms[side.name].append(await sample(side))
    return op


class Problems(list[str]):
    def check(self, ok: bool, text: str) -> None:
        if not ok and text not in self:
            self.append(text)


# ------------------------------------------------------------------- card, page, export


def card_repos(db: Database, policy: Policy) -> dict[str, Any]:
    """`load_card_facts`'s keyword arguments, as `Rein.card_facts` (bot/context.py) passes
    them."""
    return {
        "deliveries": DeliveryRepo(db),
        "evidence": EvidenceRepo(db),
        "rollback": RollbackRepo(db),
        "timeline": TimelineRepo(db),
        "postmortems": PostmortemRepo(db),
        "policy": policy,
        "restarts": RestartRepo(db),
    }


async def measure_cards(
    sides: Sequence[Side], policy: Policy, plan: Plan, problems: Problems
) -> list[Op]:
    ops = []
    for key, label in (
        ("typical_open", "an open incident, a handful of entries"),
        ("biggest", "the biggest incident"),
    ):
        expected = {}
        for side in sides:
            assert side.db is not None
            counts = await RollbackRepo(side.db).counts(side.target(key).number)
            expected[side.name] = f"{counts.restored} of {counts.total} restored"

        async def refresh(side: Side, key: str = key, expected: dict = expected) -> float:
            assert side.db is not None
            number = side.target(key).number
            repos = card_repos(side.db, policy)
            t0 = time.perf_counter()
            incident = await IncidentRepo(side.db).get(number)
            assert incident is not None
            facts = await load_card_facts(number, **repos)
            blocks = card_blocks(incident, policy.agent(incident.agent_id), facts)
            ms = (time.perf_counter() - t0) * 1000
            problems.check(
                expected[side.name] in json.dumps(blocks),
                f"{side.name} {key}: the card did not show its ledger",
            )
            return ms

        ops.append(
            await alternate(
                Op(f"card_{key}", "card", f"Card: {label}", key), sides, refresh, plan.cheap
            )
        )
    for key in ("typical_open", "biggest"):
        for which, page in (("latest", None), ("first", 1)):

            async def paged(side: Side, key: str = key, page: int | None = page) -> float:
                assert side.db is not None
                t = side.target(key)
                t0 = time.perf_counter()
                shown = await timeline_page(
                    t.number, page, incidents=IncidentRepo(side.db), timeline=TimelineRepo(side.db)
                )
                ms = (time.perf_counter() - t0) * 1000
                problems.check(
                    shown.total == t.entries and bool(shown.entries),
                    f"{side.name} {key}: timeline_page read another timeline",
                )
                return ms

            label = f"`/incident timeline`: its {which} page (`timeline_page`)"
            ops.append(
                await alternate(
                    Op(f"page_{which}_{key}", "card", label, key), sides, paged, plan.cheap
                )
            )

    async def offset_page(side: Side) -> float:
        """What `timeline_page` read for the latest page before: the count, then an OFFSET
        walked from the oldest entry."""
        assert side.db is not None
        timeline, number = TimelineRepo(side.db), side.target("biggest").number
        t0 = time.perf_counter()
        total = await timeline.count(number)
        size = PAGE_SIZE
        shown = await timeline.page(number, (max(1, -(-total // size)) - 1) * size, size)
        ms = (time.perf_counter() - t0) * 1000
        problems.check(bool(shown), f"{side.name}: the OFFSET page was empty")
        return ms

    label = "… its latest page as read before this change (count, then OFFSET from the oldest)"
    ops.append(
        await alternate(
            Op("page_latest_offset_biggest", "card", label, "biggest"),
            sides,
            offset_page,
            plan.cheap,
        )
    )
    return ops


def _export_env(db: Path) -> dict[str, str]:
    """Only what `rein export` needs: nothing else of this environment (no REIN_*)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT")
    return {**{k: v for k, v in os.environ.items() if k in keep}, "REIN_DB_PATH": str(db)}


# In front of a child's code: as it exits, it writes its peak RSS (VmHWM of its own memory
# map, kB) to the file its first argument names. Not the child's rusage: Linux carries into
# `ru_maxrss` the peak of the memory map a child was forked from, this (big) process's.
PEAK_PROLOGUE = """import atexit, pathlib, sys
_peak_to = sys.argv.pop(1)
def _peak():
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            pathlib.Path(_peak_to).write_text(line.split()[1])
atexit.register(_peak)
"""
# `python -m bot ARGS…` (`rein export …`) after the prologue.
REIN_MODULE = """import runpy
sys.argv = sys.argv[1:]
runpy.run_module("bot", run_name="__main__", alter_sys=True)
"""


def measured_process(side: Side, code: str, args: Sequence[str]) -> tuple[float, int, int]:
    """`python -c PROLOGUE+CODE ARGS…` with only `REIN_DB_PATH` and `PATH` from us:
    milliseconds from spawn to exit, its peak RSS (kB), its exit code."""
    peak = side.workdir / "peak.kb"
    peak.unlink(missing_ok=True)
    with (side.workdir / "exports.log").open("ab") as log:
        t0 = time.perf_counter()
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-c", PEAK_PROLOGUE + code, str(peak), *args],
            cwd=side.workdir,
            env=_export_env(side.copy),
            stdout=subprocess.DEVNULL,
            stderr=log,
            check=False,
        )
        ms = (time.perf_counter() - t0) * 1000
    return ms, int(peak.read_text()) if peak.exists() else 0, done.returncode


def export_process(side: Side, ref: str, fmt: str, out: Path) -> tuple[float, int, int]:
    """`rein export REF --format FMT --output OUT` (`python -m bot export …`)."""
    out.unlink(missing_ok=True)
    args = ["bot", "export", ref, "--format", fmt, "--output", str(out)]
    return measured_process(side, REIN_MODULE, args)


async def measure_exports(sides: Sequence[Side], plan: Plan, problems: Problems) -> list[Op]:
    ops = []
    cases = [
        ("floor", "", NO_SUCH, "md", "`rein export` of an incident that does not exist"),
        ("md_typical", "typical", "", "md", "`rein export --format md`: a typical incident"),
        ("json_typical", "typical", "", "json", "`rein export --format json`: a typical incident"),
        ("md_biggest", "biggest", "", "md", "`rein export --format md`: the biggest incident"),
        (
            "json_biggest",
            "biggest",
            "",
            "json",
            "`rein export --format json`: the biggest incident",
        ),
    ]
    cases += [
        (
            "md_biggest_before",
            "biggest",
            "",
            "md",
            "… the biggest, the whole record in memory, as before",
        ),
        (
            "json_biggest_before",
            "biggest",
            "",
            "json",
            "… the biggest as JSON, the whole record in memory, as before",
        ),
    ]
    written: dict[tuple[str, str], str] = {}  # (side, format): the streamed file's digest
    for key, target, ref, fmt, label in cases:
        op = Op(f"export_{key}", "export", label, target)
        before = key.endswith("_before")
        for r in range(plan.exports_biggest if target == "biggest" else plan.exports):
            for side in sides if r % 2 == 0 else sides[::-1]:
                out = side.workdir / f"export.{fmt}"
                name = ref or side.target(target).ref
                if before:
                    run = in_memory_process, side, side.target(target).number, fmt, out
                else:
                    run = export_process, side, name, fmt, out
                ms, peak_kb, code = await asyncio.to_thread(*run)
                op.ms[side.name].append(ms)
                op.peak_mb[side.name] = max(op.peak_mb.get(side.name, 0.0), peak_kb * 1024 / 1e6)
                wanted = 1 if ref else 0
                problems.check(code == wanted, f"{side.name} {key}: the export exited {code}")
                if not ref and out.exists():
                    op.size[side.name] = out.stat().st_size
                    if target == "biggest":
                        digest = await asyncio.to_thread(_digest, out)
                        seen = written.setdefault((side.name, fmt), digest)
                        problems.check(
                            seen == digest,
                            f"{side.name} {fmt}: the export differs from the one before",
                        )
        ops.append(op)
    return ops


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# `rein export` as it was before it streamed (bot/cli.py: `_export` at 3269716), and as Share
# postmortem still reads the record: all of it into memory, then the document, then the file.
IN_MEMORY_EXPORT = """
import asyncio, json, sys
from pathlib import Path
from bot.export import incident_document
from bot.services.postmortem import load_record
from storage.db import Database
from storage.evidence import EvidenceRepo
from storage.incidents import IncidentRepo
from storage.postmortems import PostmortemRepo
from storage.rollback import RollbackRepo

async def main(path, number, fmt, output):
    db = await Database.open(path)
    try:
        record = await load_record(number, incidents=IncidentRepo(db), evidence=EvidenceRepo(db),
                                   rollback=RollbackRepo(db), postmortems=PostmortemRepo(db))
    finally:
        await db.close()
    if fmt == "json":
        document = incident_document(record.incident, record.timeline, evidence=record.evidence,
                                     rollback=record.rollback, postmortem=record.postmortem)
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\\n"
    else:
        text = record.markdown()
    Path(output).write_text(text, encoding="utf-8")

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
"""


def in_memory_process(side: Side, number: int, fmt: str, out: Path) -> tuple[float, int, int]:
    """The export as it was before, in a process of its own."""
    out.unlink(missing_ok=True)
    return measured_process(side, IN_MEMORY_EXPORT, [str(side.copy), str(number), fmt, str(out)])


# ---------------------------------------------------------------------------------- HTTP


class Answers:
    """A response_url server in this process: when Rein's answer to a slash command
    arrives."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[tuple[float, Any]]] = {}
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/response/{key}", self._answer)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, servers.HOST, 0)
        await site.start()
        self.base = f"http://{servers.HOST}:{self.runner.addresses[0][1]}/response/"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _answer(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        body = await request.json()
        future = self.waiting.get(request.match_info["key"])
        if future is not None and not future.done():
            future.set_result((arrived, body))
        return web.json_response({"ok": True})

    def urls(self, prefix: str) -> "AnswerUrls":
        return AnswerUrls(self, prefix)


@dataclass
class AnswerUrls:
    """What SlackSender asks its `fake` for: each response_url it hands out is awaited."""

    answers: Answers
    prefix: str
    last: str = ""

    def response_url(self, key: str) -> str:
        self.last = f"{self.prefix}{key}"
        self.answers.waiting[self.last] = asyncio.get_running_loop().create_future()
        return f"{self.answers.base}{self.last}"


async def settle(sides: Sequence[Side]) -> float:
    """Seconds until every Rein has used no CPU for `SETTLE_QUIET` (start-up's background
    work: the sweep of open incidents, the channel status catch-up)."""
    t0 = time.perf_counter()
    last = {s.name: -1.0 for s in sides}
    quiet_since = {s.name: t0 for s in sides}
    while True:
        await asyncio.sleep(0.1)
        now = time.perf_counter()
        for side in sides:
            assert side.server is not None
            cpu = side.server.cpu_seconds()
            if cpu != last[side.name]:
                last[side.name], quiet_since[side.name] = cpu, now
        if now - t0 >= SETTLE_MIN and all(now - q >= SETTLE_QUIET for q in quiet_since.values()):
            return now - t0
        if now - t0 > SETTLE_TIMEOUT:
            raise RuntimeError(f"Rein was still busy {SETTLE_TIMEOUT:.0f} s after start")


HEADERS = {"Authorization": f"Bearer {servers.API_TOKEN}"}


async def measure_http(
    sides: Sequence[Side],
    session: aiohttp.ClientSession,
    answers: Answers,
    plan: Plan,
    problems: Problems,
) -> list[Op]:
    ops: list[Op] = []

    async def get(side: Side, path: str) -> tuple[float, int, bytes]:
        t0 = time.perf_counter()
        async with session.get(side.url + path, headers=HEADERS) as response:
            body = await response.read()
        return (time.perf_counter() - t0) * 1000, response.status, body

    worst: dict[str, float] = {}
    answered: dict[str, dict[str, int]] = {key: {} for key in ("all", "open", "closed", "triage")}
    label = "… meanwhile, the longest `GET /healthz` on the same Rein (a request every 20 ms)"
    waited = Op("stall_biggest", "api", label, "biggest")

    async def stalled(side: Side) -> None:
        """`/healthz` every 20 ms on its own connection: the longest answer, in `worst`."""
        async with aiohttp.ClientSession() as own:
            while True:
                t0 = time.perf_counter()
                async with own.get(f"{side.url}/healthz") as response:
                    await response.read()
                took = (time.perf_counter() - t0) * 1000
                worst[side.name] = max(worst.get(side.name, 0.0), took)
                await asyncio.sleep(0.02)

    lists = (
        ("all", "", lambda s: s.seeded.incidents),
        ("open", "?status=open", lambda s: s.seeded.open),
        ("closed", "?status=closed", lambda s: s.seeded.by_status.get("closed", 0)),
        ("triage", "?status=triage", lambda s: s.seeded.by_status.get("triage", 0)),
    )
    for key, query, total in lists:

        async def listed(
            side: Side, query: str = query, total: Callable = total, key: str = key
        ) -> float:
            ms, status, body = await get(side, f"/v1/incidents{query}")
            found = json.loads(body)["incidents"] if status == 200 else []
            answered[key][side.name] = len(found)
            problems.check(
                status == 200 and len(found) == min(total(side), LIST_LIMIT),
                f"{side.name} list {key}: {status}, {len(found)} incidents",
            )
            return ms

        label = f"`GET /v1/incidents{query}`"
        op = await alternate(Op(f"list_{key}", "list", label, ""), sides, listed, plan.lists)
        op.answered = answered[key]
        ops.append(op)

    async def slash_list(side: Side) -> float:
        assert side.sender is not None
        urls = side.sender.fake
        t0 = time.perf_counter()
        status, _ = await side.sender.command("list", user="U0ALICE")
        try:
            arrived, body = await asyncio.wait_for(answers.waiting[urls.last], 30)
        finally:
            answers.waiting.pop(urls.last, None)
        shown = min(side.seeded.open, LIST_LINES_MAX)
        slash.answered[side.name] = shown
        problems.check(
            status == 200 and body.get("text") == f"Open incidents: {shown}",
            f"{side.name} /incident list: {status} {str(body)[:80]}",
        )
        return (arrived - t0) * 1000

    label = "`/incident list` (signed, through Bolt; until the answer)"
    slash = Op("slash_list", "list", label, "")
    ops.append(await alternate(slash, sides, slash_list, plan.lists))

    for key, counts in (
        ("typical", plan.cheap),
        ("typical_open", plan.cheap),
        ("biggest", plan.biggest_get),
    ):
        op = Op(f"get_{key}", "api", "`GET /v1/incidents/{ref}`", key)

        async def fetched(side: Side, key: str = key, op: Op = op) -> float:
            t = side.target(key)
            watch = None
            if key == "biggest":  # how long another request waits behind this one
                watch = asyncio.create_task(stalled(side))
                await asyncio.sleep(0.05)
            ms, status, body = await get(side, f"/v1/incidents/{t.ref}")
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
                waited.ms[side.name].append(worst.pop(side.name, math.nan))
            document = json.loads(body) if status == 200 else {}
            problems.check(
                len(document.get("timeline", ())) == t.entries
                and len(document.get("rollback", ())) == t.ledger,
                f"{side.name} GET {t.ref}: {status}, another record",
            )
            op.size[side.name] = len(body)
            return ms

        ops.append(await alternate(op, sides, fetched, counts))
        for side in sides:
            assert side.server is not None
            side.peak_kb[key] = startup.proc_status(side.server.process.pid)["VmHWM"]
    ops.append(waited)

    written = Counter[str]()
    for kind in ("evidence", "rollback"):
        for key in ("typical_open", "biggest"):

            async def post(side: Side, kind: str = kind, key: str = key) -> float:
                written[side.name] += 1
                n = written[side.name]
                if kind == "evidence":
                    body: dict[str, Any] = {
                        "kind": "reviewer_notes",
                        "source": "bench",
                        "content": f"note {n}: " + CONTENT[:300],
                    }
                else:
                    body = {
                        "system": "CRM",
                        "record": f"bench/{n:06d}",
                        "before": "a@x.example",
                        "after": "b@x.example",
                    }
                url = f"{side.url}/v1/incidents/{side.target(key).ref}/{kind}"
                t0 = time.perf_counter()
                async with session.post(url, json=body, headers=HEADERS) as response:
                    await response.read()
                ms = (time.perf_counter() - t0) * 1000
                problems.check(
                    response.status == 201, f"{side.name} POST {kind} {key}: {response.status}"
                )
                return ms

            label = f"`POST /v1/incidents/{{ref}}/{kind}`"
            ops.append(
                await alternate(
                    Op(f"post_{kind}_{key}", "api", label, key), sides, post, plan.writes
                )
            )
            await settle(sides)  # the card refreshes each write asked for
    return ops


# ---------------------------------------------------------------------------------- run


def own_cpu() -> float:
    """CPU seconds of this process and of its children that have ended (Reins, exports)."""
    mine, theirs = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return mine.ru_utime + mine.ru_stime + theirs.ru_utime + theirs.ru_stime


@dataclass
class Result:
    sides: dict[str, Seeded]
    ops: list[Op]
    copy_s: float
    settle_s: float
    peak_kb: dict[str, dict[str, int]]
    rss_idle_kb: dict[str, int]
    problems: list[str]
    run_s: float
    others_cores: float

    def op(self, key: str) -> Op:
        return next(o for o in self.ops if o.key == key)


async def bench(shapes: dict[str, Shape], plan: Plan, rebuild: bool) -> Result:
    started = time.perf_counter()
    busy0, own0 = machine_busy_seconds(), own_cpu()
    policy = load_policy(str(servers.POLICY))
    seeded = {}
    for name in SIDES:
        seeded[name] = await seeded_database(shapes[name], policy, rebuild)
        s = seeded[name]
        built = " (cached)" if s.cached else f", built in {s.build_s:.0f} s"
        print(f"{name}: {s.incidents:,} incidents, {s.timeline:,} entries{built}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="rein-bench-scale-"))
    problems = Problems(p for s in seeded.values() for p in s.problems)
    keep = False
    try:
        t0 = time.perf_counter()
        sides = []
        for name in SIDES:
            side_dir = workdir / name
            (side_dir / "data").mkdir(parents=True)
            copy = side_dir / "data" / "rein.db"
            await asyncio.to_thread(shutil.copyfile, seeded[name].path, copy)
            copy.chmod(0o600)
            sides.append(Side(name, seeded[name], copy, side_dir))
        copy_s = time.perf_counter() - t0
        ops: list[Op] = []
        for side in sides:
            side.db = await Database.open(str(side.copy))
        try:
            ops += await measure_cards(sides, policy, plan, problems)
            print("card and timeline page measured", flush=True)
        finally:
            for side in sides:
                if side.db is not None:
                    await side.db.close()
                    side.db = None
        ops += await measure_exports(sides, plan, problems)
        print("exports measured", flush=True)
        answers = Answers()
        await answers.start()
        fake = await start_server("fake", workdir)
        try:
            api_url = fake.info["api_url"]
            for side in sides:
                side.server = await start_server(
                    "rein", side.workdir, "--api-url", api_url, "--workdir", str(side.workdir)
                )
            settle_s = await settle(sides)
            rss_idle = {
                s.name: startup.proc_status(s.server.process.pid)["VmRSS"]
                for s in sides
                if s.server
            }
            async with aiohttp.ClientSession() as session:
                for side in sides:
                    side.sender = SlackSender(
                        f"{side.url}/slack/events", answers.urls(f"{side.name}-"), session
                    )
                ops += await measure_http(sides, session, answers, plan, problems)
        finally:
            for side in sides:
                if side.server is not None:
                    await stop_server(side.server)
            await stop_server(fake)
            await answers.stop()
        for side in sides:
            assert side.server is not None
            for line in side.server.log.read_text(errors="replace").splitlines():
                if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                    problems.check(False, f"{side.name} Rein: {line[:200]}")
        wall = time.perf_counter() - started
        others = max(0.0, machine_busy_seconds() - busy0 - (own_cpu() - own0)) / wall
        return Result(
            sides=seeded,
            ops=ops,
            copy_s=copy_s,
            settle_s=settle_s,
            peak_kb={s.name: s.peak_kb for s in sides},
            rss_idle_kb=rss_idle,
            problems=list(problems),
            run_s=wall,
            others_cores=others,
        )
    except BaseException:
        keep = True
        print(f"files kept in {workdir}", file=sys.stderr)
        raise
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------- report

# `GET /v1/incidents/{ref}` of the biggest incident before it streamed (revision 3269716, the
# whole record in memory, then `web.json_response`), measured once on this machine with this
# benchmark's big database; that code is gone, so it cannot be measured in the same run.
API_BEFORE = {"get_ms": 5102.0, "stall_ms": 2801.0, "idle_mb": 68.0, "peak_mb": 450.0}


def _ms(value: float) -> str:
    if math.isnan(value):
        return "–"
    if value >= 100:
        return f"{value:,.0f} ms"
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def _x(value: float) -> str:
    return "–" if math.isnan(value) or math.isinf(value) else f"{value:.2f}×"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


TARGET_LABELS = {
    "": "–",
    "typical": "typical (closed)",
    "typical_open": "typical (open)",
    "biggest": "the biggest",
}


def _pq(op: Op, side: str) -> str:
    return f"{_ms(op.p(side, 50))} / {_ms(op.p(side, 99))}"


def _table(ops: Sequence[Op]) -> str:
    rows = [
        "| Operation | Incident | Small: p50 / p99 | Big: p50 / p99 | Big ÷ small: p50 / p99 "
        "| Samples |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for op in ops:
        rows.append(
            f"| {op.label} | {TARGET_LABELS[op.target]} | {_pq(op, 'small')} | {_pq(op, 'big')}"
            f" | **{_x(op.ratio(50))}** / {_x(op.ratio(99))}"
            f" | {len(op.ms['small'])} + {len(op.ms['big'])} |"
        )
    return "\n".join(rows)


def _per_item(op: Op) -> float:
    """Big ÷ small of p50 per incident answered."""
    small, big = op.answered.get("small", 0), op.answered.get("big", 0)
    if not small or not big:
        return math.nan
    return (op.p("big", 50) / big) / (op.p("small", 50) / small)


def _list_table(ops: Sequence[Op]) -> str:
    rows = [
        "| Operation | Answered: small / big | Small: p50 / p99 | Big: p50 / p99 "
        "| Big ÷ small: p50 / p99 | … per incident answered, p50 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for op in ops:
        rows.append(
            f"| {op.label} | {op.answered.get('small', 0):,} / {op.answered.get('big', 0):,}"
            f" | {_pq(op, 'small')} | {_pq(op, 'big')}"
            f" | {_x(op.ratio(50))} / {_x(op.ratio(99))} | **{_x(_per_item(op))}** |"
        )
    return "\n".join(rows)


def _per_entry(result: Result, op: Op) -> float:
    """Big ÷ small of p50 per timeline entry of the biggest incident: 1× is linear in it."""
    small, big = result.sides["small"].biggest.entries, result.sides["big"].biggest.entries
    return (op.p("big", 50) / big) / (op.p("small", 50) / small)


def _export_table(result: Result) -> str:
    rows = [
        "| Export | Incident | Small: p50, peak RSS, file | Big: p50, peak RSS, file "
        "| Big ÷ small: time, peak RSS |",
        "|---|---|---:|---:|---:|",
    ]
    for op in (o for o in result.ops if o.group == "export"):

        def cell(side: str, op: Op = op) -> str:
            out = f", {_mb(op.size[side])}" if side in op.size else ""
            return f"{_ms(op.p(side, 50))}, {op.peak_mb.get(side, 0):.0f} MB{out}"

        rss = op.peak_mb.get("big", 0) / max(op.peak_mb.get("small", 1), 1e-9)
        rows.append(
            f"| {op.label} | {TARGET_LABELS[op.target]} | {cell('small')} | {cell('big')}"
            f" | **{_x(op.ratio(50))}**, {_x(rss)} |"
        )
    return "\n".join(rows)


def _databases(result: Result) -> str:
    s, b = result.sides["small"], result.sides["big"]

    def both(f: Callable[[Seeded], str]) -> str:
        return f"| {f(s)} | {f(b)} |"

    def target(t: Target) -> str:
        return (
            f"{t.ref} ({t.status}, {t.severity}): {t.entries:,} entries, {t.ledger:,} ledger"
            f" items, {t.evidence} evidence items"
        )

    def file(x: Seeded) -> str:
        return _mb(x.size_bytes) + (" (cached)" if x.cached else f" (built in {x.build_s:.0f} s)")

    return "\n".join(
        [
            "| | Small (the baseline) | Big |",
            "|---|---:|---:|",
            "| Incidents " + both(lambda x: f"{x.incidents:,}"),
            "| … open (every status but closed and dismissed) " + both(lambda x: f"{x.open:,}"),
            "| Timeline entries " + both(lambda x: f"{x.timeline:,}"),
            "| The biggest incident " + both(lambda x: target(x.biggest)),
            "| Long incidents (50 to 1,000 entries) "
            + both(lambda x: f"{x.long_count:,}, {x.long_entries:,} entries in all"),
            "| A typical closed incident " + both(lambda x: target(x.typical)),
            "| A typical open incident " + both(lambda x: target(x.typical_open)),
            "| Evidence items " + both(lambda x: f"{x.evidence:,} ({_mb(x.evidence_bytes)})"),
            "| Ledger items " + both(lambda x: f"{x.ledger:,}"),
            "| Kill-switch deliveries, completed postmortems "
            + both(lambda x: f"{x.deliveries:,}, {x.postmortems:,}"),
            "| File " + both(file),
        ]
    )


def _changes(result: Result) -> str:
    """What scale showed and what was changed, before and after."""
    o = result.op
    md, md0 = o("export_md_biggest"), o("export_md_biggest_before")
    js, js0 = o("export_json_biggest"), o("export_json_biggest_before")
    get, stall = o("get_biggest"), o("stall_biggest")
    page, page0 = o("page_latest_biggest"), o("page_latest_offset_biggest")
    b = result.sides["big"].biggest
    hwm = result.peak_kb.get("big", {}).get("biggest", 0) / 1024
    idle = result.rss_idle_kb.get("big", 0) / 1024
    return f"""Three things grew with the biggest incident ({b.entries:,} entries,
{b.ledger:,} ledger items) beyond the time its size takes, and were changed:

- **`rein export` held the whole record in memory.** It read every entry, item and evidence
  into models, built the document as one string, then wrote it: peak RSS grew with the
  incident. It now reads and writes a batch of 1,000 rows at a time
  (bot/services/streamed_export.py; `TimelineRepo.batch`, `EvidenceRepo.batch`,
  `RollbackRepo.batch`; `Database.snapshot()` keeps it one state of the record), with the
  same bytes (tests/test_streamed_export.py compares them, and this run compared the files
  of the two ways). In this run, the biggest incident: Markdown {_ms(md0.p("big", 50))} and
  {md0.peak_mb.get("big", 0):.0f} MB before → {_ms(md.p("big", 50))} and
  {md.peak_mb.get("big", 0):.0f} MB now; JSON {_ms(js0.p("big", 50))} and
  {js0.peak_mb.get("big", 0):.0f} MB → {_ms(js.p("big", 50))} and
  {js.peak_mb.get("big", 0):.0f} MB. Share postmortem reads it the same way, a batch at a
  time (so the event loop is never held for long), and joins the pieces for its one upload.
- **`GET /v1/incidents/{{ref}}` built the whole answer on Rein's event loop.** For the
  biggest incident that took {API_BEFORE["get_ms"] / 1000:.1f} s, every other request (a
  Slack acknowledgement too) waited up to {API_BEFORE["stall_ms"] / 1000:.1f} s behind it,
  and Rein's peak RSS went from {API_BEFORE["idle_mb"]:.0f} to {API_BEFORE["peak_mb"]:.0f} MB
  (measured once before the change on this machine, the same database). It is now written
  a batch of rows at a time, the same bytes: {_ms(get.p("big", 50))} (p50), the longest
  `/healthz` meanwhile {_ms(stall.p("big", 50))} (p50 of the samples) and
  {_ms(max(stall.ms["big"], default=math.nan))} at worst, Rein's peak RSS {hwm:.0f} MB
  ({idle:.0f} MB idle).
- **`/incident timeline` counted its latest page from the oldest entry** (`LIMIT … OFFSET`,
  which SQLite walks entry by entry). A page in the newer half is now read from the newest
  end, bounded by the newest entry counted (`TimelineRepo.extent`, `page(…, extent)`): the
  latest page of the biggest incident {_ms(page0.p("big", 50))} as before →
  {_ms(page.p("big", 50))} now (p50, this run). What remains is `COUNT(*)` over the
  incident's index entries, which grows with the incident.

Left as they are: the list has no pagination (it answers at most {LIST_LIMIT}) and no agent
or severity filter; the card counts the ledger by status with a `GROUP BY` over the
incident's items (an index walk, {_ms(o("card_biggest").p("big", 50))} for the biggest
incident's card)."""


def render(result: Result, command: str) -> str:
    s, b = result.sides["small"], result.sides["big"]
    group = {g: [o for o in result.ops if o.group == g] for g in ("list", "api", "card")}
    statuses = ", ".join(f"{k} {v:,}" for k, v in b.by_status.items())
    # Writes to the biggest incident do not read it: they should not grow with it either.
    flat_ops = [
        o
        for o in result.ops
        if o.target in ("", "typical", "typical_open") or o.key.startswith("post_")
    ]
    grew = [o for o in flat_ops if (_per_item(o) if o.answered else o.ratio(50)) > 1.5]
    biggest = [
        o
        for o in result.ops
        if o.target == "biggest"
        and o not in flat_ops
        and o.key != "stall_biggest"
        and "before" not in o.key
    ]
    per_entry = "\n".join(
        f"  - {o.label} ({o.group}): {_x(_per_entry(result, o))}" for o in biggest
    )
    flat = (
        "Every operation on the whole database or on a typical incident, and every write, is"
        " within 1.5× of the small database's at p50 (the lists per incident answered)."
        if not grew
        else "More than 1.5× the small database's at p50: "
        + "; ".join(f"{o.label} ({TARGET_LABELS[o.target]}) {_x(o.ratio(50))}" for o in grew)
        + "."
    )
    return f"""{START}
## Scale: {b.incidents:,} incidents and {b.timeline:,} timeline entries

The incident list, the card, the export and the incident API on a big database, against the
same operations on a small one ({s.incidents:,} incidents, {s.timeline:,} entries) in the
same run. Big ÷ small near 1× means the operation does not slow down as the database grows.
The biggest incident is itself {b.biggest.entries // max(s.biggest.entries, 1)}× bigger in
the big database; for it, the ratio per timeline entry says whether its cost is linear.

{provenance(command, "bench/scale.py")}
- Whole run: {result.run_s:.0f} s; others' CPU meanwhile {result.others_cores:.2f} cores
  (the machine's busy time less this process and its children); {len(result.problems)}
  problems

### The databases

{_databases(result)}

- Made by Rein's migrations (`Database.migrate()`), then bench/scale.py `seed`: incidents,
  statuses and first entries from bench/startup.py's `plan_incidents` and `Rows`
  ({statuses}), each as Rein declares it or an alert opens it, open ones with their status
  changes and the channel status line that told of them; then, as Rein's services write
  them, evidence items with their `evidence` entries, ledgers with an `added` entry per item
  and a `marked` entry per hundred, confirmed kill-switch deliveries, completed postmortems
  with their entry, and pinned messages (the rows `capture_message` stores, dedupe key
  included) and status updates until the timeline holds exactly the number wanted. The
  biggest incident holds a tenth of it; 0.5 % of incidents are long; the others hold a
  handful. Entries are numbered in time order, so an incident's entries are spread over
  the table.
- Bulk inserts with `executemany` in one transaction on a plain sqlite3 connection
  (bench-only seeding), then read back through Rein's repositories: bench/startup.py's
  `check` (no reminder to plan, no status line due at start), the counts, and
  `load_record` with both documents of the incidents measured. Cached under
  `$REIN_BENCH_CACHE` (default /tmp/rein-bench-cache), keyed by the migrations and the
  seeding; each run measures fresh copies.

### How it was measured

- Card and timeline page: in this process on the copies, one call at a time:
  `IncidentRepo.get` + `load_card_facts` (the repositories `Rein.card_facts` passes) +
  `card_blocks` (slack_sdk validation included), checked to show the ledger's progress;
  `timeline_page` as `/incident timeline` and its Earlier/Later buttons call it.
- Export: `rein export INC-n --format md|json --output FILE` (`python -m bot export`), a
  process each, timed from spawn to exit, with only `REIN_DB_PATH` and `PATH` in its
  environment. Peak RSS: the process's VmHWM as it exits, written by a few lines run before
  the module (`python -c`; its rusage would report this process's peak, which Linux carries
  over the fork). The first row is the fixed cost: interpreter, imports, opening the
  database, one read.
- HTTP: the fake Slack Web API and two Reins as bench/servers.py starts them (`rein run`'s
  set-up, HTTP mode, the test policy), one on each copy, measured once both were idle after
  start-up ({result.settle_s:.1f} s: the sweep of open incidents, the channel status
  catch-up). One request at a time from this process (aiohttp, keep-alive), timed from send
  to the whole body read, each answer checked (the number of incidents, the record's
  timeline and ledger, 201). `/incident list`: a signed slash command through Bolt, timed
  until Rein's answer reached a response_url served by this process. The writes come last;
  each asks for a card refresh after its answer (its Slack calls fail against the fake
  Slack, which has none of the seeded channels).
- Samples: the two databases in turn, in rounds whose order flips, after a warm-up;
  percentiles are nearest rank, so with fewer than 100 samples p99 is the slowest.

### Lists

{_list_table(group["list"])}

The lists answer more incidents on the big database (the small one has only
{s.open:,} open and {s.by_status.get("triage", 0):,} in triage), so the last column divides
by the incidents answered. `GET /v1/incidents` has no pagination: it answers the newest
{LIST_LIMIT} of the filter (`status` only: `open`, or one status; no agent or severity
filter); `/incident list` the newest {LIST_LINES_MAX} open ones.

### The incident API

{_table(group["api"])}

### Card and timeline page

{_table(group["card"])}

### Export

{_export_table(result)}

### Reading the ratios

- {flat}
- The biggest incident, per timeline entry (big ÷ small of p50 ÷ entries): 1× grows in step
  with the incident, {1 / max(b.biggest.entries // max(s.biggest.entries, 1), 1):.2f}× does
  not grow at all:
{per_entry}

### What scale showed, and what was changed

{_changes(result)}
{END}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000, help="timeline entries")
    parser.add_argument("--small-incidents", type=int, default=1_000)
    parser.add_argument("--small-entries", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="a few samples of each (a try)")
    parser.add_argument("--rebuild", action="store_true", help="seed again, cache or not")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    parser.add_argument("--output", type=Path, default=DOC, help="the Markdown file to update")
    args = parser.parse_args(argv)
    shapes = {
        "small": Shape(args.small_incidents, args.small_entries),
        "big": Shape(args.incidents, args.entries),
    }
    plan = Plan.quick() if args.quick else Plan()
    result = asyncio.run(bench(shapes, plan, args.rebuild))
    for problem in result.problems:
        print(f"problem: {problem}", file=sys.stderr)
    for op in result.ops:
        print(
            f"{op.key:28} small {op.p('small', 50):9.2f} ms  big {op.p('big', 50):9.2f} ms"
            f"  ×{op.ratio(50):6.2f}  (p99 ×{op.ratio(99):.2f})"
        )
    print(f"whole run {result.run_s:.0f} s")
    if not args.no_write:
        write_section(render(result, command_line("bench.scale", argv)), START, END, args.output)
        print(f"wrote {args.output}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
