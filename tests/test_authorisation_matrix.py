"""The authorisation matrix: every action that needs a role, against every role and a stranger,
through the real path (signed Slack requests through Bolt over HTTP, the HTTP API for alerts,
evidence, ledger reports and run reports, the real HMAC-checking kill switch).

`MATRIX` is the table: one row per action reached one way (a command, a button, a button and
its form) at one severity, one column per role, as the README's rules say ("Who may do what",
"Containment", "Emergency stop", "Alerts", "Rollback ledger", "Recovered", "Reminders",
"Postmortem", "Restart gate"). `ROWS` says how each row is set up, driven and checked. The
roles:

- the incident commander (U0ALICE declares; in triage the agent owner commands);
- the agent owner (the policy's `owner` of crm-writer);
- an approver of the incident's severity named by user id, and one through a user group
  (`S0SECOPS` for SEV-1, `S0SEV3` for SEV-3);
- for a severity change, an approver of the new severity;
- an approver of another severity;
- a responder (in the incident channel, no role) and a stranger.

Allowed cells assert the effect (state, timeline, delivery) and that nothing was refused;
refused cells assert a private answer naming who may act, no change, and the refusal on the
timeline (an emergency stop refused has no incident to record it on: nothing is stored).
`test_every_role_guarded_action_is_in_the_matrix` fails when a guard, a guarded action or a
Slack entry point appears that the table does not account for.
"""

import ast
import asyncio
import importlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

import handlers
from bot.domain.enums import (
    DeliveryState,
    IncidentStatus,
    RollbackStatus,
    Severity,
    TimelineKind,
)
from bot.domain.gate import CheckState, Criterion, RestartState
from bot.domain.models import TimelineEntry
from bot.domain.postmortem import PostmortemState
from bot.domain.updates import PROMPTS
from bot.render.postmortem import COMPLETE, COMPLETE_BLOCK
from bot.render.reminders import snooze_action
from bot.render.triage import DECLARE_ALERT, DISMISS_ALERT
from bot.services.postmortem import COMPLETE_ACTION, SHARE_ACTION
from bot.services.reminders import SNOOZE_ACTION
from bot.services.rollback import ACCEPT_ACTION, MARK_ACTION, RECOVER_ACTION
from bot.services.updates import ACTION as UPDATE_ACTION
from handlers.incident_command import SUBCOMMANDS
from storage.restarts import RestartRepo
from tests import test_containment as containment
from tests.conftest import make_settings
from tests.fakes.kill_switch import FakeKillSwitch
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import chosen, ticked, typed
from tests.test_containment import FAST, SEV3_GROUP, SEV3_LEAD, Rig, delivery_state, write_policy
from tests.test_restart_gate import (
    NEEDED,
    PARTS,
    api,
    check_people_criteria,
    complete_postmortem,
    contained_and_recovered,
    delivered,
    in_channel,
    press_gate,
    press_in_channel,
    run,
)
from tests.test_rollback import buttons

# The containment tests' real HMAC-checking kill switch.
kill_switch = containment.kill_switch

COMMANDER = "U0ALICE"
OWNER = "U0OWNER"  # crm-writer's owner
SEV1_APPROVER = "U0CTO"  # a SEV-1 approver by user id
SEV1_GROUP_MEMBER = "U0SEC1"  # a SEV-1 approver through the user group S0SECOPS
SEV2_APPROVER = "U0HEADOPS"
SEV4_APPROVER = "U0SEV4LEAD"  # this file's policy adds a SEV-4 approver
RESPONDER = "U0BOB"  # joins the incident channel; holds no role
STRANGER = "U0MALLORY"
TRIAGE = "CTRIAGE"
ORIGIN = "CGENERAL"
APPROVERS = {  # the policy this file runs with, as the refusals must name it
    Severity.SEV1: ["S0SECOPS", SEV1_APPROVER],
    Severity.SEV2: [SEV2_APPROVER],
    Severity.SEV3: [SEV3_GROUP],
    Severity.SEV4: [SEV4_APPROVER],
}
BY_ID = {Severity.SEV1: SEV1_APPROVER, Severity.SEV2: SEV2_APPROVER, Severity.SEV4: SEV4_APPROVER}
BY_GROUP = {Severity.SEV1: SEV1_GROUP_MEMBER, Severity.SEV3: SEV3_LEAD}
AUTOMATIC = {TimelineKind.STATUS_POSTED}  # Rein's own channel status line, on its own timer
TITLE = "Wrong industry on 300 accounts"


# ------------------------------------------------------------------------------ the rig


def matrix_policy(directory: Path, kill_switch_url: str) -> Path:
    """The containment tests' policy (kill switch for crm-writer, `S0SEV3` approving SEV-3)
    with a SEV-4 approver, so that every severity has one."""
    policy = yaml.safe_load(write_policy(directory, kill_switch_url).read_text())
    policy["severities"]["sev4"]["approvers"] = [SEV4_APPROVER]
    path = directory / "rein-matrix.yml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


@pytest.fixture
async def rig(
    fake_slack: FakeSlack, kill_switch: FakeKillSwitch, tmp_path: Path
) -> AsyncIterator[Rig]:
    fake_slack.add_usergroup(SEV3_GROUP, [SEV3_LEAD])
    fake_slack.add_channel(TRIAGE, "alerts", members=[COMMANDER, RESPONDER, OWNER])
    policy = matrix_policy(tmp_path, kill_switch.url)
    settings = make_settings(fake_slack, tmp_path, policy, REIN_TRIAGE_CHANNEL=TRIAGE)
    async with aiohttp.ClientSession() as http:
        rig = Rig(fake_slack, kill_switch, settings, http, FAST)
        await rig.start()
        try:
            yield rig
        finally:
            await rig.stop()
    assert fake_slack.rejections == [], "Rein sent Slack something it refuses"


# ------------------------------------------------------------------------------ roles


class Role(StrEnum):
    COMMANDER = "commander"
    OWNER = "owner"
    APPROVER = "approver"  # of the incident's severity, by user id
    GROUP_APPROVER = "group_approver"  # of the incident's severity, through a user group
    NEW_APPROVER = "new_sev_approver"  # a severity change: an approver of the new severity
    OTHER_APPROVER = "other_approver"  # of a severity the incident does not have
    RESPONDER = "responder"
    STRANGER = "stranger"


STEER = frozenset({Role.COMMANDER, Role.OWNER, Role.APPROVER, Role.GROUP_APPROVER})

