"""Webhook service: subscriptions and the dead-letter list as the API and CLI see them.

Managing webhooks and dead letters needs ``admin``: a webhook URL may carry a receiver's
token, and a dead letter holds event data.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from wattwatch.domain import Role, now_ms
from wattwatch.errors import Conflict, InvalidInput
from wattwatch.hooks.dispatcher import EVENTS, HookDispatcher
from wattwatch.hooks.notifiers import Event
from wattwatch.registry.service import Principal
from wattwatch.store.alerts import SqlAlertStore

MIN_SECRET_LENGTH = 16


def public_webhook(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "secret"}


class WebhookService:
    def __init__(self, store: SqlAlertStore, dispatcher: HookDispatcher) -> None:
        self.store = store
        self.dispatcher = dispatcher

    def create(
        self, principal: Principal, url: str, events: list[str], secret: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """Subscribe ``url`` to ``events``; return the webhook and its secret."""
        principal.require(Role.ADMIN)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput("url must be an http:// or https:// URL with a host")
        if not events:
            raise InvalidInput(f"give at least one event: {', '.join(EVENTS)} or *")
        unknown = [e for e in events if e != "*" and e not in EVENTS]
        if unknown:
            raise InvalidInput(f"unknown events {unknown}; known: {', '.join(EVENTS)} or *")
        if secret is None:
            secret = secrets.token_urlsafe(32)
        elif len(secret) < MIN_SECRET_LENGTH:
            raise InvalidInput(f"secret must have at least {MIN_SECRET_LENGTH} characters")
        webhook_id = self.store.create_webhook(
            {
                "org_id": principal.org_id,
                "url": url,
                "events": sorted(set(events)),
                "secret": secret,
                "enabled": True,
                "created_by": principal.email,
                "created_ms": now_ms(),
            }
        )
        self.dispatcher.request_reload()
        return public_webhook(self.store.get_webhook(principal.org_id, webhook_id)), secret

    def list_webhooks(self, principal: Principal) -> list[dict[str, Any]]:
        principal.require(Role.ADMIN)
        return [public_webhook(h) for h in self.store.list_webhooks(principal.org_id)]

    def get(self, principal: Principal, webhook_id: int) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        return public_webhook(self.store.get_webhook(principal.org_id, webhook_id))

    def delete(self, principal: Principal, webhook_id: int) -> None:
        principal.require(Role.ADMIN)
        self.store.delete_webhook(principal.org_id, webhook_id)
        self.dispatcher.request_reload()

    def ping(self, principal: Principal, webhook_id: int) -> None:
        """Send a signed ``ping`` event to the webhook (with the usual retries)."""
        self.get(principal, webhook_id)
        event = Event("ping", principal.org_id, now_ms(), {"webhook_id": webhook_id})
        try:
            self.dispatcher.deliver_threadsafe(event, {"kind": "webhook", "webhook_id": webhook_id})
        except LookupError as exc:
            raise Conflict(str(exc)) from None

    def dead_letters(
        self, principal: Principal, state: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        principal.require(Role.ADMIN)
        return self.store.list_dead_letters(principal.org_id, [state] if state else None, limit)

    def replay(self, principal: Principal, letter_id: int) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        letter = self.store.get_dead_letter(principal.org_id, letter_id)
        if letter["state"] != "dead":
            raise Conflict(f"dead letter {letter_id} is {letter['state']}, not dead")
        # Marked first: the replay may finish (and mark it delivered) before this returns.
        self.store.update_dead_letter(letter_id, {"state": "replaying", "updated_ms": now_ms()})
        try:
            self.dispatcher.replay(letter)
        except LookupError as exc:
            self.store.update_dead_letter(letter_id, {"state": "dead", "updated_ms": now_ms()})
            raise Conflict(str(exc)) from None
        return self.store.get_dead_letter(principal.org_id, letter_id)
