"""The restart gate and the staged restart through the real path: signed Slack requests through
Bolt over HTTP, the HTTP API over real HTTP (evidence, rollback, run reports, autonomy), and the
real HMAC-checking kill-switch receiver (tests/fakes/kill_switch.py)."""

import asyncio
import json
from typing import Any

import pytest

from bot.domain.enums import DeliveryEvent, IncidentStatus, TimelineKind
from bot.domain.evidence import required
from bot.domain.gate import Restart, RestartState
from bot.render.postmortem import COMPLETE, COMPLETE_BLOCK
from storage.restarts import RestartRepo
from tests import test_containment as containment
from tests.conftest import eventually
from tests.fakes.kill_switch import FakeKillSwitch
from tests.slack_requests import chosen, ticked, typed
from tests.test_containment import AUTH, Rig, of_kind, private_to, timings

# The containment tests' rig: Rein, the fake Slack and a real HMAC-checking kill switch.
kill_switch = containment.kill_switch
timings_used = containment.timings_used
rig = containment.rig

COMMANDER = "U0ALICE"
OWNER = "U0OWNER"  # crm-writer's owner
SEV2_APPROVER = "U0HEADOPS"
SEV3_LEAD = "U0SEV3LEAD"  # in S0SEV3, the SEV-3 approvers group (tests/test_containment.py)
STRANGER = "U0MALLORY"
NEEDED = 3  # crm-writer's clean_runs_per_stage in tests/policy.example.yml
PARTS = {
    "business_impact": "300 CRM accounts showed the wrong industry for 2 hours.",
    "agent_path": "It read the enrichment feed, matched on domain only, wrote 300 records.",
    "failed_controls": "No verifier compared old and new values; writes had no approval.",
    "guardrail_changes": "Writes above 20 records need approval; a verifier checks each change.",
    "scorecard_updates": "The scorecard counts records changed per run and flags jumps.",
}


@pytest.fixture(autouse=True)
def nothing_refused(rig: Rig) -> Any:
    """Every message, edit and view Rein sent was one Slack takes."""
    yield
    assert rig.fake.rejections == []


# ------------------------------------------------------------------------------ helpers