# The matrix, as the README states the rules: Y may, n is refused, - nobody distinct holds the
# role there (SEV-4 has no approver group, triage's commander is the agent owner, an emergency
# stop has no incident yet). Columns: commander, agent owner, approver of the incident's severity
# by user id and through a user group, approver of the new severity (severity changes), approver
# of another severity, responder in the channel, stranger. The rows are ROWS below.
MATRIX = """
row                                   cmdr owner appr group new other resp stranger
severity-command                       Y    Y     Y    Y     Y   n     n    n
severity-modal                         Y    Y     Y    Y     Y   n     n    n
close-command         (SEV-4)          Y    Y     Y    -     -   n     n    n
close-modal           (SEV-4)          Y    Y     Y    -     -   n     n    n
containment-plan                       Y    Y     Y    Y     -   n     n    n
approve-containment-button             Y    Y     Y    Y     -   n     n    n
contain-command                        Y    Y     Y    Y     -   n     n    n
retry-delivery                         Y    Y     Y    Y     -   n     n    n
dismiss-alert         (any approver)   -    Y     Y    Y     -   Y     n    n
post-update-button                     Y    Y     Y    Y     -   n     n    n
post-update-command                    Y    Y     Y    Y     -   n     n    n
mark-ledger-command                    Y    Y     Y    Y     -   n     n    n
mark-ledger-modal                      Y    Y     Y    Y     -   n     n    n
mark-recovered-button                  Y    Y     Y    Y     -   n     n    n
accept-pending-rest-command            Y    n     n    n     -   n     n    n
snooze-reminder                        Y    Y     Y    Y     -   n     n    n
complete-postmortem                    Y    Y     Y    Y     -   n     n    n
share-postmortem-button                Y    Y     Y    Y     -   n     n    n
share-postmortem-command               Y    Y     Y    Y     -   n     n    n
gate-accept-command-sev1               n    n     Y    Y     -   n     n    n
gate-accept-button-sev3 (owner too)    n    Y     -    Y     -   n     n    n
gate-withdraw-acceptance-sev1          n    n     Y    Y     -   n     n    n
approve-reactivation-command-sev1      n    n     Y    Y     -   n     n    n
approve-reactivation-button-sev3       n    Y     -    Y     -   n     n    n
promote-button-sev3                    n    Y     -    Y     -   n     n    n
retire-command-sev1                    n    n     Y    Y     -   n     n    n
retire-button-sev3                     n    Y     -    Y     -   n     n    n
emergency-stop        (any approver)   -    Y     Y    Y     -   Y     n    n
"""
COLUMNS = (
    Role.COMMANDER,
    Role.OWNER,
    Role.APPROVER,
    Role.GROUP_APPROVER,
    Role.NEW_APPROVER,
    Role.OTHER_APPROVER,
    Role.RESPONDER,
    Role.STRANGER,
)


def _matrix() -> dict[str, dict[Role, str]]:
    table: dict[str, dict[Role, str]] = {}
    for line in MATRIX.strip().splitlines()[1:]:
        words = re.sub(r"\(.*?\)", "", line).split()
        table[words[0]] = dict(zip(COLUMNS, words[1:], strict=True))
    return table


EXPECTED = _matrix()


def mention(who: str) -> str:
    return f"<!subteam^{who}>" if who.startswith("S") else f"<@{who}>"


def approvers_named(*severities: Severity) -> tuple[str, ...]:
    return tuple(mention(a) for s in severities for a in APPROVERS[s])


@dataclass(frozen=True)
class Scene:
    """What a row's set-up left: the incident and the channel people act in."""

    number: int
    channel: str

    @property
    def ref(self) -> str:
        return f"INC-{self.number}"


@dataclass(frozen=True)
class Refusal:
    """What a refused person must be told, and what the timeline must record."""

    action: str | None  # the `refused` entry's data.action; None: there is no incident to record
    names: tuple[str, ...]  # the people the answer must name
    says: str = ""  # the sentence, `{ref}` for the incident; default "can <action> {ref}"

    def sentence(self, scene: Scene) -> str:
        return (self.says or f"can {self.action} {{ref}}").format(ref=scene.ref)


Setup = Callable[[Rig], Awaitable[Scene]]
Act = Callable[[Rig, Scene, str], Awaitable[str]]
Done = Callable[[Rig, Scene, str], Awaitable[None]]


@dataclass(frozen=True)
class Row:
    id: str
    action: str  # the guard's phrase (the timeline's data.action), or what anyone may do
    via: tuple[str, ...]  # the Slack entry points it drives (`_entry_points`)
    severity: Severity
    setup: Setup
    act: Act
    done: Done
    new_severity: Severity | None = None
    commander: str | None = COMMANDER  # None: no separate commander (triage, no incident)
    names: tuple[str, ...] = ()  # whom a refusal names (default: the steering roles)
    refusal_for: Callable[[Role], Refusal] | None = None  # when it depends on the role

    def user(self, role: Role) -> str | None:
        """Who holds `role` for this row; None when nobody distinct does."""
        match role:
            case Role.COMMANDER:
                return self.commander
            case Role.OWNER:
                return OWNER
            case Role.APPROVER:
                return BY_ID.get(self.severity)
            case Role.GROUP_APPROVER:
                return BY_GROUP.get(self.severity)
            case Role.NEW_APPROVER:
                if self.new_severity is None:
                    return None
                return BY_GROUP.get(self.new_severity) or BY_ID.get(self.new_severity)
            case Role.OTHER_APPROVER:
                return SEV2_APPROVER if self.severity is Severity.SEV1 else SEV1_APPROVER
            case Role.RESPONDER:
                return RESPONDER
            case Role.STRANGER:
                return STRANGER

    @property
    def allowed(self) -> frozenset[Role]:
        return frozenset(role for role, cell in EXPECTED[self.id].items() if cell == "Y")

    def refusal(self, role: Role) -> Refusal:
        if self.refusal_for is not None:
            return self.refusal_for(role)
        return Refusal(self.action, self.names or steer_names(self))

    def cells(self) -> Iterator[tuple[Role, str]]:
        for role in Role:
            user = self.user(role)
            if user is not None:
                yield role, user


def steer_names(row: Row) -> tuple[str, ...]:
    severities = [row.severity] + ([row.new_severity] if row.new_severity else [])
    return (mention(COMMANDER), mention(OWNER), *approvers_named(*sorted(severities)))


def restart_names(severity: Severity) -> tuple[str, ...]:
    owner = (mention(OWNER),) if severity in (Severity.SEV3, Severity.SEV4) else ()
    return (*approvers_named(severity), *owner)


# ------------------------------------------------------------------------------ what people see


@dataclass
class Outbox:
    """Where private answers arrive, marked before an act: ephemerals, response_url answers
    (not `in_channel`) and direct messages."""

    fake: FakeSlack
    ephemerals: int
    responses: int
    direct: dict[str, int]

    @classmethod
    def mark(cls, fake: FakeSlack) -> "Outbox":
        direct = {channel: len(messages) for channel, messages in fake.messages.items()}
        return cls(fake, len(fake.ephemerals), len(fake.responses), direct)

    def private(self, user: str) -> list[str]:
        texts = [e.text or "" for e in self.fake.ephemerals[self.ephemerals :] if e.user == user]
        texts += [
            str(body.get("text") or "")
            for _, body in self.fake.responses[self.responses :]
            if isinstance(body, dict) and body.get("response_type") != "in_channel"
        ]
        texts += [
            m.text or "" for m in self.fake.messages.get(user, [])[self.direct.get(user, 0) :]
        ]
        return texts


