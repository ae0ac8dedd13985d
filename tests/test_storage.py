"""The SQLite storage layer against a real database file in tmp_path."""

import asyncio
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.domain.enums import AutonomyMode, IncidentStatus, Severity, TimelineKind
from bot.domain.models import NewIncident, TimelineEntry
from bot.domain.severity import Impact
from storage.agents import AgentRepo
from storage.db import Database, from_db_time, to_db_time
from storage.incidents import IncidentRepo, UnknownIncident

T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
# Every numbered migration shipped, so capabilities can add theirs without editing this test.
MIGRATIONS = sorted(
    int(p.name[:4]) for p in (Path(__file__).parents[1] / "storage" / "migrations").glob("*.sql")
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "rein.db"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(str(db_path))
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def repo(db: Database) -> IncidentRepo:
    return IncidentRepo(db)


def new_incident(
    title: str = "Wrong CRM field on 300 records",
    *,
    key: str | None = None,
    declared_by: str = "U0ALICE",
    severity: Severity = Severity.SEV3,
) -> NewIncident:
    return NewIncident(
        title=title,
        summary="The agent wrote the country into the phone field.",
        agent_id="crm-writer",
        severity=severity,
        declared_by=declared_by,
        impact=Impact(customer_visible=True, records_touched=300),
        idempotency_key=key,
    )


def entry(text: str = "declared", at: datetime = T0, **data: object) -> TimelineEntry:
    return TimelineEntry(at=at, actor="U0ALICE", kind=TimelineKind.DECLARED, text=text, data=data)


async def declare(
    repo: IncidentRepo,
    title: str = "Wrong CRM field on 300 records",
    *,
    key: str | None = None,
    status: IncidentStatus = IncidentStatus.DECLARED,
    at: datetime = T0,
) -> int:
    incident, created = await repo.create(
        new_incident(title, key=key), status=status, commander="U0ALICE", entry=entry(at=at)
    )
    assert created
    return incident.number


async def move(repo: IncidentRepo, number: int, status: IncidentStatus) -> None:
    async with repo.edit(number) as edit:
        changed = edit.incident.model_copy(update={"status": status, "updated_at": T0})
        await edit.save(changed, [entry(f"to {status}")])


# --- opening and migrations -------------------------------------------------------------------


async def test_migrations_are_applied_once_and_recorded(db_path: Path) -> None:
    database = await Database.open(str(db_path))
    try:
        assert await database.pending_migrations() == MIGRATIONS
        applied = await database.migrate()
        assert applied == MIGRATIONS
        rows = await database.fetchall("SELECT version, name, applied_at FROM schema_migrations")
        assert [r["version"] for r in rows] == MIGRATIONS
        assert [(r["version"], r["name"]) for r in rows][:2] == [(1, "initial"), (2, "containment")]
        assert from_db_time(rows[0]["applied_at"]) is not None
        assert await database.pending_migrations() == []
        assert await database.migrate() == []
        tables = {
            r["name"]
            for r in await database.fetchall("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert {"incidents", "timeline", "agent_autonomy", "schema_migrations"} <= tables
    finally:
        await database.close()

    # A later start (a new connection to the same file) applies nothing either.
    again = await Database.open(str(db_path))
    try:
        assert await again.migrate() == []
        count = await again.fetchone("SELECT COUNT(*) FROM schema_migrations")
        assert count is not None and count[0] == len(MIGRATIONS)
    finally:
        await again.close()


async def test_pragmas(db: Database) -> None:
    journal = await db.fetchone("PRAGMA journal_mode")
    foreign_keys = await db.fetchone("PRAGMA foreign_keys")
    busy = await db.fetchone("PRAGMA busy_timeout")
    assert journal is not None and journal[0] == "wal"
    assert foreign_keys is not None and foreign_keys[0] == 1
    assert busy is not None and busy[0] >= 1000


async def test_database_file_is_private_to_its_owner(
    db: Database, db_path: Path, repo: IncidentRepo
) -> None:
    await declare(repo)  # so that the WAL holds data too
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    wal = db_path.with_name(db_path.name + "-wal")
    if wal.exists():
        assert stat.S_IMODE(os.stat(wal).st_mode) & 0o077 == 0


async def test_open_creates_the_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "rein.db"
    database = await Database.open(str(path))
    try:
        assert await database.ping()
    finally:
        await database.close()
    assert path.exists()


def test_db_times_are_utc_text() -> None:
    local = datetime(2026, 11, 24, 10, 30, 15, 999, tzinfo=UTC).astimezone(
        timezone(timedelta(hours=1))
    )
    assert to_db_time(local) == "2026-11-24T10:30:15Z"
    assert from_db_time("2026-11-24T10:30:15Z") == datetime(2026, 11, 24, 10, 30, 15, tzinfo=UTC)
    assert from_db_time(None) is None


# --- create -----------------------------------------------------------------------------------


async def test_create_stores_the_incident_and_its_first_entry(
    repo: IncidentRepo, db_path: Path, db: Database
) -> None:
    incident, created = await repo.create(
        new_incident(), status=IncidentStatus.DECLARED, commander="U0BOB", entry=entry(x=1)
    )
    assert created and incident.number == 1 and incident.ref == "INC-1"
    assert incident.status is IncidentStatus.DECLARED
    assert incident.commander == "U0BOB"
    assert incident.declared_at == incident.created_at == incident.updated_at == T0
    assert incident.impact == Impact(customer_visible=True, records_touched=300)
    assert await repo.get(1) == incident
    assert await repo.timeline(1) == [entry(x=1)]

    # Committed: another connection sees both.
    with sqlite3.connect(db_path) as other:
        assert other.execute("SELECT title FROM incidents").fetchall() == [
            ("Wrong CRM field on 300 records",)
        ]
        assert other.execute("SELECT COUNT(*) FROM timeline").fetchone() == (1,)


async def test_a_triage_incident_has_no_declared_time(repo: IncidentRepo) -> None:
    number = await declare(repo, status=IncidentStatus.TRIAGE)
    incident = await repo.get(number)
    assert incident is not None and incident.declared_at is None


async def test_a_room_is_pending_from_declaration_until_it_is_ready(repo: IncidentRepo) -> None:
    """Declared (at once, or later out of triage) in the same write as the room's marker;
    `room_ready` clears it with the Slack references; a triage incident wants no room."""
    declared = await declare(repo, "Declared at once")
    triaged = await declare(repo, "An alert", status=IncidentStatus.TRIAGE)
    assert [i.number for i in await repo.rooms_pending()] == [declared]
    async with repo.edit(triaged) as edit:
        out_of_triage = edit.incident.model_copy(
            update={"status": IncidentStatus.DECLARED, "declared_at": T0, "updated_at": T0}
        )
        await edit.save(out_of_triage, [entry("declared from triage")])
    assert [i.number for i in await repo.rooms_pending()] == [declared, triaged]
    await move(repo, triaged, IncidentStatus.CONTAINED)  # a later change keeps it pending
    assert [i.number for i in await repo.rooms_pending()] == [declared, triaged]
    await repo.room_ready(declared, card_channel="C0INC", card_ts="1.2")
    await repo.room_ready(triaged)
    assert await repo.rooms_pending() == []
    stored = await repo.get(declared)
    assert stored is not None and (stored.card_channel, stored.card_ts) == ("C0INC", "1.2")
    with pytest.raises(ValueError, match="unknown Slack reference"):
        await repo.room_ready(declared, title="not a reference")


async def test_create_is_all_or_nothing(repo: IncidentRepo, db: Database) -> None:
    broken = TimelineEntry(
        at=T0, actor="U0ALICE", kind=TimelineKind.DECLARED, text="x", data={"bad": object()}
    )
    with pytest.raises(TypeError):
        await repo.create(
            new_incident(), status=IncidentStatus.DECLARED, commander="U0ALICE", entry=broken
        )
    assert await repo.newest() == []
    count = await db.fetchone("SELECT COUNT(*) FROM timeline")
    assert count is not None and count[0] == 0
    # The failed attempt used no number, and the database is usable again.
    assert await declare(repo) == 1


async def test_idempotency_key_returns_the_first_incident(repo: IncidentRepo) -> None:
    first, created = await repo.create(
        new_incident(key="view-123"),
        status=IncidentStatus.DECLARED,
        commander="U0ALICE",
        entry=entry(),
    )
    again, created_again = await repo.create(
        new_incident("A different title", key="view-123"),
        status=IncidentStatus.DECLARED,
        commander="U0BOB",
        entry=entry("second"),
    )
    assert created and not created_again
    assert again == first
    assert [i.number for i in await repo.newest()] == [1]
    assert [e.text for e in await repo.timeline(1)] == ["declared"]
    # Another key is another incident.
    other, created_other = await repo.create(
        new_incident(key="view-456"),
        status=IncidentStatus.DECLARED,
        commander="U0ALICE",
        entry=entry(),
    )
    assert created_other and other.number == 2


async def test_concurrent_idempotent_creates_make_one_incident(repo: IncidentRepo) -> None:
    results = await asyncio.gather(
        *(
            repo.create(
                new_incident(key="retry"),
                status=IncidentStatus.DECLARED,
                commander="U0ALICE",
                entry=entry(),
            )
            for _ in range(10)
        )
    )
    assert sum(created for _, created in results) == 1
    assert {incident.number for incident, _ in results} == {1}


async def test_twenty_concurrent_creates_get_twenty_consecutive_numbers(
    repo: IncidentRepo,
) -> None:
    results = await asyncio.gather(
        *(
            repo.create(
                new_incident(f"Incident {n}", declared_by=f"U0USER{n}"),
                status=IncidentStatus.DECLARED,
                commander=f"U0USER{n}",
                entry=entry(f"declared {n}"),
            )
            for n in range(20)
        )
    )
    numbers = sorted(incident.number for incident, _ in results)
    assert numbers == list(range(1, 21))
    assert all(created for _, created in results)
    for incident, _ in results:
        timeline = await repo.timeline(incident.number)
        assert len(timeline) == 1
        assert timeline[0].text == f"declared {incident.title.removeprefix('Incident ')}"


async def test_numbers_are_never_reused(repo: IncidentRepo, db: Database) -> None:
    await declare(repo)
    await declare(repo)
    # Even if a row disappeared (by hand), AUTOINCREMENT does not hand its number out again.
    async with db.transaction() as conn:
        await conn.execute("DROP TRIGGER timeline_no_delete")
        await conn.execute("DELETE FROM timeline WHERE incident = 2")
        await conn.execute("DELETE FROM incidents WHERE number = 2")
    assert await declare(repo) == 3


# --- edit -------------------------------------------------------------------------------------


async def test_edit_saves_the_change_and_its_entry_together(repo: IncidentRepo) -> None:
    number = await declare(repo)
    later = T0 + timedelta(minutes=5)
    async with repo.edit(number) as edit:
        assert edit.incident.severity is Severity.SEV3
        changed = edit.incident.model_copy(update={"severity": Severity.SEV2, "updated_at": later})
        await edit.save(changed, [entry("severity to SEV-2", at=later, reason="customers")])
        assert edit.incident == changed
    stored = await repo.get(number)
    assert stored is not None
    assert stored.severity is Severity.SEV2 and stored.updated_at == later
    assert [e.text for e in await repo.timeline(number)] == ["declared", "severity to SEV-2"]
    assert (await repo.timeline(number))[1].data == {"reason": "customers"}


async def test_edit_rolls_back_when_the_body_raises(repo: IncidentRepo) -> None:
    number = await declare(repo)
    before = await repo.get(number)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with repo.edit(number) as edit:
            changed = edit.incident.model_copy(
                update={"status": IncidentStatus.CONTAINED, "title": "changed", "updated_at": T0}
            )
            await edit.save(changed, [entry("contained")])
            raise Boom
    assert await repo.get(number) == before
    assert [e.text for e in await repo.timeline(number)] == ["declared"]
    # The connection is not left inside a transaction: the next write works.
    await move(repo, number, IncidentStatus.CONTAINED)
    after = await repo.get(number)
    assert after is not None and after.status is IncidentStatus.CONTAINED


async def test_edit_of_an_unknown_incident(repo: IncidentRepo) -> None:
    with pytest.raises(UnknownIncident, match="INC-99"):
        async with repo.edit(99):
            pytest.fail("the body must not run")
    await declare(repo)  # the failed edit left no transaction open


async def test_concurrent_edits_see_each_others_result(repo: IncidentRepo) -> None:
    number = await declare(repo)

    async def bump() -> None:
        async with repo.edit(number) as edit:
            await asyncio.sleep(0)
            title = f"{edit.incident.title}+"
            changed = edit.incident.model_copy(update={"title": title})
            await edit.save(changed, [entry(title)])

    await asyncio.gather(*(bump() for _ in range(10)))
    stored = await repo.get(number)
    assert stored is not None and stored.title.endswith("+" * 10)
    assert len(await repo.timeline(number)) == 11


# --- the timeline -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE timeline SET text = 'rewritten'",
        "UPDATE timeline SET actor = 'U0MALLORY' WHERE id = 1",
        "DELETE FROM timeline",
        "DELETE FROM timeline WHERE id = 1",
    ],
)
async def test_the_timeline_is_append_only(repo: IncidentRepo, db: Database, sql: str) -> None:
    number = await declare(repo)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        async with db.transaction() as conn:
            await conn.execute(sql)
    assert [e.text for e in await repo.timeline(number)] == ["declared"]


def test_the_timeline_is_append_only_for_other_connections_too(tmp_path: Path) -> None:
    path = tmp_path / "rein.db"

    async def prepare() -> None:
        database = await Database.open(str(path))
        await database.migrate()
        await declare(IncidentRepo(database))
        await database.close()

    asyncio.run(prepare())
    with sqlite3.connect(path) as conn:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("DELETE FROM timeline")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE timeline SET text = ''")


async def test_timeline_needs_an_existing_incident(repo: IncidentRepo) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await repo.append(404, [entry()])


async def test_append_keeps_order(repo: IncidentRepo) -> None:
    number = await declare(repo)
    await repo.append(number, [entry("one"), entry("two")])
    await repo.append(number, [entry("three", at=T0 - timedelta(hours=1))])
    assert [e.text for e in await repo.timeline(number)] == ["declared", "one", "two", "three"]


async def test_append_once(repo: IncidentRepo) -> None:
    number = await declare(repo)
    pinned = TimelineEntry(
        at=T0, actor="U0BOB", kind=TimelineKind.PINNED_MESSAGE, text="pinned", data={"ts": "1.2"}
    )
    assert await repo.append_once(number, pinned, "pin:C1:1.2") is True
    assert await repo.append_once(number, pinned, "pin:C1:1.2") is False
    results = await asyncio.gather(
        *(repo.append_once(number, pinned, "pin:C1:1.2") for _ in range(5))
    )
    assert results == [False] * 5
    assert await repo.append_once(number, pinned, "pin:C1:9.9") is True
    timeline = await repo.timeline(number)
    assert [e.kind for e in timeline] == [
        TimelineKind.DECLARED,
        TimelineKind.PINNED_MESSAGE,
        TimelineKind.PINNED_MESSAGE,
    ]
    assert timeline[1] == pinned


# --- queries ----------------------------------------------------------------------------------


async def test_newest_open_excludes_closed_and_dismissed(repo: IncidentRepo) -> None:
    statuses = [
        IncidentStatus.DECLARED,  # 1
        IncidentStatus.CLOSED,  # 2
        IncidentStatus.CONTAINED,  # 3
        IncidentStatus.DISMISSED,  # 4
        IncidentStatus.TRIAGE,  # 5
        IncidentStatus.RECOVERED,  # 6
        IncidentStatus.POSTMORTEM,  # 7
    ]
    for status in statuses:
        number = await declare(repo, f"incident {status}")
        if status is not IncidentStatus.DECLARED:
            await move(repo, number, status)

    assert [i.number for i in await repo.newest("open")] == [7, 6, 5, 3, 1]
    assert [i.number for i in await repo.newest()] == [7, 6, 5, 4, 3, 2, 1]
    assert [i.number for i in await repo.newest("closed")] == [2]
    assert [i.number for i in await repo.newest("dismissed")] == [4]
    assert [i.number for i in await repo.newest("open", limit=2)] == [7, 6]
    with pytest.raises(ValueError):
        await repo.newest("bogus")


async def test_slack_refs_and_lookup_by_channel(repo: IncidentRepo) -> None:
    first = await declare(repo)
    await declare(repo)
    await repo.set_slack_refs(first, channel_id="C0INC1", channel_name="inc-1-x", card_ts="1.1")
    stored = await repo.get(first)
    assert stored is not None
    assert (stored.channel_id, stored.channel_name, stored.card_ts) == ("C0INC1", "inc-1-x", "1.1")
    by_channel = await repo.by_channel("C0INC1")
    assert by_channel is not None and by_channel.number == first
    assert await repo.by_channel("C0NONE") is None
    with pytest.raises(ValueError, match="title"):
        await repo.set_slack_refs(first, title="sneaky")
    with pytest.raises(ValueError):
        await repo.set_slack_refs(first)


async def test_recent_by_declarer(repo: IncidentRepo) -> None:
    await declare(repo, "Same title", at=T0)
    found = await repo.recent_by_declarer(
        "U0ALICE", "crm-writer", "Same title", T0 - timedelta(minutes=1)
    )
    assert found is not None and found.number == 1
    assert (
        await repo.recent_by_declarer(
            "U0ALICE", "crm-writer", "Same title", T0 + timedelta(seconds=1)
        )
        is None
    )
    assert (
        await repo.recent_by_declarer("U0BOB", "crm-writer", "Same title", T0 - timedelta(1))
        is None
    )
    assert (
        await repo.recent_by_declarer("U0ALICE", "crm-writer", "Other", T0 - timedelta(1)) is None
    )


async def test_get_unknown_is_none(repo: IncidentRepo) -> None:
    assert await repo.get(1) is None


# --- agents -----------------------------------------------------------------------------------


async def test_agent_seed_sets_the_normal_mode_with_its_switches(db: Database) -> None:
    agents = AgentRepo(db)
    await agents.seed(
        {"crm-writer": AutonomyMode.AUTONOMOUS, "page-publisher": AutonomyMode.SHADOW}, T0
    )
    states = {s.agent_id: s for s in await agents.all()}
    crm, pages = states["crm-writer"], states["page-publisher"]
    assert crm.mode is AutonomyMode.AUTONOMOUS
    assert (crm.runs, crm.writes, crm.outbound, crm.schedules) == (True, True, True, True)
    assert pages.mode is AutonomyMode.SHADOW
    assert (pages.runs, pages.writes, pages.outbound, pages.schedules) == (
        True,
        False,
        False,
        True,
    )
    assert crm.incident is None and crm.updated_at == T0


async def test_a_second_seed_keeps_existing_state(db: Database, repo: IncidentRepo) -> None:
    agents = AgentRepo(db)
    await agents.seed({"crm-writer": AutonomyMode.AUTONOMOUS}, T0)
    number = await declare(repo)
    # An incident pauses the agent (as containment will).
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE agent_autonomy SET mode = 'paused', runs = 0, writes = 0, outbound = 0,"
            " schedules = 0, incident = ? WHERE agent_id = 'crm-writer'",
            (number,),
        )
    later = T0 + timedelta(days=1)
    await agents.seed(
        {"crm-writer": AutonomyMode.SUPERVISED, "new-agent": AutonomyMode.READ_ONLY}, later
    )
    states = {s.agent_id: s for s in await agents.all()}
    crm = states["crm-writer"]
    assert crm.mode is AutonomyMode.PAUSED and crm.incident == number
    assert (crm.runs, crm.writes, crm.outbound, crm.schedules) == (False, False, False, False)
    assert crm.updated_at == T0
    assert states["new-agent"].mode is AutonomyMode.READ_ONLY
    assert states["new-agent"].updated_at == later
    assert [s.agent_id for s in await agents.all()] == ["crm-writer", "new-agent"]


