"""Hooks: events out of wattwatch to signed webhooks, notifiers (email, MQTT) and Python plugins."""