def public_texts(fake: FakeSlack) -> str:
    """Everything in the channels (not direct messages), as text."""
    return "\n".join(
        (m.text or "") + json.dumps(m.blocks or [])
        for channel, messages in fake.messages.items()
        if channel.startswith(("C", "G"))
        for m in messages
    )


def said(answer: Any) -> str:
    """Rein's synchronous answer: the ack's text, or a form's errors."""
    if isinstance(answer, dict):
        if answer.get("response_action") == "errors":
            return " ".join(str(v) for v in answer.get("errors", {}).values())
        return str(answer.get("text") or "")
    return str(answer or "")


async def snapshot(rig: Rig, scene: Scene) -> dict[str, Any]:
    """Everything a role-guarded action could change."""
    rein = rig.rein
    status, autonomy = await rig.autonomy()
    assert status == 200
    state: dict[str, Any] = {
        "autonomy": {k: v for k, v in autonomy.items() if k != "updated_at"},
        "incidents": [i.number for i in await rein.incidents.newest()],
        "kill_switch_requests": len(rig.ks.requests),
        "files_shared": sum(f.completed for f in rig.fake.files.values()),
    }
    if scene.number:
        incident = await rig.incident(scene.number)
        restart = await RestartRepo(rein.db).get(scene.number)
        postmortem = await rein.postmortems.get(scene.number)
        assert rein.reminders is not None
        state |= {
            "incident": incident.model_dump(exclude={"updated_at"}),
            "deliveries": [(d.id, d.state, d.attempts) for d in await rig.deliveries(scene.number)],
            "ledger": [
                (i.id, i.status, i.reason) for i in await rein.rollback.for_incident(scene.number)
            ],
            "evidence": len(await rein.evidence.for_incident(scene.number)),
            "postmortem": postmortem and (postmortem.state, postmortem.revision),
            "restart": restart and (restart.state, restart.stage, restart.clean_runs),
            "checks": {
                c.value: (check.state, check.by)
                for c, check in (await RestartRepo(rein.db).checks(scene.number)).items()
            },
            "reminders": [
                (r.kind, r.due_at, r.state)
                for r in await rein.reminders.repo.for_incident(scene.number)
            ],
        }
    return state


def refusals(timeline: list[TimelineEntry]) -> list[TimelineEntry]:
    return [e for e in timeline if e.kind is TimelineKind.REFUSED]


async def timeline(rig: Rig, scene: Scene) -> list[TimelineEntry]:
    return await rig.timeline(scene.number) if scene.number else []


def last_by(entries: list[TimelineEntry], kind: TimelineKind, user: str) -> TimelineEntry:
    found = [e for e in entries if e.kind is kind and e.actor == user]
    assert found, f"no {kind.value} entry by {user}: {[(e.kind.value, e.actor) for e in entries]}"
    return found[-1]


# ------------------------------------------------------------------------------ set-ups


async def _join(rig: Rig, number: int) -> Scene:
    """The incident's scene; the responder joins its channel, as responders do."""
    incident = await rig.incident(number)
    assert incident.channel_id
    rig.fake.channels[incident.channel_id].members.add(RESPONDER)
    return Scene(number, incident.channel_id)


async def _on_card(rig: Rig, number: int, label: str) -> None:
    async def shown() -> bool:
        return label in buttons(await rig.card(number))

    await _eventually(shown, f"the card shows {label!r}")


