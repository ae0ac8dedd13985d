"""The playbook's four containment moves, the plan per severity, and delivery retry timing."""

from collections.abc import Iterable, Sequence
from datetime import timedelta

from bot.domain.enums import AutonomyMode, ContainmentMove, Severity
from bot.domain.models import Incident, switches_for
from bot.domain.policy import Agent

M = ContainmentMove

# The default plan grows with severity (PRODUCT.md).
PLAN_BY_SEVERITY: dict[Severity, tuple[ContainmentMove, ...]] = {
    Severity.SEV4: (M.PAUSE_RUNS,),
    Severity.SEV3: (M.PAUSE_RUNS, M.REVOKE_WRITES),
    Severity.SEV2: (M.PAUSE_RUNS, M.REVOKE_WRITES, M.DISABLE_SCHEDULES, M.FREEZE_OUTBOUND),
    Severity.SEV1: (M.PAUSE_RUNS, M.REVOKE_WRITES, M.DISABLE_SCHEDULES, M.FREEZE_OUTBOUND),
}

MOVE_LABELS: dict[ContainmentMove, str] = {
    M.PAUSE_RUNS: "Pause runs",
    M.REVOKE_WRITES: "Revoke writes",
    M.DISABLE_SCHEDULES: "Disable schedules",
    M.FREEZE_OUTBOUND: "Freeze outbound",
}

# Kill-switch deliveries: the first retry within 10 s, six attempts over more than two minutes.
RETRY_DELAYS: tuple[timedelta, ...] = tuple(timedelta(seconds=s) for s in (5, 10, 20, 40, 80))
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
DELIVERY_TIMEOUT = timedelta(seconds=5)


def applicable_moves(agent: Agent | None) -> tuple[ContainmentMove, ...]:
    """Moves that mean something for this agent: no schedules to disable on an unscheduled
    agent, no writes to revoke on a read-only one. An agent unknown to the policy gets all."""
    if agent is None:
        return tuple(M)
    moves = [M.PAUSE_RUNS]
    if agent.writes_to:
        moves.append(M.REVOKE_WRITES)
    if agent.scheduled:
        moves.append(M.DISABLE_SCHEDULES)
    if agent.outbound:
        moves.append(M.FREEZE_OUTBOUND)
    return tuple(moves)


def default_plan(severity: Severity, agent: Agent | None) -> tuple[ContainmentMove, ...]:
    possible = applicable_moves(agent)
    return tuple(m for m in PLAN_BY_SEVERITY[severity] if m in possible)


def plan_for(incident: Incident, agent: Agent | None) -> tuple[ContainmentMove, ...]:
    """The commander's adjusted plan, or the severity's default for this agent."""
    if incident.containment_plan is not None:
        return incident.containment_plan
    return default_plan(incident.severity, agent)


def normalise_plan(moves: Iterable[str], agent: Agent | None) -> tuple[ContainmentMove, ...]:
    """A plan adjusted by the commander: known, applicable moves in canonical order; pausing
    runs is always part of it, because containment without it is not containment."""
    wanted = {M(m) for m in moves if m in M.__members__.values()} | {M.PAUSE_RUNS}
    return tuple(m for m in applicable_moves(agent) if m in wanted)


def contained_switches() -> dict[str, bool]:
    """A contained agent is paused, and paused blocks every switch (PRODUCT.md)."""
    return switches_for(AutonomyMode.PAUSED)


def retry_delay(attempts_made: int, delays: Sequence[timedelta] = RETRY_DELAYS) -> timedelta | None:
    """How long to wait after `attempts_made` failed attempts; None once they are used up."""
    if 1 <= attempts_made <= len(delays):
        return delays[attempts_made - 1]
    return None
