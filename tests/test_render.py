"""Block Kit rendering: escaping, cutting, and Slack's limits under hostile input.

The render functions build through `slack_sdk.models`, which raise on a limit it knows; the
explicit length checks below add the limits it does not check and make the contract visible.
"""

import json
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.domain.enums import IncidentStatus, Severity
from bot.domain.models import Incident
from bot.domain.policy import Agent
from bot.domain.severity import Impact
from bot.render import agents as agent_render
from bot.render import help as help_text
from bot.render import incident as render
from bot.render import replies, views
from bot.render import text as t

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
HOSTILE_TITLE = ("<!channel> <@U123> <http://evil|bank> & " + "<>&" * 50)[:150]
HOSTILE_SUMMARY = "&" * 3000
PINGS = ("<!channel>", "<!here>", "<!everyone>", "<@U123>", "<http://evil")
ENTITY_OK = re.compile(r"&(?!amp;|lt;|gt;)")  # an '&' that does not start an entity

# Playbook, "Required response" column, per severity.
REQUIRED_RESPONSE = {
    Severity.SEV4: ["Pause run", "Fix prompt or input", "Log learning"],
    Severity.SEV3: ["Contain workflow", "Restore record", "Notify owner", "Add guardrail"],
    Severity.SEV2: ["Disable agent", "Rollback", "Communicate", "Postmortem within 48 hours"],
    Severity.SEV1: [
        "Immediate human incident command",
        "Executive/legal/security involvement",
        "No restart without approval",
    ],
}


def make_incident(
    number: int = 12,
    *,
    title: str = "Wrong CRM field on 300 records",
    summary: str = "",
    severity: Severity = Severity.SEV2,
    status: IncidentStatus = IncidentStatus.DECLARED,
    impact: Impact | None = None,
    channel_id: str | None = "C0INC12",
    commander: str = "U0ALICE",
    declared_at: datetime | None = None,
) -> Incident:
    return Incident(
        number=number,
        title=title,
        summary=summary,
        agent_id="crm-writer",
        severity=severity,
        status=status,
        commander=commander,
        declared_by=commander,
        impact=impact or Impact(),
        channel_id=channel_id,
        declared_at=declared_at or NOW - timedelta(hours=2),
        created_at=NOW - timedelta(hours=2),
        updated_at=NOW,
    )


def make_agent(
    agent_id: str = "crm-writer", name: str = "CRM enrichment agent", **extra: Any
) -> Agent:
    return Agent(id=agent_id, name=name, owner="U0OWNER", **extra)


HOSTILE_AGENT = make_agent(name=("<!here> & <@U123> " * 10)[:100], writes_to=["<crm>&"])


# --- walking rendered Block Kit ---------------------------------------------------------------


