"""The rollback ledger and recovery in Slack: **Add affected record**, **Mark records** and
**Mark recovered** on the card, their modals, and `/incident rollback` / `/incident recovered`
(wired into handlers/incident_command.py's SUBCOMMANDS)."""

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from bot.context import Rein
from bot.domain.enums import RollbackStatus
from bot.domain.lifecycle import IllegalTransition
from bot.domain.rollback import (
    AddCommand,
    LedgerError,
    ListCommand,
    NewRollbackItem,
    check_reason,
    parse_rollback,
    parse_selection,
)
from bot.render import rollback as render
from bot.render.replies import report
from bot.render.text import escape, unescape
from bot.services.authorise import Refused
from bot.services.rollback import (
    LedgerPending,
    add_item,
    mark_items,
    mark_recovered,
)
from bot.services.surfaces import refresh_surfaces
from bot.slack_gateway import SlackProblem
from handlers.payloads import named_or_here, selected, selected_many, text_value, user_and_channel
from storage.incidents import UnknownIncident

Ack = Callable[..., Awaitable[None]]
ROLLBACK_EXAMPLE = "/incident rollback INC-12 crm ACC-0042 old -&gt; new"


def _ledger(rein: Rein) -> dict[str, Any]:
    """What the ledger services need besides the actor."""
    return {"rollback": rein.rollback, **rein.steering}


async def _refresh(rein: Rein, number: int) -> list[str]:
    incident = await rein.incidents.get(number)
    if incident is None:
        return []
    return await refresh_surfaces(incident, **rein.surfaces)


