"""Reading values out of Slack's payloads: view state, who and where, the incident meant."""

from typing import Any

from bot.context import Rein
from bot.domain.models import parse_ref
from bot.render.text import escape
from bot.services.authorise import Refused


def _values(view: dict, block_id: str) -> dict[str, Any]:
    block = view.get("state", {}).get("values", {}).get(block_id, {})
    return next(iter(block.values()), {}) if block else {}


def text_value(view: dict, block_id: str) -> str:
    return (_values(view, block_id).get("value") or "").strip()


def selected(view: dict, block_id: str) -> str | None:
    option = _values(view, block_id).get("selected_option")
    return option.get("value") if option else None


def selected_many(view: dict, block_id: str) -> list[str]:
    return [o["value"] for o in _values(view, block_id).get("selected_options") or []]


def user_and_channel(body: dict) -> tuple[str, str | None]:
    user = body["user"]["id"]
    channel = (body.get("channel") or {}).get("id")
    return user, channel


async def named_or_here(
    rein: Rein, rest: str, command: dict, example: str, *, bare_number: bool = False
) -> tuple[int, str]:
    """The incident named first (`INC-12 …`; with `bare_number`, `12 …` too), else the
    incident of the channel the command was typed in; and the rest of the text."""
    first, _, remainder = rest.strip().partition(" ")
    if first.lower().startswith("inc-") or (bare_number and first.isdigit()):
        try:
            return parse_ref(first), remainder.strip()
        except ValueError as exc:
            raise Refused(escape(str(exc))) from None
    incident = await rein.incidents.by_channel(command.get("channel_id", ""))
    if incident is None:
        raise Refused(
            "This is not an incident channel. Run it in one, or name the incident first: "
            f"`{example}`. `/incident list` shows open incidents."
        )
    return incident.number, rest.strip()
