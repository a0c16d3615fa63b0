"""``python -m wattwatch`` runs the CLI."""

from wattwatch.cli import app

app()