async def api(rig: Rig, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with rig.http.request(method, f"{rig.base}{path}", json=body, headers=AUTH) as answer:
        return answer.status, await answer.json()


async def autonomy(rig: Rig) -> dict[str, Any]:
    status, body = await rig.autonomy()
    assert status == 200
    return body


async def run(rig: Rig, run_id: str, outcome: str = "ok", **extra: Any) -> tuple[int, Any]:
    body = {"run_id": run_id, "outcome": outcome, **extra}
    return await api(rig, "POST", "/v1/agents/crm-writer/runs", body)


def received(ks: FakeKillSwitch) -> list[tuple[str, str]]:
    """(event, mode) of every valid delivery, repeats of the same delivery_id once."""
    seen: dict[str, tuple[str, str]] = {}
    for r in ks.deliveries:
        assert r.body is not None
        seen.setdefault(r.body["delivery_id"], (r.body["event"], r.body["mode"]))
    return list(seen.values())


async def delivered(ks: FakeKillSwitch, event: str, mode: str, count: int = 1) -> None:
    await eventually(lambda: received(ks).count((event, mode)) >= count, timeout=8)


async def restart(rig: Rig, number: int = 1) -> Restart:
    found = await RestartRepo(rig.rein.db).get(number)
    assert found is not None
    return found


async def gate_message(rig: Rig, number: int = 1) -> list[dict[str, Any]]:
    current = await restart(rig, number)
    assert current.gate_channel and current.gate_ts
    message = next(m for m in rig.fake.messages[current.gate_channel] if m.ts == current.gate_ts)
    return message.blocks or []


def gate_button(
    blocks: list[dict[str, Any]], label: str, criterion: str | None = None
) -> tuple[str, dict[str, Any]] | None:
    for block in blocks:
        accessory = block.get("accessory")
        if criterion and accessory and block.get("block_id") == f"gate:{criterion}":
            if accessory["text"]["text"] == label:
                return block["block_id"], accessory
        if block.get("type") == "actions" and not criterion:
            for element in block["elements"]:
                if element["text"]["text"] == label:
                    return block.get("block_id", ""), element
    return None


async def press_gate(
    rig: Rig, label: str, user: str, criterion: str | None = None, number: int = 1
) -> tuple[int, Any]:
    found = gate_button(await gate_message(rig, number), label, criterion)
    assert found is not None, f"no {label!r} on the gate message"
    block_id, element = found
    action = {
        "type": "button",
        "action_id": element["action_id"],
        "block_id": block_id,
        "text": element["text"],
        "value": element["value"],
    }
    return await rig.slack.interaction(rig.block_actions(user, await rig.incident(number), action))


async def press_in_channel(rig: Rig, label: str, user: str, number: int = 1) -> tuple[int, Any]:
    """A button on the newest channel message that has it (the Promote offer)."""
    incident = await rig.incident(number)
    assert incident.channel_id
    for message in reversed(rig.fake.messages[incident.channel_id]):
        found = gate_button(message.blocks or [], label)
        if found is not None:
            block_id, element = found
            action = {
                "type": "button",
                "action_id": element["action_id"],
                "block_id": block_id,
                "text": element["text"],
                "value": element["value"],
            }
            return await rig.slack.interaction(rig.block_actions(user, incident, action))
    raise AssertionError(f"no {label!r} button in the channel")


async def opened_view(rig: Rig, before: int) -> dict[str, Any]:
    await eventually(lambda: len(rig.fake.calls_to("views.open")) > before)
    return rig.fake.calls_to("views.open")[-1].args["view"]


async def in_channel(rig: Rig, text: str, number: int = 1) -> str:
    incident = await rig.incident(number)
    assert incident.channel_id

    def found() -> str | None:
        for message in rig.fake.messages[incident.channel_id or ""]:
            shown = (message.text or "") + json.dumps(message.blocks or [])
            if text in shown:
                return shown
        return None

    return await eventually(found, timeout=8)


async def channel_command(rig: Rig, text: str, user: str, number: int = 1) -> str:
    incident = await rig.incident(number)
    assert incident.channel_id
    before = len(rig.fake.responses)
    status, answer = await rig.command(text, user=user, channel=incident.channel_id)
    assert status == 200
    if answer:
        return str(answer)
    await eventually(lambda: len(rig.fake.responses) > before)
    return str(rig.fake.responses[-1][1].get("text"))


async def contained_and_recovered(rig: Rig, declaration: str) -> int:
    """Declare, contain (kill switch confirmed), preserve the evidence the severity requires,
    one ledger record restored, Mark recovered."""
    incident = await rig.declare(declaration, user=COMMANDER)
    number = incident.number
    status, _ = await rig.press("Approve containment", COMMANDER, number)
    assert status == 200
    await delivered(rig.ks, "containment", "paused")
    assert (await autonomy(rig))["mode"] == "paused"
    for kind in required(incident.severity):
        status, _ = await api(
            rig,
            "POST",
            f"/v1/incidents/INC-{number}/evidence",
            {"kind": kind.value, "content": "x"},
        )
        assert status == 201
    record = {"system": "crm", "record": "ACC-1", "before": "Retail", "after": "Mining"}
    status, _ = await api(rig, "POST", f"/v1/incidents/INC-{number}/rollback", record)
    assert status == 201
    said = await channel_command(rig, "rollback restored all", COMMANDER, number)
    assert "restored" in said, said
    said = await channel_command(rig, "recovered", COMMANDER, number)
    assert (await rig.incident(number)).status is IncidentStatus.RECOVERED, said
    return number


async def check_people_criteria(rig: Rig, number: int = 1) -> None:
    for criterion in ("records_identified", "owner", "root_cause", "tests"):
        said = await channel_command(
            rig, f"gate check {criterion} seen by Alice", COMMANDER, number
        )
        assert "Done" in said, said


async def complete_postmortem(rig: Rig, number: int = 1) -> None:
    before = len(rig.fake.calls_to("views.open"))
    status, _ = await rig.press("Start postmortem", OWNER, number)
    assert status == 200
    view = await opened_view(rig, before)
    values: dict[str, Any] = {key: typed(text) for key, text in PARTS.items()}
    values[COMPLETE_BLOCK] = ticked(COMPLETE)
    status, answer = await rig.slack.submit(view, values, user=OWNER)
    assert status == 200 and not answer, answer
    await eventually(
        lambda: _status(rig, number, IncidentStatus.POSTMORTEM),
    )


async def _status(rig: Rig, number: int, status: IncidentStatus) -> bool:
    return (await rig.incident(number)).status is status


async def approve(rig: Rig, user: str, stage: str, number: int = 1) -> tuple[int, Any]:
    before = len(rig.fake.calls_to("views.open"))
    status, _ = await press_gate(rig, "Approve reactivation", user, number=number)
    assert status == 200
    view = await opened_view(rig, before)
    return await rig.slack.submit(view, {"stage": chosen(stage), "note": typed("")}, user=user)


# ------------------------------------------------------------------------------ end to end


async def test_one_sev2_incident_through_every_phase_of_the_playbook(rig: Rig) -> None:
    ks = rig.ks
    # Declare, contain, preserve, roll back, recover.
    await contained_and_recovered(rig, "sev2 agent:crm-writer Wrong industry on 300 accounts")
    assert received(ks) == [("containment", "paused")]

    # The gate: posted once, kept; Rein's judgement of its four derived criteria.
    said = await channel_command(rig, "gate", COMMANDER)
    assert "restart gate is open" in said, said
    blocks = json.dumps(await gate_message(rig))
    assert "Incident contained" in blocks and "the agent is paused now" in blocks
    assert "all 8 kinds SEV-2 requires are archived" in blocks
    assert "ledger: " in blocks
    assert "no completed postmortem names its guardrail changes" in blocks
    said = await channel_command(rig, "gate", COMMANDER)
    assert "was open already" in said
    gates = [
        m
        for m in rig.fake.messages[(await rig.incident()).channel_id or ""]
        if (m.text or "").startswith("INC-1 restart gate")
    ]
    assert len(gates) == 1

    # A person checks a criterion through the button and its modal, with a note.
    before = len(rig.fake.calls_to("views.open"))
    await press_gate(rig, "Check", COMMANDER, "records_identified")
    view = await opened_view(rig, before)
    status, answer = await rig.slack.submit(view, {"note": typed("300 in the ledger export")})
    assert status == 200 and not answer, answer
    await eventually(lambda: _has_check(rig, "records_identified"))
    await check_people_criteria_except(rig, "records_identified")
    # Uncheck and check again: both on the timeline with who.
    await press_gate(rig, "Uncheck", "U0BOB", "owner")
    await eventually(lambda: _no_check(rig, "owner"))
    said = await channel_command(rig, "gate check owner Alice owns the remediation", "U0BOB")
    gate_entries = of_kind(await rig.timeline(), TimelineKind.GATE)
    assert [(e.data.get("action"), e.data.get("criterion"), e.actor) for e in gate_entries][
        -2:
    ] == [
        ("unchecked", "owner", "U0BOB"),
        ("checked", "owner", "U0BOB"),
    ]

    # Not yet: SEV-2 needs its postmortem (and guardrails come from its part four).
    said = await channel_command(rig, "gate approve shadow", SEV2_APPROVER)
    assert "cannot be reactivated yet" in said or "postmortem" in said, said

    # Someone who may not approve: refused privately, recorded, nothing changes.
    status, _ = await press_gate(rig, "Approve reactivation", STRANGER)
    assert status == 200
    await eventually(
        lambda: any(
            "can approve reactivation of INC-1" in t for t in private_to(rig.fake, STRANGER)
        )
    )
    refused = of_kind(await rig.timeline(), TimelineKind.REFUSED)
    assert refused[-1].actor == STRANGER and "approve reactivation" in refused[-1].text
    assert (await autonomy(rig))["mode"] == "paused"
    assert received(ks) == [("containment", "paused")]

    # Postmortem completed: guardrails met from its part four.
    await complete_postmortem(rig)
    await eventually(lambda: _gate_shows(rig, "postmortem, part four: Writes above 20"))

    # A writing agent starts at shadow or read_only only.
    said = await channel_command(rig, "gate approve supervised", SEV2_APPROVER)
    assert "`shadow` or `read_only` first" in said, said

    # Approve reactivation at shadow through the gate's modal.
    status, answer = await approve(rig, SEV2_APPROVER, "shadow")
    assert status == 200 and not answer, answer
    body = await autonomy(rig)
    assert (body["mode"], body["writes"], body["runs"], body["incident"]) == (
        "shadow",
        False,
        True,
        "INC-1",
    )
    await delivered(ks, "autonomy_changed", "shadow")
    shadow = next(r.body for r in ks.deliveries if r.body and r.body["mode"] == "shadow")
    assert shadow["actions"] == ["revoke_writes", "freeze_outbound"]
    await in_channel(rig, "moved `crm-writer` to *`shadow`*")

    # Clean runs during shadow: posted, counted; a duplicate counts once.
    for i in range(NEEDED):
        status, answer = await run(rig, f"run-s{i}", summary="proposed 4 changes")
        assert status == 201 and answer["counted"] and answer["clean_runs"] == i + 1, answer
    status, answer = await run(rig, "run-s0")
    assert status == 200 and answer["duplicate"] is True
    assert (await restart(rig)).clean_runs == NEEDED
    await in_channel(rig, "run `run-s2`")
    await in_channel(rig, "Promote to read_only")
    # Promote: only an approver; then read_only.
    await press_in_channel(rig, "Promote to read_only", STRANGER)
    await eventually(
        lambda: any("can promote the agent of INC-1" in t for t in private_to(rig.fake, STRANGER))
    )
    assert (await autonomy(rig))["mode"] == "shadow"
    await press_in_channel(rig, "Promote to read_only", SEV2_APPROVER)
    await eventually(lambda: _mode(rig, "read_only"))
    await delivered(ks, "autonomy_changed", "read_only")

    # A flagged run during probation: contained again at once, loudly, the gate reopens.
    status, answer = await run(rig, "run-r0")
    assert status == 201 and answer["clean_runs"] == 1
    status, answer = await run(rig, "run-r1", "flagged", summary="<!channel> wrote to 40 records")
    assert status == 201 and answer["recontained"] is True
    body = await autonomy(rig)
    assert (body["mode"], body["writes"], body["incident"]) == ("paused", False, "INC-1")
    await delivered(ks, "containment", "paused", count=2)
    loud = await in_channel(rig, "is contained again")
    assert "<!here>" in loud and "<!channel>" not in loud
    assert (await restart(rig)).state is RestartState.GATE
    assert not await _has_check(rig, "tests")  # Rein unchecked it

    # Gate again: tests re-checked, approve at read_only this time.
    said = await channel_command(
        rig, "gate check tests replayed the failing batch in shadow", OWNER
    )
    status, answer = await approve(rig, SEV2_APPROVER, "read_only")
    assert status == 200 and not answer, answer
    assert (await autonomy(rig))["mode"] == "read_only"
    for stage, nxt in (("read_only", "supervised"), ("supervised", "autonomous")):
        for i in range(NEEDED):
            status, _ = await run(rig, f"run-{stage}-{i}")
            assert status == 201
        await in_channel(rig, f"Promote to {nxt}")
        said = await channel_command(rig, "gate promote", SEV2_APPROVER)
        await eventually(lambda nxt=nxt: _mode(rig, nxt))  # type: ignore[misc]
        await delivered(ks, "autonomy_changed", nxt)

    # Back in its normal mode: closed; no incident holds the agent any more.
    body = await autonomy(rig)
    assert (body["mode"], body["writes"], body["outbound"], body["incident"]) == (
        "autonomous",
        True,
        True,
        None,
    )
    incident = await rig.incident()
    assert incident.status is IncidentStatus.CLOSED
    assert received(ks) == [
        ("containment", "paused"),
        ("autonomy_changed", "shadow"),
        ("autonomy_changed", "read_only"),
        ("containment", "paused"),
        ("autonomy_changed", "read_only"),
        ("autonomy_changed", "supervised"),
        ("autonomy_changed", "autonomous"),
    ]
    await eventually(lambda: _card_shows(rig, "closed"))
    topic = rig.fake.calls_to("conversations.setTopic")[-1].args["topic"]
    assert "closed" in topic
    assert not rig.fake.calls_to("conversations.archive")  # nothing archived without asking
    # The API shows it all.
    status, document = await api(rig, "GET", "/v1/incidents/INC-1")
    kinds = {e["kind"] for e in document["timeline"]}
    assert {"gate", "run", "autonomy_changed"} <= kinds
    # A run now: the agent is in no staged restart: counted nowhere.
    status, answer = await run(rig, "after-close")
    assert status == 201 and answer["counted"] is False and answer["incident"] is None


async def check_people_criteria_except(rig: Rig, done: str) -> None:
    for criterion in ("records_identified", "owner", "root_cause", "tests"):
        if criterion != done:
            said = await channel_command(rig, f"gate check {criterion} ok", COMMANDER)
            assert "Done" in said, said


async def _has_check(rig: Rig, criterion: str) -> bool:
    checks = await RestartRepo(rig.rein.db).checks(1)
    return any(c.value == criterion for c in checks)


async def _no_check(rig: Rig, criterion: str) -> bool:
    return not await _has_check(rig, criterion)


async def _gate_shows(rig: Rig, text: str) -> bool:
    return text in json.dumps(await gate_message(rig))


async def _card_shows(rig: Rig, text: str) -> bool:
    return text in json.dumps(await rig.card())


async def _mode(rig: Rig, mode: str) -> bool:
    return (await autonomy(rig))["mode"] == mode


# ------------------------------------------------------------------------------ bad cases


async def test_run_reports_unknown_agent_not_in_restart_and_duplicates(rig: Rig) -> None:
    status, answer = await api(
        rig, "POST", "/v1/agents/nobody/runs", {"run_id": "r1", "outcome": "ok"}
    )
    assert status == 404 and answer["field"] == "agent_id"
    status, answer = await run(rig, "r1", "failed")
    assert status == 201 and answer["counted"] is False and answer["incident"] is None
    assert answer["recontained"] is False
    status, answer = await run(rig, "r1", "failed")
    assert status == 200 and answer["duplicate"] is True
    assert (await autonomy(rig))["mode"] == "autonomous"  # a failure outside a restart: nothing
    status, answer = await run(rig, "r2", "maybe")
    assert status == 422 and answer["field"] == "outcome"
    status, answer = await api(rig, "POST", "/v1/agents/crm-writer/runs", {"outcome": "ok"})
    assert status == 422 and answer["field"] == "run_id"
    async with rig.http.post(f"{rig.base}/v1/agents/crm-writer/runs", json={}) as response:
        assert response.status == 401
    assert rig.ks.requests == []


async def test_two_approvers_at_once_one_stage_change_one_delivery(rig: Rig) -> None:
    rig.fake.add_usergroup("S0SEV3", [SEV3_LEAD, "U0SEV3TWO"])
    number = await contained_and_recovered(rig, "sev3 agent:crm-writer Wrong field")
    await channel_command(rig, "gate", COMMANDER, number)
    await check_people_criteria(rig, number)
    said = await channel_command(rig, "gate accept guardrails verifier added; no postmortem", OWNER)
    assert "Done" in said, said
    incident = await rig.incident(number)
    before = len(rig.fake.responses)
    answers = await asyncio.gather(
        rig.command("gate approve shadow", user=SEV3_LEAD, channel=incident.channel_id or ""),
        rig.command("gate approve shadow", user="U0SEV3TWO", channel=incident.channel_id or ""),
        rig.command("gate approve read_only", user=OWNER, channel=incident.channel_id or ""),
    )
    assert all(status == 200 for status, _ in answers)
    await eventually(lambda: len(rig.fake.responses) >= before + 3)
    changes = [
        e
        for e in of_kind(await rig.timeline(number), TimelineKind.AUTONOMY_CHANGED)
        if e.data.get("mode") in ("shadow", "read_only")
    ]
    assert len(changes) == 1
    stage_deliveries = [
        d for d in await rig.deliveries(number) if d.event is DeliveryEvent.AUTONOMY_CHANGED
    ]
    assert len(stage_deliveries) == 1
    await delivered(rig.ks, "autonomy_changed", stage_deliveries[0].mode.value)
    await asyncio.sleep(0.4)
    assert [e for e, _ in received(rig.ks)].count("autonomy_changed") == 1
    refusals = [r[1].get("text", "") for r in rig.fake.responses[before:]]
    assert sum("approved already" in t for t in refusals) == 2, refusals


async def test_sev3_owner_retires_the_agent_and_close_needs_a_decision(rig: Rig) -> None:
    number = await contained_and_recovered(rig, "sev3 agent:crm-writer Wrong field")
    said = await channel_command(rig, "close fixed it", COMMANDER, number)
    assert "closes with a restart decision" in said, said
    assert (await rig.incident(number)).status is IncidentStatus.RECOVERED
    # Accepting a derived criterion needs a reason and an approver (SEV-3: the owner too).
    said = await channel_command(rig, "gate accept guardrails", OWNER, number)
    assert "restart gate is not open" in said or "Write why" in said, said
    await channel_command(rig, "gate", COMMANDER, number)
    said = await channel_command(rig, "gate accept guardrails none needed", STRANGER, number)
    assert "Only" in said
    said = await channel_command(rig, "gate accept contained it is", OWNER, number)
    assert "Rein judges it met" in said, said
    # Retire through the gate message's modal.
    before = len(rig.fake.calls_to("views.open"))
    await press_gate(rig, "Retire agent", OWNER, number=number)
    view = await opened_view(rig, before)
    status, answer = await rig.slack.submit(view, {"note": typed("")}, user=OWNER)
    assert status == 200 and answer.get("response_action") == "errors"
    status, answer = await rig.slack.submit(
        view, {"note": typed("replaced by a reviewed workflow")}, user=OWNER
    )
    assert status == 200 and not answer, answer
    await eventually(lambda: _status(rig, number, IncidentStatus.CLOSED))
    body = await autonomy(rig)
    assert (body["mode"], body["runs"], body["incident"]) == ("paused", False, "INC-1")
    assert (await restart(rig, number)).state is RestartState.RETIRED
    await in_channel(rig, "retired `crm-writer`", number)
    # Paused already: no second delivery.
    assert received(rig.ks) == [("containment", "paused")]


@pytest.mark.parametrize("timings_used", [timings(3.0, 3.0)])
async def test_rein_restarted_mid_probation_continues(rig: Rig) -> None:
    number = await contained_and_recovered(rig, "sev3 agent:crm-writer Wrong field")
    await channel_command(rig, "gate", COMMANDER, number)
    await check_people_criteria(rig, number)
    await channel_command(rig, "gate accept guardrails verifier added", OWNER, number)
    rig.ks.fail()  # the kill switch is down: the stage change stays pending
    said = await channel_command(rig, "gate approve shadow", OWNER, number)
    assert "`shadow`" in said, said
    for i in range(2):
        status, _ = await run(rig, f"pre-{i}")
        assert status == 201
    await rig.stop()
    rig.ks.succeed()
    await rig.start()
    # The stage, the count and the pending delivery continue.
    assert (await autonomy(rig))["mode"] == "shadow"
    current = await restart(rig, number)
    assert (current.state, current.stage, current.clean_runs) == (RestartState.STAGED, "shadow", 2)
    await delivered(rig.ks, "autonomy_changed", "shadow")
    status, answer = await run(rig, "pre-1")
    assert status == 200 and answer["duplicate"] is True
    status, answer = await run(rig, "post-0")
    assert status == 201 and answer["clean_runs"] == 3
    await in_channel(rig, "Promote to read_only", number)
