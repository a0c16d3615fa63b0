"""Alerts: rules, incremental evaluation with hysteresis, the alert lifecycle and history."""