async def _eventually(check: Callable[[], Any], what: str, timeout: float = 8.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not in time: {what}")
        await asyncio.sleep(0.02)


def declared(severity: Severity) -> Setup:
    async def setup(rig: Rig) -> Scene:
        incident = await rig.declare(f"{severity.value} agent:crm-writer {TITLE}", user=COMMANDER)
        return await _join(rig, incident.number)

    return setup


def contained(severity: Severity, *, records: int = 0, restored: bool = False) -> Setup:
    """Declared, Approve containment by the commander (the kill switch confirms), `records`
    ledger items reported through the API, restored by the commander if `restored`."""

    async def setup(rig: Rig) -> Scene:
        scene = await declared(severity)(rig)
        status, _ = await rig.press("Approve containment", COMMANDER, scene.number)
        assert status == 200
        await delivered(rig.ks, "containment", "paused")
        for n in range(1, records + 1):
            record = {"system": "crm", "record": f"ACC-{n}", "before": "Retail", "after": "Mining"}
            status, _ = await api(rig, "POST", f"/v1/incidents/{scene.ref}/rollback", record)
            assert status == 201
        if restored:
            answer = await _command(rig, scene, "rollback restored all from backup", COMMANDER)
            assert "restored" in answer, answer
        await _on_card(
            rig, scene.number, "Mark records" if records and not restored else "Mark recovered"
        )
        return scene

    return setup


def unconfirmed(severity: Severity) -> Setup:
    """Contained while the kill switch fails every attempt: NOT CONFIRMED, with Retry delivery;
    the kill switch then comes back, so that a retry would be confirmed."""

    async def setup(rig: Rig) -> Scene:
        rig.ks.fail()
        scene = await declared(severity)(rig)
        await rig.press("Approve containment", COMMANDER, scene.number)
        await delivery_state(rig, DeliveryState.UNCONFIRMED, scene.number)
        await _on_card(rig, scene.number, "Retry delivery")
        await rig.ks.recover(204)
        return scene

    return setup


def recovered(severity: Severity, *, draft: bool = False) -> Setup:
    """Contained, the evidence the severity requires, the ledger restored, Mark recovered;
    with `draft`, the commander saved a postmortem draft."""

    async def setup(rig: Rig) -> Scene:
        number = await contained_and_recovered(rig, f"{severity.value} agent:crm-writer {TITLE}")
        scene = await _join(rig, number)
        if draft:
            answer = await _press_and_fill(
                rig, scene, "Start postmortem", COMMANDER, _parts(complete=False)
            )
            assert answer == "", answer
            await _on_card(rig, number, "Share postmortem")
        else:
            await _on_card(rig, number, "Start postmortem")
        return scene

    return setup


def gate(
    severity: Severity,
    *,
    postmortem: bool = False,
    people: bool = False,
    accepted_by: str | None = None,
    staged: bool = False,
) -> Setup:
    """Recovered, the restart gate opened by the commander; optionally the postmortem
    completed, the four people's criteria checked, `guardrails` accepted by `accepted_by`,
    and a staged restart at `shadow` with its clean runs (ready to promote)."""

    async def setup(rig: Rig) -> Scene:
        scene = await recovered(severity)(rig)
        if postmortem:
            await complete_postmortem(rig, scene.number)
        answer = await _command(rig, scene, "gate", COMMANDER)
        assert "restart gate is open" in answer, answer
        if people:
            await check_people_criteria(rig, scene.number)
        if accepted_by:
            answer = await _command(
                rig, scene, "gate accept guardrails verifier added", accepted_by
            )
            assert "Done" in answer, answer
        if staged:
            answer = await _command(rig, scene, "gate approve shadow", accepted_by or SEV1_APPROVER)
            assert "`shadow`" in answer, answer
            await delivered(rig.ks, "autonomy_changed", "shadow")
            for i in range(NEEDED):
                status, _ = await run(rig, f"run-{i}")
                assert status == 201
            await in_channel(rig, "Promote to read_only", scene.number)
        return scene

    return setup


async def triage(rig: Rig) -> Scene:
    """An alert (suggested SEV-1) in triage; its message in the triage channel."""
    body = {"agent": "crm-writer", "kind": "anomaly", "summary": TITLE, "severity": "sev1"}
    status, answer = await api(rig, "POST", "/v1/alerts", body)
    assert status == 201, answer
    number = int(answer["incident"].removeprefix("INC-"))

    async def posted() -> bool:
        return (await rig.incident(number)).triage_ts is not None

    await _eventually(posted, "the triage message")
    return Scene(number, TRIAGE)


async def nothing(rig: Rig) -> Scene:
    """No incident: the emergency stop declares one."""
    return Scene(0, ORIGIN)


# ------------------------------------------------------------------------------ acts


async def _command(rig: Rig, scene: Scene, text: str, user: str, name: str = "/incident") -> str:
    """`text` typed in the scene's channel; the ack's text, else the response_url answer."""
    before = len(rig.fake.responses)
    status, answer = await rig.command(text, user=user, channel=scene.channel, name=name)
    assert status == 200
    if said(answer):
        return said(answer)
    await _eventually(lambda: len(rig.fake.responses) > before, f"an answer to {text!r}")
    return str(rig.fake.responses[before][1].get("text") or "")


def command(text: str, name: str = "/incident") -> Act:
    async def act(rig: Rig, scene: Scene, user: str) -> str:
        status, answer = await rig.command(text, user=user, channel=scene.channel, name=name)
        assert status == 200
        return said(answer)

    return act


def card_button(label: str) -> Act:
    async def act(rig: Rig, scene: Scene, user: str) -> str:
        found = buttons(await rig.card(scene.number)).get(label)
        assert found is not None, f"no {label!r} on {scene.ref}'s card"
        status, answer = await rig.slack.click(
            found["action_id"], found["value"], user=user, channel=scene.channel
        )
        assert status == 200
        return said(answer)

    return act


async def _fill_if_opened(
    rig: Rig, user: str, start: Callable[[], Awaitable[str]], values: dict[str, Any]
) -> str:
    """`start` (a press or a command) as `user`; if Rein opens a form, submit `values` as
    `user` and return its answer. Rein may instead answer: that answer, or '' when private."""
    opened = len(rig.fake.calls_to("views.open"))
    outbox = Outbox.mark(rig.fake)
    acked = await start()
    if acked:
        return acked
    await _eventually(
        lambda: len(rig.fake.calls_to("views.open")) > opened or outbox.private(user),
        "a form or an answer",
    )
    if len(rig.fake.calls_to("views.open")) == opened:
        return ""
    view = rig.fake.calls_to("views.open")[-1].args["view"]
    status, answer = await rig.slack.submit(view, values, user=user)
    assert status == 200
    return said(answer)


async def _press_and_fill(
    rig: Rig, scene: Scene, label: str, user: str, values: dict[str, Any]
) -> str:
    """The card's `label`, then its form."""
    return await _fill_if_opened(rig, user, lambda: card_button(label)(rig, scene, user), values)


def form(label: str, values: dict[str, Any]) -> Act:
    async def act(rig: Rig, scene: Scene, user: str) -> str:
        return await _press_and_fill(rig, scene, label, user, values)

    return act


def command_form(text: str, values: dict[str, Any]) -> Act:
    async def act(rig: Rig, scene: Scene, user: str) -> str:
        return await _fill_if_opened(rig, user, lambda: command(text)(rig, scene, user), values)

    return act


def gate_form(label: str, values: dict[str, Any], criterion: str | None = None) -> Act:
    """A button on the gate message, then its form if it has one."""

    async def act(rig: Rig, scene: Scene, user: str) -> str:
        async def press() -> str:
            status, answer = await press_gate(rig, label, user, criterion, number=scene.number)
            assert status == 200
            return said(answer)

        if not values:
            return await press()
        return await _fill_if_opened(rig, user, press, values)

    return act


async def tick_plan(rig: Rig, scene: Scene, user: str) -> str:
    status, answer = await rig.tick(PLAN_WITHOUT_OUTBOUND, user, scene.number)
    assert status == 200
    return said(answer)


async def snooze(rig: Rig, scene: Scene, user: str) -> str:
    """The update reminder's Snooze 15 min, as Slack sends it from the reminder message."""
    status, answer = await rig.slack.click(
        snooze_action(15), str(scene.number), user=user, channel=scene.channel
    )
    assert status == 200
    return said(answer)


def triage_button(action_id: str) -> Act:
    async def act(rig: Rig, scene: Scene, user: str) -> str:
        incident = await rig.incident(scene.number)
        status, answer = await rig.slack.click(
            action_id,
            str(scene.number),
            user=user,
            channel=TRIAGE,
            message_ts=incident.triage_ts or "",
        )
        assert status == 200
        return said(answer)

    return act


async def promote_button(rig: Rig, scene: Scene, user: str) -> str:
    status, answer = await press_in_channel(rig, "Promote to read_only", user, scene.number)
    assert status == 200
    return said(answer)


PLAN_WITHOUT_OUTBOUND = ["pause_runs", "revoke_writes", "disable_schedules"]
REASON = {"reason": typed("customers saw it")}
LEARNING = {"learning": typed("fixed the field mapping; a verifier checks each write")}
UPDATE = {p.key: typed(f"{p.label}: known so far") for p in PROMPTS}
MARK_ALL = {"status": chosen("restored"), "items": typed("all"), "reason": typed("")}


def _parts(*, complete: bool) -> dict[str, Any]:
    values: dict[str, Any] = {key: typed(text) for key, text in PARTS.items()}
    values[COMPLETE_BLOCK] = ticked(COMPLETE) if complete else ticked()
    return values


# ------------------------------------------------------------------------------ effects


async def _incident_is(rig: Rig, scene: Scene, **expected: Any) -> None:
    async def reached() -> bool:
        incident = await rig.incident(scene.number)
        return all(getattr(incident, k) == v for k, v in expected.items())

    await _eventually(reached, f"{scene.ref} has {expected}")


def moved_to(status: IncidentStatus) -> Done:
    async def done(rig: Rig, scene: Scene, user: str) -> None:
        await _incident_is(rig, scene, status=status)
        entry = last_by(await timeline(rig, scene), TimelineKind.STATUS_CHANGED, user)
        assert entry.data["to"] == status.value

    return done


async def severity_changed(rig: Rig, scene: Scene, user: str) -> None:
    await _incident_is(rig, scene, severity=Severity.SEV3)
    entry = last_by(await timeline(rig, scene), TimelineKind.SEVERITY_CHANGED, user)
    assert "customers saw it" in entry.text


async def plan_changed(rig: Rig, scene: Scene, user: str) -> None:
    await _incident_is(rig, scene, containment_plan=tuple(PLAN_WITHOUT_OUTBOUND))
    last_by(await timeline(rig, scene), TimelineKind.PLAN_CHANGED, user)


async def contained_by(rig: Rig, scene: Scene, user: str) -> None:
    await moved_to(IncidentStatus.CONTAINED)(rig, scene, user)
    _, autonomy = await rig.autonomy()
    assert (autonomy["mode"], autonomy["incident"]) == ("paused", scene.ref)
    await delivered(rig.ks, "containment", "paused")


async def retried(rig: Rig, scene: Scene, user: str) -> None:
    delivery = await delivery_state(rig, DeliveryState.CONFIRMED, scene.number)
    entries = await timeline(rig, scene)
    asked = [e for e in entries if e.kind is TimelineKind.DELIVERY and e.data.get("retry")]
    assert [(e.actor, e.data["delivery_id"]) for e in asked] == [(user, delivery.id)]
    assert rig.ks.delivery_ids()[-1] == delivery.id


async def updated(rig: Rig, scene: Scene, user: str) -> None:
    async def posted() -> bool:
        entries = await timeline(rig, scene)
        return any(e.kind is TimelineKind.STATUS_UPDATE and e.actor == user for e in entries)

    await _eventually(posted, f"a status update by {user}")


async def marked(rig: Rig, scene: Scene, user: str) -> None:
    async def restored() -> bool:
        items = await rig.rein.rollback.for_incident(scene.number)
        return bool(items) and all(
            (i.status, i.by) == (RollbackStatus.RESTORED, user) for i in items
        )

    await _eventually(restored, f"the ledger restored by {user}")
    last_by(await timeline(rig, scene), TimelineKind.ROLLBACK, user)


async def rest_accepted(rig: Rig, scene: Scene, user: str) -> None:
    await moved_to(IncidentStatus.RECOVERED)(rig, scene, user)
    items = await rig.rein.rollback.for_incident(scene.number)
    assert [(i.status, i.by) for i in items] == [(RollbackStatus.ACCEPTED, user)]


async def snoozed(rig: Rig, scene: Scene, user: str) -> None:
    async def recorded() -> bool:
        entries = await timeline(rig, scene)
        return any(e.kind is TimelineKind.REMINDER_SNOOZED and e.actor == user for e in entries)

    await _eventually(recorded, f"a snooze by {user}")


async def postmortem_completed(rig: Rig, scene: Scene, user: str) -> None:
    await moved_to(IncidentStatus.POSTMORTEM)(rig, scene, user)
    postmortem = await rig.rein.postmortems.get(scene.number)
    assert postmortem is not None
    assert (postmortem.state, postmortem.completed_by) == (PostmortemState.COMPLETED, user)


async def shared(rig: Rig, scene: Scene, user: str) -> None:
    await _eventually(
        lambda: [f for f in rig.fake.files.values() if f.completed], "the shared document"
    )
    [document] = [f for f in rig.fake.files.values() if f.completed]
    assert document.channel == scene.channel
    assert f"shared by <@{user}>" in (document.initial_comment or "")


def criterion_is(state: CheckState | None, action: str) -> Done:
    async def done(rig: Rig, scene: Scene, user: str) -> None:
        async def reached() -> bool:
            checks = await RestartRepo(rig.rein.db).checks(scene.number)
            found = checks.get(Criterion.GUARDRAILS)
            return (found.state if found else None) is state

        await _eventually(reached, f"guardrails {state}")
        entry = last_by(await timeline(rig, scene), TimelineKind.GATE, user)
        assert (entry.data["action"], entry.data["criterion"]) == (action, "guardrails")

    return done


def staged_at(mode: str) -> Done:
    async def done(rig: Rig, scene: Scene, user: str) -> None:
        async def reached() -> bool:
            _, autonomy = await rig.autonomy()
            return bool(autonomy["mode"] == mode)

        await _eventually(reached, f"the agent at {mode}")
        restart = await RestartRepo(rig.rein.db).get(scene.number)
        assert restart is not None and restart.state is RestartState.STAGED
        assert restart.decided_by == user
        await delivered(rig.ks, "autonomy_changed", mode)

    return done


async def retired(rig: Rig, scene: Scene, user: str) -> None:
    await moved_to(IncidentStatus.CLOSED)(rig, scene, user)
    restart = await RestartRepo(rig.rein.db).get(scene.number)
    assert restart is not None
    assert (restart.state, restart.decided_by) == (RestartState.RETIRED, user)
    _, autonomy = await rig.autonomy()
    assert (autonomy["mode"], autonomy["incident"]) == ("paused", scene.ref)


async def paused_by(rig: Rig, scene: Scene, user: str) -> None:
    _, autonomy = await rig.autonomy()
    assert (autonomy["mode"], autonomy["incident"]) == ("paused", "INC-1")
    incident = await rig.incident(1)
    assert (incident.status, incident.commander) == (IncidentStatus.CONTAINED, user)
    await delivered(rig.ks, "containment", "paused")


# ------------------------------------------------------------------------------ the table


def _accept_rest_refusal(role: Role) -> Refusal:
    """Accepting the pending rest: whoever may not mark the recovery at all is refused that;
    whoever may is refused the acceptance, which is the commander's alone."""
    if role in STEER:
        return Refusal(
            ACCEPT_ACTION, (mention(COMMANDER),), "can accept the pending records of {ref}"
        )
    return Refusal(RECOVER_ACTION, steer_names(ACCEPT_REST))


SEV1, SEV3, SEV4 = Severity.SEV1, Severity.SEV3, Severity.SEV4

ACCEPT_REST = Row(
    "accept-pending-rest-command",
    ACCEPT_ACTION,
    ("command:/incident recovered",),
    SEV1,
    contained(SEV1, records=1),
    command("recovered accept those accounts were test data"),
    rest_accepted,
    refusal_for=_accept_rest_refusal,
)

ROWS: tuple[Row, ...] = (
    Row(
        "severity-command",
        "change the severity of",
        ("command:/incident sev",),
        SEV1,
        declared(SEV1),
        command("sev 3 customers saw it"),
        severity_changed,
        new_severity=SEV3,
    ),
    Row(
        "severity-modal",
        "change the severity of",
        ("action:incident_change_severity", "view:change_severity"),
        SEV1,
        declared(SEV1),
        form("Change severity", {"severity": chosen("sev3"), **REASON}),
        severity_changed,
        new_severity=SEV3,
    ),
    Row(
        "close-command",
        "close",
        ("command:/incident close",),
        SEV4,
        declared(SEV4),
        command("close fixed the field mapping; a verifier checks writes"),
        moved_to(IncidentStatus.CLOSED),
    ),
    Row(
        "close-modal",
        "close",
        ("action:incident_close", "view:close_incident"),
        SEV4,
        declared(SEV4),
        form("Close incident", LEARNING),
        moved_to(IncidentStatus.CLOSED),
    ),
    Row(
        "containment-plan",
        "adjust the containment plan of",
        ("action:incident_containment_plan",),
        SEV1,
        declared(SEV1),
        tick_plan,
        plan_changed,
    ),
    Row(
        "approve-containment-button",
        "approve containment of",
        ("action:incident_approve_containment",),
        SEV1,
        declared(SEV1),
        card_button("Approve containment"),
        contained_by,
    ),
    Row(
        "contain-command",
        "approve containment of",
        ("command:/incident contain",),
        SEV1,
        declared(SEV1),
        command("contain"),
        contained_by,
    ),
    Row(
        "retry-delivery",
        "retry the kill-switch delivery of",
        ("action:incident_retry_delivery",),
        SEV1,
        unconfirmed(SEV1),
        card_button("Retry delivery"),
        retried,
    ),
    Row(
        "dismiss-alert",
        "dismiss",
        ("action:triage_dismiss",),
        SEV1,
        triage,
        triage_button(DISMISS_ALERT),
        moved_to(IncidentStatus.DISMISSED),
        commander=None,  # in triage the agent owner commands
        names=(mention(OWNER), *approvers_named(*Severity)),
    ),
    Row(
        "post-update-button",
        UPDATE_ACTION,
        ("action:incident_post_update", "view:status_update"),
        SEV1,
        declared(SEV1),
        form("Post update", UPDATE),
        updated,
    ),
    Row(
        "post-update-command",
        UPDATE_ACTION,
        ("command:/incident update",),
        SEV1,
        declared(SEV1),
        command_form("update", UPDATE),
        updated,
    ),
    Row(
        "mark-ledger-command",
        MARK_ACTION,
        ("command:/incident rollback",),
        SEV1,
        contained(SEV1, records=2),
        command("rollback restored all restored from the audit log"),
        marked,
    ),
    Row(
        "mark-ledger-modal",
        MARK_ACTION,
        ("action:incident_mark_records", "view:rollback_mark_records"),
        SEV1,
        contained(SEV1, records=2),
        form("Mark records", MARK_ALL),
        marked,
    ),
    Row(
        "mark-recovered-button",
        RECOVER_ACTION,
        ("action:incident_mark_recovered",),
        SEV1,
        contained(SEV1, records=1, restored=True),
        card_button("Mark recovered"),
        moved_to(IncidentStatus.RECOVERED),
    ),
    ACCEPT_REST,
    Row(
        "snooze-reminder",
        SNOOZE_ACTION,
        ("action:^reminder_snooze:([0-9]+)$",),
        SEV1,
        declared(SEV1),
        snooze,
        snoozed,
    ),
    Row(
        "complete-postmortem",
        COMPLETE_ACTION,
        ("action:incident_start_postmortem", "view:postmortem"),
        SEV1,
        recovered(SEV1),
        form("Start postmortem", _parts(complete=True)),
        postmortem_completed,
    ),
    Row(
        "share-postmortem-button",
        SHARE_ACTION,
        ("action:incident_share_postmortem",),
        SEV1,
        recovered(SEV1, draft=True),
        card_button("Share postmortem"),
        shared,
    ),
    Row(
        "share-postmortem-command",
        SHARE_ACTION,
        ("command:/incident postmortem",),
        SEV1,
        recovered(SEV1, draft=True),
        command("postmortem share"),
        shared,
    ),
    Row(
        "gate-accept-command-sev1",
        "accept a restart-gate criterion of",
        ("command:/incident gate",),
        SEV1,
        gate(SEV1),
        command("gate accept guardrails a verifier now checks every write"),
        criterion_is(CheckState.ACCEPTED, "accepted"),
        names=restart_names(SEV1),
    ),
    Row(
        "gate-accept-button-sev3",
        "accept a restart-gate criterion of",
        ("action:gate_accept", "view:gate_decision"),
        SEV3,
        gate(SEV3),
        gate_form("Accept", {"note": typed("a verifier now checks every write")}, "guardrails"),
        criterion_is(CheckState.ACCEPTED, "accepted"),
        names=restart_names(SEV3),
    ),
    Row(
        "gate-withdraw-acceptance-sev1",
        "withdraw an accepted gate criterion of",
        ("action:gate_uncheck",),
        SEV1,
        gate(SEV1, accepted_by=SEV1_APPROVER),
        gate_form("Uncheck", {}, "guardrails"),
        criterion_is(None, "unchecked"),
        names=restart_names(SEV1),
    ),
    Row(
        "approve-reactivation-command-sev1",
        "approve reactivation of",
        ("command:/incident gate",),
        SEV1,
        gate(SEV1, postmortem=True, people=True),
        command("gate approve shadow"),
        staged_at("shadow"),
        names=restart_names(SEV1),
    ),
    Row(
        "approve-reactivation-button-sev3",
        "approve reactivation of",
        ("action:gate_approve_reactivation", "view:gate_decision"),
        SEV3,
        gate(SEV3, people=True, accepted_by=SEV3_LEAD),
        gate_form("Approve reactivation", {"stage": chosen("shadow"), "note": typed("")}),
        staged_at("shadow"),
        names=restart_names(SEV3),
    ),
    Row(
        "promote-button-sev3",
        "promote the agent of",
        ("action:gate_promote",),
        SEV3,
        gate(SEV3, people=True, accepted_by=SEV3_LEAD, staged=True),
        promote_button,
        staged_at("read_only"),
        names=restart_names(SEV3),
    ),
    Row(
        "retire-command-sev1",
        "retire the agent of",
        ("command:/incident gate",),
        SEV1,
        gate(SEV1, postmortem=True),
        command("gate retire replaced by a reviewed workflow"),
        retired,
        names=restart_names(SEV1),
    ),
    Row(
        "retire-button-sev3",
        "retire the agent of",
        ("action:gate_retire_agent", "view:gate_decision"),
        SEV3,
        gate(SEV3),
        gate_form("Retire agent", {"note": typed("replaced by a reviewed workflow")}),
        retired,
        names=restart_names(SEV3),
    ),
    Row(
        "emergency-stop",
        "pause",  # no incident exists yet: nothing to record a refusal on
        ("command:/agent",),
        SEV1,
        nothing,
        command("pause crm-writer sev1 writing garbage into the CRM", name="/agent"),
        paused_by,
        commander=None,
        refusal_for=lambda role: Refusal(
            None,
            (mention(OWNER), *approvers_named(*Severity)),
            "can pause `crm-writer` at once",
        ),
    ),
)


# ------------------------------------------------------------------------------ the cells


ALLOWED = [
    pytest.param(row, role, user, id=f"{row.id}-{role}")
    for row in ROWS
    for role, user in row.cells()
    if role in row.allowed
]
REFUSING = [
    pytest.param(row, id=row.id)
    for row in ROWS
    if any(r not in row.allowed for r, _ in row.cells())
]


def test_the_matrix_has_a_row_for_each_row_and_a_holder_for_each_role() -> None:
    """MATRIX and ROWS name the same rows; a cell is `-` exactly where nobody distinct holds
    the role; each row allows someone and refuses the stranger."""
    assert list(EXPECTED) == [row.id for row in ROWS]
    for row in ROWS:
        for role, cell in EXPECTED[row.id].items():
            assert (cell == "-") == (row.user(role) is None), (row.id, role)
            assert cell in "Yn-", (row.id, role)
        assert row.allowed and EXPECTED[row.id][Role.STRANGER] == "n", row.id


@pytest.mark.parametrize(("row", "role", "user"), ALLOWED)
async def test_allowed(rig: Rig, row: Row, role: Role, user: str) -> None:
    """The role may: the effect happens (state, timeline, delivery) and nothing is refused."""
    scene = await row.setup(rig)
    outbox = Outbox.mark(rig.fake)
    acked = await row.act(rig, scene, user)
    assert not acked.startswith("Only "), acked
    try:
        await row.done(rig, scene, user)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {user} was told {[acked, *outbox.private(user)]}") from None
    assert [e.actor for e in refusals(await timeline(rig, scene))] == []
    assert not [t for t in outbox.private(user) if t.startswith("Only ")]


@pytest.mark.parametrize("row", REFUSING)
async def test_refused(rig: Rig, row: Row) -> None:
    """Every role the rules leave out, one after another on the same incident: a private answer
    that names who may act, nothing changed, and the refusal on the timeline."""
    scene = await row.setup(rig)
    for role, user in row.cells():
        if role in row.allowed:
            continue
        expected = row.refusal(role)
        sentence = expected.sentence(scene)
        before = await snapshot(rig, scene)
        entries = await timeline(rig, scene)
        outbox = Outbox.mark(rig.fake)

        acked = await row.act(rig, scene, user)

        def told(
            acked: str = acked, outbox: Outbox = outbox, user: str = user, sentence: str = sentence
        ) -> list[str]:
            return [t for t in [acked, *outbox.private(user)] if sentence in t]

        try:
            [answer] = await _eventually(told, f"{role} ({user}) told {sentence!r}")
        except AssertionError:
            seen = [acked, *outbox.private(user)]
            raise AssertionError(f"{row.id}: {role} ({user}) was not refused: {seen}") from None
        assert answer.startswith("Only "), (role, answer)
        for name in expected.names:
            assert name in answer, f"{row.id}: {role}: the refusal does not name {name}: {answer}"
        assert sentence not in public_texts(rig.fake), f"{row.id}: {role}: refused in public"
        assert await snapshot(rig, scene) == before, f"{row.id}: {role} ({user}) changed things"
        after = await timeline(rig, scene)
        new = [e for e in after[len(entries) :] if e.kind not in AUTOMATIC]
        if expected.action is None:
            assert new == []
        else:
            assert [(e.kind, e.actor, e.data.get("action")) for e in new] == [
                (TimelineKind.REFUSED, user, expected.action)
            ], f"{row.id}: {role}: the timeline got {[(e.kind.value, e.text) for e in new]}"
            assert f"<@{user}>" in new[0].text


# ------------------------------------------------------------------------------ open to anyone


async def _evidence_by(rig: Rig, scene: Scene, user: str) -> None:
    answer = await _command(rig, scene, f"evidence prompt the prompt as {user} saw it", user)
    assert not answer.startswith("Only "), answer
    items = await rig.rein.evidence.for_incident(scene.number)
    assert any(i.added_by == user for i in items), answer


async def _record_by(rig: Rig, scene: Scene, user: str) -> None:
    answer = await _command(rig, scene, f"rollback crm ACC-{user} Retail -> Mining", user)
    assert not answer.startswith("Only "), answer
    items = await rig.rein.rollback.for_incident(scene.number)
    assert any(i.record == f"ACC-{user}" and i.by == user for i in items), answer


async def _check_by(rig: Rig, scene: Scene, user: str) -> None:
    answer = await _command(rig, scene, "gate check owner Alice owns the fix", user)
    assert "Done" in answer, answer
    checks = await RestartRepo(rig.rein.db).checks(scene.number)
    assert checks[Criterion.OWNER].by == user
    answer = await _command(rig, scene, "gate uncheck owner", user)
    assert "Done" in answer, answer


async def _draft_by(rig: Rig, scene: Scene, user: str) -> None:
    parts = _parts(complete=False) | {"scorecard_updates": typed(f"{user} adds: flag bulk writes")}
    answer = await _press_and_fill(rig, scene, "Start postmortem", user, parts)
    assert answer == "", answer
    postmortem = await rig.rein.postmortems.get(scene.number)
    assert postmortem is not None and postmortem.updated_by == user
    assert postmortem.state is PostmortemState.DRAFT


async def _declared_from_triage(rig: Rig, scene: Scene, user: str) -> None:
    fresh = await triage(rig)  # each person declares an alert of their own
    await triage_button(DECLARE_ALERT)(rig, fresh, user)
    await _incident_is(rig, fresh, status=IncidentStatus.DECLARED, commander=user)


@dataclass(frozen=True)
class OpenRow:
    id: str
    via: tuple[str, ...]
    setup: Setup
    each: Done  # acts as the person and asserts the effect


OPEN_ROWS: tuple[OpenRow, ...] = (
    OpenRow("add-evidence", ("command:/incident evidence",), declared(SEV1), _evidence_by),
    OpenRow("add-ledger-record", ("command:/incident rollback",), declared(SEV1), _record_by),
    OpenRow("check-gate-criterion", ("command:/incident gate",), gate(SEV1), _check_by),
    OpenRow(
        "save-postmortem-draft",
        ("action:incident_start_postmortem", "view:postmortem"),
        recovered(SEV1),
        _draft_by,
    ),
    OpenRow("declare-from-triage", ("action:triage_declare",), nothing, _declared_from_triage),
)
ANYONE = (COMMANDER, OWNER, SEV1_APPROVER, SEV1_GROUP_MEMBER, SEV2_APPROVER, RESPONDER, STRANGER)


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id) for r in OPEN_ROWS])
async def test_open_to_anyone(rig: Rig, row: OpenRow) -> None:
    """What the README leaves to anyone: every role, the stranger included, may, and nothing
    is refused."""
    scene = await row.setup(rig)
    for user in ANYONE:
        await row.each(rig, scene, user)
    assert refusals(await timeline(rig, scene)) == []


