"""The postmortem in Slack: **Start postmortem** and **Share postmortem** on the card, the
five-part form, and `/incident postmortem [INC-12] [share]` (wired into
handlers/incident_command.py's SUBCOMMANDS)."""

from collections.abc import Awaitable, Callable
from typing import Any

from bot.context import Rein
from bot.domain.lifecycle import IllegalTransition
from bot.domain.postmortem import PARTS, PostmortemError, parse_parts
from bot.render import postmortem as render
from bot.render.replies import report
from bot.render.text import unescape
from bot.services.authorise import Refused
from bot.services.postmortem import (
    StaleDraft,
    postmortem_form,
    save_postmortem,
    share_postmortem,
)
from bot.services.surfaces import refresh_surfaces
from bot.slack_gateway import SlackProblem
from handlers.payloads import named_or_here, selected_many, user_and_channel

Ack = Callable[..., Awaitable[None]]
USAGE = "/incident postmortem [INC-12] [share]"


def _form_args(rein: Rein) -> dict[str, Any]:
    return {
        "incidents": rein.incidents,
        "postmortems": rein.postmortems,
        "evidence": rein.evidence,
        "rollback": rein.rollback,
        "policy": rein.policy,
    }


def _share_args(rein: Rein) -> dict[str, Any]:
    return {
        **rein.steering,
        "postmortems": rein.postmortems,
        "evidence": rein.evidence,
        "rollback": rein.rollback,
        "timeline": rein.timeline,
    }


async def _open_form(rein: Rein, number: int, trigger_id: str, channel: str | None) -> str | None:
    """Open the form; return what to tell the user instead when it cannot open."""
    try:
        form = await postmortem_form(number, **_form_args(rein))
        view = render.postmortem_modal(
            form.incident,
            form.postmortem,
            form.initial,
            card=form.card,
            ledger=form.ledger,
            drafted=form.drafted,
            channel=channel,
        )
        await rein.slack.open_view(trigger_id, view)
    except (Refused, SlackProblem) as exc:
        return str(exc)
    return None


async def _share(rein: Rein, number: int, user: str) -> str:
    """Share the document; the private answer (what was shared, or why not)."""
    try:
        shared = await share_postmortem(number, actor=user, **_share_args(rein))
    except Refused as exc:
        return str(exc)
    return render.shared_text(shared.incident, shared.channel, shared.size)


def _raw(view: dict, block_id: str) -> str:
    """A part as typed (not stripped here: its length is checked as Slack counted it)."""
    block = view.get("state", {}).get("values", {}).get(block_id, {})
    return (next(iter(block.values()), {}).get("value") if block else None) or ""


def register(app: Any, rein: Rein) -> None:
    @app.action(render.START_POSTMORTEM)
    async def start_clicked(ack: Ack, body: dict, action: dict) -> None:
        await ack()
        user, channel = user_and_channel(body)
        problem = await _open_form(rein, int(action["value"]), body["trigger_id"], channel)
        if problem:
            await rein.slack.tell(user, problem, channel)

    @app.action(render.SHARE_POSTMORTEM)
    async def share_clicked(ack: Ack, body: dict, action: dict) -> None:
        await ack()
        user, channel = user_and_channel(body)
        await rein.slack.tell(user, await _share(rein, int(action["value"]), user), channel)

    @app.view(render.POSTMORTEM_VIEW)
    async def postmortem_submitted(ack: Ack, body: dict, view: dict) -> None:
        user = body["user"]["id"]
        number, revision, channel = render.read_metadata(view["private_metadata"])
        complete = render.COMPLETE in selected_many(view, render.COMPLETE_BLOCK)
        try:
            parts = parse_parts({p.key: _raw(view, p.key) for p in PARTS}, complete=complete)
        except PostmortemError as exc:
            await ack(response_action="errors", errors=exc.errors)
            return
        try:
            # Committed (and, when completed, the incident moved) before Slack hears back.
            saved = await save_postmortem(
                number,
                parts,
                complete=complete,
                revision=revision,
                actor=user,
                postmortems=rein.postmortems,
                **rein.steering,
            )
        except StaleDraft as exc:
            await ack(response_action="errors", errors={PARTS[0].key: str(exc)})
            return
        except (Refused, IllegalTransition) as exc:
            where = render.COMPLETE_BLOCK if complete else PARTS[0].key
            await ack(response_action="errors", errors={where: unescape(str(exc))})
            return
        if saved.already_completed and saved.postmortem.parts != parts:
            text = render.already_completed_text(saved.incident, saved.postmortem)
            await ack(response_action="errors", errors={PARTS[0].key: text})
            return
        await ack()
        if saved.already_completed or saved.unchanged:
            return  # a second click of the same form: stored once, said once
        problems = await refresh_surfaces(saved.incident, **rein.surfaces)
        done = render.saved_text(saved.incident, saved.postmortem, saved.completed_now)
        await rein.slack.tell(user, report(done, problems), channel)


async def postmortem_subcommand(
    rein: Rein, rest: str, command: dict, ack: Ack, respond: Any
) -> None:
    """`/incident postmortem [INC-12]` opens the form; `… share` posts the document."""
    await ack()
    user, channel = command["user_id"], command.get("channel_id")
    try:
        number, rest = await named_or_here(rein, rest, command, USAGE, bare_number=True)
        word = rest.strip().lower()
        if word not in ("", "share"):
            raise Refused(f"`/incident postmortem` takes `share` or nothing: `{USAGE}`.")
    except Refused as exc:
        await respond(text=str(exc), response_type="ephemeral")
        return
    if word == "share":
        await respond(text=await _share(rein, number, user), response_type="ephemeral")
        return
    problem = await _open_form(rein, number, command["trigger_id"], channel)
    if problem:
        await respond(text=problem, response_type="ephemeral")
