"""Slack listeners: ack, parse, call a service, render. One module per surface."""

from typing import Any

from bot.context import Rein
from handlers import (
    agent_command,
    card_actions,
    containment_actions,
    declare_modal,
    errors,
    evidence,
    incident_command,
    postmortem,
    reminders,
    restart_gate,
    rollback_actions,
    status_updates,
    timeline_capture,
    triage_actions,
)

MODULES = (
    incident_command,
    agent_command,
    declare_modal,
    card_actions,
    containment_actions,
    evidence,
    rollback_actions,
    postmortem,
    restart_gate,
    status_updates,
    reminders,
    timeline_capture,
    triage_actions,
    errors,  # last: the one error handler
)


def register_all(app: Any, rein: Rein) -> None:
    for module in MODULES:
        module.register(app, rein)
