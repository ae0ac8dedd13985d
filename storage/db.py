"""One aiosqlite connection, WAL, numbered migrations, and serialised write transactions."""

import asyncio
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

logger = logging.getLogger(__name__)
T = TypeVar("T")

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
BUSY_TIMEOUT_MS = 5000


def to_db_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_db_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    # fromisoformat reads the trailing Z (Python 3.11) and is ~40x faster than strptime,
    # which matters when thousands of rows are read (start-up, big timelines).
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"a stored time without its zone: {value!r}")
    return parsed


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


class Database:
    """The single connection. Writers take `transaction()`; it serialises them in-process and
    uses BEGIN IMMEDIATE so another process never makes a write fail half-way."""

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self._write_lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: str) -> "Database":
        if path != ":memory:":
            # The database holds incident evidence: readable by its owner only, and the
            # directory it creates (with its -wal and -shm files) listable by its owner only.
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
        return cls(conn, path)

    async def close(self) -> None:
        await self._conn.close()

    async def migrate(self) -> list[int]:
        """Apply pending numbered migrations, each in its own transaction; return those applied."""
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done = {row[0] for row in await self.fetchall("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in _migrations():
            if version in done:
                continue
            async with self.transaction() as tx:
                for statement in _split_sql(sql):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, to_db_time(datetime.now(UTC))),
                )
            logger.info("applied migration %04d_%s", version, name)
            applied.append(version)
        return applied

    async def pending_migrations(self) -> list[int]:
        exists = await self.fetchone(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        )
        done = (
            {row[0] for row in await self.fetchall("SELECT version FROM schema_migrations")}
            if exists
            else set()
        )
        return [version for version, _, _ in _migrations() if version not in done]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """Reads that all see one state of the database (a read transaction), however many
        queries they take. Only for a connection no writer shares (`rein export`): Rein's
        writers would find the transaction open."""
        await self._conn.execute("BEGIN")
        try:
            yield
        finally:
            await self._conn.execute("COMMIT")

    async def atomically(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` inside BEGIN IMMEDIATE … COMMIT, run whole in the database
        thread: one round trip, so the write lock is held for one turn of the event loop
        instead of one per statement (under load each turn is a wait). For short, hot
        transactions with nothing to await between their statements (declaring). aiosqlite
        has no public call for running a function in its thread; `_execute` is that call."""

        def run() -> T:
            conn = self._conn._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        async with self._write_lock:
            return await self._conn._execute(run)

    async def write(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement on its own: atomic without BEGIN/COMMIT, so the write lock is held
        for a single round trip to the database thread. Returns the rows changed."""
        async with self._write_lock:
            cursor = await self._conn.execute(sql, tuple(params))
            return cursor.rowcount

    # Reads are one round trip to the database thread (execute, fetch and close there), not
    # three: under load each round trip waits for a turn of the busy event loop.
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        """The first row; for queries of one row (a key, LIMIT 1, an aggregate)."""
        rows = await self._conn.execute_fetchall(sql, tuple(params))
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self._conn.execute_fetchall(sql, tuple(params)))

    async def ping(self) -> bool:
        row = await self.fetchone("SELECT 1")
        return row is not None and row[0] == 1


def _split_sql(sql: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements, current = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--") and not current:
            continue
        current.append(line)
        joined = "\n".join(current).strip()
        if sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return statements
