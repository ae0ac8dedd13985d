"""Alerts from the HTTP API (`POST /v1/alerts`).

An alert is recorded as an incident in `triage`, or, when a policy `alerts:` rule says so,
declared (and contained) by Rein itself. The same fingerprint while its incident is open adds
to that incident instead. Everything is committed before the API answers; Slack (the triage
message, and the room of an incident a rule declared) follows, through `AlertDesk`."""

import asyncio
import logging
import sqlite3
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from bot.api_models import AlertRequest
from bot.autonomy import AutonomyBoard
from bot.clock import Clock
from bot.context import Rein
from bot.debounce import Debouncer
from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.domain.lifecycle import refusal, transition
from bot.domain.models import SUMMARY_MAX, TITLE_MAX, Incident, NewIncident, TimelineEntry
from bot.domain.policy import Agent, AlertRule, Policy
from bot.render import text as t
from bot.render.triage import kind_label, triage_blocks, triage_text
from bot.services.authorise import Refused, authorise, known_incident
from bot.services.containment import Contained, approve_containment
from bot.services.declare import UnknownAgent, open_room
from bot.services.surfaces import refresh_surfaces
from bot.slack_gateway import SlackGateway, SlackProblem
from storage.agents import AgentRepo
from storage.incidents import IncidentRepo

logger = logging.getLogger(__name__)

REIN = "rein"  # the actor when Rein acts by itself
RACE_ATTEMPTS = 3  # look up, insert, and on a racing duplicate look up again
RENDERS_MAX = 3  # writes of one triage message per call, when it changed while being written
ENTRY_TEXT_MAX = 500
SHUTDOWN_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class RuleMatch:
    index: int
    rule: AlertRule

    @property
    def name(self) -> str:
        return f"alerts[{self.index}]"


@dataclass(frozen=True)
class Received:
    incident: Incident
    duplicate: bool  # True: the fingerprint's open incident took the alert
    contained: Contained | None = None  # set when a policy rule contained the agent

    def answer(self) -> dict[str, Any]:
        """What the API answers: what was recorded."""
        incident = self.incident
        return {
            "incident": incident.ref,
            "number": incident.number,
            "status": incident.status.value,
            "severity": incident.severity.value,
            "agent": incident.agent_id,
            "kind": incident.alert_kind,
            "fingerprint": incident.fingerprint,
            "alert_count": incident.alert_count,
            "duplicate": self.duplicate,
            "automatic": incident.automatic,
        }


def matching_rule(policy: Policy, kind: str, agent_id: str) -> RuleMatch | None:
    """The first `alerts:` rule for this kind from this agent (or from every agent)."""
    for index, rule in enumerate(policy.alerts):
        if rule.kind == kind and (agent_id in rule.agents or "*" in rule.agents):
            return RuleMatch(index, rule)
    return None


def suggested_severity(alert: AlertRequest, match: RuleMatch | None) -> tuple[Severity, str]:
    """A rule that declares by itself fixes the severity (the policy's considered choice, and
    validated to have approvers); otherwise the alert's own word, then the rule's, then SEV-4."""
    if match is not None and match.rule.declare:
        return match.rule.severity, (
            f"policy rule {match.name} declares {alert.kind} alerts from {alert.agent} "
            f"as {match.rule.severity.label}"
        )
    if alert.severity is not None:
        return alert.severity, "the severity the alert was sent with"
    if match is not None:
        return match.rule.severity, f"policy rule {match.name} for {alert.kind} alerts"
    return Severity.SEV4, (
        "the alert carried no severity and no policy rule covers it: SEV-4 until someone "
        "judges the impact"
    )