def text_objects(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
            yield node
        for value in node.values():
            yield from text_objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from text_objects(item)


def mrkdwn_texts(blocks: Any) -> list[str]:
    return [o["text"] for o in text_objects(blocks) if o["type"] == "mrkdwn"]


def all_texts(blocks: Any) -> str:
    return "\n".join(o["text"] for o in text_objects(blocks))


def assert_message_within_limits(blocks: list[dict]) -> None:
    """Slack's Block Kit limits for messages (api.slack.com/reference/block-kit)."""
    assert 0 < len(blocks) <= 50
    for block in blocks:
        assert len(block.get("block_id", "")) <= 255
        kind = block["type"]
        if kind == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
            fields = block.get("fields", [])
            assert len(fields) <= 10
            assert all(len(f["text"]) <= 2000 for f in fields)
        elif kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert len(block["text"]["text"]) <= 150
        elif kind == "context":
            assert len(block["elements"]) <= 10
            assert all(len(e["text"]) <= 3000 for e in block["elements"])
        elif kind == "actions":
            assert len(block["elements"]) <= 25
            for element in block["elements"]:
                assert len(element["action_id"]) <= 255
                if element["type"] == "checkboxes":
                    assert len(element["options"]) <= 10
                    assert all(len(o["text"]["text"]) <= 75 for o in element["options"])
                    continue
                assert element["type"] == "button"
                assert len(element["text"]["text"]) <= 75
                assert len(element.get("value", "")) <= 2000
        else:
            assert kind in ("divider", "input"), kind


def assert_no_pings(blocks: Any) -> None:
    """Outside text shows as typed: no broadcast, no mention of U123, no disguised link, and
    every '&' in mrkdwn starts an entity."""
    for text in mrkdwn_texts(blocks):
        for ping in PINGS:
            assert ping not in text, f"{ping} reached Slack in {text[:200]!r}"
        assert not ENTITY_OK.search(text), f"bare & in {text[:200]!r}"
        assert not re.search(r"(?<!\u2060)@(channel|here|everyone)\b", text)


def assert_cut_cleanly(text: str) -> None:
    """A cut text ends with '…' and never with half an entity."""
    assert text.endswith("…")
    assert not re.search(r"&[a-z]{0,3}…$", text), text[-20:]


# --- escape -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<!here|here>", "&lt;!here|here&gt;"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("<#C123|general>", "&lt;#C123|general&gt;"),
        ("<http://evil|bank>", "&lt;http://evil|bank&gt;"),
        ("fish & chips", "fish &amp; chips"),
        ("&amp;", "&amp;amp;"),  # outside text is text: an entity typed by a user stays visible
        ("a < b > c", "a &lt; b &gt; c"),
        ("plain text", "plain text"),
        ("line one\nline two\ttab", "line one\nline two\ttab"),
    ],
)
def test_escape(raw: str, escaped: str) -> None:
    assert t.escape(raw) == escaped


@pytest.mark.parametrize(
    ("sent", "typed"),
    [
        ("A &amp; B &lt;C&gt;", "A & B <C>"),
        ("&amp;lt;", "&lt;"),  # a typed entity stays an entity: `&amp;` is decoded last
        ("&amp;amp;", "&amp;"),
        ("&quot; &#60; &nbsp;", "&quot; &#60; &nbsp;"),  # Slack encodes only & < >
    ],
)
def test_unescape(sent: str, typed: str) -> None:
    assert t.unescape(sent) == typed


@given(st.text())
def test_unescape_inverts_slacks_encoding(typed: str) -> None:
    """Whatever was typed, Slack's encoding of `&`, `<` and `>` decodes back to it."""
    sent = typed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert t.unescape(sent) == typed


@pytest.mark.parametrize("word", ["channel", "here", "everyone", "Channel", "HERE"])
def test_escape_neutralises_bare_broadcasts(word: str) -> None:
    escaped = t.escape(f"hey @{word} look")
    assert f"@{word}" not in escaped
    assert escaped == f"hey @\u2060{word} look"  # still reads the same


def test_escape_leaves_other_at_words_alone() -> None:
    assert t.escape("mail ops@example.com @channelled") == "mail ops@example.com @channelled"


