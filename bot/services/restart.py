"""The restart gate and the staged restart: autonomy earns its way back.

- **Open restart gate** creates the incident's restart (state `gate`) and posts the gate
  message, kept current by editing it.
- A person checks or unchecks a criterion (optional note); an approver accepts a criterion
  Rein judges not met (with a reason). Every change is a `gate` timeline entry.
- **Approve reactivation** (approvers of the severity; SEV-3/4 also the agent owner): every
  criterion met or accepted, SEV-1/2 postmortem completed, first stage `shadow` or `read_only`
  for an agent that could write. **Promote to <stage>** once the stage has its clean runs.
- Each stage change is one transaction: the restart row, the agent's autonomy, an
  `autonomy_changed` kill-switch delivery and the timeline; the autonomy board is updated
  after the commit (as `approve_containment` does). Reaching the normal mode closes the
  incident; so does **Retire agent** (the agent stays paused).
- A failed or flagged run during a stage contains the agent again at once (paused, a
  `containment` delivery) and reopens the gate (next round; the tests criterion unchecked).

Two approvers at once: the second finds the stage already changed inside its transaction
(BEGIN IMMEDIATE serialises them) and is refused; one stage change, one delivery."""

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.autonomy import AutonomyBoard
from bot.context import Rein
from bot.domain.containment import applicable_moves, plan_for
from bot.domain.enums import (
    AutonomyMode,
    DeliveryEvent,
    IncidentStatus,
    Severity,
    TimelineKind,
)
from bot.domain.gate import (
    DERIVED,
    LABELS,
    NOTE_MAX,
    Check,
    CheckState,
    Criterion,
    Gate,
    GateFacts,
    Restart,
    RestartState,
    RunOutcome,
    could_write,
    evaluate,
    first_stages,
    held_moves,
    may_reactivate,
    open_criteria,
)
from bot.domain.lifecycle import transition
from bot.domain.models import (
    AgentAutonomy,
    Delivery,
    Incident,
    TimelineEntry,
    switches_for,
)
from bot.domain.reminders import Reminder, ReminderKind
from bot.render import gate as render
from bot.render.reminders import Composed, Occasion
from bot.render.reminders import compose as compose_reminder
from bot.render.text import approver as approver_mention
from bot.render.text import escape
from bot.render.text import user as mention
from bot.services.authorise import Refused, known_incident
from bot.services.postmortem import guardrail_changes
from bot.services.surfaces import refresh_surfaces
from bot.slack_gateway import SlackProblem
from storage.deliveries import DeliveryRepo
from storage.incidents import IncidentEdit
from storage.postmortems import PostmortemRepo
from storage.restarts import RestartRepo

logger = logging.getLogger(__name__)

GATE_STATUSES = (IncidentStatus.CONTAINED, IncidentStatus.RECOVERED, IncidentStatus.POSTMORTEM)
REACTIVATE_STATUSES = (IncidentStatus.RECOVERED, IncidentStatus.POSTMORTEM)
GATE_REMINDER_EVERY = timedelta(days=1)


class UnknownAgent(LookupError):
    pass


@dataclass(frozen=True)
class StageChange:
    incident: Incident  # after the change (closed when the agent reached its normal mode)
    restart: Restart
    autonomy: AgentAutonomy | None  # None: the agent's autonomy was not touched
    delivery: Delivery | None
    closed: bool


@dataclass(frozen=True)
class RunResult:
    run: dict[str, Any]
    duplicate: bool
    counted: bool
    restart: Restart | None  # the staged restart it counted for (after the count)
    recontained: StageChange | None


def restarts_of(rein: Rein) -> RestartRepo:
    return RestartRepo(rein.db)


def _postmortems(rein: Rein) -> PostmortemRepo:
    return PostmortemRepo(rein.db)


# ------------------------------------------------------------------------------ the gate


async def load_gate(number: int, rein: Rein) -> Gate:
    """The gate as it stands. Reads only: also called inside a write transaction (the same
    connection), where it sees that transaction's state."""
    incident = await known_incident(number, rein.incidents)
    restarts = restarts_of(rein)
    restart = await restarts.get(number)
    contained = await rein.incidents.last_transition_to(number, IncidentStatus.CONTAINED)
    autonomy = rein.board.get(incident.agent_id)
    postmortem = await _postmortems(rein).get(number)
    facts = GateFacts(
        severity=incident.severity,
        contained=contained,
        mode=autonomy.mode if autonomy else None,
        held_by_this=autonomy is not None and autonomy.incident == number,
        ledger=await rein.rollback.counts(number),
        evidence_kinds=frozenset(await rein.evidence.kinds(number)),
        guardrails=await guardrail_changes(number, postmortems=_postmortems(rein)),
        checks=await restarts.checks(number),
    )
    agent = rein.policy.agent(incident.agent_id)
    before = (contained.data.get("autonomy_before") if contained else None) or None
    writer = could_write(agent, before)
    normal = (
        restart.normal_mode
        if restart
        else (agent.normal_mode if agent else AutonomyMode.AUTONOMOUS)
    )
    return Gate(
        incident=incident,
        restart=restart,
        judgements=evaluate(facts),
        writer=writer,
        first=first_stages(normal, writer),
        postmortem_done=postmortem is not None and postmortem.completed,
    )


