"""The restart gate in Slack: the gate message, its modal, the card's restart line and
buttons, the run feed, the Promote offer and the stage announcements. Notes, reasons and run
summaries came from people or agents: escaped wherever shown."""

import json
from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.domain.enums import IncidentStatus
from bot.domain.gate import (
    LABELS,
    NOTE_MAX,
    Criterion,
    Gate,
    Judgement,
    Restart,
    RestartState,
    RunOutcome,
)
from bot.domain.models import AgentAutonomy, Incident, RestartCard
from bot.domain.policy import Agent
from bot.render import text as t

OPEN_GATE = "incident_open_gate"
GATE_CHECK = "gate_check"
GATE_UNCHECK = "gate_uncheck"
GATE_ACCEPT = "gate_accept"
APPROVE_REACTIVATION = "gate_approve_reactivation"
PROMOTE = "gate_promote"
RETIRE_AGENT = "gate_retire_agent"
GATE_VIEW = "gate_decision"
VALUE = "value"
RUNS_SHOWN = 8  # run lines one feed message shows; the rest are counted

_ICON = {
    "rein": ":white_check_mark:",
    "checked": ":ballot_box_with_check:",
    "accepted": ":heavy_check_mark:",
    "open": ":white_large_square:",
}
_OUTCOME_ICON = {
    RunOutcome.OK.value: ":white_check_mark:",
    RunOutcome.FAILED.value: ":x:",
    RunOutcome.FLAGGED.value: ":triangular_flag_on_post:",
}
_CARD_STATUSES = (IncidentStatus.CONTAINED, IncidentStatus.RECOVERED, IncidentStatus.POSTMORTEM)


def value(number: int, part: str) -> str:
    return f"{number}:{part}"


def parse_value(raw: str) -> tuple[int, str]:
    number, _, part = raw.partition(":")
    return int(number), part


# ------------------------------------------------------------------------------ the gate


def gate_headline(gate: Gate) -> str:
    met = sum(1 for j in gate.judgements if j.met)
    return t.cut(
        f"{gate.incident.ref} restart gate: {met} of {len(gate.judgements)} criteria met",
        t.FALLBACK_TEXT_MAX,
    )


def gate_blocks(gate: Gate, agent: Agent | None) -> list[dict]:
    incident, restart = gate.incident, gate.restart
    open_for_checks = restart is not None and restart.state is RestartState.GATE
    met = sum(1 for j in gate.judgements if j.met)
    blocks: list[Block] = [
        HeaderBlock(text=t.plain(f"Restart gate · {incident.ref}", t.HEADER_TEXT_MAX)),
        SectionBlock(
            text=t.cut(
                f"Do not restart `{t.escape(incident.agent_id)}` merely because the symptom is "
                f"gone. *{met} of {len(gate.judgements)}* criteria met or accepted."
                + (
                    f" Round {restart.round}: a run failed or was flagged during the last stage."
                    if restart is not None and restart.round > 1
                    else ""
                ),
                t.SECTION_TEXT_MAX,
            )
        ),
        DividerBlock(),
    ]
    for judged in gate.judgements:
        blocks.append(_criterion_block(incident.number, judged, open_for_checks))
    blocks.append(DividerBlock())
    blocks += _decision_blocks(gate, agent)
    return t.to_dicts(blocks)


def _criterion_block(number: int, judged: Judgement, editable: bool) -> SectionBlock:
    icon = _ICON[judged.how]
    line = f"{icon} *{judged.label}*"
    if judged.derived:
        line += " _(Rein's judgement)_"
    detail = t.escape(judged.why) if judged.why else ""
    if judged.how == "checked":
        detail = f"checked by {t.user(judged.by or '')} {t.date(judged.at)}" if judged.at else ""
        if judged.why:
            detail += f": {t.escape(judged.why)}"
    elif judged.how == "accepted" and judged.at:
        detail = f"{t.escape(judged.why)} (by {t.user(judged.by or '')} {t.date(judged.at)})"
    accessory = None
    if editable:
        key = value(number, judged.criterion.value)
        if judged.how == "checked" or judged.how == "accepted":
            accessory = ButtonElement(text="Uncheck", action_id=GATE_UNCHECK, value=key)
        elif judged.how == "open" and judged.derived:
            accessory = ButtonElement(text="Accept", action_id=GATE_ACCEPT, value=key)
        elif judged.how == "open":
            accessory = ButtonElement(text="Check", action_id=GATE_CHECK, value=key)
    return SectionBlock(
        block_id=f"gate:{judged.criterion.value}",
        text=t.cut(f"{line}\n{detail}" if detail else line, t.SECTION_TEXT_MAX),
        accessory=accessory,
    )