@pytest.mark.parametrize(
    "char",
    ["\x00", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"]
    + [chr(c) for c in range(0x202A, 0x202F)]  # LRE RLE PDF LRO RLO
    + [chr(c) for c in range(0x2066, 0x206A)],  # LRI RLI FSI PDI
)
def test_escape_drops_control_and_bidi_override_characters(char: str) -> None:
    assert t.escape(f"pay{char}ment") == "payment"
    assert t.clean(f"pay{char}ment") == "payment"


def test_escape_drops_every_control_character() -> None:
    controls = [
        chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"
    ]  # C0, DEL and C1
    kept = [c for c in controls if c in t.escape("".join(controls))]
    assert kept in ([], ["\t", "\n"], ["\t", "\n", "\r"]), [hex(ord(c)) for c in kept]


@given(st.text(max_size=300))
@example("<!channel>&<@U1>@here\u202e")
def test_escape_property(raw: str) -> None:
    escaped = t.escape(raw)
    assert "<" not in escaped and ">" not in escaped
    assert not ENTITY_OK.search(escaped)
    assert not re.search(r"(?<!\u2060)@(channel|here|everyone)\b", escaped, re.IGNORECASE)
    assert not set(escaped) & {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\x00"}


# --- cut --------------------------------------------------------------------------------------


def test_cut_keeps_short_text() -> None:
    assert t.cut("abc", 3) == "abc"
    assert t.cut("", 3) == ""


def test_cut_ends_with_a_visible_ellipsis() -> None:
    assert t.cut("abcdef", 4) == "abc…"
    assert len(t.cut("x" * 5000, 3000)) == 3000


@pytest.mark.parametrize("limit", range(2, 30))
def test_cut_never_leaves_half_an_entity(limit: int) -> None:
    escaped = t.escape("&<>" * 20)
    cut = t.cut(escaped, limit)
    assert len(cut) <= limit
    assert_cut_cleanly(cut)
    assert not ENTITY_OK.search(cut.removesuffix("…"))
    assert escaped.startswith(cut.removesuffix("…"))


@given(raw=st.text(min_size=1, max_size=400), limit=st.integers(min_value=2, max_value=400))
@example(raw="&" * 20, limit=12)  # "&amp;&amp;&am" would be cut as "&amp;&amp;…"
def test_cut_property(raw: str, limit: int) -> None:
    escaped = t.escape(raw)
    cut = t.cut(escaped, limit)
    assert len(cut) <= limit
    if len(escaped) <= limit:
        assert cut == escaped
    else:
        assert_cut_cleanly(cut)
        head = cut.removesuffix("…")
        assert escaped.startswith(head)
        assert not ENTITY_OK.search(head)


def test_mrkdwn_escapes_then_cuts() -> None:
    shown = t.mrkdwn("<!channel>" * 100, 50)
    assert len(shown) <= 50 and "<!channel>" not in shown
    assert_cut_cleanly(shown)


def test_plain_collapses_whitespace_and_drops_controls() -> None:
    assert t.plain("  a\n\tb\u202e  c ", 10) == "a b c"
    assert t.plain("x" * 200, 150) == "x" * 149 + "…"


# --- small formatters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "shown"),
    [
        ("U0ALICE", "<@U0ALICE>"),
        ("W0ENTERPRISE", "<@W0ENTERPRISE>"),
        ("api:dashboard", "api:dashboard"),
        ("<!channel>", "&lt;!channel&gt;"),
        ("U0ALICE> <!here", "U0ALICE&gt; &lt;!here"),
    ],
)
def test_user(user_id: str, shown: str) -> None:
    assert t.user(user_id) == shown


@pytest.mark.parametrize(
    ("channel_id", "shown"),
    [
        ("C0INC12", "<#C0INC12>"),
        ("G0PRIV", "<#G0PRIV>"),
        (None, "no channel"),
        ("<!here>", "no channel"),
    ],
)
def test_channel(channel_id: str | None, shown: str) -> None:
    assert t.channel(channel_id) == shown


def test_date_is_shown_in_the_readers_time_zone_with_a_utc_fallback() -> None:
    at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    assert (
        t.date(at)
        == f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|2026-11-24 09:30 UTC>"
    )


@pytest.mark.parametrize(
    ("elapsed", "shown"),
    [
        (timedelta(seconds=-30), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=2, minutes=3), "2h 3m"),
        (timedelta(hours=47, minutes=59), "47h 59m"),
        (timedelta(days=3, hours=4, minutes=5), "3d 4h"),
    ],
)
def test_age(elapsed: timedelta, shown: str) -> None:
    assert t.age(NOW - elapsed, NOW) == shown


def test_to_dicts_refuses_more_blocks_than_slack_takes() -> None:
    from slack_sdk.models.blocks import DividerBlock

    assert len(t.to_dicts([DividerBlock()] * 50)) == 50
    with pytest.raises(ValueError, match="51 blocks"):
        t.to_dicts([DividerBlock()] * 51)


# --- the incident card ------------------------------------------------------------------------