async def open_gate(number: int, *, actor: str, rein: Rein) -> tuple[Gate, bool]:
    """Create the restart (once) and return the gate; True when this call opened it."""
    current = await known_incident(number, rein.incidents)
    if current.status not in GATE_STATUSES:
        raise Refused(_not_gate_time(current))
    created = False
    async with rein.incidents.edit(number) as edit:
        restart = await RestartRepo.get_in(edit.conn, number)
        if restart is None:
            now = rein.clock()
            agent = rein.policy.agent(current.agent_id)
            restart = Restart(
                incident=number,
                agent_id=current.agent_id,
                state=RestartState.GATE,
                normal_mode=agent.normal_mode if agent else AutonomyMode.AUTONOMOUS,
                needed=agent.clean_runs_per_stage if agent else 5,
                opened_by=actor,
                opened_at=now,
                updated_at=now,
            )
            await RestartRepo.save_in(edit.conn, restart)
            await edit.append(
                [_gate_entry(now, actor, f"{mention(actor)} opened the restart gate", "opened")]
            )
            created = True
    gate = await load_gate(number, rein)
    if created:
        await schedule_gate_reminder(gate.incident, gate.restart, rein)
    return gate, created


def _not_gate_time(incident: Incident) -> str:
    if incident.status is IncidentStatus.CLOSED:
        return f"{incident.ref} is closed: its restart was decided."
    if incident.status in (IncidentStatus.TRIAGE, IncidentStatus.DISMISSED):
        return f"{incident.ref} is {incident.status}; there is no agent to restart."
    return (
        f"{incident.ref} is {incident.status}; the restart gate opens once the agent is "
        "contained: first approve containment (Approve containment)."
    )


async def set_check(
    number: int, criterion: Criterion, checked: bool, note: str, *, actor: str, rein: Rein
) -> Gate:
    """A person checks (with an optional note) or unchecks a criterion. Unchecking an
    approver's acceptance of a derived criterion is an approver's call too."""
    note = note.strip()
    if len(note) > NOTE_MAX:
        raise Refused(f"Keep the note to {NOTE_MAX} characters.")
    if checked and criterion in DERIVED:
        raise Refused(
            f"Rein judges *{LABELS[criterion]}* from its records. If it is not met, an approver "
            "may accept it with a reason: "
            f"`/incident gate accept {criterion.value} &lt;reason&gt;`."
        )
    current = await known_incident(number, rein.incidents)
    if not checked and criterion in DERIVED:
        await authorise_restart(actor, current, "withdraw an accepted gate criterion of", rein)
    async with rein.incidents.edit(number) as edit:
        await _open_restart_in(edit)
        now = rein.clock()
        label = LABELS[criterion]
        if checked:
            checks = await RestartRepo.checks_in(edit.conn, number)
            if criterion in checks:
                found = checks[criterion]
                raise Refused(f"*{label}* is checked already, by {mention(found.by)}.")
            await RestartRepo.set_check_in(
                edit.conn,
                number,
                Check(criterion=criterion, state=CheckState.CHECKED, note=note, by=actor, at=now),
            )
            text = f"{mention(actor)} checked the restart criterion: {label}"
            entry = _gate_entry(
                now, actor, f"{text} — {note}" if note else text, "checked", criterion, note
            )
        else:
            if not await RestartRepo.clear_check_in(edit.conn, number, criterion):
                raise Refused(f"*{label}* is not checked.")
            text = f"{mention(actor)} unchecked the restart criterion: {label}"
            entry = _gate_entry(
                now, actor, f"{text} — {note}" if note else text, "unchecked", criterion, note
            )
        await edit.append([entry])
    return await load_gate(number, rein)


