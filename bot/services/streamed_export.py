"""An incident's whole record written a batch of rows at a time: `rein export` and
`GET /v1/incidents/{ref}`.

The bytes are those of bot/export.py's `incident_markdown` and `json.dumps(incident_document(
...))` (the tests compare them), but the timeline, the evidence and the ledger are read and
written `BATCH` rows at a time, so memory does not grow with the incident: with 100,000
timeline entries, holding them all as models took `rein export` to 0.5-0.7 GB, and Rein's
event loop was held for about 3 s while one API answer was built (docs/benchmarks.md,
Scale)."""

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.domain.enums import EvidenceKind, TimelineKind
from bot.domain.evidence import EvidenceItem
from bot.domain.models import Incident, LedgerCounts, TimelineEntry
from bot.domain.postmortem import Postmortem
from bot.domain.rollback import RollbackItem
from bot.export import (
    evidence_completeness,
    evidence_heading,
    evidence_item,
    evidence_item_markdown,
    incident_document,
    ledger_heading,
    ledger_row,
    markdown_head,
    rollback_item,
    timeline_item,
    timeline_row,
)
from storage.evidence import EvidenceRepo
from storage.incidents import IncidentRepo
from storage.postmortems import PostmortemRepo
from storage.rollback import RollbackRepo
from storage.timeline import TimelineRepo

BATCH = 1000  # rows read, turned into text and handed on at a time
# What the head of either document reads of the timeline: phases and the severity history.
HEAD_KINDS = (TimelineKind.STATUS_CHANGED, TimelineKind.SEVERITY_CHANGED)
Row = TypeVar("Row")


def _lines(lines: Iterable[str]) -> str:
    """`"\\n".join(all lines) + "\\n"`, one piece at a time."""
    return "".join(f"{line}\n" for line in lines)


async def _batches(
    read: Callable[[int, int], Awaitable[Sequence[Row]]], key: Callable[[Row], int], size: int
) -> AsyncIterator[Sequence[Row]]:
    """Every row `read(after_id, size)` gives, a batch at a time, by id."""
    after = 0
    while True:
        rows = await read(after, size)
        if rows:
            yield rows
        if len(rows) < size:
            return
        after = key(rows[-1])


Batches = Callable[[], AsyncIterator[Sequence[Any]]]


async def json_pieces(
    document: dict[str, Any],
    streamed: dict[str, Batches],
    *,
    indent: int | None,
    ensure_ascii: bool,
    after: Callable[[str], Any] | None = None,
) -> AsyncIterator[str]:
    """`json.dumps(document, indent=…, ensure_ascii=…)`, in pieces: the value of a key in
    `streamed` is the list its batches make, written a batch at a time (its value in
    `document` is not read). `after(key)`, when given, may give a key's value at the moment
    it is written (for values known only once an earlier list is written)."""

    encoder = json.JSONEncoder(indent=indent, ensure_ascii=ensure_ascii)
    pad = " " * (indent or 0)

    def dumps(value: Any, level: int) -> str:
        text = encoder.encode(value)
        return text.replace("\n", "\n" + pad * level) if indent is not None else text

    def batch_text(items: Sequence[Any]) -> str:
        """The items as they stand inside their list, one `encode` for the batch: the list
        at the top level, without its brackets, each line one level deeper (JSON text holds
        no raw newline) and the first line's indent left to `list_open`."""
        text = encoder.encode(list(items))[1:-1]
        if indent is None:
            return text
        return text.strip("\n")[indent:].replace("\n", "\n" + pad)

    if indent is None:
        opening, between, closing = "{", ", ", "}"
        list_open, list_between, list_close = "[", ", ", "]"
    else:
        opening, between, closing = "{\n" + pad, ",\n" + pad, "\n}"
        list_open, list_between, list_close = "[\n" + pad * 2, ",\n" + pad * 2, "\n" + pad + "]"
    if not document:
        yield "{}"
        return
    yield opening
    for i, (key, value) in enumerate(document.items()):
        piece = (between if i else "") + encoder.encode(key) + ": "
        if key not in streamed:
            found = after(key) if after is not None else None
            yield piece + dumps(value if found is None else found, 1)
            continue
        first = True
        async for items in streamed[key]():
            if not items:
                continue
            yield piece + (list_open if first else list_between) + batch_text(items)
            piece, first = "", False
        yield piece + ("[]" if first else list_close)
    yield closing


