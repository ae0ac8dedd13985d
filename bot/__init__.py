"""Rein: incident response for autonomous AI agents, in Slack."""