async def accept_criterion(
    number: int, criterion: Criterion, reason: str, *, actor: str, rein: Rein
) -> Gate:
    """An approver accepts a criterion Rein judges not met, with a written reason."""
    reason = reason.strip()
    if criterion not in DERIVED:
        raise Refused(
            f"*{LABELS[criterion]}* is checked by a person: `/incident gate check "
            f"{criterion.value} [note]`."
        )
    if not reason:
        raise Refused("Write why it is accepted as it is.")
    if len(reason) > NOTE_MAX:
        raise Refused(f"Keep the reason to {NOTE_MAX} characters.")
    current = await known_incident(number, rein.incidents)
    await authorise_restart(actor, current, "accept a restart-gate criterion of", rein)
    async with rein.incidents.edit(number) as edit:
        await _open_restart_in(edit)
        gate = await load_gate(number, rein)
        judged = next(j for j in gate.judgements if j.criterion is criterion)
        if judged.met:
            how = "Rein judges it met" if judged.how == "rein" else "it is accepted already"
            # `why` may quote a person's note or the postmortem: outside text, escaped.
            raise Refused(f"*{LABELS[criterion]}*: {how} ({escape(judged.why)}).")
        now = rein.clock()
        await RestartRepo.set_check_in(
            edit.conn,
            number,
            Check(criterion=criterion, state=CheckState.ACCEPTED, note=reason, by=actor, at=now),
        )
        text = (
            f"{mention(actor)} accepted the restart criterion {LABELS[criterion]} as it is "
            f"({judged.why}) — {reason}"
        )
        await edit.append([_gate_entry(now, actor, text, "accepted", criterion, reason)])
    return await load_gate(number, rein)


async def _open_restart_in(edit: IncidentEdit) -> Restart:
    restart = await RestartRepo.get_in(edit.conn, edit.incident.number)
    ref = edit.incident.ref
    if restart is None:
        raise Refused(f"{ref}'s restart gate is not open: Open restart gate (`/incident gate`).")
    if restart.state is RestartState.STAGED:
        by = mention(restart.decided_by or "rein")
        raise Refused(
            f"{ref}'s reactivation was approved already by {by} (stage `{restart.stage}`); "
            "the gate reopens by itself if a run fails or is flagged."
        )
    if restart.state.decided:
        raise Refused(f"{ref}'s restart was decided: the agent was {restart.state}.")
    return restart


def _gate_entry(
    at: Any, actor: str, text: str, action: str, criterion: Criterion | None = None, note: str = ""
) -> TimelineEntry:
    data: dict[str, Any] = {"action": action}
    if criterion is not None:
        data["criterion"] = criterion.value
    if note:
        data["note"] = note
    return TimelineEntry(at=at, actor=actor, kind=TimelineKind.GATE, text=text, data=data)


# ------------------------------------------------------------------------------ deciding


async def authorise_restart(actor: str, incident: Incident, action: str, rein: Rein) -> None:
    """Approvers of the incident's severity; for SEV-3/4 the agent owner too. A refusal is
    recorded on the timeline and answered privately by the caller."""
    approvers = await rein.slack.expand_approvers(rein.policy.approvers(incident.severity))
    agent = rein.policy.agent(incident.agent_id)
    owner = agent.owner if agent else None
    if may_reactivate(actor, incident.severity, owner, approvers):
        return
    await rein.incidents.append(
        incident.number,
        [
            TimelineEntry(
                at=rein.clock(),
                actor=actor,
                kind=TimelineKind.REFUSED,
                text=f"Refused: {mention(actor)} tried to {action}",
                data={"action": action},
            )
        ],
    )
    raise Refused(f"Only {who_may_reactivate(incident, rein)} can {action} {incident.ref}.")


def who_may_reactivate(incident: Incident, rein: Rein) -> str:
    named = rein.policy.approvers(incident.severity)
    who = []
    if named:
        shown = ", ".join(approver_mention(a) for a in named[:10])
        who.append(f"a {incident.severity.label} approver ({shown})")
    agent = rein.policy.agent(incident.agent_id)
    if incident.severity in (Severity.SEV3, Severity.SEV4) and agent is not None:
        who.append(f"the agent owner ({mention(agent.owner)})")
    if not who:
        return f"a {incident.severity.label} approver (the policy file names none)"
    return " or ".join(who)


async def approve_reactivation(
    number: int, stage: AutonomyMode | None, note: str, *, actor: str, rein: Rein
) -> StageChange:
    current = await known_incident(number, rein.incidents)
    await authorise_restart(actor, current, "approve reactivation of", rein)
    note = note.strip()[:NOTE_MAX]
    async with rein.incidents.edit(number) as edit:
        incident = edit.incident
        restart = await _open_restart_in(edit)
        await _may_leave_gate(edit, rein)
        gate = await load_gate(number, rein)
        missing = open_criteria(gate.judgements)
        if missing:
            names = "; ".join(f"{j.label} ({j.why})" for j in missing)
            raise Refused(
                f"{incident.ref} cannot be reactivated yet: {len(missing)} criterion(s) not met "
                f"or accepted — {names}."
            )
        chosen = stage or gate.first[0]
        if chosen not in gate.first:
            allowed_text = " or ".join(f"`{m.value}`" for m in gate.first)
            why = (
                "the agent could write during the incident, so it restarts in "
                if gate.writer
                else "it can restart in "
            )
            raise Refused(f"{incident.ref}: {why}{allowed_text} first, not `{chosen.value}`.")
        _held_elsewhere(incident, rein.board)
        other = await RestartRepo.staged_for_agent_in(edit.conn, incident.agent_id)
        if other is not None and other.incident != number:
            raise Refused(
                f"`{incident.agent_id}` is in a staged restart under INC-{other.incident} already."
            )
        how = f"{mention(actor)} approved reactivation at `{chosen.value}`"
        change = await _to_stage(
            edit, restart, chosen, actor=actor, reason=f"{how} — {note}" if note else how, rein=rein
        )
    return _committed(change, rein)


