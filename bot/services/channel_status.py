"""The incident channel's automated one-line status, and keeping Slack edits calm.

Every change an incident goes through is published by `refresh_surfaces` (card, digest,
topic). With a `SurfaceDesk` it also:
- coalesces refreshes: while one refresh of an incident runs, any number of later requests
  are served by one more refresh that reads the state after all of them;
- sets the channel topic only when its text changes (`conversations.setTopic` is Tier 2, and
  Slack shows every topic change in the channel);
- pokes the debounced status poster, which posts one line for whatever became news since
  the last line (`post_channel_status`): changes a few seconds apart make one line.

The line is derived from the timeline, not from what callers pass: the entries after the last
`status_posted` entry. So nothing is lost when Rein restarts before the line was posted; at
start every open incident is looked at once (`catch_up`)."""

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from bot.clock import Clock
from bot.debounce import Debouncer
from bot.domain.models import Incident
from bot.domain.updates import NEWS_KINDS, merge_news, posted_entry
from bot.render import updates as render
from bot.slack_gateway import SlackGateway, SlackProblem
from storage.incidents import IncidentRepo
from storage.timeline import TimelineRepo

logger = logging.getLogger(__name__)

STATUS_DEBOUNCE_SECONDS = 3.0


@dataclass
class SurfaceDesk:
    """Per-incident bookkeeping for `refresh_surfaces`; `status` is attached by the runtime."""

    status: Debouncer | None = None
    _asked: defaultdict[int, int] = field(default_factory=lambda: defaultdict(int))
    _served: dict[int, tuple[int, list[str]]] = field(default_factory=dict)
    _topics: dict[int, str] = field(default_factory=dict)

    def ask(self, number: int) -> int:
        """A ticket for one refresh request (taken before waiting for the incident's lock)."""
        self._asked[number] += 1
        return self._asked[number]

    def covered(self, number: int, ticket: int) -> list[str] | None:
        """The problems of a finished refresh that read the state after request `ticket`
        was made, or None when this request still needs its own refresh."""
        served = self._served.get(number)
        return list(served[1]) if served is not None and served[0] >= ticket else None

    def begin(self, number: int) -> int:
        """A refresh starts reading the state: it covers every request made so far."""
        return self._asked[number]

    def done(self, number: int, covers: int, problems: list[str]) -> None:
        self._served[number] = (covers, list(problems))

    def topic_is_new(self, number: int, topic: str) -> bool:
        return self._topics.get(number) != topic

    def topic_set(self, number: int, topic: str) -> None:
        self._topics[number] = topic

    def changed(self, number: int) -> None:
        """Something about the incident changed: a status line may be due."""
        if self.status is not None:
            self.status.poke(number)

    def catch_up(self, incidents: list[Incident]) -> None:
        """At start: lines that were due when Rein stopped are posted after all."""
        for incident in incidents:
            if incident.channel_id:
                self.changed(incident.number)


async def post_channel_status(
    number: int,
    *,
    incidents: IncidentRepo,
    timeline: TimelineRepo,
    slack: SlackGateway,
    clock: Clock,
) -> str | None:
    """Post one line in the incident channel for what became news since the last line, and
    record it; return the line, or None when there was nothing to say (or Slack refused:
    the news stays due and goes out with the next change or the next start)."""
    incident = await incidents.get(number)
    if incident is None or incident.channel_id is None:
        return None
    found = await timeline.after(number, await timeline.status_cursor(number), NEWS_KINDS)
    news = merge_news([entry for _, entry in found])
    if not news:
        return None
    line = render.status_line(incident, news)
    try:
        ts = await slack.post(incident.channel_id, line)
    except SlackProblem as problem:
        logger.warning("%s: could not post the channel status: %s", incident.ref, problem)
        return None
    through = found[-1][0]
    await incidents.append(number, [posted_entry(news, through=through, ts=ts, at=clock())])
    return line
