"""Slash-command parsing, incident channel names and incident references."""

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.domain.commands import (
    QUICK_DECLARE_FORM,
    CommandError,
    QuickDeclare,
    SeverityChange,
    parse_quick_declare,
    parse_severity_change,
    split_subcommand,
)
from bot.domain.enums import Severity
from bot.domain.models import format_ref, parse_ref
from bot.domain.naming import CHANNEL_NAME_MAX, channel_name, slugify

VALID_CHANNEL = re.compile(r"^[a-z0-9-]+$")

# --- the quick declare -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sev2 agent:crm-writer Wrong CRM field on 300 records",
            QuickDeclare(Severity.SEV2, "crm-writer", "Wrong CRM field on 300 records"),
        ),
        (
            "agent:crm-writer sev2 Wrong CRM field on 300 records",
            QuickDeclare(Severity.SEV2, "crm-writer", "Wrong CRM field on 300 records"),
        ),
        (
            "SEV-1 agent:page-publisher Published a false claim",
            QuickDeclare(Severity.SEV1, "page-publisher", "Published a false claim"),
        ),
        (
            "sev-4 agent:crm-writer Draft typo",
            QuickDeclare(Severity.SEV4, "crm-writer", "Draft typo"),
        ),
        (
            "  sev3   agent:crm-writer   Loop   burning   tokens  ",
            QuickDeclare(Severity.SEV3, "crm-writer", "Loop burning tokens"),
        ),
        (
            # once severity and agent are known, the rest is the title, words like sev included
            "sev3 agent:crm-writer Severe loop sev2 agent:x",
            QuickDeclare(Severity.SEV3, "crm-writer", "Severe loop sev2 agent:x"),
        ),
        (
            "sev2 agent:crm-writer <!channel> & <@U0CEO>",
            QuickDeclare(Severity.SEV2, "crm-writer", "<!channel> & <@U0CEO>"),
        ),
    ],
)
def test_quick_declare_forms(text: str, expected: QuickDeclare) -> None:
    assert parse_quick_declare(text) == expected


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("agent:crm-writer Wrong CRM field", "a severity"),
        ("sev2 Wrong CRM field", "an agent"),
        ("sev2 agent:crm-writer", "a title"),
        ("agent:crm-writer sev2", "a title"),
        ("sev2 agent: Wrong CRM field", "an agent"),
        ("", "a severity, an agent and a title"),
        ("   ", "a severity, an agent and a title"),
        ("Wrong CRM field", "a severity and an agent"),
        ("sev2", "an agent and a title"),
    ],
)
def test_quick_declare_missing_parts(text: str, missing: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_quick_declare(text)
    message = str(refused.value)
    assert f"missing {missing}." in message
    assert QUICK_DECLARE_FORM in message
    assert "/incident declare`" in message  # the modal is offered too


@pytest.mark.parametrize(
    "text",
    [
        "sev5 agent:crm-writer Wrong CRM field",
        "sev0 agent:crm-writer Wrong CRM field",
        "agent:crm-writer sev9 Wrong CRM field",
        "severe agent:crm-writer Wrong CRM field",
    ],
)
def test_quick_declare_bad_severity_shows_the_form(text: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_quick_declare(text)
    message = str(refused.value)
    assert "is not a severity" in message
    assert QUICK_DECLARE_FORM in message


def test_quick_declare_title_limit() -> None:
    title = "x" * 150
    assert parse_quick_declare(f"sev3 agent:crm-writer {title}").title == title
    with pytest.raises(CommandError) as refused:
        parse_quick_declare(f"sev3 agent:crm-writer {title}y")
    message = str(refused.value)
    assert "151 characters" in message
    assert "150" in message


def test_quick_declare_title_limit_counts_the_joined_title() -> None:
    words = " ".join(["word"] * 30)  # 149 characters
    assert len(parse_quick_declare(f"sev3 agent:a {words}").title) == 149


def test_command_error_is_a_value_error() -> None:
    assert issubclass(CommandError, ValueError)


# --- severity change -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 customers saw it", SeverityChange(Severity.SEV2, "customers saw it")),
        ("sev1 money moved", SeverityChange(Severity.SEV1, "money moved")),
        (
            "SEV-3   only internal after all  ",
            SeverityChange(Severity.SEV3, "only internal after all"),
        ),
        ("  4 a draft", SeverityChange(Severity.SEV4, "a draft")),
    ],
)
def test_severity_change(text: str, expected: SeverityChange) -> None:
    assert parse_severity_change(text) == expected


@pytest.mark.parametrize("text", ["5 worse", "0 fine", "sev5 worse", "high worse", "", "worse"])
def test_severity_change_out_of_range(text: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_severity_change(text)
    message = str(refused.value)
    assert "1 (most severe) to 4" in message
    assert "/incident sev <1-4> <reason>" in message


@pytest.mark.parametrize("text", ["2", "sev2", "  3   "])
def test_severity_change_needs_a_reason(text: str) -> None:
    with pytest.raises(CommandError, match="why") as refused:
        parse_severity_change(text)
    assert "/incident sev <1-4> <reason>" in str(refused.value)


def test_severity_change_reason_limit() -> None:
    assert parse_severity_change("2 " + "r" * 500).reason == "r" * 500
    with pytest.raises(CommandError, match="500"):
        parse_severity_change("2 " + "r" * 501)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("declare sev2 agent:a Title", ("declare", "sev2 agent:a Title")),
        ("DECLARE", ("declare", "")),
        ("  list  ", ("list", "")),
        ("sev  2   reason", ("sev", "2   reason")),
        ("", ("", "")),
    ],
)
def test_split_subcommand(text: str, expected: tuple[str, str]) -> None:
    assert split_subcommand(text) == expected