async def promote(
    number: int, from_stage: AutonomyMode | None, *, actor: str, rein: Rein
) -> StageChange:
    """To the next stage, once this one has its clean runs. `from_stage` (the button's) makes a
    second click on the same offer a refusal instead of a second promotion."""
    current = await known_incident(number, rein.incidents)
    await authorise_restart(actor, current, "promote the agent of", rein)
    async with rein.incidents.edit(number) as edit:
        incident = edit.incident
        restart = await RestartRepo.get_in(edit.conn, number)
        if restart is None or restart.state is not RestartState.STAGED or restart.stage is None:
            state = "not in a staged restart" if restart is None else f"{restart.state}"
            raise Refused(f"{incident.ref}'s agent is {state}; there is nothing to promote.")
        if from_stage is not None and restart.stage is not from_stage:
            raise Refused(
                f"{incident.ref}'s agent is at `{restart.stage.value}` already "
                f"({mention(restart.decided_by or 'rein')} moved it)."
            )
        if not restart.ready:
            raise Refused(
                f"{incident.ref}: `{restart.stage.value}` has {restart.clean_runs} of "
                f"{restart.needed} clean runs; promote it once it has them all."
            )
        target = restart.next_stage
        assert target is not None  # the last stage is the normal mode, which closes
        _held_elsewhere(incident, rein.board)
        reason = (
            f"{mention(actor)} promoted the agent from `{restart.stage.value}` to "
            f"`{target.value}` after {restart.clean_runs} clean runs"
        )
        change = await _to_stage(edit, restart, target, actor=actor, reason=reason, rein=rein)
    return _committed(change, rein)


async def retire_agent(number: int, reason: str, *, actor: str, rein: Rein) -> StageChange:
    """The agent stays paused, held by this incident, and the incident closes."""
    reason = reason.strip()
    if not reason:
        raise Refused("Say why the agent is retired.")
    if len(reason) > NOTE_MAX:
        raise Refused(f"Keep the reason to {NOTE_MAX} characters.")
    current = await known_incident(number, rein.incidents)
    await authorise_restart(actor, current, "retire the agent of", rein)
    async with rein.incidents.edit(number) as edit:
        incident = edit.incident
        restart = await RestartRepo.get_in(edit.conn, number)
        if restart is not None and restart.state.decided:
            raise Refused(f"{incident.ref}'s restart was decided: the agent was {restart.state}.")
        await _may_leave_gate(edit, rein)
        now = rein.clock()
        agent = rein.policy.agent(incident.agent_id)
        if restart is None:
            restart = Restart(
                incident=number,
                agent_id=incident.agent_id,
                state=RestartState.GATE,
                normal_mode=agent.normal_mode if agent else AutonomyMode.AUTONOMOUS,
                needed=agent.clean_runs_per_stage if agent else 5,
                opened_by=actor,
                opened_at=now,
                updated_at=now,
            )
        retired = restart.model_copy(
            update={
                "state": RestartState.RETIRED,
                "stage": None,
                "decided_by": actor,
                "decided_at": now,
                "updated_at": now,
            }
        )
        await RestartRepo.save_in(edit.conn, retired)
        held = rein.board.get(incident.agent_id)
        autonomy: AgentAutonomy | None = None
        delivery: Delivery | None = None
        entries: list[TimelineEntry] = []
        if held is None or held.incident in (None, number):
            autonomy = AgentAutonomy(
                agent_id=incident.agent_id,
                mode=AutonomyMode.PAUSED,
                **switches_for(AutonomyMode.PAUSED),
                incident=number,
                updated_at=now,
            )
            await rein.agents.set_in(edit.conn, autonomy)
            if held is None or held.mode is not AutonomyMode.PAUSED:
                delivery = await _delivery_in(
                    edit, incident, AutonomyMode.PAUSED, DeliveryEvent.AUTONOMY_CHANGED, now, rein
                )
            entries.append(
                TimelineEntry(
                    at=now,
                    actor=actor,
                    kind=TimelineKind.AUTONOMY_CHANGED,
                    text=f"{mention(actor)} retired `{incident.agent_id}`: it stays paused"
                    f" — {reason}",
                    data={"mode": AutonomyMode.PAUSED.value, "retired": True, "reason": reason},
                )
            )
        moved = transition(
            incident, IncidentStatus.CLOSED, actor=actor, at=now, reason=f"agent retired: {reason}"
        )
        entry = moved.entry.model_copy(
            update={"data": {**moved.entry.data, "restart": RestartState.RETIRED.value}}
        )
        await edit.save(moved.incident, [*entries, entry])
    return _committed(StageChange(moved.incident, retired, autonomy, delivery, True), rein)