def _decision_blocks(gate: Gate, agent: Agent | None) -> list[Block]:
    incident, restart = gate.incident, gate.restart
    number = str(incident.number)
    if restart is None:
        return []
    if restart.state is RestartState.STAGED and restart.stage is not None:
        line = (
            f":traffic_light: *Staged restart* — `{restart.stage.value}`: {restart.clean_runs} of "
            f"{restart.needed} clean runs. Approved by {t.user(restart.decided_by or '')}."
        )
        buttons = _stage_buttons(incident.number, restart)
        blocks: list[Block] = [SectionBlock(text=line)]
        if buttons:
            blocks.append(ActionsBlock(block_id="gate_decision", elements=buttons))
        return blocks
    if restart.state is RestartState.REACTIVATED:
        return [
            SectionBlock(
                text=f":white_check_mark: *Reactivated*: the agent is back in its "
                f"normal mode (`{restart.normal_mode.value}`); {incident.ref} is closed."
            )
        ]
    if restart.state is RestartState.RETIRED:
        return [
            SectionBlock(
                text=f":no_entry: *Retired* by {t.user(restart.decided_by or '')}: "
                f"the agent stays paused; {incident.ref} is closed."
            )
        ]
    first = " or ".join(f"`{m.value}`" for m in gate.first)
    why = "it could write during the incident" if gate.writer else "it could not write"
    notes = [f"Reactivation starts at {first} ({why})."]
    if incident.severity.level <= 2 and not gate.postmortem_done:
        notes.append(f"{incident.severity.label}: the postmortem must be completed first.")
    buttons = [
        ButtonElement(
            text="Approve reactivation",
            action_id=APPROVE_REACTIVATION,
            value=number,
            style="primary" if gate.ready else None,
        ),
        ButtonElement(text="Retire agent", action_id=RETIRE_AGENT, value=number, style="danger"),
    ]
    return [
        ContextBlock(elements=[MarkdownTextObject(text=t.cut(" ".join(notes), 3000))]),
        ActionsBlock(block_id="gate_decision", elements=buttons),
    ]


def _stage_buttons(number: int, restart: Restart | RestartCard) -> list[ButtonElement]:
    buttons: list[ButtonElement] = []
    if (
        restart.stage is not None
        and restart.next_stage is not None
        and (restart.clean_runs >= restart.needed)
    ):
        buttons.append(
            ButtonElement(
                text=f"Promote to {restart.next_stage.value}",
                action_id=PROMOTE,
                value=value(number, restart.stage.value),
                style="primary",
            )
        )
    buttons.append(
        ButtonElement(
            text="Retire agent", action_id=RETIRE_AGENT, value=str(number), style="danger"
        )
    )
    return buttons


# ------------------------------------------------------------------------------ the card


def restart_blocks(incident: Incident, restart: RestartCard | None) -> list[Block]:
    if restart is None:
        return []
    if restart.state == RestartState.STAGED.value and restart.stage is not None:
        nxt = f"; next: `{restart.next_stage.value}`" if restart.next_stage else ""
        text = (
            f":traffic_light: *Staged restart* — `{restart.stage.value}`: "
            f"{restart.clean_runs} of {restart.needed} clean runs{nxt}"
        )
    elif restart.state == RestartState.GATE.value:
        again = " (open again: a run failed or was flagged)" if restart.round > 1 else ""
        text = f":vertical_traffic_light: *Restart gate open*{again} — see the gate message"
    elif restart.state == RestartState.REACTIVATED.value:
        text = ":white_check_mark: *Reactivated*: the agent is back in its normal mode"
    else:
        text = ":no_entry: *Agent retired*: it stays paused"
    return [ContextBlock(elements=[MarkdownTextObject(text=text)])]


