"""The text of `/incident help` and `/agent help`, as mrkdwn. The source writes the usage
forms as typed (`<reason>`, `before -> after`); `escape` makes them show literally, not as
Slack links or entities."""

from bot.domain.commands import QUICK_DECLARE_FORM
from bot.render.text import escape

INCIDENT_HELP = escape(f"""*Rein: incident response for AI agents*
• `/incident declare` — open the declare form (title, agent, what happened, impact, severity)
• `{QUICK_DECLARE_FORM}` — declare at once
• `/incident list` — open incidents with severity, status, age and channel
• `/incident status` — in an incident channel: post its card again
• `/incident sev <1-4> <reason>` — in an incident channel: change the severity
• `/incident contain` — in an incident channel: approve its containment plan
• `/incident close <learning note>` — in an incident channel: close a SEV-4 straight from declared
• `/incident evidence <kind> <text or url>` — in an incident channel: preserve evidence \
(`/incident evidence` alone lists the kinds; `INC-12` first for another incident)
• `/incident rollback <system> <record> [before -> after]` — add an affected record to the \
rollback ledger; `/incident rollback list [status]` shows it, pending first
• `/incident rollback restored|accepted|not_reversible <items|all> [reason]` — mark ledger \
items (`12`, `1-212,250`; `all` = every pending one); accepted and not_reversible need a reason
• `/incident recovered` — mark it recovered once every record is restored, accepted or not \
reversible; the commander may `/incident recovered accept <reason>` for the pending rest
• `/incident update` — in an incident channel: post a status update (what happened, what \
was affected, what was done, what is being checked, what changes before restart)
• `/incident timeline` — in an incident channel: its timeline, privately, a page at a time
• `/incident postmortem` — once recovered: the five-part postmortem (save a draft, or \
complete it); `/incident postmortem share` posts its document in the incident channel
• `/incident gate` — once contained: the restart gate (criteria, each checked or judged); \
`/incident gate check|uncheck|accept <criterion> [note]`, `/incident gate approve [stage]`, \
`/incident gate promote`, `/incident gate retire <reason>`
• `/incident help` — this list
`sev`, `status`, `close`, `update` and `timeline` also take an incident first:
`/incident sev INC-12 2 customers saw it`.""")

AGENT_HELP = escape("""*Rein: agents*
• `/agent list` — every agent in the policy file, its mode and switches
• `/agent status <id>` — one agent, with the incident holding it
• `/agent pause <id> [sev1-4] <reason>` — emergency stop (agent owner or an approver): \
declares an incident (SEV-3 unless given) and contains it at once""")