async def test_atomically_commits_whole_or_not_at_all_and_waits_for_other_writers(
    db: Database,
) -> None:
    """`Database.atomically` (the declaring transaction, whole in the database thread) rolls
    back when its work raises, and never runs inside another writer's open transaction."""
    await db.write("CREATE TABLE scratch (x INTEGER)")

    def two_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO scratch VALUES (1)")
        conn.execute("INSERT INTO scratch VALUES (2)")
        raise ValueError("half-way")

    with pytest.raises(ValueError, match="half-way"):
        await db.atomically(two_then_fail)
    assert await db.fetchall("SELECT x FROM scratch") == []

    async def slow_writer() -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO scratch VALUES (10)")
            await asyncio.sleep(0.05)  # `atomically` is queued meanwhile
            await conn.execute("INSERT INTO scratch VALUES (11)")

    def one(conn: sqlite3.Connection) -> int:
        return conn.execute("INSERT INTO scratch VALUES (20) RETURNING x").fetchall()[0][0]

    writer = asyncio.create_task(slow_writer())
    await asyncio.sleep(0.01)
    assert await db.atomically(one) == 20
    await writer
    assert [r[0] for r in await db.fetchall("SELECT x FROM scratch ORDER BY rowid")] == [
        10,
        11,
        20,
    ]
