"""Reading values out of Slack's view-state payloads."""

from typing import Any


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