def restart_buttons(incident: Incident, restart: RestartCard | None) -> list[ButtonElement]:
    number = incident.number
    if incident.status not in _CARD_STATUSES:
        return []
    buttons: list[ButtonElement] = []
    if restart is None or restart.state == RestartState.GATE.value:
        buttons.append(
            ButtonElement(text="Open restart gate", action_id=OPEN_GATE, value=str(number))
        )
    if restart is not None and restart.state == RestartState.STAGED.value:
        buttons += _stage_buttons(number, restart)
    return buttons


# ------------------------------------------------------------------------------ the modal


def gate_modal(
    op: str,
    gate: Gate,
    channel: str | None,
    criterion: Criterion | None = None,
) -> dict:
    """`op`: check (note optional), accept (reason), approve (first stage, note), retire."""
    incident = gate.incident
    meta = json.dumps(
        {
            "incident": incident.number,
            "op": op,
            "criterion": criterion.value if criterion else None,
            "channel": channel,
        }
    )
    blocks: list[Block] = []
    if op == "check":
        assert criterion is not None
        title, submit = "Check criterion", "Check"
        blocks.append(SectionBlock(text=f"*{incident.ref}*: {LABELS[criterion]}"))
        blocks.append(_note("note", "Note", optional=True, placeholder="How you know, where it is"))
    elif op == "accept":
        assert criterion is not None
        judged = next(j for j in gate.judgements if j.criterion is criterion)
        title, submit = "Accept criterion", "Accept"
        blocks.append(
            SectionBlock(
                text=t.cut(
                    f"*{incident.ref}*: {LABELS[criterion]} — Rein judges it not met: "
                    f"{t.escape(judged.why)}.\nAccepting it is on the timeline with your reason.",
                    t.SECTION_TEXT_MAX,
                )
            )
        )
        blocks.append(
            _note("note", "Why it is accepted", placeholder="Why it is acceptable as it is")
        )
    elif op == "approve":
        title, submit = "Approve reactivation", "Approve"
        open_ = [j for j in gate.judgements if not j.met]
        state = (
            "Every criterion is met or accepted."
            if not open_
            else f"Not met yet: {', '.join(j.label for j in open_)}."
        )
        why = " (it could write during the incident)" if gate.writer else ""
        blocks.append(
            SectionBlock(text=t.cut(f"*{incident.ref}*: {state}\nFirst stage{why}:", 3000))
        )
        options = [Option(value=m.value, text=m.value) for m in gate.first]
        blocks.append(
            InputBlock(
                block_id="stage",
                label="First stage",
                element=StaticSelectElement(
                    action_id=VALUE, options=options, initial_option=options[0]
                ),
            )
        )
        blocks.append(_note("note", "Note", optional=True, placeholder="Anything to watch for"))
    else:
        title, submit = "Retire agent", "Retire"
        blocks.append(
            SectionBlock(
                text=f"*{incident.ref}*: `{t.escape(incident.agent_id)}` stays paused and the "
                "incident closes."
            )
        )
        blocks.append(_note("note", "Why", placeholder="Why the agent is not restarted"))
    return View(
        type="modal",
        callback_id=GATE_VIEW,
        title=title,
        submit=submit,
        close="Cancel",
        private_metadata=meta,
        blocks=blocks,
    ).to_dict()


def _note(block_id: str, label: str, *, optional: bool = False, placeholder: str) -> InputBlock:
    return InputBlock(
        block_id=block_id,
        label=label,
        optional=optional,
        element=PlainTextInputElement(
            action_id=VALUE, multiline=True, max_length=NOTE_MAX, placeholder=placeholder
        ),
    )


def modal_target(private_metadata: str) -> dict[str, Any]:
    return dict(json.loads(private_metadata))


# ------------------------------------------------------------------------------ channel


def text_blocks(text: str) -> list[dict]:
    return t.to_dicts([SectionBlock(text=t.cut(text, t.SECTION_TEXT_MAX))])


