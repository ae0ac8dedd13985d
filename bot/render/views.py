"""Modals: declare, change severity, close. Block and action ids are the handlers' contract."""

import json
from collections.abc import Sequence

from slack_sdk.models.blocks import (
    CheckboxesElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.domain.enums import Severity
from bot.domain.models import REASON_MAX, SUMMARY_MAX, TITLE_MAX, Incident
from bot.domain.policy import Agent
from bot.domain.severity import IMPACT_LABELS, SEVERITY_TABLE, Impact, suggest_severity
from bot.render import text as t

DECLARE_VIEW = "declare_incident"
SEVERITY_VIEW = "change_severity"
CLOSE_VIEW = "close_incident"
IMPACT_CHANGED = "declare_impact_changed"
VALUE = "value"  # the action id of every input's element
MODAL_BLOCKS_MAX = 100
SELECT_OPTIONS_MAX = 100
LEARNING_MAX = 3000


def _severity_option(severity: Severity) -> Option:
    return Option(
        value=severity.value,
        text=t.plain(f"{severity.label}: {SEVERITY_TABLE[severity].example}", 75),
    )


def _severity_select(initial: Severity | None) -> StaticSelectElement:
    return StaticSelectElement(
        action_id=VALUE,
        placeholder="Choose a severity",
        options=[_severity_option(s) for s in Severity],
        initial_option=_severity_option(initial) if initial else None,
    )


def _text_input(
    block_id: str,
    label: str,
    *,
    max_length: int,
    multiline: bool = False,
    optional: bool = False,
    initial: str | None = None,
    placeholder: str | None = None,
) -> InputBlock:
    return InputBlock(
        block_id=block_id,
        label=label,
        optional=optional,
        element=PlainTextInputElement(
            action_id=VALUE,
            multiline=multiline,
            max_length=max_length,
            initial_value=initial or None,
            placeholder=placeholder,
        ),
    )


def declare_modal(
    agents: Sequence[Agent],
    *,
    origin_channel: str | None,
    impact: Impact | None = None,
    chosen: Severity | None = None,
    title: str | None = None,
    agent_id: str | None = None,
    summary: str | None = None,
) -> dict:
    """Re-rendered with the current values whenever an impact factor changes, so the
    suggestion stays next to the choice."""
    impact = impact or Impact()
    suggestion = suggest_severity(impact)
    agent_options = [
        Option(value=a.id, text=t.plain(f"{a.name} ({a.id})", 75))
        for a in agents[:SELECT_OPTIONS_MAX]
    ]
    initial_agent = next((o for o in agent_options if o.value == agent_id), None)
    impact_options = [Option(value=k, text=v) for k, v in IMPACT_LABELS.items()]
    ticked = [o for o in impact_options if getattr(impact, o.value)]
    blocks = [
        _text_input("title", "Title", max_length=TITLE_MAX, initial=title),
        InputBlock(
            block_id="agent",
            label="Agent",
            element=StaticSelectElement(
                action_id=VALUE,
                placeholder="Which agent misbehaved?",
                options=agent_options,
                initial_option=initial_agent,
            ),
        ),
        _text_input(
            "summary",
            "What happened",
            max_length=SUMMARY_MAX,
            multiline=True,
            initial=summary,
            placeholder="What the agent did, and what it touched",
        ),
        InputBlock(
            block_id="impact",
            label="Impact",
            optional=True,
            dispatch_action=True,
            element=CheckboxesElement(
                action_id=IMPACT_CHANGED, options=impact_options, initial_options=ticked or None
            ),
        ),
        InputBlock(
            block_id="records",
            label="Records touched",
            optional=True,
            dispatch_action=True,
            element=NumberInputElement(
                action_id=IMPACT_CHANGED,
                is_decimal_allowed=False,
                min_value="0",
                initial_value=str(impact.records_touched) if impact.records_touched else None,
            ),
        ),
        SectionBlock(
            block_id="suggestion",
            text=MarkdownTextObject(
                text=f"*Rein suggests {suggestion.severity.label}*: {t.escape(suggestion.reason)}"
            ),
        ),
        InputBlock(
            block_id="severity",
            label="Severity",
            element=_severity_select(chosen or suggestion.severity),
        ),
        _text_input(
            "override",
            "Reason for a different severity",
            max_length=REASON_MAX,
            optional=True,
            placeholder="Needed only when you choose another severity than Rein suggests",
        ),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text="Severity follows business consequence, not how wrong the model was."
                )
            ]
        ),
    ]
    return View(
        type="modal",
        callback_id=DECLARE_VIEW,
        title="Declare incident",
        submit="Declare",
        close="Cancel",
        private_metadata=json.dumps({"channel": origin_channel}),
        blocks=blocks,
    ).to_dict()


def severity_modal(incident: Incident) -> dict:
    return View(
        type="modal",
        callback_id=SEVERITY_VIEW,
        title="Change severity",
        submit="Change",
        close="Cancel",
        private_metadata=str(incident.number),
        blocks=[
            SectionBlock(
                text=t.mrkdwn(
                    f"{incident.ref} is {incident.severity.label}: {incident.title}", 3000
                )
            ),
            InputBlock(block_id="severity", label="Severity", element=_severity_select(None)),
            _text_input("reason", "Why", max_length=REASON_MAX, multiline=True),
        ],
    ).to_dict()


def close_modal(incident: Incident) -> dict:
    return View(
        type="modal",
        callback_id=CLOSE_VIEW,
        title="Close incident",
        submit="Close",
        close="Cancel",
        private_metadata=str(incident.number),
        blocks=[
            SectionBlock(text=t.mrkdwn(f"{incident.ref}: {incident.title}", 3000)),
            _text_input(
                "learning",
                "Learning note",
                max_length=LEARNING_MAX,
                multiline=True,
                placeholder="What was fixed in the prompt or input, and what we learned",
            ),
        ],
    ).to_dict()
