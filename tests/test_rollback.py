"""The rollback ledger and recovery through the real path: `POST /v1/incidents/{ref}/rollback`
over real HTTP, the card in the fake Slack, and signed Slack requests (slash commands, card
buttons, modal submissions) through Bolt."""

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Runtime
from bot.domain.enums import IncidentStatus, RollbackStatus, TimelineKind
from bot.domain.models import TimelineEntry
from bot.domain.rollback import (
    ALL_PENDING,
    AddCommand,
    LedgerError,
    ListCommand,
    MarkCommand,
    NewRollbackItem,
    RollbackItem,
    Selection,
    parse_rollback,
)
from bot.render.rollback import (
    ADD_RECORD_VIEW,
    MARK_RECORDS,
    MARK_RECORDS_VIEW,
    RECOVER_VIEW,
)
from tests.conftest import API_TOKEN, eventually
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SlackSender, chosen, ticked, typed
from tests.test_cli import rein_cli

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
COMMANDER = "U0ALICE"
OWNER = "U0OWNER"  # crm-writer's owner
STRANGER = "U0MALLORY"
HOSTILE = "<!channel> <@U0CEO> wire the refund: <http://evil.example|bank.example.com> & @here"


# ------------------------------------------------------------------------------ helpers


async def declared(
    slack: SlackSender, fake: FakeSlack, rein: Runtime, text: str = "sev2 agent:crm-writer x"
) -> str:
    """Declare (Alice commands) and wait for the room; return the incident channel."""
    before = len(fake.responses)
    status, answer = await slack.command(f"declare {text}", user=COMMANDER)
    assert status == 200 and str(answer).startswith("Declared INC-"), answer
    await eventually(lambda: len(fake.responses) > before)
    newest = (await rein.rein.incidents.newest())[0]
    assert newest.channel_id is not None and newest.card_ts is not None
    return newest.channel_id


async def contained(slack: SlackSender, fake: FakeSlack, rein: Runtime) -> str:
    """A declared SEV-2 on crm-writer, contained with `/incident contain`."""
    channel = await declared(slack, fake, rein)
    status, answer = await slack.command("contain", channel=channel, user=COMMANDER)
    assert status == 200 and "is contained" in str(answer), answer
    assert (await incident(rein)).status is IncidentStatus.CONTAINED
    return channel


async def incident(rein: Runtime, number: int = 1) -> Any:
    found = await rein.rein.incidents.get(number)
    assert found is not None
    return found


async def api_post(
    http: aiohttp.ClientSession,
    base_url: str,
    body: Any,
    ref: str = "INC-1",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(AUTH if headers is None else headers)}
    url = f"{base_url}/v1/incidents/{ref}/rollback"
    async with http.post(url, data=data, headers=sent) as response:
        return response.status, await response.json()


async def api_get(http: aiohttp.ClientSession, base_url: str, ref: str = "INC-1") -> Any:
    async with http.get(f"{base_url}/v1/incidents/{ref}", headers=AUTH) as response:
        assert response.status == 200
        return await response.json()


async def card(fake: FakeSlack, rein: Runtime, number: int = 1) -> list[dict[str, Any]]:
    current = await incident(rein, number)
    message = next(m for m in fake.messages[current.card_channel] if m.ts == current.card_ts)
    return message.blocks or []


async def card_text(fake: FakeSlack, rein: Runtime, number: int = 1) -> str:
    return json.dumps(await card(fake, rein, number), ensure_ascii=False)