async def _may_leave_gate(edit: IncidentEdit, rein: Rein) -> None:
    """Reactivating or retiring: recovered (or later), and for SEV-1/2 the postmortem done."""
    incident = edit.incident
    if incident.status not in REACTIVATE_STATUSES:
        if incident.status is IncidentStatus.CONTAINED:
            raise Refused(
                f"{incident.ref} is contained but not recovered; first restore or accept the "
                "affected records and mark it recovered (Mark recovered)."
            )
        raise Refused(_not_gate_time(incident))
    if incident.severity in (Severity.SEV1, Severity.SEV2):
        postmortem = await PostmortemRepo.get_in(edit.conn, incident.number)
        if postmortem is None or not postmortem.completed:
            raise Refused(
                f"{incident.ref} is a {incident.severity.label}: its postmortem must be "
                "completed before the agent is reactivated or retired (Start postmortem)."
            )


def _held_elsewhere(incident: Incident, board: AutonomyBoard) -> None:
    held = board.get(incident.agent_id)
    if held is not None and held.incident not in (None, incident.number):
        raise Refused(
            f"`{incident.agent_id}` is held by INC-{held.incident} now; that incident's restart "
            "decides first."
        )


async def _to_stage(
    edit: IncidentEdit,
    restart: Restart,
    stage: AutonomyMode,
    *,
    actor: str,
    reason: str,
    rein: Rein,
) -> StageChange:
    """One stage change: the restart row, the autonomy, the delivery and the timeline; at the
    agent's normal mode the incident closes and no incident holds the agent any more."""
    incident = edit.incident
    now = rein.clock()
    final = stage is restart.normal_mode
    changed = restart.model_copy(
        update={
            "state": RestartState.REACTIVATED if final else RestartState.STAGED,
            "stage": None if final else stage,
            "clean_runs": 0,
            "stage_started_at": now,
            "offered_stage": None,
            "decided_by": actor,
            "decided_at": now,
            "updated_at": now,
        }
    )
    await RestartRepo.save_in(edit.conn, changed)
    autonomy = AgentAutonomy(
        agent_id=incident.agent_id,
        mode=stage,
        **switches_for(stage),
        incident=None if final else incident.number,
        updated_at=now,
    )
    await rein.agents.set_in(edit.conn, autonomy)
    delivery = await _delivery_in(edit, incident, stage, DeliveryEvent.AUTONOMY_CHANGED, now, rein)
    text = f"{reason}. `{incident.agent_id}` is `{stage.value}` now"
    if not final:
        text += f"; {restart.needed} clean runs earn the next stage"
    entries = [
        TimelineEntry(
            at=now,
            actor=actor,
            kind=TimelineKind.AUTONOMY_CHANGED,
            text=text,
            data={"mode": stage.value, "round": restart.round, "final": final},
        )
    ]
    if final:
        moved = transition(
            incident,
            IncidentStatus.CLOSED,
            actor=actor,
            at=now,
            reason=f"the agent is back in its normal mode ({stage.value}) after a staged restart",
        )
        entry = moved.entry.model_copy(
            update={"data": {**moved.entry.data, "restart": RestartState.REACTIVATED.value}}
        )
        await edit.save(moved.incident, [*entries, entry])
        return StageChange(moved.incident, changed, autonomy, delivery, True)
    touched = incident.model_copy(update={"updated_at": now})
    await edit.save(touched, entries)
    return StageChange(touched, changed, autonomy, delivery, False)


async def _delivery_in(
    edit: IncidentEdit,
    incident: Incident,
    mode: AutonomyMode,
    event: DeliveryEvent,
    now: Any,
    rein: Rein,
) -> Delivery | None:
    agent = rein.policy.agent(incident.agent_id)
    if agent is None or agent.kill_switch is None:
        return None
    if event is DeliveryEvent.CONTAINMENT:
        actions = plan_for(incident, agent)
    else:
        actions = held_moves(mode, applicable_moves(agent))
    delivery = Delivery(
        id=uuid.uuid4().hex,
        incident=incident.number,
        agent_id=incident.agent_id,
        event=event,
        actions=actions,
        mode=mode,
        issued_at=now,
        next_attempt_at=now,
        updated_at=now,
    )
    await DeliveryRepo.insert_in(edit.conn, delivery)
    return delivery