@pytest.mark.parametrize("severity", list(Severity))
@pytest.mark.parametrize(
    "status",
    [
        IncidentStatus.DECLARED,
        IncidentStatus.CONTAINED,
        IncidentStatus.RECOVERED,
        IncidentStatus.POSTMORTEM,
    ],
)
def test_card_on_hostile_input(severity: Severity, status: IncidentStatus) -> None:
    incident = make_incident(
        title=HOSTILE_TITLE,
        summary=HOSTILE_SUMMARY,
        severity=severity,
        status=status,
        impact=Impact(
            external_exposure=True,
            irreversible=True,
            sensitive_data=True,
            money=True,
            legal_regulatory=True,
            customer_visible=True,
            records_touched=1_000_000_000,
        ),
    )
    blocks = render.card_blocks(incident, HOSTILE_AGENT)
    assert_message_within_limits(blocks)
    assert_no_pings(blocks)
    header = blocks[0]
    assert header["type"] == "header"
    assert header["text"]["text"].startswith(f"INC-12 · {severity.label} · <!channel>")
    assert_cut_cleanly(header["text"]["text"])
    summary = next(text for text in mrkdwn_texts(blocks) if text.startswith("*What happened*"))
    assert 2990 <= len(summary) <= 3000  # cut at the limit, less a dropped half entity
    assert_cut_cleanly(summary)


def test_card_shows_the_facts() -> None:
    blocks = render.card_blocks(
        make_incident(impact=Impact(customer_visible=True, records_touched=300)), make_agent()
    )
    shown = all_texts(blocks)
    for fact in (
        "INC-12",
        "SEV-2",
        "declared",
        "Wrong CRM field on 300 records",
        "CRM enrichment agent (`crm-writer`)",
        "<@U0ALICE>",
        "<#C0INC12>",
        "<!date^",
        "Customer-visible",
        "300 records touched",
        "Rein suggested SEV-2",
    ):
        assert fact in shown, fact


def test_card_for_an_agent_no_longer_in_the_policy() -> None:
    shown = all_texts(render.card_blocks(make_incident(), None))
    assert "no longer in the policy file" in shown
    assert "`crm-writer`" in shown


def test_card_without_summary_or_impact_has_no_empty_sections() -> None:
    blocks = render.card_blocks(make_incident(), make_agent())
    shown = all_texts(blocks)
    assert "What happened" not in shown and "Impact" not in shown


@pytest.mark.parametrize("severity", list(Severity))
def test_card_shows_the_required_response_checklist_of_its_severity(severity: Severity) -> None:
    shown = all_texts(render.card_blocks(make_incident(severity=severity), make_agent()))
    assert f"Required response for {severity.label}" in shown
    for item in REQUIRED_RESPONSE[severity]:
        assert f"☐ {item}" in shown
    for other, items in REQUIRED_RESPONSE.items():
        if other is not severity:
            for item in items:
                assert f"☐ {item}" not in shown, f"{item} on a {severity.label} card"


def _buttons(blocks: list[dict]) -> dict[str, dict]:
    return {
        element["text"]["text"]: element
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element["type"] == "button"
    }


@pytest.mark.parametrize("severity", list(Severity))
@pytest.mark.parametrize("status", list(IncidentStatus))
def test_card_buttons_fit_the_status(severity: Severity, status: IncidentStatus) -> None:
    incident = make_incident(number=31, severity=severity, status=status)
    buttons = _buttons(render.card_blocks(incident, make_agent()))
    if status in (IncidentStatus.CLOSED, IncidentStatus.DISMISSED):
        assert buttons == {}
    if status in (
        IncidentStatus.DECLARED,
        IncidentStatus.CONTAINED,
        IncidentStatus.RECOVERED,
        IncidentStatus.POSTMORTEM,
    ):
        assert "Change severity" in buttons
        assert buttons["Change severity"]["action_id"] == render.CHANGE_SEVERITY
        assert buttons["Change severity"]["value"] == "31"
    assert ("Approve containment" in buttons) is (status is IncidentStatus.DECLARED)
    closable = status is IncidentStatus.DECLARED and severity is Severity.SEV4
    assert ("Close incident" in buttons) is closable
    if closable:
        assert buttons["Close incident"]["action_id"] == render.CLOSE_INCIDENT
        assert buttons["Close incident"]["value"] == "31"