async def card_shows(fake: FakeSlack, rein: Runtime, text: str) -> str:
    """Wait until the card shows `text` (refreshes after API reports run after the answer)."""

    async def check() -> str | None:
        shown = await card_text(fake, rein)
        return shown if text in shown else None

    try:
        return await eventually(check)
    except AssertionError:
        shown = await card_text(fake, rein)
        raise AssertionError(f"the card never showed {text!r}: {shown}") from None


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every button on the card, by label (the actions block's and the sections' accessories)."""
    found: dict[str, dict[str, Any]] = {}
    for block in blocks:
        elements = block.get("elements", []) if block["type"] == "actions" else []
        accessory = block.get("accessory")
        for element in [*elements, *([accessory] if accessory else [])]:
            if element.get("type") == "button":
                found[element["text"]["text"]] = element
    return found


async def press(
    slack: SlackSender, fake: FakeSlack, rein: Runtime, label: str, user: str
) -> tuple[int, Any]:
    current = await incident(rein)
    found = buttons(await card(fake, rein)).get(label)
    assert found is not None, f"no {label!r} button on the card"
    return await slack.click(
        found["action_id"], found["value"], user=user, channel=current.channel_id or "CGENERAL"
    )


async def reply(fake: FakeSlack, count: int) -> dict[str, Any]:
    """The `count`-th answer Rein sent through a response_url."""
    await eventually(lambda: len(fake.responses) >= count)
    return fake.responses[count - 1][1]


async def command_reply(
    slack: SlackSender, fake: FakeSlack, text: str, channel: str, user: str = COMMANDER
) -> str:
    """Run `/incident <text>` and return Rein's private answer (text and blocks)."""
    before = len(fake.responses)
    status, _ = await slack.command(text, channel=channel, user=user)
    assert status == 200
    answer = await reply(fake, before + 1)
    return answer.get("text", "") + json.dumps(answer.get("blocks") or [], ensure_ascii=False)


def private_to(fake: FakeSlack, user: str) -> list[str]:
    ephemeral = [e.text or "" for e in fake.ephemerals if e.user == user]
    direct = [m.text or "" for m in fake.messages.get(user, [])]
    return ephemeral + direct


async def opened_view(fake: FakeSlack, count: int) -> dict[str, Any]:
    await eventually(lambda: len(fake.calls_to("views.open")) >= count)
    return fake.calls_to("views.open")[count - 1].args["view"]


def of_kind(timeline: list[TimelineEntry], kind: TimelineKind) -> list[TimelineEntry]:
    return [e for e in timeline if e.kind == kind]


async def ledger(rein: Runtime, number: int = 1) -> list[RollbackItem]:
    return await rein.rein.rollback.for_incident(number)


def record(n: int) -> dict[str, str]:
    return {
        "system": "crm",
        "record": f"ACC-{n:04d}",
        "before": f"Industry: Retail #{n}",
        "after": "Industry: Aerospace",
    }


# -------------------------------------------------------------------------- the flows