def _committed(change: StageChange, rein: Rein) -> StageChange:
    if change.autonomy is not None:
        rein.board.set(change.autonomy)  # the autonomy API answers the new mode from here on
    return change


# ------------------------------------------------------------------------------ run reports


async def report_run(
    agent_id: str,
    run_id: str,
    outcome: RunOutcome,
    summary: str | None,
    cost: float | None,
    *,
    caller: str,
    rein: Rein,
) -> RunResult:
    """Record a run report; during a staged restart count it, and contain the agent again at
    once when it failed or was flagged. Raises UnknownAgent for an agent not in the policy."""
    agent = rein.policy.agent(agent_id)
    if agent is None:
        raise UnknownAgent(agent_id)
    now = rein.clock()
    run = {
        "agent_id": agent_id,
        "run_id": run_id,
        "outcome": outcome.value,
        "summary": summary,
        "cost": cost,
        "reported_by": caller,
        "at": now,
    }
    staged = await _staged_for(agent_id, rein)
    if staged is not None:
        result: RunResult | None = None
        async with rein.incidents.edit(staged.incident) as edit:
            restart = await RestartRepo.get_in(edit.conn, staged.incident)
            if restart is not None and restart.state is RestartState.STAGED:
                result = await _count_in(edit, restart, run, rein)
        if result is not None:  # committed
            if result.recontained is not None:
                _committed(result.recontained, rein)
            return result
    async with rein.db.transaction() as conn:  # not in a staged restart: counted nowhere
        stored, created = await RestartRepo.add_run_in(conn, run)
    return RunResult(stored, not created, False, None, None)


async def _staged_for(agent_id: str, rein: Rein) -> Restart | None:
    row = await rein.db.fetchone(
        "SELECT incident FROM restarts WHERE agent_id = ? AND state = ?",
        (agent_id, RestartState.STAGED.value),
    )
    return await restarts_of(rein).get(int(row[0])) if row else None


async def _count_in(
    edit: IncidentEdit, restart: Restart, run: dict[str, Any], rein: Rein
) -> RunResult:
    incident = edit.incident
    assert restart.stage is not None
    stored, created = await RestartRepo.add_run_in(
        edit.conn,
        {**run, "incident": incident.number, "stage": restart.stage.value, "round": restart.round},
    )
    if not created:
        return RunResult(stored, True, stored.get("incident") is not None, restart, None)
    now = run["at"]
    outcome = RunOutcome(run["outcome"])
    label = f"run `{run['run_id']}`"
    if outcome is RunOutcome.OK:
        counted = restart.model_copy(
            update={"clean_runs": restart.clean_runs + 1, "updated_at": now}
        )
        await RestartRepo.save_in(edit.conn, counted)
        entries = [
            TimelineEntry(
                at=now,
                actor=run["reported_by"],
                kind=TimelineKind.RUN,
                text=f"Clean {label} during `{restart.stage.value}` "
                f"({counted.clean_runs} of {counted.needed})",
                data=_run_data(run, restart, counted.clean_runs),
            )
        ]
        if counted.clean_runs == counted.needed:
            entries.append(
                TimelineEntry(
                    at=now,
                    actor="rein",
                    kind=TimelineKind.RUN,
                    text=f"`{restart.stage.value}` has its {counted.needed} clean runs: an "
                    f"approver may promote the agent to `{counted.next_stage}`",
                    data={"action": "stage_ready", "stage": restart.stage.value},
                )
            )
        await edit.append(entries)
        return RunResult(stored, False, True, counted, None)
    # failed or flagged: contain again at once, reopen the gate
    reopened = restart.model_copy(
        update={
            "state": RestartState.GATE,
            "stage": None,
            "clean_runs": 0,
            "round": restart.round + 1,
            "offered_stage": None,
            "stage_started_at": None,
            "updated_at": now,
        }
    )
    await RestartRepo.save_in(edit.conn, reopened)
    autonomy = AgentAutonomy(
        agent_id=incident.agent_id,
        mode=AutonomyMode.PAUSED,
        **switches_for(AutonomyMode.PAUSED),
        incident=incident.number,
        updated_at=now,
    )
    await rein.agents.set_in(edit.conn, autonomy)
    delivery = await _delivery_in(
        edit, incident, AutonomyMode.PAUSED, DeliveryEvent.CONTAINMENT, now, rein
    )
    entries = [
        TimelineEntry(
            at=now,
            actor=run["reported_by"],
            kind=TimelineKind.RUN,
            text=f"{outcome.value.capitalize()} {label} during `{restart.stage.value}`"
            + (f": {run['summary']}" if run.get("summary") else ""),
            data=_run_data(run, restart, restart.clean_runs),
        ),
        TimelineEntry(
            at=now,
            actor="rein",
            kind=TimelineKind.AUTONOMY_CHANGED,
            text=f"Rein contained `{incident.agent_id}` again: {label} was {outcome.value} during "
            f"`{restart.stage.value}`. It is paused; the restart gate is open again",
            data={"mode": AutonomyMode.PAUSED.value, "recontained": True, "run_id": run["run_id"]},
        ),
    ]
    if await RestartRepo.clear_check_in(edit.conn, incident.number, Criterion.TESTS):
        entries.append(
            _gate_entry(
                now,
                "rein",
                f"Rein unchecked the restart criterion: {LABELS[Criterion.TESTS]} ({label} was "
                f"{outcome.value})",
                "unchecked",
                Criterion.TESTS,
            )
        )
    entries.append(_gate_entry(now, "rein", "The restart gate is open again", "reopened"))
    touched = incident.model_copy(update={"updated_at": now})
    await edit.save(touched, entries)
    change = StageChange(touched, reopened, autonomy, delivery, False)
    return RunResult(stored, False, True, reopened, change)