async def receive_alert(
    alert: AlertRequest,
    *,
    caller: str,
    incidents: IncidentRepo,
    agents: AgentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
    board: AutonomyBoard,
) -> Received:
    """Record the alert. Raises `UnknownAgent`. The caller delivers `contained.delivery`."""
    agent = policy.agent(alert.agent)
    if agent is None:
        raise UnknownAgent(alert.agent, policy)
    for _ in range(RACE_ATTEMPTS):
        if alert.fingerprint is not None:
            existing = await incidents.open_by_fingerprint(alert.fingerprint)
            if existing is not None:
                repeated = await _repeat(
                    existing.number, alert, caller=caller, incidents=incidents, clock=clock
                )
                if repeated is not None:
                    return Received(repeated, duplicate=True)
                continue  # closed or dismissed meanwhile: this alert opens a new incident
        match = matching_rule(policy, alert.kind, agent.id)
        try:
            incident = await _record(
                alert, agent, match, caller=caller, incidents=incidents, clock=clock
            )
        except sqlite3.IntegrityError:
            # The unique index on open fingerprints: an identical alert was recorded a moment
            # ago, between the look-up and the insert. It takes this one as a repeat.
            if alert.fingerprint is None:
                raise
            logger.info("alert %r raced an identical one; counted as a repeat", alert.fingerprint)
            continue
        if match is None or not match.rule.declare:
            return Received(incident, duplicate=False)
        return await _act_by_rule(
            incident,
            alert,
            match,
            incidents=incidents,
            agents=agents,
            slack=slack,
            policy=policy,
            clock=clock,
            board=board,
        )
    raise RuntimeError(f"alert {alert.fingerprint!r} raced {RACE_ATTEMPTS} times; send it again")


def _alert_data(alert: AlertRequest) -> dict[str, Any]:
    """The alert's fields exactly as sent."""
    return {
        "agent": alert.agent,
        "kind": alert.kind,
        "summary": alert.summary,
        "details": alert.details,
        "fingerprint": alert.fingerprint,
        "severity": alert.severity.value if alert.severity is not None else None,
    }


async def _record(
    alert: AlertRequest,
    agent: Agent,
    match: RuleMatch | None,
    *,
    caller: str,
    incidents: IncidentRepo,
    clock: Clock,
) -> Incident:
    severity, reason = suggested_severity(alert, match)
    now = clock()
    new = NewIncident(
        title=t.plain(f"{kind_label(alert.kind)}: {alert.summary}", TITLE_MAX),
        summary=t.cut((alert.details or "").strip() or alert.summary, SUMMARY_MAX),
        agent_id=agent.id,
        severity=severity,
        declared_by=caller,
        alert_kind=alert.kind,
        fingerprint=alert.fingerprint,
    )
    line = t.cut(" ".join(alert.summary.split()), ENTRY_TEXT_MAX)
    entry = TimelineEntry(
        at=now,
        actor=caller,
        kind=TimelineKind.ALERT,
        text=f"{alert.kind} alert from {agent.id}: {line}",
        data={
            **_alert_data(alert),
            "count": 1,
            "suggested": severity.value,
            "suggested_reason": reason,
            "rule": match.name if match is not None else None,
        },
    )
    # Until someone declares it, the agent owner answers for it.
    incident, _ = await incidents.create(
        new, status=IncidentStatus.TRIAGE, commander=agent.owner, entry=entry
    )
    logger.info("alert %s from %s recorded as %s", alert.kind, agent.id, incident.ref)
    return incident


async def _repeat(
    number: int, alert: AlertRequest, *, caller: str, incidents: IncidentRepo, clock: Clock
) -> Incident | None:
    """Count the alert on its open incident; None when that incident is no longer open."""
    async with incidents.edit(number) as edit:
        current = edit.incident
        if not current.status.is_open:
            return None
        now = clock()
        count = current.alert_count + 1
        changed = current.model_copy(update={"alert_count": count, "updated_at": now})
        entry = TimelineEntry(
            at=now,
            actor=caller,
            kind=TimelineKind.ALERT,
            text=f"Repeated alert #{count}: {alert.kind} from {alert.agent}",
            data={**_alert_data(alert), "count": count},
        )
        await edit.save(changed, [entry])
    return changed


async def _act_by_rule(
    incident: Incident,
    alert: AlertRequest,
    match: RuleMatch,
    *,
    incidents: IncidentRepo,
    agents: AgentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
    board: AutonomyBoard,
) -> Received:
    """Declare (the agent owner commands) and, when the rule says so, contain at once."""
    why = f"{alert.kind} alert from {alert.agent}, rule {match.name}"
    async with incidents.edit(incident.number) as edit:
        now = clock()
        moved = transition(
            edit.incident, IncidentStatus.DECLARED, actor=REIN, at=now, reason=f"automatic: {why}"
        )
        declared = moved.incident.model_copy(update={"declared_at": now, "automatic": why})
        data = {
            **moved.entry.data,
            "severity": declared.severity.value,
            "commander": declared.commander,
            "rule": match.name,
        }
        await edit.save(declared, [moved.entry.model_copy(update={"data": data})])
    logger.warning("%s declared by itself: %s", declared.ref, why)
    if not match.rule.contain:
        return Received(declared, duplicate=False)
    contained = await approve_containment(
        declared.number,
        actor=REIN,
        automatic=why,
        incidents=incidents,
        agents=agents,
        slack=slack,
        policy=policy,
        clock=clock,
        board=board,
    )
    logger.warning("%s: %s contained by itself", declared.ref, alert.agent)
    return Received(contained.incident, duplicate=False, contained=contained)