async def test_300_records_reported_by_the_api_bulk_marked_and_recovered(
    rein: Runtime,
    slack: SlackSender,
    fake_slack: FakeSlack,
    http: aiohttp.ClientSession,
    base_url: str,
) -> None:
    channel = await contained(slack, fake_slack, rein)
    assert "no affected records yet" in await card_text(fake_slack, rein)

    for start in range(1, 301, 50):  # an agent platform reporting what its agent changed
        answers = await asyncio.gather(
            *(api_post(http, base_url, record(n)) for n in range(start, start + 50))
        )
        assert all(status == 201 for status, _ in answers), answers
    _, first = await api_post(http, base_url, {**record(1), "before": "something else"})
    assert first["duplicate"] is True and first["before"] == "Industry: Retail #1"

    items = await ledger(rein)
    assert len(items) == 300 and sorted(i.id for i in items) == list(range(1, 301))
    assert all(
        i.status is RollbackStatus.PENDING and i.created_by == "api:dashboard" for i in items
    )
    await card_shows(fake_slack, rein, "0 of 300 restored · 300 pending")

    done = await command_reply(
        slack, fake_slack, "rollback restored 1-212 restored from the nightly backup", channel
    )
    assert "Marked 212 items restored: #1–#212" in done
    done = await command_reply(
        slack, fake_slack, "rollback accepted 213-215 customer confirmed the new values", channel
    )
    assert "Marked 3 items accepted" in done
    await command_reply(
        slack, fake_slack, "rollback not_reversible 216 the enrichment email went out", channel
    )
    await card_shows(
        fake_slack, rein, "212 of 300 restored · 3 accepted · 1 not reversible · 84 pending"
    )

    # Mark recovered is refused while records are pending, saying which.
    answer = await command_reply(slack, fake_slack, "recovered", channel)
    assert "84 of 300 records still pending: #217 crm ACC-0217" in answer
    assert "and 74 more (pending: #217–#300)" in answer
    await press(slack, fake_slack, rein, "Mark recovered", OWNER)  # owner, not commander
    said = await eventually(lambda: [t for t in private_to(fake_slack, OWNER) if "84 of 300" in t])
    assert "commander (<@U0ALICE>)" in said[0]
    assert (await incident(rein)).status is IncidentStatus.CONTAINED

    done = await command_reply(slack, fake_slack, "rollback restored all", channel)
    assert "Marked 84 items restored: #217–#300" in done
    await press(slack, fake_slack, rein, "Mark recovered", COMMANDER)
    await card_shows(fake_slack, rein, "*Status*\\nrecovered")
    shown = await card_shows(
        fake_slack, rein, "296 of 300 restored · 3 accepted · 1 not reversible · nothing pending"
    )
    assert (await incident(rein)).status is IncidentStatus.RECOVERED
    assert "Mark recovered" not in buttons(await card(fake_slack, rein))
    assert "Mark records" not in shown

    timeline = await rein.rein.incidents.timeline(1)
    rollback = of_kind(timeline, TimelineKind.ROLLBACK)
    assert len([e for e in rollback if e.data["action"] == "added"]) == 300
    marks = [e for e in rollback if e.data["action"] == "marked"]
    assert [len(e.data["items"]) for e in marks] == [212, 3, 1, 84]
    assert marks[0].data["previous"] == {"pending": list(range(1, 213))}
    assert marks[1].data["reason"] == "customer confirmed the new values"
    moved = of_kind(timeline, TimelineKind.STATUS_CHANGED)[-1]
    assert moved.data["to"] == "recovered" and moved.actor == COMMANDER
    assert "rollback complete" in moved.text and moved.data["ledger"]["pending"] == 0

    body = await api_get(http, base_url)
    assert len(body["rollback"]) == 300
    item = body["rollback"][215]
    assert item["id"] == 216 and item["status"] == "not_reversible"
    assert item["reason"] == "the enrichment email went out" and item["by"] == COMMANDER
    assert set(item) >= {"id", "system", "record", "before", "after", "status", "by", "at"}