# --- digest, headline, topic ------------------------------------------------------------------


def test_digest_on_hostile_input() -> None:
    blocks = render.digest_blocks(
        make_incident(title=HOSTILE_TITLE, summary=HOSTILE_SUMMARY, channel_id=None),
        HOSTILE_AGENT,
    )
    assert_message_within_limits(blocks)
    assert_no_pings(blocks)
    shown = all_texts(blocks)
    assert "&lt;!channel&gt;" in shown and "&lt;@U123&gt;" in shown
    assert "no channel" in shown


def test_digest_shows_the_facts() -> None:
    shown = all_texts(render.digest_blocks(make_incident(), make_agent()))
    for fact in ("*INC-12*", "SEV-2", "*declared*", "Wrong CRM field", "<@U0ALICE>", "<#C0INC12>"):
        assert fact in shown, fact
    assert shown.count("<!date^") == 2  # declared and updated


def test_headline_is_within_the_fallback_limit() -> None:
    line = render.headline(make_incident(title="x" * 150))
    assert line.startswith("INC-12 · SEV-2 · declared · ")
    assert len(line) <= t.FALLBACK_TEXT_MAX
    assert "\n" not in render.headline(make_incident(title="a\nb"))


def test_headline_cannot_ping() -> None:
    line = render.headline(make_incident(title="<!channel> <@U123> <http://evil|bank> & more"))
    for ping in PINGS:
        assert ping not in line


def test_topic_is_escaped_and_cut() -> None:
    topic = render.topic(make_incident(title="&" * 150, commander="U0ALICE"))
    assert len(topic) <= t.TOPIC_MAX
    assert topic.startswith("SEV-2 · declared · commander <@U0ALICE> · &amp;")
    assert_cut_cleanly(topic)
    hostile = render.topic(make_incident(title=HOSTILE_TITLE))
    assert all(ping not in hostile for ping in PINGS)


# --- /incident list ---------------------------------------------------------------------------


def test_list_of_nothing() -> None:
    blocks = render.list_blocks([], NOW)
    assert_message_within_limits(blocks)
    assert "No open incidents" in all_texts(blocks)


def test_list_shows_severity_status_age_and_channel() -> None:
    incidents = [
        make_incident(3, severity=Severity.SEV1, status=IncidentStatus.CONTAINED),
        make_incident(2, severity=Severity.SEV4, channel_id=None),
    ]
    blocks = render.list_blocks(incidents, NOW)
    assert_message_within_limits(blocks)
    shown = all_texts(blocks)
    assert "Open incidents: 2" in shown
    lines = [line for line in shown.splitlines() if "INC-" in line]
    assert len(lines) == 2
    assert "*INC-3* SEV-1 · contained" in lines[0] and "<#C0INC12>" in lines[0]
    assert "2h 0m old" in lines[0]
    assert "*INC-2* SEV-4 · declared" in lines[1] and "no channel" in lines[1]
    assert "more" not in shown


def test_list_of_500_hostile_incidents_stays_within_limits() -> None:
    incidents = [
        make_incident(n, title=HOSTILE_TITLE, severity=list(Severity)[n % 4])
        for n in range(500, 0, -1)
    ]
    blocks = render.list_blocks(incidents, NOW)
    assert_message_within_limits(blocks)
    assert_no_pings(blocks)
    assert "Open incidents: 500" in all_texts(blocks[:1])
    lines = [line for text in mrkdwn_texts(blocks[1:-1]) for line in text.splitlines()]
    assert lines[0].startswith(":") and "*INC-500*" in lines[0]  # newest first, as given
    assert all("INC-" in line for line in lines)
    more = blocks[-1]
    assert more["type"] == "context"
    assert more["elements"][0]["text"].startswith(f"…and {500 - len(lines)} more")
    assert 0 < len(lines) < 500