# ------------------------------------------------------------------ the triage buttons


async def declare_alert(
    number: int, *, actor: str, incidents: IncidentRepo, clock: Clock
) -> Incident:
    """**Declare incident**: anyone may; the first click wins and commands it."""
    incident = await _in_triage(number, incidents, IncidentStatus.DECLARED)
    async with incidents.edit(number) as edit:
        incident = edit.incident
        if incident.status is IncidentStatus.TRIAGE:
            now = clock()
            moved = transition(
                incident,
                IncidentStatus.DECLARED,
                actor=actor,
                at=now,
                reason="declared from the triage message",
            )
            declared = moved.incident.model_copy(update={"declared_at": now, "commander": actor})
            data = {
                **moved.entry.data,
                "severity": declared.severity.value,
                "commander": actor,
            }
            await edit.save(declared, [moved.entry.model_copy(update={"data": data})])
            return declared
    raise Refused(await _decided(incident, incidents, IncidentStatus.DECLARED))


async def dismiss_alert(
    number: int,
    *,
    actor: str,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    clock: Clock,
) -> Incident:
    """**Dismiss** as a false alarm: a decision not to respond, so it is left to the people
    who answer for the agent: the commander (the agent owner while in triage), the owner, or
    any severity approver. Refusals are recorded."""
    current = await _in_triage(number, incidents, IncidentStatus.DISMISSED)
    await authorise(
        actor,
        current,
        "dismiss",
        set(Severity),
        incidents=incidents,
        slack=slack,
        policy=policy,
        clock=clock,
    )
    async with incidents.edit(number) as edit:
        incident = edit.incident
        if incident.status is IncidentStatus.TRIAGE:
            moved = transition(
                incident,
                IncidentStatus.DISMISSED,
                actor=actor,
                at=clock(),
                reason="dismissed as a false alarm from the triage message",
            )
            await edit.save(moved.incident, [moved.entry])
            return moved.incident
    raise Refused(await _decided(incident, incidents, IncidentStatus.DISMISSED))


async def _in_triage(number: int, incidents: IncidentRepo, wanted: IncidentStatus) -> Incident:
    incident = await known_incident(number, incidents)
    if incident.status is not IncidentStatus.TRIAGE:
        raise Refused(await _decided(incident, incidents, wanted))
    return incident


async def _decided(incident: Incident, incidents: IncidentRepo, wanted: IncidentStatus) -> str:
    """Why an alert that left triage cannot be declared or dismissed now, and by whom."""
    ref = incident.ref
    if incident.status is IncidentStatus.DISMISSED:
        entry = await incidents.last_transition_to(incident.number, IncidentStatus.DISMISSED)
        if entry is None:
            return refusal(incident, wanted)
        said = f"{ref} was dismissed as a false alarm by {t.user(entry.actor)} {t.date(entry.at)}"
        if wanted is IncidentStatus.DISMISSED:
            return f"{said}."
        return f"{said}. If it is real after all, declare a new incident: `/incident declare`."
    entry = await incidents.last_transition_to(incident.number, IncidentStatus.DECLARED)
    if entry is None:
        return refusal(incident, wanted)
    by = "Rein itself (a policy rule)" if entry.actor == REIN else t.user(entry.actor)
    where = t.channel(incident.channel_id) if incident.channel_id else "no channel of its own"
    said = (
        f"{ref} is already declared by {by} {t.date(entry.at)}. "
        f"It is {incident.status} now; {where}."
    )
    if wanted is IncidentStatus.DISMISSED:
        return f"{said} A declared incident is not dismissed: close it through its lifecycle."
    return said


# ------------------------------------------------------------------ the triage message


