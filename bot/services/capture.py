"""Putting a Slack message on an incident's timeline: once, however often it is pinned, shared
through the shortcut, or redelivered by Slack."""

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import NamedTuple

from bot.clock import Clock
from bot.domain.enums import TimelineKind
from bot.domain.models import Incident, TimelineEntry
from bot.render.text import ELLIPSIS, cut
from bot.slack_gateway import SlackGateway, SlackProblem
from bot.slack_reads import SlackMessage, fetch_message
from storage.incidents import IncidentRepo, UnknownIncident

# Slack's own limit on a message's text; a longer text (never expected) is cut visibly.
MESSAGE_TEXT_MAX = 40_000
NO_TEXT = "(a message without text: a file or an attachment only)"
_TS = re.compile(r"^\d{1,12}\.\d{1,9}$")


class Captured(NamedTuple):
    incident: Incident
    message: SlackMessage
    added: bool  # False: it was already on this incident's timeline


def posted_at(ts: str) -> datetime:
    """A message's own time: Slack's ts is Unix seconds, with a per-channel sequence after
    the dot."""
    if not _TS.match(ts):
        raise ValueError(f"`{ts}` is not a Slack message timestamp")
    return datetime.fromtimestamp(int(ts.partition(".")[0]), UTC)


def dedupe_key(number: int, channel: str, ts: str) -> str:
    # The incident is part of the key: `dedupe_key` is unique across the whole timeline table,
    # and one message from a general channel may matter to two incidents. A channel's own
    # incident never changes, so pins, retries and the shortcut there still meet one key.
    return f"pin:{number}:{channel}:{ts}"


async def capture_message(
    number: int,
    *,
    channel: str,
    ts: str,
    author: str,
    text: str,
    captured_by: str,
    incidents: IncidentRepo,
    clock: Clock,
) -> bool:
    """Append the message as a pinned_message entry; True when it was not there before. The
    text is stored as Slack sent it (escaping is the renderer's job, wherever it is shown)."""
    entry = TimelineEntry(
        at=clock(),
        actor=captured_by,
        kind=TimelineKind.PINNED_MESSAGE,
        text=cut(text, MESSAGE_TEXT_MAX) if text else NO_TEXT,
        data={
            "channel": channel,
            "ts": ts,
            "author": author,
            "posted_at": posted_at(ts).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    return await incidents.append_once(number, entry, dedupe_key(number, channel, ts))


async def _capture(
    incident: Incident,
    message: SlackMessage,
    captured_by: str,
    incidents: IncidentRepo,
    clock: Clock,
) -> Captured:
    added = await capture_message(
        incident.number,
        channel=message.channel,
        ts=message.ts,
        author=message.author,
        text=message.text,
        captured_by=captured_by,
        incidents=incidents,
        clock=clock,
    )
    return Captured(incident, message, added)


async def capture_in_channel(
    message: SlackMessage, *, captured_by: str, incidents: IncidentRepo, clock: Clock
) -> Captured | None:
    """Into the incident whose channel the message is in; None when it is not one."""
    incident = await incidents.by_channel(message.channel)
    if incident is None:
        return None
    return await _capture(incident, message, captured_by, incidents, clock)


async def capture_pinned(
    channel: str,
    ts: str,
    *,
    pinned_by: str,
    incidents: IncidentRepo,
    slack: SlackGateway,
    clock: Clock,
) -> Captured | None:
    """A :pushpin: reaction: None, without asking Slack anything, outside an incident channel
    (and when Slack no longer has the message)."""
    incident = await incidents.by_channel(channel)
    if incident is None or not _TS.match(ts):
        return None
    message = await fetch_message(slack, channel, ts)
    if message is None:
        return None
    return await _capture(incident, message, pinned_by, incidents, clock)


async def capture_chosen(
    number: int,
    message: SlackMessage,
    *,
    text_complete: bool,
    captured_by: str,
    incidents: IncidentRepo,
    slack: SlackGateway,
    clock: Clock,
) -> Captured:
    """From the shortcut's chooser. The form carried the text cut to fit Slack's metadata
    limit when it was long: read it whole again, or keep the cut text, visibly cut, when Rein
    may not read that conversation."""
    incident = await incidents.get(number)
    if incident is None:
        raise UnknownIncident(number)
    if not text_complete:
        try:
            whole = await fetch_message(slack, message.channel, message.ts, message.thread_ts)
        except SlackProblem:
            whole = None
        message = whole or replace(message, text=message.text + ELLIPSIS)
    return await _capture(incident, message, captured_by, incidents, clock)