def _run_data(run: dict[str, Any], restart: Restart, clean: int) -> dict[str, Any]:
    return {
        "action": "run",
        "run_id": run["run_id"],
        "outcome": run["outcome"],
        "summary": run.get("summary"),
        "cost": run.get("cost"),
        "stage": restart.stage.value if restart.stage else None,
        "round": restart.round,
        "clean_runs": clean,
        "needed": restart.needed,
    }


# ------------------------------------------------------------------------------ Slack


async def show_gate(number: int, rein: Rein, *, repost: bool = False) -> list[str]:
    """Post the gate message, or edit the one there; return what could not be done."""
    async with rein.card_locks[number]:
        gate = await load_gate(number, rein)
        restart = gate.restart
        incident = gate.incident
        if restart is None:
            return []
        channel = incident.channel_id or incident.card_channel
        blocks = render.gate_blocks(gate, rein.policy.agent(incident.agent_id))
        text = render.gate_headline(gate)
        try:
            if restart.gate_channel and restart.gate_ts and not repost:
                await rein.slack.update(restart.gate_channel, restart.gate_ts, text, blocks)
            elif channel is not None:
                ts = await rein.slack.post(channel, text, blocks)
                await restarts_of(rein).set_gate_message(number, channel, ts)
        except SlackProblem as problem:
            return [str(problem)]
        return []


async def refresh_gate(rein: Rein, number: int) -> None:
    """The gate message, redrawn after any change of its incident while it awaits a decision
    (debounced, bot/http_api.py): evidence, ledger and postmortem change its criteria."""
    restart = await restarts_of(rein).get(number)
    if restart is None or restart.gate_ts is None or restart.state.decided:
        return
    for problem in await show_gate(number, rein):
        logger.warning("INC-%d: the gate message could not be updated: %s", number, problem)


async def publish(number: int, rein: Rein) -> list[str]:
    """After a change: the gate message, then card, digest and topic."""
    problems = await show_gate(number, rein)
    incident = await rein.incidents.get(number)
    if incident is not None:
        problems += await refresh_surfaces(incident, **rein.surfaces)
    return problems


async def announce_stage(change: StageChange, actor: str, rein: Rein) -> None:
    """Tell the incident channel about a stage change or a decision."""
    incident = change.incident
    if incident.channel_id is None:
        return
    agent = rein.policy.agent(incident.agent_id)
    text = render.stage_text(change.incident, change.restart, change.autonomy, agent, actor)
    try:
        await rein.slack.post(incident.channel_id, text, render.text_blocks(text))
    except SlackProblem as problem:
        logger.warning("%s: %s", incident.ref, problem)