# ------------------------------------------------------------------------------ completeness

SOURCES = (Path(__file__).parent.parent / "bot", Path(__file__).parent.parent / "handlers")
GUARDS = {"authorise", "authorised_incident", "authorise_restart"}  # (user, incident, action)
ROLE_READS = {"may_steer", "may_reactivate", "responsible", "expand_approvers"}
# Every function that reads who holds a role, and what it is.
ROLE_CHECKS = {
    "bot.domain.roles:may_steer": "the steering predicate (authorise)",
    "bot.services.authorise:authorise": "the guard: authorise",
    "bot.services.authorise:still_authorised": (
        "the guards' re-check inside the change's transaction (a severity changed meanwhile)"
    ),
    "bot.services.restart:authorise_restart": "the guard: authorise_restart",
    "bot.services.rollback:_refuse_acceptance": f"row {ACCEPT_REST.id}",
    "bot.services.rollback:mark_recovered": f"row {ACCEPT_REST.id} (the commander's acceptance)",
    "bot.services.containment:emergency_stop": "row emergency-stop",
    "bot.services.declare:_channel": "not a guard: invites the approvers to the channel",
    "bot.services.reminders:_post": "not a guard: a reminder goes to the commander's DM",
    "bot.render.reminders:_postmortem_overdue": "not a guard: whom the notice mentions",
    "handlers.rollback_actions:register.recovered_clicked": (
        "not a guard: the commander gets the accept form; mark_recovered checks"
    ),
}
# Slack entry points no row drives, and why none is needed.
NO_ROW_NEEDED = {
    "command:/incident help": "help",
    "command:/incident declare": "anyone may declare",
    "command:/incident list": "a private list",
    "command:/incident status": "reposts the card",
    "command:/incident timeline": "a private page of the timeline",
    "action:declare_impact_changed": "the declare form",
    "view:declare_incident": "anyone may declare",
    "action:declare_anyway": "anyone may declare",
    "action:declare_cancel": "anyone may declare",
    "action:incident_add_evidence": "anyone may add evidence",
    "view:add_evidence": "anyone may add evidence",
    "action:incident_add_record": "anyone may report an affected record",
    "view:rollback_add_record": "anyone may report an affected record",
    "view:rollback_recover": (
        "opened only for the commander by Mark recovered; mark_recovered checks again "
        f"(row {ACCEPT_REST.id})"
    ),
    "action:incident_open_gate": "anyone may open the gate",
    "action:gate_check": "anyone may check a person's criterion",
    "action:^incident_timeline_page:": "a private page of the timeline",
    "shortcut:add_to_timeline": "anyone may add a message to the timeline",
    "view:add_to_timeline_choose": "anyone may add a message to the timeline",
    "event:reaction_added": "anyone may add a message to the timeline",
}


