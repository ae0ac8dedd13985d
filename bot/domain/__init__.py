"""Pure domain: models, rules and the lifecycle. No Slack, no SQL, no clock."""