async def publish_runs(rein: Rein, number: int) -> None:
    """The run feed (debounced per incident): the runs not yet shown, as one message; the
    Promote offer once a stage has its clean runs; then the gate and the card."""
    restarts = restarts_of(rein)
    incident = await rein.incidents.get(number)
    if incident is None:
        return
    pending = await restarts.unposted_runs(number)
    bad = [r for _, r in pending if r["outcome"] != RunOutcome.OK.value]
    if pending:
        if incident.channel_id is not None:
            approvers = rein.policy.approvers(incident.severity)
            text = render.runs_text(incident, [r for _, r in pending], approvers)
            try:
                await rein.slack.post(incident.channel_id, text, render.text_blocks(text))
            except SlackProblem as problem:
                logger.warning("%s: the run reports could not be posted: %s", incident.ref, problem)
                return  # they stay unposted and are tried again with the next report
        await restarts.mark_posted([rowid for rowid, _ in pending])
    restart = await restarts.get(number)
    if restart is not None and restart.ready and restart.stage is not None:
        if await restarts.mark_offered(number, restart.stage) and incident.channel_id:
            agent = rein.policy.agent(incident.agent_id)
            approvers = rein.policy.approvers(incident.severity)
            blocks = render.offer_blocks(incident, restart, agent, approvers)
            try:
                await rein.slack.post(
                    incident.channel_id, render.offer_text(incident, restart), blocks
                )
            except SlackProblem as problem:
                logger.warning(
                    "%s: the promote offer could not be posted: %s", incident.ref, problem
                )
            await schedule_stage_reminder(incident, restart, rein)
    if bad:
        await cancel_gate_reminder(incident, "a run failed or was flagged", rein)
        await schedule_gate_reminder(incident, restart, rein)
    for problem in await publish(number, rein):
        logger.warning("%s: %s", incident.ref, problem)


async def catch_up_runs(rein: Rein) -> list[int]:
    """At start-up: incidents with runs not yet shown or a stage whose offer is due."""
    restarts = restarts_of(rein)
    numbers = set(await restarts.incidents_with_unposted_runs())
    numbers |= {
        r.incident for r in await restarts.staged() if r.ready and r.offered_stage != r.stage
    }
    return sorted(numbers)


# ------------------------------------------------------------------------------ reminders


async def schedule_gate_reminder(incident: Incident, restart: Restart | None, rein: Rein) -> None:
    """While the gate is open: a daily reminder in the incident channel naming the criteria
    still open (composed when sent: `gate_reminder`). Durable (bot/services/reminders.py);
    best effort here: the gate itself is recorded whatever happens."""
    if restart is None or rein.reminders is None:
        return
    try:
        await rein.reminders.schedule(
            incident.number,
            ReminderKind.GATE_DAILY,
            f"gate:{restart.round}",
            rein.clock() + GATE_REMINDER_EVERY,
            payload={"gate_round": restart.round},
            repeat_every=GATE_REMINDER_EVERY,
        )
    except Exception:
        logger.exception("%s: the daily restart-gate reminder could not be scheduled", incident.ref)


async def schedule_stage_reminder(incident: Incident, restart: Restart, rein: Rein) -> None:
    """A stage has its clean runs: remind the approvers daily until someone promotes."""
    if rein.reminders is None or restart.stage is None:
        return
    text = render.offer_text(incident, restart) + ": promote it when you are satisfied."
    try:
        await rein.reminders.schedule(
            incident.number,
            ReminderKind.GATE_STAGE,
            f"stage:{restart.round}:{restart.stage.value}",
            rein.clock() + GATE_REMINDER_EVERY,
            payload={"text": text, "mention": rein.policy.approvers(incident.severity)},
            repeat_every=GATE_REMINDER_EVERY,
        )
    except Exception:
        logger.exception("%s: the stage reminder could not be scheduled", incident.ref)


async def cancel_gate_reminder(incident: Incident, reason: str, rein: Rein) -> None:
    """The gate was decided (or a stage began or ended): its reminders stop."""
    if rein.reminders is None:
        return
    try:
        await rein.reminders.cancel(
            incident.number, [ReminderKind.GATE_DAILY, ReminderKind.GATE_STAGE], reason
        )
    except Exception:
        logger.exception("%s: the restart-gate reminders could not be cancelled", incident.ref)


async def gate_reminder(reminder: Reminder, incident: Incident, rein: Rein) -> Composed | None:
    """What the daily gate reminder says when it is sent: the criteria still open. Nothing
    (None) once the gate is no longer waiting for a decision. A reminder of this kind that
    someone else scheduled (no `gate_round`) says its own `payload.text`."""
    if "gate_round" not in reminder.payload:
        return compose_reminder(reminder, incident, Occasion())
    gate = await load_gate(incident.number, rein)
    if gate.restart is None or gate.restart.state is not RestartState.GATE:
        return None
    text = render.reminder_text(gate, rein.policy.approvers(incident.severity))
    return Composed(text=text.split("\n")[0], blocks=render.text_blocks(text))


def compose_gate_reminders(rein: Rein) -> None:
    """The daily gate reminder says, when it is sent, which criteria are still open."""
    if rein.reminders is None:
        return

    async def compose(reminder: Reminder, incident: Incident) -> Composed | None:
        return await gate_reminder(reminder, incident, rein)

    rein.reminders.compose_with(ReminderKind.GATE_DAILY, compose)