async def test_the_commander_accepts_the_remainder_with_a_reason(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await contained(slack, fake_slack, rein)
    for n in (1, 2, 3):
        done = await command_reply(
            slack, fake_slack, f"rollback crm ACC-{n} Retail -> Aerospace", channel
        )
        assert f"Added #{n} crm ACC-{n}" in done
    await command_reply(slack, fake_slack, "rollback restored 1", channel)

    await press(slack, fake_slack, rein, "Mark recovered", COMMANDER)
    view = await opened_view(fake_slack, 1)
    assert view["callback_id"] == RECOVER_VIEW
    assert "2 of 3 records still pending" in json.dumps(view["blocks"])

    _, answer = await slack.submit(view, {"accept": ticked(), "reason": typed("ok")})
    assert answer["response_action"] == "errors" and "accept" in answer["errors"]
    _, answer = await slack.submit(view, {"accept": ticked("accept"), "reason": typed("")})
    assert answer["response_action"] == "errors" and "reason" in answer["errors"]
    # The agent owner may mark recovery, but accepting the rest is the commander's call.
    _, answer = await slack.submit(
        view, {"accept": ticked("accept"), "reason": typed("fine")}, user=OWNER
    )
    assert "Only the commander (<@U0ALICE>)" in answer["errors"]["reason"]
    assert (await incident(rein)).status is IncidentStatus.CONTAINED

    why = "the two accounts were deleted by the customer; nothing to restore"
    status, answer = await slack.submit(view, {"accept": ticked("accept"), "reason": typed(why)})
    assert status == 200 and answer in ("", None)
    assert (await incident(rein)).status is IncidentStatus.RECOVERED
    items = await ledger(rein)
    assert [(i.status, i.reason, i.by) for i in items[1:]] == [
        (RollbackStatus.ACCEPTED, why, COMMANDER),
        (RollbackStatus.ACCEPTED, why, COMMANDER),
    ]
    timeline = await rein.rein.incidents.timeline(1)
    accepted = [e for e in timeline if e.data.get("action") == "accepted_remainder"]
    assert len(accepted) == 1 and accepted[0].data["items"] == [2, 3]
    moved = of_kind(timeline, TimelineKind.STATUS_CHANGED)[-1]
    assert moved.data["to"] == "recovered" and why in moved.text
    assert moved.data["accepted_remainder"] == [2, 3]
    refused = of_kind(timeline, TimelineKind.REFUSED)
    assert [e.actor for e in refused] == [OWNER]
    await card_shows(fake_slack, rein, "1 of 3 restored · 2 accepted · nothing pending")


async def test_accepting_the_remainder_by_command_is_the_commanders_alone(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await contained(slack, fake_slack, rein)
    await command_reply(slack, fake_slack, "rollback crm ACC-1", channel)
    answer = await command_reply(
        slack, fake_slack, "recovered accept nobody cares", channel, user=OWNER
    )
    assert "Only the commander (<@U0ALICE>) can accept" in answer
    answer = await command_reply(slack, fake_slack, "recovered accept", channel)
    assert "Say why" in answer
    answer = await command_reply(slack, fake_slack, "recovered now please", channel)
    assert "takes no text" in answer
    assert (await incident(rein)).status is IncidentStatus.CONTAINED
    answer = await command_reply(
        slack, fake_slack, "recovered accept value restored by hand in the CRM UI", channel
    )
    assert "INC-1 is recovered" in answer and "accepted the last 1 pending item" in answer
    assert (await ledger(rein))[0].status is RollbackStatus.ACCEPTED


async def test_mark_recovered_follows_the_lifecycle(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await declared(slack, fake_slack, rein)
    shown = buttons(await card(fake_slack, rein))
    assert "Add affected record" in shown and "Mark recovered" not in shown
    answer = await command_reply(slack, fake_slack, "recovered", channel)
    assert "first approve containment" in answer
    await slack.command("contain", channel=channel)
    await card_shows(fake_slack, rein, "Mark recovered")
    # An empty ledger: nothing affected was reported, so nothing stands in the way.
    answer = await command_reply(slack, fake_slack, "recovered", channel)
    assert "INC-1 is recovered" in answer
    moved = of_kind(await rein.rein.incidents.timeline(1), TimelineKind.STATUS_CHANGED)[-1]
    assert "no affected records" in moved.text
    answer = await command_reply(slack, fake_slack, "recovered", channel)
    assert "already recovered" in answer


async def test_a_stranger_is_refused_privately_and_the_refusal_recorded(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await contained(slack, fake_slack, rein)
    # Anyone may report an affected record: it is information, not a decision.
    done = await command_reply(
        slack, fake_slack, "rollback crm ACC-7 a -> b", channel, user=STRANGER
    )
    assert "Added #1 crm ACC-7" in done
    answer = await command_reply(slack, fake_slack, "rollback restored all", channel, user=STRANGER)
    assert "Only the commander (<@U0ALICE>), the agent owner (<@U0OWNER>)" in answer
    assert (await ledger(rein))[0].status is RollbackStatus.PENDING

    await press(slack, fake_slack, rein, "Mark recovered", STRANGER)
    said = await eventually(
        lambda: [t for t in private_to(fake_slack, STRANGER) if "Only the commander" in t]
    )
    assert "mark the recovery of INC-1" in said[0]
    assert not fake_slack.calls_to("views.open")
    assert (await incident(rein)).status is IncidentStatus.CONTAINED
    # Private: nothing about it was posted in the channel.
    assert not [m for m in fake_slack.messages[channel] if "Only the commander" in (m.text or "")]

    refused = of_kind(await rein.rein.incidents.timeline(1), TimelineKind.REFUSED)
    assert [(e.actor, e.data["action"]) for e in refused] == [
        (STRANGER, "mark the rollback ledger of"),
        (STRANGER, "mark the recovery of"),
    ]
    # An approver of the incident's severity may mark.
    done = await command_reply(slack, fake_slack, "rollback restored 1", channel, user="U0HEADOPS")
    assert "Marked 1 item restored" in done


async def test_not_reversible_and_accepted_need_a_reason(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await contained(slack, fake_slack, rein)
    await command_reply(slack, fake_slack, "rollback crm ACC-1 -> sent", channel)
    for text in ("rollback not_reversible 1", "rollback accepted all", "rollback pending 1"):
        answer = await command_reply(slack, fake_slack, text, channel)
        assert "a reason is required" in answer, text

    await press(slack, fake_slack, rein, "Mark records", COMMANDER)
    view = await opened_view(fake_slack, 1)
    assert view["callback_id"] == MARK_RECORDS_VIEW
    values = {"status": chosen("not_reversible"), "items": typed("1"), "reason": typed(" ")}
    _, answer = await slack.submit(view, values)
    assert answer["response_action"] == "errors" and "reason" in answer["errors"]
    assert (await ledger(rein))[0].status is RollbackStatus.PENDING
    assert not [
        e for e in await rein.rein.incidents.timeline(1) if e.data.get("action") == "marked"
    ]

    values["reason"] = typed("the email reached the customer")
    status, answer = await slack.submit(view, values)
    assert status == 200 and answer in ("", None)
    item = (await ledger(rein))[0]
    assert item.status is RollbackStatus.NOT_REVERSIBLE
    assert item.reason == "the email reached the customer"


async def test_bad_item_numbers_are_explained_and_nothing_is_marked(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await contained(slack, fake_slack, rein)
    await command_reply(slack, fake_slack, "rollback crm ACC-1", channel)
    await command_reply(slack, fake_slack, "rollback crm ACC-2", channel)
    answer = await command_reply(slack, fake_slack, "rollback restored 1-3", channel)
    assert "has no #3: it has items #1–#2. Nothing was marked." in answer
    answer = await command_reply(slack, fake_slack, "rollback restored first", channel)
    assert "`first` is not an item number" in answer
    answer = await command_reply(slack, fake_slack, "rollback crm", channel)
    assert "Name the system and the record" in answer
    assert all(i.status is RollbackStatus.PENDING for i in await ledger(rein))
    answer = await command_reply(slack, fake_slack, "rollback restored 1,2", channel)
    assert "Marked 2 items restored" in answer
    answer = await command_reply(slack, fake_slack, "rollback restored 1", channel)
    assert "Nothing changed. 1 item already restored." in answer
    answer = await command_reply(slack, fake_slack, "rollback restored all", channel)
    assert "Nothing is pending" in answer
    # A correction: back to pending, with why; the timeline keeps both.
    answer = await command_reply(
        slack, fake_slack, "rollback pending 2 the restore was overwritten by a sync", channel
    )
    assert "Marked 1 item pending" in answer
    marks = [e for e in await rein.rein.incidents.timeline(1) if e.data.get("action") == "marked"]
    assert [(e.data["status"], e.data["previous"]) for e in marks] == [
        ("restored", {"pending": [1, 2]}),
        ("pending", {"restored": [2]}),
    ]


async def test_add_affected_record_and_mark_records_through_the_modals(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    await contained(slack, fake_slack, rein)
    await press(slack, fake_slack, rein, "Add affected record", OWNER)
    view = await opened_view(fake_slack, 1)
    assert view["callback_id"] == ADD_RECORD_VIEW
    labels = [b["label"]["text"] for b in view["blocks"] if b["type"] == "input"]
    assert labels == ["System", "Record reference", "Value before", "Value after"]
    system = next(b for b in view["blocks"] if b.get("block_id") == "system")
    assert system["element"]["initial_value"] == "crm"  # crm-writer writes to crm only

    values = {
        "system": typed("crm"),
        "record": typed("  ACC-0042 "),
        "before": typed("  Retail\n"),
        "after": typed(""),
    }
    status, answer = await slack.submit(view, values, user=OWNER)
    assert status == 200 and answer in ("", None)
    item = (await ledger(rein))[0]
    assert (item.system, item.record, item.before, item.after) == (
        "crm",
        "ACC-0042",
        "  Retail\n",
        None,
    )
    assert item.created_by == OWNER
    await card_shows(fake_slack, rein, "0 of 1 restored · 1 pending")

    _, answer = await slack.submit(view, {**values, "system": typed("CRM")}, user=OWNER)
    assert "already in INC-1's ledger" in answer["errors"]["record"]
    _, answer = await slack.submit(view, {**values, "record": typed("   ")}, user=OWNER)
    assert "record" in answer["errors"]
    assert len(await ledger(rein)) == 1

    mark = buttons(await card(fake_slack, rein))["Mark records"]
    assert mark["action_id"] == MARK_RECORDS
    await press(slack, fake_slack, rein, "Mark records", COMMANDER)
    view = await opened_view(fake_slack, 2)
    assert "Pending: #1" in json.dumps(view["blocks"])
    _, answer = await slack.submit(
        view, {"status": chosen("restored"), "items": typed("1-9"), "reason": typed("")}
    )
    assert "has no #2–#9" in answer["errors"]["items"]
    status, answer = await slack.submit(
        view, {"status": chosen("restored"), "items": typed("all"), "reason": typed("")}
    )
    assert status == 200 and answer in ("", None)
    await eventually(lambda: [t for t in private_to(fake_slack, COMMANDER) if "Marked 1 item" in t])
    await card_shows(fake_slack, rein, "1 of 1 restored · nothing pending")


async def test_duplicate_reports_change_nothing(
    rein: Runtime,
    slack: SlackSender,
    fake_slack: FakeSlack,
    http: aiohttp.ClientSession,
    base_url: str,
) -> None:
    channel = await contained(slack, fake_slack, rein)
    status, first = await api_post(http, base_url, record(1))
    assert status == 201 and first["duplicate"] is False and first["incident"] == "INC-1"
    assert {k: first[k] for k in ("id", "system", "record", "status", "by")} == {
        "id": 1,
        "system": "crm",
        "record": "ACC-0001",
        "status": "pending",
        "by": "api:dashboard",
    }
    assert first["at"].endswith("Z")
    # The same record again, also racing, and with another case of the system's name.
    answers = await asyncio.gather(
        *(
            api_post(http, base_url, {**record(1), "system": "CRM", "after": "other"})
            for _ in range(5)
        )
    )
    assert [s for s, _ in answers] == [200] * 5
    assert all(a["duplicate"] is True and a["id"] == 1 for _, a in answers)
    assert all(a["after"] == "Industry: Aerospace" for _, a in answers)
    done = await command_reply(slack, fake_slack, "rollback crm ACC-0001 x -> y", channel)
    assert "already in INC-1's ledger (pending); nothing was changed" in done
    assert len(await ledger(rein)) == 1
    added = [e for e in await rein.rein.incidents.timeline(1) if e.data.get("action") == "added"]
    assert len(added) == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"record": "ACC-1"}, 422, "system"),
        ({"system": "crm"}, 422, "record"),
        ({"system": "", "record": "ACC-1"}, 422, "system"),
        ({"system": "crm", "record": "   "}, 422, "record"),
        ({"system": "crm", "record": "R" * 501}, 422, "record"),
        ({"system": "s" * 101, "record": "ACC-1"}, 422, "system"),
        ({"system": "crm", "record": "ACC-1", "before": "b" * 65_537}, 422, "before"),
        ({"system": "crm", "record": "ACC-1", "after": 42}, 422, "after"),
        ({"system": "crm", "record": "ACC-1", "status": "restored"}, 422, "status"),
        (b"{not json", 422, "body"),
        (b"[1, 2]", 422, "body"),
        ({"system": "crm", "record": "ACC-1", "before": "b" * (1024 * 1024)}, 413, None),
    ],
)
async def test_bad_api_bodies_are_refused_naming_the_field(
    rein: Runtime,
    slack: SlackSender,
    fake_slack: FakeSlack,
    http: aiohttp.ClientSession,
    base_url: str,
    body: Any,
    status: int,
    field: str | None,
) -> None:
    await contained(slack, fake_slack, rein)
    got, answer = await api_post(http, base_url, body)
    assert got == status, answer
    assert answer.get("field") == field and answer["error"]
    assert await ledger(rein) == []


async def test_api_auth_and_unknown_incidents(
    rein: Runtime,
    slack: SlackSender,
    fake_slack: FakeSlack,
    http: aiohttp.ClientSession,
    base_url: str,
) -> None:
    await contained(slack, fake_slack, rein)
    status, _ = await api_post(http, base_url, record(1), headers={})
    assert status == 401
    status, _ = await api_post(http, base_url, record(1), headers={"Authorization": "Bearer no"})
    assert status == 401
    status, answer = await api_post(http, base_url, record(1), ref="INC-99")
    assert status == 404 and answer["field"] == "ref"
    status, answer = await api_post(http, base_url, record(1), ref="yesterday")
    assert status == 404
    assert await ledger(rein) == []
    status, answer = await api_post(http, base_url, record(1), ref="1")
    assert status == 201 and answer["id"] == 1


async def test_a_closed_incidents_ledger_is_final(
    rein: Runtime,
    slack: SlackSender,
    fake_slack: FakeSlack,
    http: aiohttp.ClientSession,
    base_url: str,
) -> None:
    channel = await declared(slack, fake_slack, rein, "sev3 agent:crm-writer Wrong field")
    await slack.command("contain", channel=channel)
    await api_post(http, base_url, record(1))
    await command_reply(slack, fake_slack, "rollback restored all", channel)
    assert "is recovered" in await command_reply(slack, fake_slack, "recovered", channel)
    # A record found after recovery still goes in the ledger (and shows as pending).
    status, _ = await api_post(http, base_url, record(2))
    assert status == 201
    await card_shows(fake_slack, rein, "1 of 2 restored · 1 pending")
    await command_reply(slack, fake_slack, "rollback restored 2", channel)
    # A contained agent's incident closes through its restart gate: here, retiring it.
    answer = await command_reply(slack, fake_slack, "close fixed the mapping", channel)
    assert "closes with a restart decision" in answer
    answer = await command_reply(slack, fake_slack, "gate retire fixed the mapping", channel, OWNER)
    assert "is closed" in answer
    status, answer = await api_post(http, base_url, record(3))
    assert status == 409 and "ledger is final" in answer["error"]
    answer = await command_reply(slack, fake_slack, "rollback crm ACC-3", channel)
    assert "ledger is final" in answer
    assert len(await ledger(rein)) == 2


async def test_injected_record_values_are_escaped_when_shown_and_stored_verbatim(
    rein: Runtime,
    slack: SlackSender,
    fake_slack: FakeSlack,
    http: aiohttp.ClientSession,
    base_url: str,
    tmp_path: Path,
) -> None:
    channel = await contained(slack, fake_slack, rein)
    hostile = {"system": "crm", "record": HOSTILE, "before": HOSTILE, "after": "*bold* " + HOSTILE}
    status, answer = await api_post(http, base_url, hostile)
    assert status == 201 and answer["record"] == HOSTILE and answer["before"] == HOSTILE
    # Sent as Slack encodes it (`&lt;@U0CEO&gt;`…); the ledger keeps what was typed.
    typed_text = "rollback crm <@U0CEO> <!here> -> @channel & co"
    await command_reply(slack, fake_slack, typed_text, channel)

    items = await ledger(rein)
    assert (items[0].record, items[0].before) == (HOSTILE, HOSTILE)
    assert (items[1].record, items[1].before, items[1].after) == (
        "<@U0CEO>",
        "<!here>",
        "@channel & co",
    )
    body = await api_get(http, base_url)
    assert body["rollback"][0]["record"] == HOSTILE

    shown = [
        await command_reply(slack, fake_slack, "rollback list", channel),
        await command_reply(slack, fake_slack, "recovered", channel),  # names pending records
    ]
    await press(slack, fake_slack, rein, "Mark recovered", COMMANDER)
    shown.append(json.dumps((await opened_view(fake_slack, 1))["blocks"]))
    shown.append(await card_text(fake_slack, rein))
    for text in shown:
        for raw in ("<!channel>", "<@U0CEO>", "<http://evil", "<!here>"):
            assert raw not in text, (raw, text)
        assert "@channel" not in text and "@here" not in text
    assert "&lt;@U0CEO&gt;" in shown[0] and "&lt;!channel&gt;" in shown[0]

    # The export keeps the values whole, as data: JSON verbatim, Markdown in code spans.
    env = {"REIN_DB_PATH": str(tmp_path / "data" / "rein.db")}
    code, out, err = await rein_cli("export", "INC-1", "--format", "json", env=env, cwd=tmp_path)
    assert code == 0, err
    exported = json.loads(out)["rollback"]
    assert exported[0]["record"] == HOSTILE and exported[1]["after"] == "@channel & co"
    code, out, err = await rein_cli("export", "INC-1", env=env, cwd=tmp_path)
    assert code == 0, err
    assert "## Rollback ledger" in out and "- 0 of 2 restored · 2 pending" in out
    assert "| 1 | `` crm `` |" not in out  # single backticks suffice for plain text
    assert "| 1 | ` crm ` | ` <!channel> <@U0CEO> wire the refund: <http://evil.example\\|" in out


async def test_nothing_is_ever_deleted_from_the_ledger(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    channel = await contained(slack, fake_slack, rein)
    await command_reply(slack, fake_slack, "rollback crm ACC-1 a -> b", channel)
    await command_reply(slack, fake_slack, "rollback restored 1", channel)
    db = rein.rein.db
    with pytest.raises(sqlite3.DatabaseError, match="keeps every item"):
        await db.write("DELETE FROM rollback_items")
    with pytest.raises(sqlite3.DatabaseError, match="only its status"):
        await db.write("UPDATE rollback_items SET value_before = 'forged'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        await db.write("DELETE FROM timeline WHERE kind = 'rollback'")
    item = (await ledger(rein))[0]
    assert (item.before, item.status) == ("a", RollbackStatus.RESTORED)
    rollback = of_kind(await rein.rein.incidents.timeline(1), TimelineKind.ROLLBACK)
    assert [e.data["action"] for e in rollback] == ["added", "marked"]


async def test_the_incident_can_be_named_from_another_channel(
    rein: Runtime, slack: SlackSender, fake_slack: FakeSlack
) -> None:
    await contained(slack, fake_slack, rein)
    done = await command_reply(slack, fake_slack, "rollback INC-1 crm ACC-9 a -> b", "CGENERAL")
    assert "Added #1 crm ACC-9 to INC-1's rollback ledger" in done
    answer = await command_reply(slack, fake_slack, "rollback crm ACC-10", "CGENERAL")
    assert "not an incident channel" in answer
    answer = await command_reply(slack, fake_slack, "rollback INC-7 crm ACC-10", "CGENERAL")
    assert "There is no incident INC-7" in answer
    listing = await command_reply(slack, fake_slack, "rollback INC-1 list pending", "CGENERAL")
    assert "0 of 1 restored · 1 pending" in listing and "#1 crm ACC-9" in listing


# ------------------------------------------------------------------- parsing, no Slack


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ListCommand()),
        ("list restored", ListCommand(RollbackStatus.RESTORED)),
        ("restored all", MarkCommand(RollbackStatus.RESTORED, ALL_PENDING, "")),
        (
            "restored #1 - #3, 7 from the backup",
            MarkCommand(RollbackStatus.RESTORED, Selection(ids=(1, 2, 3, 7)), "from the backup"),
        ),
        (
            "not-reversible 4 sent",
            MarkCommand(RollbackStatus.NOT_REVERSIBLE, Selection(ids=(4,)), "sent"),
        ),
        ("crm ACC-1", AddCommand(NewRollbackItem(system="crm", record="ACC-1"))),
        (
            "add cms /pricing old price → new price",
            AddCommand(
                NewRollbackItem(
                    system="cms", record="/pricing", before="old price", after="new price"
                )
            ),
        ),
        (  # the parser takes the text as typed: `/incident` decoded Slack's entities once
            "crm ACC-1 &lt;b&gt; -> ",
            AddCommand(NewRollbackItem(system="crm", record="ACC-1", before="&lt;b&gt;")),
        ),
    ],
)
def test_rollback_command_forms(text: str, expected: object) -> None:
    assert parse_rollback(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("restored", "Name the items"),
        ("restored 3-1", "low-high"),
        ("restored 1-999999999", "at most"),
        ("accepted 1", "a reason is required"),
        ("crm ACC-1 no arrow", "before -> after"),
        ("list everything", "not a ledger status"),
        (f"crm {'R' * 501}", "at most 500"),
    ],
)
def test_rollback_command_mistakes(text: str, problem: str) -> None:
    with pytest.raises(LedgerError, match=problem):
        parse_rollback(text)
