"""Alerting: findings -> rules -> lifecycle -> Slack."""
