"""The text of `/incident help` and `/agent help`."""

from bot.domain.commands import QUICK_DECLARE_FORM

INCIDENT_HELP = f"""*Rein: incident response for AI agents*
• `/incident declare` — open the declare form (title, agent, what happened, impact, severity)
• `{QUICK_DECLARE_FORM}` — declare at once
• `/incident list` — open incidents with severity, status, age and channel
• `/incident status` — in an incident channel: post its card again
• `/incident sev <1-4> <reason>` — in an incident channel: change the severity
• `/incident contain` — in an incident channel: approve its containment plan
• `/incident close <learning note>` — in an incident channel: close a SEV-4 straight from declared
• `/incident help` — this list
`sev`, `status` and `close` also take an incident first:
`/incident sev INC-12 2 customers saw it`."""

AGENT_HELP = """*Rein: agents*
• `/agent list` — every agent in the policy file, its mode and switches
• `/agent status <id>` — one agent, with the incident holding it
• `/agent pause <id> [sev1-4] <reason>` — emergency stop (agent owner or an approver): \
declares an incident (SEV-3 unless given) and contains it at once"""
