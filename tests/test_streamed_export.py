"""The whole record written a batch of rows at a time (bot/services/streamed_export.py), for
`rein export` and `GET /v1/incidents/{ref}`: byte for byte what the record read whole into
memory gives (`incident_markdown`, `json.dumps(incident_document(...))`), whatever the batch
size; and the timeline's later pages read from the newest end are the same pages."""

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app import Runtime
from bot.domain.enums import IncidentStatus, Severity, TimelineKind
from bot.domain.models import NewIncident, TimelineEntry
from bot.export import incident_document
from bot.services.postmortem import load_record
from bot.services.streamed_export import BATCH, json_pieces, open_record
from storage.db import Database
from storage.evidence import EvidenceRepo
from storage.incidents import IncidentRepo
from storage.postmortems import PostmortemRepo
from storage.rollback import RollbackRepo
from storage.timeline import TimelineRepo
from tests.conftest import API_TOKEN
from tests.fakes.slack_api import FakeSlack
from tests.slack_requests import SlackSender
from tests.test_postmortem import PARTS_TEXT, export, open_form, post_evidence, values
from tests.test_rollback import COMMANDER, HOSTILE, command_reply, contained, press

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ODD = 'Wrong | `field` <b>é</b>\u2028 😀 \\ "quoted" ``` # not a heading'


async def rich_incident(
    slack: SlackSender, fake: FakeSlack, rein: Runtime, http: aiohttp.ClientSession, base: str
) -> None:
    """INC-1 through the real path: contained, a severity change, six evidence items (text
    and a url), a seven-item ledger marked restored and accepted, recovered, the postmortem
    completed; outside text with Markdown, HTML, JSON escapes and a line separator in it."""
    channel = await contained(slack, fake, rein)
    await command_reply(slack, fake, f"sev 1 {ODD}", channel)
    await post_evidence(http, base, {"kind": "prompt", "content": f"{HOSTILE}\n{ODD}\n" * 3})
    await post_evidence(
        http, base, {"kind": "external_urls", "url": "https://traces.example/run/4711?q=a*b_c"}
    )
    for i in range(7):
        await command_reply(slack, fake, f"rollback crm ACC-{i:04d} Retail -> {ODD}", channel)
    await command_reply(slack, fake, "rollback restored 1-5", channel)
    for i in range(4):
        await post_evidence(http, base, {"kind": "tool_calls", "content": f"call {i}: {ODD}"})
    await command_reply(slack, fake, "rollback accepted 6-7 the customer confirmed", channel)
    await press(slack, fake, rein, "Mark recovered", COMMANDER)
    view = await open_form(slack, fake, rein, COMMANDER)
    status, answer = await slack.submit(
        view, values({**PARTS_TEXT, "failed_controls": ODD}, complete=True), user=COMMANDER
    )
    assert status == 200 and not answer, answer


async def whole(pieces: AsyncIterator[str]) -> str:
    return "".join([piece async for piece in pieces])


async def expected(db: Database, number: int) -> tuple[str, dict[str, Any]]:
    """The document as it was made before: the whole record in memory."""
    record = await load_record(number, **repos(db))
    assert record is not None
    document = incident_document(
        record.incident,
        record.timeline,
        evidence=record.evidence,
        rollback=record.rollback,
        postmortem=record.postmortem,
    )
    return record.markdown(), document


def repos(db: Database) -> dict[str, Any]:
    """`load_record`'s repositories (`open_record` also takes a TimelineRepo)."""
    return {
        "incidents": IncidentRepo(db),
        "evidence": EvidenceRepo(db),
        "rollback": RollbackRepo(db),
        "postmortems": PostmortemRepo(db),
    }