def test_list_counts_shown_incidents_not_lines() -> None:
    incidents = [make_incident(n, title="first line\nsecond line") for n in range(500, 0, -1)]
    blocks = render.list_blocks(incidents, NOW)
    shown = sum(text.count("*INC-") for text in mrkdwn_texts(blocks))
    assert shown < 500
    assert blocks[-1]["type"] == "context"
    assert blocks[-1]["elements"][0]["text"].startswith(f"…and {500 - shown} more")


# --- modals -----------------------------------------------------------------------------------


def assert_view_within_limits(view: dict) -> None:
    assert view["type"] == "modal"
    assert len(view["blocks"]) <= 100
    for key in ("title", "submit", "close"):
        assert len(view[key]["text"]) <= 24
    assert len(view.get("private_metadata", "")) <= 3000
    assert len(view["callback_id"]) <= 255
    for block in view["blocks"]:
        if block["type"] == "input":
            assert len(block["label"]["text"]) <= 2000
            element = block["element"]
            for option in element.get("options", []):
                assert len(option["text"]["text"]) <= 75
                assert len(option["value"]) <= 150
            assert len(element.get("options", [])) <= 100
            if "placeholder" in element:
                assert len(element["placeholder"]["text"]) <= 150
            if element["type"] == "plain_text_input" and "initial_value" in element:
                assert len(element["initial_value"]) <= element.get("max_length", 3000)
        elif block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000


def _input(view: dict, block_id: str) -> dict:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def test_declare_modal_labels_are_the_products() -> None:
    view = views.declare_modal([make_agent()], origin_channel="C0GENERAL")
    assert_view_within_limits(view)
    labels = [b["label"]["text"] for b in view["blocks"] if b["type"] == "input"]
    for label in ("Title", "Agent", "What happened", "Impact", "Records touched", "Severity"):
        assert label in labels
    assert view["callback_id"] == views.DECLARE_VIEW
    assert json.loads(view["private_metadata"]) == {"channel": "C0GENERAL"}
    # nothing ticked: Rein suggests SEV-4 and preselects it
    assert "Rein suggests SEV-4" in all_texts(view)
    assert _input(view, "severity")["element"]["initial_option"]["value"] == "sev4"


def test_declare_modal_on_hostile_input() -> None:
    agents = [make_agent(f"agent-{n:03d}", name=("<!here> & " * 20)[:100]) for n in range(150)]
    view = views.declare_modal(
        agents,
        origin_channel=None,
        impact=Impact(
            external_exposure=True, sensitive_data=True, money=True, records_touched=10**9
        ),
        title=HOSTILE_TITLE,
        agent_id="agent-007",
        summary=HOSTILE_SUMMARY,
    )
    assert_view_within_limits(view)
    assert_no_pings(view["blocks"])
    assert _input(view, "title")["element"]["initial_value"] == HOSTILE_TITLE
    assert _input(view, "summary")["element"]["initial_value"] == HOSTILE_SUMMARY
    agent = _input(view, "agent")["element"]
    assert len(agent["options"]) == 100
    assert agent["initial_option"]["value"] == "agent-007"
    assert _input(view, "severity")["element"]["initial_option"]["value"] == "sev1"
    ticked = {o["value"] for o in _input(view, "impact")["element"]["initial_options"]}
    assert ticked == {"external_exposure", "sensitive_data", "money"}
    assert _input(view, "records")["element"]["initial_value"] == "1000000000"
    assert json.loads(view["private_metadata"]) == {"channel": None}


def test_declare_modal_keeps_a_chosen_severity_over_the_suggestion() -> None:
    view = views.declare_modal(
        [make_agent()], origin_channel="C1", impact=Impact(money=True), chosen=Severity.SEV3
    )
    assert "Rein suggests SEV-1" in all_texts(view)
    assert _input(view, "severity")["element"]["initial_option"]["value"] == "sev3"


