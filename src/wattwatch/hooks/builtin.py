"""The built-in notifiers, registered through the same hook as any plugin (datasette's pattern)."""

from __future__ import annotations

from wattwatch.hooks.notifiers import (
    EmailNotifier,
    MqttNotifier,
    Notifier,
    NotifierContext,
    WebhookNotifier,
)
from wattwatch.hooks.specs import hookimpl


@hookimpl
def wattwatch_notifiers(context: NotifierContext) -> list[Notifier]:
    return [WebhookNotifier(context), EmailNotifier(context), MqttNotifier(context)]
