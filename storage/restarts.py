"""The restart gate, staged restarts and run reports (migration 0008). Writes take the caller's
connection (`IncidentRepo.edit().conn`): a stage change, the agent's autonomy, its kill-switch
delivery and the timeline entries commit together."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiosqlite

from bot.domain.enums import AutonomyMode
from bot.domain.gate import Check, Criterion, Restart, RestartState
from storage.db import Database, from_db_time, to_db_time

_COLUMNS = (
    "incident, agent_id, state, stage, normal_mode, clean_runs, needed, round, stage_started_at,"
    " offered_stage, gate_channel, gate_ts, opened_by, opened_at, decided_by, decided_at,"
    " updated_at"
)
_RUN_COLUMNS = "agent_id, run_id, outcome, summary, cost, incident, stage, round, reported_by, at"


def _restart(row: aiosqlite.Row) -> Restart:
    return Restart(
        incident=row["incident"],
        agent_id=row["agent_id"],
        state=row["state"],
        stage=row["stage"],
        normal_mode=row["normal_mode"],
        clean_runs=row["clean_runs"],
        needed=row["needed"],
        round=row["round"],
        stage_started_at=from_db_time(row["stage_started_at"]),
        offered_stage=row["offered_stage"],
        gate_channel=row["gate_channel"],
        gate_ts=row["gate_ts"],
        opened_by=row["opened_by"],
        opened_at=from_db_time(row["opened_at"]),
        decided_by=row["decided_by"],
        decided_at=from_db_time(row["decided_at"]),
        updated_at=from_db_time(row["updated_at"]),
    )


def _time(value: datetime | None) -> str | None:
    return to_db_time(value) if value is not None else None


def _run(row: aiosqlite.Row) -> dict[str, Any]:
    return {
        "agent_id": row["agent_id"],
        "run_id": row["run_id"],
        "outcome": row["outcome"],
        "summary": row["summary"],
        "cost": row["cost"],
        "incident": row["incident"],
        "stage": row["stage"],
        "round": row["round"],
        "reported_by": row["reported_by"],
        "at": from_db_time(row["at"]),
    }


async def _one(conn: aiosqlite.Connection, sql: str, params: tuple) -> aiosqlite.Row | None:
    async with conn.execute(sql, params) as cursor:
        return await cursor.fetchone()


class RestartRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------ inside a transaction

    @staticmethod
    async def get_in(conn: aiosqlite.Connection, number: int) -> Restart | None:
        row = await _one(
            conn,
            f"SELECT {_COLUMNS} FROM restarts WHERE incident = ?",  # noqa: S608
            (number,),
        )
        return _restart(row) if row else None

    @staticmethod
    async def staged_for_agent_in(conn: aiosqlite.Connection, agent_id: str) -> Restart | None:
        row = await _one(
            conn,
            f"SELECT {_COLUMNS} FROM restarts WHERE agent_id = ? AND state = ?",  # noqa: S608
            (agent_id, RestartState.STAGED.value),
        )
        return _restart(row) if row else None

    @staticmethod
    async def save_in(conn: aiosqlite.Connection, restart: Restart) -> None:
        """Insert or overwrite the incident's restart row."""
        await conn.execute(
            f"INSERT OR REPLACE INTO restarts ({_COLUMNS})"  # noqa: S608
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                restart.incident,
                restart.agent_id,
                restart.state.value,
                restart.stage.value if restart.stage else None,
                restart.normal_mode.value,
                restart.clean_runs,
                restart.needed,
                restart.round,
                _time(restart.stage_started_at),
                restart.offered_stage.value if restart.offered_stage else None,
                restart.gate_channel,
                restart.gate_ts,
                restart.opened_by,
                to_db_time(restart.opened_at),
                restart.decided_by,
                _time(restart.decided_at),
                to_db_time(restart.updated_at),
            ),
        )

    @staticmethod
    async def checks_in(conn: aiosqlite.Connection, number: int) -> dict[Criterion, Check]:
        async with conn.execute(
            "SELECT criterion, state, note, by, at FROM gate_checks WHERE incident = ?", (number,)
        ) as cursor:
            rows = await cursor.fetchall()
        return {Criterion(r["criterion"]): _check(r) for r in rows}

    @staticmethod
    async def set_check_in(conn: aiosqlite.Connection, number: int, check: Check) -> None:
        await conn.execute(
            "INSERT OR REPLACE INTO gate_checks (incident, criterion, state, note, by, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                number,
                check.criterion.value,
                check.state.value,
                check.note,
                check.by,
                to_db_time(check.at),
            ),
        )

    @staticmethod
    async def clear_check_in(conn: aiosqlite.Connection, number: int, criterion: Criterion) -> bool:
        cursor = await conn.execute(
            "DELETE FROM gate_checks WHERE incident = ? AND criterion = ?",
            (number, criterion.value),
        )
        return cursor.rowcount == 1

    @staticmethod
    async def add_run_in(
        conn: aiosqlite.Connection, run: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Record a run report; a run_id seen before for the agent returns the stored report
        and False, and changes nothing."""
        async with conn.execute(
            f"INSERT OR IGNORE INTO runs ({_RUN_COLUMNS})"  # noqa: S608
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            f" RETURNING {_RUN_COLUMNS}",
            (
                run["agent_id"],
                run["run_id"],
                run["outcome"],
                run.get("summary"),
                run.get("cost"),
                run.get("incident"),
                run.get("stage"),
                run.get("round"),
                run["reported_by"],
                to_db_time(run["at"]),
            ),
        ) as cursor:
            row = await cursor.fetchone()
        if row is not None:
            return _run(row), True
        found = await _one(
            conn,
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE agent_id = ? AND run_id = ?",  # noqa: S608
            (run["agent_id"], run["run_id"]),
        )
        assert found is not None
        return _run(found), False

    # ---------------------------------------------------------------------- reads

    async def get(self, number: int) -> Restart | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM restarts WHERE incident = ?",  # noqa: S608
            (number,),
        )
        return _restart(row) if row else None

    async def staged(self) -> list[Restart]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM restarts WHERE state = ?",  # noqa: S608
            (RestartState.STAGED.value,),
        )
        return [_restart(r) for r in rows]

    async def checks(self, number: int) -> dict[Criterion, Check]:
        rows = await self._db.fetchall(
            "SELECT criterion, state, note, by, at FROM gate_checks WHERE incident = ?", (number,)
        )
        return {Criterion(r["criterion"]): _check(r) for r in rows}

    async def unposted_runs(self, number: int) -> list[tuple[int, dict[str, Any]]]:
        """Runs counted for the incident and not yet shown in its channel, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT rowid, {_RUN_COLUMNS} FROM runs WHERE incident = ? AND posted = 0"  # noqa: S608
            " ORDER BY rowid",
            (number,),
        )
        return [(int(r["rowid"]), _run(r)) for r in rows]

    async def mark_posted(self, rowids: list[int]) -> None:
        if not rowids:
            return
        marks = ", ".join("?" for _ in rowids)
        await self._db.write(f"UPDATE runs SET posted = 1 WHERE rowid IN ({marks})", rowids)  # noqa: S608

    async def incidents_with_unposted_runs(self) -> list[int]:
        rows = await self._db.fetchall(
            "SELECT DISTINCT incident FROM runs WHERE incident IS NOT NULL AND posted = 0"
        )
        return [int(r[0]) for r in rows]

    async def set_gate_message(self, number: int, channel: str, ts: str) -> None:
        await self._db.write(
            "UPDATE restarts SET gate_channel = ?, gate_ts = ? WHERE incident = ?",
            (channel, ts, number),
        )

    async def mark_offered(self, number: int, stage: AutonomyMode) -> bool:
        """Claim posting the Promote offer for `stage` (once, however many runs race)."""
        changed = await self._db.write(
            "UPDATE restarts SET offered_stage = ? WHERE incident = ? AND state = ?"
            " AND stage = ? AND clean_runs >= needed"
            " AND (offered_stage IS NULL OR offered_stage <> ?)",
            (stage.value, number, RestartState.STAGED.value, stage.value, stage.value),
        )
        return changed == 1


def _check(row: aiosqlite.Row) -> Check:
    return Check(
        criterion=row["criterion"],
        state=row["state"],
        note=row["note"],
        by=row["by"],
        at=from_db_time(row["at"]),
    )
