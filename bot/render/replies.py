"""Private answers after an action: what was done, and what Slack would not do."""

from collections.abc import Sequence

from slack_sdk.models.blocks import ActionsBlock, ButtonElement, SectionBlock

from bot.domain.models import Incident
from bot.render import text as t

DECLARE_ANYWAY = "declare_anyway"
DECLARE_CANCEL = "declare_cancel"


def report(done: str, problems: Sequence[str]) -> str:
    if not problems:
        return done
    lines = "\n".join(f"• {p}" for p in problems)
    return t.cut(f"{done}\nSlack would not do everything:\n{lines}", t.FALLBACK_TEXT_MAX)


def declared_text(incident: Incident) -> str:
    where = t.channel(incident.channel_id) if incident.channel_id else "no channel of its own"
    return f"{incident.ref} is declared as {incident.severity.label}: {where}."


def resumed_text(incident: Incident) -> str:
    """To the declarer of a room Rein finished after a restart."""
    return f"Rein was restarted while setting up {incident.ref}. {declared_text(incident)}"


def contained_text(incident: Incident) -> str:
    where = t.channel(incident.channel_id) if incident.channel_id else "no channel of its own"
    return (
        f"{incident.ref} is contained: `{t.escape(incident.agent_id)}` is paused and its "
        f"autonomy API answers `paused`. {where}."
    )


def confirm_duplicate_blocks(existing: Incident, payload: str) -> list[dict]:
    return t.to_dicts(
        [
            SectionBlock(
                text=t.cut(
                    f"You declared *{existing.ref}* ({t.escape(existing.title)}) "
                    f"{t.date(existing.created_at)}. Declare another incident anyway?",
                    t.SECTION_TEXT_MAX,
                )
            ),
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text="Declare another",
                        action_id=DECLARE_ANYWAY,
                        value=payload,
                        style="danger",
                    ),
                    ButtonElement(text="Cancel", action_id=DECLARE_CANCEL, value="cancel"),
                ]
            ),
        ]
    )