def stage_text(
    incident: Incident,
    restart: Restart,
    autonomy: AgentAutonomy | None,
    agent: Agent | None,
    actor: str,
) -> str:
    who = t.user(actor)
    agent_id = f"`{t.escape(incident.agent_id)}`"
    if restart.state is RestartState.RETIRED:
        return (
            f":no_entry: {who} retired {agent_id}: it stays paused, and the autonomy API says so "
            f"with {incident.ref}. {incident.ref} is closed. The channel stays open; archive it "
            "when you are done."
        )
    if restart.state is RestartState.REACTIVATED:
        return (
            f":white_check_mark: {who} moved {agent_id} to `{restart.normal_mode.value}`, its "
            f"normal mode: the staged restart is complete and {incident.ref} is closed. The "
            "channel stays open; archive it when you are done."
        )
    assert restart.stage is not None
    return (
        f":traffic_light: {who} moved {agent_id} to *`{restart.stage.value}`*. The kill switch "
        f"is told; the autonomy API answers `{restart.stage.value}`. Rein counts its runs: "
        f"{restart.needed} clean runs earn the next stage; a failed or flagged run contains it "
        "again at once."
    )


def runs_text(incident: Incident, runs: Sequence[dict[str, Any]], approvers: Sequence[str]) -> str:
    bad = [r for r in runs if r["outcome"] != RunOutcome.OK.value]
    lines = []
    if bad:
        first = bad[0]
        named = " ".join(t.approver(a) for a in approvers)
        lines.append(
            f":rotating_light: <!here> *`{t.escape(incident.agent_id)}` is contained again*: run "
            f"`{t.escape(first['run_id'])}` was *{first['outcome']}* during "
            f"`{first['stage']}`. Rein paused it at once and told its kill switch. The restart "
            f"gate is open again. {named}".rstrip()
        )
    ok = sum(1 for r in runs if r["outcome"] == RunOutcome.OK.value)
    if len(runs) > 1:
        lines.append(f"*{len(runs)} run reports*: {ok} ok, {len(runs) - ok} failed or flagged")
    for run in runs[-RUNS_SHOWN:]:
        line = (
            f"{_OUTCOME_ICON[run['outcome']]} run `{t.escape(str(run['run_id']))[:120]}` "
            f"*{run['outcome']}* during `{run['stage']}`"
        )
        if run.get("summary"):
            line += f" — {t.mrkdwn(str(run['summary']), 200)}"
        if run.get("cost") is not None:
            line += f" (cost {run['cost']:g})"
        lines.append(line)
    if len(runs) > RUNS_SHOWN:
        lines.append(
            f"…and {len(runs) - RUNS_SHOWN} earlier ones (`GET /v1/incidents/{incident.ref}`)"
        )
    return t.cut("\n".join(lines), t.SECTION_TEXT_MAX)


def offer_text(incident: Incident, restart: Restart) -> str:
    assert restart.stage is not None
    return (
        f"{incident.ref}: `{incident.agent_id}` has {restart.clean_runs} clean runs at "
        f"`{restart.stage.value}`"
    )


def offer_blocks(
    incident: Incident, restart: Restart, agent: Agent | None, approvers: Sequence[str]
) -> list[dict]:
    assert restart.stage is not None
    named = ", ".join(t.approver(a) for a in approvers)
    if incident.severity.level >= 3 and agent is not None:
        named = f"{named} or {t.user(agent.owner)}" if named else t.user(agent.owner)
    nxt = restart.next_stage
    text = (
        f":tada: `{t.escape(incident.agent_id)}` has its {restart.needed} clean runs at "
        f"`{restart.stage.value}`. {named + ': ' if named else ''}"
        f"promote it to `{nxt.value if nxt else '?'}` when you are satisfied."
    )
    return t.to_dicts(
        [
            SectionBlock(text=t.cut(text, t.SECTION_TEXT_MAX)),
            ActionsBlock(block_id="gate_offer", elements=_stage_buttons(incident.number, restart)),
        ]
    )


def reminder_text(gate: Gate, approvers: Sequence[str]) -> str:
    """The daily reminder while the gate is open: what is still missing, and who decides."""
    incident = gate.incident
    missing = [j for j in gate.judgements if not j.met]
    named = " ".join(t.approver(a) for a in approvers)
    if missing:
        lines = "\n".join(f"• {j.label} — {t.escape(j.why)}" for j in missing)
        head = (
            f":vertical_traffic_light: {incident.ref}'s restart gate is still open; "
            f"{len(missing)} criteria are not met or accepted:"
        )
        return t.cut(f"{head}\n{lines}", t.SECTION_TEXT_MAX)
    return t.cut(
        f":vertical_traffic_light: {incident.ref}'s restart gate has every criterion met or "
        f"accepted. {named} approve reactivation, or retire the agent.",
        t.SECTION_TEXT_MAX,
    )