async def test_streamed_documents_are_the_in_memory_ones_byte_for_byte(
    rein: Runtime,
    slack: SlackSender,
    fake_slack: FakeSlack,
    http: aiohttp.ClientSession,
    base_url: str,
    tmp_path: Path,
) -> None:
    """Markdown, the export's JSON and the API's JSON, at batch sizes that split every list
    (1, 2, 3) and one that does not; an incident with no evidence and no ledger too (the
    empty lists and the ledger without its table). Then the API over real HTTP and `rein
    export` as a real process give those same bytes."""
    await rich_incident(slack, fake_slack, rein, http, base_url)
    status, _ = await slack.command("declare sev4 agent:page-publisher Typos")
    assert status == 200
    db = rein.rein.db
    assert (await rein.rein.incidents.get(1)).status is IncidentStatus.POSTMORTEM  # type: ignore[union-attr]
    for number in (1, 2):
        markdown, document = await expected(db, number)
        if number == 1:
            assert len(document["timeline"]) > 20 and len(document["rollback"]) == 7
            assert len(document["evidence"]) == 6 and document["postmortem"] is not None
            assert "| 6 |" in markdown and "## Postmortem" in markdown
        for batch in (1, 2, 3, BATCH):
            record = await open_record(number, timeline=TimelineRepo(db), batch=batch, **repos(db))
            assert record is not None
            assert await whole(record.markdown()) == markdown, (number, batch)
            pretty = await whole(record.json(indent=2, ensure_ascii=False))
            assert pretty == json.dumps(document, indent=2, ensure_ascii=False), (number, batch)
            compact = await whole(record.json(indent=None, ensure_ascii=True))
            assert compact == json.dumps(document), (number, batch)

    markdown, document = await expected(db, 1)
    async with http.get(f"{base_url}/v1/incidents/INC-1", headers=AUTH) as response:
        assert response.status == 200
        assert response.content_type == "application/json" and response.charset == "utf-8"
        assert await response.read() == json.dumps(document).encode()
    assert await export(tmp_path) == markdown
    assert (
        await export(tmp_path, "json") == json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    )


async def test_no_such_incident(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "rein.db"))
    try:
        await db.migrate()
        assert await open_record(7, timeline=TimelineRepo(db), **repos(db)) is None
    finally:
        await db.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    document=st.dictionaries(st.text(max_size=6), json_values, max_size=5),
    lists=st.dictionaries(
        st.text(max_size=6),
        st.lists(
            st.lists(st.dictionaries(st.text(max_size=4), json_values, max_size=3), max_size=3),
            max_size=3,
        ),
        max_size=3,
    ),
    indent=st.sampled_from((None, 2, 4)),
    ensure_ascii=st.booleans(),
)
def test_json_pieces_is_json_dumps(
    document: dict[str, Any],
    lists: dict[str, list[list[dict[str, Any]]]],
    indent: int | None,
    ensure_ascii: bool,
) -> None:
    """Any object whose list values arrive in batches (some empty) is written as `json.dumps`
    writes the whole object."""
    whole_document = {
        **document,
        **{key: [i for b in batches for i in b] for key, batches in lists.items()},
    }

    def batches_of(key: str) -> Any:
        async def gen() -> AsyncIterator[Sequence[Any]]:
            for batch in lists[key]:
                await asyncio.sleep(0)
                yield batch

        return gen

    streamed = {key: batches_of(key) for key in lists}
    pieces = json_pieces(whole_document, streamed, indent=indent, ensure_ascii=ensure_ascii)
    out = asyncio.run(whole(pieces))
    assert out == json.dumps(whole_document, indent=indent, ensure_ascii=ensure_ascii)


async def test_later_pages_read_from_the_newest_end_are_the_same_pages(tmp_path: Path) -> None:
    """`TimelineRepo.page` with the extent read before: every page of a 57-entry timeline, at
    several sizes, is the one OFFSET from the oldest gives, also when entries were appended
    after the extent was read (a page shows the timeline as it was counted)."""
    db = await Database.open(str(tmp_path / "rein.db"))
    try:
        await db.migrate()
        incidents, timeline = IncidentRepo(db), TimelineRepo(db)
        at = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
        new = NewIncident(
            title="t", agent_id="crm-writer", severity=Severity.SEV3, declared_by="U0A"
        )

        def entry(i: int) -> TimelineEntry:
            return TimelineEntry(
                at=at + timedelta(seconds=i), actor="U0A", kind=TimelineKind.NOTE, text=f"n{i}"
            )

        await incidents.create(new, status=IncidentStatus.DECLARED, commander="U0A", entry=entry(0))
        await incidents.create(new, status=IncidentStatus.DECLARED, commander="U0A", entry=entry(0))
        for i in range(1, 57):  # interleaved with another incident's entries
            await incidents.append(1, [entry(i)])
            await incidents.append(2, [entry(i)])
        extent = await timeline.extent(1)
        assert extent[0] == 57
        await incidents.append(1, [entry(i) for i in range(57, 62)])
        everything = await incidents.timeline(1)
        for size in (1, 7, 20, 57, 100):
            for offset in range(0, 60):
                shown = await timeline.page(1, offset, size, extent)
                assert shown == everything[offset : min(offset + size, 57)], (size, offset)
                if offset + size <= 57:
                    assert shown == await timeline.page(1, offset, size)
    finally:
        await db.close()
