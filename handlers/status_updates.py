"""Post update (card button and `/incident update`), its form, and `/incident timeline` with
its Earlier / Later pages."""

import re
from collections.abc import Awaitable, Callable
from typing import Any

from bot.context import Rein
from bot.domain.updates import PROMPTS, UpdateError, parse_update
from bot.render.incident import POST_UPDATE
from bot.render.replies import report
from bot.render.updates import (
    TIMELINE_PAGE,
    UPDATE_VIEW,
    read_page_value,
    timeline_blocks,
    timeline_text,
    update_modal,
)
from bot.services.authorise import Refused
from bot.services.surfaces import refresh_surfaces
from bot.services.updates import (
    TimelinePage,
    publish_update,
    record_update,
    timeline_page,
    update_form,
)
from bot.slack_gateway import SlackProblem
from handlers.payloads import named_or_here, text_value, user_and_channel

Ack = Callable[..., Awaitable[None]]


def register(app: Any, rein: Rein) -> None:
    @app.action(POST_UPDATE)
    async def post_update_clicked(ack: Ack, body: dict, action: dict) -> None:
        await ack()
        user, channel = user_and_channel(body)
        problem = await _open_form(rein, int(action["value"]), body["trigger_id"], user)
        if problem:
            await rein.slack.tell(user, problem, channel)

    @app.view(UPDATE_VIEW)
    async def update_submitted(ack: Ack, body: dict, view: dict) -> None:
        user = body["user"]["id"]
        values = {prompt.key: text_value(view, prompt.key) for prompt in PROMPTS}
        try:
            update = parse_update(values)
            # Recorded and committed before Slack hears back.
            incident, entry = await record_update(
                int(view["private_metadata"]), update, actor=user, **rein.steering
            )
        except UpdateError as exc:
            await ack(response_action="errors", errors=exc.errors)
            return
        except Refused as exc:
            await ack(response_action="errors", errors={PROMPTS[0].key: str(exc)})
            return
        await ack()
        problems = await publish_update(
            incident,
            update,
            entry,
            incidents=rein.incidents,
            slack=rein.slack,
            clock=rein.clock,
            announce_channel=rein.announce_channel,
        )
        problems += await refresh_surfaces(incident, **rein.surfaces)
        if problems:
            await rein.slack.tell(
                user, report(f"{incident.ref}: your update is recorded.", problems)
            )

    @app.action(re.compile(f"^{re.escape(TIMELINE_PAGE)}:"))
    async def timeline_paged(ack: Ack, action: dict, respond: Any) -> None:
        await ack()
        try:
            number, page = read_page_value(action["value"])
            shown = await timeline_page(
                number, page, incidents=rein.incidents, timeline=rein.timeline
            )
        except (Refused, ValueError, KeyError) as exc:
            await respond(text=str(exc), response_type="ephemeral", replace_original=False)
            return
        await respond(**_page_message(shown), response_type="ephemeral", replace_original=True)


async def _open_form(rein: Rein, number: int, trigger_id: str, user: str) -> str | None:
    """Open the Post update form; return what to tell the user instead, if it cannot open."""
    try:
        incident, previous = await update_form(
            number, actor=user, timeline=rein.timeline, **rein.steering
        )
        await rein.slack.open_view(trigger_id, update_modal(incident, previous))
    except (Refused, SlackProblem) as exc:
        return str(exc)
    return None


async def update_command(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    """`/incident update [INC-12]`: the Post update form."""
    await ack()
    try:
        number, _ = await named_or_here(
            rein, rest, command, "/incident update INC-12", bare_number=True
        )
    except Refused as exc:
        await respond(text=str(exc), response_type="ephemeral")
        return
    problem = await _open_form(rein, number, command["trigger_id"], command["user_id"])
    if problem:
        await respond(text=problem, response_type="ephemeral")


async def timeline_command(rein: Rein, rest: str, command: dict, ack: Ack, respond: Any) -> None:
    """`/incident timeline [INC-12]`: the latest page, privately, with Earlier / Later."""
    await ack()
    try:
        number, _ = await named_or_here(
            rein, rest, command, "/incident timeline INC-12", bare_number=True
        )
        shown = await timeline_page(number, None, incidents=rein.incidents, timeline=rein.timeline)
    except Refused as exc:
        await respond(text=str(exc), response_type="ephemeral")
        return
    await respond(**_page_message(shown), response_type="ephemeral")


def _page_message(shown: TimelinePage) -> dict[str, Any]:
    return {
        "text": timeline_text(shown.incident, shown.page, shown.pages),
        "blocks": timeline_blocks(
            shown.incident,
            shown.entries,
            page=shown.page,
            pages=shown.pages,
            first=shown.first,
            total=shown.total,
        ),
    }