def test_declare_modal_ignores_an_unknown_initial_agent() -> None:
    view = views.declare_modal([make_agent()], origin_channel="C1", agent_id="ghost")
    assert "initial_option" not in _input(view, "agent")["element"]


@pytest.mark.parametrize("build", [views.severity_modal, views.close_modal])
def test_incident_modals_on_hostile_input(build: Any) -> None:
    view = build(make_incident(number=77, title=HOSTILE_TITLE))
    assert_view_within_limits(view)
    assert_no_pings(view["blocks"])
    assert view["private_metadata"] == "77"
    assert "INC-77" in all_texts(view)


def test_severity_modal_offers_every_severity_and_asks_why() -> None:
    view = views.severity_modal(make_incident())
    assert view["callback_id"] == views.SEVERITY_VIEW
    options = _input(view, "severity")["element"]["options"]
    assert [o["value"] for o in options] == ["sev1", "sev2", "sev3", "sev4"]
    assert all(o["text"]["text"].startswith(f"SEV-{i}") for i, o in enumerate(options, 1))
    assert _input(view, "reason")["element"]["max_length"] == 500


def test_close_modal_asks_for_a_learning_note() -> None:
    view = views.close_modal(make_incident(severity=Severity.SEV4))
    assert view["callback_id"] == views.CLOSE_VIEW
    assert _input(view, "learning")["label"]["text"] == "Learning note"


# --- agents, replies, help --------------------------------------------------------------------


def test_agent_list_of_many_hostile_agents() -> None:
    agents = [make_agent(f"agent-{n:03d}", name=HOSTILE_AGENT.name) for n in range(60)]
    blocks = agent_render.agent_list_blocks(agents, {})
    assert_message_within_limits(blocks)
    assert_no_pings(blocks)
    assert "Agents: 60" in all_texts(blocks[:1])
    assert blocks[-1]["elements"][0]["text"] == f"…and {60 - (len(blocks) - 2)} more"


def test_agent_status_of_a_hostile_agent() -> None:
    blocks = agent_render.agent_status_blocks(HOSTILE_AGENT, None)
    assert_message_within_limits(blocks)
    assert_no_pings(blocks)
    shown = all_texts(blocks)
    assert "mode unknown" in shown
    assert "none (contained through the autonomy API only)" in shown


def test_report_lists_what_slack_would_not_do() -> None:
    assert replies.report("Declared INC-1.", []) == "Declared INC-1."
    text = replies.report("Declared INC-1.", ["could not pin the card"] * 500)
    assert text.startswith("Declared INC-1.\nSlack would not do everything:\n• could not pin")
    assert len(text) <= t.FALLBACK_TEXT_MAX
    assert text.endswith("…")


def test_confirm_duplicate_on_hostile_title() -> None:
    blocks = replies.confirm_duplicate_blocks(make_incident(title=HOSTILE_TITLE), "{}")
    assert_message_within_limits(blocks)
    assert_no_pings(blocks)
    assert set(_buttons(blocks)) == {"Declare another", "Cancel"}


def test_incident_help_lists_every_subcommand() -> None:
    for sub in ("declare", "list", "status", "sev", "close", "help"):
        assert f"`/incident {sub}" in help_text.INCIDENT_HELP
    assert "`/agent list`" in help_text.AGENT_HELP and "`/agent status" in help_text.AGENT_HELP


def test_help_shows_its_usage_forms_literally() -> None:
    """Placeholders such as `<reason>` would be read by Slack as links: they are escaped."""
    for help_ in (help_text.INCIDENT_HELP, help_text.AGENT_HELP):
        assert "<" not in help_ and ">" not in help_ and ENTITY_OK.search(help_) is None
        assert "&lt;reason&gt;" in help_
    assert "`/incident sev &lt;1-4&gt; &lt;reason&gt;`" in help_text.INCIDENT_HELP
    assert "[before -&gt; after]" in help_text.INCIDENT_HELP
