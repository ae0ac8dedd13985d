"""Each agent's autonomy mode and switches."""

from datetime import datetime

import aiosqlite

from bot.domain.enums import AutonomyMode
from bot.domain.models import AgentAutonomy, switches_for
from storage.db import Database, from_db_time, to_db_time


def _autonomy(row: aiosqlite.Row) -> AgentAutonomy:
    return AgentAutonomy(
        agent_id=row["agent_id"],
        mode=row["mode"],
        runs=bool(row["runs"]),
        writes=bool(row["writes"]),
        outbound=bool(row["outbound"]),
        schedules=bool(row["schedules"]),
        incident=row["incident"],
        updated_at=from_db_time(row["updated_at"]),
    )


class AgentRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def seed(self, normal_modes: dict[str, AutonomyMode], at: datetime) -> None:
        """At first start an agent is in its policy's normal mode; later starts keep its state."""
        rows = []
        for agent_id, mode in normal_modes.items():
            switches = switches_for(mode)
            rows.append(
                (
                    agent_id,
                    mode.value,
                    switches["runs"],
                    switches["writes"],
                    switches["outbound"],
                    switches["schedules"],
                    to_db_time(at),
                )
            )
        async with self._db.transaction() as conn:
            await conn.executemany(
                "INSERT OR IGNORE INTO agent_autonomy"
                " (agent_id, mode, runs, writes, outbound, schedules, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    @staticmethod
    async def set_in(conn: aiosqlite.Connection, state: AgentAutonomy) -> None:
        """Inside the caller's transaction: autonomy changes commit with their incident."""
        await conn.execute(
            "UPDATE agent_autonomy SET mode = ?, runs = ?, writes = ?, outbound = ?,"
            " schedules = ?, incident = ?, updated_at = ? WHERE agent_id = ?",
            (
                state.mode.value,
                state.runs,
                state.writes,
                state.outbound,
                state.schedules,
                state.incident,
                to_db_time(state.updated_at),
                state.agent_id,
            ),
        )

    async def all(self) -> list[AgentAutonomy]:
        rows = await self._db.fetchall(
            "SELECT agent_id, mode, runs, writes, outbound, schedules, incident, updated_at"
            " FROM agent_autonomy ORDER BY agent_id"
        )
        return [_autonomy(row) for row in rows]