# --- channel names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "title", "attempt", "expected"),
    [
        (12, "Wrong CRM field on 300 records", 1, "inc-12-wrong-crm-field-on-300-records"),
        (12, "Wrong CRM field on 300 records", 2, "inc-12-wrong-crm-field-on-300-records-2"),
        (12, "Wrong CRM field on 300 records", 3, "inc-12-wrong-crm-field-on-300-records-3"),
        (1, "  --Hello,   World!!--  ", 1, "inc-1-hello-world"),
        (1, "Café résumé naïve", 1, "inc-1-cafe-resume-naive"),
        (1, "Ünïcödé Straße", 1, "inc-1-unicode-strae"),
        (1, "日本語のタイトル", 1, "inc-1"),
        (1, "日本語のタイトル", 2, "inc-1-2"),
        (1, "", 1, "inc-1"),
        (1, "!!!", 4, "inc-1-4"),
        (7, "<!channel> & <@U123>", 1, "inc-7-channel-u123"),
        (3, "UPPER_case.and/slashes", 1, "inc-3-upper-case-and-slashes"),
    ],
)
def test_channel_names(number: int, title: str, attempt: int, expected: str) -> None:
    assert channel_name(number, title, attempt) == expected


@pytest.mark.parametrize("attempt", [1, 2, 9, 10, 11])
def test_long_titles_are_cut_to_80(attempt: int) -> None:
    title = "The agent rewrote every customer record in the CRM with a wrong country code " * 3
    name = channel_name(123456, title, attempt)
    assert len(name) <= CHANNEL_NAME_MAX
    assert name.startswith("inc-123456-the-agent-rewrote")
    assert "--" not in name
    if attempt > 1:
        assert name.endswith(f"-{attempt}")
        assert not name.endswith(f"--{attempt}")


def test_cut_does_not_leave_a_dash_before_the_suffix() -> None:
    # Wherever the cut lands (inside a word, or right after one), the slug never ends with
    # "-" and never doubles a dash before the suffix.
    for length in range(55, 80):
        title = "a" * length + " bbbbbb"
        for attempt in range(1, 12):
            name = channel_name(1, title, attempt)
            assert len(name) <= CHANNEL_NAME_MAX
            assert "--" not in name and not name.endswith("-"), name
            assert name.startswith("inc-1-aaaa")


def test_every_attempt_gets_a_new_name() -> None:
    title = "a" * 72 + " 2 more words"
    names = [channel_name(1, title, attempt) for attempt in range(1, 11)]
    assert len(set(names)) == len(names), names


@given(number=st.integers(min_value=1, max_value=999_999_999), title=st.text(max_size=300))
@example(number=1, title="a" * 72 + " 2 more words")
def test_retries_never_repeat_a_name(number: int, title: str) -> None:
    names = [channel_name(number, title, attempt) for attempt in range(1, 11)]
    assert len(set(names)) == len(names), names


@given(
    number=st.integers(min_value=1, max_value=999_999_999),
    title=st.text(max_size=300),
    attempt=st.integers(min_value=1, max_value=99),
)
@example(number=999_999_999, title="x" * 300, attempt=99)
@example(number=1, title="\u0000\u202e-", attempt=1)
@example(number=5, title="ÄÖÜ ß ﬁ ① Ⅻ", attempt=2)
def test_channel_name_property(number: int, title: str, attempt: int) -> None:
    name = channel_name(number, title, attempt)
    assert len(name) <= CHANNEL_NAME_MAX
    assert VALID_CHANNEL.match(name), name
    assert name == name.lower()
    assert "--" not in name
    assert not name.endswith("-")
    prefix = f"inc-{number}"
    assert name == prefix or name.startswith(prefix + "-")
    rest = name.removeprefix(prefix)
    if attempt > 1:
        assert rest.endswith(f"-{attempt}")
        rest = rest.removesuffix(f"-{attempt}")
    # What is left is the start of the title's slug, or nothing when the title has no slug.
    assert rest == "" or (rest.startswith("-") and slugify(title).startswith(rest[1:]))
    assert (rest == "") == (slugify(title) == "")


@given(st.text(max_size=200))
def test_slugify_only_keeps_allowed_characters(title: str) -> None:
    slug = slugify(title)
    assert slug == "" or VALID_CHANNEL.match(slug)
    assert not slug.startswith("-") and not slug.endswith("-")
    assert "--" not in slug


# --- incident references ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "number"),
    [
        ("INC-12", 12),
        ("inc-12", 12),
        ("Inc-12", 12),
        ("12", 12),
        (" INC-12 ", 12),
        ("INC-1", 1),
        ("INC-007", 7),
        ("999999999", 999_999_999),
    ],
)
def test_parse_ref(ref: str, number: int) -> None:
    assert parse_ref(ref) == number


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "   ",
        "INC-",
        "INC",
        "INC-0",
        "0",
        "-1",
        "INC--12",
        "INC 12",
        "INC-12a",
        "12.5",
        "abc",
        "INC-1234567890",
        "1234567890",
        "#12",
        "INC-12; DROP TABLE incidents",
    ],
)
def test_parse_ref_refuses(ref: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_ref(ref)
    assert "INC-12" in str(refused.value)  # shows the right form


@given(st.integers(min_value=1, max_value=999_999_999))
def test_format_and_parse_ref_round_trip(number: int) -> None:
    ref = format_ref(number)
    assert ref == f"INC-{number}"
    assert parse_ref(ref) == parse_ref(ref.lower()) == parse_ref(str(number)) == number