def register(app: Any, rein: Rein) -> None:
    async def open_modal(body: dict, view: dict) -> None:
        user, channel = user_and_channel(body)
        try:
            await rein.slack.open_view(body["trigger_id"], view)
        except SlackProblem as problem:
            await rein.slack.tell(user, str(problem), channel)

    @app.action(render.ADD_RECORD)
    async def add_clicked(ack: Ack, body: dict, action: dict) -> None:
        await ack()
        user, channel = user_and_channel(body)
        incident = await rein.incidents.get(int(action["value"]))
        if incident is None:
            await rein.slack.tell(user, "That incident no longer exists.", channel)
            return
        agent = rein.policy.agent(incident.agent_id)
        await open_modal(body, render.add_record_modal(incident, agent, channel))

    @app.action(render.MARK_RECORDS)
    async def mark_clicked(ack: Ack, body: dict, action: dict) -> None:
        await ack()
        user, channel = user_and_channel(body)
        number = int(action["value"])
        incident = await rein.incidents.get(number)
        if incident is None:
            await rein.slack.tell(user, "That incident no longer exists.", channel)
            return
        counts = await rein.rollback.counts(number)
        named = await rein.rollback.for_incident(
            number, RollbackStatus.PENDING, render.PENDING_NAMED
        )
        ids = await rein.rollback.pending_ids(number)
        await open_modal(body, render.mark_records_modal(incident, counts, named, ids, channel))

    @app.action(render.MARK_RECOVERED)
    async def recovered_clicked(ack: Ack, body: dict, action: dict) -> None:
        await ack()
        user, channel = user_and_channel(body)
        number = int(action["value"])
        try:
            recovered = await mark_recovered(number, actor=user, **_ledger(rein))
        except LedgerPending as pending:
            if user == pending.incident.commander:  # the commander may accept the rest
                view = render.recover_modal(
                    pending.incident, pending.counts, pending.named, pending.ids, channel
                )
                await open_modal(body, view)
            else:
                await rein.slack.tell(user, str(pending), channel)
            return
        except (Refused, IllegalTransition) as exc:
            await rein.slack.tell(user, str(exc), channel)
            return
        problems = await refresh_surfaces(recovered.incident, **rein.surfaces)
        if problems:
            done = render.recovered_text(recovered.incident, recovered.counts, recovered.accepted)
            await rein.slack.tell(user, report(done, problems), channel)

    @app.view(render.ADD_RECORD_VIEW)
    async def add_submitted(ack: Ack, body: dict, view: dict) -> None:
        user = body["user"]["id"]
        number, channel = render.modal_target(view["private_metadata"])
        try:
            new = NewRollbackItem(
                system=text_value(view, "system"),
                record=text_value(view, "record"),
                before=_raw(view, "before"),
                after=_raw(view, "after"),
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            field = str(first["loc"][0]) if first["loc"] else "record"
            message = first["msg"].removeprefix("Value error, ")
            await ack(
                response_action="errors",
                errors={field: f"This {message[:1].lower()}{message[1:]}."},
            )
            return
        try:
            added = await add_item(
                number,
                new,
                actor=user,
                incidents=rein.incidents,
                rollback=rein.rollback,
                clock=rein.clock,
            )
        except (Refused, UnknownIncident) as exc:
            await ack(response_action="errors", errors={"record": str(exc)})
            return
        if added.duplicate:
            text = render.added_text(added.incident, added.item, duplicate=True)
            await ack(response_action="errors", errors={"record": unescape(text)})
            return
        await ack()
        problems = await _refresh(rein, number)
        if problems:
            done = render.added_text(added.incident, added.item, duplicate=False)
            await rein.slack.tell(user, report(done, problems), channel)

    @app.view(render.MARK_RECORDS_VIEW)
    async def mark_submitted(ack: Ack, body: dict, view: dict) -> None:
        user = body["user"]["id"]
        number, channel = render.modal_target(view["private_metadata"])
        status = RollbackStatus(selected(view, "status") or RollbackStatus.RESTORED.value)
        try:
            selection = parse_selection(text_value(view, "items"))
        except LedgerError as exc:
            await ack(response_action="errors", errors={"items": str(exc)})
            return
        try:
            reason = check_reason(status, text_value(view, "reason"))
        except LedgerError as exc:
            await ack(response_action="errors", errors={"reason": str(exc)})
            return
        try:
            marked = await mark_items(
                number, selection, status, reason, actor=user, **_ledger(rein)
            )
        except Refused as exc:
            await ack(response_action="errors", errors={"items": str(exc)})
            return
        await ack()
        problems = await _refresh(rein, number) if marked.changed else []
        done = render.marked_text(
            marked.incident, marked.status, marked.changed, marked.already, marked.counts
        )
        await rein.slack.tell(user, report(done, problems), channel)

    @app.view(render.RECOVER_VIEW)
    async def recover_submitted(ack: Ack, body: dict, view: dict) -> None:
        user = body["user"]["id"]
        number, channel = render.modal_target(view["private_metadata"])
        if "accept" not in selected_many(view, "accept"):
            await ack(
                response_action="errors",
                errors={"accept": "Tick to accept the pending records, or close and mark them."},
            )
            return
        reason = text_value(view, "reason")
        if not reason:
            await ack(response_action="errors", errors={"reason": "Say why."})
            return
        try:
            recovered = await mark_recovered(number, actor=user, accept=reason, **_ledger(rein))
        except (Refused, IllegalTransition) as exc:
            await ack(response_action="errors", errors={"reason": unescape(str(exc))})
            return
        await ack()
        problems = await refresh_surfaces(recovered.incident, **rein.surfaces)
        done = render.recovered_text(recovered.incident, recovered.counts, recovered.accepted)
        await rein.slack.tell(user, report(done, problems), channel)


def _raw(view: dict, block_id: str) -> str | None:
    """A value as typed (blanks kept: they may be the value); None when left empty."""
    block = view.get("state", {}).get("values", {}).get(block_id, {})
    value = next(iter(block.values()), {}).get("value") if block else None
    return value or None


# ---------------------------------------------------------------------- slash commands


async def rollback_subcommand(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    """`/incident rollback [INC-12] …`: list, add, or mark (see bot/domain/rollback.py)."""
    await ack()
    user = command["user_id"]
    try:
        number, rest = await named_or_here(rein, rest, command, ROLLBACK_EXAMPLE)
        parsed = parse_rollback(rest)
        if isinstance(parsed, ListCommand):
            await _list(rein, number, parsed.status, respond)
            return
        if isinstance(parsed, AddCommand):
            added = await add_item(
                number,
                parsed.item,
                actor=user,
                incidents=rein.incidents,
                rollback=rein.rollback,
                clock=rein.clock,
            )
            done = render.added_text(added.incident, added.item, added.duplicate)
            problems = [] if added.duplicate else await _refresh(rein, number)
        else:
            marked = await mark_items(
                number,
                parsed.selection,
                parsed.status,
                parsed.reason,
                actor=user,
                **_ledger(rein),
            )
            done = render.marked_text(
                marked.incident, marked.status, marked.changed, marked.already, marked.counts
            )
            problems = await _refresh(rein, number) if marked.changed else []
    except (LedgerError, Refused, UnknownIncident) as exc:
        # A LedgerError may repeat what was typed: escaped; Refused is Rein's own mrkdwn.
        text = str(exc) if isinstance(exc, Refused) else escape(str(exc))
        await respond(text=text, response_type="ephemeral")
        return
    await respond(text=report(done, problems), response_type="ephemeral")


async def _list(rein: Rein, number: int, status: RollbackStatus | None, respond: Any) -> None:
    incident = await rein.incidents.get(number)
    if incident is None:
        raise Refused(f"There is no incident INC-{number}.")
    counts = await rein.rollback.counts(number)
    limit = render.LIST_ITEMS_MAX
    if status is None:  # pending first: that is what needs doing
        items = await rein.rollback.for_incident(number, RollbackStatus.PENDING, limit)
        if len(items) < limit:
            rest = await rein.rollback.for_incident(number)
            items += [i for i in rest if i.status is not RollbackStatus.PENDING][
                : limit - len(items)
            ]
    else:
        items = await rein.rollback.for_incident(number, status, limit)
    blocks = render.ledger_list_blocks(incident, counts, items, status)
    await respond(
        text=f"{incident.ref} rollback ledger: {counts.total} items",
        blocks=blocks,
        response_type="ephemeral",
    )


RECOVERED_FORM = (
    "`/incident recovered`, or as commander `/incident recovered accept &lt;reason&gt;`"
)


async def recovered_subcommand(
    rein: Rein, rest: str, command: dict, ack: Ack, respond: Any
) -> None:
    """`/incident recovered [INC-12] [accept <reason>]`."""
    await ack()
    user = command["user_id"]
    try:
        number, rest = await named_or_here(rein, rest, command, ROLLBACK_EXAMPLE)
        word, _, reason = rest.partition(" ")
        accept: str | None = None
        if word.lower() == "accept":
            accept = reason.strip()
            if not accept:
                raise Refused(f"Say why the pending records are accepted: {RECOVERED_FORM}.")
        elif word:
            raise Refused(f"`/incident recovered` takes no text: {RECOVERED_FORM}.")
        recovered = await mark_recovered(number, actor=user, accept=accept, **_ledger(rein))
    except (Refused, IllegalTransition) as exc:
        await respond(text=str(exc), response_type="ephemeral")
        return
    problems = await refresh_surfaces(recovered.incident, **rein.surfaces)
    done = render.recovered_text(recovered.incident, recovered.counts, recovered.accepted)
    await respond(text=report(done, problems), response_type="ephemeral")