@dataclass
class StreamedRecord:
    """The incident's row and what the documents' heads need, read first; the rest is read
    while the document is written."""

    incident: Incident
    head_entries: list[TimelineEntry]  # its status and severity changes
    postmortem: Postmortem | None
    evidence_kinds: frozenset[EvidenceKind]
    evidence_count: int
    ledger: LedgerCounts
    timeline: TimelineRepo
    evidence: EvidenceRepo
    rollback: RollbackRepo
    batch: int = BATCH

    def _entries(self) -> AsyncIterator[Sequence[tuple[int, TimelineEntry]]]:
        number = self.incident.number
        return _batches(
            lambda after, n: self.timeline.batch(number, after, n), lambda r: r[0], self.batch
        )

    def _items(self) -> AsyncIterator[Sequence[EvidenceItem]]:
        number = self.incident.number
        return _batches(
            lambda after, n: self.evidence.batch(number, after, n), lambda i: i.id, self.batch
        )

    def _ledger(self) -> AsyncIterator[Sequence[RollbackItem]]:
        number = self.incident.number
        return _batches(
            lambda after, n: self.rollback.batch(number, after, n), lambda i: i.id, self.batch
        )

    async def markdown(self) -> AsyncIterator[str]:
        """`incident_markdown` of the record, in pieces."""
        yield _lines(markdown_head(self.incident, self.head_entries, self.postmortem))
        async for rows in self._entries():
            yield _lines(timeline_row(entry) for _, entry in rows)
        yield _lines(
            ["", *evidence_heading(self.incident, self.evidence_kinds, self.evidence_count)]
        )
        async for items in self._items():
            yield _lines(line for item in items for line in evidence_item_markdown(item))
        yield _lines(["", *ledger_heading(self.ledger)])
        if self.ledger.total:
            async for items in self._ledger():
                yield _lines(ledger_row(item) for item in items)
            yield _lines([""])

    def json(self, *, indent: int | None, ensure_ascii: bool) -> AsyncIterator[str]:
        """`json.dumps(incident_document(...), indent=…, ensure_ascii=…)`, in pieces. The
        evidence's completeness comes after the evidence, from the items written."""
        head = incident_document(self.incident, self.head_entries, postmortem=self.postmortem)
        kinds: set[EvidenceKind] = set()

        def item_of(item: EvidenceItem) -> dict[str, Any]:
            kinds.add(item.kind)
            return evidence_item(item)

        def completeness(key: str) -> Any:
            if key.startswith("evidence_missing"):
                return evidence_completeness(self.incident, kinds)[key]
            return None

        streamed: dict[str, Batches] = {
            "timeline": lambda: self._as(self._entries(), lambda row: timeline_item(row[1])),
            "evidence": lambda: self._as(self._items(), item_of),
            "rollback": lambda: self._as(self._ledger(), rollback_item),
        }
        return json_pieces(
            head, streamed, indent=indent, ensure_ascii=ensure_ascii, after=completeness
        )

    @staticmethod
    async def _as(
        batches: AsyncIterator[Sequence[Any]], convert: Callable[[Any], dict[str, Any]]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        async for rows in batches:
            yield [convert(row) for row in rows]


async def open_record(
    number: int,
    *,
    incidents: IncidentRepo,
    timeline: TimelineRepo,
    evidence: EvidenceRepo,
    rollback: RollbackRepo,
    postmortems: PostmortemRepo,
    batch: int = BATCH,
) -> StreamedRecord | None:
    """None when there is no such incident. Read under `Database.snapshot()` (as `rein
    export` does) the document is one state of the record; without it (Rein's API, whose
    connection its writers share) rows committed meanwhile may appear, as they could between
    the separate reads before."""
    incident = await incidents.get(number)
    if incident is None:
        return None
    return StreamedRecord(
        incident=incident,
        head_entries=await timeline.of_kinds(number, HEAD_KINDS),
        postmortem=await postmortems.get(number),
        evidence_kinds=await evidence.kinds(number),
        evidence_count=await evidence.count(number),
        ledger=await rollback.counts(number),
        timeline=timeline,
        evidence=evidence,
        rollback=rollback,
        batch=batch,
    )
