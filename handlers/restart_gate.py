"""The restart gate in Slack: **Open restart gate**, the criteria's Check / Uncheck / Accept,
**Approve reactivation**, **Promote to <stage>**, **Retire agent**, their modal, and
`/incident gate …` (wired into handlers/incident_command.py's SUBCOMMANDS)."""

from collections.abc import Awaitable, Callable
from typing import Any

from bot.context import Rein
from bot.domain.gate import Criterion, parse_criterion, parse_stage
from bot.domain.lifecycle import IllegalTransition
from bot.render import gate as render
from bot.render.replies import report
from bot.render.text import escape, unescape
from bot.services.authorise import Refused
from bot.services.restart import (
    StageChange,
    accept_criterion,
    announce_stage,
    approve_reactivation,
    authorise_restart,
    cancel_gate_reminder,
    load_gate,
    open_gate,
    promote,
    publish,
    retire_agent,
    set_check,
    show_gate,
)
from bot.slack_gateway import SlackProblem
from handlers.payloads import named_or_here, selected, text_value, user_and_channel

Ack = Callable[..., Awaitable[None]]

GATE_FORM = (
    "`/incident gate` (post or show the gate) · `gate check &lt;criterion&gt; [note]` · "
    "`gate uncheck &lt;criterion&gt;` · `gate accept &lt;criterion&gt; &lt;reason&gt;` · "
    "`gate approve [shadow|read_only|…] [note]` · `gate promote` · "
    "`gate retire &lt;reason&gt;`"
)


async def after_change(rein: Rein, change: StageChange, actor: str) -> list[str]:
    """Deliver to the kill switch, tell the channel, then the gate message and the card."""
    if change.delivery is not None:
        rein.deliver(change.delivery.id)
    await cancel_gate_reminder(change.incident, f"restart {change.restart.state}", rein)
    await announce_stage(change, actor, rein)
    return await publish(change.incident.number, rein)


async def opened(rein: Rein, number: int, actor: str) -> tuple[str, list[str]]:
    """Open (or show) the gate; the answer for the person who asked."""
    gate, created = await open_gate(number, actor=actor, rein=rein)
    problems = await show_gate(number, rein)
    incident = gate.incident
    if created:
        problems += await publish(number, rein)
    met = sum(1 for j in gate.judgements if j.met)
    where = f"<#{incident.channel_id}>" if incident.channel_id else "the incident channel"
    verb = "is open" if created else "was open already"
    return (
        f"{incident.ref}'s restart gate {verb}: {met} of {len(gate.judgements)} criteria met. "
        f"The gate message in {where} is current.",
        problems,
    )