class _Registrar:
    """Stands in for the Bolt app: records what each handler module registers."""

    def __init__(self) -> None:
        self.entry_points: set[str] = set()

    def __getattr__(self, kind: str) -> Callable[..., Any]:
        if kind == "error":
            return lambda listener: listener

        def register(constraint: Any, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
            name = constraint.pattern if isinstance(constraint, re.Pattern) else constraint
            self.entry_points.add(f"{kind}:{name}")
            return lambda listener: listener

        return register


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            relative = path.relative_to(source.parent).with_suffix("")
            yield ".".join(relative.parts), ast.parse(path.read_text())


def _called(node: ast.Call) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _walk(node: ast.AST, scope: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], ast.AST]]:
    """Every node with the functions it sits in."""
    for child in ast.iter_child_nodes(node):
        inner = (
            (*scope, child.name)
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            else scope
        )
        yield inner, child
        yield from _walk(child, inner)


def _resolve(expr: ast.expr, module: str, tree: ast.Module, scope: tuple[str, ...]) -> set[str]:
    """A phrase: a literal, a module constant, or a parameter of the enclosing function,
    resolved at every call of that function in the module."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value}
    if isinstance(expr, ast.Name | ast.Attribute):
        value: Any = importlib.import_module(module)
        for part in ast.unparse(expr).split("."):
            value = getattr(value, part, None)
        if isinstance(value, str):
            return {value}
    for name in reversed(scope if isinstance(expr, ast.Name) else ()):
        function = next(
            n
            for _, n in _walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
        )
        params = [a.arg for a in function.args.args]
        if expr.id in params:  # type: ignore[attr-defined]
            index = params.index(expr.id)  # type: ignore[attr-defined]
            found: set[str] = set()
            for outer, call in _walk(tree):
                if isinstance(call, ast.Call) and _called(call) == name:
                    found |= _resolve(call.args[index], module, tree, outer)
            if found:
                return found
    raise AssertionError(f"{module}: cannot tell which action `{ast.unparse(expr)}` is")


def _guarded_actions() -> tuple[set[str], set[str]]:
    """The phrases every guard is called with (and every `refused` entry records), and the
    functions that read roles."""
    phrases: set[str] = set()
    readers: set[str] = set()
    for module, tree in _modules():
        for scope, node in _walk(tree):
            where = f"{module}:{'.'.join(scope)}"
            inside_guard = bool(scope) and scope[-1] in GUARDS
            if isinstance(node, ast.Call) and _called(node) in GUARDS and not inside_guard:
                action = next((k.value for k in node.keywords if k.arg == "action"), None)
                phrases |= _resolve(action or node.args[2], module, tree, scope)
            if isinstance(node, ast.Call) and _called(node) in ROLE_READS:
                readers.add(where)
            if isinstance(node, ast.Compare) and any(
                isinstance(n, ast.Attribute) and n.attr in ("commander", "owner")
                for n in (node.left, *node.comparators)
            ):
                readers.add(where)
            if (
                isinstance(node, ast.Call)
                and _called(node) == "TimelineEntry"
                and any(ast.unparse(k.value).endswith("REFUSED") for k in node.keywords)
            ):
                readers.add(where)
                data = next(k.value for k in node.keywords if k.arg == "data")
                assert isinstance(data, ast.Dict)
                action = next(
                    v
                    for k, v in zip(data.keys, data.values, strict=True)
                    if isinstance(k, ast.Constant) and k.value == "action"
                )
                if not inside_guard:
                    phrases |= _resolve(action, module, tree, scope)
    return phrases, readers


def _entry_points() -> set[str]:
    registrar = _Registrar()
    handlers.register_all(registrar, object())
    entry_points = registrar.entry_points - {"command:/incident"}
    canonical: dict[Any, str] = {}  # `severity` is `sev`: one handler, one entry point
    for sub, handler in SUBCOMMANDS.items():
        canonical.setdefault(handler, sub)
    return entry_points | {f"command:/incident {sub}" for sub in canonical.values()}


def test_every_role_guarded_action_is_in_the_matrix() -> None:
    """A new guard call, a new hand-made role check, or a new button, form or subcommand fails
    here until the matrix has a row for it (or says why it needs none)."""
    phrases, readers = _guarded_actions()
    in_matrix = {row.action for row in ROWS if row.action != "pause"} | {ACCEPT_ACTION}
    assert phrases - in_matrix == set(), "role-guarded actions without a row in the matrix"
    assert in_matrix - phrases == set(), "rows for actions no guard is called with any more"
    assert readers == set(ROLE_CHECKS), (
        "functions that read roles changed: add the new check to the matrix and ROLE_CHECKS"
    )

    entry_points = _entry_points()
    driven = {via for row in ROWS for via in row.via} | {
        via for row in OPEN_ROWS for via in row.via
    }
    unaccounted = entry_points - driven - set(NO_ROW_NEEDED)
    assert unaccounted == set(), "Slack entry points neither driven by a row nor declared open"
    assert driven - entry_points == set(), "rows drive entry points Rein no longer registers"
    assert set(NO_ROW_NEEDED) <= entry_points, "stale NO_ROW_NEEDED"
