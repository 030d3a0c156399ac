"""Slack: message builders, the Web API client, the record of posted messages and the button receiver; sits between flows and tasks."""