def register(app: Any, rein: Rein) -> None:
    async def tell(body: dict, text: str) -> None:
        user, channel = user_and_channel(body)
        await rein.slack.tell(user, text, channel)

    async def open_modal(body: dict, view: dict) -> None:
        try:
            await rein.slack.open_view(body["trigger_id"], view)
        except SlackProblem as problem:
            await tell(body, str(problem))

    @app.action(render.OPEN_GATE)
    async def open_clicked(ack: Ack, body: dict, action: dict) -> None:
        await ack()
        user, _ = user_and_channel(body)
        try:
            text, problems = await opened(rein, int(action["value"]), user)
        except Refused as exc:
            await tell(body, str(exc))
            return
        await tell(body, report(text, problems))

    @app.action(render.GATE_CHECK)
    async def check_clicked(ack: Ack, body: dict, action: dict) -> None:
        await ack()
        _, channel = user_and_channel(body)
        number, key = render.parse_value(action["value"])
        try:
            gate = await load_gate(number, rein)
        except Refused as exc:
            await tell(body, str(exc))
            return
        await open_modal(body, render.gate_modal("check", gate, channel, Criterion(key)))

    @app.action(render.GATE_ACCEPT)
    async def accept_clicked(ack: Ack, body: dict, action: dict) -> None:
        await ack()
        user, channel = user_and_channel(body)
        number, key = render.parse_value(action["value"])
        try:
            gate = await load_gate(number, rein)
            await authorise_restart(user, gate.incident, "accept a restart-gate criterion of", rein)
        except Refused as exc:
            await tell(body, str(exc))
            return
        await open_modal(body, render.gate_modal("accept", gate, channel, Criterion(key)))

    @app.action(render.GATE_UNCHECK)
    async def uncheck_clicked(ack: Ack, body: dict, action: dict) -> None:
        await ack()
        user, _ = user_and_channel(body)
        number, key = render.parse_value(action["value"])
        try:
            await set_check(number, Criterion(key), False, "", actor=user, rein=rein)
        except Refused as exc:
            await tell(body, str(exc))
            return
        await publish(number, rein)

    def decision_button(action_id: str, kind: str, phrase: str) -> None:
        """Approve reactivation and Retire agent: the approver is checked before the form."""

        @app.action(action_id)
        async def clicked(ack: Ack, body: dict, action: dict) -> None:
            await ack()
            user, channel = user_and_channel(body)
            try:
                gate = await load_gate(int(action["value"]), rein)
                await authorise_restart(user, gate.incident, phrase, rein)
            except Refused as exc:
                await tell(body, str(exc))
                return
            await open_modal(body, render.gate_modal(kind, gate, channel))

    decision_button(render.APPROVE_REACTIVATION, "approve", "approve reactivation of")
    decision_button(render.RETIRE_AGENT, "retire", "retire the agent of")

    @app.action(render.PROMOTE)
    async def promote_clicked(ack: Ack, body: dict, action: dict) -> None:
        await ack()
        user, _ = user_and_channel(body)
        number, stage = render.parse_value(action["value"])
        try:
            change = await promote(number, parse_stage(stage), actor=user, rein=rein)
        except (Refused, IllegalTransition, ValueError) as exc:
            await tell(body, str(exc))
            return
        await after_change(rein, change, user)

    @app.view(render.GATE_VIEW)
    async def gate_submitted(ack: Ack, body: dict, view: dict) -> None:
        user = body["user"]["id"]
        target = render.modal_target(view["private_metadata"])
        number, op = int(target["incident"]), target["op"]
        note = text_value(view, "note")
        change: StageChange | None = None
        try:
            if op == "check":
                await set_check(
                    number, Criterion(target["criterion"]), True, note, actor=user, rein=rein
                )
            elif op == "accept":
                await accept_criterion(
                    number, Criterion(target["criterion"]), note, actor=user, rein=rein
                )
            elif op == "approve":
                stage = selected(view, "stage")
                change = await approve_reactivation(
                    number, parse_stage(stage) if stage else None, note, actor=user, rein=rein
                )
            else:
                change = await retire_agent(number, note, actor=user, rein=rein)
        except (Refused, IllegalTransition, ValueError) as exc:
            block = "stage" if op == "approve" else "note"
            # Modal errors are plain text: Rein's own mrkdwn (Refused) is shown unescaped.
            text = str(exc) if isinstance(exc, ValueError) else unescape(str(exc))
            await ack(response_action="errors", errors={block: text[:2000]})
            return
        await ack()
        if change is not None:
            await after_change(rein, change, user)
        else:
            await publish(number, rein)


async def gate_subcommand(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    """`/incident gate [INC-12] [check|uncheck|accept|approve|promote|retire …]`."""
    await ack()
    user = command["user_id"]
    try:
        number, rest = await named_or_here(rein, rest, command, "/incident gate INC-12")
        word, _, tail = rest.strip().partition(" ")
        word, tail = word.lower(), tail.strip()
        if word in ("", "open", "show"):
            text, problems = await opened(rein, number, user)
            await respond(text=report(text, problems), response_type="ephemeral")
            return
        if word in ("check", "uncheck", "accept"):
            name, _, note = tail.partition(" ")
            if not name:
                raise Refused(f"Name the criterion: `/incident gate {word} &lt;criterion&gt;`.")
            criterion = parse_criterion(name)
            if word == "accept":
                await accept_criterion(number, criterion, note, actor=user, rein=rein)
            else:
                await set_check(number, criterion, word == "check", note, actor=user, rein=rein)
            problems = await publish(number, rein)
            await respond(
                text=report(f"Done: {word} {criterion.value}.", problems), response_type="ephemeral"
            )
            return
        if word == "approve":
            first, _, note = tail.partition(" ")
            try:
                stage = parse_stage(first) if first else None
            except ValueError:  # no stage named: the whole text is the note
                stage, note = None, tail
            change = await approve_reactivation(number, stage, note, actor=user, rein=rein)
        elif word == "promote":
            change = await promote(number, None, actor=user, rein=rein)
        elif word == "retire":
            change = await retire_agent(number, tail, actor=user, rein=rein)
        else:
            raise Refused(f"`/incident gate {escape(word)}` is not a gate command. {GATE_FORM}")
    except (Refused, IllegalTransition, ValueError) as exc:
        # The domain's parsers (ValueError) repeat what was typed: escaped; Refused is Rein's.
        text = escape(str(exc)) if isinstance(exc, ValueError) else str(exc)
        await respond(text=text, response_type="ephemeral")
        return
    problems = await after_change(rein, change, user)
    mode = change.autonomy.mode.value if change.autonomy else "unchanged"
    done = f"{change.incident.ref}: the agent is `{mode}`" + (
        f"; {change.incident.ref} is closed." if change.closed else "."
    )
    await respond(text=report(done, problems), response_type="ephemeral")