async def _triage_message(
    incident: Incident, incidents: IncidentRepo, policy: Policy
) -> tuple[str, list[dict]]:
    alert = await incidents.first_entry(incident.number, TimelineKind.ALERT)
    decision = None
    if incident.status is IncidentStatus.DISMISSED:
        decision = await incidents.last_transition_to(incident.number, IncidentStatus.DISMISSED)
    elif incident.status is not IncidentStatus.TRIAGE:
        decision = await incidents.last_transition_to(incident.number, IncidentStatus.DECLARED)
    agent = policy.agent(incident.agent_id)
    return triage_text(incident, alert), triage_blocks(incident, agent, alert, decision)


async def show_triage(
    number: int,
    *,
    incidents: IncidentRepo,
    slack: SlackGateway,
    policy: Policy,
    channel: str | None = None,
) -> list[str]:
    """Make the triage message show the incident as stored: post it in `channel` when it has
    none yet, else edit it. Edits from concurrent alerts and clicks can land out of order, so
    after each write the incident is read again and, if it changed meanwhile, written again.
    Returns what Slack would not do."""
    for _ in range(RENDERS_MAX):
        incident = await incidents.get(number)
        if incident is None or incident.alert_kind is None:
            return []
        message = await _triage_message(incident, incidents, policy)
        try:
            if incident.triage_channel and incident.triage_ts:
                await slack.update(incident.triage_channel, incident.triage_ts, *message)
            elif channel:
                ts = await slack.post(channel, *message)
                await incidents.set_slack_refs(number, triage_channel=channel, triage_ts=ts)
                channel = None
            else:
                return []  # not posted yet: the post shows the latest state when it is made
        except SlackProblem as problem:
            return [f"{problem} (triage message)"]
        after = await incidents.get(number)
        if after is None or await _triage_message(after, incidents, policy) == message:
            return []
    return []


class AlertDesk:
    """Slack work for alerts, done after the API answered: posting takes several Slack calls,
    and a monitoring client that timed out waiting would send its alert again. Each piece of
    work is a task kept here, so that shutdown waits for it (`drain`) before the database
    closes. Repeated alerts coalesce: one refresh per incident runs at a time, and runs again
    if more alerts arrived while it was writing."""

    def __init__(self, rein: Rein) -> None:
        self._rein = rein
        self._tasks: set[asyncio.Task[None]] = set()
        self._counters = Debouncer(self._show_counter, delay=0)
        self._warned = False

    def publish(self, received: Received) -> None:
        if received.duplicate:
            self._counters.poke(received.incident.number)
        else:
            self._spawn(self._announce(received))

    async def drain(self, timeout: float = SHUTDOWN_GRACE_SECONDS) -> None:
        await self._counters.stop(timeout)
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
        if late:
            logger.warning("%d alerts were still being shown in Slack at shutdown", len(late))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _show_counter(self, number: int) -> None:
        """Repeated alerts: the triage message's counter, redrawn from what is stored."""
        rein = self._rein
        problems = await show_triage(
            number, incidents=rein.incidents, slack=rein.slack, policy=rein.policy
        )
        for problem in problems:
            logger.warning("INC-%d: %s", number, problem)

    async def _announce(self, received: Received) -> None:
        rein = self._rein
        incident = received.incident
        try:
            if incident.status is not IncidentStatus.TRIAGE:  # a policy rule declared it
                # With no channel of its own, the card goes to the triage channel.
                await open_room(incident, origin_channel=rein.triage_channel, **rein.room)
                if received.contained is not None:
                    # The kill switch may have answered before the card existed to show it.
                    latest = await rein.incidents.get(incident.number)
                    if latest is not None:
                        await refresh_surfaces(latest, **rein.surfaces)
            if rein.triage_channel is None:
                self._warn_once()
                return
            problems = await show_triage(
                incident.number,
                incidents=rein.incidents,
                slack=rein.slack,
                policy=rein.policy,
                channel=rein.triage_channel,
            )
            if problems:
                await rein.incidents.append(
                    incident.number,
                    [
                        TimelineEntry(
                            at=rein.clock(), actor=REIN, kind=TimelineKind.SLACK_PROBLEM, text=p
                        )
                        for p in problems
                    ],
                )
        except Exception:
            logger.exception("could not show %s in Slack", incident.ref)

    def _warn_once(self) -> None:
        if self._warned:
            return
        self._warned = True
        logger.warning(
            "REIN_TRIAGE_CHANNEL is not set: alerts are recorded as incidents in triage "
            "(GET /v1/incidents?status=triage) but no triage message is posted in Slack"
        )
